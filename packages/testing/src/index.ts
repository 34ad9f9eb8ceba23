export * from "./infra.env.js";
export * from "./stack.fixture.js";
export * from "./process.fixture.js";

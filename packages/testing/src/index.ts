export * from "./infra.env.js";
export * from "./stack.fixture.js";
export * from "./process.fixture.js";
export * from "./fakes/tls.fixture.js";
export * from "./fakes/apns.fake.js";
export * from "./fakes/webpush.fake.js";
export * from "./fakes/fcm.fake.js";
export * from "./fakes/hms.fake.js";

// The embedded server, for other packages (test suites and the benchmark start it in-process).
export { formatBanner, startEmbedded, type EmbeddedApp, type EmbeddedOptions, type EmbeddedServer } from "./serve.js";
export { main as runHerald } from "./herald.js";
export { startFakeProviders, type FakeProviders } from "./serve.fakes.js";

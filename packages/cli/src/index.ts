// The embedded server and the PushApp schema, for other packages (the operator generates the
// CRD from PushAppSchema; test suites start the embedded server in-process).
export {
  APP_ID_PATTERN,
  enabledProviders,
  loadPushApps,
  parsePushApp,
  PUSHAPP_API_VERSION,
  PUSHAPP_KIND,
  PushAppSchema,
  PushAppSpecSchema,
  pushAppOpenApiSchema,
  validatePushApp,
  type LoadedPushApps,
  type PushApp,
  type PushAppInput,
  type PushAppIssue,
  type PushAppProvider,
} from "./pushapp.schema.js";
export { formatBanner, startEmbedded, toCreateAppRequest, type EmbeddedApp, type EmbeddedOptions, type EmbeddedServer } from "./serve.js";
export { main as runHerald } from "./herald.js";
export { startFakeProviders, type FakeProviders } from "./serve.fakes.js";

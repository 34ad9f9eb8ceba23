export { createRegistryModule, type RegistryModule, type RegistryModuleDeps } from "./registry.module.js";
export { UserTokens } from "./usertoken.jwt.js";
export { toAppProto, toLimits } from "./app.service.js";

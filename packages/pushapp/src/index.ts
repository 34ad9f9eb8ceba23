// The PushApp resource: its schema (one source of truth for the embedded loader, the CRD and the
// operator), the CRD built from it, and the AppService request it stands for.
export * from "./pushapp.schema.js";
export * from "./pushapp.crd.js";
export { PROVIDER_ENUM, pushAppOwner, toCreateAppRequest } from "./pushapp.mapper.js";

export * from "./provider.types.js";
export { SenderWorker, backoffMs, type SenderOptions } from "./sender.consumer.js";
export { DryRunProvider } from "./providers/dryrun.provider.js";
export { ApnsProvider, APNS_PRODUCTION_URL, APNS_SANDBOX_URL, type ApnsAuth, type ApnsProviderConfig } from "./providers/apns.provider.js";
export { WebPushProvider, type WebPushProviderConfig } from "./providers/webpush.provider.js";
export { createProvider, providerEnv, CREDENTIAL_FILES, ProviderConfigError, type ProviderEnv } from "./provider.factory.js";
export { FcmProvider, FCM_URL, type FcmProviderConfig } from "./providers/fcm.provider.js";
export { parseServiceAccount, type ServiceAccount } from "./providers/fcm.auth.js";
export { HmsProvider, HMS_PUSH_URL, HMS_TOKEN_URL, type HmsProviderConfig } from "./providers/hms.provider.js";

import { apps as appsApi, Provider } from "@herald/proto";
import { enabledProviders, type PushApp, type PushAppProvider } from "./pushapp.schema.js";

export const PROVIDER_ENUM: Record<PushAppProvider, Provider> = {
  apns: Provider.PROVIDER_APNS,
  fcm: Provider.PROVIDER_FCM,
  hms: Provider.PROVIDER_HMS,
  webpush: Provider.PROVIDER_WEBPUSH,
};

// The owner the operator records on a PushApp's app: app ids are global, PushApp names are
// unique only within a namespace.
export const pushAppOwner = (namespace: string, name: string) => `pushapp:${namespace}/${name}`;

// The AppService request a PushApp stands for (0 = the service's default for absent limits).
// The embedded server and the operator both create apps through it, so a PushApp means the same
// in both modes.
export function toCreateAppRequest(pushApp: PushApp, extra: { owner?: string; vapidPublicKey?: string } = {}): appsApi.CreateAppRequest {
  const limits = pushApp.spec.limits ?? {};
  return {
    id: pushApp.metadata.name,
    owner: extra.owner ?? "",
    vapidPublicKey: extra.vapidPublicKey ?? "",
    webhooks: (pushApp.spec.webhooks ?? []).map((w) => ({ url: w.url, events: [...(w.events ?? [])], format: w.format === "pusher" ? "pusher" : "" })),
    name: pushApp.spec.displayName ?? pushApp.metadata.name,
    limits: {
      maxDevicesPerUser: limits.maxDevicesPerUser ?? 0,
      deviceOverflowPolicy:
        limits.deviceOverflowPolicy === "Reject"
          ? appsApi.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_REJECT
          : limits.deviceOverflowPolicy === "Evict"
            ? appsApi.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_EVICT_LEAST_RECENTLY_SEEN
            : appsApi.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_UNSPECIFIED,
      maxInactiveDays: limits.maxInactiveDays ?? 0,
      maxTopicsPerDevice: limits.maxTopicsPerDevice ?? 0,
      maxPublishRate: limits.maxPublishRate ?? 0,
      urgentMaxTargets: limits.urgentMaxTargets ?? 0,
    },
    providers: enabledProviders(pushApp).map((p) => PROVIDER_ENUM[p]),
    senders: pushApp.spec.senders?.mode === "pooled" ? appsApi.SenderMode.SENDER_MODE_POOLED : appsApi.SenderMode.SENDER_MODE_DEDICATED,
  };
}

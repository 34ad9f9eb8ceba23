import { failedPrecondition, notFound } from "@herald/platform";
import { dispatch } from "@herald/proto";
import { deviceMatcher, PLATFORM_NAMES, PROVIDER_NAMES, type AppRecord, type DeviceRecord, type ProviderName, type Store } from "@herald/store";

// What the dispatcher reads of the registry's data: an app's providers and limits (a publish must
// not cut jobs no sender consumes) and a device with its topics (a receipt counts only for a
// recipient); plus the publish-rate windows all dispatcher replicas share (publish.ratelimit.ts).
export type Directory = {
  apps: Pick<Store["apps"], "get">;
  devices: Pick<Store["devices"], "get">;
  subscriptions: Pick<Store["subscriptions"], "topicsOf">;
  rates: Pick<Store["rates"], "take" | "sweep">;
};

export async function appOf(directory: Directory, app: string): Promise<AppRecord> {
  const record = await directory.apps.get(app);
  if (!record) throw notFound("app", app);
  return record;
}

// The failure reason recorded for devices of a provider the app no longer has.
export const unconfiguredReason = (provider: ProviderName) => `${provider}:PROVIDER_NOT_CONFIGURED`;

// Whether the device is among the publish's recipients as the registry stands now: the same
// conditions the fan-out streams by (target, providers, platforms, exclusions).
export async function isRecipient(directory: Directory, request: dispatch.PublishRequest, device: DeviceRecord): Promise<boolean> {
  const r = request.recipients;
  const target = r?.target;
  if (!r || !target) return false;
  const narrowed = deviceMatcher({
    providers: r.providers.map((p) => PROVIDER_NAMES[p]!).filter(Boolean),
    platforms: r.platforms.map((p) => PLATFORM_NAMES[p]!).filter(Boolean),
    excludeIds: r.excludeDeviceIds,
  });
  if (!narrowed(device)) return false;
  switch (target.$case) {
    case "deviceIds":
      return target.value.values.includes(device.id);
    case "users":
      return device.user !== "" && target.value.values.includes(device.user);
    case "tags":
      return deviceMatcher({ tags: target.value.all.map((m) => ({ key: m.key.normalize("NFC"), values: m.values })) })(device);
    case "all":
      return true;
    case "tokens":
      return PROVIDER_NAMES[target.value.provider] === device.provider && target.value.tokens.includes(device.token);
    case "topics": {
      const topics = (await directory.subscriptions.topicsOf(device.app, [device.id])).get(device.id) ?? [];
      return topics.some((t) => target.value.values.includes(t));
    }
    case "native":
      return false;
  }
}

export const notARecipient = (deviceId: string) => failedPrecondition("NOT_A_RECIPIENT", `device "${deviceId}" is not among this publish's recipients`);

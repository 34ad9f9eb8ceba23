import type { dispatch, topic } from "@herald/proto";
import { ALL_PROVIDERS, PROVIDER_NAMES, type ProviderName } from "@herald/store";
import { buildPayload } from "./notification.payload.js";
import type { RecipientSource } from "./recipient.source.js";

const STREAM_BATCH = 500;

// The providers a publish's notification has a payload for: devices of other providers are not
// targeted (the fan-out cuts no job for them).
function payloadProviders(request: dispatch.PublishRequest): Set<ProviderName> {
  const n = request.notification;
  return new Set(n ? ALL_PROVIDERS.filter((p) => buildPayload(p, n, request.priority) !== undefined) : []);
}

// How many devices a publish targets, streamed like the fan-out reads them (validate_only, and a
// publish that expires or is cancelled before its fan-out ends, which reports what it would have
// reached).
// `after`: only the devices after this id (what a stopped fan-out had not reached yet).
// The request's own providers / platforms filters narrow the stream itself.
export async function countRecipients(source: RecipientSource, app: string, request: dispatch.PublishRequest, after = ""): Promise<number> {
  const target = request.recipients?.target;
  if (!target) return 0;
  const providers = payloadProviders(request);
  if ((target.$case === "tokens" || target.$case === "native") && after) return 0;
  if (target.$case === "tokens") return providers.has(PROVIDER_NAMES[target.value.provider]!) ? target.value.tokens.length : 0;
  if (target.$case === "native") return providers.has(PROVIDER_NAMES[target.value.provider]!) ? 1 : 0;
  let n = 0;
  await source.forEachBatch(app, streamRequest(request, after, STREAM_BATCH), new AbortController().signal, async (recipients) => {
    for (const r of recipients) if (providers.has(PROVIDER_NAMES[r.provider]!)) n++;
  });
  return n;
}

export function streamRequest(request: dispatch.PublishRequest, after: string, batchSize: number): topic.StreamRecipientsRequest {
  const r = request.recipients!;
  const t = r.target!;
  const target: topic.StreamRecipientsRequest["target"] =
    t.$case === "deviceIds" || t.$case === "users" || t.$case === "topics"
      ? ({ $case: t.$case, value: { values: t.value.values } } as topic.StreamRecipientsRequest["target"])
      : t.$case === "tags"
        ? { $case: "tags", value: t.value }
        : { $case: "all", value: {} };
  return {
    target,
    excludeDeviceIds: r.excludeDeviceIds,
    providers: r.providers,
    platforms: r.platforms,
    includeMeta: !!request.notification?.templated,
    batchSize,
    afterDeviceId: after,
  };
}

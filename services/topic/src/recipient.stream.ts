import { invalidArgument, type CallContext } from "@herald/platform";
import type { topic } from "@herald/proto";
import {
  checkTopics,
  checkUserId,
  compareStrings,
  PLATFORM_NAMES,
  parseProvider,
  platformEnum,
  providerEnum,
  type DeviceQuery,
  type DeviceRecord,
  type Store,
  type TopicRecipient,
} from "@herald/store";

const MAX_BATCH = 1000;
const MAX_IDS = 10_000;

// Streams the devices of a recipient set in device-id order, each device once, batch by batch
// from database cursors: memory stays flat however large the topic. `after_device_id` lets a
// restarted fan-out resume where it stopped.
export async function streamRecipients(
  store: Store,
  req: topic.StreamRecipientsRequest,
  ctx: Pick<CallContext, "app" | "signal">,
  send: (response: topic.StreamRecipientsResponse) => Promise<void>,
): Promise<void> {
  const batchSize = req.batchSize || 500;
  if (batchSize < 1 || batchSize > MAX_BATCH) throw invalidArgument("batch_size", `must be between 1 and ${MAX_BATCH}`);
  const query = narrowing(req);
  const after = req.afterDeviceId || undefined;
  const target = req.target;
  if (!target) throw invalidArgument("target", "name device_ids, users, topics, tags or all");

  let pending: topic.Recipient[] = [];
  const emit = async (recipients: topic.Recipient[]) => {
    pending.push(...recipients);
    while (pending.length >= batchSize) {
      await send({ recipients: pending.slice(0, batchSize) });
      pending = pending.slice(batchSize);
    }
  };
  const emitDevices = (devices: DeviceRecord[]) => emit(devices.map((d) => toRecipient(d, req.includeMeta)));

  switch (target.$case) {
    case "topics": {
      const topics = checkTopics(target.value.values, "topics");
      if (topics.length === 0) throw invalidArgument("topics", "name at least one topic");
      const range = { ...(after ? { after } : {}), batchSize };
      if (!req.includeMeta) {
        // What a delivery needs is on the subscription rows: one read of the rows, no device read.
        const match = rowMatcher(query);
        for await (const rows of store.subscriptions.scanRecipients(ctx.app, topics, range)) {
          ctx.signal.throwIfAborted();
          await emit((await withDeviceFields(store, ctx.app, rows)).filter(match));
        }
        break;
      }
      // Templates need the devices' meta, locale and timezone: the rows' ids joined with the devices.
      const ids = store.subscriptions.scanDeviceIds(ctx.app, topics, range);
      // A row that outlives its device for a moment (DeviceService.removeDevices) is not joined.
      for await (const devices of store.devices.join(ctx.app, ids, query, after ? { after } : {})) {
        ctx.signal.throwIfAborted();
        await emitDevices(devices);
      }
      break;
    }
    case "deviceIds": {
      // Counted as sent, repeats included (the OpenAPI document's maxItems).
      if (target.value.values.length > MAX_IDS) throw invalidArgument("device_ids", `at most ${MAX_IDS} device ids`);
      const ids = [...new Set(target.value.values)].sort(compareStrings);
      for await (const devices of store.devices.join(ctx.app, batchesOf(ids, batchSize), query, after ? { after } : {})) {
        ctx.signal.throwIfAborted();
        await emitDevices(devices);
      }
      break;
    }
    case "users": {
      const users = target.value.values.map((u, i) => checkUserId(u, `users[${i}]`));
      if (users.length === 0) throw invalidArgument("users", "name at least one user");
      await scan(store, ctx, { ...query, users }, after, batchSize, emitDevices);
      break;
    }
    case "tags": {
      if (target.value.all.length === 0) throw invalidArgument("tags.all", "name at least one tag condition");
      const tags = target.value.all.map((m, i) => {
        if (!m.key) throw invalidArgument(`tags.all[${i}].key`, "is required");
        // Stored tag keys are NFC (checkStringMap).
        return { key: m.key.normalize("NFC"), values: m.values };
      });
      await scan(store, ctx, { ...query, tags }, after, batchSize, emitDevices);
      break;
    }
    case "all":
      await scan(store, ctx, query, after, batchSize, emitDevices);
      break;
  }
  if (pending.length) await send({ recipients: pending });
}

async function scan(
  store: Store,
  ctx: Pick<CallContext, "app" | "signal">,
  query: DeviceQuery,
  after: string | undefined,
  batchSize: number,
  emit: (devices: DeviceRecord[]) => Promise<void>,
): Promise<void> {
  for await (const devices of store.devices.scan(ctx.app, query, { ...(after ? { after } : {}), batchSize })) {
    ctx.signal.throwIfAborted();
    await emit(devices);
  }
}

async function* batchesOf(ids: string[], size: number): AsyncIterable<string[]> {
  for (let i = 0; i < ids.length; i += size) yield ids.slice(i, i + size);
}

function narrowing(req: topic.StreamRecipientsRequest): DeviceQuery {
  const query: DeviceQuery = {};
  if (req.excludeDeviceIds.length) query.excludeIds = req.excludeDeviceIds;
  if (req.providers.length) query.providers = req.providers.map((p, i) => parseProvider(p, `providers[${i}]`));
  if (req.platforms.length) {
    query.platforms = req.platforms.map((p, i) => {
      const name = PLATFORM_NAMES[p];
      if (!name) throw invalidArgument(`platforms[${i}]`, "unknown platform", "INVALID_PLATFORM");
      return name;
    });
  }
  return query;
}

// Rows written before the rows carried provider, platform and token take them from their device
// (by id, in one read per batch); such a row whose device is gone is dropped, as the join would.
async function withDeviceFields(store: Store, app: string, rows: TopicRecipient[]): Promise<topic.Recipient[]> {
  const complete = (r: TopicRecipient): r is Required<TopicRecipient> => r.token !== undefined && r.provider !== undefined && r.platform !== undefined;
  const older = rows.filter((r) => !complete(r)).map((r) => r.deviceId);
  const devices = older.length ? new Map((await store.devices.getMany(app, older)).map((d) => [d.id, d])) : undefined;
  const out: topic.Recipient[] = [];
  for (const r of rows) {
    if (complete(r)) {
      out.push({ deviceId: r.deviceId, provider: providerEnum(r.provider), platform: platformEnum(r.platform), token: r.token, user: r.user, meta: {}, locale: "", timezone: "" });
      continue;
    }
    const d = devices?.get(r.deviceId);
    if (d) out.push(toRecipient(d, false));
  }
  return out;
}

// narrowing()'s conditions (excluded ids, providers, platforms) on recipients.
function rowMatcher(query: DeviceQuery): (r: topic.Recipient) => boolean {
  const excluded = new Set(query.excludeIds ?? []);
  const providers = query.providers?.length ? new Set(query.providers.map(providerEnum)) : undefined;
  const platforms = query.platforms?.length ? new Set(query.platforms.map(platformEnum)) : undefined;
  return (r) => !excluded.has(r.deviceId) && (!providers || providers.has(r.provider)) && (!platforms || platforms.has(r.platform));
}

function toRecipient(d: DeviceRecord, includeMeta: boolean): topic.Recipient {
  return {
    deviceId: d.id,
    provider: providerEnum(d.provider),
    platform: platformEnum(d.platform),
    token: d.token,
    user: d.user,
    meta: includeMeta ? d.meta : {},
    locale: includeMeta ? d.locale : "",
    timezone: includeMeta ? d.timezone : "",
  };
}

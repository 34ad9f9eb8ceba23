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
  const emit = async (devices: DeviceRecord[]) => {
    for (const d of devices) pending.push(toRecipient(d, req.includeMeta));
    while (pending.length >= batchSize) {
      await send({ recipients: pending.slice(0, batchSize) });
      pending = pending.slice(batchSize);
    }
  };

  switch (target.$case) {
    case "topics": {
      const topics = checkTopics(target.value.values, "topics");
      if (topics.length === 0) throw invalidArgument("topics", "name at least one topic");
      const ids = store.subscriptions.scanDeviceIds(ctx.app, topics, { ...(after ? { after } : {}), batchSize });
      // Subscriptions may briefly outlive a removed device (removal deletes the device first);
      // the join simply does not return it.
      for await (const devices of store.devices.join(ctx.app, ids, query, after ? { after } : {})) {
        ctx.signal.throwIfAborted();
        await emit(devices);
      }
      break;
    }
    case "deviceIds": {
      // Counted as sent, repeats included (the OpenAPI document's maxItems).
      if (target.value.values.length > MAX_IDS) throw invalidArgument("device_ids", `at most ${MAX_IDS} device ids`);
      const ids = [...new Set(target.value.values)].sort(compareStrings);
      for await (const devices of store.devices.join(ctx.app, batchesOf(ids, batchSize), query, after ? { after } : {})) {
        ctx.signal.throwIfAborted();
        await emit(devices);
      }
      break;
    }
    case "users": {
      const users = target.value.values.map((u, i) => checkUserId(u, `users[${i}]`));
      if (users.length === 0) throw invalidArgument("users", "name at least one user");
      await scan(store, ctx, { ...query, users }, after, batchSize, emit);
      break;
    }
    case "tags": {
      if (target.value.all.length === 0) throw invalidArgument("tags.all", "name at least one tag condition");
      const tags = target.value.all.map((m, i) => {
        if (!m.key) throw invalidArgument(`tags.all[${i}].key`, "is required");
        // Stored tag keys are NFC (checkStringMap).
        return { key: m.key.normalize("NFC"), values: m.values };
      });
      await scan(store, ctx, { ...query, tags }, after, batchSize, emit);
      break;
    }
    case "all":
      await scan(store, ctx, query, after, batchSize, emit);
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

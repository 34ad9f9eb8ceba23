import { randomBytes } from "node:crypto";
import {
  annotateSpan,
  bindService,
  HeraldError,
  invalidArgument,
  notFound,
  Status,
  type Bus,
  type CallContext,
  type Logger,
  type ServiceBinding,
} from "@herald/platform";
import { BusTopics, dispatch, events } from "@herald/proto";
import { checkProviderConfigured, checkStringMap, FINAL_STATES, pageLimit, type PublishRecord, type PublishRepository, type TokenRules } from "@herald/store";
import { checkNotification } from "./notification.payload.js";
import { stateName, toPublishProto } from "./publish.mapper.js";
import { announceFinished } from "./publish.progress.js";
import { checkRecipients } from "./recipients.schema.js";
import type { DispatcherMetrics } from "./dispatcher.metrics.js";
import { appOf, isRecipient, notARecipient, type Directory } from "./publish.directory.js";
import { laneOf } from "./publish.lane.js";
import { countRecipients } from "./publish.recipients.js";
import { AppLimitsCache, PUBLISH_RATE_EXCEEDED, PublishRateLimiter } from "./publish.ratelimit.js";
import type { RecipientSource } from "./recipient.source.js";

export interface PublishDeps {
  publishes: PublishRepository;
  directory: Directory;
  recipients: RecipientSource;
  bus: Bus;
  tokenRules: TokenRules;
  logger: Logger;
  now: () => Date;
  // How often WatchPublish re-reads a running publish.
  watchIntervalMs?: number;
  metrics?: DispatcherMetrics;
  // Publishes per second for apps whose max_publish_rate is 0 (HERALD_DEFAULT_PUBLISH_RATE); 0 or
  // absent: such apps are unlimited. See publish.ratelimit.ts.
  defaultPublishRate?: number;
}

const MAX_BATCH = 100;
const MAX_UID = 128;
// Device ids are UUIDs; anything much longer is not one.
const MAX_DEVICE_ID = 64;
const CANCELLABLE = ["queued", "scheduled", "fanning_out", "sending"] as const;

// Time-ordered ids: listing by id lists by creation, and ids never collide across replicas.
export const newPublishId = (now: Date) => `p${now.getTime().toString(36).padStart(9, "0")}${randomBytes(8).toString("hex")}`;

// The publish API. A publish is answered only once it is stored and handed to the bus; the
// fan-out, senders and result aggregation then move it through its states.
export class PublishService {
  private readonly limits: AppLimitsCache;
  private readonly rate: PublishRateLimiter;

  constructor(private readonly deps: PublishDeps) {
    this.limits = new AppLimitsCache(deps.directory, deps.now);
    this.rate = new PublishRateLimiter(deps.directory, this.limits, deps.now, deps.logger, deps.defaultPublishRate ?? 0);
  }

  binding(): ServiceBinding {
    return bindService("herald.dispatch.v1.DispatchService", dispatch.DispatchServiceService, {
      publish: { access: "server", handle: (req, ctx) => this.publish(req, ctx.app, "") },
      publishBatch: { access: "server", handle: (req, ctx) => this.publishBatch(req, ctx) },
      getPublish: { access: "server", handle: async (req, ctx) => ({ publish: toPublishProto(await this.get(ctx.app, req.id)) }) },
      listPublishes: { access: "server", handle: (req, ctx) => this.list(req, ctx) },
      cancelPublish: { access: "server", handle: (req, ctx) => this.cancel(req, ctx) },
      watchPublish: { access: "server", handle: (req, ctx, send) => this.watch(req, ctx, send) },
      reportReceipt: { access: "client", handle: (req, ctx) => this.receipt(req, ctx) },
    });
  }

  async publish(req: dispatch.PublishRequest, app: string, field: string): Promise<dispatch.PublishResponse> {
    const now = this.deps.now();
    const at = (f: string) => (field ? `${field}.${f}` : f);
    const { recipients, providers } = wrapField(field, () => checkRecipients(req.recipients, this.deps.tokenRules));
    const priority = req.priority || dispatch.Priority.PRIORITY_NORMAL;
    wrapField(field, () => checkNotification(req.notification, providers, priority));
    if (req.uid.length > MAX_UID) throw invalidArgument(at("uid"), `at most ${MAX_UID} characters`);
    if (req.expireAt && req.expireAt.getTime() <= now.getTime()) throw invalidArgument(at("expire_at"), "must be in the future", "EXPIRED");
    // A past send_at means now, but one before 1970 would be stored and then fail every answer
    // that shows it (a Timestamp before the epoch with a fraction has negative nanos).
    if (req.sendAt && !(req.sendAt.getTime() >= 0)) throw invalidArgument(at("send_at"), "must be a time after 1970-01-01");
    if (req.sendAt && req.expireAt && req.sendAt.getTime() >= req.expireAt.getTime()) throw invalidArgument(at("send_at"), "must be before expire_at");
    const labels = wrapField(field, () => checkStringMap(req.labels, "labels"));
    const target = recipients.target;
    if (target?.$case === "tokens" || target?.$case === "native") {
      // Raw tokens of a provider without a sender would be cut into jobs nobody consumes.
      checkProviderConfigured(await appOf(this.deps.directory, app), providers[0]!, at(`recipients.${target.$case}.provider`));
    }
    const accepted: dispatch.PublishRequest = { ...req, recipients, priority, labels };
    if (req.validateOnly) {
      const targeted = await countRecipients(this.deps.recipients, app, accepted);
      return { id: "", duplicate: false, publish: toPublishProto({ ...draft(app, accepted, now), counts: { ...emptyCounts(), targeted } }) };
    }

    // Counted only once the request is known good (validate_only and refused input take no slot).
    const repeat = await this.admit(app, req.uid);
    if (repeat) return repeat;
    const scheduled = !!req.sendAt && req.sendAt.getTime() > now.getTime();
    const record: PublishRecord = { ...draft(app, accepted, now), id: newPublishId(now), state: scheduled ? "scheduled" : "queued" };
    const { publish, created } = await this.deps.publishes.create(record);
    // The Publish call's span (the root of the publish's trace) names the publish, so Jaeger finds
    // the trace by herald.publish_id from its first span on. A batch's call holds many: not there.
    if (!field) annotateSpan({ "herald.publish_id": publish.id });
    if (!created) return { id: publish.id, duplicate: true, publish: toPublishProto(publish) };
    this.deps.metrics?.publishAccepted(app, scheduled);
    if (!scheduled) await this.handOn(publish);
    return { id: publish.id, duplicate: false, publish: toPublishProto(publish) };
  }

  // Takes the publish out of the app's rate window (publish.ratelimit.ts). A repeat of an existing
  // publish (same uid) is never refused: over the limit, it is answered with that publish
  // (duplicate: true), so a client retrying after a lost answer always learns its id. Under the
  // limit a repeat takes a slot like any publish: telling it apart first would cost a read on
  // every publish, and a repeat does the same work (a store round trip) as a new one.
  private async admit(app: string, uid: string): Promise<dispatch.PublishResponse | undefined> {
    try {
      await this.rate.admit(app);
      return undefined;
    } catch (err) {
      if (!(err instanceof HeraldError) || err.reason !== PUBLISH_RATE_EXCEEDED || !uid) throw err;
      const [existing] = await this.deps.publishes.list(app, { uid }, { limit: 1 });
      if (!existing) throw err;
      return { id: existing.id, duplicate: true, publish: toPublishProto(existing) };
    }
  }

  // Puts an accepted publish on its lane's publishes topic (herald.publishes, or
  // herald.publishes.urgent: publish.lane.ts) for the fan-out. If the bus refuses, the publish
  // is marked failed (so nothing reported as failed is delivered later) and the caller is told.
  async handOn(publish: PublishRecord): Promise<void> {
    try {
      const request = dispatch.PublishRequest.decode(publish.request);
      // The lane rule as cached for the rate limit: a changed rule applies within LIMIT_CACHE_MS.
      const limits = await this.limits.of(publish.app);
      await this.deps.bus.publish(BusTopics.publishesOf(laneOf(request, limits?.urgentMaxTargets)), [
        { key: publish.id, value: events.PublishAccepted.encode({ app: publish.app, publishId: publish.id, request, acceptedAt: this.deps.now() }).finish() },
      ]);
    } catch (err) {
      this.deps.logger.error({ err, publish: publish.id }, "could not hand the publish to the bus");
      await this.deps.publishes.transition(publish.app, publish.id, ["queued"], "failed", { error: "the bus did not accept the publish", finishedAt: this.deps.now(), now: this.deps.now() });
      throw new HeraldError(Status.UNAVAILABLE, "BUS_UNAVAILABLE", "the publish could not be queued; retry with the same uid");
    }
  }

  async publishBatch(req: dispatch.PublishBatchRequest, ctx: CallContext): Promise<dispatch.PublishBatchResponse> {
    if (req.requests.length === 0 || req.requests.length > MAX_BATCH) throw invalidArgument("requests", `1 to ${MAX_BATCH} publishes per batch`);
    const results: dispatch.PublishResult[] = [];
    for (const [i, r] of req.requests.entries()) {
      try {
        results.push({ result: { $case: "accepted", value: await this.publish(r, ctx.app, `requests[${i}]`) } });
      } catch (err) {
        if (!(err instanceof HeraldError)) throw err;
        results.push({ result: { $case: "error", value: { code: err.code, reason: err.reason, message: err.message, field: err.field ?? "" } } });
      }
    }
    return { results };
  }

  async list(req: dispatch.ListPublishesRequest, ctx: CallContext): Promise<dispatch.ListPublishesResponse> {
    const limit = pageLimit(req.page?.limit);
    const states = req.states.map((s, i) => {
      const name = stateName(s);
      if (!name) throw invalidArgument(`states[${i}]`, "unknown state");
      return name;
    });
    const found = await this.deps.publishes.list(
      ctx.app,
      { ...(states.length ? { states } : {}), ...(req.uid ? { uid: req.uid } : {}), ...(Object.keys(req.labels).length ? { labels: req.labels } : {}) },
      { ...(req.page?.cursor ? { before: req.page.cursor } : {}), limit: limit + 1 },
    );
    const page = found.slice(0, limit);
    return { publishes: page.map(toPublishProto), nextCursor: found.length > limit ? (page.at(-1)?.id ?? "") : "", hasMore: found.length > limit };
  }

  async cancel(input: dispatch.CancelPublishRequest, ctx: CallContext): Promise<dispatch.CancelPublishResponse> {
    const req = { id: input.id || (await this.idOfUid(ctx.app, input.uid, "uid")) };
    const current = await this.get(ctx.app, req.id);
    // Cancelling again re-sends the messages a failed earlier attempt may not have sent.
    if (FINAL_STATES.includes(current.state) && current.state !== "cancelled") return { publish: toPublishProto(current) };
    const now = this.deps.now();
    let cancelled = (await this.deps.publishes.transition(ctx.app, req.id, [...CANCELLABLE], "cancelled", { finishedAt: now, now })) ?? (await this.get(ctx.app, req.id));
    if (cancelled.state !== "cancelled") return { publish: toPublishProto(cancelled) };
    if (current.state === "queued" || current.state === "scheduled") {
      // Nothing was handed on yet: every recipient counts as targeted and cancelled (once, even
      // when the cancel is repeated). A fan-out that was running counts its rest itself.
      const n = await countRecipients(this.deps.recipients, ctx.app, dispatch.PublishRequest.decode(cancelled.request));
      cancelled = (await this.deps.publishes.countResult(ctx.app, req.id, "cancel:unsent", { targeted: n, cancelled: n }, now)).publish ?? cancelled;
    }
    // Fan-out and senders stop on this message; deliveries already handed to a provider stay sent.
    await this.deps.bus.publish(BusTopics.control, [{ key: req.id, value: events.PublishControl.encode({ app: ctx.app, publishId: req.id, cancelled: true }).finish() }]);
    await announceFinished(this.deps.bus, cancelled, "cancelled", now);
    return { publish: toPublishProto(cancelled) };
  }

  async watch(req: dispatch.WatchPublishRequest, ctx: CallContext, send: (r: dispatch.WatchPublishResponse) => Promise<void>): Promise<void> {
    let last = "";
    for (;;) {
      const publish = await this.get(ctx.app, req.id);
      const shown = toPublishProto(publish);
      const fingerprint = JSON.stringify(dispatch.Publish.toJSON({ ...shown, updatedAt: undefined, request: undefined }));
      if (fingerprint !== last) {
        await send({ publish: shown });
        last = fingerprint;
      }
      if (FINAL_STATES.includes(publish.state)) return;
      await waitOrAbort(this.deps.watchIntervalMs ?? 250, ctx.signal);
    }
  }

  // Receipts come from app SDKs with a CLIENT key, which anyone can pull out of an app: one counts
  // only for a device of the app that is among the publish's recipients, once per kind.
  async receipt(input: dispatch.ReportReceiptRequest, ctx: CallContext): Promise<dispatch.ReportReceiptResponse> {
    const req = { ...input, publishId: input.publishId || (await this.idOfUid(ctx.app, input.publishUid, "publish_uid")) };
    if (!req.deviceId) throw invalidArgument("device_id", "is required");
    if (req.deviceId.length > MAX_DEVICE_ID) throw invalidArgument("device_id", `at most ${MAX_DEVICE_ID} characters`, "INVALID_DEVICE_ID");
    const kind = req.status === dispatch.ReceiptStatus.RECEIPT_STATUS_DELIVERED ? "deliveredReceipts" : req.status === dispatch.ReceiptStatus.RECEIPT_STATUS_OPENED ? "openedReceipts" : undefined;
    if (!kind) throw invalidArgument("status", "must be RECEIPT_STATUS_DELIVERED or RECEIPT_STATUS_OPENED");
    const publish = await this.get(ctx.app, req.publishId, "publish_id");
    const device = await this.deps.directory.devices.get(ctx.app, req.deviceId);
    if (!device) throw notFound("device", req.deviceId);
    if (!(await isRecipient(this.deps.directory, dispatch.PublishRequest.decode(publish.request), device))) throw notARecipient(req.deviceId);
    // One receipt of each kind per device and publish counts; repeats are acknowledged and ignored.
    if (await this.deps.publishes.markResult(ctx.app, req.publishId, `receipt:${kind}:${req.deviceId}`)) {
      await this.deps.publishes.addCounts(ctx.app, req.publishId, { [kind]: 1 }, this.deps.now());
      await this.deps.bus.publish(BusTopics.receipts, [{ key: req.publishId, value: events.Receipt.encode({ app: ctx.app, publishId: req.publishId, deviceId: req.deviceId, status: req.status, at: req.at ?? this.deps.now() }).finish() }]);
    }
    return {};
  }

  // The publish a uid (the idempotency key, Centrifugo's uid) was accepted as; "" without a uid,
  // which get() then refuses as a missing id.
  private async idOfUid(app: string, uid: string | undefined, field: string): Promise<string> {
    if (!uid) return "";
    if (uid.length > MAX_UID) throw invalidArgument(field, `at most ${MAX_UID} characters`);
    const [found] = await this.deps.publishes.list(app, { uid }, { limit: 1 });
    if (!found) throw notFound("publish", uid);
    return found.id;
  }

  private async get(app: string, id: string, field = "id"): Promise<PublishRecord> {
    if (!id) throw invalidArgument(field, "is required");
    const publish = await this.deps.publishes.get(app, id);
    if (!publish) throw notFound("publish", id);
    return publish;
  }
}

const emptyCounts = (): PublishRecord["counts"] => ({
  targeted: 0, sent: 0, failed: 0, invalidTokens: 0, expired: 0, cancelled: 0, deadLettered: 0, duplicates: 0, retries: 0, deliveredReceipts: 0, openedReceipts: 0, failedByReason: {},
});

// A publish as it is accepted, before it has an id and a state.
const draft = (app: string, accepted: dispatch.PublishRequest, now: Date): PublishRecord => ({
  id: "",
  app,
  uid: accepted.uid,
  state: "queued",
  request: dispatch.PublishRequest.encode(accepted).finish(),
  labels: accepted.labels,
  counts: emptyCounts(),
  fanoutCursor: "",
  fanoutDone: false,
  sendAt: accepted.sendAt ?? null,
  expireAt: accepted.expireAt ?? null,
  createdAt: now,
  updatedAt: now,
  startedAt: null,
  finishedAt: null,
  error: "",
});

// Batch entries report their errors under requests[i].
function wrapField<T>(prefix: string, fn: () => T): T {
  if (!prefix) return fn();
  try {
    return fn();
  } catch (err) {
    if (err instanceof HeraldError && err.field) throw new HeraldError(err.code, err.reason, err.message.slice(err.field.length + 2), `${prefix}.${err.field}`, err.metadata);
    throw err;
  }
}

function waitOrAbort(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

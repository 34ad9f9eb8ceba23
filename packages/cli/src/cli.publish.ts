// `herald publish` and `herald publishes …`: send notifications and follow them.
import { dispatch } from "@herald/proto";
import type { CommandSpec, OptionSpec, RunContext, Values } from "./cli.commands.js";
import { parseIntArg, parseKeyValues, parseProviderArg, parseTagFilter, table, UsageError, type Output } from "./cli.support.js";

const recipientOptions: Record<string, OptionSpec> = {
  topic: { type: "string", multiple: true, value: "T", help: "devices subscribed to any of these topics (repeatable)" },
  user: { type: "string", multiple: true, value: "U", help: "every device of these users (repeatable)" },
  device: { type: "string", multiple: true, value: "ID", help: "these device ids (repeatable)" },
  tag: { type: "string", multiple: true, value: "k=v", help: "devices matching every tag condition (repeatable)" },
  token: { type: "string", multiple: true, value: "TOKEN", help: "raw provider tokens, not registered (with --provider)" },
  provider: { type: "string", value: "P", help: "the provider of --token (apns, fcm, hms, webpush)" },
  everyone: { type: "boolean", help: "every device of the app" },
  exclude: { type: "string", multiple: true, value: "ID", help: "never deliver to these device ids" },
};

const notificationOptions: Record<string, OptionSpec> = {
  title: { type: "string", value: "TEXT", help: "alert title" },
  body: { type: "string", value: "TEXT", help: "alert body" },
  data: { type: "string", multiple: true, value: "k=v", help: "custom data (repeatable)" },
  badge: { type: "string", value: "N", help: "badge count" },
  sound: { type: "string", value: "NAME", help: "sound" },
  image: { type: "string", value: "URL", help: "image" },
  link: { type: "string", value: "URL", help: "deep link opened on tap" },
  "collapse-key": { type: "string", value: "K", help: "newer notifications with this key replace older ones" },
  "apns-json": { type: "string", value: "JSON", help: "raw APNs payload (sent as given to APNs devices)" },
  "fcm-json": { type: "string", value: "JSON", help: "raw FCM v1 message without its target" },
  "hms-json": { type: "string", value: "JSON", help: "raw HMS message without its target" },
  "webpush-json": { type: "string", value: "JSON", help: "raw Web Push payload" },
  templated: { type: "boolean", help: "render {{meta.key}}, {{user}}, {{locale}} per device" },
  uid: { type: "string", value: "ID", help: "idempotency key: the same uid never sends twice" },
  priority: { type: "string", value: "high|normal|low", help: "delivery priority (normal)" },
  "expire-in": { type: "string", value: "SECONDS", help: "give up delivering after this long" },
  "send-in": { type: "string", value: "SECONDS", help: "deliver this many seconds from now" },
  wait: { type: "boolean", help: "follow the publish with a progress bar until it is done" },
};

const json = (flag: string, value: string | undefined) => {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value) as Record<string, unknown>;
  } catch {
    throw new UsageError(`${flag} is not valid JSON`);
  }
};

function recipients(v: Values): dispatch.Recipients {
  const kinds: Array<dispatch.Recipients["target"]> = [];
  if (v.strs("topic").length) kinds.push({ $case: "topics", value: { values: v.strs("topic") } });
  if (v.strs("user").length) kinds.push({ $case: "users", value: { values: v.strs("user") } });
  if (v.strs("device").length) kinds.push({ $case: "deviceIds", value: { values: v.strs("device") } });
  const tags = parseTagFilter(v.strs("tag"));
  if (tags) kinds.push({ $case: "tags", value: tags });
  if (v.strs("token").length) {
    if (!v.str("provider")) throw new UsageError("--token needs --provider");
    kinds.push({ $case: "tokens", value: { provider: parseProviderArg(v.str("provider")!), tokens: v.strs("token") } });
  }
  if (v.bool("everyone")) kinds.push({ $case: "all", value: {} });
  if (kinds.length !== 1) throw new UsageError("name exactly one kind of recipient: --topic, --user, --device, --tag, --token or --everyone");
  return { target: kinds[0], excludeDeviceIds: v.strs("exclude"), providers: [], platforms: [] };
}

function request(v: Values): dispatch.PublishRequest {
  const seconds = (flag: string) => parseIntArg(v.str(flag), `--${flag}`, 1);
  const expireIn = seconds("expire-in");
  const sendIn = seconds("send-in");
  const priority = { high: dispatch.Priority.PRIORITY_HIGH, normal: dispatch.Priority.PRIORITY_NORMAL, low: dispatch.Priority.PRIORITY_LOW }[v.str("priority") ?? "normal"];
  if (priority === undefined) throw new UsageError("--priority must be high, normal or low");
  const hasAlert = ["title", "body", "data", "badge", "sound", "image", "link", "collapse-key"].some((k) => v.has(k));
  const apns = json("--apns-json", v.str("apns-json"));
  const fcm = json("--fcm-json", v.str("fcm-json"));
  const hms = json("--hms-json", v.str("hms-json"));
  const webpush = json("--webpush-json", v.str("webpush-json"));
  return dispatch.PublishRequest.fromPartial({
    recipients: recipients(v),
    notification: {
      ...(hasAlert
        ? {
            alert: {
              title: v.str("title") ?? "",
              body: v.str("body") ?? "",
              data: parseKeyValues(v.strs("data"), "--data"),
              badge: parseIntArg(v.str("badge"), "--badge", 0),
              sound: v.str("sound") ?? "",
              image: v.str("image") ?? "",
              deepLink: v.str("link") ?? "",
              collapseKey: v.str("collapse-key") ?? "",
            },
          }
        : {}),
      ...(apns ? { apns: { headers: {}, payload: apns } } : {}),
      ...(fcm ? { fcm: { message: fcm } } : {}),
      ...(hms ? { hms: { message: hms } } : {}),
      ...(webpush ? { webpush: { headers: {}, payload: webpush } } : {}),
      templated: v.bool("templated"),
    },
    uid: v.str("uid") ?? "",
    priority,
    ...(expireIn ? { expireAt: new Date(Date.now() + expireIn * 1000) } : {}),
    ...(sendIn ? { sendAt: new Date(Date.now() + sendIn * 1000) } : {}),
  });
}

const FINAL = [dispatch.PublishState.PUBLISH_STATE_DONE, dispatch.PublishState.PUBLISH_STATE_CANCELLED, dispatch.PublishState.PUBLISH_STATE_EXPIRED, dispatch.PublishState.PUBLISH_STATE_FAILED];
const stateOf = (p: dispatch.Publish) => dispatch.publishStateToJSON(p.state).replace("PUBLISH_STATE_", "").toLowerCase();

// One line: [#######.............] 350/1000 sent 340 failed 10 (sending)
export function progressLine(p: dispatch.Publish, width = 30): string {
  const c = p.counts;
  const total = c?.targeted ?? 0;
  const doneCount = (c?.sent ?? 0) + (c?.failed ?? 0) + (c?.invalidTokens ?? 0) + (c?.expired ?? 0) + (c?.cancelled ?? 0) + (c?.deadLettered ?? 0);
  const filled = total ? Math.round((doneCount / total) * width) : 0;
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}] ${doneCount}/${total} sent ${c?.sent ?? 0} failed ${(c?.failed ?? 0) + (c?.invalidTokens ?? 0) + (c?.deadLettered ?? 0)} (${stateOf(p)})`;
}

function summary(p: dispatch.Publish): string {
  const c = p.counts!;
  const rows: string[][] = [
    ["state", stateOf(p)],
    ["targeted", String(c.targeted)],
    ["sent", String(c.sent)],
    ["failed", String(c.failed)],
    ["invalid tokens", String(c.invalidTokens)],
    ["expired", String(c.expired)],
    ["cancelled", String(c.cancelled)],
    ["dead-lettered", String(c.deadLettered)],
    ["retries", String(c.retries)],
    ["duplicates", String(c.duplicates)],
    ...Object.entries(c.failedByReason).map(([reason, n]) => [`  ${reason}`, String(n)]),
  ];
  return `publish ${p.id}\n${table(["", ""], rows).split("\n").slice(1).join("\n")}`;
}

async function follow(ctx: RunContext, id: string): Promise<dispatch.Publish> {
  let last: dispatch.Publish | undefined;
  const tty = !ctx.json && process.stderr.isTTY;
  for await (const update of ctx.clients.dispatch.watchPublish({ id }, { deadlineMs: 24 * 3600_000 })) {
    last = update.publish!;
    if (!ctx.json) (tty ? process.stderr.write(`\r${progressLine(last)}`) : ctx.io.err(progressLine(last)));
  }
  if (tty) process.stderr.write("\n");
  return last!;
}

export const PUBLISH_COMMANDS: CommandSpec[] = [
  {
    name: "publish",
    summary: "send a notification to topics, users, devices, a tag filter, raw tokens or everyone",
    maxArgs: 0,
    options: { ...recipientOptions, ...notificationOptions },
    examples: [
      'herald publish --topic news --title "Hello" --body "World" --wait',
      "herald publish --user alice --body 'Your order shipped' --link app://orders/42",
      "herald publish --token abc... --provider fcm --fcm-json '{\"data\":{\"k\":\"v\"}}'",
      "herald publish --topic match-42 --templated --body '{{meta.name}}, the {{meta.team}} just won!'",
    ],
    auth: "app",
    async run(ctx, v): Promise<Output> {
      const res = await ctx.clients.dispatch.publish(request(v));
      if (!v.bool("wait")) return { json: dispatch.PublishResponse.toJSON(res), text: `publish ${res.id}${res.duplicate ? " (already accepted with this uid)" : ""}` };
      const final = FINAL.includes(res.publish!.state) ? res.publish! : await follow(ctx, res.id);
      return { json: dispatch.Publish.toJSON(final), text: summary(final), exitCode: final.state === dispatch.PublishState.PUBLISH_STATE_DONE ? 0 : 1 };
    },
  },
  {
    name: "publishes get",
    summary: "show a publish and its counts",
    args: "<publish-id>",
    minArgs: 1,
    maxArgs: 1,
    options: { wait: { type: "boolean", help: "follow it until it is done" } },
    examples: ["herald publishes get p0abc...", "herald publishes get p0abc... --wait"],
    auth: "app",
    async run(ctx, v, [id]): Promise<Output> {
      const p = v.bool("wait") ? await follow(ctx, id!) : (await ctx.clients.dispatch.getPublish({ id: id! })).publish!;
      return { json: dispatch.Publish.toJSON(p), text: summary(p) };
    },
  },
  {
    name: "publishes list",
    summary: "list publishes, newest first",
    maxArgs: 0,
    options: { uid: { type: "string", value: "ID", help: "the publish with this uid" }, limit: { type: "string", value: "N", help: "page size" }, cursor: { type: "string", value: "C", help: "continue after this cursor" } },
    examples: ["herald publishes list", "herald publishes list --uid campaign-7"],
    auth: "app",
    async run(ctx, v): Promise<Output> {
      const res = await ctx.clients.dispatch.listPublishes({ uid: v.str("uid") ?? "", page: { limit: parseIntArg(v.str("limit"), "--limit", 1, 1000) ?? 0, cursor: v.str("cursor") ?? "" } });
      return {
        json: dispatch.ListPublishesResponse.toJSON(res),
        text: table(["ID", "STATE", "TARGETED", "SENT", "FAILED", "CREATED"], res.publishes.map((p) => [p.id, stateOf(p), String(p.counts?.targeted ?? 0), String(p.counts?.sent ?? 0), String(p.counts?.failed ?? 0), p.createdAt?.toISOString() ?? ""])),
        ...(res.hasMore ? { note: `more: --cursor ${res.nextCursor}` } : {}),
      };
    },
  },
  {
    name: "publishes cancel",
    summary: "stop a scheduled or running publish",
    args: "<publish-id>",
    minArgs: 1,
    maxArgs: 1,
    options: {},
    examples: ["herald publishes cancel p0abc..."],
    auth: "app",
    async run(ctx, _v, [id]): Promise<Output> {
      const res = await ctx.clients.dispatch.cancelPublish({ id: id! });
      return { json: dispatch.CancelPublishResponse.toJSON(res), text: summary(res.publish!) };
    },
  },
];

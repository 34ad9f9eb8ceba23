import { ScalarType, type DescEnum, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { commentOf, type RpcCatalog } from "./rpc.catalog.js";

type Schema = Record<string, unknown>;

// A route that is not an RPC (the compatibility APIs), described by the route itself.
export interface ExtraOperation {
  method: string;
  // The router's pattern, "/v1/instances/:instance/users/:user".
  pattern: string;
  tag: string;
  summary: string;
  // How it authenticates: the API's own scheme (none, basic, the app's secret) is in the summary.
  security?: "none" | "basic";
}

// ---------------------------------------------------------------------------------------------
// What the services refuse, as JSON Schema. The descriptors give the shape of proto3 JSON; what
// the services check on top of it (packages/store/src/domain.rules.ts, the dispatcher's
// recipients.schema.ts, notification.payload.ts and publish.service.ts, the registry's and the
// topic service's *.service.ts) is in the two tables below, keyed by message and field, so a new
// field is documented from its descriptor alone and a rule is written once for every request it
// appears in. A rule the schema cannot say (a device that must exist: 404; a rule across
// fields; an app's own limits and providers) is said in the field's description.
// ---------------------------------------------------------------------------------------------

interface FieldRule {
  // The service refuses the field absent or empty (proto3 JSON cannot tell the two apart).
  required?: boolean;
  // Keywords for the field's own schema (minLength, maxItems, maxProperties, pattern, ...).
  schema?: Schema;
  // Keywords for each item of a list, or each value of a map.
  items?: Schema;
  // Enum values the service refuses (for an enum field, or each item of a list of enums).
  refuse?: string[];
  // For a message field: rules of the nested message's fields that hold in this place only (the
  // message is inlined here), and keywords for the nested object itself (anyOf, ...).
  fields?: Record<string, FieldRule>;
  object?: Schema;
  // For a list of messages: the items are decoded but validated one by one, each refusal
  // reported in the answer (PublishBatch): only what decoding refuses applies to them.
  unchecked?: boolean;
  // What the service checks that the schema does not say.
  note?: string;
}

interface MessageRule {
  // This oneof must be set: exactly one of its fields.
  exactlyOne?: string;
  // Keywords for the message's object schema (anyOf / oneOf across fields).
  schema?: Schema;
  note?: string;
}

const UNSPECIFIED = {
  provider: ["PROVIDER_UNSPECIFIED"],
  platform: ["PLATFORM_UNSPECIFIED"],
};

// domain.rules.ts TOPIC_PATTERN.
const TOPIC: Schema = { type: "string", pattern: "^[A-Za-z0-9_\\-=@,.;]{1,164}$" };
// domain.rules.ts checkUserId: 1-164 characters without control characters.
const USER: Schema = { type: "string", minLength: 1, maxLength: 164, pattern: "^[^\\u0000-\\u001f\\u007f]*$" };
// An optional user: empty means none.
const USER_OR_NONE: Schema = { type: "string", maxLength: 164, pattern: "^[^\\u0000-\\u001f\\u007f]*$" };
// domain.rules.ts checkStringMap: at most 64 entries; keys 1-64 letters, digits, marks or _ . - :
// (any script: the schema lists ASCII and the Latin letters, the service takes every letter);
// values at most 1024 characters.
const STRING_MAP: FieldRule = {
  schema: { maxProperties: 64, propertyNames: { pattern: "^[A-Za-z0-9_.:\\u00c0-\\u00d6\\u00d8-\\u00f6\\u00f8-\\u024f-]{1,64}$" } },
  items: { maxLength: 1024 },
  note: "At most 64 entries; keys are 1-64 letters (of any script), digits, marks or _ . - :; values at most 1024 characters.",
};
// domain.rules.ts checkLocale: a BCP 47 tag (the schema gives the common language[-Script][-REGION] form).
const LOCALE: Schema = { type: "string", pattern: "^(([A-Za-z]{2,3}|[A-Za-z]{5,8})(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?)?$" };
// domain.rules.ts checkTimezone: an IANA time zone this server knows (empty: none).
const TIMEZONE: Schema = { type: "string", enum: ["", ...new Set(["UTC", ...Intl.supportedValuesOf("timeZone")])] };
// domain.rules.ts pageLimit: 1..1000, 0 the default.
const PAGE: FieldRule = { fields: { limit: { schema: { minimum: 0, maximum: 1000 } } } };

// domain.rules.ts normalizeToken: a token is valid for its provider only. Web Push: the
// PushSubscription JSON; the schema gives its compact form on the default allowed push services
// (the service takes any spacing, and the hosts of its HERALD_WEBPUSH_ALLOWED_HOSTS instead:
// 400 ENDPOINT_NOT_ALLOWED for another).
const TOKEN: Record<string, Schema> = {
  PROVIDER_APNS: { type: "string", pattern: "^[0-9a-fA-F]{64}$" },
  PROVIDER_FCM: { type: "string", minLength: 1, maxLength: 4096, pattern: "^[^\\s\\ufeff]+$" },
  PROVIDER_HMS: { type: "string", minLength: 1, maxLength: 4096, pattern: "^[^\\s\\ufeff]+$" },
  PROVIDER_WEBPUSH: {
    type: "string",
    pattern: '^\\{"endpoint":"https://(fcm\\.googleapis\\.com|[a-z0-9-]{1,63}\\.push\\.services\\.mozilla\\.com|web\\.push\\.apple\\.com|[a-z0-9-]{1,63}\\.notify\\.windows\\.com)/[A-Za-z0-9_:/-]{1,200}","keys":\\{"p256dh":"[A-Za-z0-9_-]{87}","auth":"[A-Za-z0-9_-]{22}"\\}\\}$',
  },
};
// By name or number (proto3 JSON takes both).
const PROVIDER_NUMBER: Record<string, number> = { PROVIDER_APNS: 1, PROVIDER_FCM: 2, PROVIDER_HMS: 3, PROVIDER_WEBPUSH: 4 };
const PLATFORMS_OF: Record<string, Array<string | number>> = {
  PROVIDER_APNS: ["PLATFORM_IOS", 1],
  PROVIDER_FCM: ["PLATFORM_ANDROID", "PLATFORM_IOS", "PLATFORM_WEB", 1, 2, 3],
  PROVIDER_HMS: ["PLATFORM_ANDROID", 2],
  PROVIDER_WEBPUSH: ["PLATFORM_WEB", 3],
};
const TOKEN_NOTE =
  "APNs: 64 hexadecimal characters; FCM/HMS: 1-4096 characters without spaces; Web Push: the PushSubscription JSON {\"endpoint\": an https URL of an allowed push service, \"keys\": {\"p256dh\": 65 bytes base64url, \"auth\": 16 bytes base64url}}; the endpoint's host one the server allows (HERALD_WEBPUSH_ALLOWED_HOSTS, by default FCM's, Mozilla's, Apple's and Microsoft's push services; else 400 ENDPOINT_NOT_ALLOWED).";
// One branch per provider: the token (or each token) as that provider's, and the platforms it runs on.
const byProvider = (token: string, opts: { list?: { minItems: number; maxItems: number }; platform?: string } = {}): Schema => ({
  oneOf: Object.keys(TOKEN).map((p) => ({
    properties: {
      provider: { enum: [p, PROVIDER_NUMBER[p]] },
      [token]: opts.list ? { ...opts.list, items: TOKEN[p] } : TOKEN[p],
      ...(opts.platform ? { [opts.platform]: { enum: PLATFORMS_OF[p] } } : {}),
    },
  })),
});

// A time that is in the future whenever the request is made (year 2100 on), and one before it.
const TIME_REST = "-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";
const FUTURE_TIME = `^(2[1-9][0-9]{2}|[3-9][0-9]{3})${TIME_REST}`;
const PRESENT_TIME = `^(?!0000)([01][0-9]{3}|20[0-9]{2})${TIME_REST}`;

// A raw FCM / HMS message carries no target: Herald sets it from the recipients.
const NO_TARGET: Schema = { propertyNames: { not: { enum: ["token", "topic", "condition"] } } };

// dispatcher recipients.schema.ts LIMITS.
const RECIPIENT_LISTS = { deviceIds: 10_000, users: 1000, topics: 100, tokens: 1000, excluded: 10_000, tagConditions: 20 };

const FIELD_RULES: Record<string, FieldRule> = {
  // herald.common.v1
  "herald.common.v1.ProviderToken.provider": { required: true, refuse: UNSPECIFIED.provider },
  "herald.common.v1.ProviderToken.token": { required: true, note: TOKEN_NOTE },
  "herald.common.v1.DeviceFilter.users": { items: USER },
  "herald.common.v1.DeviceFilter.providers": { refuse: UNSPECIFIED.provider },
  "herald.common.v1.DeviceFilter.platforms": { refuse: UNSPECIFIED.platform },
  "herald.common.v1.TagMatch.key": { required: true },

  // herald.registry.v1.RegistryService
  "herald.registry.v1.RegisterDeviceRequest.provider": { required: true, refuse: UNSPECIFIED.provider, note: "A provider the app has credentials for (else 400 PROVIDER_NOT_CONFIGURED)." },
  "herald.registry.v1.RegisterDeviceRequest.platform": { required: true, refuse: UNSPECIFIED.platform, note: "One the provider serves: APNs iOS; FCM Android, iOS or web; HMS Android; Web Push web." },
  "herald.registry.v1.RegisterDeviceRequest.token": { required: true, note: TOKEN_NOTE },
  "herald.registry.v1.RegisterDeviceRequest.user": { schema: USER_OR_NONE },
  "herald.registry.v1.RegisterDeviceRequest.topics": { items: TOPIC, note: "At most the app's max_topics_per_device (429 TOO_MANY_TOPICS); private- topics with a SERVER key only (403)." },
  "herald.registry.v1.RegisterDeviceRequest.tags": STRING_MAP,
  "herald.registry.v1.RegisterDeviceRequest.meta": STRING_MAP,
  "herald.registry.v1.RegisterDeviceRequest.locale": { schema: LOCALE },
  "herald.registry.v1.RegisterDeviceRequest.timezone": { schema: TIMEZONE },
  "herald.registry.v1.GetDeviceRequest.id": { required: true, note: "An id of the app's devices (else 404)." },
  "herald.registry.v1.UpdateDevicesRequest.filter": {
    required: true,
    object: { anyOf: ["ids", "users", "providerTokens"].map((f) => ({ required: [f], properties: { [f]: { type: "array", minItems: 1 } } })) },
    note: "Must name the devices with ids, users or provider_tokens (its topics are not used here).",
  },
  "herald.registry.v1.RemoveDevicesRequest.filter": {
    required: true,
    object: { anyOf: ["ids", "users", "providerTokens"].map((f) => ({ required: [f], properties: { [f]: { type: "array", minItems: 1 } } })) },
    note: "Must name the devices with ids, users or provider_tokens (its topics are not used here).",
  },
  "herald.registry.v1.ListDevicesRequest.filter": { fields: { topics: { items: TOPIC } } },
  "herald.registry.v1.ListDevicesRequest.page": PAGE,
  "herald.registry.v1.UserUpdate.user": { schema: USER_OR_NONE },
  "herald.registry.v1.MetaUpdate.meta": STRING_MAP,
  "herald.registry.v1.TagsUpdate.tags": STRING_MAP,
  "herald.registry.v1.TopicsUpdate.topics": { items: TOPIC },
  "herald.registry.v1.BindUserRequest.device_id": { required: true, note: "An id of the app's devices (else 404)." },
  "herald.registry.v1.BindUserRequest.user_token": { required: true, note: "A user token of the app that verifies (else 401)." },
  "herald.registry.v1.UnbindUserRequest.device_id": { required: true, note: "An id of the app's devices (else 404)." },
  "herald.registry.v1.DeleteUserRequest.user": { required: true, schema: USER },
  "herald.registry.v1.CreateUserTokenRequest.user": { required: true, schema: USER },
  "herald.registry.v1.CreateUserTokenRequest.ttl_seconds": { schema: { minimum: 0, maximum: 30 * 24 * 3600, pattern: "^(0|[1-9][0-9]{0,5}|1[0-9]{6}|2[0-4][0-9]{5}|25[0-8][0-9]{4}|259[01][0-9]{3}|2592000)$" } },
  "herald.registry.v1.ListTokenFeedbackRequest.page": PAGE,

  // herald.topic.v1.TopicService
  "herald.topic.v1.UpdateDeviceTopicsRequest.device_id": { required: true, note: "An id of the app's devices (else 404)." },
  "herald.topic.v1.UpdateDeviceTopicsRequest.op": { required: true, refuse: ["TOPIC_OP_UNSPECIFIED"] },
  "herald.topic.v1.UpdateDeviceTopicsRequest.topics": { items: TOPIC, note: "At most the app's max_topics_per_device after the update (429); private- topics with a SERVER key only (403)." },
  "herald.topic.v1.ListDeviceTopicsRequest.topics": { items: TOPIC },
  "herald.topic.v1.ListDeviceTopicsRequest.page": PAGE,
  "herald.topic.v1.UpdateUserTopicsRequest.user": { required: true, schema: USER },
  "herald.topic.v1.UpdateUserTopicsRequest.op": { required: true, refuse: ["TOPIC_OP_UNSPECIFIED"] },
  "herald.topic.v1.UpdateUserTopicsRequest.topics": { items: TOPIC, note: "At most the app's max_topics_per_device after the update (429)." },
  "herald.topic.v1.ListUserTopicsRequest.users": { items: USER },
  "herald.topic.v1.ListUserTopicsRequest.topics": { items: TOPIC },
  "herald.topic.v1.ListUserTopicsRequest.page": PAGE,
  "herald.topic.v1.GetTopicStatsRequest.topics": { required: true, items: TOPIC, schema: { maxItems: 100 }, note: "1-100 topics (repeats count towards the limit, and are answered once)." },
  "herald.topic.v1.ListTopicsRequest.page": PAGE,
  "herald.topic.v1.ListTopicUsersRequest.topic": { required: true, schema: TOPIC },
  "herald.topic.v1.ListTopicUsersRequest.page": PAGE,
  "herald.topic.v1.StreamRecipientsRequest.device_ids": { fields: { values: { schema: { maxItems: 10_000 } } } },
  "herald.topic.v1.StreamRecipientsRequest.users": { fields: { values: { required: true, items: USER } } },
  "herald.topic.v1.StreamRecipientsRequest.topics": { fields: { values: { required: true, items: TOPIC } } },
  "herald.topic.v1.StreamRecipientsRequest.tags": { fields: { all: { required: true } } },
  "herald.topic.v1.StreamRecipientsRequest.providers": { refuse: UNSPECIFIED.provider },
  "herald.topic.v1.StreamRecipientsRequest.platforms": { refuse: UNSPECIFIED.platform },
  "herald.topic.v1.StreamRecipientsRequest.batch_size": { schema: { minimum: 0, maximum: 1000 } },

  // herald.dispatch.v1.DispatchService
  "herald.dispatch.v1.PublishRequest.recipients": { required: true },
  "herald.dispatch.v1.PublishRequest.notification": {
    required: true,
    note: "Needs a payload for the providers the recipients reach (the alert serves every provider; a raw payload only its own): else 400 PAYLOAD_REQUIRED. Each provider's payload at most 4096 bytes (Web Push 3993, APNs VoIP 5120): else 400 PAYLOAD_TOO_LARGE. Raw payloads nest at most 30 levels.",
  },
  "herald.dispatch.v1.PublishRequest.uid": { schema: { maxLength: 128 } },
  "herald.dispatch.v1.PublishRequest.expire_at": { schema: { pattern: FUTURE_TIME }, note: "Must be in the future (the schema says: from year 2100 on) and after send_at." },
  "herald.dispatch.v1.PublishRequest.send_at": { schema: { pattern: PRESENT_TIME }, note: "Before expire_at (the schema says: before year 2100); a time past means now." },
  "herald.dispatch.v1.PublishRequest.labels": STRING_MAP,
  "herald.dispatch.v1.PublishBatchRequest.requests": {
    required: true,
    schema: { maxItems: 100 },
    unchecked: true,
    note: "1-100 publishes. Each is validated on its own, as Publish validates it: a refused one is an error in `results`, the others are accepted.",
  },
  "herald.dispatch.v1.Recipients.device_ids": { fields: { values: { required: true, schema: { maxItems: RECIPIENT_LISTS.deviceIds } } } },
  "herald.dispatch.v1.Recipients.users": { fields: { values: { required: true, items: USER, schema: { maxItems: RECIPIENT_LISTS.users } } } },
  "herald.dispatch.v1.Recipients.topics": { fields: { values: { required: true, items: TOPIC, schema: { maxItems: RECIPIENT_LISTS.topics } } } },
  "herald.dispatch.v1.Recipients.tags": { fields: { all: { required: true, schema: { maxItems: RECIPIENT_LISTS.tagConditions } } } },
  "herald.dispatch.v1.Recipients.tokens": { note: "Raw tokens of a provider the app has credentials for (else 400 PROVIDER_NOT_CONFIGURED)." },
  "herald.dispatch.v1.Recipients.native": { note: "For a provider the app has credentials for (else 400 PROVIDER_NOT_CONFIGURED)." },
  "herald.dispatch.v1.Recipients.exclude_device_ids": { schema: { maxItems: RECIPIENT_LISTS.excluded } },
  "herald.dispatch.v1.Recipients.providers": { refuse: UNSPECIFIED.provider, note: "When set with tokens or native, must include their provider." },
  "herald.dispatch.v1.Recipients.platforms": { refuse: UNSPECIFIED.platform },
  "herald.dispatch.v1.RawTokens.provider": { required: true, refuse: UNSPECIFIED.provider },
  "herald.dispatch.v1.RawTokens.tokens": { required: true, note: `1-${RECIPIENT_LISTS.tokens} tokens of the provider. ${TOKEN_NOTE}` },
  "herald.dispatch.v1.NativeTarget.provider": { required: true, schema: { enum: ["PROVIDER_FCM", "PROVIDER_HMS", 2, 3] } },
  "herald.dispatch.v1.NativeTarget.topic": { schema: { minLength: 1 } },
  "herald.dispatch.v1.NativeTarget.condition": { schema: { minLength: 1 } },
  "herald.dispatch.v1.FcmNotification.message": { schema: NO_TARGET },
  "herald.dispatch.v1.HmsNotification.message": { schema: NO_TARGET },
  "herald.dispatch.v1.GetPublishRequest.id": { required: true, note: "A publish of the app (else 404)." },
  "herald.dispatch.v1.CancelPublishRequest.id": { required: true, note: "A publish of the app (else 404)." },
  "herald.dispatch.v1.WatchPublishRequest.id": { required: true, note: "A publish of the app (else 404)." },
  "herald.dispatch.v1.ListPublishesRequest.states": { refuse: ["PUBLISH_STATE_UNSPECIFIED"] },
  "herald.dispatch.v1.ListPublishesRequest.page": PAGE,
  "herald.dispatch.v1.ReportReceiptRequest.publish_id": { required: true, note: "A publish of the app (else 404)." },
  "herald.dispatch.v1.ReportReceiptRequest.device_id": { required: true, schema: { maxLength: 64 }, note: "A device of the app among the publish's recipients (else 404)." },
  "herald.dispatch.v1.ReportReceiptRequest.status": { required: true, refuse: ["RECEIPT_STATUS_UNSPECIFIED"] },
};

// A payload for some provider: the alert, or a raw payload.
const SOME_PAYLOAD: Schema = {
  anyOf: [
    { required: ["alert"], properties: { alert: { type: "object" } } },
    ...([["apns", "payload"], ["fcm", "message"], ["hms", "message"], ["webpush", "payload"]] as const).map(([provider, payload]) => ({
      required: [provider],
      properties: { [provider]: { type: "object", required: [payload], properties: { [payload]: { type: "object" } } } },
    })),
  ],
};

const MESSAGE_RULES: Record<string, MessageRule> = {
  "herald.registry.v1.RegisterDeviceRequest": { schema: byProvider("token", { platform: "platform" }) },
  "herald.common.v1.ProviderToken": { schema: byProvider("token") },
  "herald.dispatch.v1.Recipients": { exactlyOne: "target" },
  "herald.dispatch.v1.RawTokens": { schema: byProvider("tokens", { list: { minItems: 1, maxItems: RECIPIENT_LISTS.tokens } }) },
  "herald.dispatch.v1.NativeTarget": { exactlyOne: "target" },
  "herald.dispatch.v1.Notification": { schema: SOME_PAYLOAD },
  "herald.topic.v1.StreamRecipientsRequest": { exactlyOne: "target" },
};

// How a message is described: `checked`, a request as the services validate it; `decoded`, a
// request only as the gateway decodes it (PublishBatch's entries); `answer`, a response.
type Mode = "checked" | "decoded" | "answer";

// The OpenAPI 3.1 document of the gateway, built from the same descriptor set as its routes:
// every mapped RPC with its request and response schemas (proto3 JSON) and the comments of the
// .proto files as descriptions, plus the compatibility routes, which describe themselves.
// Requests carry what the services refuse (the tables above); responses are plain proto3 JSON.
// A message described differently as a request and as a response has two schemas, the
// response's named `<type>.Answer` (and `<type>.Decoded` for an entry validated on its own).
export function openApiDocument(catalog: RpcCatalog, extra: ExtraOperation[], version: string): Schema {
  const schemas: Record<string, Schema> = {};
  // One component per message and mode: a request's under its type name, a response's too when
  // the type is in no request (else `<type>.Answer`), a PublishBatch entry's `<type>.Decoded`
  // when rules of the services apply below it (else it is the request's).
  const { ruled, inputs } = requestTypes(catalog);
  const nameOf = (mode: Mode, typeName: string): string => {
    if (mode === "checked") return typeName;
    if (mode === "decoded") return ruled.has(typeName) ? `${typeName}.Decoded` : typeName;
    return inputs.has(typeName) ? `${typeName}.Answer` : typeName;
  };
  const ref = (desc: DescMessage | DescEnum, mode: Mode): Schema => {
    const name = desc.kind === "enum" ? desc.typeName : nameOf(mode, desc.typeName);
    if (!schemas[name]) {
      schemas[name] = {};
      schemas[name] = desc.kind === "enum" ? enumSchema(desc) : messageSchema(desc, mode, ref);
    }
    return { $ref: `#/components/schemas/${name}` };
  };

  const paths: Record<string, Schema> = {};
  for (const m of catalog.methods) {
    const description = commentOf(m.method);
    const input = ref(m.method.input, "checked");
    const inputSchema = schemas[m.method.input.typeName]!;
    paths[`/v1${m.path}`] = {
      post: {
        operationId: `${m.service.name}_${m.method.name}`,
        tags: [m.service.name],
        summary: description.split("\n")[0] || m.method.name,
        ...(description ? { description } : {}),
        // No body is the empty message: required when the empty message is refused.
        requestBody: { required: refusesEmpty(inputSchema), content: { "application/json": { schema: input } } },
        responses: {
          "200": m.serverStreaming
            ? { description: "One JSON message per line, as the server sends them", content: { "application/x-ndjson": { schema: ref(m.method.output, "answer") } } }
            : { description: "OK", content: { "application/json": { schema: ref(m.method.output, "answer") } } },
          default: { $ref: "#/components/responses/Error" },
        },
      },
    };
  }

  for (const op of extra) {
    const params = [...op.pattern.matchAll(/:(\w+)/g)].map((m) => m[1]!);
    const path = op.pattern.replace(/:(\w+)/g, "{$1}");
    const method = op.method.toLowerCase();
    const entry = (paths[path] ??= {}) as Record<string, unknown>;
    const body = COMPAT_BODIES[`${op.method} ${op.pattern}`];
    const bodySchema = body?.schema ?? { type: "object" };
    entry[method] = {
      operationId: `${op.tag}_${method}_${path.replace(/[^a-zA-Z0-9]+/g, "_")}`.replace(/_+$/, ""),
      tags: [op.tag],
      summary: op.summary,
      ...(body?.note ? { description: body.note } : {}),
      security: op.security === "basic" ? [{ basic: [] }] : op.security === "none" ? [] : [{ bearer: [] }],
      ...(params.length ? { parameters: params.map((name) => ({ name, in: "path", required: true, schema: body?.params?.[name] ?? { type: "string" } })) } : {}),
      ...(method === "get" || method === "delete"
        ? {}
        : { requestBody: { ...(refusesEmpty(bodySchema) ? { required: true } : {}), content: { "application/json": { schema: bodySchema }, ...(body?.json ? {} : { "application/x-www-form-urlencoded": { schema: bodySchema } }) } } }),
      responses: {
        "2XX": { description: "Done; the body, if any, is the compatible API's own" },
        default: { description: "A refusal in the compatible API's own error shape", content: { "application/json": { schema: { type: "object" } } } },
      },
    };
  }

  return {
    openapi: "3.1.0",
    info: {
      title: "Herald HTTP API",
      version,
      description:
        "Every gRPC method of Herald as POST /v1/<package>.<Service>/<Method> with proto3 JSON bodies, plus the Pusher Beams, Pusher Channels, gorush, Centrifugo PRO push, Kinvey and Pushlet compatible routes. Authenticate with `Authorization: Bearer <api key>`; the admin key names the app in `x-herald-app`. Request schemas say what the services refuse (400); what depends on stored state (an id that must exist: 404; an app's providers and limits) is in the descriptions.",
    },
    security: [{ bearer: [] }],
    paths,
    components: {
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "A Herald API key (SERVER, CLIENT or admin); the compatibility APIs also take the app's secret" },
        basic: { type: "http", scheme: "basic", description: "The app id and the app's secret (or a SERVER key): Kinvey master credentials, Pushlet" },
      },
      responses: {
        Error: {
          description: "A refusal: the machine-readable reason, what to fix, and the field at fault when there is one",
          content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
        },
      },
      schemas: {
        Error: {
          type: "object",
          required: ["error", "description"],
          properties: { error: { type: "string", examples: ["INVALID_TOKEN"] }, description: { type: "string" }, field: { type: "string" } },
        },
        ...schemas,
      },
    },
  };
}

// The request bodies of the compatibility routes that have one worth describing, keyed by
// "METHOD pattern" as the routes declare them (pushlet.routes.ts, beams.routes.ts).
// `params`: schemas of path parameters that take only some values (Centrifugo's method names).
const CENTRIFUGO_METHODS = ["device_register", "device_update", "device_remove", "device_list", "device_topic_list", "device_topic_update", "user_topic_list", "user_topic_update", "send_push_notification", "cancel_push", "update_push_status", "batch"];
const COMPAT_BODIES: Record<string, { schema: Schema; note?: string; json?: boolean; params?: Record<string, Schema> }> = {
  "POST /send_notification": {
    schema: {
      type: "object",
      required: ["application_id"],
      properties: {
        application_id: { type: "string", minLength: 1, description: "The app (with Bearer credentials; with basic auth the user names it, and this must match)." },
        type: { type: "string", enum: ["apns", "gcm", "fcm", "hms", "webpush"] },
        device_token: { type: "string", minLength: 1 },
        alert: { type: "string" },
        badge: { type: ["integer", "string"] },
        sound: { type: "string" },
        data: { type: ["object", "string"] },
      },
    },
    note: "Pushlet's send_notification. The app must exist (404 application_not_found) and the credentials be its own (401); then device_token is required, valid for its provider, and the notification must carry an alert, badge, sound or data.",
  },
  "POST /application_feedback": {
    schema: {
      type: "object",
      required: ["application_id"],
      properties: {
        application_id: { type: "string", minLength: 1, description: "The app (with Bearer credentials; with basic auth the user names it, and this must match)." },
        since: { type: "string", format: "date-time" },
      },
    },
    note: "Pushlet's application_feedback. The app must exist (404 application_not_found) and the credentials be its own (401).",
  },
  "POST /apps/:app_id/events": {
    schema: {
      type: "object",
      required: ["name", "data"],
      properties: {
        name: { type: "string", minLength: 1, maxLength: 200 },
        data: { type: "string", description: "At most 10 KiB (413 above), usually JSON; a JSON object with a title or body string is shown as a notification, anything else is delivered as a data message." },
        channels: { type: "array", minItems: 1, maxItems: 100, items: { type: "string", minLength: 1, maxLength: 200, pattern: "^[A-Za-z0-9_\\-=@,.;]+$|^#server-to-user-.+$" } },
        channel: { type: "string", minLength: 1, maxLength: 200 },
        socket_id: { type: "string", pattern: "^\\d+\\.\\d+$", description: "The device tagged pusher_socket_id with it is excluded." },
        info: { type: "string", description: "Comma-separated: user_count (presence- channels), subscription_count." },
      },
    },
    note: "Pusher Channels' trigger. Signed as Channels signs: auth_key (the app id), auth_timestamp (within 300 s), auth_version=1.0, body_md5 and auth_signature (HMAC-SHA256 with the app's secret) in the query; refusals are {error: <Channels' message>} with Channels' statuses (401 signature, 404 unknown app, 400 input, 413 data).",
    json: true,
  },
  "POST /apps/:app_id/batch_events": {
    schema: {
      type: "object",
      required: ["batch"],
      properties: {
        batch: {
          type: "array",
          minItems: 1,
          maxItems: 10,
          items: { type: "object", required: ["channel", "name", "data"], properties: { channel: { type: "string", minLength: 1, maxLength: 200 }, name: { type: "string", minLength: 1, maxLength: 200 }, data: { type: "string" }, socket_id: { type: "string" }, info: { type: "string" } } },
        },
      },
    },
    note: "Pusher Channels' batch trigger, signed like POST /apps/{app_id}/events; every event is checked before the first is sent.",
    json: true,
  },
  "POST /apps/:app_id/subscribe": {
    schema: {
      type: "object",
      required: ["socket_id", "channel"],
      properties: {
        socket_id: { type: "string", pattern: "^\\d+\\.\\d+$", description: "The device's pusher_socket_id tag." },
        channel: { type: "string", minLength: 1, maxLength: 200 },
        auth: { type: "string", description: "For private- and presence- channels: what pusher.authorizeChannel(socket_id, channel, channel_data) returned." },
        channel_data: { type: "string", description: "For presence- channels: the JSON member data the auth signed; its user_id must be the device's user." },
      },
    },
    note: "The device side of Pusher Channels (its WebSocket pusher:subscribe): no key; 404 when no device has the socket_id, 403 for a missing or wrong auth.",
    json: true,
  },
  "POST /apps/:app_id/unsubscribe": {
    schema: { type: "object", required: ["socket_id", "channel"], properties: { socket_id: { type: "string" }, channel: { type: "string", minLength: 1, maxLength: 200 } } },
    note: "The device side of Pusher Channels (pusher:unsubscribe).",
    json: true,
  },
  "POST /api/push": {
    schema: {
      type: "object",
      required: ["notifications"],
      properties: {
        notifications: {
          type: "array",
          minItems: 1,
          maxItems: 100,
          items: {
            type: "object",
            required: ["platform"],
            properties: {
              tokens: { type: "array", items: { type: "string" } },
              platform: { type: "integer", enum: [1, 2, 3], description: "1 iOS (APNs), 2 Android (FCM), 3 Huawei (HMS)" },
              message: { type: "string" },
              title: { type: "string" },
              topic: { type: "string", description: "iOS: the apns-topic; Android/Huawei: an FCM/HMS topic (sent instead of tokens)" },
              condition: { type: "string" },
              to: { type: "string" },
              data: { type: "object" },
              priority: { type: "string", enum: ["normal", "high"] },
              badge: { type: "integer" },
              sound: { type: ["string", "object"] },
              content_available: { type: "boolean" },
              mutable_content: { type: "boolean" },
              notif_id: { type: "string" },
            },
          },
        },
      },
    },
    note: "gorush's push API. The credentials are the app's (gorush has none): Bearer <SERVER key>, or Basic <app>:<secret>. A notification Herald refuses (platform, tokens, payload) is a failed-push entry of logs; the others are still sent.",
    json: true,
  },
  "POST /api": {
    schema: {
      type: "object",
      properties: {
        method: { type: "string", enum: CENTRIFUGO_METHODS },
        params: { type: "object", description: "The method's request, as on POST /api/{method}." },
      },
    },
    note: "Centrifugo PRO's single-endpoint form of the push API. The app's SERVER key as X-API-Key or Authorization: apikey <key>; a wrong one is HTTP 401, every other refusal HTTP 200 {error: {code, message}} with Centrifugo's codes (100 internal, 103 permission denied, 104 method not found, 106 limit exceeded, 107 bad request, 108 not available, 111 too many requests).",
    json: true,
  },
  "POST /api/:method": {
    schema: {
      type: "object",
      description: "The method's params, as the cent clients send them (cent/dto.py): device_register {id, provider, token, platform, user, timezone, locale, meta, tags, topics}; device_update {ids, users, provider_tokens, user_update, meta_update, tags_update, topics_update {op, topics}, locale_update, timezone_update}; device_remove {ids, users, provider_tokens}; device_list {filter, include_total_count, include_meta, include_topics, include_tags, cursor, limit}; device_topic_list {filter, include_device, include_total_count, cursor, limit}; device_topic_update / user_topic_update {device_id | user, op, topics}; user_topic_list {filter, include_total_count, cursor, limit}; send_push_notification {recipient, notification {fcm, hms, apns, expire_at}, uid, send_at, analytics_uid, use_templating}; cancel_push {uid}; update_push_status {analytics_uid, status, device_id, msg_id}; batch {commands: [{<method>: params}]}.",
    },
    params: { method: { type: "string", enum: CENTRIFUGO_METHODS } },
    note: "Centrifugo PRO's push API, as its cent clients call it. The app's SERVER key as X-API-Key or Authorization: apikey <key>; a wrong one is HTTP 401, every other refusal (an unknown method: 104) HTTP 200 {error: {code, message}}; a result is {result: {...}}.",
    json: true,
  },
  "POST /register_application": {
    schema: { type: "object" },
    note: "Always refused (400 unsupported): Herald's apps are PushApps, described with kubectl.",
  },
};

// The messages of requests, and those with a rule of the services in them or below them.
function requestTypes(catalog: RpcCatalog): { ruled: Set<string>; inputs: Set<string> } {
  const ruled = new Set<string>();
  const seen = new Map<string, boolean>();
  const visit = (desc: DescMessage): boolean => {
    const known = seen.get(desc.typeName);
    if (known !== undefined) return known;
    seen.set(desc.typeName, false);
    let has = !!MESSAGE_RULES[desc.typeName] || desc.fields.some((f) => FIELD_RULES[`${desc.typeName}.${f.name}`]);
    for (const f of desc.fields) if ((f.fieldKind === "message" || (f.fieldKind === "list" && f.listKind === "message") || (f.fieldKind === "map" && f.mapKind === "message")) && visit(f.message)) has = true;
    seen.set(desc.typeName, has);
    if (has) ruled.add(desc.typeName);
    return has;
  };
  for (const m of catalog.methods) visit(m.method.input);
  return { ruled, inputs: new Set(seen.keys()) };
}

// Whether the empty object is refused by the schema (so a request without a body is).
function refusesEmpty(schema: Schema): boolean {
  return (Array.isArray(schema.required) && schema.required.length > 0) || !!schema.oneOf || !!schema.anyOf;
}

// By name; proto3 JSON takes the numbers too (responses carry names).
function enumSchema(desc: DescEnum): Schema {
  const description = commentOf(desc);
  return { type: ["string", "integer"], enum: [...desc.values.map((v) => v.name), ...desc.values.map((v) => v.number)], ...(description ? { description } : {}) };
}

type Ref = (d: DescMessage | DescEnum, mode: Mode) => Schema;

// A message's object schema; `here` are rules of its fields that hold in one place only, `extra`
// keywords for the object there.
function messageSchema(desc: DescMessage, mode: Mode, ref: Ref, here: Record<string, FieldRule> = {}, extra: Schema = {}): Schema {
  const wkt = WELL_KNOWN[desc.typeName];
  if (wkt) return mode === "answer" ? wkt : (WELL_KNOWN_REQUEST[desc.typeName] ?? wkt);
  const checked = mode === "checked";
  const properties: Record<string, Schema> = {};
  const required: string[] = [];
  for (const field of desc.fields) {
    const rule = checked ? merge(FIELD_RULES[`${desc.typeName}.${field.name}`], here[field.name]) : undefined;
    const comment = commentOf(field);
    const oneof = field.oneof ? `One of ${field.oneof.name}: ${field.oneof.fields.map((f) => f.jsonName).join(", ")}.` : "";
    const description = [comment, oneof, rule?.note ?? ""].filter(Boolean).join("\n");
    const own = fieldSchema(field, mode, ref, rule);
    // proto3 JSON: null is the field's default (a oneof member's null leaves the oneof unset).
    const value = mode !== "answer" && !rule?.required && !field.oneof ? nullable(own) : own;
    properties[field.jsonName] = { ...value, ...(description ? { description } : {}) };
    if (rule?.required) required.push(field.jsonName);
  }
  const description = [commentOf(desc), checked ? (MESSAGE_RULES[desc.typeName]?.note ?? "") : ""].filter(Boolean).join("\n");
  const schema: Schema = { type: "object", additionalProperties: false, properties, ...(required.length ? { required } : {}), ...(description ? { description } : {}) };
  if (mode === "answer") return schema;
  const combined: Schema[] = [];
  // Two members of a oneof do not decode; with the rule `exactlyOne`, one is required too.
  const rule = checked ? MESSAGE_RULES[desc.typeName] : undefined;
  for (const o of desc.oneofs) {
    if (rule?.exactlyOne === o.name || o.fields.length < 2) continue;
    const pairs = o.fields.flatMap((f, i) => o.fields.slice(i + 1).map((g) => ({ required: [f.jsonName, g.jsonName] })));
    combined.push({ not: { anyOf: pairs } });
  }
  if (rule?.exactlyOne) {
    const oneof = desc.oneofs.find((o) => o.name === rule.exactlyOne)!;
    combined.push({ oneOf: oneof.fields.map((f) => ({ required: [f.jsonName] })) });
  }
  if (rule?.schema) combined.push(rule.schema);
  if (Object.keys(extra).length) combined.push(extra);
  if (combined.length === 1) Object.assign(schema, combined[0]);
  else if (combined.length > 1) schema.allOf = combined;
  return schema;
}

function nullable(s: Schema): Schema {
  if (typeof s.type === "string" && !s.enum && !s.const && !s.$ref && !s.not && !s.oneOf && !s.anyOf && !s.allOf) return { ...s, type: [s.type, "null"] };
  if (Array.isArray(s.type) && !s.enum && !s.$ref && !s.not && !s.oneOf && !s.anyOf && !s.allOf) return { ...s, type: [...s.type, "null"] };
  return { anyOf: [s, { type: "null" }] };
}

function merge(a: FieldRule | undefined, b: FieldRule | undefined): FieldRule | undefined {
  if (!a || !b) return a ?? b;
  return { ...a, ...b, schema: { ...a.schema, ...b.schema }, items: { ...a.items, ...b.items }, fields: { ...a.fields, ...b.fields }, object: { ...a.object, ...b.object }, note: [a.note, b.note].filter(Boolean).join(" ") };
}

function fieldSchema(field: DescField, mode: Mode, ref: Ref, rule: FieldRule | undefined): Schema {
  const request = mode !== "answer";
  const nested = (message: DescMessage): Schema => {
    const childMode: Mode = rule?.unchecked ? "decoded" : mode;
    // A rule for this place only: the message is described inline.
    if (rule?.fields || rule?.object) return messageSchema(message, childMode, ref, rule.fields, rule.object);
    // A well-known type with keywords of its own here (a time in the future) is inlined too.
    if (rule?.schema && WELL_KNOWN[message.typeName]) return messageSchema(message, childMode, ref);
    return ref(message, childMode);
  };
  const numbers = (names: string[]) => (field.enum ? names.map((n) => field.enum!.values.find((v) => v.name === n)?.number).filter((n) => n !== undefined) : []);
  const refused = (s: Schema) => (rule?.refuse?.length ? { ...s, not: { enum: [...rule.refuse, ...numbers(rule.refuse)] } } : s);
  const required = rule?.required ? 1 : undefined;
  switch (field.fieldKind) {
    case "scalar": {
      const s = { ...scalarSchema(field.scalar, request), ...rule?.schema };
      if (required && s.type === "string" && s.minLength === undefined) s.minLength = 1;
      return s;
    }
    case "enum":
      return { ...refused(ref(field.enum, mode)), ...rule?.schema };
    case "message":
      return { ...nested(field.message), ...rule?.schema };
    case "list": {
      const items = field.listKind === "scalar" ? { ...scalarSchema(field.scalar, request), ...rule?.items } : field.listKind === "enum" ? refused(ref(field.enum, mode)) : nested(field.message);
      return { type: "array", items, ...(required ? { minItems: 1 } : {}), ...rule?.schema };
    }
    case "map": {
      const values = field.mapKind === "scalar" ? { ...scalarSchema(field.scalar, request), ...rule?.items } : field.mapKind === "enum" ? ref(field.enum, mode) : ref(field.message, mode);
      return { type: "object", additionalProperties: values, ...rule?.schema };
    }
  }
}

// A request's numbers as the gateway decodes them (protobuf-es fromJson): 64-bit integers as
// decimal strings or numbers JSON keeps exact; 32-bit ones in their range.
function scalarSchema(scalar: ScalarType, request = false): Schema {
  switch (scalar) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { type: "number" };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      // proto3 JSON: 64-bit integers are strings (numbers are accepted on input).
      return request ? { type: ["string", "integer"], format: "int64", pattern: "^-?(0|[1-9][0-9]{0,17})$", minimum: -SAFE, maximum: SAFE } : { type: ["string", "integer"], format: "int64" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return request ? { type: ["string", "integer"], format: "int64", pattern: "^(0|[1-9][0-9]{0,18})$", minimum: 0, maximum: SAFE } : { type: ["string", "integer"], format: "int64" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return request ? { type: "integer", format: "int64", minimum: 0, maximum: 4294967295 } : { type: "integer", format: "int64" };
    default:
      return request ? { type: "integer", format: "int32", minimum: -2147483648, maximum: 2147483647 } : { type: "integer", format: "int32" };
  }
}

// Integers a JSON number carries exactly.
const SAFE = Number.MAX_SAFE_INTEGER;

// RFC 3339 as protobuf-es decodes it: years 0001-9999, seconds 00-59, upper-case T and Z.
const WELL_KNOWN_REQUEST: Record<string, Schema> = {
  "google.protobuf.Timestamp": { type: "string", format: "date-time", pattern: `^(?!0000)[0-9]{4}${TIME_REST}` },
};

const WELL_KNOWN: Record<string, Schema> = {
  "google.protobuf.Timestamp": { type: "string", format: "date-time" },
  "google.protobuf.Duration": { type: "string", examples: ["1.5s"] },
  "google.protobuf.Struct": { type: "object" },
  "google.protobuf.Value": {},
  "google.protobuf.ListValue": { type: "array" },
  "google.protobuf.Empty": { type: "object" },
  "google.protobuf.StringValue": { type: "string" },
  "google.protobuf.BoolValue": { type: "boolean" },
  "google.protobuf.Int32Value": { type: "integer" },
};

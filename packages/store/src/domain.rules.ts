import { Platform, Provider, WEBHOOK_EVENTS } from "@herald/proto";
import { env, HeraldError, invalidArgument, Status } from "@herald/platform";
import { z } from "zod";
import type { AppLimitsRecord, AppRecord, PlatformName, ProviderName } from "./store.types.js";

// Domain rules shared by every service that accepts devices, topics and users, so the registry,
// the topic service and the senders agree on what a valid token or topic is.

export const PROVIDER_NAMES: Record<Provider, ProviderName | undefined> = {
  [Provider.PROVIDER_UNSPECIFIED]: undefined,
  [Provider.PROVIDER_APNS]: "apns",
  [Provider.PROVIDER_FCM]: "fcm",
  [Provider.PROVIDER_HMS]: "hms",
  [Provider.PROVIDER_WEBPUSH]: "webpush",
  [Provider.UNRECOGNIZED]: undefined,
};

export const PLATFORM_NAMES: Record<Platform, PlatformName | undefined> = {
  [Platform.PLATFORM_UNSPECIFIED]: undefined,
  [Platform.PLATFORM_IOS]: "ios",
  [Platform.PLATFORM_ANDROID]: "android",
  [Platform.PLATFORM_WEB]: "web",
  [Platform.UNRECOGNIZED]: undefined,
};

export const ALL_PROVIDERS: readonly ProviderName[] = ["apns", "fcm", "hms", "webpush"];

// Every provider, as the API's enum (test and benchmark apps that deliver everywhere).
export const ALL_PROVIDER_ENUMS: Provider[] = [Provider.PROVIDER_APNS, Provider.PROVIDER_FCM, Provider.PROVIDER_HMS, Provider.PROVIDER_WEBPUSH];

export const providerEnum = (name: ProviderName): Provider =>
  ({ apns: Provider.PROVIDER_APNS, fcm: Provider.PROVIDER_FCM, hms: Provider.PROVIDER_HMS, webpush: Provider.PROVIDER_WEBPUSH })[name];

export const platformEnum = (name: PlatformName): Platform =>
  ({ ios: Platform.PLATFORM_IOS, android: Platform.PLATFORM_ANDROID, web: Platform.PLATFORM_WEB })[name];

// Which client platforms each provider serves.
const PLATFORMS_OF: Record<ProviderName, PlatformName[]> = {
  apns: ["ios"],
  fcm: ["android", "ios", "web"],
  hms: ["android"],
  webpush: ["web"],
};

export function parseProvider(value: Provider, field: string): ProviderName {
  const name = PROVIDER_NAMES[value];
  if (!name) throw invalidArgument(field, "must be one of PROVIDER_APNS, PROVIDER_FCM, PROVIDER_HMS, PROVIDER_WEBPUSH", "INVALID_PROVIDER");
  return name;
}

// An app delivers only through the providers it has credentials (and so senders) for: a device
// or raw token of another provider could never be delivered, and a publish to it would never end.
export function checkProviderConfigured(app: Pick<AppRecord, "id" | "providers">, provider: ProviderName, field: string): void {
  if (app.providers.includes(provider)) return;
  throw new HeraldError(
    Status.FAILED_PRECONDITION,
    "PROVIDER_NOT_CONFIGURED",
    `app "${app.id}" has no ${provider} credentials (its providers: ${app.providers.join(", ") || "none"})`,
    field,
  );
}

export function parsePlatform(value: Platform, provider: ProviderName, field: string): PlatformName {
  const name = PLATFORM_NAMES[value];
  if (!name) throw invalidArgument(field, "must be one of PLATFORM_IOS, PLATFORM_ANDROID, PLATFORM_WEB", "INVALID_PLATFORM");
  if (!PLATFORMS_OF[provider].includes(name)) {
    throw invalidArgument(field, `${provider} devices run on ${PLATFORMS_OF[provider].join(" or ")}, not ${name}`, "PLATFORM_MISMATCH");
  }
  return name;
}

export interface TokenRules {
  // Hosts a Web Push endpoint may point at; "*.example.com" matches subdomains. Guards the
  // senders against SSRF through user-supplied endpoints.
  webPushHosts: string[];
  // Lets http:// endpoints through (tests and local fakes only).
  webPushAllowInsecure: boolean;
}

export const DEFAULT_WEBPUSH_HOSTS = [
  "fcm.googleapis.com",
  "*.push.services.mozilla.com",
  "web.push.apple.com",
  "*.notify.windows.com",
];

const MAX_TOKEN = 4096;

// Returns the token in canonical form (APNs lowercase hex; Web Push a compact JSON with only
// endpoint and keys) so that one device never hides behind two spellings of its token.
export function normalizeToken(provider: ProviderName, token: string, rules: TokenRules, field = "token"): string {
  if (!token) throw invalidArgument(field, "is required", "INVALID_TOKEN");
  switch (provider) {
    case "apns":
      if (!/^[0-9a-fA-F]{64}$/.test(token)) throw invalidArgument(field, "an APNs device token is 64 hexadecimal characters", "INVALID_TOKEN");
      return token.toLowerCase();
    case "fcm":
    case "hms":
      if (token.length > MAX_TOKEN || /\s/.test(token)) {
        throw invalidArgument(field, `a ${provider.toUpperCase()} token is 1-${MAX_TOKEN} characters without spaces`, "INVALID_TOKEN");
      }
      return token;
    case "webpush":
      return normalizeSubscription(token, rules, field);
  }
}

function normalizeSubscription(token: string, rules: TokenRules, field: string): string {
  let sub: { endpoint?: unknown; keys?: { p256dh?: unknown; auth?: unknown } };
  try {
    sub = JSON.parse(token);
  } catch {
    throw invalidArgument(field, 'a Web Push token is the PushSubscription JSON: {"endpoint", "keys": {"p256dh", "auth"}}', "INVALID_TOKEN");
  }
  if (typeof sub.endpoint !== "string") throw invalidArgument(`${field}.endpoint`, "is required", "INVALID_TOKEN");
  checkEndpoint(sub.endpoint, rules, `${field}.endpoint`);
  const p256dh = sub.keys?.p256dh;
  const auth = sub.keys?.auth;
  if (typeof p256dh !== "string" || base64urlLength(p256dh) !== 65) {
    throw invalidArgument(`${field}.keys.p256dh`, "must be the base64url P-256 public key (65 bytes)", "INVALID_TOKEN");
  }
  if (typeof auth !== "string" || base64urlLength(auth) !== 16) {
    throw invalidArgument(`${field}.keys.auth`, "must be the base64url 16-byte auth secret", "INVALID_TOKEN");
  }
  return JSON.stringify({ endpoint: sub.endpoint, keys: { p256dh: toBase64url(p256dh), auth: toBase64url(auth) } });
}

export function checkEndpoint(endpoint: string, rules: TokenRules, field = "endpoint"): URL {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw invalidArgument(field, "must be an absolute URL", "INVALID_ENDPOINT");
  }
  if (url.protocol !== "https:" && !(rules.webPushAllowInsecure && url.protocol === "http:")) {
    throw invalidArgument(field, "must be an https URL", "INVALID_ENDPOINT");
  }
  if (url.username || url.password) throw invalidArgument(field, "must not carry credentials", "INVALID_ENDPOINT");
  if (!hostAllowed(url.hostname, rules.webPushHosts)) {
    throw invalidArgument(field, `host ${url.hostname} is not an allowed push service`, "ENDPOINT_NOT_ALLOWED");
  }
  return url;
}

export function hostAllowed(host: string, allowed: string[]): boolean {
  const h = host.toLowerCase();
  return allowed.some((pattern) => {
    const p = pattern.toLowerCase();
    return p.startsWith("*.") ? h.endsWith(p.slice(1)) && h.length > p.length - 1 : h === p;
  });
}

// Browsers give base64url; some SDKs give standard base64. Both are accepted and stored as base64url.
const toBase64url = (s: string) => s.replace(/=+$/, "").replaceAll("+", "-").replaceAll("/", "_");

function base64urlLength(s: string): number {
  const bare = toBase64url(s);
  if (!/^[A-Za-z0-9_-]+$/.test(bare)) return -1;
  return Buffer.from(bare, "base64url").length;
}

export const TOPIC_PATTERN = /^[A-Za-z0-9_\-=@,.;]{1,164}$/;
export const PRIVATE_TOPIC_PREFIX = "private-";

export function checkTopics(topics: string[], field: string): string[] {
  topics.forEach((topic, i) => {
    if (!TOPIC_PATTERN.test(topic)) {
      throw invalidArgument(`${field}[${i}]`, `"${topic.slice(0, 40)}" is not a topic name: 1-164 characters of A-Z a-z 0-9 _ - = @ , . ;`, "INVALID_TOPIC");
    }
  });
  return [...new Set(topics)];
}

const MAX_WEBHOOKS = 10;

// Webhook endpoints are set by the app's operators (PushApp, admin key), so any http(s) URL is
// allowed; one with credentials in it would leak them into logs and is refused.
export function checkWebhooks(webhooks: Array<{ url: string; events: string[]; format?: string }>, field: string): Array<{ url: string; events: string[]; format?: "pusher" }> {
  if (webhooks.length > MAX_WEBHOOKS) throw invalidArgument(field, `at most ${MAX_WEBHOOKS} webhooks per app`, "TOO_MANY_WEBHOOKS");
  return webhooks.map((w, i) => {
    let url: URL;
    try {
      url = new URL(w.url);
    } catch {
      throw invalidArgument(`${field}[${i}].url`, "is not a URL", "INVALID_WEBHOOK");
    }
    if (url.protocol !== "https:" && url.protocol !== "http:") throw invalidArgument(`${field}[${i}].url`, "must be http:// or https://", "INVALID_WEBHOOK");
    if (url.username || url.password) throw invalidArgument(`${field}[${i}].url`, "must not carry credentials; webhooks are signed instead", "INVALID_WEBHOOK");
    if (w.url.length > 2048) throw invalidArgument(`${field}[${i}].url`, "at most 2048 characters", "INVALID_WEBHOOK");
    w.events.forEach((e, j) => {
      if (!(WEBHOOK_EVENTS as readonly string[]).includes(e)) throw invalidArgument(`${field}[${i}].events[${j}]`, `"${e.slice(0, 40)}" is not one of ${WEBHOOK_EVENTS.join(", ")}`, "INVALID_WEBHOOK");
    });
    if (w.format && w.format !== "herald" && w.format !== "pusher") throw invalidArgument(`${field}[${i}].format`, `"${w.format.slice(0, 40)}" is not herald or pusher`, "INVALID_WEBHOOK");
    return { url: w.url, events: [...new Set(w.events)], ...(w.format === "pusher" ? { format: "pusher" as const } : {}) };
  });
}

export function checkUserId(user: string, field: string): string {
  if (!user) throw invalidArgument(field, "is required", "INVALID_USER");
  // Newlines separate parts of pagination cursors; control characters never belong in an id.
  if (user.length > 164 || /[\u0000-\u001f\u007f]/.test(user)) {
    throw invalidArgument(field, "a user id is 1-164 characters without control characters", "INVALID_USER");
  }
  return user;
}

// Keys are words in any script ("prénom", "équipe", "campagne-été" are ordinary keys in a
// European app), stored in NFC so that one key never hides behind two spellings. Whitespace,
// control characters and punctuation other than _ . - : are refused: keys end up in tag filters,
// labels on metrics and error trailers.
const MAP_KEY = /^[\p{L}\p{M}\p{N}_.\-:]+$/u;

export function checkStringMap(map: Record<string, string>, field: string, limits = { entries: 64, key: 64, value: 1024 }): Record<string, string> {
  const entries = Object.entries(map);
  if (entries.length > limits.entries) throw invalidArgument(field, `at most ${limits.entries} entries`, "TOO_MANY_ENTRIES");
  const checked: Record<string, string> = {};
  for (const [raw, value] of entries) {
    const key = raw.normalize("NFC");
    if (!key || [...key].length > limits.key || !MAP_KEY.test(key)) {
      throw invalidArgument(`${field}.${[...raw].slice(0, 40).join("")}`, `keys are 1-${limits.key} letters, digits, marks or _ . - : (no spaces or control characters)`, "INVALID_KEY");
    }
    if (value.length > limits.value) throw invalidArgument(`${field}.${key}`, `values are at most ${limits.value} characters`, "VALUE_TOO_LONG");
    // defineProperty: a key named "__proto__" is data, not the object's prototype.
    Object.defineProperty(checked, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return checked;
}

export function checkLocale(locale: string, field: string): string {
  if (!locale) return "";
  try {
    return Intl.getCanonicalLocales(locale)[0] ?? "";
  } catch {
    throw invalidArgument(field, `"${locale.slice(0, 40)}" is not a BCP 47 language tag`, "INVALID_LOCALE");
  }
}

export function checkTimezone(timezone: string, field: string): string {
  if (!timezone) return "";
  try {
    new Intl.DateTimeFormat("en", { timeZone: timezone });
    return timezone;
  } catch {
    throw invalidArgument(field, `"${timezone.slice(0, 40)}" is not an IANA time zone`, "INVALID_TIMEZONE");
  }
}

export const DEFAULT_LIMITS: AppLimitsRecord = {
  maxDevicesPerUser: 100,
  deviceOverflowPolicy: "evict",
  maxInactiveDays: 0,
  maxTopicsPerDevice: 5000,
  maxPublishRate: 0,
  urgentMaxTargets: 0,
};

// Page size: 1-1000, default 100.
export function pageLimit(limit: number | undefined, field = "page.limit"): number {
  if (!limit) return 100;
  if (limit < 0 || limit > 1000) throw invalidArgument(field, "must be between 1 and 1000", "INVALID_PAGE");
  return limit;
}

// The Web Push allow-list settings, shared by every service that validates subscriptions.
export const tokenRulesEnv = {
  HERALD_WEBPUSH_ALLOWED_HOSTS: z
    .string()
    .default(DEFAULT_WEBPUSH_HOSTS.join(","))
    .transform((v) => v.split(",").map((s) => s.trim()).filter(Boolean)),
  HERALD_WEBPUSH_ALLOW_INSECURE: env.bool(false),
};

export const tokenRulesFrom = (config: { HERALD_WEBPUSH_ALLOWED_HOSTS: string[]; HERALD_WEBPUSH_ALLOW_INSECURE: boolean }): TokenRules => ({
  webPushHosts: config.HERALD_WEBPUSH_ALLOWED_HOSTS,
  webPushAllowInsecure: config.HERALD_WEBPUSH_ALLOW_INSECURE,
});

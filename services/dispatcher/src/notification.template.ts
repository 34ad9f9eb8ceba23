// Per-device templates (the Kinvey use: "{{meta.name}}, the {{meta.team}} just won!"): every
// string in the payload, keys excepted, has its placeholders replaced from the device's registry
// data. Rendering walks the parsed JSON, so a value can never break out of its string.

export interface TemplateContext {
  deviceId: string;
  user: string;
  locale: string;
  timezone: string;
  meta: Record<string, string>;
}

const PLACEHOLDER = /\{\{\s*([A-Za-z0-9_.\-:]+)\s*\}\}/g;

export function hasPlaceholders(body: unknown): boolean {
  if (typeof body === "string") return new RegExp(PLACEHOLDER.source).test(body);
  if (Array.isArray(body)) return body.some(hasPlaceholders);
  if (body && typeof body === "object") return Object.values(body).some(hasPlaceholders);
  return false;
}

export function renderTemplate<T>(body: T, ctx: TemplateContext): T {
  return walk(body, ctx) as T;
}

function walk(value: unknown, ctx: TemplateContext): unknown {
  if (typeof value === "string") return value.replace(PLACEHOLDER, (_, path: string) => lookup(path, ctx));
  if (Array.isArray(value)) return value.map((v) => walk(v, ctx));
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, ctx)]));
  return value;
}

// Unknown placeholders render empty: a device without `meta.name` still gets a readable message.
function lookup(path: string, ctx: TemplateContext): string {
  if (path.startsWith("meta.")) return ctx.meta[path.slice(5)] ?? "";
  switch (path) {
    case "user":
      return ctx.user;
    case "locale":
      return ctx.locale;
    case "timezone":
      return ctx.timezone;
    case "device_id":
      return ctx.deviceId;
    default:
      return "";
  }
}

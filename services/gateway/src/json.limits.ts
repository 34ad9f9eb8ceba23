// How deeply request JSON may nest objects and arrays (a value itself is level 1).
//
// A free-form payload (APNs payload, FCM/HMS message, Web Push payload, Beams' apns/fcm/web,
// Pushlet's data) ends up in a google.protobuf.Struct, whose decoders give up past 100 nested
// messages; the dispatcher refuses more than 30 levels for that reason (its MAX_PAYLOAD_DEPTH,
// which this must equal). The gateway refuses the same before it encodes anything, because a
// request nested past what the dispatcher decodes never reaches its check.
export const MAX_PAYLOAD_DEPTH = 30;

// Any body: the payload limit plus room for the request around it (PublishBatchRequest's
// requests[i].notification.apns.payload is five levels). Checked right after JSON.parse, before
// any recursive code (proto3 JSON decoding, Struct encoding, JSON.stringify) sees the value.
export const MAX_BODY_DEPTH = 64;

// The path of the first object or array below `value` that is nested deeper than `limit`
// levels, e.g. ["fcm", "data", "a"]; undefined when none is. With an explicit stack: the value
// may be nested a hundred thousand levels deep (JSON.parse does not mind).
export function tooDeepAt(value: unknown, limit: number): Array<string | number> | undefined {
  const stack: Array<{ value: unknown; depth: number; path: Array<string | number> }> = [{ value, depth: 1, path: [] }];
  while (stack.length) {
    const { value: v, depth, path } = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth > limit) return path;
    const entries: Array<[string | number, unknown]> = Array.isArray(v) ? v.map((c, i) => [i, c]) : Object.entries(v);
    for (const [key, child] of entries) if (child !== null && typeof child === "object") stack.push({ value: child, depth: depth + 1, path: [...path, key] });
  }
  return undefined;
}

// "requests[0].notification.apns", as a field name in an error.
export function fieldPath(path: ReadonlyArray<string | number>): string {
  return path.reduce<string>((out, key) => (typeof key === "number" ? `${out}[${key}]` : out ? `${out}.${key}` : key), "");
}

import type { SendRequest } from "../provider.types.js";

// The apns-* request headers for one job: the caller's own, completed from the job's portable
// fields. Everything the caller set wins, so a raw APNs request goes out exactly as written.

// The topic each push type needs: the bundle id plus this suffix (Apple's "Sending notification
// requests to APNs"). mdm topics come from the MDM certificate and are never derived.
const TOPIC_SUFFIX: Record<string, string> = {
  voip: ".voip",
  complication: ".complication",
  liveactivity: ".push-type.liveactivity",
  location: ".location-query",
  fileprovider: ".pushkit.fileprovider",
  pushtotalk: ".voip-ptt",
};

export function apnsHeaders(request: SendRequest, bundleId: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    const lower = name.toLowerCase();
    // Only APNs' own headers: authorization and pseudo-headers are ours to set.
    if (lower.startsWith("apns-")) headers[lower] = value;
  }
  const pushType = headers["apns-push-type"];
  headers["apns-topic"] ??= bundleId + (TOPIC_SUFFIX[pushType ?? ""] ?? "");
  // Background pushes must not use 10; "normal" and "low" both mean "when it suits the device".
  headers["apns-priority"] ??= pushType !== "background" && request.priority === "high" ? "10" : "5";
  if (headers["apns-expiration"] === undefined && request.expireAt) {
    headers["apns-expiration"] = String(Math.floor(request.expireAt.getTime() / 1000));
  }
  return headers;
}

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const HEADER_VALUE_FORBIDDEN = /[\r\n\0]/;

// A header HTTP/2 cannot carry (Node refuses the name, or the peer drops the field) fails the
// whole job up front instead of coming back as a network error that would be retried forever.
export function invalidHeader(headers: Record<string, string>): string | undefined {
  return Object.entries(headers).find(([name, value]) => !HEADER_NAME.test(name) || HEADER_VALUE_FORBIDDEN.test(value))?.[0];
}

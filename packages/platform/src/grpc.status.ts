import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { HeraldError } from "./errors.js";

const DOMAIN = "herald.dev";

// Builds the error grpc-js sends: the HeraldError's code and message, the reason and field as
// plain metadata (easy for any client), and a google.rpc.Status with an ErrorInfo detail in
// grpc-status-details-bin (what grpcurl and Google client libraries decode).
// Never throws: a field name comes from the request (a map key such as "prénom" or a NUL), and
// grpc-js throws on a header value outside printable ASCII, so such values are percent-encoded.
// Messages and field names quote the request, which may be megabytes long; trailers that size
// exceed HTTP/2 header limits and break the connection for every call on it.
export function toServiceError(err: unknown): Partial<ServiceError> & { code: Status } {
  const e = err instanceof HeraldError ? err : new HeraldError(Status.INTERNAL, "INTERNAL", "internal error");
  const message = clip(e.message, MAX_MESSAGE);
  const field = e.field ? clip(e.field, MAX_FIELD) : undefined;
  const metadata = new Metadata();
  metadata.set("herald-reason", headerValue(clip(e.reason, MAX_FIELD)));
  if (field) metadata.set("herald-field", headerValue(field));
  const info: Record<string, string> = { ...e.metadata, ...(field ? { field } : {}) };
  metadata.set("grpc-status-details-bin", Buffer.from(encodeStatus(e.code, message, e.reason, info)));
  // A refusal that says when to come back (retry_after_ms, e.g. PUBLISH_RATE_EXCEEDED) also gets
  // a `retry-after` trailer in whole seconds, rounded up, like HTTP's Retry-After.
  const retryAfterMs = Number(e.metadata.retry_after_ms);
  if (retryAfterMs > 0) metadata.set("retry-after", String(Math.ceil(retryAfterMs / 1000)));
  // grpc-js sends the message through encodeURI, which throws on a lone surrogate (a message
  // quoting the first 40 characters of an input can cut a surrogate pair in two).
  return { code: e.code, details: message.replace(LONE_SURROGATE, "\uFFFD"), metadata };
}

const MAX_MESSAGE = 1024;
const MAX_FIELD = 256;
const clip = (s: string, max: number) => (s.length <= max ? s : `${s.slice(0, max)}…`);

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

// google.rpc.Status { code = 1; message = 2; repeated Any details = 3 } holding one
// google.rpc.ErrorInfo { reason = 1; domain = 2; map<string,string> metadata = 3 }.
function encodeStatus(code: number, message: string, reason: string, meta: Record<string, string>): Uint8Array {
  const info = new BinaryWriter().uint32(10).string(reason).uint32(18).string(DOMAIN);
  for (const [k, v] of Object.entries(meta)) info.uint32(26).fork().uint32(10).string(k).uint32(18).string(v).join();
  const any = new BinaryWriter().uint32(10).string("type.googleapis.com/google.rpc.ErrorInfo").uint32(18).bytes(info.finish());
  return new BinaryWriter().uint32(8).int32(code).uint32(18).string(message).uint32(26).bytes(any.finish()).finish();
}

// A header value is visible ASCII; anything else (and "%" itself, so decoding is exact) is
// percent-encoded as UTF-8, the way grpc-js already encodes grpc-message. Spaces too: HTTP/2
// drops a field value with leading or trailing whitespace (a map key "k "). Lone surrogates,
// which have no UTF-8 form, are encoded as U+FFFD (Buffer.from's choice).
export function headerValue(value: string): string {
  if (/^[\x21-\x24\x26-\x7e]*$/.test(value)) return value;
  let out = "";
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    out += c > 0x20 && c <= 0x7e && c !== 0x25 ? ch : [...Buffer.from(ch)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");
  }
  return out;
}

export function fromHeaderValue(value: string): string {
  if (!value.includes("%")) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

// Reads the reason/field a Herald server attached to a client-side error.
export function errorReason(err: unknown): { code?: number; reason?: string; field?: string } {
  const e = err as Partial<ServiceError>;
  const reason = e.metadata?.get("herald-reason")[0];
  const field = e.metadata?.get("herald-field")[0];
  return { code: e.code, reason: reason?.toString(), field: field === undefined ? undefined : fromHeaderValue(field.toString()) };
}

import { Metadata, status as Status, type ServiceError } from "@grpc/grpc-js";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { HeraldError } from "./errors.js";

const DOMAIN = "herald.dev";

// Builds the error grpc-js sends: the HeraldError's code and message, the reason and field as
// plain metadata (easy for any client), and a google.rpc.Status with an ErrorInfo detail in
// grpc-status-details-bin (what grpcurl and Google client libraries decode).
// Never throws: a field name comes from the request (a map key such as "prénom" or a NUL), and
// grpc-js throws on a header value outside printable ASCII, so such values are percent-encoded.
export function toServiceError(err: unknown): Partial<ServiceError> & { code: Status } {
  const e = err instanceof HeraldError ? err : new HeraldError(Status.INTERNAL, "INTERNAL", "internal error");
  const metadata = new Metadata();
  metadata.set("herald-reason", headerValue(e.reason));
  if (e.field) metadata.set("herald-field", headerValue(e.field));
  const info: Record<string, string> = { ...e.metadata, ...(e.field ? { field: e.field } : {}) };
  metadata.set("grpc-status-details-bin", Buffer.from(encodeStatus(e.code, e.message, e.reason, info)));
  // grpc-js sends the message through encodeURI, which throws on a lone surrogate (a message
  // quoting the first 40 characters of an input can cut a surrogate pair in two).
  return { code: e.code, details: e.message.replace(LONE_SURROGATE, "\uFFFD"), metadata };
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

// google.rpc.Status { code = 1; message = 2; repeated Any details = 3 } holding one
// google.rpc.ErrorInfo { reason = 1; domain = 2; map<string,string> metadata = 3 }.
function encodeStatus(code: number, message: string, reason: string, meta: Record<string, string>): Uint8Array {
  const info = new BinaryWriter().uint32(10).string(reason).uint32(18).string(DOMAIN);
  for (const [k, v] of Object.entries(meta)) info.uint32(26).fork().uint32(10).string(k).uint32(18).string(v).join();
  const any = new BinaryWriter().uint32(10).string("type.googleapis.com/google.rpc.ErrorInfo").uint32(18).bytes(info.finish());
  return new BinaryWriter().uint32(8).int32(code).uint32(18).string(message).uint32(26).bytes(any.finish()).finish();
}

// A header value is printable ASCII; anything else (and "%" itself, so decoding is exact) is
// percent-encoded as UTF-8, the way grpc-js already encodes grpc-message. Lone surrogates, which
// have no UTF-8 form, are encoded as U+FFFD (Buffer.from's choice).
export function headerValue(value: string): string {
  if (/^[\x20-\x24\x26-\x7e]*$/.test(value)) return value;
  let out = "";
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    out += c >= 0x20 && c <= 0x7e && c !== 0x25 ? ch : [...Buffer.from(ch)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");
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

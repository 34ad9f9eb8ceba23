import { status as Status, type ServiceError } from "@grpc/grpc-js";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { errorReason } from "@herald/platform";

// Every refusal over HTTP is a JSON body {error, description} (Pusher Beams' shape; `field`
// added when the input names one) with the status a REST client expects.
export interface ErrorBody {
  error: string;
  description: string;
  field?: string;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    description: string,
    readonly field?: string,
    readonly headers: Record<string, string> = {},
    // What went wrong inside, for the log of a 5xx; never sent.
    cause?: unknown,
  ) {
    super(description, cause === undefined ? undefined : { cause });
  }

  body(): ErrorBody {
    return { error: this.error, description: this.message, ...(this.field ? { field: this.field } : {}) };
  }
}

// A refusal of a Herald service (from fromGrpcError), which a compatibility API may restate in its
// own terms (compat.api.ts).
export class ServiceRefusal extends HttpError {}

export const badRequest = (error: string, description: string, field?: string) => new HttpError(400, error, description, field);

// gRPC status → HTTP status, as Google's HTTP/JSON transcoding does (RESOURCE_EXHAUSTED: 429).
const HTTP_STATUS: Partial<Record<Status, number>> = {
  [Status.INVALID_ARGUMENT]: 400,
  [Status.FAILED_PRECONDITION]: 400,
  [Status.OUT_OF_RANGE]: 400,
  [Status.UNAUTHENTICATED]: 401,
  [Status.PERMISSION_DENIED]: 403,
  [Status.NOT_FOUND]: 404,
  [Status.ALREADY_EXISTS]: 409,
  [Status.ABORTED]: 409,
  [Status.RESOURCE_EXHAUSTED]: 429,
  [Status.CANCELLED]: 499,
  [Status.UNIMPLEMENTED]: 501,
  [Status.UNAVAILABLE]: 503,
  [Status.DEADLINE_EXCEEDED]: 504,
};

// An upstream service's error as the HTTP client sees it: the service's reason and message
// for what the client did wrong; never the text of an internal failure.
export function fromGrpcError(err: unknown): HttpError {
  const e = err as Partial<ServiceError>;
  if (typeof e.code !== "number") return new HttpError(500, "INTERNAL", "internal error", undefined, {}, err);
  const { reason, field } = errorReason(err);
  const status = HTTP_STATUS[e.code as Status] ?? 500;
  if (status === 500) return new HttpError(500, "INTERNAL", "internal error", undefined, {}, err);
  if (e.code === Status.UNAVAILABLE) return new HttpError(503, "UNAVAILABLE", "a Herald service is not reachable; retry", undefined, { "retry-after": "1" }, err);
  // No herald-reason: grpc-js itself ended the call (its deadline, a cancelled stream), and its
  // text names addresses and load-balancer internals ("Deadline exceeded after 3600.000s,LB
  // pick: ...,remote_addr=..."). Only a Herald service's own words are passed on.
  if (!reason) return new ServiceRefusal(status, Status[e.code] ?? "ERROR", GRPC_ENDED[e.code as Status] ?? "the call ended early", undefined, {}, err);
  // A refusal that says when to come back (RESOURCE_EXHAUSTED PUBLISH_RATE_EXCEEDED: 429) carries
  // it as Retry-After, in whole seconds rounded up.
  const retryAfter = retryAfterSeconds(err);
  return new ServiceRefusal(status, reason, e.details ?? "", field, retryAfter ? { "retry-after": String(retryAfter) } : {});
}

// retry_after_ms of the error's google.rpc.ErrorInfo, else its `retry-after` trailer (seconds).
export function retryAfterSeconds(err: unknown): number | undefined {
  const ms = Number(errorInfoMetadata(err).retry_after_ms);
  if (ms > 0) return Math.ceil(ms / 1000);
  const trailer = Number((err as Partial<ServiceError>).metadata?.get("retry-after")[0]?.toString());
  return trailer > 0 ? Math.ceil(trailer) : undefined;
}

// The metadata map of the google.rpc.ErrorInfo in grpc-status-details-bin ({} when there is
// none or it does not decode). google.rpc.Status { repeated Any details = 3 }, Any { type_url = 1;
// value = 2 }, ErrorInfo { map<string, string> metadata = 3 } (entries: key = 1, value = 2).
export function errorInfoMetadata(err: unknown): Record<string, string> {
  const bin = (err as Partial<ServiceError>).metadata?.get("grpc-status-details-bin")[0];
  if (!(bin instanceof Uint8Array)) return {};
  const out: Record<string, string> = {};
  // Calls `each` with every field of a message; `each` reads the value or leaves it to be skipped.
  const fields = (bytes: Uint8Array, each: (field: number, r: BinaryReader) => boolean) => {
    const r = new BinaryReader(bytes);
    while (r.pos < r.len) {
      const [field, type] = r.tag();
      if (!each(field, r)) r.skip(type);
    }
  };
  try {
    fields(bin, (f, r) => {
      if (f !== 3) return false;
      let typeUrl = "";
      let value: Uint8Array | undefined;
      fields(r.bytes(), (af, ar) => (af === 1 ? ((typeUrl = ar.string()), true) : af === 2 ? ((value = ar.bytes()), true) : false));
      if (!typeUrl.endsWith("/google.rpc.ErrorInfo") || !value) return true;
      fields(value, (inf, ir) => {
        if (inf !== 3) return false;
        let key = "";
        let val = "";
        fields(ir.bytes(), (ef, er) => (ef === 1 ? ((key = er.string()), true) : ef === 2 ? ((val = er.string()), true) : false));
        out[key] = val;
        return true;
      });
      return true;
    });
  } catch {
    return {};
  }
  return out;
}

const GRPC_ENDED: Partial<Record<Status, string>> = {
  [Status.DEADLINE_EXCEEDED]: "the call did not finish before its deadline",
  [Status.CANCELLED]: "the call was cancelled",
  [Status.RESOURCE_EXHAUSTED]: "a gRPC limit was exceeded (message size)",
};

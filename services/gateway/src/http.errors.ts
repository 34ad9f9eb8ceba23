import { status as Status, type ServiceError } from "@grpc/grpc-js";
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
  return new HttpError(status, reason ?? Status[e.code] ?? "ERROR", e.details ?? "", field);
}

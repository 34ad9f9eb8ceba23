import { status as Status } from "@grpc/grpc-js";

// The one error type services throw. The gRPC layer turns it into a status with a
// machine-readable reason (google.rpc.ErrorInfo style) and, for bad input, the field name;
// the HTTP gateway turns it into a 4xx JSON body.
export class HeraldError extends Error {
  constructor(
    readonly code: Status,
    // UPPER_SNAKE reason, stable for clients to branch on, e.g. "INVALID_TOKEN".
    readonly reason: string,
    message: string,
    // The request field at fault, in proto path form ("recipients.topics[3]").
    readonly field?: string,
    readonly metadata: Record<string, string> = {},
  ) {
    super(field ? `${field}: ${message}` : message);
    this.name = "HeraldError";
  }
}

export const invalidArgument = (field: string, message: string, reason = "INVALID_ARGUMENT") =>
  new HeraldError(Status.INVALID_ARGUMENT, reason, message, field);

export const notFound = (what: string, id: string) =>
  new HeraldError(Status.NOT_FOUND, `${what.toUpperCase()}_NOT_FOUND`, `${what} "${id}" not found`);

export const alreadyExists = (what: string, id: string) =>
  new HeraldError(Status.ALREADY_EXISTS, `${what.toUpperCase()}_ALREADY_EXISTS`, `${what} "${id}" already exists`);

export const failedPrecondition = (reason: string, message: string) =>
  new HeraldError(Status.FAILED_PRECONDITION, reason, message);

export const resourceExhausted = (reason: string, message: string, field?: string) =>
  new HeraldError(Status.RESOURCE_EXHAUSTED, reason, message, field);

export const unauthenticated = (reason: string, message: string) =>
  new HeraldError(Status.UNAUTHENTICATED, reason, message);

export const permissionDenied = (reason: string, message: string) =>
  new HeraldError(Status.PERMISSION_DENIED, reason, message);

export { Status };

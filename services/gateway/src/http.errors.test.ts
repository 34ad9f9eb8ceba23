import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Metadata, status as Status } from "@grpc/grpc-js";
import { fromGrpcError } from "./http.errors.js";

const grpcError = (code: Status, details: string, reason?: string) => {
  const metadata = new Metadata();
  if (reason) metadata.set("herald-reason", reason);
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata });
};

describe("fromGrpcError", () => {
  it("passes on a Herald service's reason and message", () => {
    const e = fromGrpcError(grpcError(Status.FAILED_PRECONDITION, "app has no fcm credentials", "PROVIDER_NOT_CONFIGURED"));
    assert.deepEqual([e.status, e.error, e.message], [400, "PROVIDER_NOT_CONFIGURED", "app has no fcm credentials"]);
  });

  it("never passes on grpc-js's own text for a call it ended (deadline, cancel)", () => {
    const e = fromGrpcError(grpcError(Status.DEADLINE_EXCEEDED, "Deadline exceeded after 3600.000s,LB pick: 0.001s,remote_addr=10.0.0.7:50053"));
    assert.deepEqual([e.status, e.error, e.message], [504, "DEADLINE_EXCEEDED", "the call did not finish before its deadline"]);
    assert.doesNotMatch(JSON.stringify(e.body()), /remote_addr|LB pick/);
  });
});

import { createHash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { AsyncClient } from "@herald/platform";
import { APP_ID_RULE, type apps } from "@herald/proto";
import { isAppId, isMetadataValue } from "./admin.clients.js";
import { fromGrpcError, HttpError } from "./http.errors.js";
import type { HttpRequest } from "./http.router.js";

// How a request proves who it is, for every route of the gateway:
// - `Authorization: Bearer <api key>` (and `x-herald-app` with the admin key): passed to the
//   services, which check it as they check gRPC calls;
// - a signed request (Pusher-style, no key on the wire): `X-Herald-App`, `X-Herald-Timestamp`
//   (unix seconds) and `X-Herald-Signature: v1=<hex HMAC-SHA256>` over
//       v1 \n <timestamp> \n <METHOD> \n <path and query as sent> \n <hex SHA-256 of the body>
//   keyed with the app's secret (its user token secret). The registry checks the HMAC, a
//   five-minute window and that the signature was never used before; the gateway then calls
//   the services for that app with SERVER rights.

export const SIGNATURE_VERSION = "v1";

export function stringToSign(timestamp: string, method: string, target: string, body: Buffer): string {
  return [SIGNATURE_VERSION, timestamp, method.toUpperCase(), target, createHash("sha256").update(body).digest("hex")].join("\n");
}

export interface RequestAuth {
  // gRPC metadata for the services: the caller's own headers, or the admin key scoped to the
  // app of a valid signature.
  metadata(req: HttpRequest): Promise<grpc.Metadata>;
}

const header = (req: HttpRequest, name: string): string | undefined => {
  const v = req.headers[name];
  return typeof v === "string" ? v : undefined;
};

export function requestAuth(appsClient: AsyncClient<typeof apps.AppServiceService> | undefined, adminKey: string | undefined): RequestAuth {
  // The app of a valid signed request; undefined when the request is not signed. Checked once
  // per request: the registry records each signature, so a second check would be a replay.
  const signedApp = async (req: HttpRequest): Promise<string | undefined> => {
    const signature = header(req, "x-herald-signature");
    if (signature === undefined) return undefined;
    if (!appsClient || !adminKey) throw new HttpError(501, "SIGNING_UNAVAILABLE", "this gateway has no admin key, so it cannot check signed requests; send an API key instead");
    const app = header(req, "x-herald-app");
    const timestamp = header(req, "x-herald-timestamp");
    if (!app) throw new HttpError(401, "UNSIGNED_APP", "a signed request names its app in X-Herald-App", "x-herald-app");
    if (!isAppId(app)) throw badAppHeader();
    if (!timestamp || !/^\d{1,12}$/.test(timestamp)) throw new HttpError(401, "BAD_TIMESTAMP", "X-Herald-Timestamp must be the unix time in seconds", "x-herald-timestamp");
    const match = /^v1=([0-9a-fA-F]{64})$/.exec(signature);
    if (!match) throw new HttpError(401, "MALFORMED_SIGNATURE", "X-Herald-Signature must be v1=<64 hex characters of HMAC-SHA256>", "x-herald-signature");
    let verdict: apps.VerifyRequestSignatureResponse;
    try {
      verdict = await appsClient.verifyRequestSignature({ appId: app, stringToSign: stringToSign(timestamp, req.method, req.target, req.body), signature: match[1]!, timestamp: Number(timestamp) });
    } catch (err) {
      throw fromGrpcError(err);
    }
    if (!verdict.valid) throw new HttpError(401, verdict.reason, SIGNATURE_REFUSALS[verdict.reason] ?? "the signature is not valid");
    return app;
  };
  return {
    async metadata(req) {
      const metadata = new grpc.Metadata();
      const app = await signedApp(req);
      if (app) {
        metadata.set("authorization", `Bearer ${adminKey}`);
        metadata.set("x-herald-app", app);
        return metadata;
      }
      // gRPC metadata takes printable ASCII only (Metadata.set throws on anything else): what
      // no key or app id can contain is refused here as the client's mistake.
      const authorization = header(req, "authorization");
      if (authorization !== undefined) {
        if (!isMetadataValue(authorization)) throw new HttpError(401, "UNKNOWN_API_KEY", "the Authorization header holds characters no API key has (printable ASCII only)", "authorization");
        metadata.set("authorization", authorization);
      }
      const named = header(req, "x-herald-app");
      if (named) {
        if (!isAppId(named)) throw badAppHeader();
        metadata.set("x-herald-app", named);
      }
      return metadata;
    },
  };
}

const badAppHeader = () => new HttpError(400, "INVALID_APP_ID", `X-Herald-App must be an app id: ${APP_ID_RULE}`, "x-herald-app");

const SIGNATURE_REFUSALS: Record<string, string> = {
  BAD_SIGNATURE: "the signature does not match the request and the app's secret",
  STALE_TIMESTAMP: "X-Herald-Timestamp is more than 5 minutes away from the server's clock",
  REPLAYED_SIGNATURE: "this signature was already used: sign every request afresh",
  UNKNOWN_APP: "no such app",
};

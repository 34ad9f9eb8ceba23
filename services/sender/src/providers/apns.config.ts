import type { Tracer } from "@opentelemetry/api";
import type { Logger } from "@herald/platform";
import type { RequestObserver } from "../provider.types.js";

export const APNS_PRODUCTION_URL = "https://api.push.apple.com";
export const APNS_SANDBOX_URL = "https://api.sandbox.push.apple.com";

export type ApnsAuth =
  // A .p8 signing key: team-wide, never expires, needs a JWT refreshed every 20-60 minutes.
  | { kind: "token"; keyId: string; teamId: string; privateKeyPem: string }
  // A per-app push certificate presented as the TLS client certificate: PEM, or the .p12 bundle
  // Keychain exports.
  | { kind: "certificate"; certPem: string; keyPem: string; passphrase?: string }
  | { kind: "pkcs12"; pfx: Buffer; passphrase?: string };

export interface ApnsProviderConfig {
  // APNS_PRODUCTION_URL (default) or APNS_SANDBOX_URL; a fake's URL in tests.
  url?: string;
  // The app's bundle id: the default apns-topic (with the push type's suffix).
  bundleId: string;
  auth: ApnsAuth;
  // Extra CA (PEM) to trust, e.g. the test CA in front of the fake.
  ca?: string;
  // TLS SNI and HTTP/2 authority when `url` names an IP, e.g. "api.push.apple.com" against a
  // fake on 127.0.0.1, so the production path (and certificate check) stays the same.
  servername?: string;
  // HTTP/2 connections kept open to APNs; each carries as many streams as APNs allows.
  maxSessions?: number;
  // Per HTTP/2 request, from asking the pool for a stream to the end of the answer.
  requestTimeoutMs?: number;
  // How old the provider token may get before it is replaced (Apple: between 20 and 60 minutes).
  tokenRefreshMs?: number;
  now?: () => Date;
  // Defaults to the global provider's "herald.sender" tracer.
  tracer?: Tracer;
  logger?: Pick<Logger, "warn">;
  // Told of every HTTP request: its status (0 without an answer) and duration (metrics).
  onRequest?: RequestObserver;
}

export const DEFAULT_MAX_SESSIONS = 2;
export const DEFAULT_REQUEST_TIMEOUT_MS = 15_000;

import { createHash } from "node:crypto";

// The one way a device token appears in traces, webhook event ids and anything else that must
// name a device without holding its token: the first 16 hex digits of the SHA-256 of the token
// string exactly as the registry stores it and the sender receives it (for Web Push, the
// subscription JSON, not its endpoint). `herald.token_hash` on provider spans is this, so
// searching Jaeger for `herald.token_hash=<tokenHash(token)>` finds every request to the device.
export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 16);
}

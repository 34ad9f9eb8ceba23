import webPush from "web-push";

// VAPID (RFC 8292) Authorization headers, one per push-service origin. Signing costs an ECDSA
// signature per call, so a token is reused for half its lifetime: every token on the wire then
// expires between 6 and 12 hours ahead, inside the 24 hours push services accept.

export interface VapidKeys {
  // mailto: or https: contact of the operator.
  subject: string;
  // base64url, as web-push's generateVAPIDKeys() gives them.
  publicKey: string;
  privateKey: string;
}

const LIFETIME_S = 12 * 60 * 60;
// Wildcard hosts (*.notify.windows.com) may yield many origins; this bounds the memory.
const MAX_ORIGINS = 512;

export class VapidSigner {
  private readonly tokens = new Map<string, { authorization: string; exp: number }>();

  constructor(
    private readonly keys: VapidKeys,
    private readonly now: () => Date,
  ) {}

  // Throws when the keys or subject are unusable (a configuration problem).
  authorization(audience: string): string {
    const nowS = Math.floor(this.now().getTime() / 1000);
    const cached = this.tokens.get(audience);
    if (cached && cached.exp - nowS > LIFETIME_S / 2) return cached.authorization;
    const exp = nowS + LIFETIME_S;
    const { Authorization } = webPush.getVapidHeaders(audience, this.keys.subject, this.keys.publicKey, this.keys.privateKey, "aes128gcm", exp);
    if (this.tokens.size >= MAX_ORIGINS) this.tokens.clear();
    this.tokens.set(audience, { authorization: Authorization, exp });
    return Authorization;
  }
}

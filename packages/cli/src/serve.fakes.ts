import { createECDH } from "node:crypto";
import type { Logger } from "@herald/platform";
import { ApnsProvider, FcmProvider, HmsProvider, parseServiceAccount, WebPushProvider, type ProviderName, type PushProvider } from "@herald/sender";
import type { TokenRules } from "@herald/store";
import { generateApnsKey, startFakeApns, startFakeFcm, startFakeHms, startFakeWebPush, testTls, type FakeApns, type FakeFcm, type FakeHms, type FakeSubscription, type FakeWebPush } from "@herald/testing";

// `npm start -- --fakes`: the fake providers of the test suites, in this process, with the real
// provider code pointed at them, so a newcomer sees notifications arrive (one log line per
// delivery) without any Apple, Google or Huawei account.
export interface FakeProviders {
  apns: FakeApns;
  fcm: FakeFcm;
  hms: FakeHms;
  webpush: FakeWebPush;
  providerFor(app: string, provider: ProviderName): PushProvider | undefined;
  tokenRules: TokenRules;
  // A Web Push subscription of the fake push service, as a browser would hand it over.
  subscribe(): FakeSubscription;
  describe(): string[];
  close(): Promise<void>;
}

// `record`: keep every APNs and FCM request for delivered() (tests); off for a long-running
// `npm start -- --fakes`, whose deliveries are logged instead.
export async function startFakeProviders(logger: Logger, options: { record?: boolean } = {}): Promise<FakeProviders> {
  const record = options.record ?? false;
  const tls = testTls();
  const log = logger.child({ component: "fake-provider" });
  const apns = await startFakeApns({
    record,
    onRecord: (r) => log.info({ provider: "apns", device: `${r.token.slice(0, 8)}…`, status: r.status, reason: r.reason, topic: r.headers["apns-topic"], payload: r.payload }, "fake APNs answered"),
  });
  const webpush = await startFakeWebPush({
    onRecord: (r) => log.info({ provider: "webpush", subscription: r.subscriptionId, status: r.status, error: r.error, plaintext: r.plaintext?.toString("utf8") }, "fake Web Push service answered"),
  });
  const fcm = await startFakeFcm({
    record,
    onRecord: (r) => log.info({ provider: "fcm", target: `${r.target.slice(0, 12)}…`, status: r.status, errorCode: r.errorCode, message: r.message }, "fake FCM answered"),
  });
  const hms = await startFakeHms({
    onRecord: (r) => log.info({ provider: "hms", tokens: r.tokens.length, status: r.status, code: r.code, message: r.message }, "fake HMS Push Kit answered"),
  });
  const tokenRules: TokenRules = { webPushHosts: ["127.0.0.1"], webPushAllowInsecure: false };
  const vapid = vapidKeys();
  const providers: PushProvider[] = [];

  return {
    apns,
    fcm,
    hms,
    webpush,
    tokenRules,
    providerFor(app, name) {
      let provider: PushProvider | undefined;
      if (name === "apns") {
        // One key per app, as Apple would issue; the fake knows it, so tokens are accepted.
        const key = generateApnsKey();
        const bundleId = `dev.herald.${app}`;
        apns.registerKey({ ...key, bundleId });
        provider = new ApnsProvider({ url: apns.url, bundleId, auth: { kind: "token", keyId: key.keyId, teamId: key.teamId, privateKeyPem: key.privateKeyPem }, ca: tls.ca });
      } else if (name === "fcm") {
        provider = new FcmProvider({ serviceAccount: parseServiceAccount(fcm.serviceAccount(`herald-${app}`).json), url: fcm.url, ca: tls.ca });
      } else if (name === "hms") {
        provider = new HmsProvider({ ...hms.app(), pushUrl: hms.pushUrl, tokenUrl: hms.tokenUrl, ca: tls.ca });
      } else if (name === "webpush") {
        provider = new WebPushProvider({ vapid: { subject: "mailto:dev@herald.local", ...vapid }, tokenRules, ca: tls.ca });
      }
      if (provider) providers.push(provider);
      return provider;
    },
    subscribe: () => webpush.subscribe(),
    describe: () => [
      `fake APNs             ${apns.url} (any 64-hex token; answers logged)`,
      `fake FCM              ${fcm.url} (any token; OAuth at ${fcm.tokenUri})`,
      `fake HMS Push Kit     ${hms.pushUrl} (any token; OAuth at ${hms.tokenUrl})`,
      `fake Web Push service ${webpush.url} (subscriptions below; payloads decrypted and logged)`,
    ],
    async close() {
      await Promise.all(providers.map((p) => p.close()));
      await Promise.all([apns.close(), fcm.close(), hms.close(), webpush.close()]);
    },
  };
}

// A VAPID key pair in web-push's format: base64url uncompressed P-256 public point and raw scalar.
function vapidKeys(): { publicKey: string; privateKey: string } {
  const ecdh = createECDH("prime256v1");
  ecdh.generateKeys();
  const scalar = ecdh.getPrivateKey();
  const privateKey = Buffer.concat([Buffer.alloc(32 - scalar.length), scalar]);
  return { publicKey: ecdh.getPublicKey().toString("base64url"), privateKey: privateKey.toString("base64url") };
}

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { generateApnsKey } from "@herald/testing";
import { DEFAULT_WEBPUSH_HOSTS } from "@herald/store";
import { z } from "zod";
import { createProvider, CREDENTIAL_FILES, ProviderConfigError, providerEnv } from "./provider.factory.js";

const parse = (env: Record<string, string>) => z.object(providerEnv).parse({ HERALD_CREDENTIALS_DIR: "/creds", ...env });
const files = (contents: Record<string, string>) => (path: string) => {
  const name = path.replace(/^\/creds\//, "");
  if (!(name in contents)) throw Object.assign(new Error("ENOENT"), { code: "ENOENT" });
  return Buffer.from(contents[name]!);
};
const deps = (contents: Record<string, string> = {}) => ({ tokenRules: { webPushHosts: DEFAULT_WEBPUSH_HOSTS, webPushAllowInsecure: false }, readFile: files(contents) });

describe("createProvider", () => {
  it("runs dry-run without touching credentials", async () => {
    const p = createProvider("apns", parse({ HERALD_DRY_RUN: "true" }), deps());
    assert.equal(p.name, "apns");
    const [r] = await p.send({ app: "a", publishId: "p", jobId: "j", attempt: 0, targets: [{ deviceId: "d", token: "t" }], payload: new Uint8Array(), headers: {}, priority: "normal" });
    assert.equal(r?.outcome.kind, "sent");
  });

  it("builds APNs with a .p8 key, or with a certificate when there is no key", async () => {
    const key = generateApnsKey();
    const env = { HERALD_APNS_BUNDLE_ID: "com.example.app", HERALD_APNS_KEY_ID: key.keyId, HERALD_APNS_TEAM_ID: key.teamId };
    const token = createProvider("apns", parse(env), deps({ [CREDENTIAL_FILES.apnsKey]: key.privateKeyPem }));
    assert.equal(token.name, "apns");
    await token.close();
    const cert = createProvider("apns", parse({ HERALD_APNS_BUNDLE_ID: "com.example.app" }), deps({ [CREDENTIAL_FILES.apnsCert]: "CERT", [CREDENTIAL_FILES.apnsCertKey]: "KEY" }));
    await cert.close();
  });

  it("builds FCM from the service account file and HMS from the app id and secret file", async () => {
    const fcm = createProvider("fcm", parse({}), deps({ [CREDENTIAL_FILES.fcmServiceAccount]: JSON.stringify({ project_id: "p-123", client_email: "s@p.iam.gserviceaccount.com", private_key: generateApnsKey().privateKeyPem }) }));
    assert.equal(fcm.name, "fcm");
    await fcm.close();
    const hms = createProvider("hms", parse({ HERALD_HMS_APP_ID: "10123456" }), deps({ [CREDENTIAL_FILES.hmsClientSecret]: "secret\n" }));
    assert.equal(hms.name, "hms");
    await hms.close();
    assert.throws(() => createProvider("fcm", parse({}), deps({ [CREDENTIAL_FILES.fcmServiceAccount]: '{"project_id":"p"}' })), /fcm-service-account\.json: the service account has no client_email/);
    assert.throws(() => createProvider("hms", parse({}), deps({ [CREDENTIAL_FILES.hmsClientSecret]: "s" })), /HERALD_HMS_APP_ID is required/);
  });

  it("names the missing file or variable", () => {
    assert.throws(() => createProvider("apns", parse({ HERALD_APNS_BUNDLE_ID: "com.example.app" }), deps()), (err: Error) => err instanceof ProviderConfigError && err.message.includes("/creds/apns-cert.pem"));
    const key = generateApnsKey();
    assert.throws(() => createProvider("apns", parse({ HERALD_APNS_BUNDLE_ID: "com.example.app" }), deps({ [CREDENTIAL_FILES.apnsKey]: key.privateKeyPem })), /HERALD_APNS_KEY_ID is required with a \.p8 key/);
    assert.throws(() => createProvider("webpush", parse({ HERALD_VAPID_SUBJECT: "mailto:ops@example.com" }), deps()), /HERALD_VAPID_PUBLIC_KEY is required/);
  });

  it("validates ids before any connection", () => {
    assert.throws(() => parse({ HERALD_APNS_KEY_ID: "short" }), /10-character key id/);
    assert.throws(() => parse({ HERALD_VAPID_SUBJECT: "ops@example.com" }), /mailto/);
  });
});

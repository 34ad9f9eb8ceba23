import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { describe, test } from "node:test";
import { parsePushApp, type PushApp, type PushAppInput } from "@herald/pushapp";
import { generateApnsKey, testTls } from "@herald/testing";
import webPush from "web-push";
import { validateCredentials, type CredentialsResult, type ValidCredentials } from "./credentials.validator.js";

const b64 = (v: string | Buffer) => Buffer.from(v).toString("base64");

function app(spec: PushAppInput["spec"]): PushApp {
  const result = parsePushApp({ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "shop" }, spec });
  if (!("app" in result)) throw new Error(result.problems.join("; "));
  return result.app;
}

function serviceAccountJson(): string {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return JSON.stringify({ type: "service_account", project_id: "shop-project", client_email: "sender@shop-project.iam.gserviceaccount.com", private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString() });
}

const apnsKey = generateApnsKey({ keyId: "ABC123DEFG", teamId: "DEF123GHIJ" });
const vapid = webPush.generateVAPIDKeys();

const secrets: Record<string, Record<string, string>> = {
  apns: { "AuthKey.p8": b64(apnsKey.privateKeyPem) },
  fcm: { "sa.json": b64(serviceAccountJson()) },
  hms: { secret: b64("  hms-client-secret\n") },
  webpush: { "vapid.json": b64(JSON.stringify(vapid)) },
};
const read = (name: string) => secrets[name];

const allProviders = {
  apns: { environment: "sandbox", bundleId: "com.example.shop", auth: { token: { keyId: "ABC123DEFG", teamId: "DEF123GHIJ", keySecretRef: { name: "apns", key: "AuthKey.p8" } } } },
  fcm: { projectId: "shop-project", serviceAccountSecretRef: { name: "fcm", key: "sa.json" } },
  hms: { appId: "104412345", clientSecretRef: { name: "hms", key: "secret" } },
  webpush: { subject: "mailto:push@example.com", vapidKeysSecretRef: { name: "webpush", key: "vapid.json" } },
} as const;

function valid(result: CredentialsResult): ValidCredentials {
  if (!result.ok) assert.fail(`expected valid credentials, got ${JSON.stringify(result.problems)}`);
  return result;
}

function problems(result: CredentialsResult) {
  assert.equal(result.ok, false, "expected problems");
  return (result as { problems: Array<{ provider: string; reason: string; message: string }> }).problems;
}

describe("validateCredentials", () => {
  test("valid credentials of every provider become the files and environment the senders read", () => {
    const result = valid(validateCredentials(app({ providers: allProviders }), read));
    assert.deepEqual(Object.keys(result.files).sort(), ["apns-key.p8", "fcm-service-account.json", "hms-client-secret", "vapid-private-key"]);
    assert.equal(result.files["apns-key.p8"]!.toString(), apnsKey.privateKeyPem);
    assert.equal(result.files["hms-client-secret"]!.toString(), "hms-client-secret", "trimmed");
    assert.equal(result.files["vapid-private-key"]!.toString(), vapid.privateKey);
    assert.deepEqual(result.env.apns, { HERALD_APNS_ENVIRONMENT: "sandbox", HERALD_APNS_BUNDLE_ID: "com.example.shop", HERALD_APNS_KEY_ID: "ABC123DEFG", HERALD_APNS_TEAM_ID: "DEF123GHIJ" });
    assert.deepEqual(result.env.webpush, { HERALD_VAPID_SUBJECT: "mailto:push@example.com", HERALD_VAPID_PUBLIC_KEY: vapid.publicKey });
    assert.deepEqual(result.env.fcm, { HERALD_FCM_PROJECT_ID: "shop-project" });
    assert.deepEqual(result.env.hms, { HERALD_HMS_APP_ID: "104412345" });
    assert.equal(new Set(Object.values(result.hashes)).size, 4, "one hash per provider");
  });

  test("a changed credential changes only its own provider's hash (only that sender rolls)", () => {
    const before = valid(validateCredentials(app({ providers: allProviders }), read));
    const rotated: Record<string, Record<string, string>> = { ...secrets, hms: { secret: b64("a-new-secret") } };
    const after = valid(validateCredentials(app({ providers: allProviders }), (n) => rotated[n]));
    assert.notEqual(after.hashes.hms, before.hashes.hms);
    assert.equal(after.hashes.apns, before.hashes.apns);
    assert.equal(after.hashes.fcm, before.hashes.fcm);
  });

  test("disabled providers are not read at all", () => {
    const result = valid(validateCredentials(app({ providers: { ...allProviders, fcm: { ...allProviders.fcm, enabled: false } } }), (n) => (n === "fcm" ? assert.fail("read fcm") : read(n))));
    assert.equal(result.files["fcm-service-account.json"], undefined);
  });

  test("a missing Secret or key names the Secret, the key and the keys it has", () => {
    const missing = problems(validateCredentials(app({ providers: allProviders }), (n) => (n === "fcm" ? undefined : n === "hms" ? { other: b64("x") } : read(n))));
    assert.deepEqual(
      missing.map((p) => [p.provider, p.reason]),
      [
        ["fcm", "SecretNotFound"],
        ["hms", "SecretKeyMissing"],
      ],
    );
    assert.match(missing[0]!.message, /Secret "fcm" \(service account JSON\) does not exist/);
    assert.match(missing[1]!.message, /Secret "hms" has no key "secret".*it has "other"/);
  });

  test("wrong kinds of key and broken files are InvalidCredentials with a reason a human can act on", () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const otherVapid = webPush.generateVAPIDKeys();
    const bad: Record<string, Record<string, string>> = {
      apns: { "AuthKey.p8": b64(rsa) },
      fcm: { "sa.json": b64("{not json") },
      hms: { secret: b64("   ") },
      webpush: { "vapid.json": b64(JSON.stringify({ publicKey: otherVapid.publicKey, privateKey: vapid.privateKey })) },
    };
    const found = problems(validateCredentials(app({ providers: allProviders }), (n) => bad[n]));
    assert.ok(found.every((p) => p.reason === "InvalidCredentials"), JSON.stringify(found));
    const message = (provider: string) => found.find((p) => p.provider === provider)?.message ?? "";
    assert.match(message("apns"), /is a RSA key; APNs auth keys .* are EC P-256/);
    assert.match(message("fcm"), /not JSON/);
    assert.match(message("hms"), /is empty/);
    assert.match(message("webpush"), /publicKey does not belong to privateKey/);
  });

  test("an FCM service account of another project than spec.providers.fcm.projectId is ProjectIdMismatch", () => {
    const found = problems(validateCredentials(app({ providers: { fcm: { ...allProviders.fcm, projectId: "other-project" } } }), read));
    assert.deepEqual(
      found.map((p) => [p.provider, p.reason]),
      [["fcm", "ProjectIdMismatch"]],
    );
    assert.match(found[0]!.message, /belongs to project "shop-project", but spec\.providers\.fcm\.projectId is "other-project"/);
  });

  describe("APNs certificates", () => {
    const tls = testTls();
    const client = tls.issueClient("com.example.shop");
    const certApp = (withPassword: boolean) =>
      app({
        providers: {
          apns: {
            environment: "production",
            bundleId: "com.example.shop",
            auth: { certificate: { secretRef: { name: "cert", key: "push.p12" }, ...(withPassword ? { passwordSecretRef: { name: "cert", key: "password" } } : {}) } },
          },
        },
      });

    test("a PEM certificate with its key is split into the certificate and key files", () => {
      const result = valid(validateCredentials(certApp(false), () => ({ "push.p12": b64(client.cert + client.key) })));
      assert.match(result.files["apns-cert.pem"]!.toString(), /^-----BEGIN CERTIFICATE-----/);
      assert.match(result.files["apns-cert-key.pem"]!.toString(), /PRIVATE KEY-----\n$/);
      assert.equal(result.files["apns-cert.p12"], undefined);
    });

    test("a PEM certificate whose key belongs to another certificate is refused", () => {
      const other = tls.issueClient("com.example.other");
      const [problem] = problems(validateCredentials(certApp(false), () => ({ "push.p12": b64(client.cert + other.key) })));
      assert.match(problem!.message, /the private key does not belong to the certificate/);
    });

    test("a PKCS#12 bundle opens with its password; a wrong password says so", () => {
      const p12 = tls.toPkcs12(client, "s3cret");
      const ok = valid(validateCredentials(certApp(true), () => ({ "push.p12": b64(p12), password: b64("s3cret\n") })));
      assert.deepEqual(ok.files["apns-cert.p12"], p12);
      assert.equal(ok.files["apns-cert-passphrase"]!.toString(), "s3cret");
      const [wrong] = problems(validateCredentials(certApp(true), () => ({ "push.p12": b64(p12), password: b64("nope") })));
      assert.match(wrong!.message, /PKCS#12 password is wrong or missing/);
    });
  });
});

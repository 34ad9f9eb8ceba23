import { createECDH, createHash, createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { createSecureContext } from "node:tls";
import { enabledProviders, type PushApp, type PushAppProvider } from "@herald/pushapp";
import { CREDENTIAL_FILES, parseServiceAccount } from "@herald/sender";

// Turns the Secrets a PushApp references into what the senders mount: one file per credential
// (CREDENTIAL_FILES, the names the sender reads) and the non-secret settings as environment,
// after checking each credential the way its provider would — a .p8 must be a P-256 key, a
// certificate must parse, match its key and not be expired, a service account must carry a
// usable private key, the VAPID public key must belong to the private key. Problems are worded
// for the person who created the Secret.

export interface SecretRef {
  name: string;
  key: string;
}

// The Secret's data as the API returns it: base64 values.
export type SecretReader = (name: string) => Record<string, string> | undefined;

export interface ValidCredentials {
  ok: true;
  // File name → content, for the normalized credentials Secret.
  files: Record<string, Buffer>;
  // Provider → environment of its sender.
  env: Partial<Record<PushAppProvider, Record<string, string>>>;
  // Content hash over the files of one provider: a change rolls only that provider's pods.
  hashes: Partial<Record<PushAppProvider, string>>;
}

export interface CredentialProblem {
  provider: PushAppProvider;
  reason: "SecretNotFound" | "SecretKeyMissing" | "InvalidCredentials" | "ProjectIdMismatch";
  message: string;
}

export type CredentialsResult = ValidCredentials | { ok: false; problems: CredentialProblem[] };

export function validateCredentials(app: PushApp, readSecret: SecretReader, now: Date = new Date()): CredentialsResult {
  const files: Record<string, Buffer> = {};
  const env: ValidCredentials["env"] = {};
  const hashes: ValidCredentials["hashes"] = {};
  const problems: CredentialProblem[] = [];
  const providers = app.spec.providers ?? {};

  for (const provider of enabledProviders(app)) {
    const own: Record<string, Buffer> = {};
    const fail = (reason: CredentialProblem["reason"], message: string) => {
      problems.push({ provider, reason, message: `${provider}: ${message}` });
    };
    const read = (ref: SecretRef, what: string): Buffer | undefined => {
      const data = readSecret(ref.name);
      if (!data) {
        fail("SecretNotFound", `Secret "${ref.name}" (${what}) does not exist in the PushApp's namespace`);
        return undefined;
      }
      const value = data[ref.key];
      if (value === undefined) {
        const keys = Object.keys(data);
        fail("SecretKeyMissing", `Secret "${ref.name}" has no key "${ref.key}" (${what}); it has ${keys.length ? keys.map((k) => `"${k}"`).join(", ") : "no keys"}`);
        return undefined;
      }
      return Buffer.from(value, "base64");
    };
    const check = (where: SecretRef, what: string, test: () => string | undefined): boolean => {
      let problem: string | undefined;
      try {
        problem = test();
      } catch (err) {
        problem = (err as Error).message;
      }
      if (problem) fail("InvalidCredentials", `Secret "${where.name}" key "${where.key}" (${what}): ${problem}`);
      return !problem;
    };

    switch (provider) {
      case "apns": {
        const apns = providers.apns!;
        const token = apns.auth.token;
        const cert = apns.auth.certificate;
        const baseEnv = { HERALD_APNS_ENVIRONMENT: apns.environment, HERALD_APNS_BUNDLE_ID: apns.bundleId };
        if (token) {
          const key = read(token.keySecretRef, "APNs .p8 signing key");
          if (key && check(token.keySecretRef, "APNs .p8 signing key", () => p8Problem(key))) own[CREDENTIAL_FILES.apnsKey] = key;
          env.apns = { ...baseEnv, HERALD_APNS_KEY_ID: token.keyId, HERALD_APNS_TEAM_ID: token.teamId };
        } else if (cert) {
          const bundle = read(cert.secretRef, "APNs certificate");
          const password = cert.passwordSecretRef ? read(cert.passwordSecretRef, "certificate password") : undefined;
          if (bundle && (!cert.passwordSecretRef || password)) {
            const passphrase = password?.toString("utf8").trim();
            const pem = bundle.toString("utf8");
            if (pem.includes("-----BEGIN")) {
              const split = check(cert.secretRef, "APNs certificate", () => pemCertificateProblem(pem, passphrase, now));
              if (split) {
                own[CREDENTIAL_FILES.apnsCert] = Buffer.from(pemBlocks(pem, "CERTIFICATE").join(""));
                own[CREDENTIAL_FILES.apnsCertKey] = Buffer.from(pemBlocks(pem, "PRIVATE KEY").join(""));
              }
            } else if (check(cert.secretRef, "APNs PKCS#12 bundle", () => p12Problem(bundle, passphrase))) {
              own[CREDENTIAL_FILES.apnsP12] = bundle;
            }
            if (passphrase) own[CREDENTIAL_FILES.apnsCertPassphrase] = Buffer.from(passphrase);
          }
          env.apns = baseEnv;
        }
        break;
      }
      case "fcm": {
        const fcm = providers.fcm!;
        const json = read(fcm.serviceAccountSecretRef, "service account JSON");
        if (json && check(fcm.serviceAccountSecretRef, "service account JSON", () => serviceAccountProblem(json))) {
          // FCM sends to projects/<projectId>; a key of another project is refused there (403)
          // on every send, so it is refused here, before any sender runs with it.
          const project = parseServiceAccount(json.toString("utf8")).project_id;
          if (project === fcm.projectId) own[CREDENTIAL_FILES.fcmServiceAccount] = json;
          else fail("ProjectIdMismatch", `Secret "${fcm.serviceAccountSecretRef.name}" key "${fcm.serviceAccountSecretRef.key}" (service account JSON): the service account belongs to project "${project}", but spec.providers.fcm.projectId is "${fcm.projectId}"`);
        }
        env.fcm = { HERALD_FCM_PROJECT_ID: fcm.projectId };
        break;
      }
      case "hms": {
        const hms = providers.hms!;
        const secret = read(hms.clientSecretRef, "HMS client secret");
        if (secret && check(hms.clientSecretRef, "HMS client secret", () => (secret.toString("utf8").trim() ? undefined : "is empty"))) own[CREDENTIAL_FILES.hmsClientSecret] = Buffer.from(secret.toString("utf8").trim());
        env.hms = { HERALD_HMS_APP_ID: hms.appId };
        break;
      }
      case "webpush": {
        const webpush = providers.webpush!;
        const json = read(webpush.vapidKeysSecretRef, "VAPID key pair");
        let publicKey = "";
        if (
          json &&
          check(webpush.vapidKeysSecretRef, "VAPID key pair", () => {
            const parsed = parseVapid(json);
            if (typeof parsed === "string") return parsed;
            publicKey = parsed.publicKey;
            own[CREDENTIAL_FILES.vapidPrivateKey] = Buffer.from(parsed.privateKey);
            return undefined;
          })
        ) {
          env.webpush = { HERALD_VAPID_SUBJECT: webpush.subject, HERALD_VAPID_PUBLIC_KEY: publicKey };
        }
        break;
      }
    }
    Object.assign(files, own);
    hashes[provider] = contentHash(own, env[provider] ?? {});
  }
  return problems.length ? { ok: false, problems } : { ok: true, files, env, hashes };
}

function contentHash(files: Record<string, Buffer>, env: Record<string, string>): string {
  const h = createHash("sha256");
  for (const name of Object.keys(files).sort()) h.update(name).update("\0").update(files[name]!).update("\0");
  for (const name of Object.keys(env).sort()) h.update(name).update("\0").update(env[name]!).update("\0");
  return h.digest("hex").slice(0, 16);
}

function privateKey(pem: string | Buffer, passphrase?: string): KeyObject {
  try {
    return createPrivateKey(passphrase ? { key: pem, passphrase } : { key: pem });
  } catch (err) {
    const message = (err as Error).message;
    if (/bad decrypt|passphrase/i.test(message)) throw new Error("the private key is encrypted and the password is wrong or missing");
    throw new Error("is not a PEM private key");
  }
}

function p8Problem(key: Buffer): string | undefined {
  const k = privateKey(key);
  if (k.asymmetricKeyType !== "ec" || k.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    return `is a ${k.asymmetricKeyType?.toUpperCase()} key; APNs auth keys (.p8 from the Apple developer account) are EC P-256`;
  }
  return undefined;
}

function pemBlocks(pem: string, label: string): string[] {
  const re = new RegExp(`-----BEGIN ([A-Z ]*${label})-----[\\s\\S]*?-----END \\1-----\\n?`, "g");
  return (pem.match(re) ?? []).map((b) => (b.endsWith("\n") ? b : `${b}\n`));
}

function pemCertificateProblem(pem: string, passphrase: string | undefined, now: Date): string | undefined {
  const certs = pemBlocks(pem, "CERTIFICATE");
  const keys = pemBlocks(pem, "PRIVATE KEY");
  if (certs.length === 0) return "has no PEM CERTIFICATE block";
  if (keys.length === 0) return "has no PEM PRIVATE KEY block after the certificate";
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certs[0]!);
  } catch {
    return "the CERTIFICATE block does not parse";
  }
  const key = privateKey(keys[0]!, passphrase);
  if (!cert.checkPrivateKey(key)) return "the private key does not belong to the certificate";
  if (new Date(cert.validTo) < now) return `the certificate expired on ${new Date(cert.validTo).toISOString()} (renew it in the Apple developer account)`;
  if (new Date(cert.validFrom) > now) return `the certificate is not valid before ${new Date(cert.validFrom).toISOString()}`;
  return undefined;
}

function p12Problem(pfx: Buffer, passphrase: string | undefined): string | undefined {
  try {
    createSecureContext({ pfx, ...(passphrase ? { passphrase } : {}) });
    return undefined;
  } catch (err) {
    const message = (err as Error).message;
    if (/mac verify|password|decrypt/i.test(message)) return "the PKCS#12 password is wrong or missing (passwordSecretRef)";
    return `is neither PEM nor a readable PKCS#12 bundle (${message})`;
  }
}

function serviceAccountProblem(json: Buffer): string | undefined {
  const account = parseServiceAccount(json.toString("utf8"));
  const key = createPrivateKey(account.private_key);
  if (key.asymmetricKeyType !== "rsa") return "the private_key is not an RSA key (download a new JSON key for the service account)";
  return undefined;
}

function parseVapid(json: Buffer): { publicKey: string; privateKey: string } | string {
  let raw: { publicKey?: unknown; privateKey?: unknown };
  try {
    raw = JSON.parse(json.toString("utf8")) as typeof raw;
  } catch {
    return 'is not JSON; expected {"publicKey": "...", "privateKey": "..."} (base64url, as web-push generate-vapid-keys --json prints)';
  }
  if (typeof raw.publicKey !== "string" || typeof raw.privateKey !== "string") return 'needs string fields "publicKey" and "privateKey"';
  const pub = Buffer.from(raw.publicKey, "base64url");
  const priv = Buffer.from(raw.privateKey, "base64url");
  if (pub.length !== 65 || pub[0] !== 4) return "publicKey is not an uncompressed P-256 point (65 bytes, base64url)";
  if (priv.length !== 32) return "privateKey is not a 32-byte P-256 scalar (base64url)";
  const ecdh = createECDH("prime256v1");
  try {
    ecdh.setPrivateKey(priv);
  } catch {
    return "privateKey is not a valid P-256 private key";
  }
  if (!ecdh.getPublicKey().equals(pub)) return "publicKey does not belong to privateKey";
  return { publicKey: raw.publicKey, privateKey: raw.privateKey };
}

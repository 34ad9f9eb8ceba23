import { readFileSync } from "node:fs";
import { join } from "node:path";
import { env } from "@herald/platform";
import type { TokenRules } from "@herald/store";
import { z } from "zod";
import type { ProviderName, PushProvider, RequestObserver } from "./provider.types.js";
import { ApnsProvider, APNS_PRODUCTION_URL, APNS_SANDBOX_URL, type ApnsAuth } from "./providers/apns.provider.js";
import { DryRunProvider } from "./providers/dryrun.provider.js";
import { parseServiceAccount, type ServiceAccount } from "./providers/fcm.auth.js";
import { FcmProvider } from "./providers/fcm.provider.js";
import { HmsProvider } from "./providers/hms.provider.js";
import { WebPushProvider } from "./providers/webpush.provider.js";

// How a sender finds its provider. Secrets are files in one directory (the operator mounts the
// app's normalized credentials Secret there, one file per key); everything else is plain
// environment. Endpoints are configuration so that tests and the embedded mode run the
// production code path against the fake providers.
export const CREDENTIAL_FILES = {
  apnsKey: "apns-key.p8",
  apnsCert: "apns-cert.pem",
  apnsP12: "apns-cert.p12",
  apnsCertKey: "apns-cert-key.pem",
  apnsCertPassphrase: "apns-cert-passphrase",
  fcmServiceAccount: "fcm-service-account.json",
  hmsClientSecret: "hms-client-secret",
  vapidPrivateKey: "vapid-private-key",
} as const;

export const providerEnv = {
  HERALD_DRY_RUN: env.bool(false),
  HERALD_DRY_RUN_LATENCY_MS: env.int(0),
  HERALD_CREDENTIALS_DIR: z.string().default("/etc/herald/credentials"),
  // The provider's base URL; defaults to the real service.
  HERALD_PROVIDER_URL: z.string().url().optional(),
  // Extra CA bundle (PEM file) to trust, e.g. the test CA of the fake providers.
  HERALD_PROVIDER_CA_FILE: z.string().optional(),
  HERALD_PROVIDER_TIMEOUT_MS: env.int(15_000, 1),
  HERALD_APNS_ENVIRONMENT: z.enum(["production", "sandbox"]).default("production"),
  HERALD_APNS_BUNDLE_ID: z.string().regex(/^[A-Za-z0-9.-]+$/, "a bundle id such as com.example.app").optional(),
  HERALD_APNS_KEY_ID: z.string().regex(/^[A-Z0-9]{10}$/, "the 10-character key id of the .p8 key").optional(),
  HERALD_APNS_TEAM_ID: z.string().regex(/^[A-Z0-9]{10}$/, "the 10-character Apple team id").optional(),
  HERALD_APNS_CONNECTIONS: env.int(2, 1),
  HERALD_VAPID_SUBJECT: z.string().regex(/^(mailto:|https:)/, "a mailto: or https: contact").optional(),
  HERALD_VAPID_PUBLIC_KEY: z.string().regex(/^[A-Za-z0-9_-]{80,100}$/, "the base64url P-256 public key").optional(),
  HERALD_WEBPUSH_MAX_SOCKETS: env.int(64, 1),
  // The Firebase project; the service account's when absent.
  HERALD_FCM_PROJECT_ID: z.string().regex(/^[a-z][a-z0-9-]{4,61}$/, "a Firebase project id").optional(),
  HERALD_FCM_CONNECTIONS: env.int(2, 1),
  HERALD_HMS_APP_ID: z.string().regex(/^\d{5,20}$/, "the numeric AppGallery Connect app id").optional(),
  // Huawei's OAuth endpoint; a fake's in tests.
  HERALD_HMS_TOKEN_URL: z.string().url().optional(),
};

export type ProviderEnv = z.infer<z.ZodObject<typeof providerEnv>>;

export interface ProviderDeps {
  tokenRules: TokenRules;
  readFile?: (path: string) => Buffer;
  // Where a credential file is; in HERALD_CREDENTIALS_DIR unless said otherwise (a pool's apps).
  credentialPath?: (file: string) => string;
  onRequest?: RequestObserver;
}

// A configuration problem found before the first send: the sender refuses to start and says
// which variable or file to fix.
export class ProviderConfigError extends Error {}

export function createProvider(name: ProviderName, config: ProviderEnv, deps: ProviderDeps): PushProvider {
  if (config.HERALD_DRY_RUN) return new DryRunProvider(name, config.HERALD_DRY_RUN_LATENCY_MS);
  const readBytes = deps.readFile ?? ((path: string) => readFileSync(path));
  const read = (path: string) => readBytes(path).toString("utf8");
  const pathOf = deps.credentialPath ?? ((file: string) => join(config.HERALD_CREDENTIALS_DIR, file));
  const secret = (file: string, what: string) => {
    const path = pathOf(file);
    try {
      return read(path);
    } catch (err) {
      throw new ProviderConfigError(`${name}: ${what} is missing: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)}); mount it or set HERALD_DRY_RUN=true`);
    }
  };
  const optionalBytes = (file: string) => {
    try {
      return readBytes(pathOf(file));
    } catch {
      return undefined;
    }
  };
  const optionalSecret = (file: string) => optionalBytes(file)?.toString("utf8");
  const need = <K extends keyof ProviderEnv>(key: K, why: string): NonNullable<ProviderEnv[K]> => {
    const value = config[key];
    if (value === undefined || value === "") throw new ProviderConfigError(`${key} is required ${why}`);
    return value as NonNullable<ProviderEnv[K]>;
  };
  const ca = config.HERALD_PROVIDER_CA_FILE ? read(config.HERALD_PROVIDER_CA_FILE) : undefined;

  switch (name) {
    case "apns": {
      const keyPem = optionalSecret(CREDENTIAL_FILES.apnsKey);
      const pfx = optionalBytes(CREDENTIAL_FILES.apnsP12);
      const passphrase = optionalSecret(CREDENTIAL_FILES.apnsCertPassphrase)?.trim();
      let auth: ApnsAuth;
      if (keyPem) {
        auth = { kind: "token", keyId: need("HERALD_APNS_KEY_ID", "with a .p8 key"), teamId: need("HERALD_APNS_TEAM_ID", "with a .p8 key"), privateKeyPem: keyPem };
      } else if (pfx) {
        auth = { kind: "pkcs12", pfx, ...(passphrase ? { passphrase } : {}) };
      } else {
        auth = {
          kind: "certificate",
          certPem: secret(CREDENTIAL_FILES.apnsCert, `the ${CREDENTIAL_FILES.apnsKey} signing key, the ${CREDENTIAL_FILES.apnsP12} bundle or the push certificate`),
          keyPem: secret(CREDENTIAL_FILES.apnsCertKey, "the push certificate's private key"),
          ...(passphrase ? { passphrase } : {}),
        };
      }
      return new ApnsProvider({
        url: config.HERALD_PROVIDER_URL ?? (config.HERALD_APNS_ENVIRONMENT === "sandbox" ? APNS_SANDBOX_URL : APNS_PRODUCTION_URL),
        bundleId: need("HERALD_APNS_BUNDLE_ID", "for APNs (the default apns-topic)"),
        auth,
        maxSessions: config.HERALD_APNS_CONNECTIONS,
        requestTimeoutMs: config.HERALD_PROVIDER_TIMEOUT_MS,
        ...(ca ? { ca } : {}),
        ...(deps.onRequest ? { onRequest: deps.onRequest } : {}),
      });
    }
    case "webpush":
      return new WebPushProvider({
        vapid: {
          subject: need("HERALD_VAPID_SUBJECT", "for Web Push (the contact push services may use)"),
          publicKey: need("HERALD_VAPID_PUBLIC_KEY", "for Web Push"),
          privateKey: secret(CREDENTIAL_FILES.vapidPrivateKey, "the VAPID private key").trim(),
        },
        tokenRules: deps.tokenRules,
        maxSockets: config.HERALD_WEBPUSH_MAX_SOCKETS,
        timeoutMs: config.HERALD_PROVIDER_TIMEOUT_MS,
        ...(ca ? { ca } : {}),
        ...(deps.onRequest ? { onRequest: deps.onRequest } : {}),
      });
    case "fcm": {
      let serviceAccount: ServiceAccount;
      try {
        serviceAccount = parseServiceAccount(secret(CREDENTIAL_FILES.fcmServiceAccount, "the service account JSON"));
      } catch (err) {
        if (err instanceof ProviderConfigError) throw err;
        throw new ProviderConfigError(`fcm: ${CREDENTIAL_FILES.fcmServiceAccount}: ${(err as Error).message}`);
      }
      return new FcmProvider({
        serviceAccount,
        ...(config.HERALD_FCM_PROJECT_ID ? { projectId: config.HERALD_FCM_PROJECT_ID } : {}),
        ...(config.HERALD_PROVIDER_URL ? { url: config.HERALD_PROVIDER_URL } : {}),
        maxSessions: config.HERALD_FCM_CONNECTIONS,
        requestTimeoutMs: config.HERALD_PROVIDER_TIMEOUT_MS,
        ...(ca ? { ca } : {}),
        ...(deps.onRequest ? { onRequest: deps.onRequest } : {}),
      });
    }
    case "hms":
      return new HmsProvider({
        appId: need("HERALD_HMS_APP_ID", "for HMS (the AppGallery Connect app id)"),
        clientSecret: secret(CREDENTIAL_FILES.hmsClientSecret, "the HMS client secret").trim(),
        ...(config.HERALD_PROVIDER_URL ? { pushUrl: config.HERALD_PROVIDER_URL } : {}),
        ...(config.HERALD_HMS_TOKEN_URL ? { tokenUrl: config.HERALD_HMS_TOKEN_URL } : {}),
        requestTimeoutMs: config.HERALD_PROVIDER_TIMEOUT_MS,
        ...(ca ? { ca } : {}),
        ...(deps.onRequest ? { onRequest: deps.onRequest } : {}),
      });
  }
}

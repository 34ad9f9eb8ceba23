// The providers a benchmark can broadcast through: how their devices look, and how a sender is
// pointed at the fake — as environment plus credential files, the way the operator configures a
// sender process. The embedded mode feeds the same settings to the same factory
// (createProvider), so both modes run identical provider code. Adding a provider (HMS) means one
// more entry here and its fake in fakes.main.ts.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CREDENTIAL_FILES, createProvider, providerEnv, type PushProvider } from "@herald/sender";
import type { PlatformName, ProviderName, TokenRules } from "@herald/store";
import { randomDeviceToken, randomFcmToken } from "@herald/testing";
import webPush from "web-push";
import { z } from "zod";
import type { FakesControl } from "./fakes.client.js";
import type { FakesInfo } from "./fakes.protocol.js";

// The fakes listen on 127.0.0.1: the Web Push endpoint allow-list (SSRF guard) must name it.
export const TOKEN_RULES: TokenRules = { webPushHosts: ["127.0.0.1"], webPushAllowInsecure: false };
export const ALLOW_FAKES_ENV = { HERALD_WEBPUSH_ALLOWED_HOSTS: "127.0.0.1" };

export interface SenderConfig {
  env: Record<string, string>;
  // File name in the credentials directory → content.
  credentials: Record<string, string>;
}

export interface DeviceToken {
  token: string;
  // What the fake reports the delivery under (see watchKey): the APNs or FCM token, the
  // subscription id.
  fakeKey: string;
}

export interface ProviderEntry {
  name: ProviderName;
  platform: PlatformName;
  // `caFile` holds the fakes' test CA.
  sender(fakes: FakesInfo, caFile: string): SenderConfig;
  // Tokens for `n` new devices.
  tokens(fakes: FakesControl, n: number): Promise<DeviceToken[]>;
}

// One VAPID key pair per benchmark process is enough: every sender of a run uses the same one.
const vapid = webPush.generateVAPIDKeys();

export const PROVIDERS: Partial<Record<ProviderName, ProviderEntry>> = {
  apns: {
    name: "apns",
    platform: "ios",
    sender: (fakes, caFile) => ({
      env: {
        HERALD_PROVIDER_URL: fakes.apns.url,
        HERALD_PROVIDER_CA_FILE: caFile,
        HERALD_APNS_BUNDLE_ID: fakes.apns.bundleId,
        HERALD_APNS_KEY_ID: fakes.apns.keyId,
        HERALD_APNS_TEAM_ID: fakes.apns.teamId,
      },
      credentials: { [CREDENTIAL_FILES.apnsKey]: fakes.apns.privateKeyPem },
    }),
    tokens: async (_fakes, n) =>
      Array.from({ length: n }, () => {
        const token = randomDeviceToken();
        return { token, fakeKey: token };
      }),
  },
  fcm: {
    name: "fcm",
    platform: "android",
    // The service account's token_uri points at the fake, so the OAuth grant goes there too.
    sender: (fakes, caFile) => ({
      env: { HERALD_PROVIDER_URL: fakes.fcm.url, HERALD_PROVIDER_CA_FILE: caFile, HERALD_FCM_PROJECT_ID: fakes.fcm.projectId },
      credentials: { [CREDENTIAL_FILES.fcmServiceAccount]: fakes.fcm.serviceAccountJson },
    }),
    tokens: async (_fakes, n) =>
      Array.from({ length: n }, () => {
        const token = randomFcmToken();
        return { token, fakeKey: token };
      }),
  },
  webpush: {
    name: "webpush",
    platform: "web",
    sender: (_fakes, caFile) => ({
      env: { ...ALLOW_FAKES_ENV, HERALD_PROVIDER_CA_FILE: caFile, HERALD_VAPID_SUBJECT: "mailto:bench@herald.test", HERALD_VAPID_PUBLIC_KEY: vapid.publicKey },
      credentials: { [CREDENTIAL_FILES.vapidPrivateKey]: vapid.privateKey },
    }),
    // Each subscription has its own browser keys in the fake, which decrypts every message.
    tokens: async (fakes, n) => (await fakes.subscribeWebPush(n)).map((s) => ({ token: s.token, fakeKey: s.id })),
  },
};

// Providers both the table and the fakes process know, in table order.
export function availableProviders(fakes: FakesInfo): ProviderName[] {
  return (Object.keys(PROVIDERS) as ProviderName[]).filter((name) => fakes.providers.includes(name));
}

export function entryOf(name: ProviderName): ProviderEntry {
  const entry = PROVIDERS[name];
  if (!entry) throw new Error(`provider ${name} is not in the benchmark's provider table`);
  return entry;
}

// The fakes' CA as a file (HERALD_PROVIDER_CA_FILE); the fakes share one test CA per process,
// but concatenating keeps this right should they ever differ.
export function writeCaFile(fakes: FakesInfo): string {
  const file = join(mkdtempSync(join(tmpdir(), "herald-bench-ca-")), "ca.pem");
  writeFileSync(file, [...new Set([fakes.apns.ca, fakes.fcm.ca, fakes.webpush.ca])].join("\n"));
  return file;
}

// A credentials directory as the operator mounts it: one file per key.
export function writeCredentials(credentials: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "herald-bench-creds-"));
  for (const [file, content] of Object.entries(credentials)) writeFileSync(join(dir, file), content, { mode: 0o600 });
  return dir;
}

const providerConfig = z.object(providerEnv);

// The provider a sender process would build from this configuration, built in this process.
export function providerFromConfig(name: ProviderName, config: SenderConfig): PushProvider {
  const env = { ...config.env, HERALD_CREDENTIALS_DIR: writeCredentials(config.credentials) };
  return createProvider(name, providerConfig.parse(env), { tokenRules: TOKEN_RULES });
}

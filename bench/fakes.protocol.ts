// The control protocol of the fakes process (bench/fakes.main.ts): JSON over HTTP on 127.0.0.1.
// The fake providers run in their own process so that their CPU and memory are neither the
// driver's nor Herald's, which is why the driver needs this small channel to set them up and to
// read what they counted.

import type { ProviderName } from "@herald/store";

// Wall-clock milliseconds with sub-millisecond resolution. Both processes run on the same host,
// so their values compare directly (publish time in the driver, receive time in the fakes).
export const wallNow = (): number => performance.timeOrigin + performance.now();

export interface FakesOptions {
  // Added to every APNs answer (a provider round trip); 0 measures pure CPU cost.
  apnsLatencyMs: number;
  // SETTINGS_MAX_CONCURRENT_STREAMS of an authenticated APNs connection (Apple: 500-1500).
  apnsMaxStreams: number;
}

export interface FakesInfo {
  pid: number;
  // Providers this fakes process runs, in the order of the provider table.
  providers: ProviderName[];
  apns: { url: string; ca: string; bundleId: string; keyId: string; teamId: string; privateKeyPem: string };
  webpush: { url: string; ca: string };
  // `serviceAccountJson` is the key file a sender mounts; its token_uri points at the fake.
  fcm: { url: string; ca: string; projectId: string; serviceAccountJson: string };
}

export interface ProviderCount {
  // 2xx answers, and every other answer (0 = a request cut off before its answer).
  ok: number;
  failed: number;
  byStatus: Record<string, number>;
  // Wall-clock times of the first and the last 2xx since the last reset; 0 when none.
  firstOkAt: number;
  lastOkAt: number;
}

export interface FakesStats {
  providers: Partial<Record<ProviderName, ProviderCount>>;
  // Watched keys (see watchKey) and when their first 2xx arrived; absent until then.
  watched: Record<string, number>;
}

// One device a latency probe waits for: the APNs device token, the FCM registration token, the
// Web Push subscription id.
export const watchKey = (provider: ProviderName, key: string): string => `${provider}:${key}`;

export interface SubscriptionsResponse {
  // Fresh Web Push subscriptions: `token` is the PushSubscription JSON a browser would hand over.
  subscriptions: Array<{ id: string; token: string }>;
}

export const FAKES_READY = "bench fakes ready on port ";

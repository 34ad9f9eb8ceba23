// Seeds the benchmark's devices through the store's bulk import, straight into the database the
// platform reads (MongoDB, or the embedded server's memory store), a batch at a time: neither
// the token list nor the device list of the whole topic is ever held.
import { normalizeToken, type DeviceImport, type ProviderName, type Store } from "@herald/store";
import type { FakesControl } from "./fakes.client.js";
import { watchKey } from "./fakes.protocol.js";
import { entryOf, TOKEN_RULES } from "./providers.table.js";

export interface SeedPlan {
  app: string;
  // The topic of the broadcast and how many of its devices each provider gets.
  topic: string;
  devices: Partial<Record<ProviderName, number>>;
  // Devices outside the topic, each the target of one latency probe.
  probes: Partial<Record<ProviderName, number>>;
}

export interface LatencyProbe {
  provider: ProviderName;
  deviceId: string;
  // The fakes' key for this device (see watchKey).
  watch: string;
}

export interface SeedResult {
  seconds: number;
  devicesPerSecond: number;
  // Per provider, the probes included.
  imported: Partial<Record<ProviderName, number>>;
  probes: LatencyProbe[];
}

// Devices per importMany call; the repositories split it further into database batches.
const BATCH = 2000;

export async function seedDevices(store: Store, fakes: FakesControl, plan: SeedPlan, log: (line: string) => void = () => {}): Promise<SeedResult> {
  const started = performance.now();
  const imported: Partial<Record<ProviderName, number>> = {};
  const now = new Date();
  let total = 0;
  let lastLog = started;

  // Imports `n` devices of one provider, in batches; `onDevice` sees each created id.
  const importDevices = async (provider: ProviderName, n: number, topics: string[], onDevice?: (id: string, fakeKey: string) => void) => {
    const entry = entryOf(provider);
    for (let done = 0; done < n; ) {
      const tokens = await entry.tokens(fakes, Math.min(BATCH, n - done));
      const inputs: DeviceImport[] = tokens.map(({ token }) => ({
        provider,
        platform: entry.platform,
        // As the registry would store it (canonical form, endpoint allow-list checked).
        token: normalizeToken(provider, token, TOKEN_RULES),
        user: "",
        tags: {},
        meta: {},
        locale: "en-US",
        timezone: "UTC",
        topics,
      }));
      const ids = await store.devices.importMany(plan.app, inputs, now);
      ids.forEach((id, i) => {
        // Fresh random tokens: a refusal means the import is wrong, not a collision.
        if (id === null) throw new Error(`importMany refused a fresh ${provider} token`);
        onDevice?.(id, tokens[i]!.fakeKey);
      });
      done += ids.length;
      total += ids.length;
      imported[provider] = (imported[provider] ?? 0) + ids.length;
      if (performance.now() - lastLog > 10_000) {
        lastLog = performance.now();
        log(`seeded ${total} devices (${Math.round(total / ((lastLog - started) / 1000))}/s)`);
      }
    }
  };

  for (const [provider, n] of Object.entries(plan.devices) as Array<[ProviderName, number]>) await importDevices(provider, n, [plan.topic]);
  const probes: LatencyProbe[] = [];
  for (const [provider, n] of Object.entries(plan.probes) as Array<[ProviderName, number]>) {
    await importDevices(provider, n, [], (deviceId, fakeKey) => probes.push({ provider, deviceId, watch: watchKey(provider, fakeKey) }));
  }
  const seconds = (performance.now() - started) / 1000;
  return { seconds: round(seconds, 2), devicesPerSecond: Math.round(total / seconds), imported, probes };
}

export const round = (x: number, digits = 0): number => Math.round(x * 10 ** digits) / 10 ** digits;

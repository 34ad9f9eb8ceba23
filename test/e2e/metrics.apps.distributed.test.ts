import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { createClient } from "@herald/platform";
import { apps } from "@herald/proto";
import { eventually, sample, scrape } from "@herald/testing";
import { fcmToken, Platform as DevicePlatform, Provider } from "../integration/fixtures.js";
import { startPlatform, type Clients, type Platform } from "./platform.fixture.js";

// A deleted app's series leave the registry's and the dispatcher's /metrics, as their main.ts
// wire it (HERALD_APP_SERIES_SWEEP_SECONDS, 1 here instead of 60), the counters by the sweep and
// the devices gauge because the purge emptied the store; the other app's stay.
describe("metrics of a deleted app, distributed", () => {
  const keep = `keep-${randomUUID().slice(0, 6)}`;
  const drop = `drop-${randomUUID().slice(0, 6)}`;
  let platform: Platform;
  const clients: Record<string, Clients> = {};

  before(async () => {
    // Sizes recounted every second too: the devices gauge follows the purge.
    platform = await startPlatform({ HERALD_APP_SERIES_SWEEP_SECONDS: "1", HERALD_SIZE_METRICS_INTERVAL_SECONDS: "1" });
    for (const id of [keep, drop]) clients[id] = await platform.createApp(id);
  });
  after(async () => {
    await platform?.stop();
  });

  const appsIn = (text: string) => new Set([...text.matchAll(/^herald_\w+\{[^}]*\bapp="([^"]+)"/gm)].map((m) => m[1]!));

  it("drops every series of the deleted app from the scrape, and keeps the other's", async () => {
    for (const id of [keep, drop]) {
      const c = clients[id]!;
      await c.registry.registerDevice({ provider: Provider.PROVIDER_FCM, platform: DevicePlatform.PLATFORM_ANDROID, token: fcmToken(), topics: ["t"] });
      await c.dispatch.publish({ recipients: { target: { $case: "topics", value: { values: ["t"] } } }, notification: { alert: { title: "x" } } });
    }
    // Both apps' series are there first.
    await eventually(async () => {
      const [registry, dispatcher] = await Promise.all([scrape(platform.metrics.registry), scrape(platform.metrics.dispatcher)]);
      return [keep, drop].every((app) => sample(registry, "herald_registry_device_events_total", { app, kind: "registered" }) === 1 && sample(dispatcher, "herald_publishes_accepted_total", { app }) === 1);
    }, "both apps' series in the registry's and the dispatcher's scrape");

    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    try {
      await admin.deleteApp({ id: drop, purgeData: true });
    } finally {
      admin.close();
    }
    const [registry, dispatcher] = await eventually(async () => {
      const texts = await Promise.all([scrape(platform.metrics.registry), scrape(platform.metrics.dispatcher)]);
      return texts.every((t) => !appsIn(t).has(drop)) ? texts : undefined;
    }, `no series of ${drop} in the registry's and the dispatcher's scrape`, { timeoutMs: 30_000 });
    assert.ok(appsIn(registry).has(keep) && appsIn(dispatcher).has(keep), "the other app's series stay");
    assert.equal(sample(registry, "herald_registry_device_events_total", { app: keep, kind: "registered" }), 1);
    assert.equal(sample(dispatcher, "herald_publishes_accepted_total", { app: keep }), 1);
  });
});

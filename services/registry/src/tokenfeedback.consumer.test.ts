import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger, MemoryBus } from "@herald/platform";
import { events, Provider } from "@herald/proto";
import { createMemoryStore } from "@herald/store";
import { createRegistryModule } from "./registry.module.js";

describe("token feedback", () => {
  it("removes a dead token's device unless it registered again after the verdict", async () => {
    const store = createMemoryStore();
    const bus = new MemoryBus();
    let now = new Date("2026-01-01T00:00:00Z");
    const registry = createRegistryModule({ store, bus, logger: createLogger({ service: "t", level: "silent" }), masterSecret: "s".repeat(32), tokenRules: { webPushHosts: [], webPushAllowInsecure: false }, now: () => now });
    const write = (token: string) => store.devices.write({ app: "a", provider: "apns", platform: "ios", token, user: "", tags: {}, meta: {}, locale: "", timezone: "", now });
    const stale = (await write("a".repeat(64))).device;
    await store.subscriptions.add("a", stale.id, stale, ["news"], "device");
    const verdict = new Date(now.getTime() + 1000);
    now = new Date(now.getTime() + 2000);
    const fresh = (await write("b".repeat(64))).device;
    const feedback = (token: string) => events.TokenFeedback.fromPartial({ app: "a", provider: Provider.PROVIDER_APNS, token, reason: "apns:Unregistered", invalidSince: verdict });
    assert.equal(await registry.tokenFeedback.handle(feedback(stale.token)), 1);
    assert.equal(await registry.tokenFeedback.handle(feedback(fresh.token)), 0, "registered after the verdict: kept");
    assert.equal(await registry.tokenFeedback.handle(events.TokenFeedback.fromPartial({ app: "other", provider: Provider.PROVIDER_APNS, token: fresh.token })), 0, "another app's report touches nothing");
    assert.deepEqual((await store.devices.list("a", {}, { limit: 10 })).map((d) => d.id), [fresh.id]);
    assert.equal((await store.subscriptions.stats("a", ["news"]))[0]?.deviceCount, 0);
    await bus.close();
  });
});

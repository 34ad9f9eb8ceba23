import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { storeContract } from "./store.contract.js";
import { createMemoryStore } from "./store.memory.js";

storeContract("memory", async () => createMemoryStore());

describe("memory store (embedded mode)", () => {
  it("lets the event loop turn between a topic's recipient batches, however many there are", async () => {
    const store = createMemoryStore();
    const device = (i: number) => ({ provider: "apns" as const, platform: "ios" as const, token: i.toString(16).padStart(64, "0"), user: "", tags: {}, meta: {}, locale: "en", timezone: "UTC", topics: ["news"] });
    await store.devices.importMany("app", [device(1), device(2), device(3)], new Date());
    const batches = store.subscriptions.scanRecipients("app", ["news"], { batchSize: 1 })[Symbol.asyncIterator]();
    assert.equal((await batches.next()).value?.length, 1);
    // Queued before the next batch is asked for: it must run before that batch arrives, or a
    // fan-out of a million recipients holds every request of the process until it ends.
    let turned = false;
    setImmediate(() => (turned = true));
    assert.equal((await batches.next()).value?.length, 1);
    assert.equal(turned, true);
    await batches.return?.(undefined);
  });
});

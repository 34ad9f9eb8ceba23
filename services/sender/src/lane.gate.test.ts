import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LaneGate } from "./lane.gate.js";

const deferred = () => {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
};

describe("LaneGate", () => {
  it("lets bulk steps run at once while no urgent step is in flight", async () => {
    const gate = new LaneGate(10_000);
    await gate.bulkTurn();
    assert.equal(gate.overridden, 0);
  });

  it("holds bulk steps while urgent ones are in flight and releases them all when the last one ends", async () => {
    const gate = new LaneGate(10_000);
    const a = deferred();
    const b = deferred();
    const first = gate.urgentStep(() => a.promise);
    const second = gate.urgentStep(() => b.promise);
    const order: string[] = [];
    const bulk = [gate.bulkTurn().then(() => order.push("bulk 1")), gate.bulkTurn().then(() => order.push("bulk 2"))];
    a.resolve();
    await first;
    order.push("urgent 1 done");
    // One urgent step is still in flight: the bulk steps keep waiting.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ["urgent 1 done"]);
    b.resolve();
    await second;
    await Promise.all(bulk);
    assert.deepEqual(order, ["urgent 1 done", "bulk 1", "bulk 2"]);
    assert.equal(gate.urgentInFlight, 0);
    assert.equal(gate.overridden, 0);
  });

  it("never starves bulk: a bulk step starts after maxBulkWaitMs however busy the urgent lane is", async () => {
    const gate = new LaneGate(5);
    const endless = deferred();
    const urgent = gate.urgentStep(() => endless.promise);
    await gate.bulkTurn();
    assert.equal(gate.overridden, 1);
    assert.equal(gate.urgentInFlight, 1);
    endless.resolve();
    await urgent;
  });

  it("an urgent step that throws still releases the bulk lane", async () => {
    const gate = new LaneGate(10_000);
    const failing = deferred();
    const urgent = gate.urgentStep(async () => {
      await failing.promise;
      throw new Error("provider down");
    });
    let released = false;
    const waiting = gate.bulkTurn().then(() => (released = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(released, false, "held while the urgent step runs");
    failing.resolve();
    await assert.rejects(urgent, /provider down/);
    await waiting;
    assert.equal(gate.urgentInFlight, 0);
    assert.equal(gate.overridden, 0);
  });
});

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, it } from "node:test";
import { sortedIdBatches } from "./ids.sorted.js";
import { compareStrings } from "./store.query.js";

const collect = async (it: AsyncIterable<string[]>) => {
  const out: string[][] = [];
  for await (const b of it) out.push(b);
  return out;
};

describe("sortedIdBatches", () => {
  it("gives every id of overlapping sets once, in binary order, across many sorted slices", async () => {
    const ids: string[] = Array.from({ length: 70_000 }, () => randomUUID());
    // Ids above U+FFFF sort after U+E000..U+FFFF in binary order (not in UTF-16 order).
    ids.push("\u{1F600}x", "\uE000y", "\uFFFFz");
    const a = new Set(ids.filter((_, i) => i % 2 === 0));
    const b = new Set(ids.filter((_, i) => i % 3 === 0));
    const c = new Set(ids.slice(-3));
    const want = [...new Set([...a, ...b, ...c])].sort(compareStrings);
    const batches = await collect(sortedIdBatches([a, b, c], { batchSize: 1000 }));
    assert.ok(batches.slice(0, -1).every((x) => x.length === 1000));
    assert.deepEqual(batches.flat(), want);
    assert.deepEqual(want.slice(-3), ["\uE000y", "\uFFFFz", "\u{1F600}x"]);
    const after = want[41_234]!;
    assert.deepEqual((await collect(sortedIdBatches([a, b, c], { after, batchSize: 777 }))).flat(), want.slice(41_235));
  });

  it("lets the event loop turn while it collects a large set", async () => {
    const big = new Set(Array.from({ length: 100_000 }, (_, i) => `id-${String(100_000 - i).padStart(6, "0")}`));
    let turned = false;
    setImmediate(() => (turned = true));
    const first = await sortedIdBatches([big], { batchSize: 10 })[Symbol.asyncIterator]().next();
    assert.ok(turned, "an immediate queued before the read ran before its first batch");
    assert.deepEqual(first.value, Array.from({ length: 10 }, (_, i) => `id-${String(i + 1).padStart(6, "0")}`));
  });
});

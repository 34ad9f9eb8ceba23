import { setImmediate as nextTurn } from "node:timers/promises";
import { compareStrings } from "./store.query.js";

// The memory store's topic read, ascending and in batches, for topics of a million devices: the
// ids are collected and sorted in slices of SLICE with a turn of the event loop between slices,
// and the sorted slices are merged as batches are asked for. Sorting a million ids in one step
// held the embedded server's event loop for seconds (13.6 s before the Publish call answered).
const SLICE = 20_000;

// Surrogates (ids with characters above U+FFFF) are where `<` and binary order disagree.
const SURROGATE = /[\uD800-\uDFFF]/;

function sortSlice(ids: string[]): string[] {
  // The engine's own string sort is several times faster than a comparator, and equal to binary
  // order without surrogates (Herald's own ids never have them).
  return ids.some((id) => SURROGATE.test(id)) ? ids.sort(compareStrings) : ids.sort();
}

// Each id of `sets` once, after `after`, ascending, in batches of `batchSize`. The sets are
// read live: an id added or removed during the read may or may not be seen, as with a cursor.
// Each set holds an id at most once (a Set, a Map's keys).
export async function* sortedIdBatches(sets: Iterable<Iterable<string>>, options: { after?: string; batchSize: number }): AsyncIterable<string[]> {
  const { after, batchSize } = options;
  const all = [...sets];
  const seen = all.length > 1 ? new Set<string>() : undefined;
  const runs: string[][] = [];
  let slice: string[] = [];
  for (const set of all) {
    for (const id of set) {
      if (after !== undefined && compareStrings(id, after) <= 0) continue;
      if (seen) {
        if (seen.has(id)) continue;
        seen.add(id);
      }
      slice.push(id);
      if (slice.length === SLICE) {
        runs.push(sortSlice(slice));
        slice = [];
        await nextTurn();
      }
    }
  }
  if (slice.length) runs.push(sortSlice(slice));
  if (runs.length === 1) {
    const [only] = runs;
    for (let i = 0; i < only!.length; i += batchSize) yield only!.slice(i, i + batchSize);
    return;
  }
  yield* merged(runs, batchSize);
}

// A k-way merge of sorted runs through a binary heap of their heads.
function* merged(runs: string[][], batchSize: number): Iterable<string[]> {
  const at = runs.map(() => 0);
  const heap = runs.map((_, i) => i);
  const head = (r: number) => runs[r]![at[r]!]!;
  const less = (a: number, b: number) => compareStrings(head(a), head(b)) < 0;
  const down = (i: number) => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && less(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  };
  for (let i = Math.floor(heap.length / 2) - 1; i >= 0; i--) down(i);
  let batch: string[] = [];
  while (heap.length) {
    const r = heap[0]!;
    batch.push(head(r));
    at[r]!++;
    if (at[r]! === runs[r]!.length) {
      heap[0] = heap[heap.length - 1]!;
      heap.pop();
    }
    if (heap.length) down(0);
    if (batch.length === batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

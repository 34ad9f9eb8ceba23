// Helpers shared by the memory and MongoDB stores, so both order, page and match identically.

import type { DeviceQuery, DeviceRecord, ProviderName, Subscriber } from "./store.types.js";

// Binary (UTF-8 byte) order, which is the order MongoDB and FerretDB sort strings in. It equals
// Unicode code point order; JavaScript's `<` compares UTF-16 code units and disagrees with it
// for characters above U+FFFF against U+E000..U+FFFF.
export function compareStrings(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Surrogates (D800-DFFF) encode code points above U+FFFF, which sort after every BMP unit.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

export const compareTuples = (a: readonly string[], b: readonly string[]): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const c = compareStrings(a[i]!, b[i]!);
    if (c !== 0) return c;
  }
  return a.length - b.length;
};

// Two-part page cursors are `${first}\n${second}`; the second part (a topic) never holds a
// newline, so the split is at the last one. A cursor without a newline reads as (cursor, ""):
// every row whose first part equals it still follows.
export function splitCursor(cursor: string): [string, string] {
  const i = cursor.lastIndexOf("\n");
  return i < 0 ? [cursor, ""] : [cursor.slice(0, i), cursor.slice(i + 1)];
}

// Where a page of token feedback ends: its (time, provider:token) sort key.
export const tokenFeedbackCursor = (r: { at: Date; provider: string; token: string }): string => `${r.at.toISOString()}\n${r.provider}:${r.token}`;

export const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");

// Tags are stored (MongoDB) as an array of "key=value" strings so that any tag condition is an
// equality or anchored-prefix match on one multikey-indexed array ({app, tagPairs}). The key is
// escaped so its own "=" can never be mistaken for the separator ("%" → "%25", "=" → "%3D");
// keys allowed by the domain rules contain neither, so for them the pair is plain "key=value".
export const encodeTagKey = (key: string): string => key.replaceAll("%", "%25").replaceAll("=", "%3D");
const decodeTagKey = (key: string): string => key.replaceAll("%3D", "=").replaceAll("%25", "%");

export const tagPair = (key: string, value: string): string => `${encodeTagKey(key)}=${value}`;

export const tagPairsOf = (tags: Record<string, string>): string[] => Object.entries(tags).map(([k, v]) => tagPair(k, v));

export function tagsOfPairs(pairs: readonly string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const pair of pairs) {
    const i = pair.indexOf("=");
    if (i < 0) continue;
    // defineProperty, not assignment: a tag named "__proto__" must stay a plain entry.
    Object.defineProperty(tags, decodeTagKey(pair.slice(0, i)), { value: pair.slice(i + 1), enumerable: true, writable: true, configurable: true });
  }
  return tags;
}

// An empty list in a query means "no condition on this field" (repeated proto fields cannot
// tell unset from empty).
export const given = <T>(list: readonly T[] | undefined): list is readonly T[] => list !== undefined && list.length > 0;

export function checkBatchSize(batchSize: number): number {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer, got ${batchSize}`);
  return batchSize;
}

// (provider names hold no ":")
export const tokenKey = (provider: ProviderName, token: string) => `${provider}:${token}`;

// A subscription row's copy of its device's subscriber fields, and whether a row still has them.
export const subscriberOf = (s: Subscriber): Subscriber => ({ user: s.user, provider: s.provider, platform: s.platform, token: s.token });
export const followsSubscriber = (row: Partial<Subscriber>, s: Subscriber): boolean =>
  row.user === s.user && row.provider === s.provider && row.platform === s.platform && row.token === s.token;

// The query semantics of deviceFilter (device.repository.mongo.ts) as a predicate.
export function deviceMatcher(query: DeviceQuery): (d: DeviceRecord) => boolean {
  const ids = given(query.ids) ? new Set(query.ids) : undefined;
  const exclude = given(query.excludeIds) ? new Set(query.excludeIds) : undefined;
  const users = given(query.users) ? new Set(query.users) : undefined;
  const tokens = given(query.tokens) ? new Set(query.tokens.map((t) => tokenKey(t.provider, t.token))) : undefined;
  const providers = given(query.providers) ? new Set<string>(query.providers) : undefined;
  const platforms = given(query.platforms) ? new Set<string>(query.platforms) : undefined;
  const tags = given(query.tags) ? query.tags.map((c) => ({ key: c.key, values: c.values.length ? new Set(c.values) : undefined })) : [];
  return (d) =>
    (!ids || ids.has(d.id)) &&
    (!exclude || !exclude.has(d.id)) &&
    (!users || users.has(d.user)) &&
    (!tokens || tokens.has(tokenKey(d.provider, d.token))) &&
    (!providers || providers.has(d.provider)) &&
    (!platforms || platforms.has(d.platform)) &&
    (!query.hasUser || d.user !== "") &&
    tags.every((c) => Object.hasOwn(d.tags, c.key) && (!c.values || c.values.has(d.tags[c.key]!)));
}

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ApiKeyAuthenticator, generateApiKey, hashApiKey, type KeyLookupResult } from "./auth.keys.js";

describe("API keys", () => {
  it("prefixes identify a key without revealing it", () => {
    for (let i = 0; i < 500; i++) {
      const { secret, prefix } = generateApiKey("shop", i % 2 ? "server" : "client");
      assert.ok(secret.startsWith(prefix));
      assert.equal(prefix.length, "hk_s_shop_".length + 4);
      assert.ok(secret.length - prefix.length >= 28, "at least 28 secret characters stay hidden");
    }
  });

  it("authenticates the admin key, app keys, and refuses the rest with a reason", async () => {
    const { secret } = generateApiKey("a", "server");
    const table = new Map<string, KeyLookupResult>([[hashApiKey(secret), { app: "a", role: "server", keyId: "k", revoked: false }]]);
    let now = 0;
    let lookups = 0;
    const auth = new ApiKeyAuthenticator({
      adminKeySha256: hashApiKey("the-admin-key-the-admin-key"),
      lookup: async (h) => {
        lookups++;
        return table.get(h) ?? null;
      },
      cacheTtlMs: 1000,
      now: () => now,
    });
    assert.deepEqual(await auth.authenticate("Bearer the-admin-key-the-admin-key"), { kind: "admin" });
    assert.deepEqual(await auth.authenticate(`bearer ${secret}`), { kind: "app", app: "a", role: "server", keyId: "k" });
    await assert.rejects(auth.authenticate(undefined), { reason: "MISSING_API_KEY" });
    await assert.rejects(auth.authenticate("Basic abc"), { reason: "MALFORMED_AUTHORIZATION" });
    await assert.rejects(auth.authenticate("Bearer nope"), { reason: "UNKNOWN_API_KEY" });
    table.set(hashApiKey(secret), { app: "a", role: "server", keyId: "k", revoked: true });
    await auth.authenticate(`Bearer ${secret}`);
    assert.equal(lookups, 2, "the second use came from the cache");
    now += 1001;
    await assert.rejects(auth.authenticate(`Bearer ${secret}`), { reason: "REVOKED_API_KEY" }, "revocation applies once the cache entry expires");
  });
});

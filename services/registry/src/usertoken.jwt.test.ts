import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UserTokens } from "./usertoken.jwt.js";

describe("UserTokens", () => {
  let now = new Date("2026-01-01T00:00:00Z");
  const tokens = new UserTokens("m".repeat(32), () => now);

  it("round-trips and derives a distinct secret per app and version", () => {
    const { token, expiresAt } = tokens.sign("app1", 1, "alice", 3600);
    assert.equal(expiresAt.toISOString(), "2026-01-01T01:00:00.000Z");
    assert.equal(tokens.verify("app1", 1, token), "alice");
    assert.notEqual(tokens.secretFor("app1", 1), tokens.secretFor("app2", 1));
    assert.notEqual(tokens.secretFor("app1", 1), tokens.secretFor("app1", 2));
    assert.throws(() => tokens.verify("app1", 2, token), /not signed with this app's secret/);
    assert.throws(() => tokens.verify("app2", 1, token), /not signed/);
  });

  it("expires exactly at exp", () => {
    const { token } = tokens.sign("app1", 1, "bob", 60);
    now = new Date(now.getTime() + 59_000);
    assert.equal(tokens.verify("app1", 1, token), "bob");
    now = new Date(now.getTime() + 1_000);
    assert.throws(() => tokens.verify("app1", 1, token), /expired/);
  });

  it("refuses a short master secret", () => {
    assert.throws(() => new UserTokens("short"), /at least 16/);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { z } from "zod";
import { ConfigError, env, loadConfig, serviceEnv } from "./config.schema.js";

describe("loadConfig", () => {
  const schema = z.object({ ...serviceEnv, HERALD_PORT: env.port(8080), HERALD_SECRET: z.string().min(16) });

  it("parses and defaults", () => {
    const c = loadConfig(schema, { HERALD_MONGO_URL: "mongodb://x/", HERALD_KAFKA_BROKERS: "a:1, b:2", HERALD_SECRET: "s".repeat(16) });
    assert.equal(c.HERALD_PORT, 8080);
    assert.deepEqual(c.HERALD_KAFKA_BROKERS, ["a:1", "b:2"]);
    assert.equal(c.HERALD_LOG_LEVEL, "info");
  });

  it("names every bad variable and never echoes a secret", () => {
    assert.throws(
      () => loadConfig(schema, { HERALD_MONGO_URL: "postgres://x", HERALD_KAFKA_BROKERS: "a:1", HERALD_PORT: "http", HERALD_SECRET: "short-secret" }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.problems.length, 3);
        assert.match(err.message, /HERALD_MONGO_URL \("postgres:\/\/x"\): must be a mongodb:\/\/ URL/);
        assert.match(err.message, /HERALD_PORT \("http"\)/);
        assert.match(err.message, /HERALD_SECRET \(\[redacted\]\)/);
        assert.doesNotMatch(err.message, /short-secret/);
        return true;
      },
    );
  });

  it("reports unset required variables", () => {
    assert.throws(() => loadConfig(schema, {}), /HERALD_MONGO_URL \(unset\)/);
  });
});

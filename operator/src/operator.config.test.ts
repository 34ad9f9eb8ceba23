import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ConfigError, loadConfig } from "@herald/platform";
import { operatorEnv } from "./operator.config.js";
import { poolAutoscaling } from "./pool.deployment.js";

const minimal = { HERALD_KAFKA_BROKERS: "kafka:9092", HERALD_ADMIN_KEY: "admin-key-0123456789abcdef", HERALD_REGISTRY_ADDRESS: "registry:50051" };

describe("operator configuration", () => {
  it("refuses a lease renew interval that is not shorter than the lease", () => {
    assert.throws(() => loadConfig(operatorEnv, { ...minimal, HERALD_LEASE_DURATION_SECONDS: "10", HERALD_LEASE_RENEW_SECONDS: "10" }), (err: Error) => err instanceof ConfigError && /HERALD_LEASE_RENEW_SECONDS \("10"\): must be shorter than HERALD_LEASE_DURATION_SECONDS \(10\)/.test(err.message));
    assert.equal(loadConfig(operatorEnv, { ...minimal, HERALD_LEADER_ELECTION: "false", HERALD_LEASE_DURATION_SECONDS: "10", HERALD_LEASE_RENEW_SECONDS: "10" }).HERALD_LEADER_ELECTION, false);
  });

  it("scales pools only with a maximum above their replicas, and refuses one below", () => {
    assert.equal(poolAutoscaling(loadConfig(operatorEnv, minimal)), undefined, "fixed by default");
    assert.deepEqual(poolAutoscaling(loadConfig(operatorEnv, { ...minimal, HERALD_POOL_REPLICAS: "2", HERALD_POOL_MAX_REPLICAS: "6" })), { minReplicas: 2, maxReplicas: 6, targetLagPerReplica: 20_000 });
    assert.throws(() => loadConfig(operatorEnv, { ...minimal, HERALD_POOL_REPLICAS: "3", HERALD_POOL_MAX_REPLICAS: "2" }), (err: Error) => err instanceof ConfigError && /HERALD_POOL_MAX_REPLICAS \("2"\): must be 0 \(fixed\) or at least HERALD_POOL_REPLICAS \(3\)/.test(err.message));
  });

  it("starts with only the required variables", () => {
    const config = loadConfig(operatorEnv, minimal);
    assert.deepEqual(config.HERALD_SENDER_EXTRA_ENV, {});
    assert.equal(config.HERALD_LEADER_ELECTION, true);
    assert.equal(config.HERALD_WATCH_NAMESPACE, "");
  });

  it("takes extra sender environment for every provider or one", () => {
    const config = loadConfig(operatorEnv, { ...minimal, HERALD_SENDER_EXTRA_ENV: JSON.stringify({ "*": { HTTPS_PROXY: "http://proxy:3128" }, fcm: { HERALD_FCM_CONNECTIONS: "4" } }) });
    assert.deepEqual(config.HERALD_SENDER_EXTRA_ENV, { "*": { HTTPS_PROXY: "http://proxy:3128" }, fcm: { HERALD_FCM_CONNECTIONS: "4" } });
  });

  it("names the variable and the problem in bad extra sender environment", () => {
    const bad = (value: string) => {
      try {
        loadConfig(operatorEnv, { ...minimal, HERALD_SENDER_EXTRA_ENV: value });
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        return err.problems.join("\n");
      }
      assert.fail(`${value} was accepted`);
    };
    assert.match(bad("{not json"), /^HERALD_SENDER_EXTRA_ENV \("\{not json"\): must be JSON .*: .*JSON/);
    assert.match(bad(JSON.stringify({ apns: { "lower-case": "x" } })), /apns\.lower-case: Invalid key/);
    assert.match(bad(JSON.stringify({ sms: { A: "x" } })), /sms/);
    assert.match(bad(JSON.stringify({ hms: { A: 1 } })), /hms\.A: /);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "@herald/platform";
import { APP_SETTINGS } from "@herald/sender";
import { operatorEnv } from "./operator.config.js";
import { appKeysIn, appsIn, isShardOf, POOL_SPEC_ANNOTATION, poolDeployment, poolSettings, shardData, shardManager, shardOf, shardSecret } from "./pool.deployment.js";
import { senderDeployment } from "./sender.deployment.js";

const minimal = { HERALD_KAFKA_BROKERS: "kafka:9092", HERALD_ADMIN_KEY: "admin-key-0123456789abcdef", HERALD_REGISTRY_ADDRESS: "registry:50051" };
const config = (env: Record<string, string> = {}) => loadConfig(operatorEnv, { ...minimal, ...env });

describe("pool sender Deployment", () => {
  const pool = poolDeployment("team-a", "apns", config({ HERALD_POOL_REPLICAS: "2", HERALD_SENDER_EXTRA_ENV: JSON.stringify({ apns: { HERALD_PROVIDER_URL: "https://apns.test" } }) }));
  const container = pool.spec!.template!.spec!.containers[0]!;
  const env = Object.fromEntries(container.env!.map((e) => [e.name, e.value]));

  it("runs one pooled sender per namespace and provider, named for the installation, with its own selector", () => {
    assert.equal(pool.metadata?.name, "herald-pool-apns");
    assert.equal(pool.metadata?.namespace, "team-a");
    assert.equal(pool.spec?.replicas, 2);
    assert.deepEqual(pool.spec?.selector?.matchLabels, { "herald.dev/pool": "herald", "herald.dev/provider": "apns", "app.kubernetes.io/component": "sender" });
    assert.equal(pool.metadata?.ownerReferences, undefined, "no single PushApp owns a pool");
    // A dedicated sender's pods never match the pool's selector, nor the other way round.
    const dedicated = senderDeployment({ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "news", namespace: "team-a", uid: "u" }, spec: {} } as never, { provider: "apns", replicas: 1, env: {}, files: [], credentialsHash: "h" }, config());
    const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
    assert.ok(!matches(pool.spec!.selector!.matchLabels!, dedicated.spec!.template!.metadata!.labels!));
    assert.ok(!matches(dedicated.spec!.selector!.matchLabels!, pool.spec!.template!.metadata!.labels!));
  });

  it("serves every app of its apps directory, not one app, with the operator's extra env", () => {
    assert.equal(env.HERALD_POOL, "true");
    assert.equal(env.HERALD_POOL_DIR, "/etc/herald/pool");
    assert.equal(env.HERALD_PROVIDER, "apns");
    assert.equal(env.HERALD_PROVIDER_URL, "https://apns.test");
    assert.equal(env.HERALD_APP, undefined);
    assert.equal(env.HERALD_CREDENTIALS_DIR, undefined);
    assert.doesNotMatch(env.OTEL_RESOURCE_ATTRIBUTES!, /herald\.app=/);
    assert.match(env.OTEL_RESOURCE_ATTRIBUTES!, /k8s\.deployment\.name=herald-pool-apns/);
    assert.deepEqual(container.volumeMounts?.find((m) => m.mountPath === "/etc/herald/pool")?.readOnly, true);
  });

  it("mounts every credential shard, each optional, and nothing that names an app: apps joining never change the pods", () => {
    const sources = pool.spec!.template!.spec!.volumes!.find((v) => v.projected)!.projected!;
    assert.equal(sources.defaultMode, 0o400);
    assert.equal(sources.sources?.length, 16);
    assert.deepEqual(sources.sources?.[3], { secret: { name: "herald-pool-apns-credentials-3", optional: true } });
    assert.doesNotMatch(JSON.stringify(pool.spec?.template), /chat|news/);
    // The hash of the template tells the operator whether to write the pool again.
    const again = poolDeployment("team-a", "apns", config({ HERALD_POOL_REPLICAS: "1", HERALD_SENDER_EXTRA_ENV: JSON.stringify({ apns: { HERALD_PROVIDER_URL: "https://apns.test" } }) }));
    assert.equal(again.metadata?.annotations?.[POOL_SPEC_ANNOTATION], pool.metadata?.annotations?.[POOL_SPEC_ANNOTATION]);
    const fewer = poolDeployment("team-a", "apns", config({ HERALD_POOL_CREDENTIAL_SHARDS: "4" }));
    assert.equal(fewer.spec!.template!.spec!.volumes!.find((v) => v.projected)!.projected!.sources?.length, 4);
    assert.notEqual(fewer.metadata?.annotations?.[POOL_SPEC_ANNOTATION], pool.metadata?.annotations?.[POOL_SPEC_ANNOTATION]);
  });

  it("puts an app's files and settings into one shard as <app>.<file>, written by a field manager of the app's own", () => {
    const keys = shardData("chat", { "apns-key.p8": Buffer.from("KEY") }, '{"HERALD_APNS_BUNDLE_ID":"com.example.chat"}');
    assert.deepEqual(Object.keys(keys).sort(), ["chat.apns-key.p8", "chat.settings.json"]);
    assert.equal(Buffer.from(keys["chat.apns-key.p8"]!, "base64").toString(), "KEY");
    const secret = shardSecret("team-a", "apns", 5, config(), { ...keys, ...shardData("chat-2", {}, "{}") });
    assert.equal(secret.metadata?.name, "herald-pool-apns-credentials-5");
    assert.ok(isShardOf(secret, "herald", "apns"));
    assert.ok(!isShardOf(secret, "herald", "fcm") && !isShardOf(secret, "other", "apns"));
    // "chat." is no prefix of "chat-2.": each app's keys are told apart.
    assert.deepEqual(appKeysIn(secret, "chat"), keys);
    assert.deepEqual(appsIn(secret).sort(), ["chat", "chat-2"]);
    assert.equal(shardSecret("team-a", "apns", 5, config()).data, undefined, "an app leaving applies no keys");
    assert.equal(shardManager("chat"), "herald-operator.pool.chat");
  });

  it("spreads apps over the shards by a stable hash of their name", () => {
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 1600; i++) counts[shardOf(`app-${i}`, 16)]!++;
    assert.ok(Math.min(...counts) > 60 && Math.max(...counts) < 140, `uneven: ${counts.join(",")}`);
    assert.equal(shardOf("chat", 16), shardOf("chat", 16));
    assert.equal(shardOf("chat", 1), 0);
  });

  it("writes only the settings a pool takes from an app, in the shape the pool parses", () => {
    const written = poolSettings({ HERALD_APNS_ENVIRONMENT: "sandbox", HERALD_APNS_BUNDLE_ID: "com.example.chat", HERALD_APNS_KEY_ID: "ABC1234567", HERALD_APNS_TEAM_ID: "TEAM123456", HERALD_PROVIDER_URL: "https://elsewhere" });
    const parsed = APP_SETTINGS.parse(JSON.parse(written));
    assert.deepEqual(parsed, { HERALD_APNS_ENVIRONMENT: "sandbox", HERALD_APNS_BUNDLE_ID: "com.example.chat", HERALD_APNS_KEY_ID: "ABC1234567", HERALD_APNS_TEAM_ID: "TEAM123456" });
    assert.deepEqual(APP_SETTINGS.parse(JSON.parse(poolSettings({ HERALD_FCM_PROJECT_ID: "chat-prod-1" }))), { HERALD_FCM_PROJECT_ID: "chat-prod-1" });
  });
});

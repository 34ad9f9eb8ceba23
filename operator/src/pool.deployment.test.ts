import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "@herald/platform";
import { APP_SETTINGS } from "@herald/sender";
import { operatorEnv } from "./operator.config.js";
import { appOfSource, poolDeployment, poolSettings, poolSettingsKey, poolSource, poolSourcesOf } from "./pool.deployment.js";
import { senderDeployment } from "./sender.deployment.js";

const minimal = { HERALD_KAFKA_BROKERS: "kafka:9092", HERALD_ADMIN_KEY: "admin-key-0123456789abcdef", HERALD_REGISTRY_ADDRESS: "registry:50051" };
const config = (env: Record<string, string> = {}) => loadConfig(operatorEnv, { ...minimal, ...env });

describe("pool sender Deployment", () => {
  const sources = [poolSource("news", "apns", ["apns-key.p8"]), poolSource("chat", "apns", ["apns-key.p8", "pool-apns.json"])];
  const pool = poolDeployment("team-a", "apns", sources, config({ HERALD_POOL_REPLICAS: "2", HERALD_SENDER_EXTRA_ENV: JSON.stringify({ apns: { HERALD_PROVIDER_URL: "https://apns.test" } }) }));
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

  it("mounts each app's provider files and settings under <app>/, sorted by app, each Secret optional", () => {
    const mounted = poolSourcesOf(pool);
    assert.deepEqual(mounted.map(appOfSource), ["chat", "news"]);
    assert.deepEqual(mounted[0], {
      secret: {
        name: "chat-herald-credentials",
        optional: true,
        items: [
          { key: "apns-key.p8", path: "chat/apns-key.p8" },
          { key: "pool-apns.json", path: "chat/settings.json" },
        ],
      },
    });
    assert.equal(pool.spec!.template!.spec!.volumes!.find((v) => v.projected)?.projected?.defaultMode, 0o400);
  });

  it("writes only the settings a pool takes from an app, in the shape the pool parses", () => {
    assert.equal(poolSettingsKey("webpush"), "pool-webpush.json");
    const written = poolSettings({ HERALD_APNS_ENVIRONMENT: "sandbox", HERALD_APNS_BUNDLE_ID: "com.example.chat", HERALD_APNS_KEY_ID: "ABC1234567", HERALD_APNS_TEAM_ID: "TEAM123456", HERALD_PROVIDER_URL: "https://elsewhere" });
    const parsed = APP_SETTINGS.parse(JSON.parse(written));
    assert.deepEqual(parsed, { HERALD_APNS_ENVIRONMENT: "sandbox", HERALD_APNS_BUNDLE_ID: "com.example.chat", HERALD_APNS_KEY_ID: "ABC1234567", HERALD_APNS_TEAM_ID: "TEAM123456" });
    assert.deepEqual(APP_SETTINGS.parse(JSON.parse(poolSettings({ HERALD_FCM_PROJECT_ID: "chat-prod-1" }))), { HERALD_FCM_PROJECT_ID: "chat-prod-1" });
  });
});

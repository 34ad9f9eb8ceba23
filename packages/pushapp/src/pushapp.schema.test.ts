import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { apps as appsApi, Provider } from "@herald/proto";
import { CRD_FILE } from "./crd.gen.js";
import { pushAppCrdYaml } from "./pushapp.crd.js";
import { toCreateAppRequest } from "./pushapp.mapper.js";
import { enabledProviders, loadPushApps, parsePushApp, pushAppOpenApiSchema } from "./pushapp.schema.js";

const SAMPLES = fileURLToPath(new URL("../../../deploy/samples", import.meta.url));

const valid = `apiVersion: herald.dev/v1alpha1
kind: PushApp
metadata:
  name: good
spec:
  providers:
    fcm:
      projectId: good-project
      serviceAccountSecretRef: { name: good-fcm, key: sa.json }
`;

describe("PushApp samples", () => {
  test("every sample in deploy/samples loads without errors", async () => {
    const { apps, errors } = await loadPushApps(SAMPLES);
    assert.deepEqual(errors, []);
    const ids = apps.map((a) => a.metadata.name);
    assert.ok(ids.includes("demo"), `demo missing from ${ids.join(",")}`);
    assert.ok(apps.length >= 2);
    const demo = apps.find((a) => a.metadata.name === "demo")!;
    assert.deepEqual(enabledProviders(demo), ["apns", "fcm", "hms", "webpush"]);
    // Defaults are applied: `enabled` is true unless said otherwise.
    assert.equal(demo.spec.providers?.fcm?.enabled, true);
  });
});

describe("PushApp rules", () => {
  const app = (name: string, spec: Record<string, unknown> = {}) => ({ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name }, spec });
  test("an app id fits a label value: at most 63 characters, ending with a letter or digit", () => {
    assert.ok("app" in parsePushApp(app(`a${"b".repeat(62)}`)));
    for (const bad of [`a${"b".repeat(63)}`, "shop-", "1shop"]) assert.ok("problems" in parsePushApp(app(bad)), bad);
  });
  test("a webhook lists an event at most once", () => {
    const result = parsePushApp(app("hooks", { webhooks: [{ url: "https://example.com/h", events: ["delivery.failed", "delivery.failed"] }] }));
    assert.ok("problems" in result && /webhooks\[0\]\.events\[1\]: "delivery.failed" is listed twice/.test(result.problems.join("\n")), JSON.stringify(result));
  });
});

describe("loadPushApps", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "herald-pushapps-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("an invalid file yields errors naming the file and the field; valid files still load", async () => {
    await writeFile(join(dir, "good.yaml"), valid);
    await writeFile(
      join(dir, "bad.pushapp.yml"),
      `apiVersion: herald.dev/v1alpha1
kind: PushApp
metadata:
  name: bad
spec:
  limits:
    deviceOverflowPolicy: Drop
  providers:
    apns:
      environment: sandbox
      bundleId: com.example.bad
      auth:
        token: { keyId: ABC123DEFG, teamId: DEF123GHIJ, keySecretRef: { name: bad-apns, key: k.p8 } }
        certificate: { secretRef: { name: bad-cert, key: c.p12 } }
    fcm:
      serviceAccountSecretRef: { name: bad-fcm, key: sa.json }
    webpush:
      subject: push@example.com
      vapidKeysSecretRef: { name: bad-vapid, key: vapid.json }
`,
    );
    await writeFile(join(dir, "broken.yaml"), "apiVersion: herald.dev/v1alpha1\nkind: PushApp\nmetadata: [unclosed\n");
    await writeFile(join(dir, "notes.txt"), "not yaml, not read");
    const { apps, errors } = await loadPushApps(dir);
    assert.deepEqual(
      apps.map((a) => a.metadata.name),
      ["good"],
    );
    const bad = errors.filter((e) => e.startsWith(join(dir, "bad.pushapp.yml")));
    const has = (field: string) => assert.ok(bad.some((e) => e.includes(`: ${field}: `)), `no error for ${field} in:\n${errors.join("\n")}`);
    has("spec.limits.deviceOverflowPolicy");
    has("spec.providers.apns.auth");
    has("spec.providers.fcm.projectId");
    has("spec.providers.webpush.subject");
    assert.ok(bad.some((e) => e === `${join(dir, "bad.pushapp.yml")}:15: spec.providers.fcm.projectId: is required`), bad.join("\n"));
    assert.ok(bad.some((e) => e.includes("exactly one of token or certificate")));
    assert.ok(errors.some((e) => e.startsWith(join(dir, "broken.yaml")) && e.includes("YAML")), errors.join("\n"));
    await rm(join(dir, "bad.pushapp.yml"));
    await rm(join(dir, "broken.yaml"));
  });

  test("multi-document files: other kinds are skipped, errors carry the line, duplicates refused", async () => {
    await writeFile(
      join(dir, "multi.yaml"),
      `apiVersion: v1
kind: Secret
metadata: { name: good-fcm }
stringData: { sa.json: "{}" }
---
${valid.replace("name: good", "name: second")}
---
${valid.replace("name: good", "name: Bad_Name")}
---
${valid}`,
    );
    const { apps, errors } = await loadPushApps(dir);
    assert.deepEqual(apps.map((a) => a.metadata.name).sort(), ["good", "second"]);
    // Errors carry the line: document 3's metadata.name is on line 20 of the stream.
    assert.ok(errors.some((e) => e.startsWith(`${join(dir, "multi.yaml")}:20: metadata.name: `)), errors.join("\n"));
    assert.ok(errors.some((e) => /multi\.yaml:\d+: metadata\.name: app "good" is already defined at .*good\.yaml:1/.test(e)), errors.join("\n"));
  });

  test("unknown fields and a missing directory are errors, not exceptions", async () => {
    const typo = parsePushApp({ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "x" }, spec: { provider: {} } });
    assert.ok("problems" in typo && typo.problems.some((p) => p === 'spec: unknown field "provider"'), JSON.stringify(typo));
    const missing = await loadPushApps(join(dir, "nope"));
    assert.equal(missing.apps.length, 0);
    assert.match(missing.errors[0] ?? "", /nope: cannot read the directory/);
  });

  test("senders: replicas or autoscaling, and min <= max", () => {
    const base = { apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "s" } };
    const both = parsePushApp({ ...base, spec: { senders: { replicas: 2, autoscaling: { minReplicas: 1, maxReplicas: 3, targetLagPerReplica: 100 } } } });
    assert.ok("problems" in both && both.problems.some((p) => p.startsWith("spec.senders: ")), JSON.stringify(both));
    const inverted = parsePushApp({ ...base, spec: { senders: { autoscaling: { minReplicas: 5, maxReplicas: 3, targetLagPerReplica: 100 } } } });
    assert.ok("problems" in inverted && inverted.problems.some((p) => p.startsWith("spec.senders.autoscaling.minReplicas: ")), JSON.stringify(inverted));
    // Scale to zero: minReplicas 0 is allowed, maxReplicas stays at least 1.
    assert.ok(!("problems" in parsePushApp({ ...base, spec: { senders: { autoscaling: { minReplicas: 0, maxReplicas: 3, targetLagPerReplica: 100 } } } })));
    const noMax = parsePushApp({ ...base, spec: { senders: { autoscaling: { minReplicas: 0, maxReplicas: 0, targetLagPerReplica: 100 } } } });
    assert.ok("problems" in noMax && noMax.problems.some((p) => p.startsWith("spec.senders.autoscaling.maxReplicas: ")), JSON.stringify(noMax));
  });
});

test("the CRD schema is structural: no unions or refs, CEL rules for the cross-field checks", () => {
  const schema = pushAppOpenApiSchema();
  const text = JSON.stringify(schema);
  assert.doesNotMatch(text, /"(anyOf|oneOf|allOf|not|\$ref|\$defs|\$schema)"/);
  assert.doesNotMatch(text, /"additionalProperties":false/);
  assert.match(text, /has\(self\.token\) != has\(self\.certificate\)/);
  const spec = (schema.properties as Record<string, { properties?: Record<string, unknown> }>).spec;
  assert.ok(spec?.properties?.providers && spec.properties.limits && spec.properties.senders);
});

test("toCreateAppRequest maps limits, the overflow policy and enabled providers", async () => {
  const { apps } = await loadPushApps(SAMPLES);
  const demo = toCreateAppRequest(apps.find((a) => a.metadata.name === "demo")!);
  assert.equal(demo.name, "Herald Demo");
  assert.equal(demo.limits?.deviceOverflowPolicy, appsApi.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_EVICT_LEAST_RECENTLY_SEEN);
  assert.equal(demo.limits?.urgentMaxTargets, 100);
  assert.deepEqual(demo.providers, [Provider.PROVIDER_APNS, Provider.PROVIDER_FCM, Provider.PROVIDER_HMS, Provider.PROVIDER_WEBPUSH]);
  const news = apps.find((a) => a.metadata.name === "news");
  if (news) {
    const req = toCreateAppRequest(news);
    assert.equal(req.limits?.deviceOverflowPolicy, appsApi.DeviceOverflowPolicy.DEVICE_OVERFLOW_POLICY_REJECT);
    assert.deepEqual(req.providers, [Provider.PROVIDER_FCM, Provider.PROVIDER_WEBPUSH]);
  }
});

test("the CRD in the chart is the one generated from the schema (npm run gen:crd)", async () => {
  assert.equal(await readFile(CRD_FILE, "utf8"), pushAppCrdYaml());
});

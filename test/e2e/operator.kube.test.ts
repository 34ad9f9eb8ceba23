import assert from "node:assert/strict";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { AppsV1Api, CoordinationV1Api, CoreV1Api, type V1Deployment } from "@kubernetes/client-node";
import { createClient, KafkaBus, namespacedBus, type Bus } from "@herald/platform";
import { apps, BusTopics, Platform as DevicePlatform, Provider, registry } from "@herald/proto";
import { eventually, failureOf, generateApnsKey, requireEnv, sample, scrape } from "@herald/testing";
import webPush from "web-push";
import { adminKubeConfig, createNamespace, deleteNamespace, ensureNamespace, installCrd, kubectl, kubectlOk, startOperator, type OperatorProcess } from "./kube.fixture.js";
import { startPlatform, type Platform } from "./platform.fixture.js";

// The operator against a real kube-apiserver (with kube-controller-manager's garbage collector
// and Deployment controllers), real Kafka, and the registry process: what a platform team sees
// when it applies PushApps with kubectl.

const b64 = (v: string) => Buffer.from(v).toString("base64");
const runId = randomUUID().slice(0, 6);

function serviceAccount(projectId: string): string {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return JSON.stringify({ type: "service_account", project_id: projectId, client_email: `sender@${projectId}.iam.gserviceaccount.com`, private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString() });
}

function secret(namespace: string, name: string, data: Record<string, string>) {
  return { apiVersion: "v1", kind: "Secret", metadata: { name, namespace }, type: "Opaque", data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) };
}

// This suite is about dedicated senders (pooled ones: delivery.kube and pool.distributed), which a
// new PushApp gets only when it says so.
function pushApp(namespace: string, name: string, spec: Record<string, unknown>) {
  return { apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name, namespace }, spec: dedicated(spec) };
}
const dedicated = (spec: Record<string, unknown>) => ({ ...spec, senders: { mode: "dedicated", ...(spec.senders as object | undefined) } });

const apply = (objects: object[]) => kubectlOk(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) });

describe("operator on a real API server", () => {
  let platform: Platform;
  let namespace: string;
  let operator: OperatorProcess;
  let bus: Bus;
  let core: CoreV1Api;
  let appsApi: AppsV1Api;
  const leaseName = `herald-operator-${runId}`;
  const apnsKey = generateApnsKey({ keyId: "ABC123DEFG", teamId: "DEF123GHIJ" });
  const vapid = webPush.generateVAPIDKeys();

  const getApp = async (name: string) => JSON.parse(await kubectlOk(["get", "pushapp", name, "-n", namespace, "-o", "json"])) as { metadata: { finalizers?: string[]; generation: number }; status?: { observedGeneration?: number; conditions?: Array<{ type: string; status: string; reason: string; message: string }>; providers?: Array<{ name: string; desiredReplicas: number; lag: number }> } };
  const condition = async (name: string, type: string) => (await getApp(name)).status?.conditions?.find((c) => c.type === type);
  // A condition that never comes shows what the operator said meanwhile.
  const waitCondition = (name: string, type: string, status: string, what = `${name} ${type}=${status}`) =>
    eventually(async () => {
      const app = await getApp(name);
      const c = app.status?.conditions?.find((x) => x.type === type);
      return c?.status === status && app.status?.observedGeneration === app.metadata.generation ? c : undefined;
    }, what).catch((err: Error) => {
      throw new Error(`${err.message}\noperator ${operator.identity}: ${failureOf(operator.output())}`);
    });
  // Pools scale on lag between 1 and 3 replicas, 10 waiting deliveries per replica.
  const poolScaling = { HERALD_POOL_MAX_REPLICAS: "3", HERALD_POOL_TARGET_LAG_PER_REPLICA: "10" };
  const deployment = (name: string) => appsApi.readNamespacedDeployment({ name, namespace }).catch(() => undefined);
  const secretData = async (name: string) => (await core.readNamespacedSecret({ name, namespace }).catch(() => undefined))?.data;

  before(async () => {
    await installCrd();
    await ensureNamespace("herald-system");
    namespace = await createNamespace("op");
    platform = await startPlatform();
    bus = namespacedBus(new KafkaBus({ brokers: [requireEnv("HERALD_KAFKA_BROKERS")], clientId: "operator-test" }), platform.env.HERALD_KAFKA_NAMESPACE!);
    const kc = adminKubeConfig();
    core = kc.makeApiClient(CoreV1Api);
    appsApi = kc.makeApiClient(AppsV1Api);
    operator = await startOperator(platform, { namespace, leaseName, identity: "op-a", env: poolScaling });
  });
  after(async () => {
    if (namespace) await deleteNamespace(namespace);
    await operator?.stop();
    await bus?.close();
    await platform?.stop();
  });

  it("documents the PushApp with kubectl explain", async () => {
    // The API server publishes a new CRD's OpenAPI a moment after it is Established.
    const spec = await eventually(async () => {
      const run = await kubectl(["explain", "pushapp.spec"]);
      return run.code === 0 ? run.stdout : undefined;
    }, "kubectl explain pushapp.spec");
    for (const field of ["providers", "senders", "limits", "apiKeyRotation", "dataDeletionPolicy"]) assert.match(spec, new RegExp(`\\b${field}\\b`), spec);
    const apns = await kubectlOk(["explain", "pushapp.spec.providers.apns.auth"]);
    assert.match(apns, /exactly one of token or certificate/);
  });

  it("refuses invalid PushApps with the CEL and schema messages", async () => {
    const both = pushApp(namespace, "bad-auth", {
      providers: {
        apns: {
          environment: "sandbox",
          bundleId: "com.example.bad",
          auth: { token: { keyId: "ABC123DEFG", teamId: "DEF123GHIJ", keySecretRef: { name: "x", key: "k" } }, certificate: { secretRef: { name: "c", key: "p12" } } },
        },
      },
    });
    const refused = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(both) });
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /set exactly one of token or certificate/);

    const scaling = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(pushApp(namespace, "bad-scale", { senders: { autoscaling: { minReplicas: 5, maxReplicas: 2, targetLagPerReplica: 10 } } })) });
    assert.notEqual(scaling.code, 0);
    assert.match(scaling.stderr, /minReplicas must not be greater than maxReplicas/);

    const environment = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(pushApp(namespace, "bad-env", { providers: { apns: { environment: "staging", bundleId: "com.example.x", auth: { token: { keyId: "ABC123DEFG", teamId: "DEF123GHIJ", keySecretRef: { name: "x", key: "k" } } } } } })) });
    assert.notEqual(environment.code, 0);
    assert.match(environment.stderr, /spec\.providers\.apns\.environment: Unsupported value: "staging"/);

    const secretRef = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(pushApp(namespace, "bad-ref", { providers: { hms: { appId: "10441", clientSecretRef: { name: "Not_A_Name", key: "k" } } } })) });
    assert.notEqual(secretRef.code, 0);
    assert.match(secretRef.stderr, /clientSecretRef\.name/);
    const list = await kubectlOk(["get", "pushapps", "-n", namespace, "-o", "name"]);
    assert.equal(list.trim(), "", "nothing half-created");
  });

  describe("a PushApp with every provider", () => {
    const name = "shop";
    before(async () => {
      await apply([
        secret(namespace, "shop-apns", { "AuthKey.p8": apnsKey.privateKeyPem }),
        secret(namespace, "shop-fcm", { "sa.json": serviceAccount("shop-project") }),
        secret(namespace, "shop-hms", { "client-secret": "hms-secret-1" }),
        secret(namespace, "shop-webpush", { "vapid.json": JSON.stringify(vapid) }),
        pushApp(namespace, name, {
          displayName: "Shop",
          providers: {
            apns: { environment: "sandbox", bundleId: "com.example.shop", auth: { token: { keyId: apnsKey.keyId, teamId: apnsKey.teamId, keySecretRef: { name: "shop-apns", key: "AuthKey.p8" } } } },
            fcm: { projectId: "shop-project", serviceAccountSecretRef: { name: "shop-fcm", key: "sa.json" } },
            hms: { appId: "104412345", clientSecretRef: { name: "shop-hms", key: "client-secret" } },
            webpush: { subject: "mailto:ops@example.com", vapidKeysSecretRef: { name: "shop-webpush", key: "vapid.json" } },
          },
          senders: { replicas: 2 },
        }),
      ]);
    });

    it("is reconciled into credentials, API keys, topics and one sender Deployment per provider", async () => {
      await waitCondition(name, "CredentialsValid", "True");
      await waitCondition(name, "AppRegistered", "True");
      await waitCondition(name, "TopicsReady", "True");
      const app = await getApp(name);
      assert.ok(app.metadata.finalizers?.includes("herald.dev/cleanup"));

      const creds = await secretData("shop-herald-credentials");
      assert.deepEqual(Object.keys(creds ?? {}).sort(), ["apns-key.p8", "fcm-service-account.json", "hms-client-secret", "vapid-private-key"]);
      assert.equal(Buffer.from(creds!["hms-client-secret"]!, "base64").toString(), "hms-secret-1");

      // The API key in the Secret works against the registry, for this app only.
      const keys = await secretData("shop-herald-api-keys");
      const serverKey = Buffer.from(keys!["server-key"]!, "base64").toString();
      const client = createClient(registry.RegistryServiceService, registry, platform.addresses.registry, { apiKey: serverKey });
      try {
        const { device } = await client.registerDevice({ provider: Provider.PROVIDER_FCM, platform: DevicePlatform.PLATFORM_ANDROID, token: "fcm-token-1" });
        assert.ok(device?.id);
      } finally {
        client.close();
      }

      // The app knows its VAPID public key (the Beams web SDK reads it from the gateway).
      const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
      try {
        assert.equal((await admin.getApp({ id: name })).app?.vapidPublicKey, vapid.publicKey);
      } finally {
        admin.close();
      }

      // Topics with a partition for every replica.
      const lags = await bus.lag("nobody", ["apns", "fcm", "hms", "webpush"].map((p) => BusTopics.deliveries(name, p)));
      assert.equal(new Set(lags.map((l) => l.topic)).size, 4);
      assert.ok(lags.filter((l) => l.topic === BusTopics.deliveries(name, "fcm")).length >= 8);

      for (const provider of ["apns", "fcm", "hms", "webpush"]) {
        const dep = await eventually(() => deployment(`shop-herald-${provider}-sender`), `${provider} sender Deployment`);
        assert.equal(dep.spec?.replicas, 2);
        assert.equal(dep.metadata?.ownerReferences?.[0]?.kind, "PushApp");
        assert.equal(dep.metadata?.ownerReferences?.[0]?.controller, true);
        const container = dep.spec!.template.spec!.containers[0]!;
        const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value]));
        assert.equal(env.HERALD_APP, name);
        assert.equal(env.HERALD_PROVIDER, provider);
        assert.equal(env.HERALD_KAFKA_NAMESPACE, platform.env.HERALD_KAFKA_NAMESPACE);
        assert.equal(container.securityContext?.readOnlyRootFilesystem, true);
        assert.equal(container.securityContext?.allowPrivilegeEscalation, false);
        assert.deepEqual(container.securityContext?.capabilities?.drop, ["ALL"]);
        assert.equal(dep.spec!.template.spec!.securityContext?.runAsNonRoot, true);
        // Each sender mounts only its own provider's credentials.
        const items = dep.spec!.template.spec!.volumes!.find((v) => v.name === "credentials")!.secret!.items!.map((i) => i.key);
        assert.equal(items.length, 1, JSON.stringify(items));
      }
      const apnsEnv = Object.fromEntries(((await deployment("shop-herald-apns-sender"))!.spec!.template.spec!.containers[0]!.env ?? []).map((e) => [e.name, e.value]));
      assert.equal(apnsEnv.HERALD_APNS_KEY_ID, apnsKey.keyId);
      assert.equal(apnsEnv.HERALD_APNS_BUNDLE_ID, "com.example.shop");
      assert.equal(apnsEnv.HERALD_APNS_ENVIRONMENT, "sandbox");
    });

    it("shows Ready, providers and senders in kubectl get", async () => {
      const table = await eventually(async () => {
        const out = await kubectlOk(["get", "pushapps", "-n", namespace]);
        return /\bshop\s+\S+\s+apns,fcm,hms,webpush\s+\d+\/8\s/.test(out) ? out : undefined;
      }, "the printer columns");
      assert.match(table.split("\n")[0]!, /NAME\s+READY\s+PROVIDERS\s+SENDERS\s+MODE\s+AGE/);
      // No kubelet runs the pods: the Deployments exist but nothing is available, and Ready says why.
      const ready = await condition(name, "Ready");
      assert.equal(ready?.status, "False");
      assert.equal(ready?.reason, "SendersUnavailable");
    });

    it("converges on edits: replicas, a disabled provider, a rotated credential, API key rotation", async () => {
      const before = await secretData("shop-herald-api-keys");
      const oldKey = Buffer.from(before!["server-key"]!, "base64").toString();
      const hashOf = async (provider: string) => (await deployment(`shop-herald-${provider}-sender`))?.spec?.template.metadata?.annotations?.["herald.dev/credentials-hash"];
      const apnsHash = await hashOf("apns");
      const hmsHash = await hashOf("hms");

      await kubectlOk(["patch", "pushapp", name, "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { senders: { replicas: 3 }, apiKeyRotation: 1, providers: { webpush: { enabled: false } } } })]);
      await apply([secret(namespace, "shop-hms", { "client-secret": "hms-secret-2" })]);

      await eventually(async () => (await deployment("shop-herald-fcm-sender"))?.spec?.replicas === 3, "fcm sender scaled to 3");
      await eventually(async () => (await deployment("shop-herald-webpush-sender")) === undefined, "webpush sender removed");
      await eventually(async () => Buffer.from((await secretData("shop-herald-credentials"))?.["hms-client-secret"] ?? "", "base64").toString() === "hms-secret-2", "rotated HMS secret written");
      await eventually(async () => (await hashOf("hms")) !== hmsHash, "hms pods roll");
      assert.equal(await hashOf("apns"), apnsHash, "apns pods do not roll");
      assert.equal((await secretData("shop-herald-credentials"))?.["vapid-private-key"], undefined, "disabled provider's credential removed");

      const rotated = await eventually(async () => {
        const data = await secretData("shop-herald-api-keys");
        const key = data && Buffer.from(data["server-key"]!, "base64").toString();
        return key && key !== oldKey ? key : undefined;
      }, "a new server key");
      const use = async (apiKey: string) => {
        const client = createClient(registry.RegistryServiceService, registry, platform.addresses.registry, { apiKey });
        try {
          return await client.registerDevice({ provider: Provider.PROVIDER_FCM, platform: DevicePlatform.PLATFORM_ANDROID, token: `t-${randomUUID()}` });
        } finally {
          client.close();
        }
      };
      await use(rotated);
      await eventually(async () => (await use(oldKey).then(() => false, (err: { code?: number }) => err.code === 16)), "the old key is revoked (UNAUTHENTICATED)");
      const status = await waitCondition(name, "AppRegistered", "True");
      assert.ok(status);
      assert.equal((await getApp(name)).status?.providers?.map((p) => p.name).join(","), "apns,fcm,hms");
    });

    it("an invalid credential gives a clear condition and touches nothing else", async () => {
      const credsBefore = await core.readNamespacedSecret({ name: "shop-herald-credentials", namespace });
      const depBefore = (await deployment("shop-herald-apns-sender"))!;
      const wrongKey = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
      await apply([secret(namespace, "shop-apns", { "AuthKey.p8": wrongKey })]);
      const failed = await eventually(async () => {
        const c = await condition(name, "CredentialsValid");
        return c?.status === "False" ? c : undefined;
      }, "CredentialsValid=False");
      assert.equal(failed.reason, "InvalidCredentials");
      assert.match(failed.message, /apns: Secret "shop-apns" key "AuthKey.p8" \(APNs .p8 signing key\): is a RSA key/);
      const ready = await condition(name, "Ready");
      assert.equal(ready?.status, "False");
      assert.equal(ready?.reason, "InvalidCredentials");
      const credsAfter = await core.readNamespacedSecret({ name: "shop-herald-credentials", namespace });
      assert.equal(credsAfter.metadata?.resourceVersion, credsBefore.metadata?.resourceVersion, "credentials Secret untouched");
      const depAfter = (await deployment("shop-herald-apns-sender"))!;
      assert.equal(depAfter.metadata?.resourceVersion, depBefore.metadata?.resourceVersion, "sender untouched");

      // Fixing the Secret recovers.
      await apply([secret(namespace, "shop-apns", { "AuthKey.p8": apnsKey.privateKeyPem })]);
      await waitCondition(name, "CredentialsValid", "True");
    });
  });

  it("scales senders on the Kafka lag of the app's delivery topic", async () => {
    const name = "scaler";
    await apply([
      secret(namespace, "scaler-hms", { "client-secret": "s" }),
      pushApp(namespace, name, { providers: { hms: { appId: "104499999", clientSecretRef: { name: "scaler-hms", key: "client-secret" } } }, senders: { autoscaling: { minReplicas: 1, maxReplicas: 4, targetLagPerReplica: 10 } } }),
    ]);
    await waitCondition(name, "TopicsReady", "True");
    assert.equal((await eventually(() => deployment("scaler-herald-hms-sender"), "scaler sender")).spec?.replicas, 1);
    // 35 pending deliveries and no sender consuming them: ceil(35 / 10) = 4 replicas.
    await bus.publish(BusTopics.deliveries(name, "hms"), Array.from({ length: 35 }, (_, i) => ({ key: `k${i}`, value: new Uint8Array([i]) })));
    await eventually(async () => (await deployment("scaler-herald-hms-sender"))?.spec?.replicas === 4, "scaled to 4 on a lag of 35", { timeoutMs: 90_000 });
    const provider = (await getApp(name)).status?.providers?.find((p) => p.name === "hms");
    assert.equal(provider?.lag, 35);
    assert.equal(provider?.desiredReplicas, 4);
    const metrics = await scrape(operator.healthUrl);
    assert.equal(sample(metrics, "herald_operator_sender_lag", { app: name, provider: "hms" }), 35);
    assert.ok(sample(metrics, "herald_operator_reconciles_total", { result: "success" }) > 0);
  });

  it("keeps an app on the senders it runs on when its spec stops naming a mode, pools a new app that names none, and scales the pool on its lag", async () => {
    const name = `kept-${runId}`;
    const hmsSpec = { providers: { hms: { appId: "104488888", clientSecretRef: { name: `${name}-hms`, key: "client-secret" } } } };
    await apply([secret(namespace, `${name}-hms`, { "client-secret": "s" }), pushApp(namespace, name, hmsSpec)]);
    await waitCondition(name, "TopicsReady", "True");
    await eventually(() => deployment(`${name}-herald-hms-sender`), "its own sender");
    const modeOf = async (app: string) => ((await getApp(app)).status as { sendersMode?: string } | undefined)?.sendersMode;
    assert.equal(await modeOf(name), "dedicated");
    // The same app without spec.senders (the helper adds the mode; this bypasses it).
    await apply([{ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name, namespace }, spec: hmsSpec }]);
    await waitCondition(name, "TopicsReady", "True", `${name} reconciled without a mode`);
    assert.equal(await modeOf(name), "dedicated", "kept: a default never moves a running app");
    assert.ok(await deployment(`${name}-herald-hms-sender`), "still on its own sender");
    assert.equal(await deployment("herald-pool-hms"), undefined, "no pool for it");
    // A new app that names no mode: pooled, served by the namespace's pool, no sender of its own.
    const fresh = `fresh-${runId}`;
    await apply([secret(namespace, `${fresh}-hms`, { "client-secret": "s" }), { apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: fresh, namespace }, spec: { providers: { hms: { appId: "104488889", clientSecretRef: { name: `${fresh}-hms`, key: "client-secret" } } } } }]);
    await waitCondition(fresh, "TopicsReady", "True");
    assert.equal(await modeOf(fresh), "pooled");
    await eventually(() => deployment("herald-pool-hms"), "the pool sender");
    assert.equal(await deployment(`${fresh}-herald-hms-sender`), undefined);
    assert.deepEqual((await bus.lag("nobody", [BusTopics.pooled(fresh, "hms", "bulk")])).length, 1, "its pool topic, one partition");
    assert.equal((await deployment("herald-pool-hms"))?.spec?.replicas, 1);
    // 25 jobs waiting for the pool (no kubelet runs it here): ceil(25 / 10) = 3 replicas.
    await bus.publish(BusTopics.pooled(fresh, "hms", "bulk"), Array.from({ length: 25 }, (_, i) => ({ key: `k${i}`, value: new Uint8Array([i]) })));
    await eventually(async () => (await deployment("herald-pool-hms"))?.spec?.replicas === 3, "the pool scaled to 3 on a lag of 25", { timeoutMs: 60_000 });
    const metrics = await scrape(operator.healthUrl);
    assert.equal(sample(metrics, "herald_operator_pool_lag", { namespace, provider: "hms" }), 25);
    assert.equal(sample(metrics, "herald_operator_pool_desired_replicas", { namespace, provider: "hms" }), 3);
    await kubectlOk(["delete", "pushapp", name, fresh, "-n", namespace, "--wait=true", "--timeout=60s"]);
    await eventually(async () => (await deployment("herald-pool-hms")) === undefined, "the pool gone with its last app");
  });

  it("deleting the PushApp removes its topics, its registry app and (by garbage collection) what it owns", async () => {
    const name = "gone";
    await apply([secret(namespace, "gone-hms", { "client-secret": "s" }), pushApp(namespace, name, { providers: { hms: { appId: "104400000", clientSecretRef: { name: "gone-hms", key: "client-secret" } } }, dataDeletionPolicy: "Delete" })]);
    await waitCondition(name, "TopicsReady", "True");
    await eventually(() => deployment("gone-herald-hms-sender"), "gone sender");
    await kubectlOk(["delete", "pushapp", name, "-n", namespace, "--wait=true", "--timeout=60s"]);
    // The finalizer stopped the senders (a foreground delete of their Deployment, waited for)
    // before it deleted the topics: the Deployment is gone when the PushApp is, not after.
    assert.equal(await deployment("gone-herald-hms-sender"), undefined, "the sender was stopped before the PushApp went");
    assert.deepEqual(await bus.lag("nobody", [BusTopics.deliveries(name, "hms")]), [], "topics deleted");
    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    try {
      await assert.rejects(admin.getApp({ id: name }), (err: { code?: number }) => err.code === 5, "the registry app is deleted (NOT_FOUND)");
    } finally {
      admin.close();
    }
    await eventually(async () => (await deployment("gone-herald-hms-sender")) === undefined && (await secretData("gone-herald-credentials")) === undefined, "owned objects garbage-collected");
  });

  it("never takes over an app of the same id that it did not create, nor deletes it", async () => {
    // App ids are global, PushApp names unique per namespace: here the app was made through the
    // API (another namespace's PushApp is refused the same way: the registry compares owners).
    const name = `taken-${runId}`;
    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    try {
      await admin.createApp({ id: name, name: "Someone else's" });
      await bus.ensureTopics([{ name: BusTopics.deliveries(name, "hms"), partitions: 2 }]);
      await apply([secret(namespace, `${name}-hms`, { "client-secret": "s" }), pushApp(namespace, name, { providers: { hms: { appId: "104422222", clientSecretRef: { name: `${name}-hms`, key: "client-secret" } } } })]);
      const refused = await waitCondition(name, "AppRegistered", "False");
      assert.equal(refused.reason, "AppIdConflict");
      assert.match(refused.message, new RegExp(`app "${name}" is managed by the API \\(no owner\\), not by "pushapp:${namespace}/${name}"; rename this PushApp`));
      assert.equal((await condition(name, "Ready"))?.reason, "AppIdConflict");
      assert.equal(await secretData(`${name}-herald-api-keys`), undefined, "no keys of someone else's app");
      assert.equal(await deployment(`${name}-herald-hms-sender`), undefined, "no sender");

      await kubectlOk(["delete", "pushapp", name, "-n", namespace, "--wait=true", "--timeout=60s"]);
      assert.equal((await admin.getApp({ id: name })).app?.name, "Someone else's", "the app is still there");
      assert.equal((await bus.lag("nobody", [BusTopics.deliveries(name, "hms")])).length, 2, "its topic is still there");
    } finally {
      admin.close();
    }
  });

  it("reports the registry's refusal of a spec the CRD cannot check, and recovers once it is fixed", async () => {
    // The CRD accepts any http(s) URL; the registry refuses one in a denied network (SSRF guard).
    const name = `hooked-${runId}`;
    await apply([secret(namespace, `${name}-hms`, { "client-secret": "s" }), pushApp(namespace, name, { providers: { hms: { appId: "104433333", clientSecretRef: { name: `${name}-hms`, key: "client-secret" } } }, webhooks: [{ url: "http://169.254.169.254/latest/meta-data/" }] })]);
    const refused = await waitCondition(name, "AppRegistered", "False");
    assert.equal(refused.reason, "RegistryRefused");
    assert.match(refused.message, /webhooks\[0\]\.url.*169\.254\.169\.254 is in a denied network/);
    assert.equal((await condition(name, "Ready"))?.reason, "RegistryRefused");
    assert.equal(await secretData(`${name}-herald-api-keys`), undefined, "no keys for a refused app");

    await kubectlOk(["patch", "pushapp", name, "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { webhooks: [{ url: "https://hooks.example.com/herald" }] } })]);
    await waitCondition(name, "AppRegistered", "True");
    assert.ok((await secretData(`${name}-herald-api-keys`))?.["server-key"], "keys once the spec is fixed");
    await kubectlOk(["delete", "pushapp", name, "-n", namespace, "--wait=true", "--timeout=60s"]);
  });

  it("with two replicas exactly one reconciles; when it dies the other takes over", async () => {
    const second = await startOperator(platform, { namespace, leaseName, identity: "op-b", env: poolScaling });
    try {
      const coordination = adminKubeConfig().makeApiClient(CoordinationV1Api);
      const lease = await coordination.readNamespacedLease({ name: leaseName, namespace: "herald-system" });
      assert.equal(lease.spec?.holderIdentity, "op-a");
      assert.equal(sample(await scrape(operator.healthUrl), "herald_operator_leader"), 1);
      assert.equal(sample(await scrape(second.healthUrl), "herald_operator_leader"), 0);

      // A change is reconciled by the leader only.
      await kubectlOk(["patch", "pushapp", "scaler", "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { displayName: "Scaler 2" } })]);
      await eventually(async () => (await getApp("scaler")).status?.observedGeneration === (await getApp("scaler")).metadata.generation, "scaler reconciled");
      assert.equal(sample(await scrape(second.healthUrl), "herald_operator_reconciles_total"), 0);

      await operator.stop("SIGKILL");
      await eventually(async () => (await coordination.readNamespacedLease({ name: leaseName, namespace: "herald-system" })).spec?.holderIdentity === "op-b", "op-b holds the lease", { timeoutMs: 30_000 });
      await kubectlOk(["patch", "pushapp", "scaler", "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { senders: { autoscaling: { minReplicas: 2, maxReplicas: 4, targetLagPerReplica: 1000 } } } })]);
      await eventually(async () => {
        const dep = await deployment("scaler-herald-hms-sender");
        return dep?.spec?.replicas === 2 || dep?.spec?.replicas === 4;
      }, "op-b reconciles");
      await eventually(async () => sample(await scrape(second.healthUrl), "herald_operator_reconciles_total", { result: "success" }) > 0, "op-b counted reconciles");
    } finally {
      operator = second;
    }
  });

  it("a leader stopped with SIGTERM releases the Lease, so the standby takes over without waiting it out", async () => {
    const standby = await startOperator(platform, { namespace, leaseName, identity: "op-t", env: poolScaling });
    const coordination = adminKubeConfig().makeApiClient(CoordinationV1Api);
    const leader = operator;
    try {
      assert.equal((await coordination.readNamespacedLease({ name: leaseName, namespace: "herald-system" })).spec?.holderIdentity, leader.identity);
      await leader.stop("SIGTERM");
      assert.match(leader.output(), /leader election: lease released/);
      // Released, or already taken by the standby: never still held by the stopped leader.
      const holder = (await coordination.readNamespacedLease({ name: leaseName, namespace: "herald-system" })).spec?.holderIdentity;
      assert.ok(holder === undefined || holder === "op-t", `holder ${holder}`);
      await eventually(async () => (await coordination.readNamespacedLease({ name: leaseName, namespace: "herald-system" })).spec?.holderIdentity === "op-t", "op-t holds the lease");
    } finally {
      operator = standby;
    }
  });

  it("killed mid-reconcile and restarted, the operator converges to the same state", async () => {
    const name = "crashy";
    await apply([secret(namespace, "crashy-hms", { "client-secret": "s" }), secret(namespace, "crashy-fcm", { "sa.json": serviceAccount("crashy-project") })]);
    await apply([pushApp(namespace, name, { providers: { hms: { appId: "104411111", clientSecretRef: { name: "crashy-hms", key: "client-secret" } }, fcm: { projectId: "crashy-project", serviceAccountSecretRef: { name: "crashy-fcm", key: "sa.json" } } }, senders: { replicas: 2 } })]);
    // The first visible step of the reconcile is the credentials Secret: kill the operator then.
    await eventually(() => secretData("crashy-herald-credentials"), "credentials Secret written", { pollMs: 10 });
    await operator.stop("SIGKILL");
    operator = await startOperator(platform, { namespace, leaseName, identity: "op-c", env: poolScaling });
    await waitCondition(name, "TopicsReady", "True");
    const deps = await eventually(async () => {
      const all = await Promise.all(["hms", "fcm"].map((p) => deployment(`crashy-herald-${p}-sender`)));
      return all.every((d): d is V1Deployment => d?.spec?.replicas === 2) ? all : undefined;
    }, "both senders with 2 replicas");
    assert.equal(deps.length, 2);
    const keys = await secretData("crashy-herald-api-keys");
    assert.ok(keys?.["server-key"] && keys["client-key"], "API keys written once the reconcile finished");
  });
});

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CoreV1Api, type V1Secret } from "@kubernetes/client-node";
import { poolAppsIn } from "@herald/operator";
import { createClient } from "@herald/platform";
import { dispatch, Platform as DevicePlatform, Provider, registry } from "@herald/proto";
import { eventually, failureOf, generateApnsKey, randomDeviceToken, randomHmsToken, requireEnv, startFakeApns, startFakeHms, startLocalKubelet, type FakeApns, type FakeHms, type LocalKubelet } from "@herald/testing";
import { adminKubeConfig, applyChartRbac, CHART_LEASE_NAME, createNamespace, deleteNamespace, ensureNamespace, installCrd, kubectlOk, root, startOperator, type OperatorProcess } from "./kube.fixture.js";
import { ALLOW_FAKES, startPlatform, testCaFile, watchToEnd, type Platform } from "./platform.fixture.js";

// What a platform team does, end to end: Secrets and a PushApp applied with kubectl; the
// operator (as the chart's ServiceAccount, with the chart's RBAC and nothing more) turns them into sender Deployments; their pods run (the local kubelet runs each as a
// process with exactly the environment and Secret files of the pod spec), become available, and
// the PushApp turns Ready; a backend takes the server key from the Secret the operator wrote and
// publishes; the senders deliver to the fake APNs and Push Kit.

const b64 = (v: string) => Buffer.from(v).toString("base64");
const BUNDLE = "com.example.kube";
const APP = "kube-shop";

describe("a PushApp applied with kubectl delivers notifications", () => {
  let platform: Platform;
  let operator: OperatorProcess;
  let kubelet: LocalKubelet;
  let apns: FakeApns;
  let hms: FakeHms;
  let namespace: string;
  const key = generateApnsKey();

  const get = async () =>
    JSON.parse(await kubectlOk(["get", "pushapp", APP, "-n", namespace, "-o", "json"])) as {
      metadata: { generation: number };
      status?: { observedGeneration?: number; senders?: string; providers?: unknown[]; conditions?: Array<{ type: string; status: string; reason: string; message: string }> };
    };
  const explain = (err: Error) => {
    throw new Error(`${err.message}\noperator: ${failureOf(operator.output())}`);
  };

  // The backend's side: the server key from the Secret the operator wrote, clients, and an
  // iPhone and a Huawei phone on `topic`.
  const backend = async (topic: string) => {
    const secret = await adminKubeConfig().makeApiClient(CoreV1Api).readNamespacedSecret({ name: `${APP}-herald-api-keys`, namespace });
    const serverKey = Buffer.from(secret.data!["server-key"]!, "base64").toString();
    const devices = createClient(registry.RegistryServiceService, registry, platform.addresses.registry, { apiKey: serverKey });
    const publisher = createClient(dispatch.DispatchServiceService, dispatch, platform.addresses.dispatcher, { apiKey: serverKey });
    const iphone = randomDeviceToken();
    const huawei = randomHmsToken();
    await devices.registerDevice({ provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token: iphone, topics: [topic] });
    await devices.registerDevice({ provider: Provider.PROVIDER_HMS, platform: DevicePlatform.PLATFORM_ANDROID, token: huawei, topics: [topic] });
    return { devices, publisher, iphone, huawei };
  };

  before(async () => {
    const caFile = testCaFile();
    apns = await startFakeApns({ keys: [{ ...key, bundleId: BUNDLE }] });
    hms = await startFakeHms();
    await installCrd();
    await ensureNamespace("herald-system");
    namespace = await createNamespace("deliver");
    platform = await startPlatform(ALLOW_FAKES);
    kubelet = await startLocalKubelet({ kubeconfig: adminKubeConfig(), namespace, labelSelector: "app.kubernetes.io/component=sender", cwd: root });
    // The provider endpoints are the only thing pointed away from production, through the
    // operator's per-provider sender environment (as a proxy or a regional endpoint would be).
    const extraEnv = {
      "*": { HERALD_PROVIDER_CA_FILE: caFile, HERALD_RETRY_INITIAL_MS: "200", ...ALLOW_FAKES },
      apns: { HERALD_PROVIDER_URL: apns.url },
      hms: { HERALD_PROVIDER_URL: hms.pushUrl, HERALD_HMS_TOKEN_URL: hms.tokenUrl },
    };
    // As the chart's ServiceAccount, with only the chart's RBAC: least privilege that works.
    await applyChartRbac(namespace);
    operator = await startOperator(platform, {
      namespace,
      leaseName: CHART_LEASE_NAME,
      identity: "op-deliver",
      kubeconfig: requireEnv("HERALD_KUBE_OPERATOR_KUBECONFIG"),
      // Lag read every second and no scale-down delay, for the scale-to-zero test. The only
      // replica: a lease that outlasts a loaded machine's stalls (with the fixture's 4 s one, a
      // 3 s stall of a busy CI run ended the operator mid-test).
      env: {
        HERALD_SENDER_EXTRA_ENV: JSON.stringify(extraEnv),
        HERALD_AUTOSCALE_INTERVAL_SECONDS: "1",
        HERALD_SCALE_FROM_ZERO_INTERVAL_SECONDS: "1",
        HERALD_SCALE_DOWN_STABILIZATION_SECONDS: "0",
        HERALD_LEASE_DURATION_SECONDS: "15",
        HERALD_LEASE_RENEW_SECONDS: "2",
      },
    });
  });
  after(async () => {
    if (namespace) await deleteNamespace(namespace);
    await kubelet?.stop();
    await operator?.stop();
    await platform?.stop();
    await apns?.close();
    await hms?.close();
  });

  it("becomes Ready once its senders run, and delivers with the API key the operator wrote", async () => {
    const hmsApp = hms.app();
    const objects = [
      { apiVersion: "v1", kind: "Secret", metadata: { name: "kube-shop-apns", namespace }, data: { "AuthKey.p8": b64(key.privateKeyPem) } },
      { apiVersion: "v1", kind: "Secret", metadata: { name: "kube-shop-hms", namespace }, data: { "client-secret": b64(hmsApp.clientSecret) } },
      {
        apiVersion: "herald.dev/v1alpha1",
        kind: "PushApp",
        metadata: { name: APP, namespace },
        spec: {
          providers: {
            apns: { environment: "sandbox", bundleId: BUNDLE, auth: { token: { keyId: key.keyId, teamId: key.teamId, keySecretRef: { name: "kube-shop-apns", key: "AuthKey.p8" } } } },
            hms: { appId: hmsApp.appId, clientSecretRef: { name: "kube-shop-hms", key: "client-secret" } },
          },
          senders: { replicas: 1 },
        },
      },
    ];
    await kubectlOk(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) });

    await kubelet.waitFor((pods) => pods.length === 2 && pods.every((p) => p.ready), 120_000, "both sender pods running and ready");
    const ready = await eventually(
      async () => {
        const app = await get();
        const c = app.status?.conditions?.find((x) => x.type === "Ready");
        return c?.status === "True" && app.status?.observedGeneration === app.metadata.generation ? app : undefined;
      },
      "Ready=True",
      { timeoutMs: 90_000 },
    ).catch(explain);
    assert.equal(ready.status?.senders, "2/2");
    for (const type of ["CredentialsValid", "AppRegistered", "TopicsReady", "SendersAvailable"]) {
      assert.equal(ready.status?.conditions?.find((c) => c.type === type)?.status, "True", type);
    }
    const table = await kubectlOk(["get", "pushapps", "-n", namespace]);
    assert.match(table, new RegExp(`${APP}\\s+True\\s+apns,hms\\s+2/2\\s`), table);

    const { devices, publisher, iphone, huawei } = await backend("launch");
    try {
      const { id } = await publisher.publish({
        recipients: { target: { $case: "topics", value: { values: ["launch"] } } },
        notification: { alert: { title: "We are live", body: "Herald runs on Kubernetes" } },
      });
      const done = await watchToEnd({ dispatch: publisher }, id);
      assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE", JSON.stringify(done.counts));
      assert.equal(done.counts?.sent, 2);

      const [toApple] = apns.delivered(iphone);
      assert.ok(toApple, "APNs received the notification from the operator-made sender");
      assert.equal(toApple.headers["apns-topic"], BUNDLE);
      assert.deepEqual((JSON.parse(toApple.rawBody.toString()) as { aps: { alert: unknown } }).aps.alert, { title: "We are live", body: "Herald runs on Kubernetes" });
      const toHuawei = hms.records.find((r) => r.tokens.includes(huawei));
      assert.ok(toHuawei, "Push Kit received the notification");
      assert.match(toHuawei.rawBody.toString(), /We are live/);
    } finally {
      devices.close();
      publisher.close();
    }
  });

  it("reports a sender that cannot run as SendersAvailable=False", async () => {
    // Scaling to 2 while the kubelet refuses nothing: both Deployments roll to 2 available.
    await kubectlOk(["patch", "pushapp", APP, "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { senders: { replicas: 2 } } })]);
    await kubelet.waitFor((pods) => pods.filter((p) => p.ready).length === 4, 120_000, "four sender pods ready");
    await eventually(async () => ((await get()).status?.senders === "4/4" ? true : undefined), "senders 4/4", { timeoutMs: 90_000 }).catch(explain);

    // A sender whose process dies is what SREs must see on the PushApp.
    const victim = kubelet.running()[0]!;
    process.kill(victim.pid, "SIGKILL");
    const degraded = await eventually(
      async () => {
        const c = (await get()).status?.conditions?.find((x) => x.type === "SendersAvailable");
        return c?.status === "False" ? c : undefined;
      },
      "SendersAvailable=False",
      { timeoutMs: 90_000 },
    ).catch(explain);
    assert.equal(degraded.reason, "SendersUnavailable");
    assert.match(degraded.message, /(apns|hms) 1\/2 available/);
    assert.equal((await get()).status?.conditions?.find((x) => x.type === "Ready")?.status, "False");
  });

  it("scales an idle app's senders to zero, and back up when deliveries wait", async () => {
    await kubectlOk(["patch", "pushapp", APP, "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { senders: { replicas: null, autoscaling: { minReplicas: 0, maxReplicas: 2, targetLagPerReplica: 1000 } } } })]);
    await kubelet.waitFor((pods) => pods.length === 0, 120_000, "every sender pod gone while the app is idle").catch(explain);
    const idle = await eventually(
      async () => {
        const app = await get();
        return app.status?.senders === "0/0" && app.status?.conditions?.find((x) => x.type === "Ready")?.status === "True" ? app : undefined;
      },
      "senders 0/0 and Ready",
      { timeoutMs: 90_000 },
    ).catch(explain);
    assert.match(idle.status!.conditions!.find((c) => c.type === "SendersAvailable")!.message, /0\/0/);

    const { devices, publisher, iphone, huawei } = await backend("wake");
    try {
      const started = performance.now();
      const { id } = await publisher.publish({ recipients: { target: { $case: "topics", value: { values: ["wake"] } } }, notification: { alert: { title: "Wake up", body: "from zero" } } });
      // The lag brings a sender per provider back, which delivers what waited (nothing else
      // could: no sender runs), and then, the lag worked off, goes again.
      const done = await watchToEnd({ dispatch: publisher }, id);
      const coldStart = (performance.now() - started) / 1000;
      assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE", JSON.stringify(done.counts));
      assert.equal(done.counts?.sent, 2);
      assert.ok(apns.delivered(iphone)[0], "APNs received the notification that waited");
      assert.ok(hms.records.some((r) => r.tokens.includes(huawei)), "Push Kit received the notification that waited");
      console.log(`# scale from zero: publish → delivered in ${coldStart.toFixed(1)} s (lag read every 1 s here, then a sender's start)`);
    } finally {
      devices.close();
      publisher.close();
    }
    // Idle again: back to zero.
    await kubelet.waitFor((pods) => pods.length === 0, 120_000, "the senders gone again once the lag is worked off").catch(async (err: Error) => {
      // What the operator last saw per provider (lag, desired replicas) says which side held on.
      const providers = JSON.stringify((await get().catch(() => undefined))?.status?.providers);
      explain(new Error(`${err.message}\nPushApp status.providers: ${providers}`));
    });
  });
  // After the tests above (they count every sender pod of the namespace).
  it("serves pooled PushApps from the namespace's pool sender, takes in a later app without restarting it, and moves one to senders of its own without losing a notification", async () => {
    const POOLED = "kube-pool";
    // A second pooled app, applied together with the first: both must end up in the one pool.
    const OTHER = "kube-pool-b";
    // A third one, once the pool runs: its credentials reach the running pool pod.
    const LATER = "kube-pool-c";
    // No mode: a new PushApp's default, pooled.
    const pooledApp = (mode: "pooled" | "dedicated" | undefined, name = POOLED) => ({
      apiVersion: "herald.dev/v1alpha1",
      kind: "PushApp",
      metadata: { name, namespace },
      spec: {
        providers: { apns: { environment: "sandbox", bundleId: BUNDLE, auth: { token: { keyId: key.keyId, teamId: key.teamId, keySecretRef: { name: "kube-pool-apns", key: "AuthKey.p8" } } } } },
        ...(mode ? { senders: { mode } } : {}),
      },
    });
    const status = async (name = POOLED) =>
      (JSON.parse(await kubectlOk(["get", "pushapp", name, "-n", namespace, "-o", "json"])) as {
        metadata: { generation: number };
        status?: { observedGeneration?: number; pooled?: boolean; sendersMode?: string; senders?: string; providers?: Array<{ deployment: string }>; conditions?: Array<{ type: string; status: string }> };
      });
    const readyWith = (check: (s: Awaited<ReturnType<typeof status>>) => boolean, what: string, name = POOLED) =>
      eventually(
        async () => {
          const app = await status(name);
          const ready = app.status?.conditions?.find((c) => c.type === "Ready")?.status === "True" && app.status?.observedGeneration === app.metadata.generation;
          return ready && check(app) ? app : undefined;
        },
        what,
        { timeoutMs: 120_000 },
      ).catch(explain);
    const deployments = async () => (await kubectlOk(["get", "deployments", "-n", namespace, "-o", "name"])).split("\n").filter(Boolean);
    // The apps the pool serves: those with keys (<app>.<file>) in its credential shards, sorted.
    const poolApps = async () => {
      const shards = JSON.parse(await kubectlOk(["get", "secrets", "-n", namespace, "-l", "app.kubernetes.io/component=pool-credentials,herald.dev/provider=apns", "-o", "json"])) as { items: V1Secret[] };
      return [...poolAppsIn(shards.items, "herald", "apns")].sort();
    };
    const poolPod = () => kubelet.running().find((p) => p.pod.name.startsWith("herald-pool-apns-"));
    const poolGeneration = async () => (JSON.parse(await kubectlOk(["get", "deployment", "herald-pool-apns", "-n", namespace, "-o", "json"])) as { metadata: { generation: number } }).metadata.generation;

    const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "kube-pool-apns", namespace }, data: { "AuthKey.p8": b64(key.privateKeyPem) } };
    await kubectlOk(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items: [secret, pooledApp(undefined), pooledApp("pooled", OTHER)] }) });
    await eventually(async () => JSON.stringify(await poolApps().catch(() => [])) === JSON.stringify([POOLED, OTHER]), "both apps in the pool", { timeoutMs: 120_000 }).catch(explain);
    await kubelet.waitFor((pods) => pods.some((p) => p.pod.name.startsWith("herald-pool-apns-") && p.ready), 120_000, "the pool sender running and ready").catch(explain);
    const pooled = await readyWith((a) => a.status?.pooled === true, "Ready=True, served by the pool");
    assert.equal(pooled.status?.providers?.[0]?.deployment, "herald-pool-apns");
    assert.equal(pooled.status?.sendersMode, "pooled", "the default of a PushApp that names no mode");
    assert.equal(pooled.status?.senders, "1/1");
    assert.ok(!(await deployments()).includes(`deployment.apps/${POOLED}-herald-apns-sender`), "a pooled app has no sender of its own");

    // An app's clients, on its server key, and one device of its own.
    const clientsOf = async (app: string) => {
      const apiKeys = await adminKubeConfig().makeApiClient(CoreV1Api).readNamespacedSecret({ name: `${app}-herald-api-keys`, namespace });
      const serverKey = Buffer.from(apiKeys.data!["server-key"]!, "base64").toString();
      const devices = createClient(registry.RegistryServiceService, registry, platform.addresses.registry, { apiKey: serverKey });
      const publisher = createClient(dispatch.DispatchServiceService, dispatch, platform.addresses.dispatcher, { apiKey: serverKey });
      const iphone = randomDeviceToken();
      await devices.registerDevice({ provider: Provider.PROVIDER_APNS, platform: DevicePlatform.PLATFORM_IOS, token: iphone, topics: ["pool"] });
      const send = async (body: string) => {
        const { id } = await publisher.publish({ recipients: { target: { $case: "topics", value: { values: ["pool"] } } }, notification: { alert: { body } } });
        const done = await watchToEnd({ dispatch: publisher }, id).catch(async (err: Error) => {
          const at = await publisher.getPublish({ id }).catch((e: Error) => e.message);
          throw new Error(`${err.message}\npublish: ${JSON.stringify(at)}\n${kubelet.running().map((p) => `${p.pod.name}: ${p.output().slice(-3000)}`).join("\n")}`);
        });
        assert.equal(dispatch.publishStateToJSON(done.state), "PUBLISH_STATE_DONE", JSON.stringify(done.counts));
        assert.equal(done.counts?.sent, 1);
      };
      return { devices, publisher, iphone, send, close: () => (devices.close(), publisher.close()) };
    };
    const { devices, publisher, iphone, send } = await clientsOf(POOLED);
    try {
      await send("from the pool");
      assert.deepEqual(
        apns.delivered(iphone).map((d) => [d.headers["apns-topic"], (JSON.parse(d.rawBody.toString()) as { aps: { alert: { body: string } } }).aps.alert.body]),
        [[BUNDLE, "from the pool"]],
      );

      // A later app joins: one credential shard changes, the pool's pods do not (same process,
      // same generation), and the running pool delivers the new app's notification.
      const before = { pid: poolPod()?.pid, generation: await poolGeneration() };
      await kubectlOk(["apply", "-f", "-"], { input: JSON.stringify(pooledApp(undefined, LATER)) });
      await readyWith((a) => a.status?.pooled === true, "the later app Ready=True, served by the pool", LATER);
      assert.deepEqual(await poolApps(), [POOLED, OTHER, LATER]);
      const later = await clientsOf(LATER);
      try {
        await later.send("to the later app");
      } finally {
        later.close();
      }
      assert.deepEqual(apns.delivered(later.iphone).map((d) => (JSON.parse(d.rawBody.toString()) as { aps: { alert: { body: string } } }).aps.alert.body), ["to the later app"]);
      assert.deepEqual({ pid: poolPod()?.pid, generation: await poolGeneration() }, before, "the pool was not restarted or rolled for the new app");
      await kubectlOk(["delete", "pushapp", LATER, "-n", namespace, "--wait=false"]);
      await eventually(async () => JSON.stringify(await poolApps()) === JSON.stringify([POOLED, OTHER]), "the deleted app's keys out of the pool", { timeoutMs: 60_000 }).catch(explain);

      // The move: an edit of the PushApp. Its own sender comes up, the pool (now serving
      // nobody) goes, and what is published after the move is delivered once.
      await kubectlOk(["apply", "-f", "-"], { input: JSON.stringify(pooledApp("dedicated")) });
      await kubelet.waitFor((pods) => pods.some((p) => p.pod.name.startsWith(`${POOLED}-herald-apns-sender-`) && p.ready), 120_000, "the app's own sender running and ready").catch(explain);
      const dedicated = await readyWith((a) => a.status?.pooled === false && a.status?.providers?.[0]?.deployment === `${POOLED}-herald-apns-sender`, "Ready=True on its own senders");
      assert.equal(dedicated.status?.senders, "1/1");
      assert.equal(dedicated.status?.sendersMode, "dedicated");
      await eventually(async () => JSON.stringify(await poolApps()) === JSON.stringify([OTHER]), "the moved app out of the pool, the other one kept", { timeoutMs: 60_000 }).catch(explain);
      await send("from its own sender");
      assert.deepEqual(
        apns.delivered(iphone).map((d) => (JSON.parse(d.rawBody.toString()) as { aps: { alert: { body: string } } }).aps.alert.body),
        ["from the pool", "from its own sender"],
      );
      // The last pooled app goes: so does the pool.
      await kubectlOk(["delete", "pushapp", OTHER, "-n", namespace, "--wait=false"]);
      await eventually(async () => !(await deployments()).includes("deployment.apps/herald-pool-apns"), "the pool Deployment removed: no pooled app left", { timeoutMs: 90_000 }).catch(explain);
    } finally {
      devices.close();
      publisher.close();
    }
  });
});

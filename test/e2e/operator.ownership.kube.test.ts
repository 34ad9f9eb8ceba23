import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { CoreV1Api, type CoreV1Event } from "@kubernetes/client-node";
import { createClient } from "@herald/platform";
import { apps, Platform as DevicePlatform, Provider, registry } from "@herald/proto";
import { eventually, failureOf, freePort, requireEnv } from "@herald/testing";
import { adminKubeConfig, createNamespace, deleteNamespace, ensureNamespace, installCrd, kubectl, kubectlOk, startOperator, type OperatorProcess } from "./kube.fixture.js";
import { startPlatform, type Platform } from "./platform.fixture.js";
import { signUserToken } from "../integration/fixtures.js";

// Two installations of Herald in one cluster (issue 11 item 2) and the API key lifecycle (item 3),
// on a real kube-apiserver. "blue" has a registry and Kafka namespace of its own; "green"'s
// registry does not answer, so anything green does to a PushApp shows as RegistryUnavailable, and
// anything it wrongly did to blue's would show there. Both watch the same namespace.

const b64 = (v: string) => Buffer.from(v).toString("base64");
const unb64 = (v: string | undefined) => Buffer.from(v ?? "", "base64").toString();
const runId = randomUUID().slice(0, 6);
// Dedicated senders (a new PushApp's default is pooled): the Deployments each installation owns.
const hmsApp = (namespace: string, name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: "herald.dev/v1alpha1",
  kind: "PushApp",
  metadata: { name, namespace },
  spec: { providers: { hms: { appId: "104455555", clientSecretRef: { name: "hms", key: "client-secret" } } }, senders: { mode: "dedicated" }, ...extra },
});
const apply = (objects: object[]) => kubectlOk(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) });

interface AppView {
  metadata: { uid: string; generation: number; annotations?: Record<string, string>; finalizers?: string[] };
  status?: { observedGeneration?: number; userTokenSecretRotation?: number; conditions?: Array<{ type: string; status: string; reason: string; message: string }> };
}

describe("two installations and the API key lifecycle on a real API server", () => {
  let platform: Platform;
  let namespace: string;
  let blue: OperatorProcess;
  let green: OperatorProcess;
  let core: CoreV1Api;

  const getApp = async (name: string) => JSON.parse(await kubectlOk(["get", "pushapp", name, "-n", namespace, "-o", "json"])) as AppView;
  const condition = (app: AppView, type: string) => app.status?.conditions?.find((c) => c.type === type);
  const events = async (name: string) => {
    const uid = (await getApp(name)).metadata.uid;
    return ((await core.listNamespacedEvent({ namespace })).items as CoreV1Event[]).filter((e) => e.involvedObject.uid === uid);
  };
  const waitEvent = (name: string, reason: string, match: RegExp) =>
    eventually(async () => (await events(name)).find((e) => e.reason === reason && match.test(e.message ?? "")), `${name}: Event ${reason} ${match}`).catch((err: Error) => {
      throw new Error(`${err.message}\nblue: ${failureOf(blue.output())}\ngreen: ${failureOf(green?.output() ?? "")}`);
    });
  const keys = async (name: string) => {
    const data = (await core.readNamespacedSecret({ name: `${name}-herald-api-keys`, namespace }).catch(() => undefined))?.data;
    return data ? { server: unb64(data["server-key"]), client: unb64(data["client-key"]), userTokenSecret: unb64(data["user-token-secret"]) } : undefined;
  };
  // A call with an app's key against blue's registry: its gRPC status code (0 when it worked).
  const useKey = async (apiKey: string) => {
    const client = createClient(registry.RegistryServiceService, registry, platform.addresses.registry, { apiKey });
    try {
      await client.registerDevice({ provider: Provider.PROVIDER_HMS, platform: DevicePlatform.PLATFORM_ANDROID, token: `t-${randomUUID()}` });
      return 0;
    } catch (err) {
      return (err as { code?: number }).code ?? -1;
    } finally {
      client.close();
    }
  };

  before(async () => {
    await installCrd();
    await ensureNamespace("herald-system");
    namespace = await createNamespace("own");
    core = adminKubeConfig().makeApiClient(CoreV1Api);
    platform = await startPlatform();
    await apply([{ apiVersion: "v1", kind: "Secret", metadata: { name: "hms", namespace }, type: "Opaque", data: { "client-secret": b64("hms-secret") } }]);
    blue = await startOperator(platform, { namespace, leaseName: `herald-operator-blue-${runId}`, identity: "blue-0", env: { HERALD_INSTALLATION: "blue" } });
  });
  after(async () => {
    if (namespace) await deleteNamespace(namespace);
    await Promise.all([blue?.stop(), green?.stop()]);
    await platform?.stop();
  });

  it("an unassigned PushApp is claimed by the installation that claims unassigned ones", async () => {
    await apply([hmsApp(namespace, "alpha")]);
    const app = await eventually(async () => {
      const a = await getApp("alpha");
      return condition(a, "AppRegistered")?.status === "True" ? a : undefined;
    }, "alpha registered by blue");
    assert.equal(app.metadata.annotations?.["herald.dev/installation"], "blue");
    assert.ok(app.metadata.finalizers?.includes("herald.dev/cleanup"));
    await waitEvent("alpha", "Claimed", /installation "blue" owns this PushApp/);
    const table = await kubectlOk(["get", "pushapp", "alpha", "-n", namespace, "-o", "wide"]);
    assert.match(table.split("\n")[0]!, /INSTALLATION/);
    assert.match(table.split("\n")[1]!, /\bblue\b/);
  });

  it("a second installation leaves another's PushApp alone and says so: keys, status and Deployments stay the first one's", async () => {
    const before = await getApp("alpha");
    const keysBefore = await keys("alpha");
    const sender = JSON.parse(await kubectlOk(["get", "deployment", "alpha-herald-hms-sender", "-n", namespace, "-o", "json"])) as { metadata: { generation: number; resourceVersion: string } };
    const platformOfGreen = { env: { HERALD_KAFKA_BROKERS: requireEnv("HERALD_KAFKA_BROKERS"), HERALD_KAFKA_NAMESPACE: `e2e-${randomUUID().slice(0, 8)}.`, HERALD_ADMIN_KEY: `admin-${randomUUID()}`, HERALD_LOG_LEVEL: "warn" }, addresses: { registry: `127.0.0.1:${await freePort()}` } } as unknown as Platform;
    green = await startOperator(platformOfGreen, { namespace, leaseName: `herald-operator-green-${runId}`, identity: "green-0", env: { HERALD_INSTALLATION: "green" } });
    // The Event is written at the end of green's pass over alpha: whatever green did, it did before.
    await waitEvent("alpha", "NotOwned", /installation "green" leaves this PushApp alone: installation "blue" claimed it/);
    const after = await getApp("alpha");
    assert.equal(after.metadata.annotations?.["herald.dev/installation"], "blue");
    // green's registry does not answer: had green reconciled alpha, AppRegistered would say so.
    assert.deepEqual(condition(after, "AppRegistered"), condition(before, "AppRegistered"), "green wrote no status");
    assert.deepEqual(await keys("alpha"), keysBefore, "green issued no keys");
    assert.equal(await useKey(keysBefore!.server), 0, "blue's key still works at blue's registry");
    const senderAfter = JSON.parse(await kubectlOk(["get", "deployment", "alpha-herald-hms-sender", "-n", namespace, "-o", "json"])) as { metadata: { generation: number } };
    assert.equal(senderAfter.metadata.generation, sender.metadata.generation, "green applied no Deployment");
  });

  it("spec.installation picks the owner: the named installation claims it, the other leaves it alone", async () => {
    await apply([hmsApp(namespace, "beta", { installation: "green" })]);
    // green's registry does not answer: its reconcile shows, which proves green is the one working on it.
    const app = await eventually(async () => {
      const a = await getApp("beta");
      return condition(a, "AppRegistered")?.reason === "RegistryUnavailable" ? a : undefined;
    }, "beta reconciled by green");
    assert.equal(app.metadata.annotations?.["herald.dev/installation"], "green");
    await waitEvent("beta", "NotOwned", /installation "blue" leaves this PushApp alone: spec.installation names installation "green"/);
    assert.equal(await keys("beta"), undefined, "blue issued no keys for green's app");
    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    try {
      await assert.rejects(admin.getApp({ id: "beta" }), (err: { code?: number }) => err.code === 5, "blue never registered beta");
    } finally {
      admin.close();
    }
  });

  it("spec.installation is immutable", async () => {
    const moved = await kubectl(["patch", "pushapp", "beta", "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { installation: "blue" } })]);
    assert.notEqual(moved.code, 0);
    assert.match(moved.stderr, /installation is immutable/);
    const added = await kubectl(["patch", "pushapp", "alpha", "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { installation: "blue" } })]);
    assert.notEqual(added.code, 0, "naming an installation later is a move too");
    assert.match(added.stderr, /installation is immutable/);
  });

  it("deleting another installation's PushApp is left to its owner", async () => {
    await kubectlOk(["delete", "pushapp", "beta", "-n", namespace, "--wait=false"]);
    // green's registry cannot be reached, so green cannot finish; blue must not finish it either.
    await eventually(async () => condition(await getApp("beta"), "Ready")?.reason === "DeletionBlocked", "beta blocked in green's hands");
    const app = await getApp("beta");
    assert.ok(app.metadata.finalizers?.includes("herald.dev/cleanup"), "blue did not remove green's finalizer");
    await green.stop();
    // Its owner gone for good: removing the finalizer by hand is the documented way out.
    await kubectlOk(["patch", "pushapp", "beta", "-n", namespace, "--type=merge", "-p", JSON.stringify({ metadata: { finalizers: null } })]);
    await eventually(async () => (await kubectl(["get", "pushapp", "beta", "-n", namespace])).code !== 0, "beta gone");
  });

  it("a deleted API key Secret gets new keys and the old ones are revoked; the user token secret stays", async () => {
    const old = (await keys("alpha"))!;
    const token = signUserToken(old.userTokenSecret, { sub: "ada", iss: "herald:alpha", exp: Math.floor(Date.now() / 1000) + 600 });
    await kubectlOk(["delete", "secret", "alpha-herald-api-keys", "-n", namespace]);
    const fresh = await eventually(async () => {
      const k = await keys("alpha");
      return k && k.server !== old.server ? k : undefined;
    }, "new keys in a new Secret");
    assert.notEqual(fresh.client, old.client);
    assert.equal(fresh.userTokenSecret, old.userTokenSecret, "the user token secret was not rotated");
    assert.equal(await useKey(fresh.server), 0);
    await eventually(async () => (await useKey(old.server)) === 16, "the old server key is revoked (UNAUTHENTICATED)");
    await eventually(async () => (await useKey(old.client)) === 16, "the old client key is revoked (UNAUTHENTICATED)");
    await waitEvent("alpha", "ApiKeysRotated", /Secret alpha-herald-api-keys was missing\); revoked 2 previous key/);
    // A user token issued before still verifies.
    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    try {
      assert.equal((await admin.verifyUserToken({ appId: "alpha", userToken: token })).user, "ada");
    } finally {
      admin.close();
    }
  });

  it("the user token secret rotates when spec.userTokenSecretRotation moves, and only then", async () => {
    const old = (await keys("alpha"))!;
    await kubectlOk(["patch", "pushapp", "alpha", "-n", namespace, "--type=merge", "-p", JSON.stringify({ spec: { userTokenSecretRotation: 1 } })]);
    const rotated = await eventually(async () => {
      const k = await keys("alpha");
      return k && k.userTokenSecret !== old.userTokenSecret ? k : undefined;
    }, "a new user token secret");
    assert.equal(rotated.server, old.server, "the API keys stay");
    assert.equal(await useKey(old.server), 0);
    await eventually(async () => (await getApp("alpha")).status?.userTokenSecretRotation === 1, "status.userTokenSecretRotation 1");
    await waitEvent("alpha", "UserTokenSecretRotated", /spec.userTokenSecretRotation is 1/);
    const admin = createClient(apps.AppServiceService, apps, platform.addresses.registry, { apiKey: platform.adminKey });
    try {
      assert.equal((await admin.getUserTokenSecret({ appId: "alpha" })).userTokenSecret, rotated.userTokenSecret, "the Secret holds the registry's current secret");
      const stale = signUserToken(old.userTokenSecret, { sub: "ada", iss: "herald:alpha", exp: Math.floor(Date.now() / 1000) + 600 });
      await assert.rejects(admin.verifyUserToken({ appId: "alpha", userToken: stale }), "a token of the old secret no longer verifies");
    } finally {
      admin.close();
    }
  });
});

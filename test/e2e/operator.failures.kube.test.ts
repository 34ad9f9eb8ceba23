import assert from "node:assert/strict";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { CoreV1Api, Watch, type CoreV1Event } from "@kubernetes/client-node";
import { eventually, failureOf, freePort, requireEnv, sample, scrape } from "@herald/testing";
import { adminKubeConfig, createNamespace, deleteNamespace, ensureNamespace, installCrd, kubectl, kubectlOk, startOperator, type OperatorProcess } from "./kube.fixture.js";
import type { Platform } from "./platform.fixture.js";

// The operator facing failures that do not go away on a real kube-apiserver: a Secret it may not
// create (a ResourceQuota), a registry that does not answer. It must back off instead of looping
// on its own status writes, tell the story in Events, and say why a deletion is stuck.

const b64 = (v: string) => Buffer.from(v).toString("base64");
const runId = randomUUID().slice(0, 6);
const secret = (namespace: string, name: string, data: Record<string, string>) => ({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace }, type: "Opaque", data: Object.fromEntries(Object.entries(data).map(([k, v]) => [k, b64(v)])) });
// Dedicated senders, which a new PushApp gets only when it says so (pooled: delivery.kube).
const pushApp = (namespace: string, name: string, spec: Record<string, unknown>) => ({ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name, namespace }, spec: { ...spec, senders: { mode: "dedicated", ...(spec.senders as object | undefined) } } });
const hms = (secretName: string) => ({ providers: { hms: { appId: "104455555", clientSecretRef: { name: secretName, key: "client-secret" } } } });
const apply = (objects: object[]) => kubectlOk(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) });

interface AppView {
  metadata: { generation: number; finalizers?: string[]; deletionTimestamp?: string };
  status?: { observedGeneration?: number; conditions?: Array<{ type: string; status: string; reason: string; message: string; lastTransitionTime: string }> };
}

// An operator whose registry address answers nothing (connection refused): every registry call
// fails at once, as when the registry is down.
async function startOperatorWithoutRegistry(namespace: string, identity: string): Promise<OperatorProcess> {
  const platform = {
    env: {
      HERALD_KAFKA_BROKERS: requireEnv("HERALD_KAFKA_BROKERS"),
      HERALD_KAFKA_NAMESPACE: `e2e-${randomUUID().slice(0, 8)}.`,
      HERALD_ADMIN_KEY: `admin-${randomUUID()}`,
      HERALD_LOG_LEVEL: "warn",
    },
    addresses: { registry: `127.0.0.1:${await freePort()}` },
  } as unknown as Platform;
  return startOperator(platform, { namespace, leaseName: `herald-operator-${identity}-${runId}`, identity });
}

describe("operator failures on a real API server", () => {
  before(async () => {
    await installCrd();
    await ensureNamespace("herald-system");
  });

  it("refuses an app id that cannot be a label value at admission: 64 characters, or a trailing '-'", async () => {
    const namespace = await createNamespace("opn");
    try {
      const long = `a${"b".repeat(63)}`;
      const refused = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(pushApp(namespace, long, {})) });
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /metadata\.name/);
      const dash = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(pushApp(namespace, "shop-", {})) });
      assert.notEqual(dash.code, 0);
      assert.match(dash.stderr, /metadata\.name/);
      // 63 characters is the longest id, and every object derived from it is accepted.
      const longest = `a${"b".repeat(62)}`;
      await kubectlOk(["apply", "--dry-run=server", "-f", "-"], { input: JSON.stringify(pushApp(namespace, longest, {})) });
      const labels = { "herald.dev/app": longest, "app.kubernetes.io/managed-by": "herald-operator" };
      await kubectlOk(["apply", "--dry-run=server", "-f", "-"], {
        input: JSON.stringify({
          apiVersion: "apps/v1",
          kind: "Deployment",
          metadata: { name: `${longest}-herald-webpush-sender`, namespace, labels },
          spec: { selector: { matchLabels: labels }, template: { metadata: { labels }, spec: { containers: [{ name: "sender", image: "herald" }] } } },
        }),
      });
    } finally {
      await deleteNamespace(namespace);
    }
  });

  it("refuses a webhook event listed twice, and kubectl explain says what deletion and an empty providers mean", async () => {
    const namespace = await createNamespace("opx");
    try {
      const twice = await kubectl(["apply", "-f", "-"], { input: JSON.stringify(pushApp(namespace, "hooks", { webhooks: [{ url: "https://hooks.example.com/h", events: ["delivery.failed", "delivery.failed"] }] })) });
      assert.notEqual(twice.code, 0);
      assert.match(twice.stderr, /spec\.webhooks\[0\]\.events\[1\]: Duplicate value: "delivery\.failed"/);
      const policy = await eventually(async () => {
        const run = await kubectl(["explain", "pushapp.spec.dataDeletionPolicy"]);
        return run.code === 0 ? run.stdout.replace(/\s+/g, " ") : undefined;
      }, "kubectl explain pushapp.spec.dataDeletionPolicy");
      assert.match(policy, /Always deleted: the registry app, its API keys \(and the API key Secret\) and its Kafka topics\. Retain \(default\) keeps the devices, users and topic subscriptions/);
      const providers = (await kubectlOk(["explain", "pushapp.spec.providers"])).replace(/\s+/g, " ");
      assert.match(providers, /With no provider enabled \(absent or \{\}\) .* Ready is True with reason NoProviders/);
    } finally {
      await deleteNamespace(namespace);
    }
  });

  describe("a PushApp whose credentials Secret can never be written", () => {
    let namespace: string;
    let operator: OperatorProcess;
    const name = "quota";
    before(async () => {
      namespace = await createNamespace("opq");
      // The user's Secret first; then a quota of one Secret, used up: the operator's credentials
      // Secret is refused (403) on every attempt. test/infra runs no quota controller (an
      // unprocessed quota admits everything), so the usage is written the way it would.
      await apply([secret(namespace, "quota-hms", { "client-secret": "s" })]);
      await apply([{ apiVersion: "v1", kind: "ResourceQuota", metadata: { name: "one-secret", namespace }, spec: { hard: { secrets: "1" } } }]);
      await kubectlOk(["patch", "resourcequota", "one-secret", "-n", namespace, "--subresource=status", "--type=merge", "-p", JSON.stringify({ status: { hard: { secrets: "1" }, used: { secrets: "1" } } })]);
      operator = await startOperatorWithoutRegistry(namespace, `opq-${runId}`);
    });
    after(async () => {
      await operator?.stop();
      // Without the operator nothing removes the finalizer.
      await kubectl(["patch", "pushapp", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
      if (namespace) await deleteNamespace(namespace);
    });

    it("backs off: a bounded number of reconciles and status writes per minute, one Event with a growing count", async (t) => {
      await apply([pushApp(namespace, name, hms("quota-hms"))]);
      const getApp = async () => JSON.parse(await kubectlOk(["get", "pushapp", name, "-n", namespace, "-o", "json"])) as AppView;
      const failed = await eventually(async () => (await getApp()).status?.conditions?.find((c) => c.type === "CredentialsValid" && c.status === "False" && c.reason === "ApplyFailed"), "CredentialsValid=False ApplyFailed").catch((err: Error) => {
        throw new Error(`${err.message}\n${failureOf(operator.output())}`);
      });
      assert.match(failed.message, /exceeded quota: one-secret/);

      // Every write of the PushApp (status or metadata) from now on, as the API server reports it.
      let writes = 0;
      const watch = await new Watch(adminKubeConfig()).watch(
        `/apis/herald.dev/v1alpha1/namespaces/${namespace}/pushapps`,
        { fieldSelector: `metadata.name=${name}`, resourceVersion: JSON.parse(await kubectlOk(["get", "pushapp", name, "-n", namespace, "-o", "json"])).metadata.resourceVersion },
        (type) => {
          if (type === "MODIFIED") writes++;
        },
        () => undefined,
      );
      const reconciles = async () => sample(await scrape(operator.healthUrl), "herald_operator_reconciles_total");
      const first = await reconciles();
      const windowMs = 60_000;
      // A measurement window, not a synchronisation: the rate is what is asserted.
      await new Promise((resolve) => setTimeout(resolve, windowMs));
      const reconcilesPerMinute = ((await reconciles()) - first) * (60_000 / windowMs);
      const writesPerMinute = writes * (60_000 / windowMs);
      watch.abort();
      t.diagnostic(`permanently failing PushApp: ${reconcilesPerMinute} reconciles/min, ${writesPerMinute} PushApp writes/min`);
      // Before the fix: ~40 status writes a second. With backoff from 200 ms doubling: ~9 in the
      // first minute, fewer after; no status write once the conditions hold still.
      assert.ok(reconcilesPerMinute > 0, "it keeps retrying");
      assert.ok(reconcilesPerMinute <= 20, `${reconcilesPerMinute} reconciles/min`);
      assert.ok(writesPerMinute <= 1, `${writesPerMinute} writes/min`);
      const after = (await getApp()).status?.conditions?.find((c) => c.type === "CredentialsValid");
      assert.equal(after?.lastTransitionTime, failed.lastTransitionTime, "lastTransitionTime holds still");

      // One Event for the repeated failure, its count bumped on each retry.
      const events = (await adminKubeConfig().makeApiClient(CoreV1Api).listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` })).items;
      const applyFailed = events.filter((e: CoreV1Event) => e.reason === "ApplyFailed");
      assert.equal(applyFailed.length, 1, JSON.stringify(events.map((e) => [e.reason, e.count])));
      assert.equal(applyFailed[0]!.type, "Warning");
      assert.ok((applyFailed[0]!.count ?? 0) >= 3, `count ${applyFailed[0]!.count}`);
    });
  });

  describe("a PushApp whose registry is down", () => {
    let namespace: string;
    let operator: OperatorProcess;
    const name = `down-${runId}`;
    before(async () => {
      namespace = await createNamespace("ope");
      operator = await startOperatorWithoutRegistry(namespace, `ope-${runId}`);
      await apply([secret(namespace, `${name}-hms`, { "client-secret": "s" }), pushApp(namespace, name, hms(`${name}-hms`))]);
    });
    after(async () => {
      await operator?.stop();
      await kubectl(["patch", "pushapp", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
      if (namespace) await deleteNamespace(namespace);
    });

    it("kubectl describe tells the story in Events, a repeated failure counted on one Event", async () => {
      const describeApp = () => kubectlOk(["describe", "pushapp", name, "-n", namespace]);
      const story = await eventually(async () => {
        const out = await describeApp();
        // kubectl shows a repeated Event as "(xN over …)" in its Age column.
        return /Normal\s+Valid\s+.*CredentialsValid: valid credentials for hms/.test(out) && /Warning\s+RegistryUnavailable\s+\S+ \(x\d+ over [^)]+\)\s+herald-operator\s+AppRegistered: /.test(out) ? out : undefined;
      }, "Events in kubectl describe").catch(async (err: Error) => {
        throw new Error(`${err.message}\n${await describeApp()}\n${failureOf(operator.output())}`);
      });
      assert.match(story, /Events:/);
      const events = (await adminKubeConfig().makeApiClient(CoreV1Api).listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` })).items;
      assert.equal(events.filter((e) => e.reason === "RegistryUnavailable").length, 1, "deduplicated");
      assert.ok(events.every((e) => e.reportingInstance === `ope-${runId}` && e.source?.component === "herald-operator"));
    });

    it("refuses an FCM service account of another project than projectId, with reason ProjectIdMismatch", async () => {
      const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const account = JSON.stringify({ type: "service_account", project_id: "their-project", client_email: "s@their-project.iam.gserviceaccount.com", private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString() });
      await apply([secret(namespace, "mine-fcm", { "sa.json": account }), pushApp(namespace, "mine", { providers: { fcm: { projectId: "my-project", serviceAccountSecretRef: { name: "mine-fcm", key: "sa.json" } } } })]);
      const c = await eventually(async () => {
        const app = JSON.parse(await kubectlOk(["get", "pushapp", "mine", "-n", namespace, "-o", "json"])) as AppView;
        return app.status?.conditions?.find((x) => x.type === "CredentialsValid" && x.status === "False");
      }, "CredentialsValid=False for mine");
      assert.equal(c.reason, "ProjectIdMismatch");
      assert.match(c.message, /the service account belongs to project "their-project", but spec\.providers\.fcm\.projectId is "my-project"/);
      // The registry is down, so the finalizer could never finish: delete, then drop it by hand.
      await kubectlOk(["delete", "pushapp", "mine", "-n", namespace, "--wait=false"]);
      await kubectlOk(["patch", "pushapp", "mine", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']);
    });

    it("while the finalizer cannot finish, Ready is False with reason DeletionBlocked, and an Event says so", async () => {
      await kubectlOk(["delete", "pushapp", name, "-n", namespace, "--wait=false"]);
      const ready = await eventually(async () => {
        const app = JSON.parse(await kubectlOk(["get", "pushapp", name, "-n", namespace, "-o", "json"])) as AppView;
        return app.metadata.deletionTimestamp ? app.status?.conditions?.find((c) => c.type === "Ready" && c.status === "False" && c.reason === "DeletionBlocked") : undefined;
      }, "Ready=False DeletionBlocked");
      assert.match(ready.message, /deletion is blocked: cannot look up the registry app: .*; the finalizer herald\.dev\/cleanup stays until it succeeds/);
      const table = await kubectlOk(["get", "pushapp", name, "-n", namespace, "-o", "wide"]);
      assert.match(table, new RegExp(`${name}\\s+False\\s+.*DeletionBlocked`));
      await eventually(async () => /Warning\s+DeletionBlocked\s+.*Ready: deletion is blocked/.test(await kubectlOk(["describe", "pushapp", name, "-n", namespace])), "a DeletionBlocked Event");
    });
  });
});

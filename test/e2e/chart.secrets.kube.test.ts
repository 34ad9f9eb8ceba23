import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { CoreV1Api, type KubeConfig, type V1Secret } from "@kubernetes/client-node";
import { createLogger } from "@herald/platform";
import { eventually } from "@herald/testing";
import { adminKubeConfig, createNamespace, kubectl, kubectlOk, root } from "./kube.fixture.js";

// What the chart's Secret RBAC leaves to the code (RBAC cannot limit list and watch by label):
// the operator's Secret cache, watching every namespace as a cluster-wide install does, on the
// real API server. It must hold the Secrets the operator writes and the ones a PushApp
// references, hear of a referenced Secret's change at once, and never list, watch or keep any
// other Secret of the cluster (kube-system's included).

const INFORMERS = `${root}operator/src/informer.watch.ts`;
const OWNED = "app.kubernetes.io/managed-by=herald-operator";

interface SecretCacheLike {
  start(): Promise<void>;
  stop(): Promise<void>;
  get(name: string, namespace?: string): V1Secret | undefined;
  list(namespace?: string): readonly V1Secret[];
  onChange(handler: (s: V1Secret) => void): void;
  onDelete(handler: (s: V1Secret) => void): void;
  track(user: string, namespace: string, names: Iterable<string>): Promise<void>;
  untrack(user: string): Promise<void>;
  readonly referencedCount: number;
}
type SecretCacheClass = new (
  kc: KubeConfig,
  o: { namespace: string; ownedSelector: string; logger: ReturnType<typeof createLogger>; list: (namespace: string | undefined, selector: { labelSelector?: string; fieldSelector?: string }) => Promise<{ items: V1Secret[] }> },
) => SecretCacheLike;

const b64 = (v: string) => Buffer.from(v).toString("base64");
const secret = (namespace: string, name: string, value: string, labels?: Record<string, string>) => ({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace, ...(labels ? { labels } : {}) }, data: { v: b64(value) } });
const apply = (objects: object[]) => kubectlOk(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }) });
const value = (s: V1Secret | undefined) => (s?.data?.v ? Buffer.from(s.data.v, "base64").toString() : undefined);

describe("the operator's Secret cache on a real API server", () => {
  let namespace: string;
  let cache: SecretCacheLike;
  // A Secret in kube-system, which a cluster-wide cache must not hold.
  let probe: string | undefined;
  const changes: string[] = [];

  before(async () => {
    namespace = await createNamespace("chart-secrets");
    probe = `probe-${namespace}`;
    await kubectlOk(["create", "secret", "generic", probe, "-n", "kube-system", "--from-literal=v=root"]);
    await apply([
      secret(namespace, "shop-herald-credentials", "owned", { "app.kubernetes.io/managed-by": "herald-operator", "herald.dev/app": "shop" }),
      secret(namespace, "shop-apns", "apns-1"),
      secret(namespace, "unrelated", "nobody's business"),
    ]);
    const { SecretCache } = (await import(INFORMERS)) as { SecretCache: SecretCacheClass };
    const kc = adminKubeConfig();
    const core = kc.makeApiClient(CoreV1Api);
    cache = new SecretCache(kc, {
      namespace: "",
      ownedSelector: OWNED,
      logger: createLogger({ service: "secret-cache-test", level: "warn" }),
      list: (ns, selector) => (ns ? core.listNamespacedSecret({ namespace: ns, ...selector }) : core.listSecretForAllNamespaces(selector)),
    });
    cache.onChange((s) => changes.push(`${s.metadata?.namespace}/${s.metadata?.name}=${value(s)}`));
    await cache.start();
  });
  after(async () => {
    await cache?.stop();
    if (namespace) await kubectl(["delete", "namespace", namespace, "--wait=false"]);
    if (probe) await kubectl(["delete", "secret", probe, "-n", "kube-system", "--ignore-not-found"]);
  });

  it("holds the Secrets the operator writes and the ones a PushApp references, no other", async () => {
    await cache.track(`${namespace}/shop`, namespace, ["shop-apns", "shop-fcm"]);
    assert.equal(value(cache.get("shop-herald-credentials", namespace)), "owned");
    assert.equal(value(cache.get("shop-apns", namespace)), "apns-1", "a referenced Secret is cached before track() resolves");
    assert.equal(cache.get("shop-fcm", namespace), undefined, "referenced, not created yet");
    assert.equal(cache.get("unrelated", namespace), undefined);
    assert.equal(cache.get(probe!, "kube-system"), undefined);
    for (const s of cache.list()) {
      const where = `${s.metadata?.namespace}/${s.metadata?.name}`;
      assert.ok(s.metadata?.labels?.["app.kubernetes.io/managed-by"] === "herald-operator" || where === `${namespace}/shop-apns`, `${where} is cached`);
    }
    assert.equal(cache.referencedCount, 2);
  });

  it("hears at once of a referenced Secret that changes or appears, and forgets it when no PushApp references it", async () => {
    await apply([secret(namespace, "shop-apns", "apns-2"), secret(namespace, "shop-fcm", "fcm-1"), secret(namespace, "unrelated", "changed")]);
    await eventually(() => changes.includes(`${namespace}/shop-apns=apns-2`) && changes.includes(`${namespace}/shop-fcm=fcm-1`), `change events (${changes.join(", ")})`, { timeoutMs: 30_000 });
    assert.equal(value(cache.get("shop-fcm", namespace)), "fcm-1");
    assert.ok(!changes.some((c) => c.startsWith(`${namespace}/unrelated`)), "an unrelated Secret's change reached the cache");

    // Another PushApp shares one of them: it stays until neither references it.
    await cache.track(`${namespace}/other`, namespace, ["shop-fcm"]);
    await cache.untrack(`${namespace}/shop`);
    assert.equal(cache.get("shop-apns", namespace), undefined);
    assert.equal(value(cache.get("shop-fcm", namespace)), "fcm-1");
    await cache.track(`${namespace}/other`, namespace, []);
    assert.equal(cache.get("shop-fcm", namespace), undefined);
    assert.equal(cache.referencedCount, 0);
    assert.equal(value(cache.get("shop-herald-credentials", namespace)), "owned", "owned Secrets stay");
  });
});

import https from "node:https";
import {
  ApiException,
  CoordinationV1Api,
  CoreV1Api,
  createConfiguration,
  CustomObjectsApi,
  HttpMethod,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  ServerConfiguration,
  setHeaderOptions,
  type CoreV1Event,
  type KubernetesObject,
  type RequestContext,
  type V1Lease,
  type V1Secret,
} from "@kubernetes/client-node";
import { withSpan } from "@herald/platform";
import { PUSHAPP_GROUP, PUSHAPP_PLURAL, PUSHAPP_VERSION } from "@herald/pushapp";
import { LeaderFence } from "./leader.fence.js";

export const FIELD_MANAGER = "herald-operator";

// @kubernetes/client-node 1.x builds a new https.Agent for every request and every watch, so
// each API call paid a TCP and TLS handshake on both ends (bench --operator-apps counted 5,499
// connections for 5,499 requests at 200 PushApps). Here the requests share one keep-alive agent
// per set of TLS options (a rotated client certificate gets a new one); proxy agents are left
// as the client builds them.
export class KeepAliveKubeConfig extends KubeConfig {
  private shared?: { key: string; agent: https.Agent };

  override async applyToFetchOptions(opts: https.RequestOptions): ReturnType<KubeConfig["applyToFetchOptions"]> {
    const init = await super.applyToFetchOptions(opts);
    return init.agent instanceof https.Agent ? { ...init, agent: this.reuse(init.agent) } : init;
  }

  override async applySecurityAuthentication(context: RequestContext): Promise<void> {
    await super.applySecurityAuthentication(context);
    const agent = context.getAgent();
    if (agent instanceof https.Agent) context.setAgent(this.reuse(agent));
  }

  private reuse(built: https.Agent): https.Agent {
    if (built.constructor !== https.Agent) return built;
    const o = built.options;
    const key = JSON.stringify([o.ca, o.cert, o.key, o.pfx, o.passphrase, o.rejectUnauthorized, o.servername].map((v) => (Buffer.isBuffer(v) ? v.toString("base64") : v)));
    if (this.shared?.key !== key) this.shared = { key, agent: new https.Agent({ ...o, keepAlive: true }) };
    return this.shared.agent;
  }
}

// KUBECONFIG (or ~/.kube/config) outside a cluster, the pod's service account inside one.
export function loadKubeConfig(): KubeConfig {
  const kc = new KeepAliveKubeConfig();
  kc.loadFromDefault();
  return kc;
}

// A Lease's acquireTime and renewTime are MicroTime: the API server parses them only with six
// fractional digits. The client's serializer passes them through as they are (it has no
// MicroTime type), and a Date would go out with three, so they are sent as preformatted strings.
export function microTime(ms: number): Date {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z") as unknown as Date;
}

export function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

// An API client configuration whose requests run under the fence: a write is refused unless the
// leader's term is valid at the moment it leaves, and every request (reads too) is aborted
// when the term is revoked.
function fencedConfiguration(kc: KubeConfig, fence: LeaderFence) {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error("the kubeconfig has no current cluster");
  return createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [
      {
        pre: async (ctx: RequestContext) => {
          if (ctx.getHttpMethod() !== HttpMethod.GET) fence.check();
          ctx.setSignal(fence.signal);
          return ctx;
        },
        post: async (response) => response,
      },
    ],
  });
}

// What the operator does to the API server, in one place: server-side apply of the objects it
// owns, merge patches of the PushApp (finalizers, status) with the resourceVersion as a
// precondition, Events, and Leases for leader election. Everything but the Lease calls goes
// through the leader fence; each call is a child span of the reconcile that makes it.
export class KubeClient {
  private readonly objects: KubernetesObjectApi;
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  private readonly coordination: CoordinationV1Api;

  constructor(
    readonly config: KubeConfig,
    readonly fence: LeaderFence = new LeaderFence(true),
  ) {
    const fenced = fencedConfiguration(config, fence);
    this.objects = new KubernetesObjectApi(fenced);
    this.custom = new CustomObjectsApi(fenced);
    this.core = new CoreV1Api(fenced);
    // The election itself must keep talking to the Lease while the fence is closed.
    this.coordination = config.makeApiClient(CoordinationV1Api);
  }

  // Server-side apply: the operator owns exactly the fields it sends; fields others set (an
  // HPA's replicas, a human's annotation) are left alone, and conflicts are taken over (force),
  // since these objects are the operator's to define. A field manager of its own lets one part
  // of an object be applied alone (a pooled app's keys in a credential shard).
  apply<T extends KubernetesObject>(object: T, fieldManager = FIELD_MANAGER): Promise<T> {
    return withSpan(`kube apply ${object.kind}`, { "k8s.object.name": object.metadata?.name ?? "" }, () =>
      this.objects.patch(object, undefined, undefined, fieldManager, true, PatchStrategy.ServerSideApply),
    );
  }

  // A fresh read, past the informer cache: for state the operator must not act on twice (the
  // API key Secret, whose absence means "create keys").
  readSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    return withSpan("kube get Secret", { "k8s.object.name": name }, async () => {
      try {
        return await this.objects.read<V1Secret>({ apiVersion: "v1", kind: "Secret", metadata: { namespace, name } });
      } catch (err) {
        if (isStatus(err, 404)) return undefined;
        throw err;
      }
    });
  }

  // Background: the object goes at once, its dependents after. Foreground: it stays (with a
  // deletionTimestamp) until its dependents are gone — a Deployment until its pods have stopped.
  delete(object: KubernetesObject, propagation: "Background" | "Foreground" = "Background"): Promise<boolean> {
    return withSpan(`kube delete ${object.kind}`, { "k8s.object.name": object.metadata?.name ?? "" }, async () => {
      try {
        await this.objects.delete(object, undefined, undefined, undefined, undefined, propagation);
        return true;
      } catch (err) {
        if (isStatus(err, 404)) return false;
        throw err;
      }
    });
  }

  // A merge patch of the PushApp itself (metadata.finalizers); include metadata.resourceVersion
  // to make it conditional.
  async patchPushApp(namespace: string, name: string, patch: Record<string, unknown>): Promise<void> {
    await withSpan("kube patch PushApp", { "k8s.object.name": name }, () =>
      this.custom.patchNamespacedCustomObject(
        { group: PUSHAPP_GROUP, version: PUSHAPP_VERSION, namespace, plural: PUSHAPP_PLURAL, name, body: patch, fieldManager: FIELD_MANAGER },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
    );
  }

  async patchPushAppStatus(namespace: string, name: string, status: Record<string, unknown>): Promise<void> {
    await withSpan("kube patch PushApp status", { "k8s.object.name": name }, () =>
      this.custom.patchNamespacedCustomObjectStatus(
        { group: PUSHAPP_GROUP, version: PUSHAPP_VERSION, namespace, plural: PUSHAPP_PLURAL, name, body: { status }, fieldManager: FIELD_MANAGER },
        setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
      ),
    );
  }

  createEvent(namespace: string, event: CoreV1Event): Promise<CoreV1Event> {
    return this.core.createNamespacedEvent({ namespace, body: event });
  }

  patchEvent(namespace: string, name: string, patch: Record<string, unknown>): Promise<CoreV1Event> {
    return this.core.patchNamespacedEvent({ namespace, name, body: patch }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
  }

  listPushApps(namespace: string): Promise<{ items: KubernetesObject[]; metadata?: { resourceVersion?: string } }> {
    const common = { group: PUSHAPP_GROUP, version: PUSHAPP_VERSION, plural: PUSHAPP_PLURAL };
    return namespace ? this.custom.listNamespacedCustomObject({ ...common, namespace }) : this.custom.listClusterCustomObject(common);
  }

  async readLease(namespace: string, name: string): Promise<V1Lease | undefined> {
    try {
      return await this.coordination.readNamespacedLease({ namespace, name });
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw err;
    }
  }

  createLease(namespace: string, lease: V1Lease): Promise<V1Lease> {
    return this.coordination.createNamespacedLease({ namespace, body: lease });
  }

  // Optimistic: fails with 409 when somebody else wrote the Lease since we read it.
  replaceLease(namespace: string, lease: V1Lease): Promise<V1Lease> {
    return this.coordination.replaceNamespacedLease({ namespace, name: lease.metadata!.name!, body: lease });
  }
}

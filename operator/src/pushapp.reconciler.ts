import { isDeepStrictEqual } from "node:util";
import { ApiException, type V1Deployment, type V1Secret } from "@kubernetes/client-node";
import { withSpan, type Bus, type Logger } from "@herald/platform";
import { BusGroups, BusTopics, deliveryTopicsOf, LANES, pooledTopicsOf } from "@herald/proto";
import { enabledProviders, pushAppOwner, PushAppSchema, type PushApp, type PushAppCondition, type PushAppProvider, type PushAppProviderStatus, type PushAppStatus } from "@herald/pushapp";
import type { AppRegistry } from "./app.registry.js";
import { validateCredentials, type ValidCredentials } from "./credentials.validator.js";
import type { Informer } from "./informer.watch.js";
import type { KubeClient } from "./kube.client.js";
import type { OperatorConfig } from "./operator.config.js";
import type { OperatorMetrics } from "./operator.metrics.js";
import type { EventRecorder } from "./event.recorder.js";
import type { LeaderFence } from "./leader.fence.js";
import { CONDITION, Conditions } from "./pushapp.conditions.js";
import { INSTALLATION_ANNOTATION, ownershipOf } from "./pushapp.ownership.js";
import { replicasForLag, type ScaleStabilizer } from "./sender.autoscaler.js";
import { resolveSenderMode } from "./sender.mode.js";
import { appKeysIn, appsIn, isShardOf, POOL_SPEC_ANNOTATION, poolAppsIn, poolAutoscaling, poolDeployment, poolSettings, shardData, shardManager, shardName, shardOf, shardSecret } from "./pool.deployment.js";
import { apiKeySecret, credentialsSecret, LABELS, names, readApiKeySecret, senderDeployment, type ApiKeySecretData } from "./sender.deployment.js";

export const FINALIZER = "herald.dev/cleanup";
// The names of the API keys the operator issues start with this: the keys it may revoke.
export const OPERATOR_KEY_PREFIX = "operator: ";
const ALL_PROVIDERS: PushAppProvider[] = ["apns", "fcm", "hms", "webpush"];
const MIN_PARTITIONS = 8;
// How long a deletion waits for the app's senders to stop before deleting its topics anyway (a
// node that is gone never reports its pods stopped).
const SENDER_STOP_WAIT_MS = 120_000;

// A PushApp as the API server returns it (the informer's cache holds these).
export interface PushAppObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    generation?: number;
    resourceVersion?: string;
    deletionTimestamp?: Date;
    finalizers?: string[];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: unknown;
  status?: PushAppStatus;
}

export interface ReconcilerDeps {
  kube: KubeClient;
  pushApps: Informer<PushAppObject>;
  secrets: Informer<V1Secret>;
  deployments: Informer<V1Deployment>;
  registry: AppRegistry;
  bus: Bus;
  config: OperatorConfig;
  stabilizer: ScaleStabilizer;
  metrics: OperatorMetrics;
  events: EventRecorder;
  // Writes to the registry and Kafka are made only while this replica's leader term is valid
  // (the API server calls are fenced inside the KubeClient).
  fence: LeaderFence;
  logger: Logger;
  now: () => Date;
}

export interface ReconcileResult {
  // Come back after this long even if nothing changes (lag-based scaling reads the lag again).
  requeueAfterMs?: number;
  // The reconcile could not finish for this reason (a condition reason): retry with backoff.
  backoff?: string;
}

// A failure already reported in the status and as an Event: the controller only retries it.
export class ReportedError extends Error {
  constructor(
    readonly reason: string,
    cause: unknown,
  ) {
    super(`${reason}: ${describe(cause)}`, { cause });
    this.name = "ReportedError";
  }
}

export const pushAppKey = (namespace: string, name: string) => `${namespace}/${name}`;

// Both lanes' delivery topics (see deliveryTopicsOf) and the shared retry topic.
const topicsOf = (app: string, providers: PushAppProvider[]) => providers.flatMap((p) => [...deliveryTopicsOf(app, p).map((l) => l.topic), BusTopics.retries(app, p)]);
// Where a pooled app's jobs wait, with the pool's group reading each: both lanes (what its lag
// counts), and with the retries (what must drain before the pool lets the app go).
const poolLanesOf = (app: string, provider: PushAppProvider) => LANES.map((lane) => ({ topic: BusTopics.pooled(app, provider, lane), group: BusGroups.pool(provider, lane) }));
const poolQueuesOf = (app: string, provider: PushAppProvider) => [...poolLanesOf(app, provider), { topic: BusTopics.pooledRetries(app, provider), group: BusGroups.poolRetries(provider) }];
// Where a dedicated app's jobs wait, retries included: what must drain before its senders go.
const dedicatedQueuesOf = (app: string, provider: PushAppProvider) => [...deliveryTopicsOf(app, provider), { topic: BusTopics.retries(app, provider), group: BusGroups.senderRetries(app, provider) }];

// Why a step failed, for the condition: the API server's own message for a refused request
// (the client's error message starts with "HTTP-Code: 422"), else the error's first line.
function describe(err: unknown): string {
  if (err instanceof ApiException) {
    const body = typeof err.body === "string" ? err.body : JSON.stringify(err.body);
    let message: string | undefined;
    try {
      message = (JSON.parse(body) as { message?: string }).message;
    } catch {
      message = undefined;
    }
    return `${message ?? body} (HTTP ${err.code})`.slice(0, 500);
  }
  // A timestamp in an error message would make every retry of the same failure look new: it is
  // dropped, so the condition's message (and its Event) stays the same while the failure does.
  return (err instanceof Error ? err.message : String(err))
    .split("\n")[0]!
    .replace(/\s*\(\d{4}-\d{2}-\d{2}T[\d:.]+Z\)/g, "")
    .slice(0, 500);
}

// One reconcile of one PushApp: validate the referenced credentials (and stop there, changing
// nothing, when they are bad), write the normalized credentials Secret, register the app and
// its API keys, ensure its Kafka topics, apply one sender Deployment per enabled provider and
// delete the ones of disabled providers, then write the status. Every step is idempotent, so a
// reconcile interrupted anywhere (a crash, a lost leadership) is finished by the next one.
export class PushAppReconciler {
  // uid → why this installation leaves the PushApp alone, as last said in an Event.
  private readonly notOwned = new Map<string, string>();
  // namespace/provider → the pool Deployment this replica last applied: newer than the informer's
  // copy until the watch catches up, so two apps joining one after the other both stay in.
  private readonly pools = new Map<string, V1Deployment>();
  // namespace/provider → uid of the pool Deployment this replica deleted, until the informer
  // sees it go (its stale copy must not bring its apps back).
  private readonly poolsGone = new Map<string, string>();
  // namespace → the pool change in progress: an app's change is made on top of the previous one's.
  private readonly poolLocks = new Map<string, Promise<unknown>>();
  // namespace/shard name → the credential shard this replica last applied (see pools).
  private readonly shards = new Map<string, V1Secret>();
  // namespace/provider → the replicas the pool's scaler last asked for.
  private readonly poolReplicas = new Map<string, number>();

  constructor(private readonly d: ReconcilerDeps) {}

  // The PushApp is gone.
  forget(uid: string): void {
    this.notOwned.delete(uid);
  }

  // Another installation's PushApp: nothing is written but one Event saying so (again only when
  // the reason changes), so two installations never fight and kubectl describe tells why.
  private async leaveAlone(object: PushAppObject, why: string): Promise<void> {
    if (this.notOwned.get(object.metadata.uid) === why) return;
    this.notOwned.set(object.metadata.uid, why);
    await this.d.events.record(object, "Normal", "NotOwned", `installation "${this.d.config.HERALD_INSTALLATION}" leaves this PushApp alone: ${why}`);
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    const [namespace, name] = key.split("/") as [string, string];
    const object = this.d.pushApps.get(name, namespace);
    if (!object) return {};
    const installation = this.d.config.HERALD_INSTALLATION;
    const ownership = ownershipOf(object, installation, this.d.config.HERALD_CLAIM_UNASSIGNED);
    if (ownership.owner === "other") {
      await this.leaveAlone(object, ownership.why);
      return {};
    }
    this.notOwned.delete(object.metadata.uid);
    if (object.metadata.deletionTimestamp) {
      // An app that was never claimed has nothing of this installation's to clean up, unless an
      // operator from before installations existed put the finalizer on it.
      await this.finalize(object);
      return {};
    }
    this.d.fence.check();
    const finalizers = object.metadata.finalizers ?? [];
    if (!finalizers.includes(FINALIZER) || ownership.owner === "claim") {
      // The resourceVersion makes the claim conditional: of two installations claiming at once,
      // the second gets 409 Conflict and, retrying, finds the first one's annotation.
      await this.d.kube.patchPushApp(namespace, name, {
        metadata: { finalizers: [...new Set([...finalizers, FINALIZER])], annotations: { [INSTALLATION_ANNOTATION]: installation }, resourceVersion: object.metadata.resourceVersion },
      });
      if (ownership.owner === "claim") await this.d.events.record(object, "Normal", "Claimed", `installation "${installation}" owns this PushApp (annotation ${INSTALLATION_ANNOTATION})`);
    }

    const generation = object.metadata.generation ?? 0;
    const conditions = new Conditions(object.status?.conditions, generation, this.d.now());
    const status: PushAppStatus = { ...object.status, observedGeneration: generation };
    const parsed = PushAppSchema.safeParse({ apiVersion: object.apiVersion, kind: object.kind, metadata: { name, namespace }, spec: object.spec });
    if (!parsed.success) {
      const problems = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
      conditions.set(CONDITION.credentialsValid, "Unknown", "InvalidSpec", `the spec does not validate: ${problems}`);
      return this.finish(object, status, conditions, { backoff: "InvalidSpec" }, CONDITION.credentialsValid);
    }
    const app: PushApp = parsed.data;
    app.metadata.namespace = namespace;
    // From here on the app names its mode: the registry, the topics and the senders all follow it.
    const resolved = resolveSenderMode(app, object.status, this.d.config.HERALD_DEFAULT_SENDER_MODE);
    if (resolved.mode !== object.status?.sendersMode) this.d.logger.info({ key, mode: resolved.mode, why: resolved.why }, "sender mode");
    app.spec.senders = { ...app.spec.senders, mode: resolved.mode };
    status.sendersMode = resolved.mode;
    const withUid = { ...app, metadata: { ...app.metadata, uid: object.metadata.uid } };
    const providers = enabledProviders(app);
    status.providerList = providers.join(",");

    // 1. Credentials. A bad one stops the reconcile before anything is written: senders keep
    // running on the last good credentials.
    const credentials = validateCredentials(app, (secret) => this.d.secrets.get(secret, namespace)?.data);
    if (!credentials.ok) {
      const first = credentials.problems[0]!;
      conditions.set(CONDITION.credentialsValid, "False", first.reason, credentials.problems.map((p) => p.message).join("; "));
      this.d.metrics.credentialFailures.inc({ namespace, app: name, reason: first.reason });
      return this.finish(object, status, conditions, { backoff: first.reason }, CONDITION.credentialsValid);
    }

    // A step that throws sets its condition False, writes the status (and its Event), and fails
    // the reconcile, which the work queue retries with backoff. A condition is set True only once
    // its step has succeeded, so a failing pass never flips it back and forth.
    const step = async <T>(condition: string, reason: string, work: () => Promise<T>): Promise<T> => {
      try {
        this.d.fence.check();
        return await work();
      } catch (err) {
        if (this.d.fence.valid) {
          conditions.set(condition, "False", reason, describe(err));
          await this.finish(object, status, conditions, {}, condition).catch((statusErr: unknown) => this.d.logger.warn({ err: statusErr, key }, "status write failed"));
          throw new ReportedError(reason, err);
        }
        throw err;
      }
    };

    const pooled = resolved.mode === "pooled";
    await step(CONDITION.credentialsValid, "ApplyFailed", () => this.d.kube.apply(credentialsSecret(withUid, credentials.files)));
    status.credentialsSecretName = names.credentials(name);
    conditions.set(CONDITION.credentialsValid, "True", "Valid", providers.length ? `valid credentials for ${providers.join(", ")}` : "no provider is enabled");

    // 2. The app and its API keys in the registry. An app of the same id that another PushApp
    // (another namespace) or an admin created is not taken over: nothing more is written.
    const keys = await step(CONDITION.appRegistered, "RegistryUnavailable", () => this.ensureApiKeys(object, withUid, credentials.env.webpush?.HERALD_VAPID_PUBLIC_KEY));
    if ("conflict" in keys) {
      conditions.set(CONDITION.appRegistered, "False", "AppIdConflict", `${keys.conflict}; rename this PushApp (its name is the app id)`);
      return this.finish(object, status, conditions, { backoff: "AppIdConflict" }, CONDITION.appRegistered);
    }
    // Retrying cannot fix it: the next edit of the spec reconciles again.
    if ("refused" in keys) {
      conditions.set(CONDITION.appRegistered, "False", "RegistryRefused", keys.refused);
      return this.finish(object, status, conditions, { backoff: "RegistryRefused" }, CONDITION.appRegistered);
    }
    status.apiKeySecretName = names.apiKeys(name);
    status.apiKeyRotation = keys.rotation;
    status.userTokenSecretRotation = keys.userTokenRotation;
    conditions.set(CONDITION.appRegistered, "True", "Registered", `app "${name}" is registered; API keys in Secret ${names.apiKeys(name)}`);

    // 3. Kafka topics, with a partition for every replica the senders may run.
    const scaling = app.spec.senders?.autoscaling;
    const partitions = Math.max(MIN_PARTITIONS, scaling?.maxReplicas ?? app.spec.senders?.replicas ?? 1);
    if (pooled) {
      // One partition per app and lane: the unit the pool schedules, pauses and reads the lag of.
      await step(CONDITION.topicsReady, "KafkaUnavailable", () => this.d.bus.ensureTopics(providers.flatMap((p) => pooledTopicsOf(name, p)).map((t) => ({ name: t, partitions: 1 }))));
      conditions.set(CONDITION.topicsReady, "True", "TopicsExist", `${providers.length * 3} pool topics with 1 partition`);
      return this.reconcilePooled(object, key, withUid, providers, credentials, status, conditions, step);
    }
    await step(CONDITION.topicsReady, "KafkaUnavailable", () => this.d.bus.ensureTopics(topicsOf(name, providers).map((t) => ({ name: t, partitions }))));
    conditions.set(CONDITION.topicsReady, "True", "TopicsExist", `${providers.length * 2} topics with ${partitions} partitions`);

    // 4. Sender Deployments.
    const providerStatus: PushAppProviderStatus[] = [];
    await step(CONDITION.sendersAvailable, "ApplyFailed", async () => {
      for (const provider of providers) {
        const lag = await this.lagOf(name, provider);
        this.d.metrics.senderLag.set({ namespace, app: name, provider }, lag);
        const desired = scaling ? this.d.stabilizer.recommend(`${key}/${provider}`, replicasForLag(lag, scaling)) : (app.spec.senders?.replicas ?? 1);
        this.d.metrics.senderReplicas.set({ namespace, app: name, provider }, desired);
        const before = this.d.deployments.get(names.sender(name, provider), namespace)?.spec?.replicas;
        if (scaling && before !== undefined && before !== desired) this.d.logger.info({ key, provider, from: before, to: desired, lag }, "scaling senders on lag");
        const files = filesOf(credentials.files, provider);
        const applied = await this.d.kube.apply(
          senderDeployment(withUid, { provider, replicas: desired, env: credentials.env[provider] ?? {}, files, credentialsHash: credentials.hashes[provider] ?? "" }, this.d.config),
        );
        const live = this.d.deployments.get(applied.metadata!.name!, namespace) ?? applied;
        providerStatus.push({
          name: provider,
          deployment: applied.metadata!.name!,
          replicas: live.status?.replicas ?? 0,
          desiredReplicas: desired,
          availableReplicas: live.status?.availableReplicas ?? 0,
          lag,
        });
      }
      // What a disabled or removed provider no longer needs.
      for (const stale of this.d.deployments.list(namespace)) {
        const labels = stale.metadata?.labels ?? {};
        if (labels[LABELS.app] !== name || labels[LABELS.component] !== "sender") continue;
        if (providers.includes(labels[LABELS.provider] as PushAppProvider)) continue;
        await this.d.kube.delete({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: stale.metadata!.name!, namespace } });
        this.d.stabilizer.forget(`${key}/${labels[LABELS.provider]}`);
        this.d.logger.info({ key, deployment: stale.metadata?.name }, "removed the sender of a disabled provider");
      }
    });
    // Moved out of the pool: it keeps serving the app until the jobs handed to it are delivered.
    let poolDraining = false;
    if (object.status?.pooled) {
      poolDraining = await step(CONDITION.sendersAvailable, "ApplyFailed", async () => {
        const waiting = await this.queuedIn(providers.flatMap((p) => poolQueuesOf(name, p)));
        await this.applyPool(namespace, name, waiting > 0 ? this.poolKeysOf(name, providers, credentials) : new Map());
        if (waiting > 0) this.d.logger.info({ key, waiting }, "moved to dedicated senders; the pool delivers what waits on its topics first");
        return waiting > 0;
      });
    }
    // false, not absent: the status is written as a merge patch, where an absent field stays.
    if (object.status?.pooled) status.pooled = poolDraining;
    this.summarizeSenders(status, conditions, providerStatus, providers);

    // A provider scaled to zero is looked at more often: its lag is the only sign of work.
    const atZero = providerStatus.some((p) => p.desiredReplicas === 0);
    const interval = atZero ? this.d.config.HERALD_SCALE_FROM_ZERO_INTERVAL_SECONDS : this.d.config.HERALD_AUTOSCALE_INTERVAL_SECONDS;
    return this.finish(object, status, conditions, scaling || poolDraining ? { requeueAfterMs: interval * 1000 } : {}, undefined, providers.length === 0);
  }

  private summarizeSenders(status: PushAppStatus, conditions: Conditions, providerStatus: PushAppProviderStatus[], providers: PushAppProvider[]): void {
    status.providers = providerStatus;
    const available = providerStatus.reduce((n, p) => n + Math.min(p.availableReplicas, p.desiredReplicas), 0);
    const wanted = providerStatus.reduce((n, p) => n + p.desiredReplicas, 0);
    status.senders = `${available}/${wanted}`;
    const short = providerStatus.filter((p) => p.availableReplicas < p.desiredReplicas);
    if (short.length === 0) conditions.set(CONDITION.sendersAvailable, "True", "Available", providers.length ? `every sender is available (${available}/${wanted})` : "no provider is enabled");
    else conditions.set(CONDITION.sendersAvailable, "False", "SendersUnavailable", short.map((p) => `${p.name} ${p.availableReplicas}/${p.desiredReplicas} available`).join(", "));
  }

  // A pooled app: the namespace's pool Deployments serve it (this app's source added to each of
  // its providers' pools, removed from the others), and its own senders, if it had any, stay
  // until the jobs handed to them are delivered.
  private async reconcilePooled(
    object: PushAppObject,
    key: string,
    app: PushApp & { metadata: { uid: string } },
    providers: PushAppProvider[],
    credentials: Pick<ValidCredentials, "files" | "env" | "hashes">,
    status: PushAppStatus,
    conditions: Conditions,
    step: <T>(condition: string, reason: string, work: () => Promise<T>) => Promise<T>,
  ): Promise<ReconcileResult> {
    const { name, namespace } = app.metadata as { name: string; namespace: string };
    const providerStatus: PushAppProviderStatus[] = [];
    const draining = await step(CONDITION.sendersAvailable, "ApplyFailed", async () => {
      await this.applyPool(namespace, name, this.poolKeysOf(name, providers, credentials));
      for (const provider of providers) {
        const lag = await this.queuedIn(poolLanesOf(name, provider));
        this.d.metrics.senderLag.set({ namespace, app: name, provider }, lag);
        const pool = this.poolOf(namespace, provider);
        const desired = this.poolReplicasOf(namespace, provider, pool);
        // None of its own: the pool reports the app's metrics only once it has had a job, so an
        // idle pooled app must not look like one whose senders stopped reporting.
        this.d.metrics.senderReplicas.set({ namespace, app: name, provider }, 0);
        providerStatus.push({ name: provider, deployment: names.pool(this.d.config.HERALD_INSTALLATION, provider), replicas: pool?.status?.replicas ?? 0, desiredReplicas: desired, availableReplicas: pool?.status?.availableReplicas ?? 0, lag });
      }
      // The app's own senders, from before the move: each goes once its jobs are delivered.
      let waiting = 0;
      for (const own of this.d.deployments.list(namespace)) {
        const labels = own.metadata?.labels ?? {};
        if (labels[LABELS.app] !== name || labels[LABELS.component] !== "sender") continue;
        const provider = labels[LABELS.provider] as PushAppProvider;
        const queued = providers.includes(provider) ? await this.queuedIn(dedicatedQueuesOf(name, provider)) : 0;
        if (queued > 0) {
          // At least one replica (a sender scaled to zero drains nothing), on current credentials.
          const replicas = Math.max(1, own.spec?.replicas ?? 1);
          const files = filesOf(credentials.files, provider);
          await this.d.kube.apply(senderDeployment(app, { provider, replicas, env: credentials.env[provider] ?? {}, files, credentialsHash: credentials.hashes[provider] ?? "" }, this.d.config));
          waiting += queued;
          continue;
        }
        await this.d.kube.delete({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: own.metadata!.name!, namespace } });
        this.d.stabilizer.forget(`${key}/${provider}`);
        this.d.logger.info({ key, deployment: own.metadata?.name }, "moved to the pool: removed the app's own sender, nothing waits for it");
      }
      return waiting > 0;
    });
    status.pooled = true;
    this.summarizeSenders(status, conditions, providerStatus, providers);
    return this.finish(object, status, conditions, draining ? { requeueAfterMs: this.d.config.HERALD_AUTOSCALE_INTERVAL_SECONDS * 1000 } : {}, undefined, providers.length === 0);
  }

  // provider → the app's keys in that provider's pool: its credential files and settings.
  private poolKeysOf(app: string, providers: PushAppProvider[], credentials: Pick<ValidCredentials, "files" | "env">): Map<PushAppProvider, Record<string, string>> {
    return new Map(providers.map((p) => [p, shardData(app, Object.fromEntries(filesOf(credentials.files, p).map((f) => [f, credentials.files[f]!])), poolSettings(credentials.env[p] ?? {}))]));
  }

  // Puts the app's keys into its shard of the pools of the providers in `wanted` and takes them
  // out of every other shard (only what differs is written); then applies each pool that serves
  // an app and deletes the ones left with none. Keys of apps whose PushApp is gone are taken out
  // on the way.
  private applyPool(namespace: string, app: string, wanted: Map<PushAppProvider, Record<string, string>>): Promise<void> {
    return this.poolLocked(namespace, async () => {
      const target = shardOf(app, this.d.config.HERALD_POOL_CREDENTIAL_SHARDS);
      for (const provider of ALL_PROVIDERS) {
        const poolKey = `${namespace}/${provider}`;
        const keys = wanted.get(provider);
        const members = new Set<string>();
        for (const [shard, secret] of this.shardsOf(namespace, provider)) {
          const desired = keys && shard === target ? keys : {};
          let current = secret;
          if (!isDeepStrictEqual(appKeysIn(current, app), desired)) current = await this.applyShard(namespace, provider, shard, app, desired);
          for (const member of appsIn(current)) {
            if (member !== app && this.d.pushApps.hasSynced && this.d.pushApps.get(member, namespace) === undefined) {
              this.d.logger.info({ namespace, provider, app: member }, "took the credentials of a deleted PushApp out of the pool");
              current = await this.applyShard(namespace, provider, shard, member, {});
              continue;
            }
            members.add(member);
          }
        }
        const current = this.poolOf(namespace, provider);
        if (members.size === 0) {
          if (current && !current.metadata?.deletionTimestamp) {
            this.d.fence.check();
            await this.d.kube.delete({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: names.pool(this.d.config.HERALD_INSTALLATION, provider), namespace } });
            if (current.metadata?.uid) this.poolsGone.set(poolKey, current.metadata.uid);
            this.d.logger.info({ namespace, provider }, "removed the pool sender: no pooled app left");
          }
          this.pools.delete(poolKey);
          continue;
        }
        const desired = poolDeployment(namespace, provider, this.d.config, this.poolReplicasOf(namespace, provider, current));
        // Unchanged, and the API server has it (a pool deleted by hand is applied again).
        const seen = this.d.deployments.get(desired.metadata!.name!, namespace);
        const specOf = (d: V1Deployment | undefined) => d?.metadata?.annotations?.[POOL_SPEC_ANNOTATION];
        if (seen && this.poolsGone.get(poolKey) !== seen.metadata?.uid && specOf(current) === specOf(desired) && current?.spec?.replicas === desired.spec?.replicas) continue;
        this.d.fence.check();
        this.pools.set(poolKey, await this.d.kube.apply(desired));
        this.poolsGone.delete(poolKey);
      }
    });
  }

  // Writes exactly the keys `data` of `app` into one shard (none: takes the app's keys out).
  private async applyShard(namespace: string, provider: PushAppProvider, shard: number, app: string, data: Record<string, string>): Promise<V1Secret> {
    this.d.fence.check();
    const applied = await this.d.kube.apply(shardSecret(namespace, provider, shard, this.d.config, Object.keys(data).length ? data : undefined), shardManager(app));
    this.shards.set(`${namespace}/${applied.metadata?.name}`, applied);
    return applied;
  }

  // A pool's credential shards: the configured ones and any other the informer knows (left from
  // a larger HERALD_POOL_CREDENTIAL_SHARDS), each the newer of the informer's copy and the one
  // this replica applied last.
  private shardsOf(namespace: string, provider: PushAppProvider): Map<number, V1Secret | undefined> {
    const installation = this.d.config.HERALD_INSTALLATION;
    const indices = new Set(Array.from({ length: this.d.config.HERALD_POOL_CREDENTIAL_SHARDS }, (_, i) => i));
    const prefix = shardName(installation, provider, 0).slice(0, -1);
    for (const secret of this.d.secrets.list(namespace)) {
      const name = secret.metadata?.name ?? "";
      if (isShardOf(secret, installation, provider) && /^\d+$/.test(name.slice(prefix.length))) indices.add(Number(name.slice(prefix.length)));
    }
    return new Map(
      [...indices].map((shard) => {
        const name = shardName(installation, provider, shard);
        const seen = this.d.secrets.get(name, namespace);
        const copy = newer(seen, this.shards.get(`${namespace}/${name}`));
        // Caught up: from now on the informer alone knows (a Secret deleted by hand is written again).
        if (copy === seen) this.shards.delete(`${namespace}/${name}`);
        return [shard, copy];
      }),
    );
  }

  // The apps a pool serves: those with keys in its shards.
  private poolMembers(namespace: string, provider: PushAppProvider): string[] {
    return [...poolAppsIn(this.shardsOf(namespace, provider).values(), this.d.config.HERALD_INSTALLATION, provider)];
  }

  // Runs a change of a namespace's pools after the one in progress.
  private poolLocked(namespace: string, change: () => Promise<void>): Promise<void> {
    const previous = this.poolLocks.get(namespace) ?? Promise.resolve();
    const next = previous.catch(() => {}).then(change);
    this.poolLocks.set(namespace, next);
    return next.finally(() => {
      if (this.poolLocks.get(namespace) === next) this.poolLocks.delete(namespace);
    });
  }

  // The replicas a pool runs: what its scaler last asked for, else what it runs now (a new
  // operator replica does not scale a busy pool down), within the configured bounds.
  private poolReplicasOf(namespace: string, provider: PushAppProvider, current: V1Deployment | undefined): number {
    const scaling = poolAutoscaling(this.d.config);
    if (!scaling) return this.d.config.HERALD_POOL_REPLICAS;
    const replicas = this.poolReplicas.get(`${namespace}/${provider}`) ?? current?.spec?.replicas ?? scaling.minReplicas;
    return Math.min(scaling.maxReplicas, Math.max(scaling.minReplicas, replicas));
  }

  // One look at a pool's lag (both lanes of every app it serves, one read per lane) and the
  // replicas it asks for: up at once, down after the stabilization window. The controller
  // calls it every HERALD_AUTOSCALE_INTERVAL_SECONDS while the pool exists.
  async scalePool(namespace: string, provider: PushAppProvider): Promise<ReconcileResult> {
    const scaling = poolAutoscaling(this.d.config);
    const pool = this.poolOf(namespace, provider);
    const poolKey = `${namespace}/${provider}`;
    if (!scaling || !pool || pool.metadata?.deletionTimestamp) {
      this.poolReplicas.delete(poolKey);
      this.d.stabilizer.forget(`pool:${poolKey}`);
      this.d.metrics.forgetPool(namespace, provider);
      return {};
    }
    this.d.fence.check();
    const apps = this.poolMembers(namespace, provider);
    const lags = await Promise.all(LANES.map((lane) => this.d.bus.lag(BusGroups.pool(provider, lane), apps.map((app) => BusTopics.pooled(app, provider, lane)))));
    const lag = lags.flat().reduce((n, l) => n + l.lag, 0);
    const desired = this.d.stabilizer.recommend(`pool:${poolKey}`, replicasForLag(lag, scaling));
    this.d.metrics.poolLag.set({ namespace, provider }, lag);
    this.d.metrics.poolReplicas.set({ namespace, provider }, desired);
    const interval = { requeueAfterMs: this.d.config.HERALD_AUTOSCALE_INTERVAL_SECONDS * 1000 };
    if (desired === pool.spec?.replicas) {
      this.poolReplicas.set(poolKey, desired);
      return interval;
    }
    await this.poolLocked(namespace, async () => {
      const current = this.poolOf(namespace, provider);
      if (!current || current.metadata?.deletionTimestamp) return;
      this.d.logger.info({ namespace, provider, from: current.spec?.replicas, to: desired, lag, apps: apps.length }, "scaling the pool on lag");
      this.poolReplicas.set(poolKey, desired);
      this.d.fence.check();
      this.pools.set(poolKey, await this.d.kube.apply(poolDeployment(namespace, provider, this.d.config, desired)));
    });
    return interval;
  }

  // The newer of the informer's copy and the one this replica applied last (which the informer
  // may not have seen yet, even when it created it).
  private poolOf(namespace: string, provider: PushAppProvider): V1Deployment | undefined {
    const poolKey = `${namespace}/${provider}`;
    let seen = this.d.deployments.get(names.pool(this.d.config.HERALD_INSTALLATION, provider), namespace);
    if (seen && this.poolsGone.get(poolKey) === seen.metadata?.uid) seen = undefined;
    const applied = this.pools.get(poolKey);
    if (!applied || !seen) return seen ?? applied;
    return (applied.metadata?.generation ?? 0) > (seen.metadata?.generation ?? 0) ? applied : seen;
  }

  // Jobs not yet consumed on these topics by their groups.
  private async queuedIn(queues: Array<{ topic: string; group: string }>): Promise<number> {
    const lags = await Promise.all(queues.map((q) => this.d.bus.lag(q.group, [q.topic])));
    return lags.flat().reduce((n, l) => n + l.lag, 0);
  }

  // Deletion: the external state owner references cannot reach (Kafka topics, the registry's
  // app), then the finalizer. The Secrets and Deployments go with the PushApp by garbage collection.
  // While a step fails the PushApp stays Terminating, and says so: Ready turns False with reason
  // DeletionBlocked and what is in the way (a Warning Event too); the work queue retries.
  private async finalize(object: PushAppObject): Promise<void> {
    const { namespace, name } = object.metadata;
    const finalizers = object.metadata.finalizers ?? [];
    if (!finalizers.includes(FINALIZER)) return;
    const spec = (object.spec ?? {}) as { dataDeletionPolicy?: string };
    const owner = pushAppOwner(namespace, name);
    let stage = "";
    try {
      this.d.fence.check();
      // The senders stop first, so no consumer of the app's topics is running when they are
      // deleted: each sender Deployment is deleted in the foreground (it stays until its pods are
      // gone) and the finalizer waits for it, up to SENDER_STOP_WAIT_MS from the deletion.
      stage = "the app's senders are stopping";
      const senders = this.d.deployments.list(namespace).filter((d) => d.metadata?.labels?.[LABELS.app] === name && d.metadata?.labels?.[LABELS.component] === "sender");
      const deletedFor = this.d.now().getTime() - new Date(object.metadata.deletionTimestamp ?? this.d.now()).getTime();
      if (senders.length > 0 && deletedFor < SENDER_STOP_WAIT_MS) {
        for (const d of senders) {
          if (d.metadata?.deletionTimestamp) continue;
          this.d.fence.check();
          await this.d.kube.delete({ apiVersion: "apps/v1", kind: "Deployment", metadata: { name: d.metadata!.name!, namespace } }, "Foreground");
        }
        throw new Error(`waiting for ${senders.length} sender Deployment(s) to stop: ${senders.map((d) => d.metadata?.name).join(", ")}`);
      }
      if (senders.length > 0) this.d.logger.warn({ namespace, app: name, senders: senders.map((d) => d.metadata?.name) }, "senders did not stop in time; deleting the app's topics anyway");
      stage = "cannot take the app out of the pool";
      await this.applyPool(namespace, name, new Map());
      // Another PushApp's (or the API's) app of the same id is left alone: topics and data alike.
      stage = "cannot look up the registry app";
      if ((await this.d.registry.ownedBy(name, owner)) !== "other") {
        stage = "cannot delete the app's Kafka topics";
        this.d.fence.check();
        await this.d.bus.deleteTopics([...topicsOf(name, ALL_PROVIDERS), ...ALL_PROVIDERS.flatMap((p) => pooledTopicsOf(name, p))]);
        stage = "cannot delete the registry app";
        this.d.fence.check();
        await this.d.registry.deleteApp(name, owner, spec.dataDeletionPolicy === "Delete");
      }
      stage = "cannot remove the finalizer";
      await this.d.kube.patchPushApp(namespace, name, { metadata: { finalizers: finalizers.filter((f) => f !== FINALIZER), resourceVersion: object.metadata.resourceVersion } });
    } catch (err) {
      if (!this.d.fence.valid) throw err;
      const conditions = new Conditions(object.status?.conditions, object.metadata.generation ?? 0, this.d.now());
      conditions.set(CONDITION.ready, "False", "DeletionBlocked", `deletion is blocked: ${stage}: ${describe(err)}; the finalizer ${FINALIZER} stays until it succeeds (retried with backoff)`);
      await this.finish(object, { ...object.status }, conditions, {}, CONDITION.ready, false, false).catch((statusErr: unknown) =>
        this.d.logger.warn({ err: statusErr, namespace, app: name }, "status write failed"),
      );
      throw new ReportedError("DeletionBlocked", err);
    }
    for (const provider of ALL_PROVIDERS) this.d.stabilizer.forget(`${pushAppKey(namespace, name)}/${provider}`);
    this.d.metrics.forgetApp(namespace, name);
    this.d.events.forget(object.metadata.uid);
    this.d.logger.info({ namespace, app: name, dataDeletionPolicy: spec.dataDeletionPolicy ?? "Retain" }, "PushApp deleted: topics removed, app unregistered");
  }

  // Key lifecycle. API keys are issued when the Secret is missing, the app was (re)created, or
  // spec.apiKeyRotation moved; the new Secret is written first, then every other key this
  // operator issued for the app is revoked (listed from the registry, so keys whose ids were lost
  // with a hand-deleted Secret are revoked too), and clients reading the Secret are never left
  // with only revoked keys. Keys an admin made through the API are left alone. The user token
  // secret changes only when spec.userTokenSecretRotation moves: a lost Secret gets the current
  // one back from the registry, so user tokens already issued stay valid. A crash between issuing
  // and writing leaves unused keys behind (never shown to anyone); the next pass revokes them.
  private async ensureApiKeys(object: PushAppObject, app: PushApp & { metadata: { uid: string } }, vapidPublicKey: string | undefined): Promise<ApiKeySecretData | { conflict: string } | { refused: string }> {
    const { name: id, namespace } = app.metadata;
    const ensured = await withSpan("registry ensure app", { "herald.app": id }, () => this.d.registry.ensureApp(app, vapidPublicKey));
    if ("conflict" in ensured || "refused" in ensured) return ensured;
    const { created } = ensured;
    const current = readApiKeySecret((await this.d.kube.readSecret(namespace!, names.apiKeys(id)))?.data);
    const rotation = app.spec.apiKeyRotation ?? 0;
    const tokenRotation = app.spec.userTokenSecretRotation ?? 0;
    // What the current secret was issued for: the Secret says, else the status (the Secret was
    // deleted), else it is taken to be this spec's.
    const issuedFor = current?.userTokenRotation ?? object.status?.userTokenSecretRotation ?? tokenRotation;
    const rotateToken = !created && issuedFor !== tokenRotation;
    const renewKeys = !current || created || current.rotation !== rotation;
    if (!renewKeys && !rotateToken && current.userTokenSecret && current.userTokenRotation === tokenRotation) return current;
    this.d.fence.check();
    let userTokenSecret: string;
    if (created && ensured.userTokenSecret) userTokenSecret = ensured.userTokenSecret;
    else if (rotateToken) userTokenSecret = await this.d.registry.rotateUserTokenSecret(id);
    else userTokenSecret = current?.userTokenSecret ?? (await this.d.registry.userTokenSecret(id));
    const keys = renewKeys
      ? {
          server: await this.d.registry.createKey(id, "server", `${OPERATOR_KEY_PREFIX}server key (rotation ${rotation})`),
          client: await this.d.registry.createKey(id, "client", `${OPERATOR_KEY_PREFIX}client key (rotation ${rotation})`),
        }
      : { server: { id: current!.serverKeyId, secret: current!.serverKey }, client: { id: current!.clientKeyId, secret: current!.clientKey } };
    const next: ApiKeySecretData = { serverKey: keys.server.secret, serverKeyId: keys.server.id, clientKey: keys.client.secret, clientKeyId: keys.client.id, userTokenSecret, rotation, userTokenRotation: tokenRotation };
    await this.d.kube.apply(apiKeySecret(app, next));
    if (renewKeys && !created) {
      const keep = new Set([keys.server.id, keys.client.id]);
      this.d.fence.check();
      const revoked: string[] = [];
      for (const key of await this.d.registry.listKeys(id)) {
        if (keep.has(key.id) || key.revoked || !key.name.startsWith(OPERATOR_KEY_PREFIX)) continue;
        await this.d.registry.revokeKey(id, key.id);
        revoked.push(key.id);
      }
      const why = current ? `spec.apiKeyRotation is ${rotation}` : `the Secret ${names.apiKeys(id)} was missing`;
      await this.d.events.record(object, "Normal", "ApiKeysRotated", `new server and client keys in Secret ${names.apiKeys(id)} (${why}); revoked ${revoked.length} previous key(s)`);
    }
    if (rotateToken) await this.d.events.record(object, "Normal", "UserTokenSecretRotated", `spec.userTokenSecretRotation is ${tokenRotation}: user tokens signed with the previous secret no longer verify`);
    this.d.logger.info({ app: id, rotation, tokenRotation, created, renewKeys, rotateToken }, current ? "API keys updated" : "API keys created");
    return next;
  }

  // Pending first attempts. Retries waiting out their backoff are left out: more replicas would
  // not send them sooner.
  private lagOf(app: string, provider: PushAppProvider): Promise<number> {
    // Both lanes: every replica consumes both, so the jobs waiting on either are what it scales on.
    return this.queuedIn(deliveryTopicsOf(app, provider));
  }

  // Writes the status when it differs from the object's, and an Event for every condition whose
  // status, reason or message changed (Ready=False only repeats a prerequisite's, so it gets none
  // unless it is the failing one). `failing` names the condition of a failure: its Warning is
  // recorded again even when unchanged, which bumps the count of the Event already written.
  private async finish(
    object: PushAppObject,
    status: PushAppStatus,
    conditions: Conditions,
    result: ReconcileResult,
    failing?: string,
    noProviders = false,
    summarize = true,
  ): Promise<ReconcileResult> {
    if (summarize) conditions.summarize(noProviders);
    const next: PushAppStatus = { ...status, conditions: conditions.list() };
    if (!isDeepStrictEqual(normalize(object.status), normalize(next))) {
      await this.d.kube.patchPushAppStatus(object.metadata.namespace, object.metadata.name, next as Record<string, unknown>);
    }
    const changed = conditions.changed();
    const events = changed.filter((c) => c.type !== CONDITION.ready || c.status === "True" || c.type === failing);
    const failed = failing ? conditions.get(failing) : undefined;
    if (failed && !events.some((c) => c.type === failing)) events.push(failed);
    for (const c of events) await this.d.events.record(object, c.status === "True" ? "Normal" : "Warning", c.reason, `${c.type}: ${c.message}`);
    const ready = next.conditions?.find((c: PushAppCondition) => c.type === CONDITION.ready);
    this.d.metrics.ready.set({ namespace: object.metadata.namespace, app: object.metadata.name }, ready?.status === "True" ? 1 : 0);
    return result;
  }
}

// The newer of two copies of one object (resourceVersions are etcd revisions: compared as numbers
// while both are, else the informer's copy wins).
function newer<T extends { metadata?: { resourceVersion?: string } }>(seen: T | undefined, applied: T | undefined): T | undefined {
  const a = applied?.metadata?.resourceVersion;
  const b = seen?.metadata?.resourceVersion;
  if (!applied || !seen || !a || !b || !/^\d+$/.test(a) || !/^\d+$/.test(b)) return seen ?? applied;
  return BigInt(a) > BigInt(b) ? applied : seen;
}

// The normalized credential files of one provider: what its senders mount.
const filesOf = (files: Record<string, Buffer>, provider: PushAppProvider) => Object.keys(files).filter((f) => providerFiles(f) === provider);

// The provider a normalized credential file belongs to.
function providerFiles(file: string): PushAppProvider | undefined {
  if (file.startsWith("apns-")) return "apns";
  if (file.startsWith("fcm-")) return "fcm";
  if (file.startsWith("hms-")) return "hms";
  if (file.startsWith("vapid-")) return "webpush";
  return undefined;
}

// The API server returns what was written, minus undefined fields: compare like with like.
function normalize(status: unknown): unknown {
  return JSON.parse(JSON.stringify(status ?? {}));
}

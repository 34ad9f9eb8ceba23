import { createHash } from "node:crypto";
import type { V1Deployment, V1Secret } from "@kubernetes/client-node";
import type { PushAppProvider } from "@herald/pushapp";
import { APP_SETTINGS, poolFileName, SETTINGS_FILE } from "@herald/sender";
import { FIELD_MANAGER } from "./kube.client.js";
import type { OperatorConfig } from "./operator.config.js";
import type { AutoscalingSpec } from "./sender.autoscaler.js";
import { LABELS, MANAGED_BY, names, SENDER_RESOURCE_DEFAULTS, senderPods, senderResourceAttributes } from "./sender.deployment.js";

// The pooled senders of a namespace: one Deployment per provider (and installation) serving
// every pooled app of the namespace (services/sender HERALD_POOL). The apps' credentials reach the
// pool through a fixed set of credential shards, Secrets the operator owns: an app's provider files
// and settings are keys <app>.<file> of one shard (chosen by a hash of its name), and the pool
// mounts every shard into one projected volume, which it rescans. An app that joins, leaves or
// rotates a credential so changes one Secret, which the kubelet brings into the running pods, and
// never the pool's pod template: no rollout, no restart of the other apps' deliveries.
//
// Each app writes its own keys with a field manager of its own (server-side apply), so two apps
// of one shard never overwrite each other, and an app that leaves removes exactly its keys by
// applying none. The shards' keys are also the pool's membership.

export const POOL_DIR = "/etc/herald/pool";
export const POOL_LABEL = "herald.dev/pool";
export const INSTALLATION_LABEL = "herald.dev/installation";
export const POOL_CREDENTIALS_COMPONENT = "pool-credentials";
export const POOL_SPEC_ANNOTATION = "herald.dev/pool-template-hash";
const VOLUME = "apps";

// What an app brings to a pool: the variables of APP_SETTINGS, as JSON (the rest of a sender's
// configuration is the pool's).
const SETTING_NAMES = new Set(Object.keys(APP_SETTINGS.shape));
export function poolSettings(env: Record<string, string>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(env).filter(([k]) => SETTING_NAMES.has(k))));
}

export const shardName = (installation: string, provider: PushAppProvider, shard: number) => `${names.pool(installation, provider)}-credentials-${shard}`;

// The shard of an app: stable across operator replicas and restarts.
export const shardOf = (app: string, shards: number) => createHash("sha256").update(app).digest().readUInt32BE(0) % shards;

// The field manager of one app's keys in the shards.
export const shardManager = (app: string) => `${FIELD_MANAGER}.pool.${app}`;

// An app's keys in a shard: its provider files and settings, base64 as in a Secret's data.
export function shardData(app: string, files: Record<string, Buffer>, settings: string): Record<string, string> {
  const data: Record<string, string> = {};
  for (const [file, content] of Object.entries(files)) data[poolFileName(app, file)] = content.toString("base64");
  data[poolFileName(app, SETTINGS_FILE)] = Buffer.from(settings).toString("base64");
  return data;
}

// The keys of `app` in a shard.
export function appKeysIn(secret: V1Secret | undefined, app: string): Record<string, string> {
  const prefix = poolFileName(app, "");
  return Object.fromEntries(Object.entries(secret?.data ?? {}).filter(([key]) => key.startsWith(prefix)));
}

// The apps with keys in a shard.
export const appsIn = (secret: V1Secret | undefined): string[] => [...new Set(Object.keys(secret?.data ?? {}).map((key) => key.slice(0, key.indexOf("."))))];

export const isShardOf = (secret: V1Secret, installation: string, provider: PushAppProvider): boolean => {
  const labels = secret.metadata?.labels ?? {};
  return labels[LABELS.component] === POOL_CREDENTIALS_COMPONENT && labels[POOL_LABEL] === installation && labels[LABELS.provider] === provider && labels[LABELS.managedBy] === MANAGED_BY;
};

// The apps a pool serves: those with keys in its shards, among `secrets`.
export const poolAppsIn = (secrets: Iterable<V1Secret | undefined>, installation: string, provider: PushAppProvider): Set<string> =>
  new Set([...secrets].flatMap((s) => (s && isShardOf(s, installation, provider) ? appsIn(s) : [])));

// One app's part of a shard (no data: the app has no keys there).
export function shardSecret(namespace: string, provider: PushAppProvider, shard: number, config: OperatorConfig, data?: Record<string, string>): V1Secret {
  const installation = config.HERALD_INSTALLATION;
  return {
    apiVersion: "v1",
    kind: "Secret",
    metadata: {
      name: shardName(installation, provider, shard),
      namespace,
      labels: { [POOL_LABEL]: installation, [LABELS.provider]: provider, [LABELS.component]: POOL_CREDENTIALS_COMPONENT, [LABELS.managedBy]: MANAGED_BY, "app.kubernetes.io/part-of": "herald" },
    },
    type: "Opaque",
    ...(data ? { data } : {}),
  };
}

// Lag-based scaling of the pools, when the installation allows more than HERALD_POOL_REPLICAS.
export function poolAutoscaling(config: OperatorConfig): AutoscalingSpec | undefined {
  const { HERALD_POOL_REPLICAS: min, HERALD_POOL_MAX_REPLICAS: max, HERALD_POOL_TARGET_LAG_PER_REPLICA: target } = config;
  return max > min ? { minReplicas: min, maxReplicas: max, targetLagPerReplica: target } : undefined;
}

export function poolDeployment(namespace: string, provider: PushAppProvider, config: OperatorConfig, replicas = config.HERALD_POOL_REPLICAS): V1Deployment {
  const installation = config.HERALD_INSTALLATION;
  const name = names.pool(installation, provider);
  const selector = { [POOL_LABEL]: installation, [LABELS.provider]: provider, [LABELS.component]: "sender" };
  // Optional: a shard no app has written yet does not keep the pods from starting.
  const sources = Array.from({ length: config.HERALD_POOL_CREDENTIAL_SHARDS }, (_, shard) => ({ secret: { name: shardName(installation, provider, shard), optional: true } }));
  const deployment = senderPods({
    metadata: { name, namespace, labels: { ...selector, [INSTALLATION_LABEL]: installation, [LABELS.managedBy]: MANAGED_BY, "app.kubernetes.io/part-of": "herald" } },
    selector,
    provider,
    replicas,
    serves: { HERALD_POOL: "true" },
    credentials: { HERALD_POOL_DIR: POOL_DIR },
    settings: {},
    resourceAttributes: senderResourceAttributes(undefined, provider, name, config.HERALD_VERSION),
    annotations: {},
    resources: { requests: { ...SENDER_RESOURCE_DEFAULTS.requests }, limits: { ...SENDER_RESOURCE_DEFAULTS.limits } },
    mount: { path: POOL_DIR, volume: { name: VOLUME, projected: { defaultMode: 0o400, sources } } },
    config,
  });
  // What the operator wrote, to compare with what it would write now: the API server fills in
  // defaults, so the live spec never equals the desired one.
  deployment.metadata!.annotations = { ...deployment.metadata!.annotations, [POOL_SPEC_ANNOTATION]: createHash("sha256").update(JSON.stringify(deployment.spec?.template)).digest("base64url").slice(0, 16) };
  return deployment;
}

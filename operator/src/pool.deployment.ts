import type { V1Deployment, V1VolumeProjection } from "@kubernetes/client-node";
import type { PushAppProvider } from "@herald/pushapp";
import { APP_SETTINGS, SETTINGS_FILE } from "@herald/sender";
import type { OperatorConfig } from "./operator.config.js";
import type { AutoscalingSpec } from "./sender.autoscaler.js";
import { LABELS, MANAGED_BY, names, SENDER_RESOURCE_DEFAULTS, senderPods, senderResourceAttributes } from "./sender.deployment.js";

// The pooled senders of a namespace: one Deployment per provider (and installation) serving
// every pooled app of the namespace (services/sender HERALD_POOL). Each app is one source of a
// projected volume: the app's credentials Secret, its provider's files and settings mapped under
// <pool dir>/<app>/. The volume's sources are also the pool's membership list: an app's
// reconcile adds or removes its own source and keeps the others'.

export const POOL_DIR = "/etc/herald/pool";
export const POOL_LABEL = "herald.dev/pool";
export const INSTALLATION_LABEL = "herald.dev/installation";
const VOLUME = "apps";
const CREDENTIALS_SUFFIX = "-herald-credentials";

// The key of an app's credentials Secret that holds its settings for one provider's pool. Not a
// provider file (see providerFiles), so a dedicated sender never mounts it.
export const poolSettingsKey = (provider: PushAppProvider) => `pool-${provider}.json`;

// What an app brings to a pool: the variables of APP_SETTINGS, as JSON (the rest of a sender's
// configuration is the pool's).
const SETTING_NAMES = new Set(Object.keys(APP_SETTINGS.shape));
export function poolSettings(env: Record<string, string>): string {
  return JSON.stringify(Object.fromEntries(Object.entries(env).filter(([k]) => SETTING_NAMES.has(k))));
}

// One app's source: its provider files and settings under <app>/. Optional: an app whose Secret
// is gone (a PushApp deleted without its finalizer) does not stop the pool's pods from starting.
export function poolSource(app: string, provider: PushAppProvider, files: string[]): V1VolumeProjection {
  const settings = poolSettingsKey(provider);
  return {
    secret: {
      name: names.credentials(app),
      optional: true,
      items: [...files.filter((f) => f !== settings).sort(), settings].map((key) => ({ key, path: `${app}/${key === settings ? SETTINGS_FILE : key}` })),
    },
  };
}

export const appOfSource = (source: V1VolumeProjection): string | undefined => {
  const name = source.secret?.name;
  return name?.endsWith(CREDENTIALS_SUFFIX) ? name.slice(0, -CREDENTIALS_SUFFIX.length) : undefined;
};

export const poolSourcesOf = (deployment: V1Deployment | undefined): V1VolumeProjection[] =>
  deployment?.spec?.template?.spec?.volumes?.find((v) => v.name === VOLUME)?.projected?.sources ?? [];

// Lag-based scaling of the pools, when the installation allows more than HERALD_POOL_REPLICAS.
export function poolAutoscaling(config: OperatorConfig): AutoscalingSpec | undefined {
  const { HERALD_POOL_REPLICAS: min, HERALD_POOL_MAX_REPLICAS: max, HERALD_POOL_TARGET_LAG_PER_REPLICA: target } = config;
  return max > min ? { minReplicas: min, maxReplicas: max, targetLagPerReplica: target } : undefined;
}

export function poolDeployment(namespace: string, provider: PushAppProvider, sources: V1VolumeProjection[], config: OperatorConfig, replicas = config.HERALD_POOL_REPLICAS): V1Deployment {
  const installation = config.HERALD_INSTALLATION;
  const name = names.pool(installation, provider);
  const selector = { [POOL_LABEL]: installation, [LABELS.provider]: provider, [LABELS.component]: "sender" };
  const sorted = [...sources].sort((a, b) => ((appOfSource(a) ?? "") < (appOfSource(b) ?? "") ? -1 : 1));
  return senderPods({
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
    mount: { path: POOL_DIR, volume: { name: VOLUME, projected: { defaultMode: 0o400, sources: sorted } } },
    config,
  });
}

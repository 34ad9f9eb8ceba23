import type { V1Deployment, V1EnvVar, V1ObjectMeta, V1OwnerReference, V1ResourceRequirements, V1Secret, V1Volume } from "@kubernetes/client-node";
import { PUSHAPP_API_VERSION, PUSHAPP_KIND, type PushApp, type PushAppProvider } from "@herald/pushapp";
import type { OperatorConfig } from "./operator.config.js";

// The objects the operator derives from a PushApp, as pure functions of it, so a reconcile is
// "compute, then apply" and tests can read the result without an API server.

export const MANAGED_BY = "herald-operator";
export const LABELS = {
  app: "herald.dev/app",
  provider: "herald.dev/provider",
  component: "app.kubernetes.io/component",
  managedBy: "app.kubernetes.io/managed-by",
} as const;
export const CREDENTIALS_HASH_ANNOTATION = "herald.dev/credentials-hash";
const CREDENTIALS_DIR = "/etc/herald/credentials";
const HEALTH_PORT = 8080;
export const SENDER_RESOURCE_DEFAULTS = { requests: { cpu: "100m", memory: "128Mi" }, limits: { memory: "512Mi" } } as const;

export const names = {
  credentials: (app: string) => `${app}-herald-credentials`,
  apiKeys: (app: string) => `${app}-herald-api-keys`,
  sender: (app: string, provider: PushAppProvider) => `${app}-herald-${provider}-sender`,
  // One per namespace, provider and installation: every pooled app of the namespace.
  pool: (installation: string, provider: PushAppProvider) => `${installation}-pool-${provider}`,
};

export function ownerReference(app: PushApp & { metadata: { uid?: string } }): V1OwnerReference {
  return { apiVersion: PUSHAPP_API_VERSION, kind: PUSHAPP_KIND, name: app.metadata.name, uid: app.metadata.uid!, controller: true, blockOwnerDeletion: true };
}

function meta(app: PushApp & { metadata: { uid?: string } }, name: string, component: string, extra: Record<string, string> = {}) {
  return {
    name,
    namespace: app.metadata.namespace,
    labels: { [LABELS.app]: app.metadata.name, [LABELS.component]: component, [LABELS.managedBy]: MANAGED_BY, "app.kubernetes.io/part-of": "herald", ...extra },
    ownerReferences: [ownerReference(app)],
  };
}

export function credentialsSecret(app: PushApp, files: Record<string, Buffer>): V1Secret {
  const data: Record<string, string> = {};
  for (const [name, content] of Object.entries(files)) data[name] = content.toString("base64");
  return { apiVersion: "v1", kind: "Secret", metadata: meta(app, names.credentials(app.metadata.name), "credentials"), type: "Opaque", data };
}

export interface ApiKeySecretData {
  serverKey: string;
  serverKeyId: string;
  clientKey: string;
  clientKeyId: string;
  userTokenSecret?: string;
  rotation: number;
  // The spec.userTokenSecretRotation the user token secret was issued for (absent in Secrets
  // written before it existed).
  userTokenRotation?: number;
}

export const API_KEY_FIELDS = {
  serverKey: "server-key",
  serverKeyId: "server-key-id",
  clientKey: "client-key",
  clientKeyId: "client-key-id",
  userTokenSecret: "user-token-secret",
  rotation: "rotation",
  userTokenRotation: "user-token-rotation",
} as const;

export function apiKeySecret(app: PushApp, keys: ApiKeySecretData): V1Secret {
  const stringData: Record<string, string> = {};
  for (const [field, key] of Object.entries(API_KEY_FIELDS)) {
    const value = keys[field as keyof ApiKeySecretData];
    if (value !== undefined) stringData[key] = String(value);
  }
  const data: Record<string, string> = {};
  for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(v).toString("base64");
  return { apiVersion: "v1", kind: "Secret", metadata: meta(app, names.apiKeys(app.metadata.name), "api-keys"), type: "Opaque", data };
}

export function readApiKeySecret(data: Record<string, string> | undefined): ApiKeySecretData | undefined {
  if (!data) return undefined;
  const get = (k: string) => (data[k] === undefined ? undefined : Buffer.from(data[k]!, "base64").toString("utf8"));
  const serverKey = get(API_KEY_FIELDS.serverKey);
  const clientKey = get(API_KEY_FIELDS.clientKey);
  if (!serverKey || !clientKey) return undefined;
  const userTokenSecret = get(API_KEY_FIELDS.userTokenSecret);
  return {
    serverKey,
    clientKey,
    serverKeyId: get(API_KEY_FIELDS.serverKeyId) ?? "",
    clientKeyId: get(API_KEY_FIELDS.clientKeyId) ?? "",
    ...(userTokenSecret ? { userTokenSecret } : {}),
    rotation: Number(get(API_KEY_FIELDS.rotation) ?? 0),
    ...(get(API_KEY_FIELDS.userTokenRotation) !== undefined ? { userTokenRotation: Number(get(API_KEY_FIELDS.userTokenRotation)) } : {}),
  };
}

export interface SenderSpec {
  provider: PushAppProvider;
  replicas: number;
  env: Record<string, string>;
  // The credential files of this provider: only these are mounted into its pods.
  files: string[];
  credentialsHash: string;
}

// The pod's name, namespace and node (downward API), first in the list so the
// OTEL_RESOURCE_ATTRIBUTES after them can refer to them as $(VAR).
export const SENDER_DOWNWARD_ENV: V1EnvVar[] = [
  { name: "HERALD_K8S_POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
  { name: "HERALD_K8S_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
  { name: "HERALD_K8S_NODE_NAME", valueFrom: { fieldRef: { fieldPath: "spec.nodeName" } } },
];

// What a sender's spans say about it (read by the resource detection of
// packages/platform/src/trace.tracing.ts): its pod, namespace, node and Deployment, the app and
// provider it sends for, and Herald's version. An OTEL_RESOURCE_ATTRIBUTES in the extra env wins.
// A pooled sender (app undefined) serves many apps: its spans name the app per delivery instead.
export function senderResourceAttributes(app: string | undefined, provider: string, deployment: string, version: string): string {
  return [
    "k8s.pod.name=$(HERALD_K8S_POD_NAME)",
    "k8s.namespace.name=$(HERALD_K8S_NAMESPACE)",
    "k8s.node.name=$(HERALD_K8S_NODE_NAME)",
    `k8s.deployment.name=${deployment}`,
    ...(app === undefined ? [] : [`herald.app=${app}`]),
    `herald.provider=${provider}`,
    ...(version ? [`service.version=${version}`] : []),
  ].join(",");
}

export function senderDeployment(app: PushApp, sender: SenderSpec, config: OperatorConfig): V1Deployment {
  const appId = app.metadata.name;
  const name = names.sender(appId, sender.provider);
  const resources = app.spec.senders?.resources;
  return senderPods({
    metadata: meta(app, name, "sender", { [LABELS.provider]: sender.provider }),
    selector: { [LABELS.app]: appId, [LABELS.provider]: sender.provider, [LABELS.component]: "sender" },
    provider: sender.provider,
    replicas: sender.replicas,
    serves: { HERALD_APP: appId },
    credentials: { HERALD_CREDENTIALS_DIR: CREDENTIALS_DIR },
    settings: sender.env,
    resourceAttributes: senderResourceAttributes(appId, sender.provider, name, config.HERALD_VERSION),
    annotations: { [CREDENTIALS_HASH_ANNOTATION]: sender.credentialsHash },
    resources: {
      requests: { cpu: resources?.requests?.cpu ?? SENDER_RESOURCE_DEFAULTS.requests.cpu, memory: resources?.requests?.memory ?? SENDER_RESOURCE_DEFAULTS.requests.memory },
      limits: { memory: resources?.limits?.memory ?? SENDER_RESOURCE_DEFAULTS.limits.memory, ...(resources?.limits?.cpu ? { cpu: resources.limits.cpu } : {}) },
    },
    mount: { path: CREDENTIALS_DIR, volume: { name: "credentials", secret: { secretName: names.credentials(appId), defaultMode: 0o400, items: sender.files.map((f) => ({ key: f, path: f })) } } },
    config,
  });
}

// What a dedicated and a pooled sender Deployment share: the image and command, Kafka, probes,
// metrics, security context, a drain-friendly rollout, and one read-only volume of credentials.
export function senderPods(o: {
  metadata: V1ObjectMeta;
  selector: Record<string, string>;
  provider: PushAppProvider;
  replicas: number;
  // Whom it serves (HERALD_APP, or HERALD_POOL), where its credentials are, the provider settings.
  serves: Record<string, string>;
  credentials: Record<string, string>;
  settings: Record<string, string>;
  resourceAttributes: string;
  annotations: Record<string, string>;
  resources: V1ResourceRequirements;
  mount: { path: string; volume: V1Volume };
  config: OperatorConfig;
}): V1Deployment {
  const { config, provider } = o;
  // In the order senders have always had it: a reordered env would roll every sender pod.
  const env: Record<string, string> = {
    ...o.serves,
    HERALD_PROVIDER: provider,
    HERALD_KAFKA_BROKERS: config.HERALD_KAFKA_BROKERS.join(","),
    HERALD_KAFKA_NAMESPACE: config.HERALD_KAFKA_NAMESPACE,
    HERALD_LOG_LEVEL: config.HERALD_LOG_LEVEL,
    ...o.credentials,
    HERALD_HEALTH_PORT: String(HEALTH_PORT),
    HERALD_TRACE_SAMPLE_RATIO: String(config.HERALD_TRACE_SAMPLE_RATIO),
    ...(config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ? { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT } : {}),
    ...o.settings,
    ...config.HERALD_SENDER_EXTRA_ENV["*"],
    ...config.HERALD_SENDER_EXTRA_ENV[provider],
  };
  const envList: V1EnvVar[] = [...SENDER_DOWNWARD_ENV, ...Object.entries({ OTEL_RESOURCE_ATTRIBUTES: o.resourceAttributes, ...env }).map(([n, value]) => ({ name: n, value }))];
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: o.metadata,
    spec: {
      replicas: o.replicas,
      selector: { matchLabels: o.selector },
      // A new pod must be ready before an old one goes: deliveries in flight finish on the old
      // pod (SIGTERM drains), and the consumer group hands its partitions over.
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: {
          labels: { ...o.selector, [LABELS.managedBy]: MANAGED_BY, "app.kubernetes.io/part-of": "herald" },
          annotations: { ...o.annotations, "prometheus.io/scrape": "true", "prometheus.io/port": String(HEALTH_PORT) },
        },
        spec: {
          ...(config.HERALD_SENDER_SERVICE_ACCOUNT ? { serviceAccountName: config.HERALD_SENDER_SERVICE_ACCOUNT } : {}),
          automountServiceAccountToken: false,
          // Long enough to drain a batch of provider requests after SIGTERM.
          terminationGracePeriodSeconds: 60,
          securityContext: { runAsNonRoot: true, runAsUser: 10001, runAsGroup: 10001, fsGroup: 10001, seccompProfile: { type: "RuntimeDefault" } },
          containers: [
            {
              name: "sender",
              image: config.HERALD_SENDER_IMAGE,
              imagePullPolicy: config.HERALD_SENDER_IMAGE_PULL_POLICY,
              command: ["node", "--import", "tsx", "services/sender/src/main.ts"],
              env: envList,
              ports: [{ name: "http", containerPort: HEALTH_PORT }],
              readinessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 10 },
              livenessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 20, failureThreshold: 3 },
              resources: o.resources,
              securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
              volumeMounts: [
                { name: o.mount.volume.name, mountPath: o.mount.path, readOnly: true },
                { name: "tmp", mountPath: "/tmp" },
              ],
            },
          ],
          volumes: [o.mount.volume, { name: "tmp", emptyDir: {} }],
        },
      },
    },
  };
}

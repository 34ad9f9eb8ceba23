// The operator: config → API server, registry and Kafka clients → informers → reconciler and
// controller → leader election → ops server. Every replica keeps its informers warm; only the
// Lease holder reconciles.
import { hostname } from "node:os";
import type { V1Deployment } from "@kubernetes/client-node";
import { AppsV1Api, CoreV1Api } from "@kubernetes/client-node";
import { createLogger, createMetricsRegistry, KafkaBus, Lifecycle, loadConfig, namespacedBus, startOpsServer, startTracing, tracingOptions } from "@herald/platform";
import { PUSHAPP_GROUP, PUSHAPP_PLURAL, PUSHAPP_VERSION } from "@herald/pushapp";
import { grpcAppRegistry } from "./app.registry.js";
import { EventRecorder } from "./event.recorder.js";
import { Informer, SecretCache } from "./informer.watch.js";
import { KubeClient, loadKubeConfig } from "./kube.client.js";
import { LeaderElection } from "./leader.election.js";
import { LeaderFence } from "./leader.fence.js";
import { operatorEnv } from "./operator.config.js";
import { OperatorMetrics } from "./operator.metrics.js";
import { PushAppController, referencedSecrets } from "./pushapp.controller.js";
import { poolAutoscaling } from "./pool.deployment.js";
import { PushAppReconciler, type PushAppObject } from "./pushapp.reconciler.js";
import { ScaleStabilizer } from "./sender.autoscaler.js";
import { LABELS, MANAGED_BY } from "./sender.deployment.js";

const config = loadConfig(operatorEnv);
const identity = config.HERALD_OPERATOR_IDENTITY ?? `${hostname()}-${process.pid}`;
const logger = createLogger({ service: "herald-operator", level: config.HERALD_LOG_LEVEL }).child({ identity });
const lifecycle = new Lifecycle(logger);
lifecycle.installSignalHandlers();

const tracing = startTracing(tracingOptions(config, "herald-operator"));
lifecycle.add("tracing", () => tracing.shutdown());

const kc = loadKubeConfig();
// Without leader election this replica is the only writer: its fence never closes.
const fence = new LeaderFence(!config.HERALD_LEADER_ELECTION);
const kube = new KubeClient(kc, fence);
const events = new EventRecorder({ kube, component: "herald-operator", instance: identity, logger });
const core = kc.makeApiClient(CoreV1Api);
const appsApi = kc.makeApiClient(AppsV1Api);
const ns = config.HERALD_WATCH_NAMESPACE;
const scope = ns ? `/namespaces/${ns}` : "";
const managed = `${LABELS.managedBy}=${MANAGED_BY}`;

// Only the Secrets the operator writes (by label) and the ones a PushApp references (by name):
// never every Secret of the cluster. A PushApp's change reaches the controller once the Secrets
// it references are cached.
const secrets = new SecretCache(kc, {
  namespace: ns,
  ownedSelector: managed,
  list: (namespace, selector) => (namespace ? core.listNamespacedSecret({ namespace, ...selector }) : core.listSecretForAllNamespaces(selector)),
  logger,
});
const pushApps = new Informer<PushAppObject>(kc, {
  name: "pushapps",
  path: `/apis/${PUSHAPP_GROUP}/${PUSHAPP_VERSION}${scope}/${PUSHAPP_PLURAL}`,
  list: () => kube.listPushApps(ns) as never,
  beforeChange: (o) => secrets.track(`${o.metadata.namespace}/${o.metadata.name}`, o.metadata.namespace, referencedSecrets(o.spec)),
  logger,
});
pushApps.onDelete((o) => void secrets.untrack(`${o.metadata.namespace}/${o.metadata.name}`));
const deployments = new Informer<V1Deployment>(kc, {
  name: "deployments",
  path: `/apis/apps/v1${scope}/deployments`,
  list: () => (ns ? appsApi.listNamespacedDeployment({ namespace: ns, labelSelector: managed }) : appsApi.listDeploymentForAllNamespaces({ labelSelector: managed })),
  labelSelector: managed,
  logger,
});

const bus = namespacedBus(new KafkaBus({ brokers: config.HERALD_KAFKA_BROKERS, clientId: "herald-operator", logger }), config.HERALD_KAFKA_NAMESPACE);
lifecycle.add("bus", () => bus.close());
const registry = grpcAppRegistry(config.HERALD_REGISTRY_ADDRESS, config.HERALD_ADMIN_KEY);
lifecycle.add("registry", async () => registry.close());

const metricsRegistry = createMetricsRegistry("herald-operator");
let controller: PushAppController | undefined;
const metrics = new OperatorMetrics(metricsRegistry, () => controller?.depth ?? 0);
const reconciler = new PushAppReconciler({
  kube,
  pushApps,
  secrets,
  deployments,
  registry,
  bus,
  config,
  stabilizer: new ScaleStabilizer(config.HERALD_SCALE_DOWN_STABILIZATION_SECONDS * 1000),
  metrics,
  events,
  fence,
  logger,
  now: () => new Date(),
});
controller = new PushAppController({ pushApps, secrets, deployments, reconciler, metrics, events, logger, concurrency: config.HERALD_RECONCILE_CONCURRENCY, resyncMs: config.HERALD_RESYNC_SECONDS * 1000, poolScaling: poolAutoscaling(config) !== undefined });
lifecycle.add("informers", async () => {
  await Promise.all([pushApps.stop(), secrets.stop(), deployments.stop()]);
});

const ops = await startOpsServer({
  port: config.HERALD_HEALTH_PORT,
  registry: metricsRegistry,
  health: () => ({ identity, leader: controller?.running ?? false, queueDepth: controller?.depth ?? 0 }),
  // Ready once the caches are filled: a replica that cannot list cannot lead.
  ready: () => ({ ready: pushApps.hasSynced && secrets.hasSynced && deployments.hasSynced }),
});
lifecycle.add("ops", () => ops.close());

await Promise.all([pushApps.start(), secrets.start(), deployments.start()]);
logger.info({ healthPort: ops.port, watchNamespace: ns || "(all)" }, "operator caches synced");

const startLeading = () => {
  metrics.leader.set(1);
  controller!.start();
};
if (!config.HERALD_LEADER_ELECTION) {
  startLeading();
} else {
  const election = new LeaderElection({
    kube,
    namespace: config.HERALD_OPERATOR_NAMESPACE,
    name: config.HERALD_LEASE_NAME,
    identity,
    leaseDurationMs: config.HERALD_LEASE_DURATION_SECONDS * 1000,
    renewMs: config.HERALD_LEASE_RENEW_SECONDS * 1000,
    fence,
    logger,
  });
  // Stoppers run in reverse order: the controller (added below) stops first, so the Lease is
  // released only once no reconcile is running.
  lifecycle.add("leader election", () => election.stop());
  // Another replica may already be reconciling: carrying on would mean two writers. Exit and
  // let Kubernetes restart this one as a candidate.
  election.run(startLeading, () => {
    metrics.leader.set(0);
    void lifecycle.shutdown("lost the leader lease").then(() => process.exit(1));
  });
}
lifecycle.add("controller", async () => {
  await controller?.stop();
});

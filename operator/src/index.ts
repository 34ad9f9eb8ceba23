// The operator's parts, for tests that run them against a real API server.
export { grpcAppRegistry, type AppRegistry } from "./app.registry.js";
export { validateCredentials, type CredentialsResult } from "./credentials.validator.js";
export { EventRecorder } from "./event.recorder.js";
export { Informer } from "./informer.watch.js";
export { FIELD_MANAGER, KubeClient, loadKubeConfig } from "./kube.client.js";
export { LeaderElection } from "./leader.election.js";
export { FencedError, LeaderFence } from "./leader.fence.js";
export { operatorEnv, type OperatorConfig } from "./operator.config.js";
export { OperatorMetrics } from "./operator.metrics.js";
export { CONDITION, Conditions } from "./pushapp.conditions.js";
export { PushAppController, referencedSecrets } from "./pushapp.controller.js";
export { FINALIZER, PushAppReconciler, pushAppKey, type PushAppObject } from "./pushapp.reconciler.js";
export { poolAppsIn } from "./pool.deployment.js";
export { replicasForLag, ScaleStabilizer } from "./sender.autoscaler.js";
export { API_KEY_FIELDS, LABELS, MANAGED_BY, names, readApiKeySecret, senderDeployment } from "./sender.deployment.js";
export { WorkQueue } from "./work.queue.js";

// Every Kubernetes API call the operator makes, as RBAC rules: the chart's RBAC
// (charts/herald/templates/rbac.yaml) grants exactly these, and test/integration/chart.render.test.ts
// holds the two together. A new call here needs its verb there, and the reverse.
//
//   pushapps             list, watch: the informer (main.ts); patch: finalizers (KubeClient.patchPushApp)
//   pushapps/status      patch: KubeClient.patchPushAppStatus
//   pushapps/finalizers  update: owner references with blockOwnerDeletion (OwnerReferencesPermissionEnforcement)
//   secrets              list, watch: the owned ones by label, referenced ones by name (SecretCache);
//                        get: KubeClient.readSecret; create, patch: server-side apply (KubeClient.apply).
//                        No update, no delete: owned Secrets go with their PushApp by garbage collection.
//   deployments          list, watch: the informer, by label; create, patch: server-side apply;
//                        delete: the sender of a disabled provider (KubeClient.delete)
//   events               create, patch
//   leases               get, update (the one named Lease), create: LeaderElection
export interface PermissionRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

// Rules of the ClusterRole (every namespace) or of the Role in operator.watchNamespace.
export const OPERATOR_RULES: PermissionRule[] = [
  { apiGroups: ["herald.dev"], resources: ["pushapps"], verbs: ["list", "watch", "patch"] },
  { apiGroups: ["herald.dev"], resources: ["pushapps/status"], verbs: ["patch"] },
  { apiGroups: ["herald.dev"], resources: ["pushapps/finalizers"], verbs: ["update"] },
  { apiGroups: [""], resources: ["secrets"], verbs: ["get", "list", "watch", "create", "patch"] },
  { apiGroups: ["apps"], resources: ["deployments"], verbs: ["list", "watch", "create", "patch", "delete"] },
  { apiGroups: [""], resources: ["events"], verbs: ["create", "patch"] },
];

// Rules of the leader-election Role in the operator's namespace: the Lease by name, and creating it
// (create cannot be limited by name).
export const LEASE_RULES = (leaseName: string) => [
  { apiGroups: ["coordination.k8s.io"], resources: ["leases"], resourceNames: [leaseName], verbs: ["get", "update"] },
  { apiGroups: ["coordination.k8s.io"], resources: ["leases"], verbs: ["create"] },
];

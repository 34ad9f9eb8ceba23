// Suites that need a real server read its address from the environment `npm test` sets up.
// A missing server is a failure with instructions, never a skip.
const HOW = "run `npm test` (it starts Kafka, FerretDB, Jaeger and a Kubernetes control plane through test/infra/up.sh), or run `bash test/infra/up.sh` and export the variables it prints";

// What test/infra/up.sh exports.
export type InfraEnvName =
  | "HERALD_KAFKA_BROKERS"
  | "HERALD_MONGO_URL"
  | "HERALD_OTLP_TRACES_URL"
  | "HERALD_JAEGER_QUERY_URL"
  // Kubernetes (test/infra/kube.sh): kubeconfig of user herald-admin (system:masters); kubeconfig
  // of system:serviceaccount:herald-system:herald-operator (only what RBAC grants that
  // ServiceAccount); the built kubectl and helm binaries.
  | "HERALD_KUBECONFIG"
  | "HERALD_KUBE_OPERATOR_KUBECONFIG"
  | "HERALD_KUBECTL"
  | "HERALD_HELM"
  // grpcurl built by test/infra/grpcurl.sh (a tool, not a server).
  | "HERALD_GRPCURL"
  // schemathesis's `st`, installed into a virtualenv by test/infra/schemathesis.sh.
  | "HERALD_SCHEMATHESIS"
  // promtool (Debian's prometheus package), installed by test/infra/promtool.sh.
  | "HERALD_PROMTOOL"
  // The python of the virtualenv test/infra/cent.sh installs the cent client into.
  | "HERALD_CENT_PYTHON";

export function requireEnv(name: InfraEnvName): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: ${HOW}`);
  return value;
}

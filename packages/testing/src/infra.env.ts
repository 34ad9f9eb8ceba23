// Suites that need a real server read its address from the environment `npm test` sets up.
// A missing server is a failure with instructions, never a skip.
const HOW = "run `npm test` (it starts Kafka, FerretDB and Jaeger through test/infra/up.sh), or run `bash test/infra/up.sh` and export the variables it prints";

export function requireEnv(name: "HERALD_KAFKA_BROKERS" | "HERALD_MONGO_URL" | "HERALD_OTLP_TRACES_URL" | "HERALD_JAEGER_QUERY_URL"): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: ${HOW}`);
  return value;
}

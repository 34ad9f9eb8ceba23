import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { loadConfig } from "@herald/platform";
import { operatorEnv } from "./operator.config.js";
import { senderDeployment } from "./sender.deployment.js";

const minimal = { HERALD_KAFKA_BROKERS: "kafka:9092", HERALD_ADMIN_KEY: "admin-key-0123456789abcdef", HERALD_REGISTRY_ADDRESS: "registry:50051" };
const app = { apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "shop", namespace: "team-a", uid: "uid-1" }, spec: {} };
const build = (env: Record<string, string> = {}) =>
  senderDeployment(app as never, { provider: "apns", replicas: 1, env: {}, files: [], credentialsHash: "h" }, loadConfig(operatorEnv, { ...minimal, ...env })).spec!.template!.spec!.containers[0]!.env!;

// A sender's spans name its pod, namespace, node, app, provider and version (resource
// attributes), so Jaeger tells one sender pod from another.
describe("sender Deployment environment", () => {
  it("passes the pod's name, namespace and node, and names app, provider and version in OTEL_RESOURCE_ATTRIBUTES", () => {
    const env = build({ HERALD_VERSION: "1.2.3" });
    const at = (name: string) => env.findIndex((e) => e.name === name);
    assert.deepEqual(env.find((e) => e.name === "HERALD_K8S_POD_NAME")?.valueFrom, { fieldRef: { fieldPath: "metadata.name" } });
    assert.deepEqual(env.find((e) => e.name === "HERALD_K8S_NAMESPACE")?.valueFrom, { fieldRef: { fieldPath: "metadata.namespace" } });
    assert.deepEqual(env.find((e) => e.name === "HERALD_K8S_NODE_NAME")?.valueFrom, { fieldRef: { fieldPath: "spec.nodeName" } });
    const attributes = env.find((e) => e.name === "OTEL_RESOURCE_ATTRIBUTES")?.value;
    assert.equal(
      attributes,
      "k8s.pod.name=$(HERALD_K8S_POD_NAME),k8s.namespace.name=$(HERALD_K8S_NAMESPACE),k8s.node.name=$(HERALD_K8S_NODE_NAME),k8s.deployment.name=shop-herald-apns-sender,herald.app=shop,herald.provider=apns,service.version=1.2.3",
    );
    // Kubernetes expands $(VAR) only for variables defined before the reference.
    for (const v of ["HERALD_K8S_POD_NAME", "HERALD_K8S_NAMESPACE", "HERALD_K8S_NODE_NAME"]) assert.ok(at(v) < at("OTEL_RESOURCE_ATTRIBUTES"), v);
    assert.equal(env.filter((e) => e.name === "OTEL_RESOURCE_ATTRIBUTES").length, 1);
  });

  it("leaves service.version out without HERALD_VERSION, and lets the extra env override the attributes", () => {
    assert.doesNotMatch(build().find((e) => e.name === "OTEL_RESOURCE_ATTRIBUTES")!.value!, /service\.version/);
    const extra = build({ HERALD_SENDER_EXTRA_ENV: JSON.stringify({ "*": { OTEL_RESOURCE_ATTRIBUTES: "deployment.environment=staging" } }) });
    assert.deepEqual(extra.filter((e) => e.name === "OTEL_RESOURCE_ATTRIBUTES").map((e) => e.value), ["deployment.environment=staging"]);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parsePushApp, type PushApp } from "@herald/pushapp";
import { resolveSenderMode } from "./sender.mode.js";

const app = (senders?: Record<string, unknown>): PushApp => {
  const parsed = parsePushApp({ apiVersion: "herald.dev/v1alpha1", kind: "PushApp", metadata: { name: "news" }, spec: senders ? { senders } : {} });
  if (!("app" in parsed)) throw new Error(parsed.problems.join("; "));
  return parsed.app;
};

describe("sender mode of a PushApp", () => {
  it("is the installation's default for a new app that names none", () => {
    assert.deepEqual(resolveSenderMode(app(), undefined, "pooled"), { mode: "pooled", why: "default" });
    assert.deepEqual(resolveSenderMode(app(), {}, "dedicated"), { mode: "dedicated", why: "default" });
  });

  it("is the spec's when it names one, whatever the app ran in before", () => {
    assert.equal(resolveSenderMode(app({ mode: "dedicated" }), { sendersMode: "pooled" }, "pooled").mode, "dedicated");
    assert.equal(resolveSenderMode(app({ mode: "pooled", replicas: 2 }), { sendersMode: "dedicated" }, "dedicated").mode, "pooled");
  });

  it("is dedicated when the spec sets what only dedicated senders have", () => {
    assert.deepEqual(resolveSenderMode(app({ replicas: 3 }), undefined, "pooled"), { mode: "dedicated", why: "scaling" });
    assert.equal(resolveSenderMode(app({ autoscaling: { minReplicas: 0, maxReplicas: 2, targetLagPerReplica: 100 } }), undefined, "pooled").mode, "dedicated");
    assert.equal(resolveSenderMode(app({ resources: { limits: { memory: "256Mi" } } }), { sendersMode: "pooled" }, "pooled").mode, "dedicated");
  });

  it("keeps the mode an app runs in when the installation's default changes", () => {
    assert.deepEqual(resolveSenderMode(app(), { sendersMode: "dedicated" }, "pooled"), { mode: "dedicated", why: "kept" });
    assert.deepEqual(resolveSenderMode(app(), { sendersMode: "pooled" }, "dedicated"), { mode: "pooled", why: "kept" });
  });

  it("keeps an app reconciled before pooled became the default on its own senders", () => {
    // What an earlier operator left: a credentials Secret, no sendersMode.
    assert.deepEqual(resolveSenderMode(app(), { credentialsSecretName: "news-herald-credentials" }, "pooled"), { mode: "dedicated", why: "legacy" });
    // An app still failing validation had no Secret written: it is new.
    assert.equal(resolveSenderMode(app(), { observedGeneration: 3, conditions: [] }, "pooled").mode, "pooled");
  });
});

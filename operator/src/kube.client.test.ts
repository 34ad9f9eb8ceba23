import assert from "node:assert/strict";
import https from "node:https";
import { describe, it } from "node:test";
import { CoreV1Api, RequestContext, HttpMethod } from "@kubernetes/client-node";
import { KeepAliveKubeConfig } from "./kube.client.js";

const kubeconfig = (server: string) =>
  JSON.stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "c", cluster: { server, "insecure-skip-tls-verify": false } }],
    users: [{ name: "u", user: { token: "t0ken" } }],
    contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
    "current-context": "x",
  });

describe("KeepAliveKubeConfig", () => {
  it("gives every request and watch one keep-alive agent instead of a new connection each", async () => {
    const kc = new KeepAliveKubeConfig();
    kc.loadFromString(kubeconfig("https://127.0.0.1:6443"));
    const first = (await kc.applyToFetchOptions({})).agent;
    const second = (await kc.applyToFetchOptions({})).agent;
    assert.ok(first instanceof https.Agent);
    assert.equal(first, second, "watches share the agent");
    assert.equal((first as https.Agent & { keepAlive?: boolean }).keepAlive, true);
    // The generated API clients authenticate each request through applySecurityAuthentication.
    const context = new RequestContext("https://127.0.0.1:6443/api/v1/namespaces", HttpMethod.GET);
    await kc.applySecurityAuthentication(context);
    assert.equal(context.getAgent(), first, "API calls share it too");
    assert.equal(context.getHeaders()["Authorization"], "Bearer t0ken");
    assert.ok(kc.makeApiClient(CoreV1Api));
  });
});

import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { DEFAULT_DENIED_NETWORKS, DeniedAddressError, NetworkPolicy } from "./network.policy.js";

describe("network policy", () => {
  it("denies the default networks and lets public and private addresses through", () => {
    const policy = new NetworkPolicy(DEFAULT_DENIED_NETWORKS);
    for (const a of ["169.254.169.254", "0.0.0.0", "100.100.100.200", "::", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"]) assert.ok(policy.denies(a), a);
    for (const a of ["8.8.8.8", "10.0.0.1", "192.168.1.1", "127.0.0.1", "2001:db8::1", "fd00:ec2::253", "100.100.100.201"]) assert.ok(!policy.denies(a), a);
    assert.ok(!policy.denies("example.com"), "names are checked once resolved");
  });

  it("refuses a malformed network, naming it", () => {
    for (const bad of ["10.0.0.0", "10.0.0.0/33", "fc00::/129", "nonsense/8", "10.0.0.0/8/1", "10.0.0.0/x"]) {
      assert.throws(() => new NetworkPolicy([bad]), (err: Error) => err.message.includes(`"${bad}"`), bad);
    }
    assert.equal(new NetworkPolicy([]).denies("169.254.169.254"), false, "an empty list allows everything");
  });

  it("refuses IP literals in a URL's host, with or without brackets", () => {
    const policy = new NetworkPolicy(["127.0.0.0/8", "::1/128"]);
    assert.throws(() => policy.checkHost("127.0.0.1"), DeniedAddressError);
    assert.throws(() => policy.checkHost(new URL("http://[::1]:8080/").hostname), DeniedAddressError);
    policy.checkHost("10.0.0.1");
    policy.checkHost("localhost");
  });

  it("refuses a name whose resolved address is denied when http connects, and allows it otherwise", async () => {
    const server = http.createServer((_req, res) => res.end("ok"));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const { port } = server.address() as AddressInfo;
    const get = (policy: NetworkPolicy) =>
      new Promise<number>((resolve, reject) => {
        const req = http.get({ host: "localhost", port, path: "/", family: 4, lookup: policy.lookup }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
      });
    try {
      await assert.rejects(get(new NetworkPolicy(["127.0.0.0/8"])), (err: Error) => err instanceof DeniedAddressError && err.message === "localhost resolves to 127.0.0.1, which is in a denied network");
      assert.equal(await get(new NetworkPolicy(["169.254.0.0/16"])), 200);
    } finally {
      server.close();
    }
  });
});

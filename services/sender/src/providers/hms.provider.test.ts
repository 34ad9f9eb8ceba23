import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { hmsScenarioToken, randomHmsToken, startFakeHms, testTls, type FakeHms } from "@herald/testing";
import { HmsProvider, type HmsProviderConfig } from "./hms.provider.js";
import { sendRequest, targetOf, utf8 } from "./provider.testkit.js";

const tls = testTls();
const MESSAGE = '{"android":{"notification":{"title":"Goal","body":"2-1","click_action":{"type":3}}},"data":"{\\"match\\":\\"42\\"}"}';

describe("HmsProvider against the fake Push Kit over TLS", () => {
  let fake: FakeHms;
  let clock = Date.now();
  const providers: HmsProvider[] = [];
  const provider = (config: Partial<HmsProviderConfig> = {}) => {
    const p = new HmsProvider({ ...fake.app(), pushUrl: fake.pushUrl, tokenUrl: fake.tokenUrl, ca: tls.ca, now: () => new Date(clock), ...config });
    providers.push(p);
    return p;
  };
  const kinds = (results: Array<{ outcome: { kind: string } }>) => results.map((r) => r.outcome.kind);

  before(async () => {
    fake = await startFakeHms({ now: () => clock, retryAfter: "9" });
  });
  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await fake.close();
  });
  beforeEach(() => fake.reset());

  it("sends up to 1000 tokens per request with the job's message byte-exact", async () => {
    const p = provider();
    const tokens = Array.from({ length: 2500 }, randomHmsToken);
    const results = await p.send(sendRequest(tokens.map((t) => targetOf(t)), { payload: utf8(MESSAGE) }));
    assert.equal(results.length, 2500);
    assert.ok(results.every((r) => r.outcome.kind === "sent"));
    assert.deepEqual(fake.records.map((r) => r.tokens.length).sort(), [1000, 1000, 500]);
    const first = fake.records.find((r) => r.tokens[0] === tokens[0])!;
    assert.equal(first.rawBody.toString(), `{"validate_only":false,"message":{"token":${JSON.stringify(tokens.slice(0, 1000))},${MESSAGE.slice(1)}}`);
    assert.equal(p.tokenFetches, 1);
  });

  it("deletes only the illegal tokens of a partial success, and all of them when all are illegal", async () => {
    const p = provider();
    const good = [randomHmsToken(), randomHmsToken()];
    const bad = hmsScenarioToken("illegal");
    const results = await p.send(sendRequest([...good, bad].map((t) => targetOf(t))));
    assert.deepEqual(kinds(results), ["sent", "sent", "invalid_token"]);
    assert.deepEqual(results[2]?.outcome, { kind: "invalid_token", reason: "hms:illegal_token" });
    const allBad = await p.send(sendRequest([targetOf(hmsScenarioToken("illegal")), targetOf(hmsScenarioToken("illegal"))]));
    assert.deepEqual(allBad.map((r) => r.outcome), [{ kind: "invalid_token", reason: "hms:80300007" }, { kind: "invalid_token", reason: "hms:80300007" }]);
  });

  it("retries flow control honouring Retry-After, and internal errors", async () => {
    const p = provider();
    const [flow] = await p.send(sendRequest([targetOf(hmsScenarioToken("flow-control"))]));
    assert.deepEqual(flow?.outcome, { kind: "retry", reason: "hms:503", retryAfterMs: 9000 });
    const [internal] = await p.send(sendRequest([targetOf(hmsScenarioToken("internal"))]));
    assert.deepEqual(internal?.outcome, { kind: "retry", reason: "hms:81000001" });
    const flaky = hmsScenarioToken("flaky-1");
    assert.equal((await p.send(sendRequest([targetOf(flaky)])))[0]?.outcome.kind, "retry");
    assert.equal((await p.send(sendRequest([targetOf(flaky)])))[0]?.outcome.kind, "sent");
  });

  it("renews an expired access token; refused credentials never delete devices", async () => {
    const p = provider();
    await p.send(sendRequest([targetOf(randomHmsToken())]));
    clock += 10 * 60_000;
    fake.expireTokens();
    assert.deepEqual((await p.send(sendRequest([targetOf(randomHmsToken())])))[0]?.outcome, { kind: "retry", reason: "hms:80200003" });
    assert.equal((await p.send(sendRequest([targetOf(randomHmsToken())])))[0]?.outcome.kind, "sent");
    assert.equal(p.tokenFetches, 2);
    fake.revokeTokens();
    assert.deepEqual((await p.send(sendRequest([targetOf(randomHmsToken())])))[0]?.outcome, { kind: "credentials", reason: "hms:80200001" });
    const wrongSecret = provider({ clientSecret: "not-the-secret" });
    assert.deepEqual((await wrongSecret.send(sendRequest([targetOf(randomHmsToken())])))[0]?.outcome, { kind: "credentials", reason: "hms:oauth:invalid_client" });
  });

  it("addresses native topics and conditions, and sends nothing after expiry", async () => {
    const p = provider();
    assert.equal((await p.send(sendRequest([], { nativeTopic: "news" })))[0]?.outcome.kind, "sent");
    assert.equal(fake.records.at(-1)?.topic, "news");
    const [late] = await p.send(sendRequest([targetOf(randomHmsToken())], { expireAt: new Date(clock - 1) }));
    assert.deepEqual(late?.outcome, { kind: "failed", reason: "expired" });
  });
});

import assert from "node:assert/strict";
import { sign } from "node:crypto";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { startFakeFcm, type FakeFcm } from "./fcm.fake.js";
import { testTls } from "./tls.fixture.js";

// The fake's own rules, exercised with a bare HTTP/2 client: what it refuses is what Google refuses.
describe("fake FCM", () => {
  let fake: FakeFcm;
  let session: http2.ClientHttp2Session;
  const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const post = (path: string, body: string, headers: Record<string, string>) =>
    new Promise<{ status: number; json: Record<string, unknown> }>((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": path, ...headers });
      let data = "";
      let status = 0;
      stream.on("response", (h) => (status = Number(h[":status"])));
      stream.on("data", (c: Buffer) => (data += c));
      stream.on("end", () => resolve({ status, json: JSON.parse(data) as Record<string, unknown> }));
      stream.on("error", reject);
      stream.end(body);
    });
  const assertion = (account: { client_email: string; private_key: string; token_uri: string }, claims: Record<string, unknown> = {}) => {
    const now = Math.floor(Date.now() / 1000);
    const unsigned = `${b64({ alg: "RS256", typ: "JWT" })}.${b64({ iss: account.client_email, scope: "https://www.googleapis.com/auth/firebase.messaging", aud: account.token_uri, iat: now, exp: now + 3600, ...claims })}`;
    return `${unsigned}.${sign("RSA-SHA256", Buffer.from(unsigned), account.private_key).toString("base64url")}`;
  };
  const token = (a: string) => post("/token", new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion: a }).toString(), { "content-type": "application/x-www-form-urlencoded" });

  before(async () => {
    fake = await startFakeFcm();
    session = http2.connect(fake.url, { ca: testTls().ca });
  });
  after(async () => {
    session.close();
    await fake.close();
  });

  it("issues access tokens only for valid, short-lived, correctly addressed assertions", async () => {
    const account = JSON.parse(fake.serviceAccount("p1").json) as { client_email: string; private_key: string; token_uri: string };
    const ok = await token(assertion(account));
    assert.equal(ok.status, 200);
    assert.match(String(ok.json.access_token), /^ya29\./);
    for (const [claims, why] of [
      [{ aud: "https://oauth2.googleapis.com/token" }, "audience"],
      [{ exp: Math.floor(Date.now() / 1000) + 7200 }, "short-lived"],
      [{ scope: "https://www.googleapis.com/auth/cloud-platform.read-only" }, "scope"],
    ] as const) {
      const refused = await token(assertion(account, claims));
      assert.equal(refused.status, 400, why);
      assert.match(String(refused.json.error), /invalid_(grant|scope)/, why);
    }
    // A character well inside the signature (the last one may only carry padding bits).
    const good = assertion(account);
    const i = good.length - 10;
    const tampered = good.slice(0, i) + (good[i] === "A" ? "B" : "A") + good.slice(i + 1);
    assert.equal((await token(tampered)).json.error, "invalid_grant");
  });

  it("checks the bearer, the project and the message like FCM, with FCM's error bodies", async () => {
    const account = JSON.parse(fake.serviceAccount("p2").json) as { client_email: string; private_key: string; token_uri: string };
    const bearer = { authorization: `Bearer ${(await token(assertion(account))).json.access_token}`, "content-type": "application/json" };
    const send = (body: object, path = "/v1/projects/p2/messages:send", headers: Record<string, string> = bearer) => post(path, JSON.stringify(body), headers);
    assert.equal((await send({ message: { token: "t" } }, undefined, { "content-type": "application/json" })).status, 401);
    assert.equal((await send({ message: { token: "t" } }, "/v1/projects/other/messages:send")).status, 403);
    const two = await send({ message: { token: "t", topic: "news" } });
    assert.equal(two.status, 400);
    assert.equal((two.json.error as { status: string }).status, "INVALID_ARGUMENT");
    assert.equal((await send({ message: { token: "t", data: { n: 1 } } })).status, 400, "data values must be strings");
    assert.equal((await send({ message: { token: "t", data: { big: "x".repeat(5000) } } })).status, 400, "over 4096 bytes");
    const sent = await send({ message: { token: "t", data: { k: "v" } } });
    assert.equal(sent.status, 200);
    assert.match(String(sent.json.name), /^projects\/p2\/messages\//);
  });
});

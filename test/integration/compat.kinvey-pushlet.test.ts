import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { startEmbedded, startFakeProviders, type EmbeddedApp, type EmbeddedServer, type FakeProviders } from "@herald/cli";
import { createClient, createLogger } from "@herald/platform";
import { Provider, registry } from "@herald/proto";
import { scenarioToken } from "@herald/testing";
import { apnsToken, fcmToken, nowSeconds, signUserToken } from "./fixtures.js";

const samples = fileURLToPath(new URL("../../deploy/samples", import.meta.url));

// Kinvey's device registration and Pushlet's stateless sending and feedback, on the gateway in
// front of the embedded server, delivering through the fake providers.
describe("Kinvey and Pushlet compatibility", () => {
  let server: EmbeddedServer;
  let fakes: FakeProviders;
  let demo: EmbeddedApp;
  let devices: ReturnType<typeof createClient<typeof registry.RegistryServiceService>>;

  before(async () => {
    fakes = await startFakeProviders(createLogger({ service: "t", level: "silent" }), { record: true });
    server = await startEmbedded({ port: 0, httpPort: 0, appsDir: samples, devFile: false, providerFor: fakes.providerFor, tokenRules: fakes.tokenRules, logger: createLogger({ service: "t", level: "silent" }) });
    demo = server.apps.find((a) => a.id === "demo")!;
    devices = createClient(registry.RegistryServiceService, registry, server.address, { apiKey: demo.serverKey });
  });
  after(async () => {
    devices?.close();
    await server?.stop();
    await fakes?.close();
  });

  const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
  const post = async (path: string, body: string | Record<string, unknown>, authorization?: string) => {
    const form = typeof body === "string";
    const res = await fetch(`${server.httpUrl}${path}`, {
      method: "POST",
      headers: { "content-type": form ? "application/x-www-form-urlencoded" : "application/json", ...(authorization ? { authorization } : {}) },
      body: form ? body : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, any>) : undefined };
  };
  const deviceOf = async (provider: Provider, token: string) => (await devices.listDevices({ filter: { providerTokens: [{ provider, token }] } })).devices[0];
  const userToken = (user: string) => signUserToken(demo.userTokenSecret, { sub: user, iss: "herald:demo", exp: nowSeconds() + 600 });

  describe("Kinvey", () => {
    it("registers with master credentials for the user in the body, and with user credentials for the token's user", async () => {
      const ios = apnsToken();
      const master = basic("demo", demo.userTokenSecret);
      assert.deepEqual(await post("/push/demo/register-device", { platform: "ios", deviceId: ios, userId: "5058c666474f050906000001" }, master), { status: 204, json: undefined });
      assert.equal((await deviceOf(Provider.PROVIDER_APNS, ios))?.user, "5058c666474f050906000001");

      const android = fcmToken();
      assert.equal((await post("/push/demo/register-device", { platform: "android", deviceId: android }, `Kinvey ${userToken("grace")}`)).status, 204);
      assert.equal((await deviceOf(Provider.PROVIDER_FCM, android))?.user, "grace");
      // A SERVER key is master credentials too.
      assert.equal((await post("/push/demo/register-device", { platform: "android", deviceId: fcmToken(), userId: "x" }, basic("demo", demo.serverKey))).status, 204);
    });

    it("unregisters only the user's own device", async () => {
      const token = fcmToken();
      await post("/push/demo/register-device", { platform: "android", deviceId: token }, `Kinvey ${userToken("ada")}`);
      const stranger = await post("/push/demo/unregister-device", { platform: "android", deviceId: token }, `Kinvey ${userToken("mallory")}`);
      assert.equal(stranger.status, 404);
      assert.equal(stranger.json!.error, "EntityNotFound");
      assert.ok(await deviceOf(Provider.PROVIDER_FCM, token), "still registered");
      assert.equal((await post("/push/demo/unregister-device", { platform: "android", deviceId: token }, `Kinvey ${userToken("ada")}`)).status, 204);
      assert.equal(await deviceOf(Provider.PROVIDER_FCM, token), undefined);
    });

    it("refuses bad credentials and bad bodies with Kinvey's error names, registering nothing", async () => {
      const token = apnsToken();
      const wrong = await post("/push/demo/register-device", { platform: "ios", deviceId: token, userId: "u" }, basic("demo", "not-the-secret"));
      assert.equal(wrong.status, 401);
      assert.equal(wrong.json!.error, "InvalidCredentials");
      assert.equal((await post("/push/demo/register-device", { platform: "ios", deviceId: token, userId: "u" }, basic("news", demo.userTokenSecret))).status, 401, "credentials of another app");
      assert.equal((await post("/push/demo/register-device", { platform: "ios", deviceId: token }, `Kinvey ${signUserToken("forged", { sub: "u", iss: "herald:demo", exp: nowSeconds() + 60 })}`)).status, 401);
      assert.equal((await post("/push/demo/register-device", { platform: "ios", deviceId: token })).status, 401);
      assert.equal((await post("/push/demo/register-device", { platform: "ios", deviceId: token }, basic("demo", demo.userTokenSecret))).json!.field, "userId");
      assert.equal((await post("/push/demo/register-device", { platform: "ios", deviceId: token, userId: "u" }, `Kinvey ${userToken("u")}`)).status, 400, "userId with user credentials");
      assert.equal((await post("/push/demo/register-device", { platform: "windows", deviceId: token, userId: "u" }, basic("demo", demo.userTokenSecret))).json!.field, "platform");
      const badToken = await post("/push/demo/register-device", { platform: "ios", deviceId: "not-hex", userId: "u" }, basic("demo", demo.userTokenSecret));
      assert.equal(badToken.status, 400);
      // The registry's refusal, in Kinvey's names: Kinvey's error and the request's own field.
      assert.equal(badToken.json!.error, "BadRequest");
      assert.equal(badToken.json!.field, "deviceId");
      assert.equal(badToken.json!.debug, "field: deviceId");
      assert.equal(await deviceOf(Provider.PROVIDER_APNS, token), undefined);
    });

    it("answers in Kinvey's error body and names only, never Herald's", async () => {
      const master = basic("demo", demo.userTokenSecret);
      // Unknown app, or an app key no app can have (non-ASCII cannot reach gRPC metadata).
      for (const appKey of ["no-such-app", "d%C3%A9mo", "de%0Amo"]) {
        assert.deepEqual(await post(`/push/${appKey}/register-device`, { platform: "ios", deviceId: apnsToken(), userId: "u" }, master), { status: 404, json: { error: "AppNotFound", description: "This app backend not found", debug: "" } }, appKey);
      }
      const notJson = await post("/push/demo/register-device", "", master);
      assert.equal(notJson.status, 400, "an empty form is a body without the fields");
      const res = await fetch(`${server.httpUrl}/push/demo/register-device`, { method: "POST", headers: { "content-type": "application/json", authorization: master }, body: "{nope" });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, "JSONParseError");
      // Credentials first: a wrong secret with a broken body is still a credentials refusal.
      assert.equal((await post("/push/demo/register-device", { platform: "windows" }, basic("demo", "wrong"))).json!.error, "InvalidCredentials");
      // A CLIENT key is not master credentials; an unknown key is not credentials at all.
      assert.deepEqual((({ status, json }) => [status, json!.error])(await post("/push/demo/register-device", { platform: "ios", deviceId: apnsToken(), userId: "u" }, basic("demo", demo.clientKey))), [401, "InsufficientCredentials"]);
      assert.deepEqual((({ status, json }) => [status, json!.error])(await post("/push/demo/register-device", { platform: "ios", deviceId: apnsToken(), userId: "u" }, basic("demo", "hk_s_demo_0000000000000000"))), [401, "InvalidCredentials"]);
      assert.deepEqual((({ status, json }) => [status, json!.error])(await post("/push/demo/register-device", { platform: "ios", deviceId: apnsToken(), userId: "u" }, basic("demo", "hk_s_d\u00e9mo"))), [401, "InvalidCredentials"]);
    });
  });

  describe("Pushlet", () => {
    const auth = () => basic("demo", demo.userTokenSecret);

    it("sends to a raw APNs token from form fields, registering nothing", async () => {
      const token = apnsToken();
      const form = new URLSearchParams({ type: "apns", application_id: "demo", device_token: token, alert: "YOUR TEXT MESSAGE", badge: "3", sound: "ping.aiff", data: JSON.stringify({ order: 42 }) }).toString();
      const sent = await post("/send_notification", form, auth());
      assert.equal(sent.status, 200);
      assert.equal(sent.json!.response, "ok");
      const [apple] = fakes.apns.delivered(token);
      assert.deepEqual(JSON.parse(apple!.rawBody.toString()), { order: 42, aps: { alert: "YOUR TEXT MESSAGE", badge: 3, sound: "ping.aiff" } });
      assert.equal(await deviceOf(Provider.PROVIDER_APNS, token), undefined, "stateless: no device");
    });

    it("sends GCM-style data to a raw FCM token and answers like GCM", async () => {
      const token = fcmToken();
      const sent = await post("/send_notification", { type: "gcm", application_id: "demo", device_token: token, data: { text: "hello", n: 1 } }, auth());
      assert.equal(sent.status, 200);
      assert.equal(sent.json!.success, 1);
      assert.equal(sent.json!.failure, 0);
      assert.equal(sent.json!.results[0].message_id, sent.json!.multicast_id);
      const [google] = fakes.fcm.delivered(token);
      assert.deepEqual(JSON.parse(google!.rawBody.toString()).message.data, { text: "hello", n: "1" });
    });

    it("reports a dead token in the application feedback with its timestamp", async () => {
      const dead = scenarioToken("unregistered");
      const sent = await post("/send_notification", { type: "apns", application_id: "demo", device_token: dead, alert: "hi" }, auth());
      assert.equal(sent.status, 400);
      assert.deepEqual(sent.json, { error: "invalid_device_token", message: "the provider refused the device token (apns:Unregistered)" });
      const feedback = await post("/application_feedback", { application_id: "demo" }, auth());
      assert.equal(feedback.status, 200);
      const entry = (feedback.json!.response as Array<{ device_token: string; timestamp: string; type: string; reason: string }>).find((e) => e.device_token === dead);
      assert.ok(entry, JSON.stringify(feedback.json));
      assert.match(entry.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.equal(entry.type, "apns");
      assert.equal(entry.reason, "apns:Unregistered");
      // Filtered by time: nothing after the future.
      assert.deepEqual((await post("/application_feedback", { application_id: "demo", since: "2999-01-01T00:00:00Z" }, auth())).json, { response: [] });
    });

    it("refuses what Pushlet refuses, with Pushlet's error bodies", async () => {
      assert.deepEqual(await post("/send_notification", { type: "apns", device_token: apnsToken() }), { status: 400, json: { error: "missing_identifier", message: "an application_id or gcm_api_key are required for this call" } });
      assert.deepEqual(await post("/application_feedback", {}), { status: 400, json: { error: "missing_application_id", message: "an application_id is required for this call" } });
      assert.equal((await post("/send_notification", { type: "apns", application_id: "demo", alert: "x" }, auth())).json!.error, "device_token_required");
      assert.equal((await post("/send_notification", { type: "apns", application_id: "demo", device_token: apnsToken(), data: "{nope" }, auth())).json!.error, "invalid_data_json");
      assert.equal((await post("/send_notification", { type: "apns", application_id: "demo", device_token: apnsToken(), alert: "x" }, basic("demo", "wrong"))).status, 401);
      assert.equal((await post("/send_notification", { type: "apns", application_id: "news", device_token: apnsToken(), alert: "x" }, auth())).json!.error, "application_mismatch");
      assert.equal((await post("/send_notification", { type: "gcm", gcm_api_key: "AIza...", device_token: fcmToken(), data: "{}" }, auth())).json!.error, "unsupported_gcm_api_key");
      assert.equal((await post("/register_application", { application_id: "demo" }, auth())).json!.error, "unsupported");
    });

    it("answers an unknown application with Pushlet's application_not_found, and never with Herald's names", async () => {
      const notFound = { status: 404, json: { error: "application_not_found", message: "no application found for the provided application_id" } };
      for (const app of ["no-such-app", "d\u00e9mo", "de\u0001mo"]) {
        assert.deepEqual(await post("/send_notification", { type: "apns", application_id: app, device_token: apnsToken(), alert: "x" }, basic(app, "secret")), notFound, app);
        assert.deepEqual(await post("/application_feedback", { application_id: app }, `Bearer ${demo.serverKey}`), notFound, app);
      }
      // Refusals from the gateway and the services, in Pushlet's style.
      const res = await fetch(`${server.httpUrl}/send_notification`, { method: "POST", headers: { "content-type": "application/json", authorization: auth() }, body: "{nope" });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, "invalid_request");
      const tooLarge = await post("/send_notification", { type: "apns", application_id: "demo", device_token: apnsToken(), alert: "x".repeat(5000) }, auth());
      assert.equal(tooLarge.status, 400);
      assert.equal(tooLarge.json!.error, "invalid_request");
      assert.match(tooLarge.json!.message, /^notification\.apns: /);
      assert.equal((await post("/send_notification", { type: "apns", application_id: "demo", device_token: apnsToken(), alert: "x" }, basic("demo", "hk_s_demo_0000000000000000"))).json!.error, "unauthorized");
    });

    it("refuses data nested past 30 levels as invalid_data_json, as JSON or as form text", async () => {
      const nested = (levels: number) => `${'{"a":'.repeat(levels - 1)}{}${"}".repeat(levels - 1)}`;
      const sent = await post("/send_notification", { type: "apns", application_id: "demo", device_token: apnsToken(), data: JSON.parse(nested(30)) }, auth());
      assert.equal(sent.status, 200, JSON.stringify(sent.json));
      for (const data of [JSON.parse(nested(31)), JSON.parse(nested(40))]) {
        assert.deepEqual(await post("/send_notification", { type: "apns", application_id: "demo", device_token: apnsToken(), data }, auth()), { status: 400, json: { error: "invalid_data_json", message: "data nests objects and arrays more than 30 levels deep" } });
      }
      const form = new URLSearchParams({ type: "gcm", application_id: "demo", device_token: fcmToken(), data: nested(5000) }).toString();
      assert.deepEqual(await post("/send_notification", form, auth()), { status: 400, json: { error: "invalid_data_json", message: "data nests objects and arrays more than 30 levels deep" } });
    });
  });
});

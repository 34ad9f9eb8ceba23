import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { DeepPartial } from "@herald/platform";
import { dispatch, Provider } from "@herald/proto";
import { laneOf, SMALL_PUBLISH_TARGETS } from "./publish.lane.js";

const req = (r: DeepPartial<dispatch.PublishRequest>) => dispatch.PublishRequest.fromPartial(r as dispatch.PublishRequest);
const ids = (n: number) => Array.from({ length: n }, (_, i) => `d${i}`);
const { PRIORITY_HIGH: HIGH, PRIORITY_LOW: LOW, PRIORITY_NORMAL: NORMAL } = dispatch.Priority;

describe("publish lanes", () => {
  it("puts publishes small by construction on the urgent lane, up to the threshold", () => {
    assert.equal(SMALL_PUBLISH_TARGETS, 100);
    for (const n of [1, SMALL_PUBLISH_TARGETS]) {
      assert.equal(laneOf(req({ priority: NORMAL, recipients: { target: { $case: "deviceIds", value: { values: ids(n) } } } })), "urgent", `${n} device ids`);
      assert.equal(laneOf(req({ priority: NORMAL, recipients: { target: { $case: "users", value: { values: ids(n) } } } })), "urgent", `${n} users`);
      assert.equal(laneOf(req({ priority: NORMAL, recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_FCM, tokens: ids(n) } } } })), "urgent", `${n} tokens`);
    }
    assert.equal(laneOf(req({ recipients: { target: { $case: "native", value: { provider: Provider.PROVIDER_FCM, target: { $case: "topic", value: "news" } } } } })), "urgent", "a native target is one request");
  });

  it("puts larger lists and recipients of unknown size on the bulk lane", () => {
    const over = SMALL_PUBLISH_TARGETS + 1;
    assert.equal(laneOf(req({ recipients: { target: { $case: "deviceIds", value: { values: ids(over) } } } })), "bulk");
    assert.equal(laneOf(req({ recipients: { target: { $case: "users", value: { values: ids(over) } } } })), "bulk");
    assert.equal(laneOf(req({ recipients: { target: { $case: "tokens", value: { provider: Provider.PROVIDER_APNS, tokens: ids(over) } } } })), "bulk");
    assert.equal(laneOf(req({ recipients: { target: { $case: "topics", value: { values: ["one-topic"] } } } })), "bulk", "a topic can be any size");
    assert.equal(laneOf(req({ recipients: { target: { $case: "tags", value: { all: [{ key: "k", values: ["v"] }] } } } })), "bulk");
    assert.equal(laneOf(req({ recipients: { target: { $case: "all", value: {} } } })), "bulk");
    assert.equal(laneOf(req({})), "bulk", "no recipients");
  });

  it("lets priority decide first: high is urgent at any size, low is bulk even when small", () => {
    assert.equal(laneOf(req({ priority: HIGH, recipients: { target: { $case: "all", value: {} } } })), "urgent");
    assert.equal(laneOf(req({ priority: HIGH, recipients: { target: { $case: "deviceIds", value: { values: ids(5000) } } } })), "urgent");
    assert.equal(laneOf(req({ priority: LOW, recipients: { target: { $case: "deviceIds", value: { values: ids(1) } } } })), "bulk");
    assert.equal(laneOf(req({ priority: LOW, recipients: { target: { $case: "native", value: { provider: Provider.PROVIDER_FCM, target: { $case: "topic", value: "news" } } } } })), "bulk");
  });

  it("takes the app's urgent_max_targets instead of the default when it is set", () => {
    const users = (n: number) => req({ recipients: { target: { $case: "users", value: { values: ids(n) } } } });
    assert.equal(laneOf(users(3), 2), "bulk");
    assert.equal(laneOf(users(2), 2), "urgent");
    assert.equal(laneOf(users(SMALL_PUBLISH_TARGETS + 50), SMALL_PUBLISH_TARGETS + 50), "urgent");
    assert.equal(laneOf(users(SMALL_PUBLISH_TARGETS + 1), 0), "bulk", "0 is the default");
    assert.equal(laneOf(req({ priority: HIGH, recipients: { target: { $case: "all", value: {} } } }), 1), "urgent", "priority still decides first");
  });
});

import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { createLogger } from "./log.logger.js";

describe("logger", () => {
  it("redacts keys, tokens and credentials at every usual nesting", () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger({ service: "t", destination });
    const secrets = ["k-123", "tok-456", "jwt-789", "pk-000", "Bearer abc", "sec-1", "tk-2", "hdr-3"];
    logger.info({
      apiKey: secrets[0],
      token: secrets[1],
      device: { token: secrets[1], userToken: secrets[2] },
      provider: { credentials: { privateKey: secrets[3] } },
      request: { headers: { authorization: secrets[4] } },
      app: { secret: secrets[5], tokens: [secrets[6]] },
      call: { metadata: { authorization: secrets[7] } },
      visible: "kept",
    }, "hello");
    const line = lines.join("");
    for (const s of secrets) assert.ok(!line.includes(s), `${s} leaked: ${line}`);
    const parsed = JSON.parse(line);
    assert.equal(parsed.visible, "kept");
    assert.equal(parsed.level, "info");
    assert.equal(parsed.service, "t");
    assert.equal(parsed.device.token, "[redacted]");
  });
});

import { randomBytes } from "node:crypto";

// Device tokens that make the fake APNs answer a certain way. The behaviour lives in the token
// itself (a marker, a scenario code and a parameter byte), so tests, e2e suites and benchmarks
// can register such tokens as ordinary devices and the fake needs no per-token setup, even when
// the sender runs in another process.

export const APNS_SCENARIOS = {
  "bad-device-token": 0x01, // 400 BadDeviceToken
  unregistered: 0x02, // 410 Unregistered + timestamp n hours ago (default: now)
  "expired-token": 0x03, // 410 ExpiredToken
  "not-for-topic": 0x04, // 400 DeviceTokenNotForTopic
  "too-many-requests": 0x05, // 429 TooManyRequests
  "internal-error": 0x06, // 500 InternalServerError
  unavailable: 0x07, // 503 ServiceUnavailable
  slow: 0x08, // 200 after options.slowMs
  flaky: 0x09, // 503 ServiceUnavailable for the first n requests of this token, then 200
} as const;

export type ApnsScenarioName = keyof typeof APNS_SCENARIOS;
// "flaky-3" is the same as scenarioToken("flaky", 3).
export type ApnsScenario = ApnsScenarioName | `flaky-${number}`;

// Real tokens are random; one starting with the marker is rare enough (1 in 65536) for tests,
// and randomDeviceToken() never produces one.
const MARKER = "ffff";
const TOKEN_HEX = 64;
const byCode = new Map<number, ApnsScenarioName>(Object.entries(APNS_SCENARIOS).map(([name, code]) => [code, name as ApnsScenarioName]));

// A well-formed 64-hex token without any scenario.
export function randomDeviceToken(): string {
  for (;;) {
    const token = randomBytes(TOKEN_HEX / 2).toString("hex");
    if (!token.startsWith(MARKER)) return token;
  }
}

// A fresh, well-formed token (random tail, so flaky counters never collide) that triggers the scenario.
export function scenarioToken(scenario: ApnsScenario, n?: number): string {
  const flaky = /^flaky-(\d+)$/.exec(scenario);
  const name: ApnsScenarioName = flaky ? "flaky" : (scenario as ApnsScenarioName);
  const code = APNS_SCENARIOS[name];
  if (code === undefined) throw new Error(`unknown APNs scenario ${scenario}`);
  const param = flaky ? Number(flaky[1]) : (n ?? (name === "flaky" ? 1 : 0));
  if (!Number.isInteger(param) || param < 0 || param > 255) throw new Error(`APNs scenario parameter ${param} is not 0..255`);
  const head = MARKER + hex2(code) + hex2(param);
  return head + randomBytes(TOKEN_HEX / 2).toString("hex").slice(head.length);
}

export function scenarioOf(token: string): { name: ApnsScenarioName; n: number } | undefined {
  if (!token.startsWith(MARKER) || token.length < MARKER.length + 4) return undefined;
  const name = byCode.get(parseInt(token.slice(4, 6), 16));
  return name ? { name, n: parseInt(token.slice(6, 8), 16) } : undefined;
}

const hex2 = (n: number) => n.toString(16).padStart(2, "0");

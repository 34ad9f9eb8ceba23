import type { ProviderTarget, SendRequest } from "../provider.types.js";

// What provider tests build again and again: a job for some targets, with overrides.
export const utf8 = (s: string) => new TextEncoder().encode(s);

export function sendRequest(targets: ProviderTarget[], extra: Partial<SendRequest> = {}): SendRequest {
  return { app: "app1", publishId: "pub1", jobId: "job1", attempt: 0, targets, payload: utf8("{}"), headers: {}, priority: "normal", ...extra };
}

export const targetOf = (token: string, deviceId = `dev-${token.slice(-8)}`): ProviderTarget => ({ deviceId, token });

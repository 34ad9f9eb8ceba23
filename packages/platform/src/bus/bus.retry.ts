import type { SubscribeOptions } from "./bus.types.js";

export interface RetryPolicy {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { initialMs: 100, maxMs: 5000 };

export function retryPolicy(options: SubscribeOptions["retry"]): RetryPolicy {
  const initialMs = options?.initialMs ?? DEFAULT_RETRY.initialMs;
  const maxMs = Math.max(initialMs, options?.maxMs ?? DEFAULT_RETRY.maxMs);
  if (!(initialMs >= 0) || !Number.isFinite(maxMs)) throw new RangeError(`bus retry: invalid policy ${JSON.stringify(options)}`);
  return { initialMs, maxMs };
}

// Delay before retry number `attempt` (1 = first retry). Half of it is random so that the
// replicas of a consumer that all fail on the same outage do not come back in lockstep.
export function backoffDelay(attempt: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const nominal = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(nominal / 2 + (random() * nominal) / 2);
}

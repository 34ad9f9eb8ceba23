import type { SendRequest } from "../provider.types.js";

// The per-message Web Push headers (RFC 8030 §5.2-5.4) derived from a send request, validated
// before anything is encrypted so a bad header fails the message instead of every request.

export type Urgency = "very-low" | "low" | "normal" | "high";

export interface PushOptions {
  ttl: number;
  urgency: Urgency;
  topic?: string;
}

// What web-push itself defaults to: four weeks.
export const DEFAULT_TTL_S = 2_419_200;

const URGENCIES = new Set<string>(["very-low", "low", "normal", "high"]);
const TOPIC = /^[A-Za-z0-9_-]{1,32}$/;

export function pushOptions(request: SendRequest, now: Date): PushOptions | { error: string } {
  const get = (name: string) => {
    const key = Object.keys(request.headers).find((k) => k.toLowerCase() === name);
    return key === undefined ? undefined : request.headers[key]?.trim();
  };

  const ttlHeader = get("ttl");
  if (ttlHeader !== undefined && !/^\d+$/.test(ttlHeader)) return { error: "webpush:InvalidTTL" };
  // Floor, so the push service never holds a message past expireAt.
  const untilExpiry = request.expireAt ? Math.max(0, Math.floor((request.expireAt.getTime() - now.getTime()) / 1000)) : undefined;
  const candidates = [ttlHeader === undefined ? undefined : Number(ttlHeader), untilExpiry].filter((v): v is number => v !== undefined);
  const ttl = candidates.length ? Math.min(...candidates) : DEFAULT_TTL_S;

  const urgencyHeader = get("urgency");
  if (urgencyHeader !== undefined && !URGENCIES.has(urgencyHeader)) return { error: "webpush:InvalidUrgency" };
  const urgency = (urgencyHeader ?? request.priority) as Urgency;

  const topic = get("topic");
  if (topic && !TOPIC.test(topic)) return { error: "webpush:InvalidTopic" };
  return topic ? { ttl, urgency, topic } : { ttl, urgency };
}

import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
  type Attributes,
  type Span,
} from "@opentelemetry/api";
import { BusTopics } from "@herald/proto";
import { YIELDED, type BusMessage, type HandlerOutcome, type OutgoingMessage } from "./bus.types.js";

// Shared by both bus implementations so a trace looks the same whether the bus is Kafka or
// memory: the publisher's context travels in W3C headers (traceparent/tracestate) and every
// handler call runs inside a CONSUMER span that is a child of it.

export const BUS_TRACER = "herald.bus";

export type MessagingSystem = "kafka" | "memory";

// The bounded part of a topic name that spans are named by (`<kind> publish`, `<kind> process`):
// a per-app topic (herald.deliveries.<app>.<provider>, herald.retries.<app>.<provider>) is its
// kind, herald.deliveries or herald.retries, and a namespace prefix (HERALD_KAFKA_NAMESPACE) is
// dropped, so the operations Jaeger lists stay a fixed set however many apps, providers and
// installations there are. The full name stays in messaging.destination.name. A topic that is
// none of Herald's (a test's own) keeps its name.
// The urgent lane's herald.deliveries.<app>.<provider>.urgent is herald.deliveries.urgent.
const PER_APP_TOPIC = /(herald\.(?:deliveries|retries))\.[^.]+\.[^.]+(\.urgent)?$/;
const FIXED_TOPICS: string[] = Object.values(BusTopics).flatMap((t) => (typeof t === "string" ? [t] : []));

export function topicKind(topic: string): string {
  const perApp = PER_APP_TOPIC.exec(topic);
  if (perApp) return perApp[1]! + (perApp[2] ?? "");
  return FIXED_TOPICS.find((t) => topic === t || topic.endsWith(t)) ?? topic;
}

export type TracedMessage = OutgoingMessage & { headers: Record<string, string> };

// Wraps one publish call in a PRODUCER span and hands `send` the messages with that span's
// context injected. With no propagator registered, inject is a no-op and headers stay as given.
export async function publishWithTrace<T>(
  system: MessagingSystem,
  topic: string,
  messages: OutgoingMessage[],
  send: (messages: TracedMessage[]) => Promise<T>,
): Promise<T> {
  const attributes: Attributes = {
    "messaging.system": system,
    "messaging.operation.type": "send",
    "messaging.destination.name": topic,
    "messaging.batch.message_count": messages.length,
  };
  return trace.getTracer(BUS_TRACER).startActiveSpan(`${topicKind(topic)} publish`, { kind: SpanKind.PRODUCER, attributes }, async (span) => {
    try {
      return await send(messages.map((m) => ({ ...m, headers: injectTraceContext(m.headers) })));
    } catch (err) {
      fail(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

export function injectTraceContext(headers: Record<string, string> | undefined): Record<string, string> {
  const carrier: Record<string, string> = { ...headers };
  propagation.inject(context.active(), carrier);
  return carrier;
}

export interface ProcessInfo {
  system: MessagingSystem;
  group: string;
  // 1 for the first delivery of a message to this consumer, 2.. for retries.
  attempt: number;
}

// Runs a handler in the context extracted from the message (not the consumer loop's own
// context, which belongs to whoever happened to start the loop) inside a CONSUMER span.
export async function processWithTrace(message: BusMessage, info: ProcessInfo, handle: () => Promise<HandlerOutcome>): Promise<HandlerOutcome> {
  const parent = propagation.extract(ROOT_CONTEXT, message.headers);
  const span = trace.getTracer(BUS_TRACER).startSpan(
    `${topicKind(message.topic)} process`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": info.system,
        "messaging.operation.type": "process",
        "messaging.destination.name": message.topic,
        "messaging.destination.partition.id": String(message.partition),
        "messaging.kafka.partition": message.partition,
        "messaging.kafka.offset": Number(message.offset),
        "messaging.consumer.group.name": info.group,
        "herald.bus.attempt": info.attempt,
      },
    },
    parent,
  );
  try {
    const outcome = await context.with(trace.setSpan(parent, span), handle);
    if (outcome === YIELDED) span.setAttribute("herald.bus.yielded", true);
    return outcome;
  } catch (err) {
    fail(span, err);
    throw err;
  } finally {
    span.end();
  }
}

function fail(span: Span, err: unknown): void {
  const error = err instanceof Error ? err : new Error(String(err));
  span.recordException(error);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
}

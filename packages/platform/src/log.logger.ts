import { trace } from "@opentelemetry/api";
import { pino, type Logger, type DestinationStream } from "pino";

export type { Logger };

// Paths whose values never reach a log line: API keys, device tokens, user tokens, provider
// credentials. pino's wildcard matches one level, so the common nestings are listed.
export const REDACTED_PATHS = [
  "authorization",
  "apiKey",
  "secret",
  "token",
  "userToken",
  "password",
  "privateKey",
  "credentials",
  "userTokenSecret",
  "*.authorization",
  "*.apiKey",
  "*.secret",
  "*.token",
  "*.tokens",
  "*.userToken",
  "*.password",
  "*.privateKey",
  "*.credentials",
  "*.userTokenSecret",
  "*.headers.authorization",
  "*.*.token",
  "*.*.authorization",
  "*.*.privateKey",
];

export interface LoggerOptions {
  service: string;
  level?: string;
  // Tests pass a stream to read what was logged.
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { service: options.service },
      messageKey: "msg",
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
      // One key once per line (see uniqueKeys).
      hooks: {
        logMethod(args, method) {
          const first: unknown = args[0];
          if (first !== null && typeof first === "object" && !(first instanceof Error) && !Array.isArray(first)) {
            const fields = uniqueKeys(this, first as Record<string, unknown>);
            if (fields !== first) return method.apply(this, [fields, ...args.slice(1)] as Parameters<typeof method>);
          }
          return method.apply(this, args);
        },
      },
      // Lines logged inside a span carry its ids, so a log line leads to the trace in Jaeger.
      mixin() {
        const span = trace.getActiveSpan();
        if (!span) return {};
        const { traceId, spanId } = span.spanContext();
        return { trace_id: traceId, span_id: spanId };
      },
    },
    options.destination,
  );
}

// pino writes a child logger's bindings (and the base `service`) as a prefix and the call's
// fields after them, so `logger.child({ app }).error({ app }, …)` printed "app" twice in one
// JSON object, which strict parsers refuse (and lenient ones silently keep the last). A field
// that repeats a binding with the same value is dropped; one with another value (or one named
// like a key pino writes itself, level or time) is kept as `call_<key>`.
const PINO_KEYS = ["level", "time"];
const boundCache = new Map<string, Record<string, unknown>>();

function boundFields(logger: Logger): Record<string, unknown> {
  const chindings = (logger as unknown as Record<symbol, string>)[pino.symbols.chindingsSym] ?? "";
  let bound = boundCache.get(chindings);
  if (!bound) {
    try {
      bound = JSON.parse(`{${chindings.slice(1)}}`) as Record<string, unknown>;
    } catch {
      bound = {};
    }
    // Request loggers (a method and an app each) make many distinct sets: keep the cache small.
    if (boundCache.size >= 500) boundCache.clear();
    boundCache.set(chindings, bound);
  }
  return bound;
}

export function uniqueKeys(logger: Logger, fields: Record<string, unknown>): Record<string, unknown> {
  const bound = boundFields(logger);
  let out: Record<string, unknown> | undefined;
  for (const key of Object.keys(fields)) {
    const isBound = Object.hasOwn(bound, key);
    if (!isBound && !PINO_KEYS.includes(key)) continue;
    out ??= { ...fields };
    const value = out[key];
    delete out[key];
    if (isBound && JSON.stringify(bound[key]) === JSON.stringify(value)) continue;
    out[`call_${key}`] = value;
  }
  return out ?? fields;
}

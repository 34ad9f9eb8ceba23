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

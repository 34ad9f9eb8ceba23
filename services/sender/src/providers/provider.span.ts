import { context, SpanKind, type Attributes, type Span, type Tracer } from "@opentelemetry/api";

// A provider request's client span. Its attributes (a token hash among them) are computed only
// for a span somebody keeps: with tracing off or the trace not sampled they would be work on
// every delivery for nothing. Herald's sampler looks at trace ids only, never at attributes.
export function startProviderSpan(tracer: Tracer, name: string, attributes: () => Attributes): Span {
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT }, context.active());
  if (span.isRecording()) span.setAttributes(attributes());
  return span;
}

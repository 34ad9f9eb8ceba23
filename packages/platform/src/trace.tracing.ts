import { context, propagation, SpanStatusCode, trace, type Attributes, type Span, type TextMapGetter, type TextMapSetter } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { detectResources, envDetector, hostDetector, processDetector, resourceFromAttributes, type Resource, type ResourceDetector } from "@opentelemetry/resources";
import { BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

export interface TracingOptions {
  serviceName: string;
  // OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces. Absent: spans are created
  // (so context still propagates through gRPC and the bus) but not exported.
  otlpEndpoint?: string;
  // 0..1, applied to root spans; children follow their parent.
  sampleRatio?: number;
  // Tests add an in-memory exporter here.
  extraProcessors?: SpanProcessor[];
  // Resource detectors (default: RESOURCE_DETECTORS); tests pass their own.
  detectors?: ResourceDetector[];
}

// What every process says about itself in each span's resource: OTEL_RESOURCE_ATTRIBUTES (the
// chart puts the pod, namespace, node, app, provider and version there), the host (host.name,
// host.arch, host.id) and the process (process.pid, process.runtime.*, process.command, …).
export const RESOURCE_DETECTORS: ResourceDetector[] = [envDetector, hostDetector, processDetector];

// The resource of a process's spans: the detected attributes, with service.name set last so
// the name the service was started with (or OTEL_SERVICE_NAME, see tracingOptions) wins over a
// service.name in OTEL_RESOURCE_ATTRIBUTES.
export function tracingResource(serviceName: string, detectors: ResourceDetector[] = RESOURCE_DETECTORS): Resource {
  return detectResources({ detectors }).merge(resourceFromAttributes({ "service.name": serviceName }));
}

// The tracing settings every service reads from its environment (serviceEnv): the OTLP endpoint,
// the root sampling ratio, and OTEL_SERVICE_NAME to rename the service in Jaeger.
export function tracingOptions(config: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?: string; HERALD_TRACE_SAMPLE_RATIO: number; OTEL_SERVICE_NAME?: string }, serviceName: string): TracingOptions {
  return { serviceName: config.OTEL_SERVICE_NAME || serviceName, otlpEndpoint: config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, sampleRatio: config.HERALD_TRACE_SAMPLE_RATIO };
}

export interface Tracing {
  shutdown(): Promise<void>;
}

export function startTracing(options: TracingOptions): Tracing {
  const processors: SpanProcessor[] = [...(options.extraProcessors ?? [])];
  if (options.otlpEndpoint) processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url: options.otlpEndpoint })));
  const provider = new NodeTracerProvider({
    resource: tracingResource(options.serviceName, options.detectors),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio ?? 1) }),
    spanProcessors: processors,
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  return {
    async shutdown() {
      await provider.shutdown();
      trace.disable();
      propagation.disable();
      context.disable();
    },
  };
}

// Runs `work` as a step of its own in the current trace (an INTERNAL span of the "herald"
// tracer); an exception marks the span failed and propagates.
export function withSpan<T>(name: string, attributes: Attributes, work: (span: Span) => Promise<T>): Promise<T> {
  return trace.getTracer("herald").startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await work(span);
    } catch (err) {
      span.recordException(err instanceof Error ? err : new Error(String(err)));
      span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
      throw err;
    } finally {
      span.end();
    }
  });
}

// Adds attributes to the current span (e.g. a gRPC handler naming the publish it created on the
// call's SERVER span); a no-op outside a span.
export function annotateSpan(attributes: Attributes): void {
  trace.getActiveSpan()?.setAttributes(attributes);
}

// Carriers for trace context in plain string maps (bus headers) — gRPC metadata has its own.
export const recordSetter: TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

export const recordGetter: TextMapGetter<Record<string, string>> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => carrier[key],
};

import type { ProviderName, PushProvider, SendRequest, TargetResult } from "../provider.types.js";

// Accepts every target without calling anyone, after an optional latency: for apps without
// credentials (the embedded mode) and for load tests of everything but the provider.
export class DryRunProvider implements PushProvider {
  constructor(
    readonly name: ProviderName,
    private readonly latencyMs = 0,
  ) {}

  async send(request: SendRequest): Promise<TargetResult[]> {
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const targets = request.targets.length ? request.targets : [{ deviceId: "", token: request.nativeTopic ?? request.nativeCondition ?? "" }];
    return targets.map((target) => ({ target, outcome: { kind: "sent" as const, id: `dry-run-${request.jobId}` } }));
  }

  async close(): Promise<void> {}
}

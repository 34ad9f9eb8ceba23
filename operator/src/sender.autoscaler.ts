// Lag-based sender scaling (the KEDA Kafka scaler's idea, built in): replicas =
// ceil(lag / targetLagPerReplica) within [min, max]. Scaling up follows the lag at once; scaling
// down takes the highest recommendation of the stabilization window, as the HorizontalPodAutoscaler
// does, so a lag that empties between two reads does not make the replicas flap.

export interface AutoscalingSpec {
  minReplicas: number;
  maxReplicas: number;
  targetLagPerReplica: number;
}

export function replicasForLag(lag: number, spec: AutoscalingSpec): number {
  const wanted = Math.ceil(Math.max(0, lag) / spec.targetLagPerReplica);
  return Math.min(spec.maxReplicas, Math.max(spec.minReplicas, wanted));
}

export class ScaleStabilizer {
  // key → recent recommendations, oldest first.
  private readonly history = new Map<string, Array<{ at: number; replicas: number }>>();

  constructor(
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  recommend(key: string, replicas: number): number {
    const now = this.now();
    const kept = (this.history.get(key) ?? []).filter((r) => now - r.at < this.windowMs);
    kept.push({ at: now, replicas });
    this.history.set(key, kept);
    return Math.max(...kept.map((r) => r.replicas));
  }

  forget(key: string): void {
    this.history.delete(key);
  }
}

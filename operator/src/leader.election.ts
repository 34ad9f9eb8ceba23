import type { V1Lease } from "@kubernetes/client-node";
import type { Logger } from "@herald/platform";
import { isStatus, microTime, type KubeClient } from "./kube.client.js";

export interface LeaderElectionOptions {
  kube: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  // How often the leader renews and a candidate retries.
  renewMs: number;
  logger: Logger;
  now?: () => number;
}

// Lease-based leader election (coordination.k8s.io/v1), as client-go does it: the holder renews
// the Lease every renewMs; a candidate takes it over once it has seen the same record unchanged
// for a whole lease duration by its own clock (so clocks of different machines never have to
// agree); every write is conditional on the resourceVersion read, so two candidates cannot both
// win. A leader that cannot renew within the lease duration stops leading.
export class LeaderElection {
  private leading = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private observed?: { record: string; at: number };
  private lastRenew = 0;
  private startedHandler?: () => void;
  private stoppedHandler?: () => void;
  private readonly now: () => number;

  constructor(private readonly o: LeaderElectionOptions) {
    this.now = o.now ?? Date.now;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  // Runs until stop(): onStarted when this process becomes the leader, onStopped if it loses
  // the Lease (the caller should stop working at once; exiting is the simplest safe answer).
  run(onStarted: () => void, onStopped: () => void): void {
    this.startedHandler = onStarted;
    this.stoppedHandler = onStopped;
    void this.tick();
  }

  // Gives the Lease up so another replica takes over without waiting for it to expire.
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    try {
      const lease = await this.o.kube.readLease(this.o.namespace, this.o.name);
      if (lease?.spec?.holderIdentity === this.o.identity) {
        lease.spec.holderIdentity = undefined;
        lease.spec.leaseDurationSeconds = 1;
        lease.spec.renewTime = microTime(this.now());
        await this.o.kube.replaceLease(this.o.namespace, lease);
        this.o.logger.info({ lease: this.o.name }, "leader election: lease released");
      }
    } catch (err) {
      this.o.logger.warn({ err }, "leader election: could not release the lease; it expires by itself");
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    let held = false;
    try {
      held = await this.tryAcquireOrRenew();
    } catch (err) {
      this.o.logger.warn({ err, lease: this.o.name }, "leader election: lease request failed");
    }
    if (this.stopped) return;
    if (held) {
      this.lastRenew = this.now();
      if (!this.leading) {
        this.leading = true;
        this.o.logger.info({ lease: this.o.name, identity: this.o.identity }, "leader election: became the leader");
        this.startedHandler?.();
      }
    } else if (this.leading && this.now() - this.lastRenew >= this.o.leaseDurationMs) {
      this.leading = false;
      this.o.logger.error({ lease: this.o.name }, "leader election: lost the lease");
      this.stoppedHandler?.();
    }
    this.timer = setTimeout(() => void this.tick(), this.o.renewMs);
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { kube, namespace, name, identity } = this.o;
    const now = microTime(this.now());
    const durationS = Math.ceil(this.o.leaseDurationMs / 1000);
    const lease = await kube.readLease(namespace, name);
    if (!lease) {
      try {
        await kube.createLease(namespace, {
          metadata: { name, namespace },
          spec: { holderIdentity: identity, leaseDurationSeconds: durationS, acquireTime: now, renewTime: now, leaseTransitions: 0 },
        });
        return true;
      } catch (err) {
        if (isStatus(err, 409)) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const record = `${holder}|${String(spec.renewTime)}|${spec.leaseDurationSeconds}`;
    if (this.observed?.record !== record) this.observed = { record, at: this.now() };
    if (holder && holder !== identity) {
      const expiresAt = this.observed.at + (spec.leaseDurationSeconds ?? durationS) * 1000;
      if (this.now() < expiresAt) return false;
    }
    const next: V1Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationS,
        renewTime: now,
        acquireTime: holder === identity ? spec.acquireTime : now,
        leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === identity ? 0 : 1),
      },
    };
    try {
      await kube.replaceLease(namespace, next);
      return true;
    } catch (err) {
      if (isStatus(err, 409)) return false;
      throw err;
    }
  }
}

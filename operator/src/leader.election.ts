import { performance } from "node:perf_hooks";
import type { V1Lease } from "@kubernetes/client-node";
import type { Logger } from "@herald/platform";
import { isStatus, microTime, type KubeClient } from "./kube.client.js";
import type { LeaderFence } from "./leader.fence.js";

export interface LeaderElectionOptions {
  kube: KubeClient;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  // How often the leader renews and a candidate retries; must be shorter than the lease.
  renewMs: number;
  // Opened for each renewed term, revoked the moment leadership is in doubt.
  fence: LeaderFence;
  logger: Logger;
  now?: () => number;
  // The monotonic clock the fence runs on.
  monotonic?: () => number;
}

type Attempt = "held" | "other" | "failed";

// Lease-based leader election (coordination.k8s.io/v1), as client-go does it: the holder renews
// the Lease every renewMs; a candidate takes it over once it has seen the same record unchanged
// for a whole lease duration by its own clock (so clocks of different machines never have to
// agree); every write is conditional on the resourceVersion read, so two candidates cannot both
// win.
//
// Writes are fenced: a renewal that started at t opens the fence until t + (lease + renew) / 2
// on this process's monotonic clock — before any candidate, which counts the full lease from
// when it first saw that renewal, can take over. The fence closes (in-flight requests aborted,
// later writes refused) when that deadline passes without a renewal, when another holder is
// seen, or on stop, and only then is onStopped called. A process frozen past its lease (SIGSTOP,
// a suspended VM) therefore finds its term expired the moment it runs again.
export class LeaderElection {
  private leading = false;
  private stopped = false;
  private timer?: NodeJS.Timeout;
  private expiry?: NodeJS.Timeout;
  private observed?: { record: string; at: number };
  private inFlight: Promise<void> = Promise.resolve();
  private startedHandler?: () => void;
  private stoppedHandler?: () => void;
  private readonly now: () => number;
  private readonly monotonic: () => number;

  constructor(private readonly o: LeaderElectionOptions) {
    if (o.renewMs >= o.leaseDurationMs) throw new Error(`leader election: the renew interval (${o.renewMs} ms) must be shorter than the lease duration (${o.leaseDurationMs} ms)`);
    this.now = o.now ?? Date.now;
    this.monotonic = o.monotonic ?? (() => performance.now());
  }

  get isLeader(): boolean {
    return this.leading;
  }

  // Runs until stop(): onStarted when this process becomes the leader, onStopped once it has
  // lost the Lease and the fence is closed (the caller should stop working at once; exiting is
  // the simplest safe answer).
  run(onStarted: () => void, onStopped: () => void): void {
    this.startedHandler = onStarted;
    this.stoppedHandler = onStopped;
    this.schedule(0);
  }

  // Gives the Lease up so another replica takes over without waiting for it to expire.
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.expiry);
    this.o.fence.revoke("the operator is stopping");
    // A renewal still in flight would move the Lease's resourceVersion under the release below.
    await this.inFlight.catch(() => undefined);
    if (!this.leading) return;
    this.leading = false;
    try {
      // A write conditional on what was just read can still meet a conflict (an API server
      // retrying an earlier renewal); read again and retry while the Lease is still ours.
      for (let attempt = 1; ; attempt++) {
        const lease = await this.o.kube.readLease(this.o.namespace, this.o.name);
        if (lease?.spec?.holderIdentity !== this.o.identity) return;
        lease.spec.holderIdentity = undefined;
        lease.spec.leaseDurationSeconds = 1;
        lease.spec.renewTime = microTime(this.now());
        try {
          await this.o.kube.replaceLease(this.o.namespace, lease);
          this.o.logger.info({ lease: this.o.name }, "leader election: lease released");
          return;
        } catch (err) {
          if (!isStatus(err, 409) || attempt >= 3) throw err;
        }
      }
    } catch (err) {
      this.o.logger.warn({ err }, "leader election: could not release the lease; it expires by itself");
    }
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.inFlight = this.tick();
    }, ms);
  }

  // Final: a replica that lost the Lease does not run for it again (it exits and comes back).
  private lose(why: string): void {
    if (!this.leading) return;
    this.leading = false;
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.expiry);
    // First the fence, so nothing more leaves this process; then whoever stops the work.
    this.o.fence.revoke(why);
    this.o.logger.error({ lease: this.o.name, why }, "leader election: lost the lease");
    this.stoppedHandler?.();
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    // A term that ran out while this process was not running ends before anything else happens.
    if (this.leading && !this.o.fence.valid) return this.lose("the lease term expired before it was renewed");
    const startedAt = this.monotonic();
    let attempt: Attempt = "failed";
    try {
      attempt = await this.tryAcquireOrRenew();
    } catch (err) {
      this.o.logger.warn({ err, lease: this.o.name }, "leader election: lease request failed");
    }
    if (this.stopped) return;
    const validUntil = startedAt + (this.o.leaseDurationMs + this.o.renewMs) / 2;
    if (attempt === "held" && this.monotonic() < validUntil) {
      this.o.fence.grant(validUntil);
      clearTimeout(this.expiry);
      this.expiry = setTimeout(() => {
        if (!this.o.fence.valid) this.lose("the lease term expired before it was renewed");
      }, validUntil - this.monotonic() + 1);
      this.expiry.unref();
      if (!this.leading) {
        this.leading = true;
        this.o.logger.info({ lease: this.o.name, identity: this.o.identity }, "leader election: became the leader");
        this.startedHandler?.();
      }
    } else if (attempt === "other") {
      this.lose("another replica holds the lease");
    } else if (this.leading && !this.o.fence.valid) {
      this.lose("the lease term expired before it was renewed");
    }
    if (!this.stopped) this.schedule(this.o.renewMs);
  }

  private async tryAcquireOrRenew(): Promise<Attempt> {
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
        return "held";
      } catch (err) {
        if (isStatus(err, 409)) return "failed";
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? "";
    const record = `${holder}|${String(spec.renewTime)}|${spec.leaseDurationSeconds}`;
    if (this.observed?.record !== record) this.observed = { record, at: this.now() };
    if (holder && holder !== identity) {
      if (this.leading) return "other";
      const expiresAt = this.observed.at + (spec.leaseDurationSeconds ?? durationS) * 1000;
      if (this.now() < expiresAt) return "failed";
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
      return "held";
    } catch (err) {
      if (isStatus(err, 409)) return "failed";
      throw err;
    }
  }
}

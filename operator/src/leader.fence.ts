import { performance } from "node:perf_hooks";

export class FencedError extends Error {
  constructor(reason: string) {
    super(`not the leader: ${reason}`);
    this.name = "FencedError";
  }
}

// What the leader may write under: a term that ends at a deadline on the monotonic clock
// (extended by every renewal) or when it is revoked. Every write of a reconcile checks it
// right before the request leaves, and carries its AbortSignal, so a leader that was frozen
// (SIGSTOP, a long GC pause, a suspended VM) past its lease writes nothing when it wakes up: the
// clock moved on while it slept, even before its first renewal attempt says the Lease is gone.
export class LeaderFence {
  private controller = new AbortController();
  private validUntil: number;
  private revokedBecause?: string;

  constructor(
    open = false,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.validUntil = open ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
  }

  // A term valid until `until` (a value of `now`); a new controller when the last was revoked.
  grant(until: number): void {
    if (this.revokedBecause !== undefined) {
      this.controller = new AbortController();
      this.revokedBecause = undefined;
    }
    this.validUntil = until;
  }

  // Ends the term at once: in-flight requests are aborted, later writes refused.
  revoke(reason: string): void {
    this.validUntil = Number.NEGATIVE_INFINITY;
    if (this.revokedBecause !== undefined) return;
    this.revokedBecause = reason;
    this.controller.abort(new FencedError(reason));
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get valid(): boolean {
    return this.revokedBecause === undefined && this.now() < this.validUntil;
  }

  // Throws unless a write may go out now.
  check(): void {
    if (this.revokedBecause !== undefined) throw new FencedError(this.revokedBecause);
    if (this.now() >= this.validUntil) throw new FencedError("the lease term expired before it was renewed");
  }
}

import { HeraldError, Status, type Logger } from "@herald/platform";
import type { AppLimitsRecord } from "@herald/store";
import type { Directory } from "./publish.directory.js";

// AppLimits.max_publish_rate, enforced across dispatcher replicas.
//
// - Windows: fixed one-second windows aligned to the epoch second (the limit is "per second"),
//   counted in the store's rate repository, which every replica over the same database shares and
//   which is exact on MongoDB and FerretDB alike (see rate.repository.mongo.ts). Within one
//   aligned second at most `limit` publishes are accepted; a burst straddling a boundary can see
//   up to twice the limit over some one-second span, the usual price of fixed windows. Replicas
//   place windows by their own clocks, so clock skew between them shifts windows by the skew.
// - The limit: the app's max_publish_rate, or the installation default (defaultRate, the
//   dispatcher's HERALD_DEFAULT_PUBLISH_RATE) when the app says 0; 0 there too means unlimited.
//   The app's limits are cached for LIMIT_CACHE_MS (AppLimitsCache, which the lane choice reads
//   too), so a changed limit applies within seconds and the check costs one store round trip per
//   publish (none for unlimited apps).
// - Over the limit: RESOURCE_EXHAUSTED, reason PUBLISH_RATE_EXCEEDED, with retry_after_ms (until
//   the window ends) and limit in the error's metadata (ErrorInfo; the gRPC layer also sets a
//   `retry-after` trailer, the HTTP gateway a Retry-After header).
// - Sweeping: windows expire EXPIRY_GRACE_MS after they end (slack for replicas whose clocks lag)
//   and each dispatcher deletes expired ones at most every SWEEP_EVERY_MS, in the background of a
//   publish, so no separate sweeper is needed; what an idle installation leaves is swept by the
//   next publish of any app.

export const RATE_WINDOW_MS = 1000;
const LIMIT_CACHE_MS = 5000;
const EXPIRY_GRACE_MS = 60_000;
const SWEEP_EVERY_MS = 60_000;

export const PUBLISH_RATE_EXCEEDED = "PUBLISH_RATE_EXCEEDED";

export function publishRateExceeded(limit: number, retryAfterMs: number, field?: string): HeraldError {
  return new HeraldError(
    Status.RESOURCE_EXHAUSTED,
    PUBLISH_RATE_EXCEEDED,
    `the app accepts at most ${limit} publishes per second; retry in ${retryAfterMs} ms`,
    field,
    { retry_after_ms: String(retryAfterMs), limit: String(limit) },
  );
}

// An app's limits as the publish path reads them: at most one store read per app every
// LIMIT_CACHE_MS, however many publishes arrive.
export class AppLimitsCache {
  private readonly cached = new Map<string, { limits: Promise<AppLimitsRecord | undefined>; until: number }>();

  constructor(
    private readonly directory: Directory,
    private readonly now: () => Date,
  ) {}

  // undefined: the app is not registered.
  of(app: string): Promise<AppLimitsRecord | undefined> {
    const t = this.now().getTime();
    const hit = this.cached.get(app);
    if (hit && hit.until > t) return hit.limits;
    const limits = this.directory.apps.get(app).then((record) => record?.limits);
    // A failed read is not cached: the next publish reads again.
    limits.catch(() => this.cached.get(app)?.limits === limits && this.cached.delete(app));
    this.cached.set(app, { limits, until: t + LIMIT_CACHE_MS });
    return limits;
  }
}

export class PublishRateLimiter {
  private lastSweep = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly directory: Directory,
    private readonly limits: AppLimitsCache,
    private readonly now: () => Date,
    private readonly logger: Logger,
    // Publishes per second for apps whose max_publish_rate is 0; 0: unlimited.
    private readonly defaultRate = 0,
  ) {}

  // Takes one publish of the app's current window, or throws PUBLISH_RATE_EXCEEDED.
  async admit(app: string): Promise<void> {
    const limit = (await this.limits.of(app))?.maxPublishRate || this.defaultRate;
    if (limit <= 0) return;
    const t = this.now().getTime();
    const start = Math.floor(t / RATE_WINDOW_MS) * RATE_WINDOW_MS;
    const end = start + RATE_WINDOW_MS;
    this.sweepNowAndThen(t);
    if (await this.directory.rates.take(app, String(start), limit, new Date(end + EXPIRY_GRACE_MS))) return;
    throw publishRateExceeded(limit, Math.max(1, end - t));
  }

  private sweepNowAndThen(t: number): void {
    if (t - this.lastSweep < SWEEP_EVERY_MS) return;
    this.lastSweep = t;
    this.directory.rates.sweep(new Date(t)).catch((err: unknown) => this.logger.warn({ err }, "could not sweep expired publish-rate windows"));
  }
}

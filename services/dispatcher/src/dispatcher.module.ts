import type { Bus, Logger, ServiceBinding, Subscription } from "@herald/platform";
import type { PublishRepository, TokenRules } from "@herald/store";
import type { Directory } from "./publish.directory.js";
import type { DispatcherMetrics } from "./dispatcher.metrics.js";
import { FanoutWorker } from "./fanout.consumer.js";
import { PublishScheduler } from "./publish.scheduler.js";
import { PublishService } from "./publish.service.js";
import type { RecipientSource } from "./recipient.source.js";
import { ResultAggregator } from "./results.consumer.js";

export interface DispatcherModuleDeps {
  publishes: PublishRepository;
  directory: Directory;
  bus: Bus;
  recipients: RecipientSource;
  tokenRules: TokenRules;
  logger: Logger;
  now?: () => Date;
  schedulerIntervalMs?: number;
  metrics?: DispatcherMetrics;
  // Publishes per second for apps whose max_publish_rate is 0; 0 or absent: unlimited.
  defaultPublishRate?: number;
}

export interface DispatcherModule {
  bindings: ServiceBinding[];
  publishService: PublishService;
  fanout: FanoutWorker;
  results: ResultAggregator;
  scheduler: PublishScheduler;
  // Starts the workers; the returned function stops them.
  start(): Promise<() => Promise<void>>;
}

// Wires the dispatcher; used by its own main.ts and by the all-in-one `herald serve`.
export function createDispatcherModule(deps: DispatcherModuleDeps): DispatcherModule {
  const now = deps.now ?? (() => new Date());
  const metrics = deps.metrics ? { metrics: deps.metrics } : {};
  const publishService = new PublishService({ publishes: deps.publishes, directory: deps.directory, recipients: deps.recipients, bus: deps.bus, tokenRules: deps.tokenRules, logger: deps.logger, now, ...metrics, defaultPublishRate: deps.defaultPublishRate ?? 0 });
  const fanout = new FanoutWorker({ publishes: deps.publishes, directory: deps.directory, bus: deps.bus, recipients: deps.recipients, logger: deps.logger.child({ component: "fanout" }), now, ...metrics });
  const results = new ResultAggregator(deps.publishes, deps.bus, now);
  const scheduler = new PublishScheduler(deps.publishes, publishService, deps.logger.child({ component: "scheduler" }), now, deps.schedulerIntervalMs);
  return {
    bindings: [publishService.binding()],
    publishService,
    fanout,
    results,
    scheduler,
    async start() {
      const subs: Subscription[] = [await fanout.start(), await results.start()];
      scheduler.start();
      return async () => {
        await scheduler.stop();
        await Promise.all(subs.map((s) => s.stop()));
      };
    },
  };
}

import { NetworkPolicy, type Bus, type Logger, type ServiceBinding } from "@herald/platform";
import type { Store, TokenRules } from "@herald/store";
import { AppService } from "./app.service.js";
import { DeviceEvents } from "./device.events.js";
import { DeviceService } from "./device.service.js";
import { DeviceSweeper } from "./device.sweeper.js";
import type { RegistryMetrics } from "./registry.metrics.js";
import { TokenFeedbackConsumer } from "./tokenfeedback.consumer.js";
import { UserTokens } from "./usertoken.jwt.js";
import { DEFAULT_WEBHOOK_OPTIONS, WebhookWorker, type WebhookMetrics, type WebhookOptions } from "./webhook.consumer.js";

export interface RegistryModuleDeps {
  store: Store;
  bus: Bus;
  logger: Logger;
  masterSecret: string;
  tokenRules: TokenRules;
  sweepIntervalMs?: number;
  now?: () => Date;
  metrics?: RegistryMetrics;
  webhooks?: Partial<WebhookOptions>;
  webhookMetrics?: WebhookMetrics;
}

export interface RegistryModule {
  bindings: ServiceBinding[];
  devices: DeviceService;
  apps: AppService;
  sweeper: DeviceSweeper;
  tokenFeedback: TokenFeedbackConsumer;
  webhooks: WebhookWorker;
  userTokens: UserTokens;
}

// Wires the registry's pieces; used by its own main.ts and by the all-in-one `herald serve`.
export function createRegistryModule(deps: RegistryModuleDeps): RegistryModule {
  const now = deps.now ?? (() => new Date());
  const userTokens = new UserTokens(deps.masterSecret, now);
  const devices = new DeviceService({ store: deps.store, events: new DeviceEvents(deps.bus, now, deps.metrics?.countEvent), userTokens, tokenRules: deps.tokenRules, now });
  const webhookOptions = { ...DEFAULT_WEBHOOK_OPTIONS, ...deps.webhooks };
  // Also checked when apps are configured, so an IP literal in a denied network is refused there.
  const network = new NetworkPolicy(webhookOptions.deniedNetworks);
  const apps = new AppService({ store: deps.store, userTokens, network, now });
  const sweeper = new DeviceSweeper(deps.store, devices, deps.logger.child({ component: "sweeper" }), now, deps.sweepIntervalMs);
  const tokenFeedback = new TokenFeedbackConsumer(deps.store, devices, deps.bus, deps.logger.child({ component: "token-feedback" }), now);
  const webhooks = new WebhookWorker({
    store: deps.store,
    bus: deps.bus,
    userTokens,
    logger: deps.logger.child({ component: "webhooks" }),
    now,
    options: webhookOptions,
    network,
    ...(deps.webhookMetrics ? { metrics: deps.webhookMetrics } : {}),
  });
  return { bindings: [devices.binding(), apps.binding()], devices, apps, sweeper, tokenFeedback, webhooks, userTokens };
}

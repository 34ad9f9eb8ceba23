import type { Bus, BusMessage, Logger, Subscription } from "@herald/platform";
import { BusGroups, BusTopics, events } from "@herald/proto";
import { PROVIDER_NAMES, type Store } from "@herald/store";
import type { DeviceService } from "./device.service.js";

// Records every token a provider declared dead (herald.token-feedback) for the app's feedback
// API, and removes the devices that hold it. A device that
// registered again after the provider's verdict keeps its token: Apple's 410 timestamp exists
// precisely so a fresh registration is not deleted by a stale report.
export class TokenFeedbackConsumer {
  constructor(
    private readonly store: Store,
    private readonly devices: DeviceService,
    private readonly bus: Bus,
    private readonly logger: Logger,
    private readonly now: () => Date = () => new Date(),
  ) {}

  start(): Promise<Subscription> {
    return this.bus.subscribe({
      group: BusGroups.tokenFeedback,
      topics: [BusTopics.tokenFeedback],
      handler: (m: BusMessage) => this.handle(events.TokenFeedback.decode(m.value)).then(() => undefined),
    });
  }

  async handle(f: events.TokenFeedback): Promise<number> {
    const provider = PROVIDER_NAMES[f.provider];
    if (!provider) return 0;
    await this.store.tokenFeedback.add([{ app: f.app, provider, token: f.token, reason: f.reason, at: f.invalidSince ?? this.now() }]);
    const found = await this.store.devices.list(f.app, { tokens: [{ provider, token: f.token }] }, { limit: 10 });
    const dead = found.filter((d) => !f.invalidSince || d.lastSeenAt.getTime() <= f.invalidSince.getTime());
    const removed = await this.devices.removeDevices(f.app, dead, "token_invalid");
    if (removed) this.logger.info({ app: f.app, provider, reason: f.reason, removed }, "removed devices with invalid tokens");
    return removed;
  }
}

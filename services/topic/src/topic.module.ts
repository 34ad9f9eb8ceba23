import type { ServiceBinding } from "@herald/platform";
import type { Store } from "@herald/store";
import { TopicService } from "./topic.service.js";

export interface TopicModule {
  bindings: ServiceBinding[];
  topics: TopicService;
}

// Wires the topic service; used by its own main.ts and by the all-in-one `herald serve`.
export function createTopicModule(deps: { store: Store; now?: () => Date }): TopicModule {
  const topics = new TopicService({ store: deps.store, now: deps.now ?? (() => new Date()) });
  return { bindings: [topics.binding()], topics };
}

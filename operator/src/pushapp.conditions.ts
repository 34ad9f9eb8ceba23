import type { PushAppCondition } from "@herald/pushapp";

export const CONDITION = {
  ready: "Ready",
  credentialsValid: "CredentialsValid",
  appRegistered: "AppRegistered",
  topicsReady: "TopicsReady",
  sendersAvailable: "SendersAvailable",
} as const;

// The conditions Ready summarises, in the order a reconcile establishes them.
const PREREQUISITES = [CONDITION.credentialsValid, CONDITION.appRegistered, CONDITION.topicsReady, CONDITION.sendersAvailable];

// Builds the next condition list from the one the object had when the reconcile began. A
// condition keeps its lastTransitionTime while its status stays what it was then (as
// metav1.Condition requires), whatever the reconcile set in between: a pass that first says
// True and then, a step later, False again changes nothing when it was False before. So
// rewriting an unchanged status is a no-op that wakes no watcher.
export class Conditions {
  private readonly byType = new Map<string, PushAppCondition>();
  private readonly before = new Map<string, PushAppCondition>();

  constructor(
    current: PushAppCondition[] | undefined,
    private readonly generation: number,
    private readonly now: Date,
  ) {
    for (const c of current ?? []) {
      this.byType.set(c.type, c);
      this.before.set(c.type, c);
    }
  }

  set(type: string, status: PushAppCondition["status"], reason: string, message: string): void {
    const previous = this.before.get(type);
    this.byType.set(type, {
      type,
      status,
      reason,
      message,
      lastTransitionTime: previous && previous.status === status ? previous.lastTransitionTime : this.now.toISOString(),
      observedGeneration: this.generation,
    });
  }

  // The conditions whose status, reason or message differ from what the object had: what is
  // worth an Event.
  changed(): PushAppCondition[] {
    return this.list().filter((c) => {
      const b = this.before.get(c.type);
      return !b || b.status !== c.status || b.reason !== c.reason || b.message !== c.message;
    });
  }

  get(type: string): PushAppCondition | undefined {
    return this.byType.get(type);
  }

  // Ready is True when every prerequisite is; otherwise it carries the first failing one's
  // reason and message, so `kubectl get pushapps -o wide` says what to fix.
  // An app without an enabled provider is Ready with reason NoProviders: registered, its keys
  // work, but nothing is delivered.
  summarize(noProviders = false): void {
    const failing = PREREQUISITES.map((t) => this.byType.get(t)).find((c) => !c || c.status !== "True");
    if (!failing && noProviders) this.set(CONDITION.ready, "True", "NoProviders", "the app is registered and its API keys work, but no provider is enabled: nothing is delivered");
    else if (!failing) this.set(CONDITION.ready, "True", "Reconciled", "the app is registered, its topics exist and every sender is available");
    else this.set(CONDITION.ready, failing.status === "False" ? "False" : "Unknown", failing.reason, failing.message);
  }

  list(): PushAppCondition[] {
    const order = [CONDITION.ready, ...PREREQUISITES];
    return [...this.byType.values()].sort((a, b) => rank(order, a.type) - rank(order, b.type) || a.type.localeCompare(b.type));
  }
}

function rank(order: string[], type: string): number {
  const i = order.indexOf(type);
  return i < 0 ? order.length : i;
}

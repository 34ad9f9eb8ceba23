import { randomBytes } from "node:crypto";
import type { Logger } from "@herald/platform";
import { isStatus, type KubeClient } from "./kube.client.js";

export interface EventSubject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string };
}

export type EventType = "Normal" | "Warning";

interface Recorded {
  name: string;
  count: number;
  firstTimestamp: Date;
  lastTimestamp: number;
}

// Core v1 Events about PushApps (what `kubectl describe pushapp` lists), deduplicated the way
// client-go's event correlator does it: the same type, reason and message about the same object
// bumps `count` and `lastTimestamp` of the Event already written instead of writing a new one.
// The chart's RBAC grants exactly create and patch on events. An Event that cannot be written is
// logged, never fails a reconcile.
export class EventRecorder {
  private readonly recorded = new Map<string, Recorded>();

  constructor(
    private readonly o: {
      kube: KubeClient;
      component: string;
      instance: string;
      logger: Logger;
      now?: () => Date;
      // Events older than this are not bumped but written anew (the API server drops Events after
      // its --event-ttl, one hour by default).
      reuseForMs?: number;
      maxTracked?: number;
    },
  ) {}

  async record(subject: EventSubject, type: EventType, reason: string, message: string): Promise<void> {
    const now = this.o.now?.() ?? new Date();
    const { namespace, name, uid } = subject.metadata;
    const key = `${uid}\0${type}\0${reason}\0${message}`;
    const previous = this.recorded.get(key);
    try {
      if (previous && now.getTime() - previous.lastTimestamp < (this.o.reuseForMs ?? 30 * 60_000)) {
        try {
          const count = previous.count + 1;
          await this.o.kube.patchEvent(namespace, previous.name, { count, lastTimestamp: now.toISOString() });
          this.remember(key, { ...previous, count, lastTimestamp: now.getTime() });
          return;
        } catch (err) {
          // Expired or deleted meanwhile: write it anew.
          if (!isStatus(err, 404)) throw err;
        }
      }
      const eventName = `${name}.${randomBytes(8).toString("hex")}`;
      await this.o.kube.createEvent(namespace, {
        metadata: { name: eventName, namespace },
        involvedObject: { apiVersion: subject.apiVersion, kind: subject.kind, name, namespace, uid, resourceVersion: subject.metadata.resourceVersion },
        type,
        reason,
        message: message.slice(0, 1024),
        count: 1,
        firstTimestamp: now,
        lastTimestamp: now,
        source: { component: this.o.component },
        reportingComponent: this.o.component,
        reportingInstance: this.o.instance,
      });
      this.remember(key, { name: eventName, count: 1, firstTimestamp: now, lastTimestamp: now.getTime() });
    } catch (err) {
      this.o.logger.warn({ err, namespace, pushApp: name, reason }, "could not write an Event");
    }
  }

  // The PushApp is gone: its Events go with it (the API server expires them).
  forget(uid: string): void {
    for (const key of this.recorded.keys()) if (key.startsWith(`${uid}\0`)) this.recorded.delete(key);
  }

  private remember(key: string, value: Recorded): void {
    this.recorded.delete(key);
    this.recorded.set(key, value);
    // Oldest first in a Map: drop what was not repeated for longest.
    const max = this.o.maxTracked ?? 4096;
    while (this.recorded.size > max) this.recorded.delete(this.recorded.keys().next().value!);
  }
}

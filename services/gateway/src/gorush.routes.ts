import { availableParallelism } from "node:os";
import { getHeapStatistics } from "node:v8";
import { dispatch } from "@herald/proto";
import { AppSecrets, rpc, type AdminClients, type CallScope } from "./admin.clients.js";
import { anyJson, compatRoutes, type CompatSystem } from "./compat.api.js";
import { gorushFail, gorushScope, gorushTargets, notificationFault, sendGorush } from "./gorush.mapping.js";
import type { HttpError } from "./http.errors.js";
import type { Route } from "./http.router.js";

// gorush's HTTP API: POST /api/push with its notification array, answered {success, counts, logs};
// GET /api/stat/app (the app's gorush publishes summed) and /api/stat/go (the runtime's numbers,
// named as gorush names Go's). Each notification is mapped by gorush.mapping.ts, which the gRPC
// Gorush.Send (gorush.grpc.ts) shares.

// gorush's core.max_notification default.
const MAX_NOTIFICATIONS = 100;
// Publishes summed by GET /api/stat/app (newest first).
const MAX_STAT_PUBLISHES = 10_000;

// gorush's error body {code, message}; `error` added (the message again) because every refusal of
// the gateway names its error there.
export const gorushError = (e: HttpError) => ({ code: e.status, message: e.message, error: e.message });

interface LogEntry {
  type: "failed-push";
  platform: string;
  token: string;
  message: string;
  error: string;
  notif_id?: string;
}

export function gorushRoutes(c: AdminClients, secrets: AppSecrets, version: string): Route[] {
  const system: CompatSystem<CallScope, "app"> = {
    tag: "Gorush",
    errorBody: gorushError,
    // gorush binds the body as JSON whatever its content type (curl -d sends a form type); what
    // does not bind is its "Missing notifications field.".
    decode: anyJson(() => gorushFail(400, "Missing notifications field.")),
    auth: { app: (req) => gorushScope(secrets, typeof req.headers.authorization === "string" ? req.headers.authorization : undefined) },
  };

  return compatRoutes(system, [
    {
      method: "POST",
      pattern: "/api/push",
      summary: "gorush: send {notifications: [{tokens, platform 1|2|3, message, title, topic, data, ...}]} (at most 100) as raw-token publishes; answers {success, counts, logs}",
      auth: "app",
      handle: async ({ as, body }) => {
        const list = body().notifications;
        if (!Array.isArray(list)) throw gorushFail(400, "Missing notifications field.");
        if (list.length === 0) throw gorushFail(400, "Notifications field is empty.");
        if (list.length > MAX_NOTIFICATIONS) throw gorushFail(400, `Number of notifications(${list.length}) over limit(${MAX_NOTIFICATIONS})`);
        let counts = 0;
        const logs: LogEntry[] = [];
        for (const raw of list) {
          const n = raw !== null && typeof raw === "object" && !Array.isArray(raw) ? (raw as Record<string, unknown>) : {};
          const targets = gorushTargets(n);
          counts += targets.counts;
          try {
            await sendGorush(c, as, n);
          } catch (err) {
            if (!notificationFault(err)) throw err;
            // gorush checks each notification in its worker and logs what it refuses: here the
            // same refusals, and a publish Herald refuses, are failed-push log entries.
            const error = err.field && !err.message.startsWith(err.field) && err.error !== err.message ? `${err.field}: ${err.message}` : err.message;
            for (const token of targets.tokens.length ? targets.tokens : [""]) {
              logs.push({ type: "failed-push", platform: targets.platform?.name ?? String(n.platform), token, message: typeof n.message === "string" ? n.message : "", error, ...(typeof n.notif_id === "string" ? { notif_id: n.notif_id } : {}) });
            }
          }
        }
        return { body: { success: "ok", counts, logs } };
      },
    },
    {
      method: "GET",
      pattern: "/api/stat/app",
      summary: "gorush: the app's gorush publishes summed {total_count, ios/android/huawei {push_success, push_error}, ...}",
      auth: "app",
      handle: async ({ as }) => {
        const by = { ios: { push_success: 0, push_error: 0 }, android: { push_success: 0, push_error: 0 }, huawei: { push_success: 0, push_error: 0 } };
        let total = 0;
        let submitted = 0;
        let succeeded = 0;
        let failed = 0;
        let busy = 0;
        let cursor = "";
        while (submitted < MAX_STAT_PUBLISHES) {
          const page = await rpc(c.dispatch.listPublishes({ labels: { source: "gorush" }, page: { cursor, limit: 1000 } }, as));
          for (const p of page.publishes) {
            submitted++;
            const counts = p.counts;
            total += Number(counts?.targeted ?? 0);
            const platform = by[p.request?.labels.platform as keyof typeof by];
            if (platform) {
              platform.push_success += Number(counts?.sent ?? 0);
              platform.push_error += Number(counts?.failed ?? 0) + Number(counts?.invalidTokens ?? 0) + Number(counts?.expired ?? 0);
            }
            if (p.state === dispatch.PublishState.PUBLISH_STATE_DONE) succeeded++;
            else if (p.state === dispatch.PublishState.PUBLISH_STATE_FAILED || p.state === dispatch.PublishState.PUBLISH_STATE_EXPIRED || p.state === dispatch.PublishState.PUBLISH_STATE_CANCELLED) failed++;
            else busy++;
          }
          if (!page.hasMore) break;
          cursor = page.nextCursor;
        }
        return { body: { version: `herald-${version}`, busy_workers: busy, success_tasks: succeeded, failure_tasks: failed, submitted_tasks: submitted, total_count: total, ...by } };
      },
    },
    {
      method: "GET",
      pattern: "/api/stat/go",
      summary: "gorush: the gateway process's runtime numbers under gorush's names (memory_sys = RSS, heap_* = V8's heap; go_version names Node.js)",
      auth: "app",
      handle: async () => ({ body: runtimeStats() }),
    },
  ]);
}

// gorush answers Go's runtime.MemStats here; these are the Node.js numbers that mean the same.
// Go-only counters (cgo calls, mallocs, GC pauses) have no equivalent and are left out rather
// than sent as zeros.
function runtimeStats() {
  const m = process.memoryUsage();
  const heap = getHeapStatistics();
  const cpus = availableParallelism();
  return {
    time: Date.now() * 1_000_000,
    go_version: `node${process.version}`,
    go_os: process.platform,
    go_arch: process.arch,
    cpu_num: cpus,
    goroutine_num: process.getActiveResourcesInfo().length,
    gomaxprocs: cpus,
    memory_alloc: m.heapUsed + m.external,
    memory_sys: m.rss,
    heap_alloc: m.heapUsed,
    heap_sys: m.heapTotal,
    heap_idle: m.heapTotal - m.heapUsed,
    heap_inuse: m.heapUsed,
    gc_next: heap.heap_size_limit,
  };
}

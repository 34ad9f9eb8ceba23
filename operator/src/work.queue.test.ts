import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { replicasForLag, ScaleStabilizer } from "./sender.autoscaler.js";
import { Conditions } from "./pushapp.conditions.js";
import { referencedSecrets } from "./pushapp.controller.js";
import { WorkQueue } from "./work.queue.js";

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

describe("WorkQueue", () => {
  test("repeats of a queued key merge into one run", async () => {
    const runs: string[] = [];
    const busy = gate();
    const queue = new WorkQueue(
      async (key) => {
        runs.push(key);
        if (key === "busy") await busy.opened;
      },
      { concurrency: 1 },
    );
    queue.add("busy");
    for (const key of ["a", "b", "a", "b", "a"]) queue.add(key);
    assert.equal(queue.depth, 3);
    busy.open();
    await queue.idle();
    assert.deepEqual(runs, ["busy", "a", "b"]);
  });

  test("a key is never run twice at once; an add while it runs makes exactly one more run", async () => {
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const first = gate();
    const queue = new WorkQueue(
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        runs++;
        if (runs === 1) await first.opened;
        active--;
      },
      { concurrency: 4 },
    );
    queue.add("k");
    queue.add("k");
    queue.add("k");
    queue.add("k");
    assert.equal(queue.depth, 1);
    first.open();
    await queue.idle();
    assert.equal(maxActive, 1);
    assert.equal(runs, 2);
  });

  test("different keys run concurrently up to the limit", async () => {
    let active = 0;
    let maxActive = 0;
    const release = gate();
    const queue = new WorkQueue(
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        await release.opened;
        active--;
      },
      { concurrency: 2 },
    );
    for (const k of ["a", "b", "c", "d"]) queue.add(k);
    assert.equal(queue.depth, 4);
    release.open();
    await queue.idle();
    assert.equal(maxActive, 2);
  });

  test("a failing key is retried with growing backoff until it succeeds", async () => {
    const attempts: number[] = [];
    const delays: number[] = [];
    const done = gate();
    const queue = new WorkQueue(
      async () => {
        attempts.push(Date.now());
        if (attempts.length < 3) throw new Error("not yet");
        done.open();
      },
      { concurrency: 1, baseMs: 5, maxMs: 1000, onError: (_key, _err, retryInMs) => delays.push(retryInMs) },
    );
    queue.add("k");
    await done.opened;
    assert.deepEqual(delays, [5, 10]);
    assert.equal(attempts.length, 3);
    await queue.stop();
  });

  test("a handler that returns backoff is retried on the failure schedule, capped, and reset by a success", async () => {
    const attempts: number[] = [];
    const done = gate();
    const queue = new WorkQueue(
      async () => {
        attempts.push(performance.now());
        if (attempts.length < 5) return "backoff";
        done.open();
      },
      { concurrency: 1, baseMs: 20, maxMs: 40 },
    );
    queue.add("k");
    await done.opened;
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    // 20, 40, 40, 40 (capped): the timers never fire early.
    assert.deepEqual(gaps.map((g, i) => g >= [20, 40, 40, 40][i]! - 1), [true, true, true, true], JSON.stringify(gaps));
    await queue.stop();
  });

  test("addAfter keeps the earliest of two delayed adds; stop drops delayed work", async () => {
    const runs: string[] = [];
    const queue = new WorkQueue(async (key) => void runs.push(key), { concurrency: 1 });
    const ran = new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (runs.length) {
          clearInterval(check);
          resolve();
        }
      }, 1);
    });
    queue.addAfter("late", 60_000);
    queue.addAfter("late", 1);
    await ran;
    assert.deepEqual(runs, ["late"]);
    queue.addAfter("never", 5);
    await queue.stop();
    queue.add("after-stop");
    assert.equal(queue.depth, 0);
  });
});

describe("lag-based scaling", () => {
  const spec = { minReplicas: 1, maxReplicas: 5, targetLagPerReplica: 1000 };
  test("replicas = ceil(lag / target) within [min, max]", () => {
    assert.equal(replicasForLag(0, spec), 1);
    assert.equal(replicasForLag(1000, spec), 1);
    assert.equal(replicasForLag(1001, spec), 2);
    assert.equal(replicasForLag(4500, spec), 5);
    assert.equal(replicasForLag(1_000_000, spec), 5);
  });

  test("minReplicas 0: no sender while nothing waits, one as soon as a delivery does", () => {
    const toZero = { ...spec, minReplicas: 0 };
    assert.equal(replicasForLag(0, toZero), 0);
    assert.equal(replicasForLag(1, toZero), 1);
    assert.equal(replicasForLag(2500, toZero), 3);
  });

  test("scale-up is immediate, scale-down waits out the stabilization window", () => {
    let now = 0;
    const stabilizer = new ScaleStabilizer(300_000, () => now);
    assert.equal(stabilizer.recommend("a", 2), 2);
    now += 10_000;
    assert.equal(stabilizer.recommend("a", 5), 5);
    now += 10_000;
    assert.equal(stabilizer.recommend("a", 1), 5, "still within the window of the 5");
    now += 300_000;
    assert.equal(stabilizer.recommend("a", 1), 1);
    stabilizer.forget("a");
    assert.equal(stabilizer.recommend("a", 3), 3);
  });
});

describe("Conditions", () => {
  test("a pass that sets a condition True and then False again changes nothing when it was False", () => {
    const t0 = new Date("2026-01-01T00:00:00Z");
    const first = new Conditions(undefined, 1, t0);
    first.set("CredentialsValid", "False", "ApplyFailed", "the credentials Secret was refused");
    first.summarize();
    const second = new Conditions(first.list(), 1, new Date("2026-01-01T00:00:01Z"));
    second.set("CredentialsValid", "True", "Valid", "ok");
    second.set("CredentialsValid", "False", "ApplyFailed", "the credentials Secret was refused");
    second.summarize();
    assert.deepEqual(second.list(), first.list());
    assert.deepEqual(second.changed(), []);
  });

  test("an app without providers is Ready with reason NoProviders", () => {
    const c = new Conditions(undefined, 1, new Date());
    for (const type of ["CredentialsValid", "AppRegistered", "TopicsReady", "SendersAvailable"]) c.set(type, "True", "Ok", "ok");
    c.summarize(true);
    assert.deepEqual([c.get("Ready")?.status, c.get("Ready")?.reason], ["True", "NoProviders"]);
  });

  test("lastTransitionTime moves only when the status changes; Ready summarises the first failing prerequisite", () => {
    const t0 = new Date("2026-01-01T00:00:00Z");
    const first = new Conditions(undefined, 1, t0);
    first.set("CredentialsValid", "False", "SecretNotFound", "apns: Secret missing");
    first.summarize();
    const ready = first.list()[0]!;
    assert.deepEqual([ready.type, ready.status, ready.reason], ["Ready", "False", "SecretNotFound"]);

    const t1 = new Date("2026-01-01T00:05:00Z");
    const second = new Conditions(first.list(), 2, t1);
    second.set("CredentialsValid", "False", "SecretNotFound", "apns: Secret missing");
    second.set("AppRegistered", "True", "Registered", "ok");
    second.set("TopicsReady", "True", "TopicsExist", "ok");
    second.set("SendersAvailable", "True", "Available", "ok");
    second.summarize();
    assert.equal(second.get("CredentialsValid")!.lastTransitionTime, t0.toISOString());
    assert.equal(second.get("CredentialsValid")!.observedGeneration, 2);
    second.set("CredentialsValid", "True", "Valid", "ok");
    second.summarize();
    assert.equal(second.get("CredentialsValid")!.lastTransitionTime, t1.toISOString());
    assert.deepEqual(
      second.list().map((c) => `${c.type}=${c.status}`),
      ["Ready=True", "CredentialsValid=True", "AppRegistered=True", "TopicsReady=True", "SendersAvailable=True"],
    );
  });
});

test("referencedSecrets finds every Secret a spec points at", () => {
  const spec = {
    providers: {
      apns: { auth: { certificate: { secretRef: { name: "cert", key: "p12" }, passwordSecretRef: { name: "cert-pass", key: "pw" } } } },
      fcm: { serviceAccountSecretRef: { name: "fcm", key: "sa.json" } },
      webpush: { vapidKeysSecretRef: { name: "vapid", key: "v.json" } },
    },
  };
  assert.deepEqual([...referencedSecrets(spec)].sort(), ["cert", "cert-pass", "fcm", "vapid"]);
});

import { dispatch, type Lane } from "@herald/proto";

// Publishes naming at most this many device ids, raw tokens or users are small by construction:
// their fan-out is one batch and their jobs are a few, so they take the urgent lane whatever
// their priority says. Users count as targets too: a user has a handful of devices, and nothing
// bounds it, so a user with thousands of devices would be a bulk-sized job on the urgent lane (an
// accepted risk, not a guarantee). A topic, tag filter or "all" can be any size and is only known
// by reading it, which the publish call does not do: bulk.
export const SMALL_PUBLISH_TARGETS = 100;

// The lane of a publish (see LANES in @herald/proto): a pure function of the accepted request,
// so the publish API, the scheduler and a fan-out resumed after a crash all agree without
// storing it. PRIORITY_LOW asks for no hurry and stays bulk even when small; PRIORITY_HIGH is
// urgent even for a broadcast, which then shares the urgent lane with the small publishes (the
// app asked for it; per-app rules are not configurable yet).
export function laneOf(request: Pick<dispatch.PublishRequest, "priority" | "recipients">): Lane {
  if (request.priority === dispatch.Priority.PRIORITY_HIGH) return "urgent";
  if (request.priority === dispatch.Priority.PRIORITY_LOW) return "bulk";
  const target = request.recipients?.target;
  switch (target?.$case) {
    case "native":
      return "urgent";
    case "deviceIds":
    case "users":
      return target.value.values.length <= SMALL_PUBLISH_TARGETS ? "urgent" : "bulk";
    case "tokens":
      return target.value.tokens.length <= SMALL_PUBLISH_TARGETS ? "urgent" : "bulk";
    default:
      return "bulk";
  }
}

import { dispatch, type Lane } from "@herald/proto";

// Publishes naming at most this many device ids, raw tokens or users (unless the app's
// urgent_max_targets says otherwise) are small by construction:
// their fan-out is one batch and their jobs are a few, so they take the urgent lane whatever
// their priority says. Users count as targets too: a user has a handful of devices, and nothing
// bounds it, so a user with thousands of devices would be a bulk-sized job on the urgent lane (an
// accepted risk, not a guarantee). A topic, tag filter or "all" can be any size and is only known
// by reading it, which the publish call does not do: bulk.
export const SMALL_PUBLISH_TARGETS = 100;

// The lane of a publish (see LANES in @herald/proto), decided when it is handed to the fan-out
// from the request and the app's urgent_max_targets (0: SMALL_PUBLISH_TARGETS). The fan-out puts
// the jobs on the lane the publish arrived on, so an app's rule changed meanwhile moves nothing.
// PRIORITY_LOW asks for no hurry and stays bulk even when small; PRIORITY_HIGH is urgent even
// for a broadcast, which then shares the urgent lane with the small publishes (the app asked).
export function laneOf(request: Pick<dispatch.PublishRequest, "priority" | "recipients">, urgentMaxTargets = 0): Lane {
  const small = urgentMaxTargets || SMALL_PUBLISH_TARGETS;
  if (request.priority === dispatch.Priority.PRIORITY_HIGH) return "urgent";
  if (request.priority === dispatch.Priority.PRIORITY_LOW) return "bulk";
  const target = request.recipients?.target;
  switch (target?.$case) {
    case "native":
      return "urgent";
    case "deviceIds":
    case "users":
      return target.value.values.length <= small ? "urgent" : "bulk";
    case "tokens":
      return target.value.tokens.length <= small ? "urgent" : "bulk";
    default:
      return "bulk";
  }
}

import { dispatch } from "@herald/proto";
import type { PublishRecord, PublishStateName } from "@herald/store";

const { PublishState: S } = dispatch;

export const STATE_ENUM: Record<PublishStateName, dispatch.PublishState> = {
  queued: S.PUBLISH_STATE_QUEUED,
  scheduled: S.PUBLISH_STATE_SCHEDULED,
  fanning_out: S.PUBLISH_STATE_FANNING_OUT,
  sending: S.PUBLISH_STATE_SENDING,
  done: S.PUBLISH_STATE_DONE,
  cancelled: S.PUBLISH_STATE_CANCELLED,
  expired: S.PUBLISH_STATE_EXPIRED,
  failed: S.PUBLISH_STATE_FAILED,
};

export const stateName = (state: dispatch.PublishState): PublishStateName | undefined =>
  (Object.entries(STATE_ENUM).find(([, v]) => v === state)?.[0] as PublishStateName | undefined);

export function toPublishProto(p: PublishRecord): dispatch.Publish {
  return {
    id: p.id,
    uid: p.uid,
    state: STATE_ENUM[p.state],
    counts: { ...p.counts, failedByReason: { ...p.counts.failedByReason } },
    request: dispatch.PublishRequest.decode(p.request),
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
    ...(p.startedAt ? { startedAt: p.startedAt } : {}),
    ...(p.finishedAt ? { finishedAt: p.finishedAt } : {}),
    error: p.error,
  };
}

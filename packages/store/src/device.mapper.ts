import type { common } from "@herald/proto";
import { platformEnum, providerEnum } from "./domain.rules.js";
import type { DeviceRecord } from "./store.types.js";

export interface DeviceIncludes {
  topics?: string[];
  tags?: boolean;
  meta?: boolean;
}

export function toDeviceProto(d: DeviceRecord, include: DeviceIncludes = { tags: true, meta: true }): common.Device {
  return {
    id: d.id,
    provider: providerEnum(d.provider),
    platform: platformEnum(d.platform),
    token: d.token,
    user: d.user,
    topics: include.topics ?? [],
    tags: include.tags ? { ...d.tags } : {},
    meta: include.meta ? { ...d.meta } : {},
    locale: d.locale,
    timezone: d.timezone,
    createdAt: d.createdAt,
    updatedAt: d.updatedAt,
    lastSeenAt: d.lastSeenAt,
  };
}

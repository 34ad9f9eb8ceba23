import { invalidArgument } from "@herald/platform";
import { dispatch } from "@herald/proto";
import {
  ALL_PROVIDERS,
  checkTopics,
  checkUserId,
  normalizeToken,
  PLATFORM_NAMES,
  parseProvider,
  type PlatformName,
  type ProviderName,
  type TokenRules,
} from "@herald/store";

export const LIMITS = { deviceIds: 10_000, users: 1000, topics: 100, tokens: 1000, excluded: 10_000, tagConditions: 20 } as const;

export interface CheckedRecipients {
  recipients: dispatch.Recipients;
  // Providers this publish can reach: payloads are checked for these.
  providers: ProviderName[];
}

// Validates "exactly one recipient kind" and its limits, and canonicalises raw tokens the same way
// the registry does. Errors name the field (recipients.topics[3], recipients.tokens.tokens[0], ...).
export function checkRecipients(r: dispatch.Recipients | undefined, rules: TokenRules): CheckedRecipients {
  if (!r?.target) throw invalidArgument("recipients", "name exactly one of device_ids, users, topics, tags, tokens, native or all", "RECIPIENTS_REQUIRED");
  const narrowed = r.providers.map((p, i) => parseProvider(p, `recipients.providers[${i}]`));
  r.platforms.forEach((p, i) => {
    if (!PLATFORM_NAMES[p]) throw invalidArgument(`recipients.platforms[${i}]`, "unknown platform", "INVALID_PLATFORM");
  });
  if (r.excludeDeviceIds.length > LIMITS.excluded) throw invalidArgument("recipients.exclude_device_ids", `at most ${LIMITS.excluded}`, "TOO_MANY_RECIPIENTS");
  const target = r.target;
  let providers = narrowed.length ? narrowed : [...ALL_PROVIDERS];
  let checked: dispatch.Recipients["target"] = target;
  switch (target.$case) {
    case "deviceIds":
      bounded(target.value.values, 1, LIMITS.deviceIds, "recipients.device_ids");
      break;
    case "users":
      bounded(target.value.values, 1, LIMITS.users, "recipients.users");
      target.value.values.forEach((u, i) => checkUserId(u, `recipients.users[${i}]`));
      break;
    case "topics":
      bounded(target.value.values, 1, LIMITS.topics, "recipients.topics");
      checkTopics(target.value.values, "recipients.topics");
      break;
    case "tags":
      bounded(target.value.all, 1, LIMITS.tagConditions, "recipients.tags.all");
      target.value.all.forEach((m, i) => {
        if (!m.key) throw invalidArgument(`recipients.tags.all[${i}].key`, "is required");
      });
      break;
    case "tokens": {
      const provider = parseProvider(target.value.provider, "recipients.tokens.provider");
      bounded(target.value.tokens, 1, LIMITS.tokens, "recipients.tokens.tokens");
      const tokens = target.value.tokens.map((t, i) => normalizeToken(provider, t, rules, `recipients.tokens.tokens[${i}]`));
      checked = { $case: "tokens", value: { provider: target.value.provider, tokens: [...new Set(tokens)] } };
      providers = [provider];
      break;
    }
    case "native": {
      const provider = parseProvider(target.value.provider, "recipients.native.provider");
      if (provider !== "fcm" && provider !== "hms") throw invalidArgument("recipients.native.provider", "native topics and conditions exist for FCM and HMS only");
      const t = target.value.target;
      if (!t || !t.value) throw invalidArgument("recipients.native", "name a topic or a condition");
      providers = [provider];
      break;
    }
    case "all":
      break;
  }
  if (narrowed.length && !providers.every((p) => narrowed.includes(p))) {
    throw invalidArgument("recipients.providers", "does not include the provider of the tokens or native target");
  }
  return { recipients: { ...r, target: checked }, providers };
}

export const platformsOf = (r: dispatch.Recipients): PlatformName[] => r.platforms.map((p) => PLATFORM_NAMES[p]!).filter(Boolean);

function bounded(list: unknown[], min: number, max: number, field: string): void {
  if (list.length < min) throw invalidArgument(field, "name at least one", "RECIPIENTS_REQUIRED");
  if (list.length > max) throw invalidArgument(field, `at most ${max} per publish (got ${list.length})`, "TOO_MANY_RECIPIENTS");
}

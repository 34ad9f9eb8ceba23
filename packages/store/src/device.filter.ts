import { invalidArgument } from "@herald/platform";
import type { common } from "@herald/proto";
import { checkUserId, normalizeToken, parseProvider, PLATFORM_NAMES, type TokenRules } from "./domain.rules.js";
import type { DeviceQuery } from "./store.types.js";

// An API DeviceFilter as a store query, each field checked and named under `field` ("filter",
// "device_filter"). Provider tokens are normalized with the provider's token rules; a service
// without them (the topic service) refuses provider_tokens.
export function deviceQueryOf(filter: common.DeviceFilter, field: string, tokenRules?: TokenRules): DeviceQuery {
  const query: DeviceQuery = {};
  if (filter.ids.length) query.ids = filter.ids;
  if (filter.users.length) query.users = filter.users.map((u, i) => checkUserId(u, `${field}.users[${i}]`));
  if (filter.providerTokens.length) {
    if (!tokenRules) throw invalidArgument(`${field}.provider_tokens`, "is not supported here; filter by device ids");
    query.tokens = filter.providerTokens.map((pt, i) => {
      const provider = parseProvider(pt.provider, `${field}.provider_tokens[${i}].provider`);
      return { provider, token: normalizeToken(provider, pt.token, tokenRules, `${field}.provider_tokens[${i}].token`) };
    });
  }
  if (filter.providers.length) query.providers = filter.providers.map((p, i) => parseProvider(p, `${field}.providers[${i}]`));
  if (filter.platforms.length) {
    query.platforms = filter.platforms.map((p, i) => {
      const name = PLATFORM_NAMES[p];
      if (!name) throw invalidArgument(`${field}.platforms[${i}]`, "unknown platform", "INVALID_PLATFORM");
      return name;
    });
  }
  if (filter.tags?.all.length) {
    query.tags = filter.tags.all.map((m, i) => {
      if (!m.key) throw invalidArgument(`${field}.tags.all[${i}].key`, "is required");
      // Stored keys are NFC (checkStringMap), so a query in another spelling still matches.
      return { key: m.key.normalize("NFC"), values: m.values };
    });
  }
  return query;
}

import type { KeyLookupResult } from "@herald/platform";
import type { Store } from "./store.types.js";

// Adapts the key repository to the platform authenticator.
export const apiKeyLookup =
  (store: Store) =>
  async (hash: string): Promise<KeyLookupResult | null> => {
    const key = await store.apiKeys.findByHash(hash);
    return key ? { app: key.app, role: key.role, keyId: key.id, revoked: key.revokedAt !== null } : null;
  };

import { createClient, type AsyncClient } from "@herald/platform";
import { topic } from "@herald/proto";
import type { Store } from "@herald/store";
import { streamRecipients } from "@herald/topic";

// Where the fan-out reads the devices of a publish from: the topic service over gRPC in the
// distributed mode, the store directly in the embedded mode. Both deliver batches in device-id
// order, resumable after a device id, and wait for each batch to be handled before the next.
export interface RecipientSource {
  forEachBatch(app: string, request: topic.StreamRecipientsRequest, signal: AbortSignal, onBatch: (recipients: topic.Recipient[]) => Promise<void>): Promise<void>;
}

export const storeRecipients = (store: Store): RecipientSource => ({
  forEachBatch: (app, request, signal, onBatch) => streamRecipients(store, request, { app, signal }, (r) => onBatch(r.recipients)),
});

// The dispatcher calls the topic service with the admin key and names the app per call.
export function grpcRecipients(address: string, adminKey: string): RecipientSource & { close(): void } {
  const clients = new Map<string, AsyncClient<typeof topic.TopicServiceService>>();
  const clientFor = (app: string) => {
    let c = clients.get(app);
    if (!c) clients.set(app, (c = createClient(topic.TopicServiceService, topic, address, { apiKey: adminKey, app })));
    return c;
  };
  return {
    async forEachBatch(app, request, signal, onBatch) {
      for await (const r of clientFor(app).streamRecipients(request, { signal })) await onBatch(r.recipients);
    },
    close() {
      for (const c of clients.values()) c.close();
    },
  };
}

import type { IncomingMessage, ServerResponse } from "node:http";
import * as grpc from "@grpc/grpc-js";
import { createClient, type Logger } from "@herald/platform";
import { apps, descriptorSetPath, dispatch, registry, topic } from "@herald/proto";
import { AppSecrets, type AdminClients } from "./admin.clients.js";
import { beamsRoutes } from "./beams.routes.js";
import { centrifugoRoutes } from "./centrifugo.routes.js";
import { channelsRoutes } from "./channels.routes.js";
import { startGorushGrpc, type GorushGrpc } from "./gorush.grpc.js";
import { gorushRoutes } from "./gorush.routes.js";
import { kinveyRoutes } from "./kinvey.routes.js";
import { pushletRoutes } from "./pushlet.routes.js";
import { createRouter, type Route } from "./http.router.js";
import { openApiDocument } from "./openapi.document.js";
import { requestAuth } from "./request.auth.js";
import { loadCatalog, type RpcCatalog } from "./rpc.catalog.js";
import { rpcRoutes } from "./rpc.routes.js";

// Which process serves each public gRPC service.
export const GATEWAY_SERVICES = {
  "herald.registry.v1.RegistryService": "registry",
  "herald.registry.v1.AppService": "registry",
  "herald.topic.v1.TopicService": "topic",
  "herald.dispatch.v1.DispatchService": "dispatcher",
} as const;

export type UpstreamName = (typeof GATEWAY_SERVICES)[keyof typeof GATEWAY_SERVICES];

export interface GatewayOptions {
  // host:port of each service (all the same in the embedded server).
  addresses: Record<UpstreamName, string>;
  // The admin key: the compatibility APIs (Pusher Beams) act on apps with it; without it they
  // are not served.
  adminKey?: string;
  maxBodyBytes: number;
  logger: Logger;
  version: string;
  onRequest?: (route: string, method: string, status: number, seconds: number) => void;
}

export interface Gateway {
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  catalog: RpcCatalog;
  // gorush's gRPC API on an address of its own (needs the admin key, as the HTTP compat APIs do).
  listenGorush(address: string): Promise<GorushGrpc>;
  close(): void;
}

// The HTTP gateway as a request handler: the generic mapping of every public RPC, the OpenAPI
// document, and a health route. Used by its own main.ts and by the embedded server.
export function createGateway(o: GatewayOptions): Gateway {
  const catalog = loadCatalog(descriptorSetPath, Object.keys(GATEWAY_SERVICES));
  const clients = new Map<UpstreamName, grpc.Client>();
  const upstream = (service: string) => {
    const name = GATEWAY_SERVICES[service as keyof typeof GATEWAY_SERVICES];
    let client = clients.get(name);
    if (!client) {
      client = new grpc.Client(o.addresses[name], grpc.credentials.createInsecure());
      clients.set(name, client);
    }
    return client;
  };
  const compat: Route[] = [];
  let gorushGrpc: ((address: string) => Promise<GorushGrpc>) | undefined;
  const opened: Array<{ close(): void }> = [];
  const admin = { apiKey: o.adminKey };
  const appsClient = o.adminKey ? createClient(apps.AppServiceService, apps, o.addresses.registry, admin) : undefined;
  if (appsClient) opened.push(appsClient);
  const auth = requestAuth(appsClient, o.adminKey);
  if (appsClient) {
    const clients: AdminClients = {
      apps: appsClient,
      registry: createClient(registry.RegistryServiceService, registry, o.addresses.registry, admin),
      topic: createClient(topic.TopicServiceService, topic, o.addresses.topic, admin),
      dispatch: createClient(dispatch.DispatchServiceService, dispatch, o.addresses.dispatcher, admin),
    };
    opened.push(clients.registry, clients.topic, clients.dispatch);
    const secrets = new AppSecrets(clients);
    gorushGrpc = (address) => startGorushGrpc({ clients, secrets, address, logger: o.logger.child({ component: "gorush-grpc" }) });
    compat.push(...beamsRoutes(clients, secrets), ...kinveyRoutes(clients, secrets), ...pushletRoutes(clients, secrets), ...channelsRoutes(clients, secrets), ...gorushRoutes(clients, secrets, o.version), ...centrifugoRoutes(clients, secrets, o.logger));
  } else {
    o.logger.warn("no admin key: the Pusher Beams-compatible routes are not served");
  }
  const document = openApiDocument(catalog, compat.filter((r) => r.doc).map((r) => ({ method: r.method, pattern: r.pattern, ...r.doc! })), o.version);
  const routes: Route[] = [
    ...rpcRoutes(catalog, upstream, auth),
    ...compat,
    { method: "GET", pattern: "/openapi.json", handle: async () => ({ body: document }) },
    { method: "GET", pattern: "/healthz", probe: true, handle: async () => ({ body: { status: "ok" } }) },
  ];
  return {
    handler: createRouter({ routes, maxBodyBytes: o.maxBodyBytes, logger: o.logger, onRequest: o.onRequest }),
    catalog,
    listenGorush: (address) => {
      if (!gorushGrpc) throw new Error("the gorush gRPC API needs the admin key (HERALD_ADMIN_KEY)");
      return gorushGrpc(address);
    },
    close: () => {
      for (const c of [...clients.values(), ...opened]) c.close();
    },
  };
}

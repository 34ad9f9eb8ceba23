import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface HttpServer {
  port: number;
  close(): Promise<void>;
}

// Listens on host:port (port 0: any free port); close() stops accepting, ends idle keep-alive
// connections, and waits for the requests in flight.
export async function startHttpServer(address: string, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<HttpServer> {
  const at = address.lastIndexOf(":");
  const host = address.slice(0, at).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(at + 1));
  const server = createServer(handler);
  // Beyond node's 5 s default: clients behind load balancers keep connections longer.
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

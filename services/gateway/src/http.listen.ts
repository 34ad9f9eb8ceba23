import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

// node's own statuses for what its parser refuses; anything else is a 400.
const CLIENT_ERRORS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, "Request Header Fields Too Large", "HEADERS_TOO_LARGE"],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, "Payload Too Large", "PAYLOAD_TOO_LARGE"],
  ERR_HTTP_REQUEST_TIMEOUT: [408, "Request Timeout", "REQUEST_TIMEOUT"],
};

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
  // What node's HTTP parser refuses (a raw non-ASCII byte in the path, a broken header) never
  // reaches the router; node would answer a bare 400 without a body. Answered here in the
  // gateway's JSON shape instead ({error, description}, which is also Beams' shape).
  server.on("clientError", (err: NodeJS.ErrnoException, socket) => {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, title, error] = CLIENT_ERRORS[err.code ?? ""] ?? [400, "Bad Request", "MALFORMED_REQUEST"];
    const body = JSON.stringify({ error, description: `the request is not valid HTTP/1.1 (${err.code ?? "parse error"})` });
    socket.end(`HTTP/1.1 ${status} ${title}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  });
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

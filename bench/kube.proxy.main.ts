// The counting API server proxy of bench/kube.proxy.ts as a process of its own, driven over IPC
// by the benchmark: argv[2] is the kubeconfig to proxy.
import { startKubeProxyServer, type ProxyReply, type ProxyRequest } from "./kube.proxy.js";

const send = (m: ProxyReply) => process.send!(m);
try {
  const proxy = await startKubeProxyServer(process.argv[2]!);
  process.on("message", (m: ProxyRequest) => {
    if (m.type === "snapshot") send({ type: "snapshot", id: m.id, traffic: proxy.snapshot(), connections: proxy.connections() });
  });
  const stop = () => void proxy.close().finally(() => process.exit(0));
  process.once("SIGTERM", stop);
  // The driver is gone: so is the proxy.
  process.once("disconnect", stop);
  send({ type: "ready", url: proxy.url, kubeconfig: proxy.kubeconfig });
} catch (err) {
  send({ type: "failed", error: (err as Error).stack ?? String(err) });
  process.exit(1);
}

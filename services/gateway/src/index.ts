export { createGateway, GATEWAY_SERVICES, type Gateway, type GatewayOptions } from "./gateway.module.js";
export { startHttpServer, type HttpServer } from "./http.listen.js";
export { gatewayEnv, type GatewayConfig } from "./gateway.config.js";

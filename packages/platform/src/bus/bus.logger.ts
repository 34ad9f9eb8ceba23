// The part of a pino logger the bus uses, so the bus does not depend on pino and tests can pass
// a plain object.
export interface BusLogger {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

// Used when no logger is given: a consumer that retries a failing handler forever must not do
// so silently, but routine events stay quiet.
export const consoleBusLogger: BusLogger = {
  error: (obj, msg) => console.error(`[herald.bus] ${msg ?? ""}`, obj),
  warn: (obj, msg) => console.warn(`[herald.bus] ${msg ?? ""}`, obj),
  info: () => {},
  debug: () => {},
};

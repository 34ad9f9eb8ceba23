import { lookup as dnsLookup, type LookupAddress, type LookupAllOptions, type LookupOneOptions } from "node:dns";
import { BlockList, isIP } from "node:net";

// Where outbound calls to user-configured URLs (webhooks) may not go: link-local and the cloud
// metadata services (169.254.169.254, Alibaba's 100.100.100.200, AWS's fd00:ec2::254), and
// "this network" addresses, which reach the host itself. Private ranges stay allowed by default because
// a self-hosted receiver usually lives in the same cluster; deployments add them (and loopback,
// as the chart does) with HERALD_WEBHOOK_DENIED_NETWORKS.
export const DEFAULT_DENIED_NETWORKS = ["0.0.0.0/8", "169.254.0.0/16", "100.100.100.200/32", "::/128", "fe80::/10", "fd00:ec2::254/128"];

export class DeniedAddressError extends Error {
  readonly code = "EDENIEDADDRESS";
  constructor(readonly host: string, readonly address: string) {
    super(host === address ? `${address} is in a denied network` : `${host} resolves to ${address}, which is in a denied network`);
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

export class NetworkPolicy {
  private readonly denied = new BlockList();

  // Throws on a malformed CIDR, naming it, so a bad setting stops the process at start.
  constructor(readonly cidrs: readonly string[] = DEFAULT_DENIED_NETWORKS) {
    for (const cidr of cidrs) {
      const [address = "", bits, extra] = cidr.trim().split("/");
      const family = isIP(address);
      const prefix = Number(bits);
      if (family === 0 || extra !== undefined || bits === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > (family === 4 ? 32 : 128)) {
        throw new Error(`"${cidr}" is not a network in CIDR notation (like 10.0.0.0/8 or fc00::/7)`);
      }
      this.denied.addSubnet(address, prefix, family === 4 ? "ipv4" : "ipv6");
    }
  }

  denies(address: string): boolean {
    const family = isIP(address);
    if (family === 0) return false;
    // An IPv4-mapped IPv6 address reaches the IPv4 host.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return this.denied.check(mapped[1]!, "ipv4");
    return this.denied.check(address, family === 4 ? "ipv4" : "ipv6");
  }

  // For a URL's host before connecting: an IP literal never goes through lookup.
  checkHost(hostname: string): void {
    const host = hostname.replace(/^\[(.*)\]$/, "$1");
    if (isIP(host) && this.denies(host)) throw new DeniedAddressError(host, host);
  }

  // A dns.lookup for http(s).request: the addresses are checked as resolved, at connect time, so
  // a name that changes its answer after configuration (DNS rebinding) cannot slip through. One
  // denied answer refuses the name.
  readonly lookup = (hostname: string, options: LookupOneOptions | LookupAllOptions, callback: LookupCallback): void => {
    dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, "");
      const bad = addresses.find((a) => this.denies(a.address));
      if (bad) return callback(new DeniedAddressError(hostname, bad.address), "");
      if (options.all) return callback(null, addresses);
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" }), "");
      callback(null, first.address, first.family);
    });
  };
}

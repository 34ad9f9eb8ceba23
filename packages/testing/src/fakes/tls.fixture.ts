import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestTls {
  // PEM of the test CA: give it to clients (`ca`) so they trust the fakes.
  ca: string;
  // Server certificate and key, valid for localhost, 127.0.0.1 and the providers' real host names
  // (so clients can keep `servername` set to the production host, as the production path does).
  cert: string;
  key: string;
  // Issues a client certificate (APNs certificate auth), signed by the same CA.
  issueClient(commonName: string): { cert: string; key: string };
  // The same as a .p12 bundle, as Keychain Access exports push certificates.
  toPkcs12(client: { cert: string; key: string }, passphrase: string): Buffer;
}

const SERVER_NAMES = [
  "localhost",
  "api.push.apple.com",
  "api.sandbox.push.apple.com",
  "fcm.googleapis.com",
  "oauth2.googleapis.com",
  "accounts.google.com",
  "push-api.cloud.huawei.com",
  "oauth-login.cloud.huawei.com",
  "updates.push.services.mozilla.com",
  "web.push.apple.com",
];

let cached: TestTls | undefined;

// A throwaway CA and server certificate made with the openssl CLI, once per process. Test only:
// nothing here is a secret, and nothing is written into the repository.
export function testTls(): TestTls {
  if (cached) return cached;
  const dir = mkdtempSync(join(tmpdir(), "herald-tls-"));
  const ssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  const ecKey = (name: string) => ssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name);
  ecKey("ca.key");
  ssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=Herald Test CA", "-days", "3650", "-out", "ca.pem",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  ecKey("server.key");
  ssl("req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr");
  const san = [...SERVER_NAMES.map((n) => `DNS:${n}`), "IP:127.0.0.1", "IP:::1"].join(",");
  writeFileSync(join(dir, "server.ext"), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
  ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "3650", "-out", "server.pem", "-extfile", "server.ext");
  const read = (name: string) => readFileSync(join(dir, name), "utf8");
  let serial = 0;
  cached = {
    ca: read("ca.pem"),
    cert: read("server.pem"),
    key: read("server.key"),
    issueClient(commonName: string) {
      const base = `client${++serial}`;
      ecKey(`${base}.key`);
      ssl("req", "-new", "-key", `${base}.key`, "-subj", `/CN=${commonName}`, "-out", `${base}.csr`);
      writeFileSync(join(dir, `${base}.ext`), "extendedKeyUsage=clientAuth\n");
      ssl("x509", "-req", "-in", `${base}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "365", "-out", `${base}.pem`, "-extfile", `${base}.ext`);
      return { cert: read(`${base}.pem`), key: read(`${base}.key`) };
    },
    toPkcs12(client, passphrase) {
      const base = `bundle${++serial}`;
      writeFileSync(join(dir, `${base}.pem`), client.cert);
      writeFileSync(join(dir, `${base}.key`), client.key);
      ssl("pkcs12", "-export", "-in", `${base}.pem`, "-inkey", `${base}.key`, "-out", `${base}.p12`, "-passout", `pass:${passphrase}`);
      return readFileSync(join(dir, `${base}.p12`));
    },
  };
  return cached;
}

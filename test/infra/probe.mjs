#!/usr/bin/env node
// Wire-protocol health probes for the test servers, with no npm dependencies.
//
//   node probe.mjs kafka PORT [TIMEOUT_MS]   Kafka Metadata v0 request; ok when the broker
//                                            answers and lists at least one (unfenced) broker.
//   node probe.mjs mongo PORT [TIMEOUT_MS]   MongoDB OP_MSG {ping: 1} on "admin"; ok when the
//                                            reply has ok: 1. Also prints the server version.
//   node probe.mjs jaeger PORT [TIMEOUT_MS]  GET /api/services on Jaeger's query port; ok on a
//                                            200 with JSON.
//   node probe.mjs etcd PORT [TIMEOUT_MS]    GET /health on etcd's client URL; ok when it says
//                                            {"health":"true"}.
//   node probe.mjs kube PORT TIMEOUT_MS CA_FILE
//                                            GET /readyz on kube-apiserver over TLS verified with
//                                            CA_FILE (anonymous, as RBAC's public-info role
//                                            allows); ok on 200 "ok". Also prints /version.
//   node probe.mjs kube-controller-manager PORT TIMEOUT_MS CA_FILE
//                                            GET /healthz over TLS verified with CA_FILE; ok on
//                                            200 "ok".
//
// Exit 0 and one line on stdout when healthy; exit 1 with the reason on stderr otherwise.
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';

const [kind, portArg, timeoutArg, caFile] = process.argv.slice(2);
const host = '127.0.0.1';
const port = Number(portArg);
const timeoutMs = Number(timeoutArg ?? 3000);
const kinds = ['kafka', 'mongo', 'jaeger', 'etcd', 'kube', 'kube-controller-manager'];
const needsCa = kind === 'kube' || kind === 'kube-controller-manager';

if (!kinds.includes(kind) || !Number.isInteger(port) || (needsCa && !caFile)) {
  process.stderr.write(`usage: probe.mjs ${kinds.join('|')} PORT [TIMEOUT_MS] [CA_FILE (kube*)]\n`);
  process.exit(2);
}

function fail(msg) {
  process.stderr.write(`${kind} probe on ${host}:${port}: ${msg}\n`);
  process.exit(1);
}

// Send one request, collect a length-prefixed reply (length = first int32, inclusive or not).
function exchange(request, frameLength) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host, port });
    const chunks = [];
    let total = 0;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no complete reply within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(request));
    sock.on('data', (d) => {
      chunks.push(d);
      total += d.length;
      const buf = Buffer.concat(chunks, total);
      if (buf.length >= 4 && buf.length >= frameLength(buf)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf);
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new Error('connection closed before a complete reply'));
    });
  });
}

async function kafka() {
  const clientId = Buffer.from('herald-infra-probe');
  const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length + 4);
  let o = 0;
  o = body.writeInt16BE(3, o); // api_key Metadata
  o = body.writeInt16BE(0, o); // api_version 0 (supported by every 3.x broker)
  o = body.writeInt32BE(4242, o); // correlation_id
  o = body.writeInt16BE(clientId.length, o);
  o += clientId.copy(body, o);
  body.writeInt32BE(0, o); // topics: empty array = all topics (v0)
  const size = Buffer.alloc(4);
  size.writeInt32BE(body.length);
  const buf = await exchange(Buffer.concat([size, body]), (b) => 4 + b.readInt32BE(0));
  let p = 4;
  const correlationId = buf.readInt32BE(p);
  p += 4;
  if (correlationId !== 4242) throw new Error(`unexpected correlation id ${correlationId}`);
  const brokers = buf.readInt32BE(p);
  p += 4;
  const list = [];
  for (let i = 0; i < brokers; i++) {
    const id = buf.readInt32BE(p);
    p += 4;
    const hl = buf.readInt16BE(p);
    p += 2;
    const h = buf.toString('utf8', p, p + hl);
    p += hl;
    const bp = buf.readInt32BE(p);
    p += 4;
    list.push(`${id}@${h}:${bp}`);
  }
  if (brokers < 1) throw new Error('metadata lists no live broker yet (broker still fenced)');
  const topics = buf.readInt32BE(p);
  return `kafka ok: brokers ${list.join(',')}, ${topics} topic(s)`;
}

// Minimal BSON: encode {ping: 1, $db: "admin"}, decode the scalar fields of a reply.
function bsonPing(cmd) {
  const parts = [];
  const cstr = (s) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
  const i32 = (n) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(n);
    return b;
  };
  parts.push(Buffer.from([0x10]), cstr(cmd), i32(1));
  const db = cstr('admin');
  parts.push(Buffer.from([0x02]), cstr('$db'), i32(db.length), db);
  parts.push(Buffer.from([0x00]));
  const content = Buffer.concat(parts);
  return Buffer.concat([i32(content.length + 4), content]);
}

function bsonScalars(buf, start) {
  const out = {};
  const end = start + buf.readInt32LE(start);
  let p = start + 4;
  while (p < end - 1) {
    const type = buf[p++];
    const nameEnd = buf.indexOf(0, p);
    const name = buf.toString('utf8', p, nameEnd);
    p = nameEnd + 1;
    switch (type) {
      case 0x01: out[name] = buf.readDoubleLE(p); p += 8; break;
      case 0x02: { const l = buf.readInt32LE(p); out[name] = buf.toString('utf8', p + 4, p + 4 + l - 1); p += 4 + l; break; }
      case 0x03: case 0x04: p += buf.readInt32LE(p); break;
      case 0x05: p += 4 + 1 + buf.readInt32LE(p); break;
      case 0x07: p += 12; break;
      case 0x08: out[name] = buf[p] === 1; p += 1; break;
      case 0x09: case 0x11: case 0x12: p += 8; break;
      case 0x0a: out[name] = null; break;
      case 0x10: out[name] = buf.readInt32LE(p); p += 4; break;
      case 0x13: p += 16; break;
      default: return out; // unknown type: stop, keep what we have
    }
  }
  return out;
}

function opMsg(requestId, doc) {
  const header = Buffer.alloc(16 + 4 + 1);
  header.writeInt32LE(header.length + doc.length, 0);
  header.writeInt32LE(requestId, 4);
  header.writeInt32LE(0, 8);
  header.writeInt32LE(2013, 12); // OP_MSG
  header.writeUInt32LE(0, 16); // flagBits
  header[20] = 0; // section kind 0: body
  return Buffer.concat([header, doc]);
}

async function mongoCommand(requestId, cmd) {
  const buf = await exchange(opMsg(requestId, bsonPing(cmd)), (b) => b.readInt32LE(0));
  if (buf.readInt32LE(8) !== requestId) throw new Error('reply to another request');
  if (buf.readInt32LE(12) !== 2013) throw new Error(`unexpected opCode ${buf.readInt32LE(12)}`);
  if (buf[20] !== 0) throw new Error('unexpected section kind');
  return bsonScalars(buf, 21);
}

async function mongo() {
  const ping = await mongoCommand(1, 'ping');
  if (ping.ok !== 1) throw new Error(`ping returned ${JSON.stringify(ping)}`);
  const info = await mongoCommand(2, 'buildInfo');
  const ferret = info.ferretdbVersion ? `, FerretDB ${info.ferretdbVersion}` : '';
  return `mongo ok: ping ok, version ${info.version ?? '?'}${ferret}`;
}

// Jaeger's query API answers with JSON, i.e. storage and query are up (not just the port).
async function jaeger() {
  const res = await fetch(`http://${host}:${port}/api/services`, { signal: AbortSignal.timeout(timeoutMs) });
  if (res.status !== 200) throw new Error(`GET /api/services answered ${res.status}`);
  const body = await res.json();
  if (!Array.isArray(body.data) && body.data !== null) throw new Error(`unexpected body ${JSON.stringify(body).slice(0, 200)}`);
  return `jaeger ok: query API answers (${(body.data ?? []).length} services)`;
}

async function etcd() {
  const res = await fetch(`http://${host}:${port}/health`, { signal: AbortSignal.timeout(timeoutMs) });
  const body = await res.text();
  if (res.status !== 200 || JSON.parse(body).health !== 'true') throw new Error(`GET /health answered ${res.status} ${body.slice(0, 200)}`);
  return 'etcd ok: health true';
}

// GET over TLS verified with the test cluster's CA (fetch in Node 20 takes no CA option).
function httpsGet(path, ca) {
  return new Promise((resolve, reject) => {
    const req = https.get({ host, port, path, ca, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no reply within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

async function kube() {
  const ca = fs.readFileSync(caFile);
  const ready = await httpsGet('/readyz', ca);
  if (ready.status !== 200 || ready.body.trim() !== 'ok') throw new Error(`GET /readyz answered ${ready.status} ${ready.body.trim().slice(0, 300)}`);
  const version = await httpsGet('/version', ca);
  const gitVersion = version.status === 200 ? JSON.parse(version.body).gitVersion : `? (/version answered ${version.status})`;
  return `kube-apiserver ok: /readyz ok, version ${gitVersion}`;
}

async function kubeControllerManager() {
  const health = await httpsGet('/healthz', fs.readFileSync(caFile));
  if (health.status !== 200 || health.body.trim() !== 'ok') throw new Error(`GET /healthz answered ${health.status} ${health.body.trim().slice(0, 300)}`);
  return 'kube-controller-manager ok: /healthz ok';
}

const probes = { kafka, mongo, jaeger, etcd, kube, 'kube-controller-manager': kubeControllerManager };
try {
  const line = await probes[kind]();
  process.stdout.write(line + '\n');
} catch (e) {
  // fetch reports every network error as "fetch failed"; the reason is in e.cause.
  const err = e.cause ?? e;
  fail(err.code && !String(err.message).includes(err.code) ? `${err.code} ${err.message}` : err.message);
}

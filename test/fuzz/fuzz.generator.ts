import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary, ScalarType, type DescField, type DescMessage, type DescMethod, type DescService, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";

// Structure-aware request generation for the fuzz suites: requests are built from the message
// descriptors (so a new RPC or field is fuzzed without a line here), start from values that look
// valid (so they get past the first check and reach deeper code) and are then mutated with the
// inputs that broke Herald before: non-ASCII and control characters in strings and map keys,
// huge and empty values, deep google.protobuf.Struct nesting, out-of-range numbers and enums,
// several members of one oneof, malformed wire bytes. Everything derives from (seed, index), so
// one case is reproduced by its index alone.

export const DEFAULT_SEED = 20240614;

export interface FuzzSettings {
  seed: number;
  runs: number;
  // HERALD_FUZZ_ONLY=<index>[,<index>...]: replay only these cases (a reproduction).
  only?: number[];
}

export function fuzzSettings(defaultRuns: number, env: NodeJS.ProcessEnv = process.env): FuzzSettings {
  const seed = env.HERALD_FUZZ_SEED ? Number(env.HERALD_FUZZ_SEED) : DEFAULT_SEED;
  const runs = env.HERALD_FUZZ_RUNS ? Number(env.HERALD_FUZZ_RUNS) : defaultRuns;
  if (!Number.isSafeInteger(seed)) throw new Error(`HERALD_FUZZ_SEED=${env.HERALD_FUZZ_SEED}: an integer, please`);
  if (!Number.isSafeInteger(runs) || runs < 1 || runs > 1_000_000) throw new Error(`HERALD_FUZZ_RUNS=${env.HERALD_FUZZ_RUNS}: an integer between 1 and 1000000`);
  const only = env.HERALD_FUZZ_ONLY ? env.HERALD_FUZZ_ONLY.split(",").map((s) => Number(s.trim())) : undefined;
  if (only?.some((i) => !Number.isSafeInteger(i) || i < 0)) throw new Error(`HERALD_FUZZ_ONLY=${env.HERALD_FUZZ_ONLY}: comma-separated case indexes`);
  return { seed, runs, ...(only ? { only } : {}) };
}

// sfc32 seeded through SHA-256 of (seed, stream, index): independent, reproducible streams.
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  constructor(seed: number, stream: string, index: number) {
    const h = createHash("sha256").update(`${seed}/${stream}/${index}`).digest();
    this.a = h.readUInt32LE(0);
    this.b = h.readUInt32LE(4);
    this.c = h.readUInt32LE(8);
    this.d = h.readUInt32LE(12);
  }
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return (t >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

// The characters and strings that broke (or nearly broke) Herald's header, JSON, URL and
// storage code: non-ASCII letters, NUL and other controls, a non-character, lone surrogates
// (no UTF-8 form), bidi controls, emoji sequences, percent signs, JS object-prototype names.
export const HOSTILE_ATOMS: readonly string[] = [
  "prénom",
  "équipe",
  "\u0000",
  "\uFFFF",
  "\uD800",
  "\uDFFF",
  "a\uD83D",
  "\u202E",
  "\u200F",
  "\u061C",
  "😀",
  "👩‍👩‍👧‍👦",
  "\r\n",
  "\n",
  "\t",
  "\x7f",
  "\u0085",
  "\u2028",
  "\uFEFF",
  "%",
  "%zz",
  "%E9",
  "%00",
  "Z\u0337\u0322\u0353a\u0338l\u0335g\u0336o",
  "../../etc/passwd",
  "' OR '1'='1",
  "${jndi:ldap://127.0.0.1/x}",
  "__proto__",
  "constructor",
  "toString",
  "$where",
  "a.b",
  "$gt",
  " ",
  "𝕳𝖊𝖗𝖆𝖑𝖉",
  "日本語",
  "עִבְרִית",
];

export const ONE_MB = 1024 * 1024;

// A string field's bytes that are not valid UTF-8 (the wire carries them; a JS string cannot).
export class RawText {
  constructor(
    readonly bytes: Uint8Array,
    readonly label: string,
  ) {}
}

const INVALID_UTF8: ReadonlyArray<[string, number[]]> = [
  ["encoded surrogate ED A0 80", [0x61, 0xed, 0xa0, 0x80]],
  ["overlong NUL C0 80", [0xc0, 0x80]],
  ["FF FE", [0xff, 0xfe, 0x61]],
  ["truncated sequence E2 82", [0x61, 0xe2, 0x82]],
];

export type GenScalar = string | RawText | number | bigint | boolean | Uint8Array;
export type GenValue = GenScalar | GenMessage | GenValue[] | GenMap | Encoded;

// A message field already in wire form: deep Struct nesting is built iteratively as bytes,
// since walking 5000 levels recursively can exhaust the test process's own stack.
export class Encoded {
  constructor(
    readonly bytes: Uint8Array,
    readonly label: string,
  ) {}
}

export class GenMap {
  constructor(readonly entries: Array<[GenScalar, GenValue]>) {}
}

export interface GenField {
  field: DescField;
  value: GenValue;
  // Repeated scalars sent one per tag instead of packed (decoders must take both).
  unpacked?: boolean;
}

export interface GenMessage {
  desc: DescMessage;
  fields: GenField[];
  // The whole message as wire bytes (then `fields` is empty).
  encoded?: Encoded;
}

// Values that make a request look real to the services: ids that exist, a user token that
// verifies, loopback-only URLs (a webhook or Web Push endpoint is never anything else, so the
// fuzzer cannot make Herald call out of the machine).
export interface ValuePools {
  deviceIds: string[];
  publishIds: string[];
  users: string[];
  topics: string[];
  userTokens: string[];
  // App ids the admin-key cases may act on (delete, rotate): never the apps the suite relies on.
  appIds: string[];
  keyIds: string[];
  loopbackUrl: string;
  webPushToken: string;
}

export type CaseKind =
  | "valid"
  | "mutated"
  | "hostile"
  | "huge-string"
  | "huge-repeated"
  | "deep-struct-40"
  | "deep-struct-5000"
  | "oneof-combo"
  | "out-of-range"
  | "invalid-utf8"
  | "unknown-fields"
  | "garbage-bytes"
  | "truncated"
  | "empty";

export const CASE_KINDS: ReadonlyArray<[CaseKind, number]> = [
  ["valid", 10],
  ["mutated", 30],
  ["hostile", 14],
  ["huge-string", 2],
  ["huge-repeated", 4],
  ["deep-struct-40", 4],
  ["deep-struct-5000", 3],
  ["oneof-combo", 6],
  ["out-of-range", 8],
  ["invalid-utf8", 5],
  ["unknown-fields", 4],
  ["garbage-bytes", 3],
  ["truncated", 3],
  ["empty", 2],
];

export function pickKind(rng: Rng, kinds: ReadonlyArray<[CaseKind, number]> = CASE_KINDS): CaseKind {
  const total = kinds.reduce((s, [, w]) => s + w, 0);
  let x = rng.next() * total;
  for (const [k, w] of kinds) {
    x -= w;
    if (x < 0) return k;
  }
  return kinds[kinds.length - 1]![0];
}

interface GenContext {
  rng: Rng;
  pools: ValuePools;
  kind: CaseKind;
  // What was done to the request, in words, for the reproduction.
  notes: string[];
  // Probability that any one string or key is mutated.
  mutateP: number;
  depth: number;
  // One-shot targets a case kind asks for; consumed where they land.
  wantDeep: number;
  wantHugeString: boolean;
  wantHugeRepeated: boolean;
  wantOneofCombo: boolean;
  wantInvalidUtf8: boolean;
  // Whether RawText may be used (JSON cannot carry it as such).
  binary: boolean;
}

const STRUCT = "google.protobuf.Struct";
const VALUE = "google.protobuf.Value";
const LIST_VALUE = "google.protobuf.ListValue";
const TIMESTAMP = "google.protobuf.Timestamp";

const reachCache = new Map<string, boolean>();
// Whether a message can contain a Struct/Value somewhere (where deep nesting can be put).
export function reachesStruct(desc: DescMessage, seen = new Set<string>()): boolean {
  const cached = reachCache.get(desc.typeName);
  if (cached !== undefined) return cached;
  if (desc.typeName === STRUCT || desc.typeName === VALUE || desc.typeName === LIST_VALUE) return true;
  if (seen.has(desc.typeName)) return false;
  seen.add(desc.typeName);
  const result = desc.fields.some((f) => {
    const m = messageOf(f);
    return m !== undefined && reachesStruct(m, seen);
  });
  reachCache.set(desc.typeName, result);
  return result;
}

function messageOf(f: DescField): DescMessage | undefined {
  if (f.fieldKind === "message") return f.message;
  if (f.fieldKind === "list" && f.listKind === "message") return f.message;
  if (f.fieldKind === "map" && f.mapKind === "message") return f.message;
  return undefined;
}

function hasStringField(desc: DescMessage, depth = 0): boolean {
  if (depth > 4) return false;
  return desc.fields.some((f) => isStringy(f) || (messageOf(f) !== undefined && hasStringField(messageOf(f)!, depth + 1)));
}

function isStringy(f: DescField): boolean {
  return (f.fieldKind === "scalar" || f.fieldKind === "list") && f.scalar === ScalarType.STRING;
}

export interface GeneratedRequest {
  kind: CaseKind;
  message: GenMessage;
  notes: string[];
}

// A request for `desc` of the given kind. `binary`: for the gRPC encoder (RawText allowed).
export function generateRequest(desc: DescMessage, rng: Rng, pools: ValuePools, kind: CaseKind, binary: boolean): GeneratedRequest {
  const ctx: GenContext = {
    rng,
    pools,
    kind,
    notes: [],
    mutateP: kind === "valid" ? 0 : kind === "hostile" ? 0.6 : kind === "mutated" ? 0.2 : 0.05,
    depth: 0,
    wantDeep: kind === "deep-struct-40" ? 40 : kind === "deep-struct-5000" ? 5000 : 0,
    wantHugeString: kind === "huge-string",
    wantHugeRepeated: kind === "huge-repeated",
    wantOneofCombo: kind === "oneof-combo",
    wantInvalidUtf8: kind === "invalid-utf8" && binary,
    binary,
  };
  if (ctx.wantDeep && !reachesStruct(desc)) {
    ctx.wantDeep = 0;
    ctx.notes.push(`no Struct field reachable: ${kind} became a mutated request`);
    ctx.mutateP = 0.2;
  }
  const message = genMessage(desc, ctx, "");
  return { kind, message, notes: ctx.notes };
}

function genMessage(desc: DescMessage, ctx: GenContext, path: string): GenMessage {
  const out: GenMessage = { desc, fields: [] };
  ctx.depth++;
  try {
    const chosenOneof = new Map<string, DescField[]>();
    for (const oneof of desc.oneofs) {
      const members = oneof.fields;
      let picked: DescField[];
      const deepMember = ctx.wantDeep ? members.find((f) => messageOf(f) && reachesStruct(messageOf(f)!)) : undefined;
      if (deepMember) picked = [deepMember];
      else if (ctx.wantOneofCombo && members.length > 1) {
        const a = ctx.rng.int(members.length);
        let b = ctx.rng.int(members.length - 1);
        if (b >= a) b++;
        picked = [members[a]!, members[b]!];
        ctx.wantOneofCombo = false;
        ctx.notes.push(`${path}${oneof.name}: two members set (${picked.map((f) => f.name).join(" and ")})`);
      } else picked = ctx.rng.chance(0.85) ? [ctx.rng.pick(members)] : [];
      chosenOneof.set(oneof.name, picked);
    }
    for (const field of desc.fields) {
      const fpath = `${path}${field.name}`;
      if (field.oneof) {
        if (!chosenOneof.get(field.oneof.name)!.includes(field)) continue;
      } else {
        const m = messageOf(field);
        const forced = (ctx.wantDeep > 0 && m !== undefined && reachesStruct(m)) || (ctx.wantHugeString && isStringy(field)) || (ctx.wantHugeRepeated && field.fieldKind === "list");
        const p = ctx.depth > 5 ? 0.3 : ctx.kind === "valid" ? 0.75 : 0.65;
        if (!forced && !ctx.rng.chance(p)) continue;
      }
      const value = genField(field, ctx, fpath);
      if (value === undefined) continue;
      out.fields.push({ field, value, ...(field.fieldKind === "list" && ctx.rng.chance(0.1) ? { unpacked: true } : {}) });
    }
  } finally {
    ctx.depth--;
  }
  return out;
}

function genField(field: DescField, ctx: GenContext, path: string): GenValue | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return genScalar(field, field.scalar, ctx, path);
    case "enum":
      return genEnum(field.enum.values.map((v) => v.number), ctx, path);
    case "message":
      return genSubMessage(field.message, ctx, `${path}.`);
    case "list": {
      let n = ctx.rng.pick([0, 1, 1, 2, 3]);
      if (ctx.wantHugeRepeated) {
        n = ctx.rng.pick([10_000, 50_000]);
        ctx.wantHugeRepeated = false;
        ctx.notes.push(`${path}: ${n} items`);
      }
      const items: GenValue[] = [];
      for (let i = 0; i < n; i++) {
        const item =
          field.listKind === "scalar"
            ? n > 100
              ? hugeListItem(field.scalar, i)
              : genScalar(field, field.scalar, ctx, `${path}[${i}]`)
            : field.listKind === "enum"
              ? genEnum(field.enum.values.map((v) => v.number), ctx, `${path}[${i}]`)
              : n > 100
                ? { desc: field.message, fields: [] }
                : genSubMessage(field.message, ctx, `${path}[${i}].`);
        items.push(item);
      }
      return items;
    }
    case "map": {
      let n = ctx.rng.pick([0, 1, 1, 2, 3]);
      if (ctx.wantHugeRepeated && ctx.rng.chance(0.5)) {
        n = 5_000;
        ctx.wantHugeRepeated = false;
        ctx.notes.push(`${path}: ${n} entries`);
      }
      const entries: Array<[GenScalar, GenValue]> = [];
      const seen = new Set<string>();
      for (let i = 0; i < n; i++) {
        let key: GenScalar;
        if (field.mapKey === ScalarType.STRING) {
          key = n > 100 ? `k${i}` : genMapKey(ctx, `${path} key`);
          const text = typeof key === "string" ? key : key instanceof RawText ? key.label : String(key);
          if (seen.has(text)) continue;
          seen.add(text);
        } else key = genScalar(field, field.mapKey, ctx, `${path} key`);
        const value =
          field.mapKind === "scalar"
            ? n > 100
              ? `v${i}`
              : genScalar(field, field.scalar, ctx, `${path}[${typeof key === "string" ? JSON.stringify(key) : "?"}]`)
            : field.mapKind === "enum"
              ? genEnum(field.enum.values.map((v) => v.number), ctx, path)
              : genSubMessage(field.message, ctx, `${path}[].`);
        entries.push([key, value]);
      }
      return new GenMap(entries);
    }
  }
}

// Map keys are where a non-ASCII key reached a header and crashed the process: mutate them
// more often than other strings.
function genMapKey(ctx: GenContext, path: string): GenScalar {
  const base = ctx.rng.pick(["team", "name", "level", "tier", "lang", "k"]);
  if (ctx.kind === "valid" || !ctx.rng.chance(Math.min(1, ctx.mutateP * 2 + 0.2))) return base;
  const key = mutateString(base, ctx, path);
  return key;
}

function genSubMessage(desc: DescMessage, ctx: GenContext, path: string): GenMessage {
  if (desc.typeName === STRUCT || desc.typeName === VALUE || desc.typeName === LIST_VALUE) {
    if (ctx.wantDeep > 0) {
      const shape = ctx.rng.chance(0.5) ? "object" : "array";
      ctx.notes.push(`${path.replace(/\.$/, "")}: nested ${ctx.wantDeep} levels deep (${shape}s)`);
      const bytes = deepStructBytes(desc.typeName, ctx.wantDeep, shape);
      ctx.wantDeep = 0;
      return { desc, fields: [], encoded: new Encoded(bytes, `<${shape}s nested ${bytes.length} bytes deep>`) };
    }
    let json = genJson(ctx, 0);
    if (desc.typeName === STRUCT && (json === null || typeof json !== "object" || Array.isArray(json))) json = { value: json };
    if (desc.typeName === LIST_VALUE && !Array.isArray(json)) json = [json];
    return structMessage(desc, json, ctx);
  }
  if (desc.typeName === TIMESTAMP) return genTimestamp(desc, ctx, path);
  if (ctx.depth > 8) return { desc, fields: [] };
  return genMessage(desc, ctx, path);
}

function genTimestamp(desc: DescMessage, ctx: GenContext, path: string): GenMessage {
  const now = Math.floor(Date.now() / 1000);
  let seconds: bigint = BigInt(now + ctx.rng.pick([-86_400, 0, 60, 3_600, 86_400 * 30]));
  let nanos = ctx.rng.int(1_000_000_000);
  if (ctx.kind === "out-of-range" || ctx.rng.chance(ctx.mutateP / 2)) {
    const pick = ctx.rng.int(6);
    if (pick === 0) seconds = -62_135_596_801n; // before 0001-01-01
    if (pick === 1) seconds = 253_402_300_800n; // after 9999-12-31
    if (pick === 2) seconds = 9_223_372_036_854_775_807n;
    if (pick === 3) nanos = 1_000_000_000;
    if (pick === 4) nanos = -1;
    if (pick === 5) seconds = -9_223_372_036_854_775_808n;
    ctx.notes.push(`${path.replace(/\.$/, "")}: timestamp seconds=${seconds} nanos=${nanos}`);
  }
  const [fs, fn] = [desc.fields.find((f) => f.name === "seconds")!, desc.fields.find((f) => f.name === "nanos")!];
  return { desc, fields: [{ field: fs, value: seconds }, { field: fn, value: nanos }] };
}

// google.protobuf.Value nested `levels` deep through struct_value (5) / Struct.fields (1) or
// list_value (6) / ListValue.values (1), wrapped as the field's own type.
export function deepStructBytes(typeName: string, levels: number, shape: "object" | "array"): Uint8Array {
  let value: Uint8Array = new BinaryWriter().tag(3, WireType.LengthDelimited).string("leaf").finish();
  const wrapStruct = (v: Uint8Array) => new BinaryWriter().tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("a").tag(2, WireType.LengthDelimited).bytes(v).join().finish();
  const wrapList = (v: Uint8Array) => new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(v).finish();
  for (let i = 1; i < levels; i++) {
    value = shape === "object" ? new BinaryWriter().tag(5, WireType.LengthDelimited).bytes(wrapStruct(value)).finish() : new BinaryWriter().tag(6, WireType.LengthDelimited).bytes(wrapList(value)).finish();
  }
  if (typeName === STRUCT) return wrapStruct(value);
  if (typeName === LIST_VALUE) return wrapList(value);
  return value;
}

export function deepJson(levels: number, shape: "object" | "array"): unknown {
  let v: unknown = "leaf";
  for (let i = 0; i < levels; i++) v = shape === "object" ? { a: v } : [v];
  return v;
}

function genJson(ctx: GenContext, depth: number): unknown {
  const r = ctx.rng.int(depth > 3 ? 5 : 8);
  switch (r) {
    case 0:
      return null;
    case 1:
      return ctx.rng.chance(0.5);
    case 2:
      return ctx.rng.chance(ctx.mutateP) ? ctx.rng.pick([NaN, Infinity, -Infinity, -0, 1e308, 5e-324, 2 ** 53 + 1]) : ctx.rng.int(1000);
    case 3:
    case 4:
      return ctx.rng.chance(ctx.mutateP) ? mutateString("text", ctx, "struct value") : ctx.rng.pick(["hello", "42", ""]);
    case 5:
      return Array.from({ length: ctx.rng.int(3) }, () => genJson(ctx, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      const n = ctx.rng.int(4);
      for (let i = 0; i < n; i++) {
        const key = ctx.rng.chance(ctx.mutateP + 0.1) ? (mutateString("key", ctx, "struct key") as string) : ctx.rng.pick(["title", "body", "aps", "data", "k"]);
        o[typeof key === "string" ? key : "k"] = genJson(ctx, depth + 1);
      }
      return o;
    }
  }
}

// A JSON value as the google.protobuf.Struct/Value/ListValue wire messages (iterative in depth
// only through recursion on purpose: 5000 levels is within the stack, and is what is sent).
function structMessage(desc: DescMessage, json: unknown, ctx: GenContext): GenMessage {
  const field = (name: string) => desc.fields.find((f) => f.name === name)!;
  if (desc.typeName === STRUCT) {
    const valueDesc = (field("fields") as DescField & { fieldKind: "map"; message: DescMessage }).message;
    const entries: Array<[GenScalar, GenValue]> = Object.entries(json as Record<string, unknown>).map(([k, v]) => [k, structMessage(valueDesc, v, ctx)]);
    return { desc, fields: [{ field: field("fields"), value: new GenMap(entries) }] };
  }
  if (desc.typeName === LIST_VALUE) {
    const valueDesc = (field("values") as DescField & { fieldKind: "list"; message: DescMessage }).message;
    return { desc, fields: [{ field: field("values"), value: (json as unknown[]).map((v) => structMessage(valueDesc, v, ctx)) }] };
  }
  // google.protobuf.Value
  if (json === null) return { desc, fields: [{ field: field("null_value"), value: 0 }] };
  if (typeof json === "number") return { desc, fields: [{ field: field("number_value"), value: json }] };
  if (typeof json === "string") return { desc, fields: [{ field: field("string_value"), value: json }] };
  if (typeof json === "boolean") return { desc, fields: [{ field: field("bool_value"), value: json }] };
  if (Array.isArray(json)) {
    const f = field("list_value") as DescField & { fieldKind: "message"; message: DescMessage };
    return { desc, fields: [{ field: f, value: structMessage(f.message, json, ctx) }] };
  }
  const f = field("struct_value") as DescField & { fieldKind: "message"; message: DescMessage };
  return { desc, fields: [{ field: f, value: structMessage(f.message, json, ctx) }] };
}

function hugeListItem(scalar: ScalarType, i: number): GenScalar {
  if (scalar === ScalarType.STRING) return `t${i}`;
  if (scalar === ScalarType.BOOL) return i % 2 === 0;
  if (scalar === ScalarType.BYTES) return new Uint8Array([i & 0xff]);
  if (is64(scalar)) return BigInt(i);
  return i;
}

function is64(s: ScalarType): boolean {
  return s === ScalarType.INT64 || s === ScalarType.UINT64 || s === ScalarType.SINT64 || s === ScalarType.FIXED64 || s === ScalarType.SFIXED64;
}

function genEnum(numbers: number[], ctx: GenContext, path: string): number {
  if (ctx.kind === "out-of-range" ? ctx.rng.chance(0.5) : ctx.rng.chance(ctx.mutateP / 2)) {
    const v = ctx.rng.pick([99, -1, 2_147_483_647, -2_147_483_648, Math.max(...numbers) + 1]);
    ctx.notes.push(`${path}: enum ${v} (not a declared value)`);
    return v;
  }
  // Mostly a declared non-zero value, so the request passes the "unspecified" check.
  const nonZero = numbers.filter((n) => n !== 0);
  return nonZero.length && ctx.rng.chance(0.85) ? ctx.rng.pick(nonZero) : 0;
}

function genScalar(field: DescField, scalar: ScalarType, ctx: GenContext, path: string): GenScalar {
  if (scalar === ScalarType.STRING) return genString(field, ctx, path);
  if (scalar === ScalarType.BOOL) return ctx.rng.chance(0.5);
  if (scalar === ScalarType.BYTES) return ctx.rng.bytes(ctx.rng.int(16));
  const outOfRange = ctx.kind === "out-of-range" ? ctx.rng.chance(0.5) : ctx.rng.chance(ctx.mutateP / 2);
  if (scalar === ScalarType.DOUBLE || scalar === ScalarType.FLOAT) {
    if (outOfRange) {
      const v = ctx.rng.pick([NaN, Infinity, -Infinity, -0, 1e308, -1e308, 5e-324]);
      ctx.notes.push(`${path}: ${v}`);
      return v;
    }
    return ctx.rng.next() * 100;
  }
  if (is64(scalar)) {
    if (outOfRange) {
      const v = scalar === ScalarType.UINT64 || scalar === ScalarType.FIXED64 ? ctx.rng.pick([18_446_744_073_709_551_615n, 0n]) : ctx.rng.pick([9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n, -1n]);
      ctx.notes.push(`${path}: ${v}`);
      return v;
    }
    return BigInt(validNumber(field, ctx));
  }
  if (outOfRange) {
    const unsigned = scalar === ScalarType.UINT32 || scalar === ScalarType.FIXED32;
    // A varint wider than 32 bits in a 32-bit field (decoders truncate it) is also sent.
    const v = unsigned ? ctx.rng.pick([4_294_967_295, 0]) : ctx.rng.pick([2_147_483_647, -2_147_483_648, -1, 0]);
    if (ctx.rng.chance(0.2) && scalar === ScalarType.INT32) {
      ctx.notes.push(`${path}: 64-bit varint 1099511627776 in an int32 field`);
      return 1_099_511_627_776n;
    }
    ctx.notes.push(`${path}: ${v}`);
    return v;
  }
  return validNumber(field, ctx);
}

function validNumber(field: DescField, ctx: GenContext): number {
  const n = field.name;
  if (n === "limit" || n === "batch_size") return ctx.rng.pick([1, 10, 100, 1000]);
  if (n === "ttl_seconds") return ctx.rng.pick([60, 3600, 86_400]);
  if (n === "timestamp") return Math.floor(Date.now() / 1000);
  if (n === "badge") return ctx.rng.int(10);
  if (n === "code") return ctx.rng.int(17);
  if (n.startsWith("max_")) return ctx.rng.pick([1, 10, 100]);
  return ctx.rng.int(1000);
}

function genString(field: DescField, ctx: GenContext, path: string): GenScalar {
  if (ctx.wantHugeString) {
    ctx.wantHugeString = false;
    const atom = ctx.rng.pick(["a", "é", "😀", "\u0000"]);
    const s = atom.repeat(Math.floor(ONE_MB / Buffer.byteLength(atom)));
    ctx.notes.push(`${path}: 1 MB of ${JSON.stringify(atom)}`);
    return s;
  }
  if (ctx.wantInvalidUtf8 && ctx.rng.chance(0.5)) {
    ctx.wantInvalidUtf8 = false;
    const [label, bytes] = ctx.rng.pick(INVALID_UTF8);
    ctx.notes.push(`${path}: invalid UTF-8 (${label})`);
    return new RawText(new Uint8Array(bytes), label);
  }
  const base = validString(field, ctx);
  if (ctx.rng.chance(ctx.mutateP)) return mutateString(base, ctx, path);
  return base;
}

// Field-name driven values that pass validation, so mutations land in deeper code.
function validString(field: DescField, ctx: GenContext): string {
  const { rng, pools } = ctx;
  const n = field.name;
  const parent = field.parent.typeName;
  if (parent.endsWith("AppRequest") || parent.endsWith("ApiKeyRequest") || parent.endsWith("ApiKeysRequest") || n === "app_id") {
    if (n === "id" || n === "app_id") return parent === "herald.registry.v1.CreateAppRequest" ? `fuzz-${rng.int(1_000_000)}` : rng.pick(pools.appIds);
    if (n === "key_id") return rng.pick(pools.keyIds.length ? pools.keyIds : ["key-none"]);
  }
  if (n === "url" || n.endsWith("_url")) return `${pools.loopbackUrl}/hook/${rng.int(100)}`;
  if (n === "token") {
    return rng.pick([
      "a3f0c2d4e5b6a7980112233445566778899aabbccddeeff00112233445566778",
      `fcm-token-${rng.int(1000)}`,
      `hms-token-${rng.int(1000)}`,
      pools.webPushToken,
    ]);
  }
  if (n === "tokens") return `fcm-token-${rng.int(1000)}`;
  if (n === "id" || n === "device_id" || n === "ids" || n === "device_ids" || n === "exclude_device_ids" || n === "after_device_id") {
    if (parent.includes("Publish") || parent.includes("Receipt")) return rng.pick([...pools.publishIds, ...pools.deviceIds]);
    return rng.pick([...pools.deviceIds, "dev-unknown"]);
  }
  if (n === "publish_id") return rng.pick(pools.publishIds);
  if (n === "user" || n === "users") return rng.pick(pools.users);
  if (n === "user_token") return rng.pick(pools.userTokens);
  if (n === "topic" || n === "topics" || n === "topic_prefix" || n === "prefix") return rng.pick(pools.topics);
  if (n === "locale") return rng.pick(["fr-FR", "en", "pt-BR"]);
  if (n === "timezone") return rng.pick(["Europe/Paris", "UTC", "America/Sao_Paulo"]);
  if (n === "condition") return "'news' in topics";
  if (n === "cursor") return rng.pick(["", "eyJpZCI6IngifQ", "not-a-cursor"]);
  if (n === "uid") return `uid-${rng.int(100_000)}`;
  if (n === "role") return "server";
  if (n === "events" || n === "events_") return rng.pick(["publish.done", "device.registered"]);
  if (n === "vapid_public_key") return "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U";
  if (n === "string_to_sign") return `v1\n${Math.floor(Date.now() / 1000)}\nPOST\n/v1/x\n${"0".repeat(64)}`;
  if (n === "signature") return `v1=${"ab".repeat(32)}`;
  if (n === "secret") return "not-the-secret";
  if (n === "sound") return "default";
  if (n === "image" || n === "deep_link") return "https://example.invalid/x.png";
  return rng.pick(["Hello", "World", "news", "x"]);
}

export function mutateString(base: string, ctx: GenContext, path: string): GenScalar {
  const { rng } = ctx;
  const atom = rng.pick(HOSTILE_ATOMS);
  let out: string;
  switch (rng.int(8)) {
    case 0:
      out = atom;
      break;
    case 1:
      out = base + atom;
      break;
    case 2:
      out = atom + base;
      break;
    case 3:
      out = base.slice(0, 1) + atom + base.slice(1);
      break;
    case 4:
      out = "";
      break;
    case 5:
      out = Array.from({ length: 3 }, () => rng.pick(HOSTILE_ATOMS)).join("");
      break;
    case 6:
      out = atom.repeat(rng.pick([100, 1000]));
      break;
    default:
      out = `${base}${atom}`.repeat(2);
  }
  ctx.notes.push(`${path}: ${describeString(out)}`);
  return out;
}

export function describeString(s: string): string {
  const shown = s.length > 60 ? `${s.slice(0, 60)}… (${s.length} chars)` : s;
  return JSON.stringify(shown).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

// ---------------------------------------------------------------------------------------------
// Encoders

// The wire form. Out-of-range values are written as 64-bit varints where the type would refuse
// them (BinaryWriter checks int32 ranges), which is also what a foreign client can send.
export function encodeBinary(m: GenMessage): Uint8Array {
  const w = new BinaryWriter();
  writeMessage(w, m);
  return w.finish();
}

function writeMessage(w: BinaryWriter, m: GenMessage): void {
  if (m.encoded) w.raw(m.encoded.bytes);
  for (const gf of m.fields) writeField(w, gf);
}

function writeField(w: BinaryWriter, gf: GenField): void {
  const f = gf.field;
  const no = f.number;
  switch (f.fieldKind) {
    case "scalar":
      w.tag(no, wireTypeOf(f.scalar));
      writeScalar(w, f.scalar, gf.value as GenScalar);
      return;
    case "enum":
      w.tag(no, WireType.Varint);
      writeScalar(w, ScalarType.INT32, gf.value as GenScalar);
      return;
    case "message":
      w.tag(no, WireType.LengthDelimited).fork();
      writeMessage(w, gf.value as GenMessage);
      w.join();
      return;
    case "list": {
      const items = gf.value as GenValue[];
      if (f.listKind === "message") {
        for (const item of items) {
          w.tag(no, WireType.LengthDelimited).fork();
          writeMessage(w, item as GenMessage);
          w.join();
        }
        return;
      }
      const scalar = f.listKind === "enum" ? ScalarType.INT32 : f.scalar;
      const packable = scalar !== ScalarType.STRING && scalar !== ScalarType.BYTES;
      if (packable && !gf.unpacked) {
        if (items.length === 0) return;
        w.tag(no, WireType.LengthDelimited).fork();
        for (const item of items) writeScalar(w, scalar, item as GenScalar);
        w.join();
        return;
      }
      for (const item of items) {
        w.tag(no, wireTypeOf(scalar));
        writeScalar(w, scalar, item as GenScalar);
      }
      return;
    }
    case "map": {
      const valueScalar = f.mapKind === "scalar" ? f.scalar : f.mapKind === "enum" ? ScalarType.INT32 : undefined;
      for (const [k, v] of (gf.value as GenMap).entries) {
        w.tag(no, WireType.LengthDelimited).fork();
        w.tag(1, wireTypeOf(f.mapKey));
        writeScalar(w, f.mapKey, k);
        if (valueScalar !== undefined) {
          w.tag(2, wireTypeOf(valueScalar));
          writeScalar(w, valueScalar, v as GenScalar);
        } else {
          w.tag(2, WireType.LengthDelimited).fork();
          writeMessage(w, v as GenMessage);
          w.join();
        }
        w.join();
      }
    }
  }
}

function wireTypeOf(s: ScalarType): WireType {
  switch (s) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WireType.LengthDelimited;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WireType.Bit32;
    default:
      return WireType.Varint;
  }
}

function writeScalar(w: BinaryWriter, s: ScalarType, v: GenScalar): void {
  if (v instanceof RawText) {
    w.bytes(v.bytes);
    return;
  }
  switch (s) {
    case ScalarType.STRING:
      w.string(String(v));
      return;
    case ScalarType.BYTES:
      w.bytes(v instanceof Uint8Array ? v : Buffer.from(String(v)));
      return;
    case ScalarType.BOOL:
      w.bool(Boolean(v));
      return;
    case ScalarType.DOUBLE:
      w.double(Number(v));
      return;
    case ScalarType.FLOAT:
      w.float(Math.abs(Number(v)) > 3.4e38 && Number.isFinite(Number(v)) ? Infinity : Number(v));
      return;
    case ScalarType.FIXED32:
      w.fixed32(Number(v) >>> 0);
      return;
    case ScalarType.SFIXED32:
      w.sfixed32(Number(v) | 0);
      return;
    case ScalarType.SINT32:
      w.sint32(Number(v) | 0);
      return;
    case ScalarType.UINT32:
      w.uint64(BigInt.asUintN(64, BigInt(v as number | bigint)));
      return;
    case ScalarType.SINT64:
      w.sint64(BigInt(v as number | bigint));
      return;
    case ScalarType.FIXED64:
      w.fixed64(BigInt.asUintN(64, BigInt(v as number | bigint)));
      return;
    case ScalarType.SFIXED64:
      w.sfixed64(BigInt(v as number | bigint));
      return;
    case ScalarType.UINT64:
      w.uint64(BigInt.asUintN(64, BigInt(v as number | bigint)));
      return;
    default:
      // int32 and int64: negative numbers are 10-byte varints on the wire, like any client sends.
      w.int64(BigInt(typeof v === "number" ? Math.trunc(v) : (v as bigint)));
  }
}

// Extra wire-level damage for the binary case kinds.
export function damageBinary(kind: CaseKind, bytes: Uint8Array, rng: Rng, notes: string[]): Uint8Array {
  if (kind === "garbage-bytes") {
    const out = rng.bytes(1 + rng.int(200));
    notes.push(`body: ${out.length} random bytes`);
    return out;
  }
  if (kind === "truncated" && bytes.length > 1) {
    const cut = 1 + rng.int(Math.min(8, bytes.length - 1));
    notes.push(`body: the encoding cut by ${cut} bytes`);
    return bytes.subarray(0, bytes.length - cut);
  }
  if (kind === "empty") {
    notes.push("body: empty message");
    return new Uint8Array(0);
  }
  if (kind === "unknown-fields") {
    const w = new BinaryWriter();
    const pick = rng.int(5);
    if (pick === 0) w.tag(1000, WireType.Varint).uint64(12345n);
    if (pick === 1) w.tag(536_870_911, WireType.LengthDelimited).string("unknown");
    if (pick === 2) w.tag(1, WireType.Bit64).fixed64(1n); // a known field number with the wrong wire type
    if (pick === 3) w.tag(2, WireType.StartGroup).tag(2, WireType.EndGroup);
    if (pick === 4) w.tag(1, WireType.LengthDelimited).bytes(rng.bytes(40));
    notes.push(`body: extra wire data ${["unknown field 1000", "field 536870911 (max)", "field 1 as fixed64", "field 2 as a group", "field 1 as 40 random bytes"][pick]}`);
    return Buffer.concat([bytes, w.finish()]);
  }
  return bytes;
}

// proto3 JSON of a generated message (what the gateway's native routes take): camelCase names,
// 64-bit numbers as strings, enums as numbers when not declared, Struct as plain JSON.
// RawText cannot exist in a JS string: the JSON encoder receives no RawText (binary=false).
export function encodeJson(m: GenMessage): unknown {
  const t = m.desc.typeName;
  if (t === TIMESTAMP) {
    const seconds = BigInt(m.fields.find((f) => f.field.name === "seconds")?.value as bigint);
    const nanos = Number(m.fields.find((f) => f.field.name === "nanos")?.value ?? 0);
    const ms = Number(seconds) * 1000;
    if (!Number.isFinite(ms) || Math.abs(ms) > 8.64e15) return `${seconds}-01-01T00:00:00Z`;
    const iso = new Date(ms).toISOString().replace(/\.\d{3}Z$/, "");
    return `${iso}.${String(Math.abs(nanos)).padStart(9, "0").slice(0, 9)}Z`;
  }
  if (m.encoded) return m.encoded.label;
  if (t === STRUCT || t === VALUE || t === LIST_VALUE) return structJson(m);
  const out: Record<string, unknown> = {};
  for (const gf of m.fields) out[gf.field.jsonName] = jsonValue(gf);
  return out;
}

function structJson(m: GenMessage): unknown {
  if (m.encoded) return m.encoded.label;
  const t = m.desc.typeName;
  if (t === STRUCT) {
    const map = m.fields[0]?.value as GenMap | undefined;
    const o: Record<string, unknown> = {};
    for (const [k, v] of map?.entries ?? []) o[String(k)] = structJson(v as GenMessage);
    return o;
  }
  if (t === LIST_VALUE) return ((m.fields[0]?.value as GenValue[] | undefined) ?? []).map((v) => structJson(v as GenMessage));
  const f = m.fields[0];
  if (!f) return null;
  if (f.field.name === "null_value") return null;
  if (f.field.name === "struct_value" || f.field.name === "list_value") return structJson(f.value as GenMessage);
  const v = f.value;
  // JSON has no NaN or Infinity: proto3 JSON spells them as strings, which a Value refuses.
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  return v;
}

function jsonValue(gf: GenField): unknown {
  const f = gf.field;
  const scalarJson = (s: ScalarType, v: GenScalar): unknown => {
    if (typeof v === "bigint") return v.toString();
    if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
    if (v instanceof RawText) return v.label;
    if (typeof v === "number" && !Number.isFinite(v)) return String(v);
    if (s === ScalarType.INT64 || s === ScalarType.UINT64) return String(v);
    return v;
  };
  const enumJson = (desc: { values: ReadonlyArray<{ number: number; name: string }> }, v: number) => desc.values.find((x) => x.number === v)?.name ?? v;
  switch (f.fieldKind) {
    case "scalar":
      return scalarJson(f.scalar, gf.value as GenScalar);
    case "enum":
      return enumJson(f.enum, gf.value as number);
    case "message":
      return encodeJson(gf.value as GenMessage);
    case "list":
      return (gf.value as GenValue[]).map((v) => (f.listKind === "scalar" ? scalarJson(f.scalar, v as GenScalar) : f.listKind === "enum" ? enumJson(f.enum, v as number) : encodeJson(v as GenMessage)));
    case "map": {
      const o: Record<string, unknown> = {};
      for (const [k, v] of (gf.value as GenMap).entries) {
        const key = k instanceof RawText ? k.label : String(k);
        o[key] = f.mapKind === "scalar" ? scalarJson(f.scalar, v as GenScalar) : f.mapKind === "enum" ? enumJson(f.enum, v as number) : encodeJson(v as GenMessage);
      }
      return o;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The API surface, from the descriptor set the servers serve by reflection.

export interface FuzzMethod {
  // "/herald.registry.v1.RegistryService/RegisterDevice"
  path: string;
  service: DescService;
  method: DescMethod;
  serverStreaming: boolean;
}

// The methods of the services whose full names start with one of `prefixes` (Herald's own by
// default; "proto.Gorush" is gorush's API on its own port).
export function loadMethods(descriptorSetPath: string, prefixes: readonly string[] = ["herald."]): { registry: FileRegistry; methods: FuzzMethod[] } {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSetPath)));
  const methods: FuzzMethod[] = [];
  for (const desc of registry) {
    if (desc.kind !== "service" || !prefixes.some((p) => desc.typeName.startsWith(p))) continue;
    for (const method of desc.methods) {
      if (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming") continue;
      methods.push({ path: `/${desc.typeName}/${method.name}`, service: desc, method, serverStreaming: method.methodKind === "server_streaming" });
    }
  }
  methods.sort((a, b) => a.path.localeCompare(b.path));
  return { registry, methods };
}

// For a reproduction line: the bytes themselves when short, else their size and hash (the
// seed and index regenerate them exactly).
export function describeBytes(bytes: Uint8Array): string {
  const sha = createHash("sha256").update(bytes).digest("hex").slice(0, 16);
  if (bytes.length <= 512) return `${bytes.length} bytes base64 ${Buffer.from(bytes).toString("base64")}`;
  return `${bytes.length} bytes sha256 ${sha}…`;
}

export function rate(count: number, ms: number): string {
  return `${count} requests in ${(ms / 1000).toFixed(1)} s (${((count * 1000) / Math.max(1, ms)).toFixed(0)} requests/s)`;
}

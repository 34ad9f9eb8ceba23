import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isMap, isNode, isScalar, isSeq, LineCounter, parseAllDocuments, type Document } from "yaml";
import { APP_ID_PATTERN, APP_ID_RULE, WEBHOOK_EVENTS } from "@herald/proto";
import { z } from "zod";

// The PushApp custom resource (group herald.dev, version v1alpha1): one mobile/web application,
// its provider settings (by Secret reference, never inline), its sender scaling and its limits.
// The embedded mode loads these from YAML files; the operator's CRD schema is generated from this
// one (pushAppOpenApiSchema), so the schema stays structural: objects with named properties, no
// unions. Cross-field rules ("exactly one of") are zod refinements, mirrored as CEL rules in
// `x-kubernetes-validations` so the API server enforces them too.

export const PUSHAPP_API_VERSION = "herald.dev/v1alpha1";
export const PUSHAPP_KIND = "PushApp";

// The app id syntax lives in @herald/proto (every component checks it); re-exported for the
// PushApp's users.
export { APP_ID_PATTERN };

const secretKeyRef = (what: string) =>
  z
    .strictObject({
      name: z
        .string()
        .min(1)
        .max(253)
        .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, "must be a Kubernetes object name (lowercase DNS subdomain)")
        .describe("Name of the Secret in the PushApp's namespace."),
      key: z
        .string()
        .min(1)
        .max(253)
        .regex(/^[-._a-zA-Z0-9]+$/, "must be a Secret data key (A-Z a-z 0-9 - _ .)")
        .describe("Key inside the Secret's data."),
    })
    .describe(what);

const enabled = () =>
  z.boolean().default(true).describe("Set false to keep the settings but stop delivering through this provider (its sender is scaled away).");

const positiveInt = (max: number) => z.number().int().min(1).max(max);
const nonNegativeInt = (max: number) => z.number().int().min(0).max(max);

export const ApnsTokenAuthSchema = z
  .strictObject({
    keyId: z
      .string()
      .regex(/^[A-Z0-9]{10}$/, "must be the 10-character key ID from the Apple developer account")
      .describe("Key ID of the APNs authentication key (.p8), 10 characters."),
    teamId: z
      .string()
      .regex(/^[A-Z0-9]{10}$/, "must be the 10-character Apple team ID")
      .describe("Apple developer team ID, 10 characters."),
    keySecretRef: secretKeyRef("Secret key holding the PEM contents of the .p8 signing key."),
  })
  .describe("Token-based (JWT, ES256) authentication with an APNs auth key. Preferred: one key serves every app of the team and never expires.");

export const ApnsCertificateAuthSchema = z
  .strictObject({
    secretRef: secretKeyRef("Secret key holding the TLS client certificate and private key (PKCS#12, or PEM certificate followed by the key)."),
    passwordSecretRef: secretKeyRef("Secret key holding the password of the PKCS#12 bundle or encrypted key.").optional(),
  })
  .describe("Certificate-based (TLS client certificate) authentication. Certificates are per bundle and expire yearly.");

export const ApnsSchema = z
  .strictObject({
    enabled: enabled(),
    environment: z
      .enum(["production", "sandbox"])
      .describe("APNs environment: production (api.push.apple.com) or sandbox (api.sandbox.push.apple.com, development builds). Tokens of one are rejected by the other."),
    bundleId: z
      .string()
      .max(255)
      .regex(/^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$/, "must be a reverse-DNS bundle identifier, e.g. com.example.app")
      .describe("The app's bundle identifier, sent as the apns-topic header."),
    auth: z
      .strictObject({
        token: ApnsTokenAuthSchema.optional(),
        certificate: ApnsCertificateAuthSchema.optional(),
      })
      .superRefine((auth, ctx) => {
        if (!auth.token === !auth.certificate) ctx.addIssue({ code: "custom", message: "set exactly one of token or certificate", path: [] });
      })
      .meta({
        description: "How Herald authenticates to APNs: exactly one of token or certificate.",
        "x-kubernetes-validations": [{ rule: "has(self.token) != has(self.certificate)", message: "set exactly one of token or certificate" }],
      }),
  })
  .describe("Apple Push Notification service (iOS, iPadOS, macOS, watchOS).");

export const FcmSchema = z
  .strictObject({
    enabled: enabled(),
    projectId: z
      .string()
      .regex(/^[a-z][a-z0-9-]{4,28}[a-z0-9]$/, "must be a Google Cloud project ID (6-30 characters of a-z 0-9 -)")
      .describe("Firebase / Google Cloud project ID; the FCM v1 API sends to projects/<projectId>/messages:send."),
    serviceAccountSecretRef: secretKeyRef("Secret key holding the service account JSON key with the Firebase Cloud Messaging API scope."),
  })
  .describe("Firebase Cloud Messaging HTTP v1 (Android, and iOS/web through Firebase).");

export const HmsSchema = z
  .strictObject({
    enabled: enabled(),
    appId: z
      .string()
      .regex(/^[0-9]{1,32}$/, "must be the numeric AppGallery Connect app ID")
      .describe("AppGallery Connect app ID (numeric), also the OAuth client ID."),
    clientSecretRef: secretKeyRef("Secret key holding the app's OAuth client secret (AppGallery Connect)."),
  })
  .describe("Huawei Mobile Services Push Kit (Android devices without Google services).");

export const WebPushSchema = z
  .strictObject({
    enabled: enabled(),
    subject: z
      .string()
      .max(1024)
      .regex(/^(mailto:[^\s@]+@[^\s@]+|https:\/\/\S+)$/, "must be a mailto: address or an https: URL")
      .describe("VAPID subject: a mailto: address or https: URL where push services can contact the sender."),
    vapidKeysSecretRef: secretKeyRef("Secret key holding the VAPID key pair as JSON {\"publicKey\", \"privateKey\"} (base64url, P-256)."),
  })
  .describe("Web Push (RFC 8030) with VAPID (RFC 8292) to browsers' push services.");

export const ProvidersSchema = z
  .strictObject({
    apns: ApnsSchema.optional(),
    fcm: FcmSchema.optional(),
    hms: HmsSchema.optional(),
    webpush: WebPushSchema.optional(),
  })
  .describe(
    "Provider settings; credentials are referenced by Secret, never inline. A provider that is absent or disabled gets no sender. With no provider enabled (absent or {}) the app is still registered and its API keys work (devices can register, publishes are accepted) but nothing is delivered: Ready is True with reason NoProviders.",
  );

export const LimitsSchema = z
  .strictObject({
    maxDevicesPerUser: positiveInt(100_000).optional().describe("Devices per user and platform (default 100)."),
    deviceOverflowPolicy: z
      .enum(["Evict", "Reject"])
      .optional()
      .describe("When a user would exceed maxDevicesPerUser: Evict removes the least recently seen device (default), Reject refuses the registration."),
    maxInactiveDays: nonNegativeInt(36_500).optional().describe("Devices not seen for this many days are removed; 0 or absent keeps them forever."),
    maxTopicsPerDevice: positiveInt(5000).optional().describe("Topics one device may hold (default and maximum 5000)."),
    maxPublishRate: nonNegativeInt(1_000_000).optional().describe("Publishes per second accepted for the app (429 / RESOURCE_EXHAUSTED above it); 0 or absent means the installation default (HERALD_DEFAULT_PUBLISH_RATE, unlimited unless set)."),
    urgentMaxTargets: nonNegativeInt(10_000)
      .optional()
      .describe("Publishes naming at most this many device ids, users or raw tokens take the urgent lane (a broadcast never delays them); 0 or absent means 100. Priority high is always urgent, priority low always bulk."),
  })
  .describe("Per-app limits; absent fields take Herald's defaults.");

// A Kubernetes resource quantity ("250m", "1", "256Mi", "1.5Gi").
const quantity = (what: string) =>
  z
    .string()
    .regex(/^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/, "must be a Kubernetes quantity such as 250m, 1, 256Mi")
    .describe(what);

const resourceList = (what: string) =>
  z
    .strictObject({
      cpu: quantity("CPU, e.g. 250m or 1.").optional(),
      memory: quantity("Memory, e.g. 256Mi.").optional(),
    })
    .describe(what);

export const SendersSchema = z
  .strictObject({
    resources: z
      .strictObject({
        requests: resourceList("Resources each sender pod is guaranteed (default cpu 100m, memory 128Mi).").optional(),
        limits: resourceList("Most each sender pod may use (default memory 512Mi, no CPU limit).").optional(),
      })
      .optional()
      .describe("Compute resources of each sender container."),
    mode: z
      .enum(["dedicated", "pooled"])
      .optional()
      .describe(
        "Which senders deliver the app: pooled (the namespace's shared <installation>-pool-<provider> Deployments, which serve every pooled app; replicas, autoscaling and resources do not apply) or dedicated (Deployments of the app's own, one per enabled provider, scaled by replicas or autoscaling). Absent: dedicated if replicas, autoscaling or resources are set; else the mode the app already runs in (status.sendersMode; dedicated for apps reconciled before pooled became the default); else, for a new app, the installation's default (pooled unless the chart's operator.defaultSenderMode says dedicated). A change moves the app without losing or repeating a notification: the old senders keep delivering what was handed to them until their lag is 0.",
      ),
    replicas: nonNegativeInt(1000).optional().describe("Fixed number of sender replicas per enabled provider (default 1)."),
    autoscaling: z
      .strictObject({
        minReplicas: nonNegativeInt(1000).describe("Fewest sender replicas per provider; 0 lets an idle app's senders scale to zero and come back when deliveries wait."),
        maxReplicas: positiveInt(1000).describe("Most sender replicas per provider."),
        targetLagPerReplica: positiveInt(100_000_000).describe("Kafka consumer lag (pending deliveries) one replica should carry; replicas = ceil(lag / target)."),
      })
      .superRefine((a, ctx) => {
        if (a.minReplicas > a.maxReplicas) ctx.addIssue({ code: "custom", message: "must not be greater than maxReplicas", path: ["minReplicas"] });
      })
      .meta({
        description: "Scale senders on the Kafka lag of the app's delivery topics.",
        "x-kubernetes-validations": [{ rule: "self.minReplicas <= self.maxReplicas", message: "minReplicas must not be greater than maxReplicas" }],
      })
      .optional(),
  })
  .superRefine((s, ctx) => {
    if (s.replicas !== undefined && s.autoscaling) ctx.addIssue({ code: "custom", message: "set replicas or autoscaling, not both", path: [] });
  })
  .meta({
    description: "Sender scaling, applied to each enabled provider's Deployment: fixed replicas or lag-based autoscaling.",
    "x-kubernetes-validations": [{ rule: "!(has(self.replicas) && has(self.autoscaling))", message: "set replicas or autoscaling, not both" }],
  });

export const WebhookSchema = z
  .strictObject({
    url: z
      .string()
      .max(2048)
      .regex(/^https?:\/\/[^\s@/]+(\/\S*)?$/, "must be an http:// or https:// URL without credentials")
      .describe("Where the events are POSTed (JSON, signed with the app's secret: X-Herald-Signature)."),
    events: z
      .array(z.enum(WEBHOOK_EVENTS))
      .max(WEBHOOK_EVENTS.length)
      .superRefine((events, ctx) => {
        const seen = new Set<string>();
        events.forEach((e, i) => {
          if (seen.has(e)) ctx.addIssue({ code: "custom", message: `"${e}" is listed twice`, path: [i] });
          seen.add(e);
        });
      })
      // A set: the API server refuses a repeated event name itself.
      .meta({ description: `Event types to send (${WEBHOOK_EVENTS.join(", ")}), each at most once; absent or empty: all of them.`, "x-kubernetes-list-type": "set" })
      .optional(),
    format: z
      .enum(["herald", "pusher"])
      .optional()
      .describe("How the calls look: herald (the default: Herald's body, X-Herald-Signature) or pusher (Pusher Channels' webhook body and X-Pusher-Key / X-Pusher-Signature, for receivers that check calls with a Pusher library)."),
  })
  .describe("An endpoint of the app's backend that receives Herald's events.");

export const PushAppSpecSchema = z
  .strictObject({
    displayName: z.string().min(1).max(200).optional().describe("Human-readable name (defaults to metadata.name)."),
    limits: LimitsSchema.optional(),
    providers: ProvidersSchema.optional(),
    senders: SendersSchema.optional(),
    webhooks: z.array(WebhookSchema).max(10).optional().describe("Endpoints that receive the app's events: publish completed, delivery failed, token invalidated, device acknowledged / opened."),
    apiKeyRotation: nonNegativeInt(1_000_000_000)
      .optional()
      .describe("Increase to rotate the app's API keys: new server and client keys are written to the API key Secret, then the previous ones are revoked."),
    userTokenSecretRotation: nonNegativeInt(1_000_000_000)
      .optional()
      .describe(
        "Increase to rotate the app's user token secret (the secret of Pusher-style signing and of webhook signatures): every user token signed with the old one stops working. It changes only when this field moves, never because the API key Secret was deleted.",
      ),
    installation: z
      .string()
      .max(63)
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "must be an installation name (lowercase DNS label)")
      .optional()
      .describe(
        "The Herald installation (its operator's HERALD_INSTALLATION, the chart's operator.installation) that owns this PushApp, as an IngressClass picks a controller. Absent: the installation that claims unassigned PushApps (operator.claimUnassigned) and records itself in the herald.dev/installation annotation. Other installations leave the PushApp alone. Immutable: to move an app, delete and recreate it.",
      ),
    dataDeletionPolicy: z
      .enum(["Retain", "Delete"])
      .optional()
      .describe(
        "What deleting the PushApp does to the app's stored data. Always deleted: the registry app, its API keys (and the API key Secret) and its Kafka topics. Retain (default) keeps the devices, users and topic subscriptions, for a PushApp of the same name created later; Delete erases them too.",
      ),
  })
  .meta({
    description: "Desired state of the app.",
    // Transition rule: the owning installation never changes under a running app.
    "x-kubernetes-validations": [{ rule: "(has(self.installation) ? self.installation : '') == (has(oldSelf.installation) ? oldSelf.installation : '')", message: "installation is immutable: delete and recreate the PushApp to move it" }],
  });

export const PushAppSchema = z
  .object({
    apiVersion: z.literal(PUSHAPP_API_VERSION).describe("Always herald.dev/v1alpha1."),
    kind: z.literal(PUSHAPP_KIND).describe("Always PushApp."),
    metadata: z
      .looseObject({
        name: z
          .string()
          .regex(APP_ID_PATTERN, `must be an app id: ${APP_ID_RULE}`)
          .describe(`The app id: ${APP_ID_RULE} (it becomes a label value and part of object and Kafka topic names).`),
        namespace: z.string().optional(),
        labels: z.record(z.string(), z.string()).optional(),
        annotations: z.record(z.string(), z.string()).optional(),
      })
      .describe("Standard object metadata; metadata.name is the app id."),
    spec: PushAppSpecSchema,
  })
  .describe("A Herald application: providers, sender scaling and limits.");

export type PushApp = z.output<typeof PushAppSchema>;
export type PushAppInput = z.input<typeof PushAppSchema>;
export type PushAppProvider = "apns" | "fcm" | "hms" | "webpush";
export type SenderMode = "dedicated" | "pooled";

// The providers configured and enabled, in a stable order.
export function enabledProviders(app: PushApp): PushAppProvider[] {
  const p = app.spec.providers ?? {};
  return (["apns", "fcm", "hms", "webpush"] as const).filter((name) => p[name]?.enabled);
}

// The CRD's openAPIV3Schema: the zod schema as OpenAPI 3.0, minus what a structural schema may
// not hold (additionalProperties next to properties; unknown fields are pruned by the API server).
export function pushAppOpenApiSchema(): Record<string, unknown> {
  const raw = z.toJSONSchema(PushAppSchema, { io: "input", target: "openapi-3.0", unrepresentable: "any" }) as Record<string, unknown>;
  const clean = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(clean);
    if (!node || typeof node !== "object") return node;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === "$schema") continue;
      if (k === "additionalProperties" && "properties" in node) continue;
      out[k] = clean(v);
    }
    return out;
  };
  return clean(raw) as Record<string, unknown>;
}

export interface LoadedPushApps {
  apps: PushApp[];
  // One line per problem: "<file>:<line>: <field path>: <message>".
  errors: string[];
}

export interface PushAppIssue {
  path: PropertyKey[];
  message: string;
}

// Validates one parsed YAML/JSON document.
export function validatePushApp(value: unknown): { app: PushApp } | { issues: PushAppIssue[] } {
  const result = PushAppSchema.safeParse(value, { error: friendlyMessage });
  if (result.success) return { app: result.data };
  return { issues: result.error.issues.map((issue) => ({ path: issue.path, message: issue.message })) };
}

// Messages for people editing YAML; zod's own wording for everything else.
function friendlyMessage(issue: z.core.$ZodRawIssue): string | undefined {
  if (issue.code === "invalid_type" && issue.input === undefined) return "is required";
  if (issue.code === "unrecognized_keys") return `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `"${k}"`).join(", ")}`;
  return undefined;
}

// Like validatePushApp, with each problem as "<field path>: <message>".
export function parsePushApp(value: unknown): { app: PushApp } | { problems: string[] } {
  const result = validatePushApp(value);
  return "app" in result ? result : { problems: result.issues.map((i) => `${formatPath(i.path) || "(document)"}: ${i.message}`) };
}

// Reads every *.yaml / *.yml file of `dir` (each may hold several documents separated by ---).
// Documents of other kinds (a Secret next to the PushApp, say) are skipped; a broken file or
// an invalid PushApp becomes an error line naming the file, the line and the field, never an
// exception.
export async function loadPushApps(dir: string): Promise<LoadedPushApps> {
  const apps: PushApp[] = [];
  const errors: string[] = [];
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true }))
      .filter((e) => (e.isFile() || e.isSymbolicLink()) && /\.ya?ml$/i.test(e.name))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    return { apps, errors: [`${dir}: cannot read the directory: ${(err as Error).message}`] };
  }
  const seen = new Map<string, string>();
  for (const name of names) {
    const file = join(dir, name);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      errors.push(`${file}: cannot read: ${(err as Error).message}`);
      continue;
    }
    const lines = new LineCounter();
    // An empty file is an EmptyStream (an empty array).
    const docs = [...parseAllDocuments(text, { lineCounter: lines })];
    const at = (offset: number | undefined) => (offset === undefined ? file : `${file}:${lines.linePos(offset).line}`);
    for (const doc of docs) {
      const where = at(doc.range[0]);
      if (doc.errors.length) {
        for (const e of doc.errors) errors.push(`${at(e.pos[0])}: YAML: ${e.message.split("\n")[0]}`);
        continue;
      }
      const value: unknown = doc.toJS();
      if (value === null || value === undefined) continue; // empty document (a trailing ---)
      if (!isPushAppCandidate(value)) continue;
      const result = validatePushApp(value);
      if ("issues" in result) {
        for (const issue of result.issues) errors.push(`${at(offsetOf(doc, issue.path) ?? doc.range[0])}: ${formatPath(issue.path) || "(document)"}: ${issue.message}`);
        continue;
      }
      const id = result.app.metadata.name;
      const first = seen.get(id);
      if (first) {
        errors.push(`${at(offsetOf(doc, ["metadata", "name"]))}: metadata.name: app "${id}" is already defined at ${first}`);
        continue;
      }
      seen.set(id, where);
      apps.push(result.app);
    }
  }
  return { apps, errors };
}

// Where the deepest existing part of `path` is written: the key of a map entry, else the node
// (for a missing field, its parent).
function offsetOf(doc: Document, path: PropertyKey[]): number | undefined {
  for (let n = path.length; n > 0; n--) {
    const parent = doc.getIn(path.slice(0, n - 1) as Array<string | number>, true);
    const last = path[n - 1];
    if (isMap(parent)) {
      const pair = parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === last);
      if (isNode(pair?.key) && pair.key.range) return pair.key.range[0];
    } else if (isSeq(parent) && typeof last === "number") {
      const item = parent.items[last];
      if (isNode(item) && item.range) return item.range[0];
    }
  }
  return isNode(doc.contents) && doc.contents.range ? doc.contents.range[0] : undefined;
}

// A document is validated as a PushApp when it says so by kind or by API group; anything else in
// the directory (Secrets, kustomizations) is not ours to judge.
function isPushAppCandidate(value: unknown): boolean {
  if (typeof value !== "object" || Array.isArray(value)) return true; // not a resource at all: report it
  const v = value as { apiVersion?: unknown; kind?: unknown };
  if (v.kind === undefined && v.apiVersion === undefined) return true;
  return v.kind === PUSHAPP_KIND || (typeof v.apiVersion === "string" && v.apiVersion.startsWith("herald.dev/"));
}

function formatPath(path: PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

import { stringify } from "yaml";
import { PUSHAPP_KIND, pushAppOpenApiSchema, type SenderMode } from "./pushapp.schema.js";

export const PUSHAPP_GROUP = "herald.dev";
export const PUSHAPP_VERSION = "v1alpha1";
export const PUSHAPP_PLURAL = "pushapps";
export const PUSHAPP_SHORT_NAMES = ["papp"];
export const PUSHAPP_CRD_NAME = `${PUSHAPP_PLURAL}.${PUSHAPP_GROUP}`;

// The operator writes these; a metav1.Condition-shaped list plus what `kubectl get` shows.
export interface PushAppCondition {
  type: string;
  status: "True" | "False" | "Unknown";
  reason: string;
  message: string;
  lastTransitionTime: string;
  observedGeneration?: number;
}

export interface PushAppProviderStatus {
  name: string;
  deployment: string;
  replicas: number;
  desiredReplicas: number;
  availableReplicas: number;
  lag: number;
}

export interface PushAppStatus {
  observedGeneration?: number;
  conditions?: PushAppCondition[];
  providers?: PushAppProviderStatus[];
  // For the printer columns: "apns,fcm" and "3/4" (available / desired over every provider).
  providerList?: string;
  senders?: string;
  apiKeySecretName?: string;
  credentialsSecretName?: string;
  apiKeyRotation?: number;
  userTokenSecretRotation?: number;
  // The namespace's pooled senders serve the app (pooled, or moving away from the pool while
  // jobs still wait on its pool topics).
  pooled?: boolean;
  // The mode the operator resolved for the app (spec.senders.mode, or the rules for its absence):
  // an app without spec.senders.mode keeps it.
  sendersMode?: SenderMode;
}

const str = (description: string) => ({ type: "string", description });
const int = (description: string) => ({ type: "integer", format: "int64", description });

const statusSchema = {
  type: "object",
  description: "Observed state, written by the operator.",
  properties: {
    observedGeneration: int("The metadata.generation the status describes."),
    conditions: {
      type: "array",
      description:
        "Ready (everything below is true), CredentialsValid (every referenced Secret parses), AppRegistered (the app and its API keys exist in the registry), TopicsReady (the app's Kafka topics exist), SendersAvailable (every enabled provider's sender Deployment has its replicas available).",
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["type"],
      items: {
        type: "object",
        required: ["type", "status", "reason", "message", "lastTransitionTime"],
        properties: {
          type: str("Condition type, e.g. Ready."),
          status: { type: "string", enum: ["True", "False", "Unknown"], description: "True, False or Unknown." },
          reason: str("CamelCase reason for the last transition."),
          message: str("What happened, for a human."),
          lastTransitionTime: { type: "string", format: "date-time", description: "When the status last changed." },
          observedGeneration: int("The metadata.generation the condition was computed from."),
        },
      },
    },
    providers: {
      type: "array",
      description: "One entry per enabled provider.",
      "x-kubernetes-list-type": "map",
      "x-kubernetes-list-map-keys": ["name"],
      items: {
        type: "object",
        required: ["name"],
        properties: {
          name: str("apns, fcm, hms or webpush."),
          deployment: str("Name of the sender Deployment."),
          replicas: int("Replicas of the Deployment."),
          desiredReplicas: int("Replicas the operator asked for (fixed, or computed from the lag)."),
          availableReplicas: int("Replicas available."),
          lag: int("Kafka consumer lag of the provider's delivery and retry topics (pending deliveries)."),
        },
      },
    },
    providerList: str("Enabled providers, comma-separated."),
    senders: str("Available / desired sender replicas over every provider."),
    apiKeySecretName: str("Secret holding the app's API keys (server-key, client-key)."),
    credentialsSecretName: str("Secret holding the normalized provider credentials mounted by the senders."),
    apiKeyRotation: int("The spec.apiKeyRotation the current keys were created for."),
    userTokenSecretRotation: int("The spec.userTokenSecretRotation the current user token secret was issued for."),
    sendersMode: { type: "string", enum: ["dedicated", "pooled"], description: "The senders the app runs on: spec.senders.mode, or, where it is absent, the mode resolved when the app was first reconciled (kept until the spec names one)." },
    pooled: { type: "boolean", description: "The namespace's pooled senders serve the app: spec.senders.mode is pooled, or the app is moving to dedicated senders while deliveries still wait on its pool topics." },
  },
};

// The CustomResourceDefinition, built from the same zod schema the embedded mode validates with.
export function pushAppCrd(): Record<string, unknown> {
  const schema = pushAppOpenApiSchema();
  const own = schema.properties as Record<string, { properties?: Record<string, unknown> }>;
  // The API server owns apiVersion, kind and metadata: a CRD may only restrict metadata.name.
  const properties = {
    apiVersion: str("Always herald.dev/v1alpha1."),
    kind: str("Always PushApp."),
    metadata: { type: "object", properties: { name: own.metadata?.properties?.name } },
    spec: own.spec,
    status: statusSchema,
  };
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: PUSHAPP_CRD_NAME, labels: { "app.kubernetes.io/part-of": "herald" } },
    spec: {
      group: PUSHAPP_GROUP,
      scope: "Namespaced",
      names: { kind: PUSHAPP_KIND, listKind: `${PUSHAPP_KIND}List`, plural: PUSHAPP_PLURAL, singular: "pushapp", shortNames: PUSHAPP_SHORT_NAMES, categories: ["herald"] },
      versions: [
        {
          name: PUSHAPP_VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            { name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status', description: "Whether the app is fully reconciled." },
            { name: "Providers", type: "string", jsonPath: ".status.providerList", description: "Enabled providers." },
            { name: "Senders", type: "string", jsonPath: ".status.senders", description: "Available / desired sender replicas." },
            { name: "Mode", type: "string", jsonPath: ".status.sendersMode", description: "pooled or dedicated senders." },
            { name: "Reason", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1, description: "Why the app is (not) ready." },
            { name: "Installation", type: "string", jsonPath: '.metadata.annotations.herald\\.dev/installation', priority: 1, description: "The Herald installation that owns the app." },
            { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp" },
          ],
          schema: { openAPIV3Schema: { ...schema, properties, required: ["spec"] } },
        },
      ],
    },
  };
}

export function pushAppCrdYaml(): string {
  return `# Generated from packages/pushapp/src/pushapp.schema.ts by \`npm run gen:crd\`; do not edit.\n${stringify(pushAppCrd(), { lineWidth: 0 })}`;
}

// Which installation of Herald owns a PushApp. Two installations in one cluster (two releases,
// each with its own registry and Kafka namespace) would otherwise both reconcile every PushApp
// and overwrite each other's Deployments and API keys. As with IngressClass, the PushApp picks:
// spec.installation names its owner; a PushApp that names none is claimed by the first
// installation that claims unassigned ones, which records itself in an annotation with the
// PushApp's resourceVersion as a precondition, so of two racing claims exactly one lands.

export const INSTALLATION_ANNOTATION = "herald.dev/installation";

export interface OwnedObject {
  metadata: { annotations?: Record<string, string> };
  spec?: unknown;
}

export type Ownership =
  // Already this installation's: reconcile it.
  | { owner: "mine" }
  // Nobody's yet (or named by spec.installation but not yet annotated): claim, then reconcile.
  | { owner: "claim" }
  // Another installation's, or nobody this one may take: leave it alone, and say why once.
  | { owner: "other"; installation: string; why: string };

export function ownershipOf(object: OwnedObject, installation: string, claimUnassigned: boolean): Ownership {
  const spec = object.spec as { installation?: unknown } | undefined;
  const wanted = typeof spec?.installation === "string" ? spec.installation : "";
  const claimed = object.metadata.annotations?.[INSTALLATION_ANNOTATION] ?? "";
  // spec.installation decides when set: the annotation only records who took an unassigned app.
  if (wanted) {
    if (wanted !== installation) return { owner: "other", installation: wanted, why: `spec.installation names installation "${wanted}"` };
    return claimed === installation ? { owner: "mine" } : { owner: "claim" };
  }
  if (claimed === installation) return { owner: "mine" };
  if (claimed) return { owner: "other", installation: claimed, why: `installation "${claimed}" claimed it (annotation ${INSTALLATION_ANNOTATION})` };
  if (claimUnassigned) return { owner: "claim" };
  return { owner: "other", installation: "", why: `it names no spec.installation and installation "${installation}" does not claim unassigned PushApps (operator.claimUnassigned=false)` };
}

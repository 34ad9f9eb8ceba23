import type { PushApp, PushAppStatus, SenderMode } from "@herald/pushapp";

export interface ResolvedMode {
  mode: SenderMode;
  // Why, for the log and the status: which rule decided.
  why: "spec" | "scaling" | "kept" | "legacy" | "default";
}

// Which senders serve a PushApp. An explicit spec.senders.mode wins. Without one:
// - replicas, autoscaling or resources only mean something for dedicated senders, so an app
//   that sets them is dedicated;
// - an app keeps the mode the operator last resolved for it (status.sendersMode), so changing
//   the installation's default never moves a running app;
// - an app an operator from before status.sendersMode reconciled (it has a credentials Secret
//   in its status) ran dedicated, the default then, and stays so;
// - anything else is new and gets the installation's default (pooled unless configured).
export function resolveSenderMode(app: PushApp, status: PushAppStatus | undefined, fallback: SenderMode): ResolvedMode {
  const senders = app.spec.senders;
  if (senders?.mode) return { mode: senders.mode, why: "spec" };
  if (senders?.replicas !== undefined || senders?.autoscaling || senders?.resources) return { mode: "dedicated", why: "scaling" };
  if (status?.sendersMode) return { mode: status.sendersMode, why: "kept" };
  if (status?.credentialsSecretName !== undefined) return { mode: status.pooled ? "pooled" : "dedicated", why: "legacy" };
  return { mode: fallback, why: "default" };
}

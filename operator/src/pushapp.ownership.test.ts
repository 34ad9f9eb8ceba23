import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { INSTALLATION_ANNOTATION, ownershipOf, type OwnedObject } from "./pushapp.ownership.js";

const app = (installation?: string, claimed?: string): OwnedObject => ({
  metadata: claimed === undefined ? {} : { annotations: { [INSTALLATION_ANNOTATION]: claimed } },
  spec: installation === undefined ? {} : { installation },
});

describe("PushApp ownership between installations", () => {
  it("spec.installation decides: its installation claims it, every other leaves it alone", () => {
    assert.deepEqual(ownershipOf(app("blue"), "blue", false), { owner: "claim" });
    assert.deepEqual(ownershipOf(app("blue", "blue"), "blue", false), { owner: "mine" });
    const other = ownershipOf(app("blue"), "green", true);
    assert.equal(other.owner, "other");
    assert.match(other.owner === "other" ? other.why : "", /spec.installation names installation "blue"/);
    // An annotation written by hand (or by an unassigned claim before) does not override the spec.
    assert.deepEqual(ownershipOf(app("blue", "green"), "blue", false), { owner: "claim" });
    assert.equal(ownershipOf(app("blue", "green"), "green", true).owner, "other");
  });

  it("an unassigned PushApp is claimed once: the claimant owns it, the others leave it alone", () => {
    assert.deepEqual(ownershipOf(app(), "blue", true), { owner: "claim" });
    assert.deepEqual(ownershipOf(app(undefined, "blue"), "blue", true), { owner: "mine" });
    const taken = ownershipOf(app(undefined, "blue"), "green", true);
    assert.equal(taken.owner, "other");
    assert.match(taken.owner === "other" ? taken.why : "", /installation "blue" claimed it/);
  });

  it("an installation that does not claim unassigned PushApps leaves them alone, and says why", () => {
    const left = ownershipOf(app(), "green", false);
    assert.equal(left.owner, "other");
    assert.match(left.owner === "other" ? left.why : "", /claimUnassigned=false/);
    // It still owns what it claimed earlier.
    assert.deepEqual(ownershipOf(app(undefined, "green"), "green", false), { owner: "mine" });
  });

  it("a spec that is not an object, or an installation that is not a string, counts as unassigned", () => {
    assert.deepEqual(ownershipOf({ metadata: {}, spec: "x" }, "blue", true), { owner: "claim" });
    assert.deepEqual(ownershipOf({ metadata: {}, spec: { installation: 7 } }, "blue", true), { owner: "claim" });
  });
});

// `npm run gen:crd`: writes the PushApp CRD into the Helm chart (and --check compares instead).
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { pushAppCrdYaml } from "./pushapp.crd.js";

export const CRD_FILE = fileURLToPath(new URL("../../../charts/herald/crds/pushapps.herald.dev.yaml", import.meta.url));

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const want = pushAppCrdYaml();
  if (process.argv.includes("--check")) {
    const have = await readFile(CRD_FILE, "utf8").catch(() => "");
    if (have !== want) {
      console.error(`${CRD_FILE} is stale: run npm run gen:crd`);
      process.exit(1);
    }
  } else {
    await writeFile(CRD_FILE, want);
    console.log(`wrote ${CRD_FILE}`);
  }
}

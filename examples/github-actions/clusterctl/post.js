// The action's post step (always runs): `clusterctl down` of the cluster the main step named,
// found by its name and provider even if `up` never finished. A cluster already gone is fine.
"use strict";
const { spawnSync } = require("child_process");

const name = process.env.STATE_name;
if (!name) {
  console.log("clusterctl: the main step created nothing to remove");
} else {
  const args = ["down", name, "--provider", process.env.STATE_provider || "local"];
  if (process.env.STATE_region) args.push("--region", process.env.STATE_region);
  const down = spawnSync(process.env.STATE_clusterctl || "clusterctl", args, { stdio: "inherit" });
  if (down.error) {
    console.log(`::error title=clusterctl::could not run clusterctl down: ${down.error.message}`);
    process.exitCode = 1;
  } else {
    process.exitCode = down.status === null ? 1 : down.status;
  }
}

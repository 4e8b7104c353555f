// The action's main step: `clusterctl up` with the inputs. clusterctl itself writes the step
// outputs (GITHUB_OUTPUT) and the job summary; this saves what the post step needs to remove
// the cluster (GITHUB_STATE) before anything is created, so a failed or cancelled `up` is
// cleaned up too.
"use strict";
const { spawnSync } = require("child_process");
const fs = require("fs");

function input(name) {
  const value = process.env[`INPUT_${name.toUpperCase()}`];
  return value === undefined ? "" : value.trim();
}

function saveState(key, value) {
  if (process.env.GITHUB_STATE) {
    fs.appendFileSync(process.env.GITHUB_STATE, `${key}=${value}\n`);
  }
}

const name =
  input("name") ||
  `ci-${process.env.GITHUB_RUN_ID || Date.now()}-${process.env.GITHUB_RUN_ATTEMPT || "1"}`;
const provider = input("provider") || "local";
const bin = input("clusterctl") || "clusterctl";
saveState("name", name);
saveState("provider", provider);
saveState("region", input("region"));
saveState("clusterctl", bin);

const args = ["up", "--provider", provider, "--name", name, "--workers", input("workers") || "2"];
for (const [flag, key] of [["--region", "region"], ["--ttl", "ttl"], ["--timeout", "timeout"], ["--allow-cidr", "allow-cidr"]]) {
  if (input(key)) args.push(flag, input(key));
}
args.push(...input("args").split(/\s+/).filter(Boolean));

const up = spawnSync(bin, args, { stdio: "inherit" });
if (up.error) {
  console.log(`::error title=clusterctl::could not run ${bin}: ${up.error.message}`);
  process.exitCode = 1;
} else {
  process.exitCode = up.status === null ? 1 : up.status;
}

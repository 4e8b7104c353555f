#!/usr/bin/env bash
# The test command of the README: prepares the Python side of the tests (a virtual environment
# with the pinned Dask, used by the test Dask client and as the local provider's runtime, and the
# pinned moto AWS emulator with boto3 for the AWS tests, iproute2 for the Fargate and Kubernetes
# tests' network namespaces, and kubectl for the Kubernetes tests) and runs the whole test suite.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

dask_version=$(sed -n 's/^pub const DASK_VERSION: &str = "\(.*\)";$/\1/p' providers/core/src/lib.rs)
venv="${CLUSTERCTL_TEST_VENV:-$HOME/.cache/clusterctl-test/venv-$dask_version}"
moto_version=5.2.5
check="import distributed, moto, boto3, sys; sys.exit(distributed.__version__ != '$dask_version' or moto.__version__ != '$moto_version')"
if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "tests/run.sh: creating $venv with dask $dask_version and moto $moto_version" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "dask[distributed,diagnostics]==$dask_version" "moto[server]==$moto_version" boto3
fi
# The Fargate tests run each test in a private network namespace made with `ip` (iproute2).
if ! command -v ip >/dev/null 2>&1; then
  echo "tests/run.sh: installing iproute2 for the Fargate tests' network namespaces" >&2
  (apt-get update -q && apt-get install -yq iproute2) >/dev/null
fi
# The Kubernetes tests check the simulator with a real client, kubectl (Debian: kubernetes-client).
if ! command -v kubectl >/dev/null 2>&1; then
  echo "tests/run.sh: installing kubectl (kubernetes-client) for the Kubernetes tests" >&2
  (apt-get update -q && apt-get install -yq kubernetes-client) >/dev/null
fi
# The bootstrap tests run the rendered VM run script under dash, a strict POSIX sh.
if ! command -v dash >/dev/null 2>&1; then
  echo "tests/run.sh: installing dash for the VM run script tests" >&2
  (apt-get update -q && apt-get install -yq dash) >/dev/null
fi
# The CLI tests render the man pages with `man -l` (man-db, with groff).
if ! command -v man >/dev/null 2>&1; then
  echo "tests/run.sh: installing man-db for the man page test" >&2
  (apt-get update -q && apt-get install -yq man-db) >/dev/null
fi
# The example GitHub action is a node20 action; its test runs its steps with node.
if ! command -v node >/dev/null 2>&1; then
  echo "tests/run.sh: installing nodejs for the GitHub action's test" >&2
  (apt-get update -q && apt-get install -yq nodejs) >/dev/null
fi
export CLUSTERCTL_TEST_PYTHON="$venv/bin/python"
# The test doubles' own strictness: each self-check drives its simulator or boot runtime
# directly, including requests the real platform refuses, which the double must refuse too.
# (About two minutes in all; the DigitalOcean, Azure, GCE, ECS and operator checks make their
# own network namespaces and need root, as the end-to-end tests do.)
for check in tests/simkit/selfcheck.py tests/vmboot/selfcheck.py tests/k8s/selfcheck_api.py \
  tests/k8s/selfcheck_operator.py tests/digitalocean/selfcheck.py tests/azure/selfcheck.py \
  tests/gcp/selfcheck.py tests/aws/ecsagent/selfcheck.py; do
  echo "tests/run.sh: self-check $check" >&2
  if ! out=$("$venv/bin/python" "$check" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "tests/run.sh: self-check $check failed" >&2
    exit 1
  fi
done
exec cargo test --workspace --locked "$@"

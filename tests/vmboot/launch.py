"""Runs a node's key fetch and then execs its Dask process, in one process group with one output.

`python launch.py DIR/<node>/launch.json`, started by runtime.py only for user-data whose run
script fetches the node's keys before Dask (bootplan.plan_fetch). On the VM those are two
`docker run` lines of one script: the first runs to its end whatever its status, then the
second replaces nothing but starts Dask. Here the fetch is a child process with the fetch's
environment, and Dask replaces this process (same pid, so the process group and the monitor's
view stay those of the Dask process), with Dask's environment.
"""

import json
import os
import subprocess
import sys


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        steps = json.load(f)
    fetch = steps["fetch"]
    # Its status is not acted on: the run script does not either (the fetcher says why it
    # failed on the console, and Dask then fails to load its key).
    subprocess.call(fetch["argv"], env=fetch["env"], stdin=subprocess.DEVNULL)
    run = steps["exec"]
    os.execve(run["argv"][0], run["argv"], run["env"])


if __name__ == "__main__":
    main()

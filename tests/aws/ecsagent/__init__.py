"""The ECS boot agent behind tests/aws/ecs_agent.py, which is its entry point (run as a script).

Modules:

``sandbox``   the network namespace it must run in (only `lo`, holding 127/8 and 10/8)
``taskdef``   the task definition and task: Fargate checks, the one `dask` container
``roles``     execution/task roles (trust, permissions) and fetching secrets from SSM
``entry``     the container command `sh -c SCRIPT clusterctl-node ARGV`, read line by line
``cwlogs``    the awslogs driver: dask.log plus PutLogEvents to the task's stream
``aws``       the ``setup``, ``inspect`` and ``log-lines`` subcommands
``boot``      the ``boot`` subcommand: booting tasks, StopTask, when to kill a group
``agent``     the loop skeleton: event logs, the main loop, process groups and kills
``selfcheck`` a by-hand end-to-end check in a throwaway namespace (not run by CI)

It reuses the shared VM runtime's package (`vmboot`, in tests/): Refusal and the address
networks (common), the sandbox check (sandbox), the Dask option parser and image check
(dockerrun), the process helpers (procs) and the event log (events); and from the EC2 agent's
package (`ec2agent`) the loopback-only clients and the security-group inspection (aws).
taskdef, entry and the policy evaluation in roles are pure; boot acts on what they return.
Importing it puts tests/ on sys.path for vmboot.
"""

import os
import sys

_TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

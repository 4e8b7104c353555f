#!/usr/bin/env python3
"""ECS/Fargate test helper for clusterctl: a "boot agent" that makes moto's Fargate tasks real.

moto emulates the ECS API but runs nothing.  This tool watches a moto server and, for every
clusterctl-managed task that is RUNNING, does what Fargate and the ECS agent would: it reads
the task definition, fetches the container's secrets from SSM with the execution role's
rights, interprets the container command -- clusterctl's fixed entry script, strictly -- and
runs the Dask process it describes as a local process bound to the task's private IP, with
its output in `dask.log` and in the task's awslogs stream.  Whatever it cannot interpret is
refused and recorded as an error; nothing is filled in or papered over.

moto's task IPs are random 10.x.x.x addresses, so `boot` runs only inside a sandbox network
namespace whose one interface, `lo`, holds 127.0.0.0/8 and 10.0.0.0/8 (it checks, and exits
non-zero elsewhere):

    ip netns add NS; ip -n NS link set lo up; ip -n NS addr add 10.0.0.0/8 dev lo
    ip netns exec NS PY -m moto.server -H 127.0.0.1 -p PORT      # and the agent, clusterctl...

Subcommands (all take ``--endpoint URL`` (127.0.0.0/8 or localhost) and ``--region``):

``setup``
    Keep ECS tasks RUNNING until stopped (moto's ``ecs::task`` transition), make sure the
    default VPC has DNS hostnames, print ``{"vpc_id", "subnet_ids" (default subnets by AZ),
    "vpc_cidr", "enabled_dns_hostnames"}``.
``boot --python PY --workdir DIR [--poll SECONDS]``
    The long-running agent; prints ``{"ready": true, ...}`` once it has checked the namespace
    and probed ``--python``.  See tests/aws/README.md for what it accepts and how it maps a
    task onto this machine.
``inspect --cluster NAME``
    Print what moto holds for one cluster: ``ecs_clusters``, ``task_definitions``, ``tasks``,
    ``roles`` (+ ``all_role_names``), ``log_groups``, ``ssm_parameters`` (never values),
    ``security_groups``.
``log-lines --group G --stream S``
    Print the messages of one log stream as a JSON list.

Logs of ``boot``: ``DIR/agent-events.jsonl`` (t, task, event, detail); each refusal or error
also goes to ``DIR/agent-errors.jsonl``, which is never created otherwise.
``DIR/<task-id>/boot.json`` records the argv and the names (never the secret values) of the
environment that ran; ``DIR/<task-id>/dask.log`` holds the output.

Layout: this file is the command line only; the work is done by the ``ecsagent`` package next
to it, which reuses the shared ``vmboot`` package (tests/vmboot) and the EC2 agent's clients
(``ec2agent.aws``); all are imported relative to this file's directory because the tool is run
as a script, not installed.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ecsagent.aws import cmd_inspect, cmd_log_lines, cmd_setup  # noqa: E402
from ecsagent.boot import cmd_boot  # noqa: E402


def main(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", required=True, help="moto endpoint, http://127.0.0.1:PORT")
    common.add_argument("--region", default="us-east-1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", parents=[common],
                   help="keep tasks RUNNING; print the default VPC and subnets")
    boot = sub.add_parser("boot", parents=[common], help="run the boot agent")
    boot.add_argument("--python", required=True, help="interpreter with distributed installed")
    boot.add_argument("--workdir", required=True)
    boot.add_argument("--poll", type=float, default=0.3, help="seconds between polls")
    inspect = sub.add_parser("inspect", parents=[common], help="print one cluster's resources")
    inspect.add_argument("--cluster", required=True)
    lines = sub.add_parser("log-lines", parents=[common], help="print one log stream's messages")
    lines.add_argument("--group", required=True)
    lines.add_argument("--stream", required=True)
    args = parser.parse_args(argv)
    handler = {"setup": cmd_setup, "boot": cmd_boot, "inspect": cmd_inspect,
               "log-lines": cmd_log_lines}[args.command]
    return handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())

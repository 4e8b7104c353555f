#!/usr/bin/env python3
"""EC2 test helper for clusterctl: a "boot agent" that makes moto's instances real.

moto emulates the EC2 API but boots nothing. This tool watches a moto server and, for every
clusterctl-managed instance, does what the instance's cloud-init user-data would have done on
a real VM, through the shared VM runtime in tests/vmboot: the user-data is interpreted
strictly, and the Dask process it describes runs as a local process bound to the instance's
loopback private IP.  Whatever the runtime cannot interpret is refused and recorded as an
error; nothing is filled in or papered over.  tests/vmboot/README.md has what is accepted and
the VM -> local transformations; this file and the ``ec2agent`` package only know EC2.

Subcommands (all take ``--endpoint URL`` and ``--region REGION``):

``setup``
    Create a 127.0.0.0/16 VPC with subnets 127.0.1.0/24 and 127.0.2.0/24 in two zones, look
    up an ECS-optimised Amazon Linux AMI through SSM, print ``{"vpc_id", "subnet_ids",
    "ami_id", "ami_parameter"}``.
``boot --python PY --workdir DIR [--poll SECONDS] [--console-dir CDIR]``
    The long-running agent: boots each new pending/running instance from its userData
    attribute and private IP (``VmRuntime.boot``), stops the local process group of an
    instance seen shutting-down/terminated/stopping/stopped or gone (``VmRuntime.stop``:
    SIGTERM, SIGKILL after 5 s; runcmd runs once per instance, so an instance started again
    is not booted again), and, when the run script powers the machine off (``shutdown -P
    now`` after Dask exits, or the ``shutdown -P +N`` TTL timer), calls TerminateInstances
    or StopInstances as the instance's ``instanceInitiatedShutdownBehavior`` says.  With
    ``--console-dir``, links each instance's console output there as CDIR/<instance-id>, for
    tests/aws/moto_server.py to serve as GetConsoleOutput.
``inspect --cluster NAME``
    Print what moto holds for one cluster: ``instances`` (every state, with decoded
    ``user_data``), ``security_groups`` tagged ``clusterctl-cluster=NAME`` (``rules``: the
    ingress rules, flattened from DescribeSecurityGroupRules; ``egress`` apart) and ``tagged``
    (every resource DescribeTags finds with that tag).

Logs: ``DIR/agent-events.jsonl`` (one JSON object a line: t, instance, event in
booted|refused|exited|powered-off|killed|error|poll-error, detail); every refusal and every
``error`` is also appended to ``DIR/agent-errors.jsonl``, which is never created otherwise.
``DIR/<instance-id>/`` holds boot.json (the argv and environment that ran), dask.log
(/var/log/clusterctl-dask.log) and console.log (/dev/console).  A ``poll-error``
(DescribeInstances failing, e.g. while moto is torn down) goes to the events log and stderr only.

All traffic stays on loopback: the endpoint must be a 127.0.0.0/8 address or ``localhost``,
proxy variables are dropped, credentials are passed explicitly (dummy ones unless
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are set) and instance metadata lookups are disabled;
instances must have 127.0.0.0/8 private IPs.

Layout: this file is the command line only; the ``ec2agent`` package next to it holds the
clients, ``setup`` and ``inspect`` (``aws``) and the adapter (``boot``).  Both it and
``vmboot`` are imported relative to this file, since the tool is run as a script.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ec2agent.aws import cmd_inspect, cmd_setup  # noqa: E402
from ec2agent.boot import cmd_boot  # noqa: E402


def main(argv=None):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--endpoint", required=True, help="moto endpoint, http://127.0.0.1:PORT")
    common.add_argument("--region", default="us-east-1")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", parents=[common], help="create the loopback VPC and find an AMI")
    boot = sub.add_parser("boot", parents=[common], help="run the boot agent")
    boot.add_argument("--python", required=True, help="interpreter with distributed installed")
    boot.add_argument("--workdir", required=True)
    boot.add_argument("--poll", type=float, default=0.3, help="seconds between polls")
    boot.add_argument("--console-dir", help="link each instance's console output here")
    inspect = sub.add_parser("inspect", parents=[common], help="print one cluster's resources")
    inspect.add_argument("--cluster", required=True)
    args = parser.parse_args(argv)
    handler = {"setup": cmd_setup, "boot": cmd_boot, "inspect": cmd_inspect}[args.command]
    return handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""EC2 test helper for clusterctl: a "boot agent" that makes moto's instances real.

moto emulates the EC2 API but boots nothing. This tool watches a moto server and, for every
clusterctl-managed instance, does what the instance's cloud-init user-data would have done on
a real VM -- by interpreting that user-data, strictly, and running the Dask process it
describes as a local process bound to the instance's loopback private IP.  Whatever it cannot
interpret is refused and recorded as an error; nothing is filled in or papered over.

Subcommands (all take ``--endpoint URL`` and ``--region REGION``):

``setup``
    Create a 127.0.0.0/16 VPC with subnets 127.0.1.0/24 and 127.0.2.0/24 in two zones, look
    up an ECS-optimised Amazon Linux AMI through SSM, print ``{"vpc_id", "subnet_ids",
    "ami_id", "ami_parameter"}``.
``boot --python PY --workdir DIR [--poll SECONDS]``
    The long-running agent (see below).
``inspect --cluster NAME``
    Print what moto holds for one cluster: ``instances`` (every state, with decoded
    ``user_data``), ``security_groups`` tagged ``clusterctl-cluster=NAME`` (``rules``: the
    ingress rules, flattened from DescribeSecurityGroupRules; ``egress`` apart) and ``tagged``
    (every resource DescribeTags finds with that tag).

What ``boot`` accepts, and the mapping from the VM to this machine
--------------------------------------------------------------------
The user-data must be ``#cloud-config`` YAML holding only ``write_files`` and ``runcmd``, and
``runcmd`` must be exactly ``[["sh", "-c", "nohup SCRIPT >/var/log/clusterctl-dask.log 2>&1 &"]]``
with SCRIPT a written, executable file.  The script is interpreted line by line: ``#!/bin/sh``,
comments, ``set -u``, ``echo`` (no options, no escapes, ``$?`` the only expansion), the
``command -v docker ... || { apt-get ...; }`` install line (a no-op: docker counts as
installed), ``shutdown -P +N [msg] [|| true]`` before Dask, exactly one ``docker run``, then
``shutdown -P now [msg]``.  Anything else, any shell operator, expansion, glob or multi-line
quote outside those forms is refused.  ``docker run`` may only carry ``--rm``, ``--name X``,
``--network host`` (required), ``--gpus all``, ``--env-file F`` and ``--volume A:A:ro`` (A a
directory the user-data wrote files into); the image must be
``ghcr.io/dask/dask:<V>-py3.12`` with V the ``distributed.__version__`` of ``--python``, and its
command ``dask scheduler|worker ...``.  The Dask options are parsed against the option lists of
``dask scheduler`` / ``dask worker``; unknown options are refused.

The transformations, each applied only where the VM's meaning is preserved:

* Files: each ``write_files`` entry lands at ``DIR/<instance-id>/root/<its absolute path>``
  with its mode.  A ``--volume A:A:ro`` makes A visible to the container, so a Dask argument
  (or an env-file value) that is a path under A is rewritten to the rooted copy; a path under a
  written directory that is *not* mounted is refused (the container could not see it).
* ``dask ...`` in the image runs as ``PY -m dask ...`` with the same arguments.
* Environment: only PATH, HOME and LANG of the agent (never DASK_*, CLUSTERCTL_*, AWS_*, ...),
  plus the env-file's lines parsed the way ``docker --env-file`` does (``KEY=VALUE``, value
  literal; a bare ``KEY`` would import the VM's environment and is refused).
* Network: ``--network host`` on a VM with one interface means that "all interfaces"
  (``0.0.0.0``) is the instance's private IP.  So ``--host 0.0.0.0`` becomes ``--host <ip>``
  and ``--dashboard-address 0.0.0.0:P`` (or ``:P``) becomes ``<ip>:P``.  Scheduler and worker
  start their HTTP server even with ``--no-dashboard``; without ``--dashboard-address`` it
  listens on the CLI default ``:8787`` (scheduler) / ``:0`` (worker), every interface, so the
  agent appends ``--dashboard-address <ip>:8787`` / ``<ip>:0`` (noted in boot.json).  Nothing
  may bind anything else: ``--host`` is required (0.0.0.0 or the private IP), and
  ``--interface``/``--listen-address`` are refused; a worker's scheduler address and any
  ``--contact-address`` must be a 127.0.0.0/8 IP literal.
* stdout/stderr of run.sh (``/var/log/clusterctl-dask.log`` on the VM) go to
  ``DIR/<instance-id>/dask.log``; the run script's ``echo`` lines are written there too.
* Power-off (``shutdown -P now`` after Dask exits, or the ``shutdown -P +N`` timer): the
  instance's ``instanceInitiatedShutdownBehavior`` decides -- ``terminate`` calls
  TerminateInstances, ``stop`` calls StopInstances -- and what is left of the process group
  is killed, as a power-off would.
* An instance seen shutting-down/terminated/stopping/stopped (or gone) has its process group
  sent SIGTERM, then SIGKILL after 5 s.  cloud-init's runcmd runs once per instance, so an
  instance started again after a stop is not booted again.

Logs: ``DIR/agent-events.jsonl`` (one JSON object a line: t, instance, event in
booted|refused|exited|powered-off|killed|error|poll-error, detail); every refusal and every
``error`` is also appended to ``DIR/agent-errors.jsonl``, which is never created otherwise.
``DIR/<instance-id>/boot.json`` records the argv and environment that ran.  A ``poll-error``
(DescribeInstances failing, e.g. while moto is torn down) goes to the events log and stderr only.

All traffic stays on loopback: the endpoint must be a 127.0.0.0/8 address or ``localhost``,
proxy variables are dropped, credentials are passed explicitly (dummy ones unless
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are set) and instance metadata lookups are disabled.

Layout: this file is the command line only; the work is done by the ``ec2agent`` package next
to it (``aws``: clients, setup, inspect; ``userdata``, ``runscript``, ``dockerrun``: the strict
interpretation of the user-data; ``agent``: the loop and logs both agents share; ``boot``:
booting and powering off instances), imported relative to this file's directory because the
tool is run as a script, not installed.
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
    inspect = sub.add_parser("inspect", parents=[common], help="print one cluster's resources")
    inspect.add_argument("--cluster", required=True)
    args = parser.parse_args(argv)
    handler = {"setup": cmd_setup, "boot": cmd_boot, "inspect": cmd_inspect}[args.command]
    return handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())

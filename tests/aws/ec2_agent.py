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
"""

import argparse
import base64
import binascii
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse

import boto3
import yaml
from botocore.config import Config

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
ACTIVE_STATES = ("pending", "running")
DOWN_STATES = ("shutting-down", "terminated", "stopping", "stopped")
VM_LOG_PATH = "/var/log/clusterctl-dask.log"
KILL_GRACE_SECONDS = 5.0
IMAGE_RE = re.compile(r"^ghcr\.io/dask/dask:(?P<version>[^:@/\s]+)-py3\.12$")
RUNCMD_RE = re.compile(
    r"^nohup (?P<script>/[A-Za-z0-9._/-]+) >" + re.escape(VM_LOG_PATH) + r" 2>&1 &$"
)
DOCKER_INSTALL_RE = re.compile(
    r"^command -v docker >/dev/null 2>&1 \|\| \{ (?P<body>[^{}]+); \}$"
)
APT_GET_RE = re.compile(r"^apt-get( [A-Za-z0-9._=+-]+)+$")
ADDRESS_RE = re.compile(r"^(?:(?:tcp|tls)://)?(?P<host>[0-9.]+):(?P<port>[0-9]+)$")
PROXY_VARS = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)
BASE_ENV_KEYS = ("PATH", "HOME", "LANG")

# Options of `dask scheduler` / `dask worker` (distributed's click definitions): those taking a
# value, and boolean flags.  Anything else is refused.
DASK_OPTIONS = {
    "scheduler": {
        "value": {
            "--host", "--port", "--interface", "--protocol", "--tls-ca-file", "--tls-cert",
            "--tls-key", "--dashboard-address", "--dashboard-prefix", "--use-xheaders",
            "--pid-file", "--scheduler-file", "--preload", "--idle-timeout",
        },
        "flag": {
            "--dashboard", "--no-dashboard", "--jupyter", "--no-jupyter", "--show", "--no-show",
        },
    },
    "worker": {
        "value": {
            "--tls-ca-file", "--tls-cert", "--tls-key", "--worker-port", "--nanny-port",
            "--dashboard-address", "--listen-address", "--contact-address", "--host",
            "--interface", "--protocol", "--nthreads", "--nworkers", "--name",
            "--memory-limit", "--pid-file", "--local-directory", "--resources",
            "--scheduler-file", "--death-timeout", "--dashboard-prefix", "--lifetime",
            "--lifetime-stagger", "--worker-class", "--preload", "--preload-nanny",
            "--scheduler-sni",
        },
        "flag": {
            "--dashboard", "--no-dashboard", "--nanny", "--no-nanny", "--lifetime-restart",
            "--no-lifetime-restart",
        },
    },
}
REPEATABLE_OPTIONS = {"--preload", "--preload-nanny"}
# `--dashboard-address` defaults of the two commands (host part empty = every interface).
DASHBOARD_DEFAULT_PORT = {"scheduler": 8787, "worker": 0}
# Options the agent cannot honour without binding a non-loopback address or touching this
# machine's own filesystem outside DIR.
REFUSED_OPTIONS = {
    "--interface": "binds a named network interface, which may be non-loopback here",
    "--listen-address": "sets the bind address outside the 0.0.0.0 -> private-IP mapping",
    "--scheduler-file": "writes/reads a file on the container filesystem the agent cannot provide",
    "--pid-file": "writes a file on the container filesystem the agent cannot provide",
    "--local-directory": "uses a container directory the agent cannot provide",
}


class Refusal(Exception):
    """The user-data asks for something the agent cannot interpret faithfully."""


# --------------------------------------------------------------------------------------------
# AWS clients, loopback only


def check_loopback_endpoint(url):
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SystemExit(f"--endpoint {url!r}: expected http://127.x.y.z:PORT")
    host = parsed.hostname
    if host != "localhost":
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise SystemExit(f"--endpoint {url!r}: the host must be a loopback IP literal")
        if addr not in LOOPBACK:
            raise SystemExit(f"--endpoint {url!r}: {host} is not in 127.0.0.0/8")


def make_client(args, service):
    check_loopback_endpoint(args.endpoint)
    for var in PROXY_VARS:
        os.environ.pop(var, None)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    return boto3.client(
        service,
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or "testing",
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing",
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        config=Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def paginate(client, op, key, **kwargs):
    for page in client.get_paginator(op).paginate(**kwargs):
        yield from page.get(key, [])


def all_instances(ec2, filters):
    for reservation in paginate(ec2, "describe_instances", "Reservations", Filters=filters):
        yield from reservation.get("Instances", [])


# --------------------------------------------------------------------------------------------
# setup

AMI_PARAMETERS = (
    "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id",
    "/aws/service/ecs/optimized-ami/amazon-linux-2/recommended/image_id",
)


def cmd_setup(args):
    ec2 = make_client(args, "ec2")
    ssm = make_client(args, "ssm")
    vpc_id = ec2.create_vpc(CidrBlock="127.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
    zones = sorted(
        z["ZoneName"]
        for z in ec2.describe_availability_zones()["AvailabilityZones"]
        if z.get("State", "available") == "available"
    )
    if len(zones) < 2:
        raise SystemExit(f"region {args.region} has fewer than two availability zones: {zones}")
    subnet_ids = []
    for cidr, zone in (("127.0.1.0/24", zones[0]), ("127.0.2.0/24", zones[1])):
        subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=zone)
        subnet_ids.append(subnet["Subnet"]["SubnetId"])
    ami_id = ami_parameter = None
    tried = []
    for name in AMI_PARAMETERS:
        try:
            value = ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound:
            tried.append(f"{name}: not found")
            continue
        images = ec2.describe_images(Filters=[{"Name": "image-id", "Values": [value]}])["Images"]
        if not images:
            tried.append(f"{name}: resolves to {value}, which DescribeImages does not know")
            continue
        ami_id, ami_parameter = value, name
        break
    if ami_id is None:
        raise SystemExit("no usable AMI parameter: " + "; ".join(tried))
    print(json.dumps({
        "vpc_id": vpc_id,
        "subnet_ids": subnet_ids,
        "ami_id": ami_id,
        "ami_parameter": ami_parameter,
    }))


# --------------------------------------------------------------------------------------------
# inspect


def tag_dict(tags):
    return {t["Key"]: t["Value"] for t in tags or []}


def cmd_inspect(args):
    ec2 = make_client(args, "ec2")
    cluster_filter = [{"Name": "tag:clusterctl-cluster", "Values": [args.cluster]}]
    instances = list(all_instances(ec2, cluster_filter))

    volume_ids = [
        bdm["Ebs"]["VolumeId"]
        for inst in instances
        for bdm in inst.get("BlockDeviceMappings", [])
        if bdm.get("Ebs", {}).get("VolumeId")
    ]
    volumes = {}
    if volume_ids:
        for vol in paginate(ec2, "describe_volumes", "Volumes",
                            Filters=[{"Name": "volume-id", "Values": volume_ids}]):
            volumes[vol["VolumeId"]] = vol

    def attribute(iid, name, key):
        try:
            resp = ec2.describe_instance_attribute(InstanceId=iid, Attribute=name)
        except Exception:  # e.g. an instance moto has already dropped
            return None
        return resp.get(key, {}).get("Value")

    out_instances = []
    for inst in sorted(instances, key=launch_order):
        iid = inst["InstanceId"]
        devices = []
        for bdm in inst.get("BlockDeviceMappings", []):
            ebs = bdm.get("Ebs", {})
            vol = volumes.get(ebs.get("VolumeId"), {})
            devices.append({
                "device_name": bdm.get("DeviceName"),
                "volume_id": ebs.get("VolumeId"),
                "size": vol.get("Size"),
                "type": vol.get("VolumeType"),
                "iops": vol.get("Iops"),
                "throughput": vol.get("Throughput"),
                "encrypted": vol.get("Encrypted"),
                "delete_on_termination": ebs.get("DeleteOnTermination"),
            })
        raw_user_data = attribute(iid, "userData", "UserData")
        user_data = None
        if raw_user_data:
            user_data = base64.b64decode(raw_user_data).decode("utf-8", errors="replace")
        out_instances.append({
            "id": iid,
            "state": inst["State"]["Name"],
            "private_ip": inst.get("PrivateIpAddress"),
            "public_ip": inst.get("PublicIpAddress"),
            "instance_type": inst.get("InstanceType"),
            "image_id": inst.get("ImageId"),
            "key_name": inst.get("KeyName"),
            "availability_zone": inst.get("Placement", {}).get("AvailabilityZone"),
            "vpc_id": inst.get("VpcId"),
            "subnet_id": inst.get("SubnetId"),
            "security_group_ids": [g["GroupId"] for g in inst.get("SecurityGroups", [])],
            "tags": tag_dict(inst.get("Tags")),
            "lifecycle": inst.get("InstanceLifecycle"),
            "shutdown_behavior": attribute(
                iid, "instanceInitiatedShutdownBehavior", "InstanceInitiatedShutdownBehavior"
            ),
            "iam_instance_profile": (inst.get("IamInstanceProfile") or {}).get("Arn"),
            "metadata_http_tokens": (inst.get("MetadataOptions") or {}).get("HttpTokens"),
            "block_devices": devices,
            "user_data": user_data,
        })

    groups = list(paginate(ec2, "describe_security_groups", "SecurityGroups",
                           Filters=cluster_filter))
    rules_by_group = {}
    if groups:
        for rule in paginate(ec2, "describe_security_group_rules", "SecurityGroupRules",
                             Filters=[{"Name": "group-id",
                                       "Values": [g["GroupId"] for g in groups]}]):
            rules_by_group.setdefault(rule["GroupId"], []).append(rule)

    def flat(rule):
        return {
            "rule_id": rule.get("SecurityGroupRuleId"),
            "protocol": rule.get("IpProtocol"),
            "from_port": rule.get("FromPort"),
            "to_port": rule.get("ToPort"),
            "cidr_ipv4": rule.get("CidrIpv4"),
            "cidr_ipv6": rule.get("CidrIpv6"),
            "referenced_group_id": (rule.get("ReferencedGroupInfo") or {}).get("GroupId"),
            "description": rule.get("Description"),
        }

    out_groups = []
    for g in sorted(groups, key=lambda g: g["GroupId"]):
        rules = rules_by_group.get(g["GroupId"], [])
        out_groups.append({
            "id": g["GroupId"],
            "name": g.get("GroupName"),
            "description": g.get("Description"),
            "vpc_id": g.get("VpcId"),
            "tags": tag_dict(g.get("Tags")),
            "rules": [flat(r) for r in rules if not r.get("IsEgress")],  # ingress only
            "egress": [flat(r) for r in rules if r.get("IsEgress")],
        })

    tagged = [
        {"resource_id": t["ResourceId"], "resource_type": t["ResourceType"]}
        for t in paginate(ec2, "describe_tags", "Tags", Filters=[
            {"Name": "key", "Values": ["clusterctl-cluster"]},
            {"Name": "value", "Values": [args.cluster]},
        ])
    ]
    tagged.sort(key=lambda t: (t["resource_type"], t["resource_id"]))

    print(json.dumps({
        "cluster": args.cluster,
        "instances": out_instances,
        "security_groups": out_groups,
        "tagged": tagged,
    }, indent=2, default=str))


# --------------------------------------------------------------------------------------------
# user-data interpretation (pure functions: input text -> plan, or Refusal)


def decode_user_data(raw_b64):
    if not raw_b64:
        raise Refusal("the instance has no user-data")
    try:
        data = base64.b64decode(raw_b64, validate=True)
    except (binascii.Error, ValueError) as e:
        raise Refusal(f"user-data attribute is not valid base64: {e}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refusal(f"user-data is not UTF-8 text (compressed or multipart?): {e}")
    first = text.split("\n", 1)[0]
    if first != "#cloud-config":
        raise Refusal(f"user-data must start with the line '#cloud-config', found {first!r}")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise Refusal(f"user-data is not valid YAML: {e}")
    if not isinstance(doc, dict):
        raise Refusal("the cloud-config document is not a mapping")
    unknown = sorted(set(doc) - {"write_files", "runcmd"})
    if unknown:
        raise Refusal(f"cloud-config keys the agent does not interpret: {unknown}")
    return text, doc


def parse_write_files(doc):
    """-> list of (path, mode, bytes). Refuses anything cloud-init would do differently."""
    entries = doc.get("write_files")
    if not isinstance(entries, list) or not entries:
        raise Refusal("cloud-config has no write_files list")
    files = []
    seen = set()
    for n, entry in enumerate(entries):
        where = f"write_files[{n}]"
        if not isinstance(entry, dict):
            raise Refusal(f"{where} is not a mapping")
        unknown = sorted(set(entry) - {"path", "permissions", "owner", "encoding", "content"})
        if unknown:
            raise Refusal(f"{where} has keys the agent does not interpret: {unknown}")
        path = entry.get("path")
        if not isinstance(path, str) or not path.startswith("/") or path.endswith("/"):
            raise Refusal(f"{where}: path {path!r} is not an absolute file path")
        if os.path.normpath(path) != path or "//" in path:
            raise Refusal(f"{where}: path {path!r} is not normalised")
        if path in seen:
            raise Refusal(f"{where}: path {path} is written twice")
        seen.add(path)
        perms = entry.get("permissions", "0644")
        if not isinstance(perms, str) or not re.fullmatch(r"0?[0-7]{3,4}", perms):
            raise Refusal(f"{where}: permissions {perms!r} is not an octal string like \"0600\"")
        mode = int(perms, 8)
        owner = entry.get("owner", "root:root")
        if not isinstance(owner, str):
            raise Refusal(f"{where}: owner {owner!r} is not a string")
        content = entry.get("content", "")
        if not isinstance(content, str):
            raise Refusal(f"{where}: content is not a string")
        encoding = entry.get("encoding", "text/plain")
        if encoding in ("b64", "base64"):
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as e:
                raise Refusal(f"{where}: content is not valid base64: {e}")
        elif encoding == "text/plain":
            data = content.encode("utf-8")
        else:
            raise Refusal(f"{where}: encoding {encoding!r} is not interpreted (b64 or text only)")
        files.append((path, mode, data))
    return files


def parse_runcmd(doc, files):
    runcmd = doc.get("runcmd")
    if not (isinstance(runcmd, list) and len(runcmd) == 1 and isinstance(runcmd[0], list)
            and len(runcmd[0]) == 3 and runcmd[0][:2] == ["sh", "-c"]
            and isinstance(runcmd[0][2], str)):
        raise Refusal(
            f"runcmd must be exactly [[\"sh\", \"-c\", \"nohup SCRIPT >{VM_LOG_PATH} 2>&1 &\"]],"
            f" found {runcmd!r}"
        )
    m = RUNCMD_RE.match(runcmd[0][2])
    if not m:
        raise Refusal(f"runcmd's shell command is not the nohup of a run script: {runcmd[0][2]!r}")
    script = m.group("script")
    by_path = {p: (mode, data) for p, mode, data in files}
    if script not in by_path:
        raise Refusal(f"runcmd runs {script}, which the user-data does not write")
    mode, data = by_path[script]
    if not mode & 0o100:
        raise Refusal(f"runcmd executes {script} but its permissions {mode:04o} are not executable")
    return script


class LogicalLine:
    def __init__(self, lineno, text, ops, expansions, hazards):
        self.lineno = lineno
        self.text = text
        self.ops = ops
        self.expansions = expansions
        self.hazards = hazards


def scan_shell(src):
    """Split sh source into logical lines (comments dropped, backslash-newlines joined, quotes
    kept for shlex) and record, per line, what shlex.split alone would hide: unquoted operator
    characters, parameter/command expansions, globs, tildes and escapes shlex reads differently
    from sh."""
    out = []
    cur, ops, exps, hazards = [], [], [], []
    lineno = start = 1
    state = "plain"  # plain | single | double
    i, n = 0, len(src)
    word_breaks = set(" \t;&|<>()")  # an escaped pair like "\\ " is not a break

    def flush():
        text = "".join(cur).strip()
        if text:
            out.append(LogicalLine(start, text, "".join(ops), list(exps), list(hazards)))
        cur.clear()
        ops.clear()
        exps.clear()
        hazards.clear()

    def expansion_at(j):
        if src.startswith("$?", j):
            return "$?", 2
        if src[j] == "`":
            return "`", 1
        m = re.match(r"\$(\{[^}]*\}?|\(|[A-Za-z_][A-Za-z0-9_]*|.)?", src[j:])
        return m.group(0), len(m.group(0))

    while i < n:
        c = src[i]
        if state == "plain":
            if c == "\\":
                if i + 1 < n and src[i + 1] == "\n":
                    i += 2
                    lineno += 1
                    continue
                if i + 1 >= n:
                    hazards.append("a backslash at the end of the script")
                    i += 1
                    continue
                cur.append(src[i:i + 2])
                i += 2
                continue
            if c == "#" and (not cur or cur[-1] in word_breaks):
                while i < n and src[i] != "\n":
                    i += 1
                continue
            if c == "\n":
                flush()
                lineno += 1
                start = lineno
                i += 1
                continue
            if c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c in ";&|<>()":
                ops.append(c)
            elif c in "$`":
                tok, width = expansion_at(i)
                exps.append(tok)
                cur.append(src[i:i + width])
                i += width
                continue
            elif c in "*?[":
                hazards.append(f"unquoted glob character {c!r}")
            elif c == "~" and (not cur or cur[-1] in word_breaks):
                hazards.append("unquoted tilde expansion")
            cur.append(c)
            i += 1
        elif state == "single":
            if c == "'":
                state = "plain"
            elif c == "\n":
                hazards.append("a quoted string spanning lines")
                lineno += 1
            cur.append(c)
            i += 1
        else:  # double
            if c == "\\" and i + 1 < n:
                nxt = src[i + 1]
                if nxt == "\n":
                    i += 2
                    lineno += 1
                    continue
                if nxt in "$`":
                    hazards.append(f"escaped {nxt!r} inside double quotes")
                cur.append(src[i:i + 2])
                i += 2
                continue
            if c == '"':
                state = "plain"
            elif c in "$`":
                tok, width = expansion_at(i)
                exps.append(tok)
                cur.append(src[i:i + width])
                i += width
                continue
            elif c == "\n":
                hazards.append("a quoted string spanning lines")
                lineno += 1
            cur.append(c)
            i += 1
    if state != "plain":
        raise Refusal(f"run script line {start}: unterminated {state}-quoted string")
    flush()
    return out


class ScriptPlan:
    def __init__(self):
        self.ttl_minutes = None
        self.docker_words = None
        self.docker_line = None
        self.power_off_on_exit = False
        self.echo_before = []  # lines printed before Dask starts
        self.echo_after = []  # templates ("$?" = Dask's exit status) printed after it exits
        self.ignored = []  # lines accepted as no-ops here (docker install)


def interpret_run_script(src):
    lines = src.split("\n")
    if lines[0] != "#!/bin/sh":
        raise Refusal(f"run script must start with '#!/bin/sh', found {lines[0]!r}")
    plan = ScriptPlan()
    phase = "before-dask"  # -> "after-dask" -> "powered-off"
    for line in scan_shell(src):
        where = f"run script line {line.lineno} ({line.text[:80]!r})"
        if line.hazards:
            raise Refusal(f"{where}: {'; '.join(sorted(set(line.hazards)))}")
        if phase == "powered-off":
            raise Refusal(f"{where}: nothing may follow 'shutdown -P now'")

        install = DOCKER_INSTALL_RE.match(line.text)
        if install:
            if phase != "before-dask" or plan.ignored:
                raise Refusal(f"{where}: the docker install line must come once, before docker run")
            if line.expansions:
                raise Refusal(f"{where}: expansions {line.expansions} in the docker install line")
            for part in install.group("body").split(" && "):
                if not APT_GET_RE.match(part):
                    raise Refusal(f"{where}: the docker install fallback runs {part!r}, "
                                  "not a plain apt-get command")
            plan.ignored.append(line.text)
            continue

        try:
            words = shlex.split(line.text)
        except ValueError as e:
            raise Refusal(f"{where}: cannot split into words: {e}")
        if not words:
            raise Refusal(f"{where}: an empty command")
        cmd = words[0]

        if cmd == "echo":
            if line.ops:
                raise Refusal(f"{where}: shell operators {line.ops!r} in an echo line")
            bad = [e for e in line.expansions if e != "$?"]
            if bad:
                raise Refusal(f"{where}: expansions {bad} (only $? is interpreted in echo)")
            text = " ".join(words[1:])
            if text.count("$?") != len(line.expansions):
                raise Refusal(f"{where}: a literal '$?' the agent cannot tell from an expansion")
            if any(w.startswith("-") for w in words[1:2]) or "\\" in text:
                raise Refusal(f"{where}: echo options or backslash escapes are not interpreted")
            if phase == "before-dask":
                plan.echo_before.append(text.replace("$?", "0"))
            else:
                plan.echo_after.append(text)
            continue

        if line.expansions:
            raise Refusal(f"{where}: shell expansions {line.expansions} are not interpreted")

        if cmd == "shutdown":
            if line.ops:
                if line.ops != "||" or words[-2:] != ["||", "true"]:
                    raise Refusal(f"{where}: only a trailing '|| true' may follow shutdown")
                words = words[:-2]
            if len(words) < 3 or words[1] != "-P":
                raise Refusal(f"{where}: expected 'shutdown -P +MINUTES|now [message]'")
            when = words[2]
            if re.fullmatch(r"\+[0-9]+", when):
                if phase != "before-dask" or plan.ttl_minutes is not None:
                    raise Refusal(f"{where}: the TTL shutdown must come once, before docker run")
                plan.ttl_minutes = int(when[1:])
            elif when == "now":
                if phase != "after-dask":
                    raise Refusal(f"{where}: 'shutdown -P now' before Dask ran would power off"
                                  " the machine at boot")
                plan.power_off_on_exit = True
                phase = "powered-off"
            else:
                raise Refusal(f"{where}: shutdown time {when!r} is not '+MINUTES' or 'now'")
            continue

        if line.ops:
            raise Refusal(f"{where}: shell operators {line.ops!r} are not interpreted here")

        if words == ["set", "-u"]:
            continue

        if words[:2] == ["docker", "run"]:
            if phase != "before-dask":
                raise Refusal(f"{where}: a second docker run")
            plan.docker_words = words
            plan.docker_line = line.lineno
            phase = "after-dask"
            continue

        raise Refusal(f"{where}: command {cmd!r} is not interpreted by the agent")

    if plan.docker_words is None:
        raise Refusal("the run script has no docker run command")
    return plan


def parse_env_file(path, data):
    """`docker --env-file` semantics: leading whitespace trimmed, blank and '#' lines skipped,
    KEY=VALUE with VALUE literal (a trailing CR dropped, like Go's line scanner)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Refusal(f"env file {path} is not UTF-8: {e}")
    if text.startswith("\ufeff"):
        text = text[1:]
    pairs = []
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw[:-1] if raw.endswith("\r") else raw
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        if not eq:
            raise Refusal(f"env file {path} line {n}: {key!r} has no '=', so docker would copy it"
                          " from the VM's own environment, which the user-data does not define")
        if not key or re.search(r"\s", key):
            raise Refusal(f"env file {path} line {n}: invalid variable name {key!r}")
        pairs.append((key, value))
    return pairs


class DockerRun:
    def __init__(self):
        self.rm = False
        self.name = None
        self.network = None
        self.gpus = None
        self.env_files = []
        self.volumes = []
        self.image = None
        self.argv = []


def interpret_docker_run(words, files_by_path, written_dirs):
    run = DockerRun()
    args = words[2:]
    i = 0
    while i < len(args) and args[i].startswith("-"):
        flag, eq, value = args[i].partition("=")
        if flag == "--rm":
            if eq:
                raise Refusal(f"docker run: {args[i]!r} is not interpreted")
            run.rm = True
            i += 1
            continue
        if flag not in ("--name", "--network", "--gpus", "--env-file", "--volume"):
            raise Refusal(f"docker run: flag {args[i]!r} is not interpreted by the agent")
        if eq:
            i += 1
        else:
            if i + 1 >= len(args):
                raise Refusal(f"docker run: {flag} has no value")
            value = args[i + 1]
            i += 2
        if flag == "--name":
            if run.name is not None:
                raise Refusal("docker run: --name given twice")
            run.name = value
        elif flag == "--network":
            if value != "host" or run.network is not None:
                raise Refusal(f"docker run: --network {value!r}: only one '--network host' can"
                              " be emulated")
            run.network = value
        elif flag == "--gpus":
            if value != "all" or run.gpus is not None:
                raise Refusal(f"docker run: --gpus {value!r}: only one '--gpus all' is accepted")
            run.gpus = value
        elif flag == "--env-file":
            if value not in files_by_path:
                raise Refusal(f"docker run: --env-file {value} is not a file the user-data writes")
            run.env_files.append(value)
        else:  # --volume
            parts = value.split(":")
            if len(parts) != 3 or parts[2] != "ro" or parts[0] != parts[1]:
                raise Refusal(f"docker run: --volume {value!r}: only 'DIR:DIR:ro' is emulated")
            if parts[0] not in written_dirs:
                raise Refusal(f"docker run: --volume {value!r}: {parts[0]} is not a directory the"
                              " user-data writes files into, so its contents are unknown")
            if parts[0] in run.volumes:
                raise Refusal(f"docker run: --volume {value!r} given twice")
            run.volumes.append(parts[0])
    if run.network != "host":
        raise Refusal("docker run: without '--network host' the container's ports could not be"
                      " reached on the instance IP; the agent emulates host networking only")
    if i >= len(args):
        raise Refusal("docker run: no image")
    run.image = args[i]
    run.argv = args[i + 1:]
    return run


def parse_address(value, what):
    m = ADDRESS_RE.match(value)
    if not m:
        raise Refusal(f"{what} {value!r} is not [tcp://|tls://]IP:PORT")
    try:
        host = ipaddress.ip_address(m.group("host"))
    except ValueError:
        raise Refusal(f"{what} {value!r}: {m.group('host')!r} is not an IP address")
    if host not in LOOPBACK:
        raise Refusal(f"{what} {value!r} is not in 127.0.0.0/8; the agent only dials loopback")
    return value


def translate_dask_args(role, args, private_ip, root_path):
    """Container argv after `dask ROLE` -> (local argv after `-m dask ROLE`, notes)."""
    spec = DASK_OPTIONS[role]
    out, positionals, seen, notes = [], [], {}, []

    def map_bind_host(host, what):
        if host in ("0.0.0.0", ""):
            return private_ip
        if host == private_ip:
            return host
        raise Refusal(f"dask {role} {what} {host!r}: only 0.0.0.0 or empty (all interfaces of"
                      f" the VM, i.e. its private IP {private_ip}) or that IP can be emulated")

    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-":
            name, eq, value = arg.partition("=")
            if name in spec["flag"]:
                if eq:
                    raise Refusal(f"dask {role}: flag {arg!r} takes no value")
                out.append(arg)
                i += 1
                continue
            if name not in spec["value"]:
                raise Refusal(f"dask {role}: option {arg!r} is not a known option")
            if name in REFUSED_OPTIONS:
                raise Refusal(f"dask {role}: {name} {REFUSED_OPTIONS[name]}")
            if not eq:
                if i + 1 >= len(args):
                    raise Refusal(f"dask {role}: {name} has no value")
                value = args[i + 1]
                i += 2
            else:
                i += 1
            if name in seen and name not in REPEATABLE_OPTIONS:
                raise Refusal(f"dask {role}: {name} given twice")
            seen.setdefault(name, []).append(value)
            if name == "--host":
                value = map_bind_host(value, "--host")
            elif name == "--dashboard-address":
                host, colon, port = value.rpartition(":")
                if not colon or not port.isdigit():
                    raise Refusal(f"dask {role}: --dashboard-address {value!r} is not HOST:PORT")
                value = f"{map_bind_host(host, '--dashboard-address host')}:{port}"
            elif name == "--contact-address":
                parse_address(value, f"dask {role} --contact-address")
            elif name == "--protocol" and value not in ("tcp", "tls"):
                raise Refusal(f"dask {role}: --protocol {value!r} is not tcp or tls")
            value = root_path(value)
            out.extend([name, value] if not eq else [f"{name}={value}"])
        else:
            positionals.append(arg)
            out.append(root_path(arg))
            i += 1

    if "--host" not in seen:
        raise Refusal(f"dask {role} without --host binds every interface of this machine;"
                      " the agent needs '--host 0.0.0.0' to map it to the instance IP")
    if "--dashboard-address" not in seen:
        # Scheduler and worker start their HTTP server (health, metrics; the dashboard is only
        # an extra app on it) even with --no-dashboard, on --dashboard-address, whose CLI
        # default has an empty host: every interface of the VM, i.e. its private IP here.
        port = DASHBOARD_DEFAULT_PORT[role]
        out.extend(["--dashboard-address", f"{private_ip}:{port}"])
        notes.append(f"no --dashboard-address: dask {role}'s default ':{port}' (every interface)"
                     f" made explicit as {private_ip}:{port}")
    if role == "scheduler" and positionals:
        raise Refusal(f"dask scheduler: unexpected arguments {positionals}")
    if role == "worker":
        if len(positionals) != 1:
            raise Refusal(f"dask worker: expected exactly one scheduler address, got {positionals}")
        parse_address(positionals[0], "dask worker scheduler address")
    return out, notes


def tail(path, lines=30):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 8192))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]


# --------------------------------------------------------------------------------------------
# the boot agent


def launch_order(inst):
    """Boot in launch order; LaunchTime has one-second resolution in moto, so the private IP
    (handed out sequentially per subnet) breaks ties."""
    try:
        ip = int(ipaddress.ip_address(inst.get("PrivateIpAddress") or "0.0.0.0"))
    except ValueError:
        ip = 0
    return (str(inst.get("LaunchTime")), ip, inst["InstanceId"])


class Booted:
    def __init__(self, iid, ip, workdir):
        self.id = iid
        self.ip = ip
        self.dir = workdir
        self.log_path = os.path.join(workdir, "dask.log")
        self.proc = None
        self.pgid = None
        self.returncode = None
        self.exited = False
        self.ttl_deadline = None
        self.power_off_on_exit = False
        self.echo_after = []
        self.powered_off = False
        self.machine_down = False
        self.kill = None  # {"reason", "deadline", "escalated"} while a kill is under way

    def group_alive(self):
        if self.proc is not None and self.proc.poll() is not None and not self.exited:
            self.returncode = self.proc.returncode
        if self.pgid is None:
            return False
        return process_group_alive(self.pgid)


def process_group_alive(pgid):
    """Whether any non-zombie process is left in the group.  kill(-pgid, 0) alone also counts
    zombies, which linger until a (possibly lazy) init reaps the orphans."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return True
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode("ascii", errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


class Agent:
    def __init__(self, args):
        self.ec2 = make_client(args, "ec2")
        self.workdir = os.path.abspath(args.workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.events_path = os.path.join(self.workdir, "agent-events.jsonl")
        self.errors_path = os.path.join(self.workdir, "agent-errors.jsonl")
        self.poll_interval = args.poll
        self.base_env = {k: os.environ[k] for k in BASE_ENV_KEYS if k in os.environ}
        python = shutil.which(args.python, path=self.base_env.get("PATH"))
        if python is None:
            raise SystemExit(f"--python {args.python!r} is not an executable")
        self.python = os.path.abspath(python)
        probe = subprocess.run(
            [self.python, "-c", "import distributed; print(distributed.__version__)"],
            env=self.base_env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=300,
        )
        if probe.returncode != 0:
            raise SystemExit(f"{self.python} cannot import distributed:\n{probe.stderr}")
        self.distributed_version = probe.stdout.strip()
        self.seen = set()
        self.booted = {}
        self.stop = threading.Event()

    # -- logging ---------------------------------------------------------------------------

    def event(self, iid, kind, detail, error=False):
        record = {"t": time.time(), "instance": iid, "event": kind, "detail": detail}
        line = json.dumps(record, default=str) + "\n"
        with open(self.events_path, "a", encoding="utf-8") as f:
            f.write(line)
        if error:
            with open(self.errors_path, "a", encoding="utf-8") as f:
                f.write(line)
        print(f"ec2_agent: {iid or '-'} {kind}: {json.dumps(detail, default=str)}",
              file=sys.stderr, flush=True)

    # -- main loop --------------------------------------------------------------------------

    def run(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        print(json.dumps({"ready": True, "distributed_version": self.distributed_version,
                          "python": self.python, "workdir": self.workdir}), flush=True)
        next_poll = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_poll:
                self.poll()
                next_poll = time.monotonic() + self.poll_interval
            self.tick()
            self.stop.wait(min(0.1, self.poll_interval))
        self.shutdown()

    def poll(self):
        try:
            instances = list(all_instances(
                self.ec2, [{"Name": "tag:clusterctl-managed", "Values": ["true"]}]
            ))
        except Exception as e:
            self.event(None, "poll-error", {"error": repr(e)})
            return
        instances.sort(key=launch_order)
        present = set()
        for inst in instances:
            iid = inst["InstanceId"]
            state = inst.get("State", {}).get("Name")
            present.add(iid)
            if iid not in self.seen and state in ACTIVE_STATES:
                self.seen.add(iid)
                self.boot(inst)
            elif iid in self.booted and state in DOWN_STATES:
                b = self.booted[iid]
                if not b.machine_down:
                    b.machine_down = True
                    b.ttl_deadline = None
                    b.power_off_on_exit = False
                    self.start_kill(b, f"instance is {state}")
        for iid, b in self.booted.items():
            if iid not in present and not b.machine_down:
                b.machine_down = True
                b.ttl_deadline = None
                b.power_off_on_exit = False
                self.start_kill(b, "instance disappeared from DescribeInstances")

    def tick(self):
        for b in list(self.booted.values()):
            try:
                if b.kill is not None:
                    self.progress_kill(b)
                    continue
                if b.proc is not None and not b.exited and b.proc.poll() is not None:
                    self.on_exit(b, b.proc.returncode)
                if (b.ttl_deadline is not None and not b.powered_off
                        and time.monotonic() >= b.ttl_deadline):
                    b.ttl_deadline = None
                    self.power_off(b, "TTL timer of 'shutdown -P +N' fired")
            except Exception as e:
                self.event(b.id, "error", {"error": repr(e), "trace": traceback.format_exc()},
                           error=True)

    def shutdown(self):
        for b in self.booted.values():
            if b.kill is None:
                self.start_kill(b, "agent stopping")
        deadline = time.monotonic() + KILL_GRACE_SECONDS + 2
        while any(b.kill is not None for b in self.booted.values()):
            for b in self.booted.values():
                if b.kill is not None:
                    self.progress_kill(b)
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)

    # -- booting ----------------------------------------------------------------------------

    def boot(self, inst):
        iid = inst["InstanceId"]
        try:
            b = self.prepare_and_spawn(inst)
        except Refusal as e:
            self.event(iid, "refused", {"reason": str(e)}, error=True)
            return
        except Exception as e:
            self.event(iid, "refused", {"reason": f"agent failure: {e!r}",
                                        "trace": traceback.format_exc()}, error=True)
            return
        self.booted[iid] = b
        self.event(iid, "booted", {"private_ip": b.ip, "pid": b.proc.pid,
                                   "boot_json": os.path.join(b.dir, "boot.json")})

    def prepare_and_spawn(self, inst):
        iid = inst["InstanceId"]
        ip = inst.get("PrivateIpAddress")
        try:
            if ipaddress.ip_address(ip or "") not in LOOPBACK:
                raise ValueError
        except ValueError:
            raise Refusal(f"private IP {ip!r} is not in 127.0.0.0/8; the agent binds loopback only")

        attr = self.ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        _, doc = decode_user_data(attr.get("UserData", {}).get("Value"))
        files = parse_write_files(doc)
        files_by_path = {p: (mode, data) for p, mode, data in files}
        written_dirs = {os.path.dirname(p) for p in files_by_path}

        inst_dir = os.path.join(self.workdir, iid)
        if os.path.exists(inst_dir):
            raise Refusal(f"{inst_dir} already exists: this instance was booted before (cloud-init"
                          " runs runcmd once per instance)")
        root = os.path.join(inst_dir, "root")

        def rooted(path):
            return os.path.join(root, path.lstrip("/"))

        os.makedirs(root)
        for path, mode, data in files:
            target = rooted(path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(target, mode)

        script = parse_runcmd(doc, files)
        try:
            script_src = files_by_path[script][1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise Refusal(f"run script {script} is not UTF-8: {e}")
        plan = interpret_run_script(script_src)
        run = interpret_docker_run(plan.docker_words, files_by_path, written_dirs)

        m = IMAGE_RE.match(run.image)
        if not m:
            raise Refusal(f"image {run.image!r} is not ghcr.io/dask/dask:<version>-py3.12")
        if m.group("version") != self.distributed_version:
            raise Refusal(f"image {run.image} is Dask {m.group('version')}, but {self.python}"
                          f" has distributed {self.distributed_version}")
        if len(run.argv) < 2 or run.argv[0] != "dask" or run.argv[1] not in DASK_OPTIONS:
            raise Refusal(f"container command {run.argv[:2]} is not 'dask scheduler|worker'")
        role = run.argv[1]

        def root_path(value):
            for vol in run.volumes:
                if value == vol or value.startswith(vol + "/"):
                    if ".." in value.split("/"):
                        raise Refusal(f"path {value!r} climbs out of the mounted {vol}")
                    return rooted(value)
            for d in sorted(written_dirs):
                if value == d or value.startswith(d + "/"):
                    raise Refusal(f"path {value!r} is under {d}, which the user-data writes but"
                                  " docker run does not mount, so the container cannot see it")
            return value

        dask_args, notes = translate_dask_args(role, run.argv[2:], ip, root_path)
        argv = [self.python, "-m", "dask", role] + dask_args

        env = dict(self.base_env)
        env_file_pairs = []
        for path in run.env_files:
            for key, value in parse_env_file(path, files_by_path[path][1]):
                env_file_pairs.append((key, value))
                env[key] = root_path(value)

        cwd = os.path.join(inst_dir, "work")
        os.makedirs(cwd)
        b = Booted(iid, ip, inst_dir)
        b.power_off_on_exit = plan.power_off_on_exit
        b.echo_after = plan.echo_after
        record = {
            "instance": iid,
            "private_ip": ip,
            "role": role,
            "python": self.python,
            "argv": argv,
            "env": env,
            "cwd": cwd,
            "log": b.log_path,
            "container": {
                "image": run.image,
                "argv": run.argv,
                "name": run.name,
                "rm": run.rm,
                "network": run.network,
                "gpus": run.gpus,
                "env_files": run.env_files,
                "env_file_pairs": env_file_pairs,
                "volumes": run.volumes,
            },
            "run_script": script,
            "docker_run_line": plan.docker_line,
            "ttl_minutes": plan.ttl_minutes,
            "power_off_on_exit": plan.power_off_on_exit,
            "ignored_lines": plan.ignored,
            "notes": notes,
            "files": [
                {"path": p, "rooted": rooted(p), "mode": f"{mode:04o}", "bytes": len(data)}
                for p, mode, data in files
            ],
        }
        with open(os.path.join(inst_dir, "boot.json"), "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2)

        with open(b.log_path, "ab") as log:
            for text in plan.echo_before:
                log.write((text + "\n").encode("utf-8"))
            log.flush()
            b.proc = subprocess.Popen(
                argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            )
        b.pgid = b.proc.pid
        if plan.ttl_minutes is not None:
            b.ttl_deadline = time.monotonic() + 60.0 * plan.ttl_minutes
        return b

    # -- exits, power-off and kills ---------------------------------------------------------

    def on_exit(self, b, returncode):
        b.exited = True
        b.returncode = returncode
        with open(b.log_path, "ab") as log:
            for text in b.echo_after:
                log.write((text.replace("$?", str(returncode)) + "\n").encode("utf-8"))
        self.event(b.id, "exited", {"returncode": returncode, "log_tail": tail(b.log_path)})
        if b.power_off_on_exit and not b.powered_off and not b.machine_down:
            self.power_off(b, "Dask exited; the run script runs 'shutdown -P now'")
        elif b.group_alive() and b.powered_off:
            self.start_kill(b, "powered off")

    def power_off(self, b, reason):
        b.powered_off = True
        b.ttl_deadline = None
        try:
            described = list(self.ec2.describe_instances(InstanceIds=[b.id])["Reservations"])
            states = [i["State"]["Name"] for r in described for i in r["Instances"]]
            if states and states[0] in DOWN_STATES:
                self.event(b.id, "powered-off", {"reason": reason, "action": "none",
                                                 "detail": f"instance already {states[0]}"})
            else:
                attr = self.ec2.describe_instance_attribute(
                    InstanceId=b.id, Attribute="instanceInitiatedShutdownBehavior")
                behavior = attr.get("InstanceInitiatedShutdownBehavior", {}).get("Value")
                if behavior == "terminate":
                    self.ec2.terminate_instances(InstanceIds=[b.id])
                    action = "TerminateInstances"
                elif behavior == "stop":
                    self.ec2.stop_instances(InstanceIds=[b.id])
                    action = "StopInstances"
                else:
                    raise RuntimeError(f"unknown instanceInitiatedShutdownBehavior {behavior!r}")
                self.event(b.id, "powered-off", {"reason": reason, "shutdown_behavior": behavior,
                                                 "action": action})
        except Exception as e:
            self.event(b.id, "error", {"while": f"powering off ({reason})", "error": repr(e)},
                       error=True)
        if b.group_alive():
            self.start_kill(b, "powered off")

    def start_kill(self, b, reason):
        if b.kill is not None or not b.group_alive():
            return
        try:
            os.killpg(b.pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        b.kill = {"reason": reason, "deadline": time.monotonic() + KILL_GRACE_SECONDS,
                  "escalated": False}

    def progress_kill(self, b):
        if b.proc is not None and b.proc.poll() is not None and not b.exited:
            b.exited = True
            b.returncode = b.proc.returncode
        if not b.group_alive():
            self.event(b.id, "killed", {"reason": b.kill["reason"], "returncode": b.returncode,
                                        "sigkill": b.kill["escalated"]})
            b.kill = None
            return
        if time.monotonic() >= b.kill["deadline"] and not b.kill["escalated"]:
            b.kill["escalated"] = True
            try:
                os.killpg(b.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def cmd_boot(args):
    if args.poll <= 0:
        raise SystemExit("--poll must be positive")
    agent = Agent(args)
    agent.run()
    return 0


# --------------------------------------------------------------------------------------------


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

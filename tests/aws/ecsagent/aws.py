"""The AWS side of the ECS agent: the `setup`, `inspect` and `log-lines` subcommands.

Clients come from ec2agent.aws (loopback endpoint only, dummy credentials, no proxies).
"""

import json
import urllib.request

from ec2agent.aws import inspect_security_groups, make_client, paginate, tag_dict

from .roles import as_document

TASK_TRANSITION = {"model_name": "ecs::task",
                   "transition": {"progression": "manual", "times": 1000000}}


def ecs_tags(tags):
    return {t.get("key"): t.get("value") for t in tags or []}


# --------------------------------------------------------------------------------------------
# setup


def cmd_setup(args):
    ec2 = make_client(args, "ec2")  # checks the endpoint is loopback first
    req = urllib.request.Request(
        args.endpoint.rstrip("/") + "/moto-api/state-manager/set-transition",
        data=json.dumps(TASK_TRANSITION).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as resp:
        if not 200 <= resp.status < 300:  # moto answers 201
            raise SystemExit(f"set-transition answered HTTP {resp.status}")
    # Task ARNs in the long format AWS uses today (arn:...:task/<cluster>/<id>); moto's default
    # is the old short one.
    make_client(args, "ecs").put_account_setting(name="taskLongArnFormat", value="enabled")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise SystemExit(f"region {args.region} has no default VPC")
    vpc = vpcs[0]
    enabled_dns = False
    # RunTask crashes moto for a subnet whose VPC lacks DNS hostnames (see the moto notes).
    attr = ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")
    if not attr["EnableDnsHostnames"]["Value"]:
        ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], EnableDnsHostnames={"Value": True})
        enabled_dns = True
    subnets = list(paginate(ec2, "describe_subnets", "Subnets", Filters=[
        {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
        {"Name": "default-for-az", "Values": ["true"]},
    ]))
    subnets.sort(key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))
    print(json.dumps({
        "vpc_id": vpc["VpcId"],
        "subnet_ids": [s["SubnetId"] for s in subnets],
        "vpc_cidr": vpc["CidrBlock"],
        "enabled_dns_hostnames": enabled_dns,
    }))


# --------------------------------------------------------------------------------------------
# inspect


def _all_clusters(ecs):
    arns = list(paginate(ecs, "list_clusters", "clusterArns"))
    clusters = []
    for i in range(0, len(arns), 100):
        clusters += ecs.describe_clusters(clusters=arns[i:i + 100], include=["TAGS"])["clusters"]
    return clusters


def _task_definitions(ecs, name):
    """Revisions of the families `clusterctl-NAME-*`.  The prefix of `a` also starts the
    families of a cluster `a-x`, so a revision counts when its `clusterctl-cluster` tag is NAME,
    or, untagged, when the rest of its family has no '-' (`scheduler`, `worker`)."""
    prefix = f"clusterctl-{name}-"
    out = []
    for family in sorted(set(paginate(ecs, "list_task_definition_families", "families",
                                      familyPrefix=prefix, status="ALL"))):
        if not family.startswith(prefix):
            continue
        for status in ("ACTIVE", "INACTIVE", "DELETE_IN_PROGRESS"):
            for arn in paginate(ecs, "list_task_definitions", "taskDefinitionArns",
                                familyPrefix=family, status=status):
                try:
                    resp = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
                except ecs.exceptions.ClientException as e:
                    if "-" not in family[len(prefix):]:
                        out.append({"arn": arn, "family": family, "status": status,
                                    "describe_error": str(e)})
                    continue
                td = resp["taskDefinition"]
                owner = ecs_tags(resp.get("tags")).get("clusterctl-cluster")
                if owner != name and (owner is not None or "-" in family[len(prefix):]):
                    continue
                out.append({
                    "arn": td["taskDefinitionArn"],
                    "family": td.get("family"),
                    "revision": td.get("revision"),
                    "status": td.get("status"),
                    "cpu": td.get("cpu"),
                    "memory": td.get("memory"),
                    "network_mode": td.get("networkMode"),
                    "requires_compatibilities": td.get("requiresCompatibilities"),
                    "runtime_platform": td.get("runtimePlatform"),
                    "execution_role_arn": td.get("executionRoleArn"),
                    "task_role_arn": td.get("taskRoleArn"),
                    "tags": ecs_tags(resp.get("tags")),
                    "containers": [{
                        "name": c.get("name"),
                        "image": c.get("image"),
                        "essential": c.get("essential"),
                        "command": c.get("command"),
                        "environment": {e["name"]: e.get("value")
                                        for e in c.get("environment") or []},
                        "secrets": [{"name": s.get("name"), "valueFrom": s.get("valueFrom")}
                                    for s in c.get("secrets") or []],
                        "memory_reservation": c.get("memoryReservation"),
                        "port_mappings": c.get("portMappings"),
                        "log_configuration": c.get("logConfiguration"),
                        "stop_timeout": c.get("stopTimeout"),
                    } for c in td.get("containerDefinitions") or []],
                })
    out.sort(key=lambda t: (t["family"], t.get("revision") or 0))
    return out


def _tasks(ecs, ec2, clusters, name):
    tagged_clusters = {c["clusterArn"] for c in clusters
                       if ecs_tags(c.get("tags")).get("clusterctl-cluster") == name}
    found = {}
    for c in clusters:
        for status in ("RUNNING", "STOPPED"):
            arns = list(paginate(ecs, "list_tasks", "taskArns", cluster=c["clusterArn"],
                                 desiredStatus=status))
            for i in range(0, len(arns), 100):
                resp = ecs.describe_tasks(cluster=c["clusterArn"], tasks=arns[i:i + 100],
                                          include=["TAGS"])
                for t in resp.get("tasks", []):
                    found[t["taskArn"]] = t
    out = []
    for arn, t in sorted(found.items()):
        tags = ecs_tags(t.get("tags"))
        if tags.get("clusterctl-cluster") != name and t.get("clusterArn") not in tagged_clusters:
            continue
        eni = next((a for a in t.get("attachments", [])
                    if a.get("type") == "ElasticNetworkInterface"), {})
        details = {d.get("name"): d.get("value") for d in eni.get("details", [])}
        groups = None
        if details.get("networkInterfaceId"):
            try:
                nis = ec2.describe_network_interfaces(
                    NetworkInterfaceIds=[details["networkInterfaceId"]])["NetworkInterfaces"]
                groups = sorted(g["GroupId"] for ni in nis for g in ni.get("Groups", []))
            except Exception:  # the ENI may be gone
                groups = None
        out.append({
            "arn": arn,
            "id": arn.rsplit("/", 1)[-1],
            "cluster_arn": t.get("clusterArn"),
            "last_status": t.get("lastStatus"),
            "desired_status": t.get("desiredStatus"),
            "stopped_reason": t.get("stoppedReason"),
            "launch_type": t.get("launchType"),
            "capacity_provider": t.get("capacityProviderName"),
            "started_by": t.get("startedBy"),
            "group": t.get("group"),
            "task_definition_arn": t.get("taskDefinitionArn"),
            "private_ip": details.get("privateIPv4Address"),
            "tags": tags,
            "subnet_id": details.get("subnetId"),
            "security_groups": groups,
            "overrides": t.get("overrides"),
        })
    return out


def _roles(iam, name):
    roles, all_names = [], []
    for r in paginate(iam, "list_roles", "Roles"):
        all_names.append(r["RoleName"])
        role = iam.get_role(RoleName=r["RoleName"])["Role"]
        tags = tag_dict(role.get("Tags"))
        if tags.get("clusterctl-cluster") != name:
            continue
        attached = [p["PolicyArn"] for p in paginate(
            iam, "list_attached_role_policies", "AttachedPolicies", RoleName=r["RoleName"])]
        inline = {}
        for pname in paginate(iam, "list_role_policies", "PolicyNames", RoleName=r["RoleName"]):
            inline[pname] = as_document(
                iam.get_role_policy(RoleName=r["RoleName"], PolicyName=pname)["PolicyDocument"])
        roles.append({
            "name": role["RoleName"],
            "arn": role["Arn"],
            "path": role.get("Path"),
            "tags": tags,
            "assume_role_policy": as_document(role.get("AssumeRolePolicyDocument")),
            "attached_policies": sorted(attached),
            "inline_policies": inline,
        })
    roles.sort(key=lambda r: r["name"])
    return roles, sorted(all_names)


def stream_messages(logs, group, stream):
    out, token = [], None
    while True:
        kw = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token:
            kw["nextToken"] = token
        resp = logs.get_log_events(**kw)
        out += [e["message"] for e in resp.get("events", [])]
        if not resp.get("events") or resp.get("nextForwardToken") in (None, token):
            return out
        token = resp["nextForwardToken"]


def _log_groups(logs, name):
    prefix = f"/clusterctl/{name}"
    out = []
    for g in paginate(logs, "describe_log_groups", "logGroups"):
        gname = g["logGroupName"]
        tags = logs.list_tags_log_group(logGroupName=gname).get("tags", {})
        if tags.get("clusterctl-cluster") != name and not (
                gname == prefix or gname.startswith(prefix + "/")):
            continue
        streams = [{"name": s["logStreamName"],
                    "events": len(stream_messages(logs, gname, s["logStreamName"]))}
                   for s in paginate(logs, "describe_log_streams", "logStreams",
                                     logGroupName=gname)]
        out.append({"name": gname, "retention_days": g.get("retentionInDays"), "tags": tags,
                    "streams": sorted(streams, key=lambda s: s["name"])})
    return sorted(out, key=lambda g: g["name"])


def _ssm_parameters(ssm, name):
    path = f"/clusterctl/{name}/"
    out = []
    for p in paginate(ssm, "describe_parameters", "Parameters", ParameterFilters=[
            {"Key": "Name", "Option": "BeginsWith", "Values": [path]}]):
        tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=p["Name"])
        out.append({"name": p["Name"], "type": p.get("Type"), "key_id": p.get("KeyId"),
                    "tags": tag_dict(tags.get("TagList"))})
    return sorted(out, key=lambda p: p["name"])


def cmd_inspect(args):
    ecs = make_client(args, "ecs")
    ec2 = make_client(args, "ec2")
    clusters = _all_clusters(ecs)
    roles, all_role_names = _roles(make_client(args, "iam"), args.cluster)
    print(json.dumps({
        "cluster": args.cluster,
        "ecs_clusters": [{
            "name": c["clusterName"],
            "arn": c["clusterArn"],
            "status": c.get("status"),
            "tags": ecs_tags(c.get("tags")),
            "capacity_providers": c.get("capacityProviders") or [],
            "default_capacity_provider_strategy": c.get("defaultCapacityProviderStrategy") or [],
        } for c in clusters if ecs_tags(c.get("tags")).get("clusterctl-cluster") == args.cluster],
        "task_definitions": _task_definitions(ecs, args.cluster),
        "tasks": _tasks(ecs, ec2, clusters, args.cluster),
        "roles": roles,
        "all_role_names": all_role_names,
        "log_groups": _log_groups(make_client(args, "logs"), args.cluster),
        "ssm_parameters": _ssm_parameters(make_client(args, "ssm"), args.cluster),
        "security_groups": inspect_security_groups(ec2, args.cluster),
    }, indent=2, default=str))


# --------------------------------------------------------------------------------------------
# log-lines


def cmd_log_lines(args):
    logs = make_client(args, "logs")
    print(json.dumps(stream_messages(logs, args.group, args.stream)))

"""The AWS side: loopback-only boto3 clients, and the `setup` and `inspect` subcommands."""

import base64
import ipaddress
import json
import os
import urllib.parse

import boto3
from botocore.config import Config

from vmboot.common import LOOPBACK

PROXY_VARS = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)


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


def launch_order(inst):
    """Boot in launch order; LaunchTime has one-second resolution in moto, so the private IP
    (handed out sequentially per subnet) breaks ties."""
    try:
        ip = int(ipaddress.ip_address(inst.get("PrivateIpAddress") or "0.0.0.0"))
    except ValueError:
        ip = 0
    return (str(inst.get("LaunchTime")), ip, inst["InstanceId"])


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


def inspect_security_groups(ec2, cluster):
    """The security groups tagged `clusterctl-cluster=<cluster>`, with their ingress `rules`
    (flattened from DescribeSecurityGroupRules) and `egress` apart.  The ECS agent reports
    them the same way."""
    cluster_filter = [{"Name": "tag:clusterctl-cluster", "Values": [cluster]}]
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
    return out_groups


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

    out_groups = inspect_security_groups(ec2, args.cluster)

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
        **inspect_key_access(args, args.cluster),
    }, indent=2, default=str))


def inspect_key_access(args, cluster):
    """The nodes' key access: SSM parameters under /clusterctl-ec2/CLUSTER/ (names, types,
    tags; never values), and the role and instance profile clusterctl-CLUSTER-node."""
    ssm, iam = make_client(args, "ssm"), make_client(args, "iam")
    prefix = f"/clusterctl-ec2/{cluster}/"
    params = []
    for p in paginate(ssm, "get_parameters_by_path", "Parameters",
                      Path=prefix.rstrip("/"), Recursive=True):
        tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=p["Name"])
        params.append({"name": p["Name"], "type": p["Type"],
                       "tags": tag_dict(tags.get("TagList"))})
    name = f"clusterctl-{cluster}-node"
    role = profile = None
    try:
        r = iam.get_role(RoleName=name)["Role"]
        policies = {
            pn: iam.get_role_policy(RoleName=name, PolicyName=pn)["PolicyDocument"]
            for pn in iam.list_role_policies(RoleName=name)["PolicyNames"]
        }
        attached = [a["PolicyArn"] for a in
                    iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]]
        role = {"arn": r["Arn"], "path": r["Path"], "trust": r["AssumeRolePolicyDocument"],
                "tags": tag_dict(r.get("Tags")), "inline": policies, "attached": attached}
    except iam.exceptions.NoSuchEntityException:
        pass
    try:
        ip = iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
        profile = {"arn": ip["Arn"], "roles": [x["RoleName"] for x in ip["Roles"]],
                   "tags": tag_dict(ip.get("Tags"))}
    except iam.exceptions.NoSuchEntityException:
        pass
    return {"ssm_parameters": params, "node_role": role, "instance_profile": profile}

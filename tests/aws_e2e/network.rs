//! The network `up` finds or makes: a leftover security group of the name keeps only the rules
//! asked for, and with nothing but `--allow-cidr` the default VPC, its subnets, the SSM image
//! and a security group open to that CIDR only.

use serde_json::Value;

use crate::{Aws, common, live};

#[test]
fn a_leftover_security_group_keeps_only_the_rules_asked_for() {
    // A crashed earlier cluster of this name left its group, opened to the world.
    let aws = Aws::new();
    let code = r#"
import boto3, os, sys
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
vpc = ec2.describe_subnets(SubnetIds=[sys.argv[1]])["Subnets"][0]["VpcId"]
tags = [{"Key": "clusterctl-managed", "Value": "true"}, {"Key": "clusterctl-cluster", "Value": "stale"}]
g = ec2.create_security_group(GroupName="clusterctl-stale", Description="left behind", VpcId=vpc,
    TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}])["GroupId"]
ec2.authorize_security_group_ingress(GroupId=g, IpPermissions=[
    {"IpProtocol": "tcp", "FromPort": 8786, "ToPort": 8787, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "198.51.100.0/24"}]}])
"#;
    let out = std::process::Command::new(common::python())
        .args(["-c", code, &aws.subnets[0]])
        .envs(aws.moto.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = || -> Vec<(String, Option<i64>, String)> {
        let held = aws.moto.inspect("stale");
        held["security_groups"][0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["protocol"].as_str().unwrap_or_default().to_string(),
                    r["from_port"].as_i64(),
                    r["cidr_ipv4"]
                        .as_str()
                        .or(r["referenced_group_id"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    assert!(
        rules().iter().any(|r| r.2 == "0.0.0.0/0"),
        "the stale group is open to the world: {:?}",
        rules()
    );

    // The dry run says which rules go.
    let mut args = aws.up_args("stale", "1");
    args.extend(["--allow-cidr", "203.0.113.7/32", "--dry-run"]);
    let (code, plan, err) = aws.json(&args);
    assert_eq!(code, Some(0), "{err}");
    let notes = plan["plan"]["notes"].to_string();
    assert!(
        notes.contains("revoked") && notes.contains("0.0.0.0/0") && notes.contains("tcp 22"),
        "{notes}"
    );

    // `up` reuses the group with exactly the rules asked for.
    let mut args = aws.up_args("stale", "1");
    args.extend(["--allow-cidr", "203.0.113.7/32", "--no-wait"]);
    let (code, _, err) = aws.json(&args);
    assert_eq!(code, Some(0), "{err}");
    let mut now = rules();
    now.sort();
    let group = aws.moto.inspect("stale")["security_groups"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        now,
        vec![
            ("-1".to_string(), now[0].1, group.clone()),
            ("tcp".to_string(), Some(8786), "203.0.113.7/32".to_string()),
        ],
        "only the members' rule and the allowed client remain"
    );
    let (code, _, err) = aws.json(&["down", "stale"]);
    assert_eq!(code, Some(0), "{err}");
}

/// With nothing but `--allow-cidr`: the default VPC and its default subnets, the default image
/// from its public SSM parameter, public addresses, and a security group open on the scheduler
/// ports to that CIDR only. (moto's default VPC is 172.31.0.0/16, which is not local here, so
/// the nodes are not booted: `--no-wait`, and the assertions are on what moto holds.)
#[test]
fn defaults_use_the_default_vpc_the_ssm_image_and_open_only_the_allowed_cidr() {
    let aws = Aws::new();
    let (code, up, err) = aws.json(&[
        "up",
        "--provider",
        "aws",
        "--name",
        "dflt",
        "--workers",
        "2",
        "--allow-cidr",
        "203.0.113.7/32",
        "--no-wait",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !up["scheduler_address"]
            .as_str()
            .unwrap()
            .starts_with("tls://172.31."),
        "the client is outside the VPC: the public address is published: {up}"
    );
    let code = r#"
import boto3, json, os
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
ec2, ssm = boto3.client("ec2", **kw), boto3.client("ssm", **kw)
vpc = [v for v in ec2.describe_vpcs()["Vpcs"] if v["IsDefault"]][0]["VpcId"]
subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[
    {"Name": "vpc-id", "Values": [vpc]}, {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]]
image = ssm.get_parameter(Name="/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id")["Parameter"]["Value"]
print(json.dumps({"vpc": vpc, "subnets": subnets, "image": image}))
"#;
    let out = std::process::Command::new(common::python())
        .args(["-c", code])
        .envs(aws.moto.env())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let facts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let held = aws.moto.inspect("dflt");
    let instances = live(&held["instances"]);
    assert_eq!(instances.len(), 3);
    for i in &instances {
        assert_eq!(i["vpc_id"], facts["vpc"], "{i}");
        assert!(
            facts["subnets"]
                .as_array()
                .unwrap()
                .contains(&i["subnet_id"]),
            "a default subnet: {i}"
        );
        assert_eq!(i["image_id"], facts["image"], "the SSM parameter's image");
        assert!(i["public_ip"].is_string(), "a public address: {i}");
        assert_eq!(i["metadata_http_tokens"], "required");
    }
    let groups = held["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    let mut rules: Vec<(String, Option<i64>, Option<i64>, String)> = groups[0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["protocol"].as_str().unwrap_or_default().to_string(),
                r["from_port"].as_i64(),
                r["to_port"].as_i64(),
                r["cidr_ipv4"]
                    .as_str()
                    .or(r["referenced_group_id"].as_str())
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    rules.sort();
    let group = groups[0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        rules,
        vec![
            ("-1".to_string(), rules[0].1, rules[0].2, group),
            (
                "tcp".to_string(),
                Some(8786),
                Some(8787),
                "203.0.113.7/32".to_string()
            ),
        ],
        "members talk freely; the scheduler ports from the allowed CIDR only, nothing else"
    );

    let (code, _, err) = aws.json(&["down", "dflt"]);
    assert_eq!(code, Some(0), "{err}");
    let held = aws.moto.inspect("dflt");
    assert!(live(&held["instances"]).is_empty(), "{held}");
    assert_eq!(held["security_groups"], serde_json::json!([]));
    assert_eq!(held["ssm_parameters"], serde_json::json!([]));
    assert_eq!(held["node_role"], Value::Null);
}

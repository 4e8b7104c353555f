//! The cluster's network: which VPC and subnets, and the per-cluster security group (all
//! traffic between members; the scheduler and dashboard ports only from the allowed CIDRs).

use aws_sdk_ec2::{
    Client,
    types::{Filter, IpPermission, IpRange, ResourceType, Tag, TagSpecification, UserIdGroupPair},
};
use clusterctl_core::{Error, Result, bootstrap, model::ClusterName, tags};

use crate::errors::{self, code};

/// The VPC and subnets nodes are launched into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    /// The VPC.
    pub vpc_id: String,
    /// Its primary CIDR.
    pub vpc_cidr: String,
    /// Subnets in order of preference.
    pub subnets: Vec<String>,
}

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// Find the network: the given subnets (all in one VPC), else the subnets of the given VPC,
/// else the default VPC's default subnets.
pub async fn resolve(
    ec2: &Client,
    region: &str,
    vpc: Option<&str>,
    subnets: &[String],
) -> Result<Network> {
    let (vpc_id, subnet_ids) = if !subnets.is_empty() {
        let out = ec2
            .describe_subnets()
            .set_subnet_ids(Some(subnets.to_vec()))
            .send()
            .await
            .map_err(|e| errors::map("ec2:DescribeSubnets", region, e))?;
        let vpcs: std::collections::BTreeSet<&str> =
            out.subnets().iter().filter_map(|s| s.vpc_id()).collect();
        if vpcs.len() != 1 {
            return Err(Error::invalid(
                "--subnet",
                subnets.join(","),
                format!(
                    "the subnets belong to {} VPCs; a cluster lives in one",
                    vpcs.len()
                ),
                None,
            ));
        }
        let vpc_id = vpcs.into_iter().next().unwrap_or_default().to_string();
        if let Some(v) = vpc.filter(|v| *v != vpc_id) {
            return Err(Error::invalid(
                "--vpc",
                v,
                format!("the subnets are in {vpc_id}"),
                None,
            ));
        }
        (vpc_id, subnets.to_vec())
    } else {
        let (vpc_id, default) = match vpc {
            Some(v) => (v.to_string(), false),
            None => {
                let out = ec2
                    .describe_vpcs()
                    .filters(filter("isDefault", &["true"]))
                    .send()
                    .await
                    .map_err(|e| errors::map("ec2:DescribeVpcs", region, e))?;
                let id = out.vpcs().first().and_then(|v| v.vpc_id()).ok_or_else(|| {
                    Error::invalid(
                        "--region",
                        region,
                        "the region has no default VPC",
                        Some("pass `--subnet subnet-...` (and it decides the VPC)".into()),
                    )
                })?;
                (id.to_string(), true)
            }
        };
        let mut filters = vec![filter("vpc-id", &[&vpc_id])];
        if default {
            filters.push(filter("default-for-az", &["true"]));
        }
        let out = ec2
            .describe_subnets()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(|e| errors::map("ec2:DescribeSubnets", region, e))?;
        let mut found: Vec<(String, String)> = out
            .subnets()
            .iter()
            .filter_map(|s| {
                Some((
                    s.availability_zone()?.to_string(),
                    s.subnet_id()?.to_string(),
                ))
            })
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(Error::invalid(
                "--vpc",
                vpc_id,
                "it has no subnets",
                Some("pass `--subnet`".into()),
            ));
        }
        (vpc_id, found.into_iter().map(|(_, id)| id).collect())
    };
    let out = ec2
        .describe_vpcs()
        .vpc_ids(&vpc_id)
        .send()
        .await
        .map_err(|e| errors::map("ec2:DescribeVpcs", region, e))?;
    let vpc_cidr = out
        .vpcs()
        .first()
        .and_then(|v| v.cidr_block())
        .unwrap_or_default()
        .to_string();
    Ok(Network {
        vpc_id,
        vpc_cidr,
        subnets: subnet_ids,
    })
}

/// The name of the cluster's security group.
pub fn group_name(cluster: &ClusterName) -> String {
    format!("clusterctl-{cluster}")
}

/// Security groups tagged for `cluster` (all of them, with `None`: every clusterctl group).
pub async fn groups(
    ec2: &Client,
    region: &str,
    cluster: Option<&ClusterName>,
) -> Result<Vec<(String, String)>> {
    let mut filters = vec![filter(
        &format!("tag:{}", tags::MANAGED),
        &[tags::MANAGED_VALUE],
    )];
    if let Some(c) = cluster {
        filters.push(filter(&format!("tag:{}", tags::CLUSTER), &[c.as_str()]));
    }
    let mut pages = ec2
        .describe_security_groups()
        .set_filters(Some(filters))
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| errors::map("ec2:DescribeSecurityGroups", region, e))?;
        for g in page.security_groups() {
            if let (Some(id), Some(name)) = (g.group_id(), g.group_name()) {
                out.push((id.to_string(), name.to_string()));
            }
        }
    }
    Ok(out)
}

/// Create (or find) the cluster's security group and its rules; returns its id.
pub async fn ensure_group(
    ec2: &Client,
    region: &str,
    cluster: &ClusterName,
    network: &Network,
    group_tags: &std::collections::BTreeMap<String, String>,
    allow: &[String],
) -> Result<String> {
    let existing = groups(ec2, region, Some(cluster)).await?;
    let group_id = match existing.first() {
        Some((id, _)) => id.clone(),
        None => {
            let tags: Vec<Tag> = group_tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect();
            ec2.create_security_group()
                .group_name(group_name(cluster))
                .description(format!(
                    "clusterctl cluster {cluster}: Dask scheduler and workers"
                ))
                .vpc_id(&network.vpc_id)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::SecurityGroup)
                        .set_tags(Some(tags))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| errors::map("ec2:CreateSecurityGroup", region, e))?
                .group_id()
                .unwrap_or_default()
                .to_string()
        }
    };
    // Members talk to each other on any port (workers and nannies listen on random ports).
    let mut permissions = vec![
        IpPermission::builder()
            .ip_protocol("-1")
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(&group_id)
                    .description("cluster members")
                    .build(),
            )
            .build(),
    ];
    // Clients reach only the scheduler and its dashboard.
    let ranges: Vec<IpRange> = allow
        .iter()
        .map(|c| {
            IpRange::builder()
                .cidr_ip(c)
                .description("clusterctl client")
                .build()
        })
        .collect();
    if !ranges.is_empty() {
        permissions.push(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(i32::from(bootstrap::SCHEDULER_PORT))
                .to_port(i32::from(bootstrap::DASHBOARD_PORT))
                .set_ip_ranges(Some(ranges))
                .build(),
        );
    }
    for p in permissions {
        match ec2
            .authorize_security_group_ingress()
            .group_id(&group_id)
            .ip_permissions(p)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => {}
            Err(e) => return Err(errors::map("ec2:AuthorizeSecurityGroupIngress", region, e)),
        }
    }
    Ok(group_id)
}

/// How long [`delete_groups`] retries while network interfaces detach.
const GROUP_DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Delete the security groups tagged for `cluster`, retrying `DependencyViolation` (interfaces
/// of terminated instances or stopped tasks detach a little after they end) for up to
/// [`GROUP_DELETE_TIMEOUT`].
pub async fn delete_groups(ec2: &Client, region: &str, cluster: &ClusterName) -> Result<()> {
    let started = std::time::Instant::now();
    for (id, _) in groups(ec2, region, Some(cluster)).await? {
        let mut delay = std::time::Duration::from_secs(2);
        loop {
            match ec2.delete_security_group().group_id(&id).send().await {
                Ok(_) => break,
                Err(e) if code(&e) == Some("InvalidGroup.NotFound") => break,
                Err(e)
                    if code(&e) == Some("DependencyViolation")
                        && started.elapsed() < GROUP_DELETE_TIMEOUT =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(15));
                }
                Err(e) => return Err(errors::map("ec2:DeleteSecurityGroup", region, e)),
            }
        }
    }
    Ok(())
}

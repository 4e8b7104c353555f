//! The cluster's network: which VPC and subnets, and the per-cluster security group (all
//! traffic between members; the scheduler and dashboard ports only from the allowed CIDRs).

use aws_sdk_ec2::{
    Client,
    types::{Filter, IpPermission, IpRange, ResourceType, Tag, TagSpecification, UserIdGroupPair},
};
use clusterctl_core::{
    Error, Result, bootstrap,
    model::{ClusterName, ProviderKind, claim_held, now_epoch},
    tags,
};

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
/// else the default VPC's default subnets. The VPC's CIDR is looked up only when `need_cidr`
/// (`--private` without `--allow-cidr`: the client is inside the VPC) and the default VPC's
/// listing did not already give it; otherwise it is empty.
pub async fn resolve(
    ec2: &Client,
    region: &str,
    vpc: Option<&str>,
    subnets: &[String],
    need_cidr: bool,
) -> Result<Network> {
    let mut vpc_cidr = String::new();
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
                let found = out.vpcs().first();
                let id = found.and_then(|v| v.vpc_id()).ok_or_else(|| {
                    Error::invalid(
                        "--region",
                        region,
                        "the region has no default VPC",
                        Some("pass `--subnet subnet-...` (and it decides the VPC)".into()),
                    )
                })?;
                vpc_cidr = found
                    .and_then(|v| v.cidr_block())
                    .unwrap_or_default()
                    .to_string();
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
    if need_cidr && vpc_cidr.is_empty() {
        let out = ec2
            .describe_vpcs()
            .vpc_ids(&vpc_id)
            .send()
            .await
            .map_err(|e| errors::map("ec2:DescribeVpcs", region, e))?;
        vpc_cidr = out
            .vpcs()
            .first()
            .and_then(|v| v.cidr_block())
            .unwrap_or_default()
            .to_string();
    }
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

/// The security group tagged for `cluster`, as EC2 describes it (rules included), if any.
pub async fn cluster_group(
    ec2: &Client,
    region: &str,
    cluster: &ClusterName,
) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>> {
    let out = ec2
        .describe_security_groups()
        .filters(filter(
            &format!("tag:{}", tags::MANAGED),
            &[tags::MANAGED_VALUE],
        ))
        .filters(filter(
            &format!("tag:{}", tags::CLUSTER),
            &[cluster.as_str()],
        ))
        .send()
        .await
        .map_err(|e| errors::map("ec2:DescribeSecurityGroups", region, e))?;
    Ok(out.security_groups().first().cloned())
}

/// A clusterctl security group: the claim of its cluster's name.
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub tags: std::collections::BTreeMap<String, String>,
}

/// The tag that says which of the two AWS providers (`aws`, `fargate`) a cluster's security
/// group claims the name for: they share the group's name, and `gc` must tear a cluster with
/// no node left down with its own provider.
pub const PROVIDER_TAG: &str = "clusterctl-provider";

impl Group {
    /// Whether the group is a cluster of `kind` (a group without the tag is EC2's).
    pub fn is_of(&self, kind: ProviderKind) -> bool {
        let of = self.tags.get(PROVIDER_TAG).map(String::as_str);
        of == Some(kind.as_str()) || (of.is_none() && kind == ProviderKind::Aws)
    }
}

/// Security groups tagged for `cluster` (all of them, with `None`: every clusterctl group).
pub async fn groups(
    ec2: &Client,
    region: &str,
    cluster: Option<&ClusterName>,
) -> Result<Vec<Group>> {
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
                out.push(Group {
                    id: id.to_string(),
                    name: name.to_string(),
                    tags: g
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                        .collect(),
                });
            }
        }
    }
    Ok(out)
}

/// How long a launch that took over a leftover group waits before it reads the group's launch
/// tag back: two launches taking it over at once both write, and the last one holds it.
const TAKEOVER_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Claim the cluster's name with its security group, then make the group's rules exactly what
/// this cluster asks for; returns the group's id.
///
/// CreateSecurityGroup of `clusterctl-NAME` in the VPC is the claim: a second `up` of the name
/// cannot also create it. When the group exists, its `clusterctl-launch` tag says who holds
/// it: this launch (a repeated bootstrap) goes on; another launch whose cluster has nodes
/// alive (`nodes_alive`) or that started within the claim's grace is `Error::NameTaken`, with
/// nothing created or changed; a leftover of an `up` that died is taken over (its launch tag
/// rewritten, read back after a settle time) and its rules reset.
#[allow(clippy::too_many_arguments)]
pub async fn ensure_group<F, Fut>(
    ec2: &Client,
    region: &str,
    kind: ProviderKind,
    cluster: &ClusterName,
    network: &Network,
    group_tags: &std::collections::BTreeMap<String, String>,
    allow: &[String],
    nodes_alive: F,
) -> Result<String>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let launch = group_tags.get(tags::LAUNCH).cloned().unwrap_or_default();
    let tag_list: Vec<Tag> = group_tags
        .iter()
        .chain([(&PROVIDER_TAG.to_string(), &kind.as_str().to_string())])
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let created = ec2
        .create_security_group()
        .group_name(group_name(cluster))
        .description(format!(
            "clusterctl cluster {cluster}: Dask scheduler and workers"
        ))
        .vpc_id(&network.vpc_id)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .set_tags(Some(tag_list))
                .build(),
        )
        .send()
        .await;
    let (group_id, reset) = match created {
        Ok(out) => (out.group_id().unwrap_or_default().to_string(), false),
        Err(e) if code(&e) == Some("InvalidGroup.Duplicate") => {
            let (id, found) = named_group(ec2, region, kind, cluster, &network.vpc_id).await?;
            if found.get(tags::MANAGED).map(String::as_str) != Some(tags::MANAGED_VALUE)
                || found.get(tags::CLUSTER).map(String::as_str) != Some(cluster.as_str())
            {
                return Err(Error::invalid(
                    "--name",
                    cluster.as_str(),
                    format!(
                        "the security group {} ({id}) in {} was not made by clusterctl for this cluster",
                        group_name(cluster),
                        network.vpc_id
                    ),
                    Some("choose another --name".into()),
                ));
            }
            let holder = found.get(tags::LAUNCH).cloned();
            if holder.as_deref() != Some(launch.as_str()) {
                let alive = nodes_alive().await?;
                if claim_held(holder.as_deref(), alive, now_epoch()) {
                    return Err(name_taken(kind, cluster, holder.as_deref(), alive));
                }
                // A leftover of an `up` that died: take it over, then check that no other
                // launch took it over at the same moment (the last writer holds it).
                ec2.create_tags()
                    .resources(&id)
                    .tags(Tag::builder().key(tags::LAUNCH).value(&launch).build())
                    .send()
                    .await
                    .map_err(|e| errors::map_for(kind, "ec2:CreateTags", region, e))?;
                tokio::time::sleep(TAKEOVER_SETTLE).await;
                let (_, now) = named_group(ec2, region, kind, cluster, &network.vpc_id).await?;
                let holder = now.get(tags::LAUNCH).cloned();
                if holder.as_deref() != Some(launch.as_str()) {
                    return Err(name_taken(kind, cluster, holder.as_deref(), false));
                }
            }
            (id, true)
        }
        Err(e) => return Err(errors::map_for(kind, "ec2:CreateSecurityGroup", region, e)),
    };
    if reset {
        // A group left by an earlier cluster of this name keeps whatever it was given (an old
        // `--allow-cidr 0.0.0.0/0`): make its rules exactly what this cluster asks for.
        revoke_stale(ec2, region, &group_id, allow).await?;
    }
    // Both rules in one request. A group taken over may hold some of them already, and EC2
    // refuses a request with any duplicate as a whole: then one rule per request.
    let wanted = wanted_rules(&group_id, allow);
    let authorize = |rules: Vec<IpPermission>| {
        ec2.authorize_security_group_ingress()
            .group_id(&group_id)
            .set_ip_permissions(Some(rules))
            .send()
    };
    let fail = |e| errors::map_for(kind, "ec2:AuthorizeSecurityGroupIngress", region, e);
    match authorize(wanted.clone()).await {
        Ok(_) => {}
        Err(e) if code(&e) == Some("InvalidPermission.Duplicate") && wanted.len() > 1 => {
            for p in wanted {
                match authorize(vec![p]).await {
                    Ok(_) => {}
                    Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => {}
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        Err(e) if code(&e) == Some("InvalidPermission.Duplicate") => {}
        Err(e) => return Err(fail(e)),
    }
    Ok(group_id)
}

/// The group named after `cluster` in `vpc`: its id and tags.
async fn named_group(
    ec2: &Client,
    region: &str,
    kind: ProviderKind,
    cluster: &ClusterName,
    vpc: &str,
) -> Result<(String, std::collections::BTreeMap<String, String>)> {
    let out = ec2
        .describe_security_groups()
        .filters(filter("group-name", &[&group_name(cluster)]))
        .filters(filter("vpc-id", &[vpc]))
        .send()
        .await
        .map_err(|e| errors::map_for(kind, "ec2:DescribeSecurityGroups", region, e))?;
    let g = out
        .security_groups()
        .first()
        .ok_or_else(|| Error::Provider {
            provider: kind,
            operation: "ec2:DescribeSecurityGroups".into(),
            message: format!(
                "the security group {} exists but is not listed in {vpc} yet",
                group_name(cluster)
            ),
        })?;
    Ok((
        g.group_id().unwrap_or_default().to_string(),
        g.tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect(),
    ))
}

fn name_taken(
    kind: ProviderKind,
    cluster: &ClusterName,
    holder: Option<&str>,
    alive: bool,
) -> Error {
    let started = holder
        .and_then(clusterctl_core::model::launch_started)
        .map(|t| format!(", started {}s ago", now_epoch().saturating_sub(t)))
        .unwrap_or_default();
    Error::NameTaken {
        name: cluster.to_string(),
        provider: kind,
        holder: format!(
            "its security group {} belongs to launch {}{started}{}",
            group_name(cluster),
            holder.unwrap_or("(none)"),
            if alive {
                ", whose nodes are running"
            } else {
                ""
            }
        ),
    }
}

/// The ingress rules of the cluster's group: members talk to each other on any port (workers
/// and nannies listen on random ports); clients reach only the scheduler and its dashboard,
/// from `allow`.
fn wanted_rules(group_id: &str, allow: &[String]) -> Vec<IpPermission> {
    let mut permissions = vec![
        IpPermission::builder()
            .ip_protocol("-1")
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(group_id)
                    .description("cluster members")
                    .build(),
            )
            .build(),
    ];
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
    permissions
}

/// The parts of `existing` (one rule as EC2 describes it) that the cluster's group must not
/// have, as a rule to revoke; `None` when all of it is wanted.
pub fn unwanted(existing: &IpPermission, group_id: &str, allow: &[String]) -> Option<IpPermission> {
    let dask_ports = existing.ip_protocol() == Some("tcp")
        && existing.from_port() == Some(i32::from(bootstrap::SCHEDULER_PORT))
        && existing.to_port() == Some(i32::from(bootstrap::DASHBOARD_PORT));
    let all_traffic = existing.ip_protocol() == Some("-1");
    let ranges: Vec<IpRange> = existing
        .ip_ranges()
        .iter()
        .filter(|r| !(dask_ports && allow.iter().any(|a| Some(a.as_str()) == r.cidr_ip())))
        .map(|r| {
            IpRange::builder()
                .set_cidr_ip(r.cidr_ip().map(str::to_string))
                .build()
        })
        .collect();
    let pairs: Vec<UserIdGroupPair> = existing
        .user_id_group_pairs()
        .iter()
        .filter(|p| !(all_traffic && p.group_id() == Some(group_id)))
        .map(|p| {
            UserIdGroupPair::builder()
                .set_group_id(p.group_id().map(str::to_string))
                .build()
        })
        .collect();
    let v6 = existing.ipv6_ranges().to_vec();
    let lists = existing.prefix_list_ids().to_vec();
    if ranges.is_empty() && pairs.is_empty() && v6.is_empty() && lists.is_empty() {
        return None;
    }
    let opt = |b: bool| b.then_some(());
    Some(
        IpPermission::builder()
            .set_ip_protocol(existing.ip_protocol().map(str::to_string))
            .set_from_port(existing.from_port())
            .set_to_port(existing.to_port())
            .set_ip_ranges(opt(!ranges.is_empty()).map(|_| ranges))
            .set_user_id_group_pairs(opt(!pairs.is_empty()).map(|_| pairs))
            .set_ipv6_ranges(opt(!v6.is_empty()).map(|_| v6))
            .set_prefix_list_ids(opt(!lists.is_empty()).map(|_| lists))
            .build(),
    )
}

/// One rule as a line for `--dry-run` and progress notes: `tcp 8786-8787 from 0.0.0.0/0`.
pub fn describe_rule(rule: &IpPermission) -> String {
    let what = match (rule.ip_protocol(), rule.from_port(), rule.to_port()) {
        (Some("-1"), _, _) => "all traffic".to_string(),
        (Some(p), Some(a), Some(b)) if a == b => format!("{p} {a}"),
        (Some(p), Some(a), Some(b)) => format!("{p} {a}-{b}"),
        (p, _, _) => p.unwrap_or("?").to_string(),
    };
    let mut from: Vec<String> = rule
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip().map(str::to_string))
        .collect();
    from.extend(
        rule.ipv6_ranges()
            .iter()
            .filter_map(|r| r.cidr_ipv6().map(str::to_string)),
    );
    from.extend(
        rule.user_id_group_pairs()
            .iter()
            .filter_map(|p| p.group_id().map(str::to_string)),
    );
    from.extend(
        rule.prefix_list_ids()
            .iter()
            .filter_map(|p| p.prefix_list_id().map(str::to_string)),
    );
    format!("{what} from {}", from.join(", "))
}

/// The rules of `group` (as described) that are not the cluster's.
pub fn stale_in(group: &aws_sdk_ec2::types::SecurityGroup, allow: &[String]) -> Vec<IpPermission> {
    let id = group.group_id().unwrap_or_default();
    group
        .ip_permissions()
        .iter()
        .filter_map(|p| unwanted(p, id, allow))
        .collect()
}

/// The rules of group `group_id` that are not the cluster's (what [`revoke_stale`] removes).
pub async fn stale_rules(
    ec2: &Client,
    region: &str,
    group_id: &str,
    allow: &[String],
) -> Result<Vec<IpPermission>> {
    let described = ec2
        .describe_security_groups()
        .group_ids(group_id)
        .send()
        .await
        .map_err(|e| errors::map("ec2:DescribeSecurityGroups", region, e))?;
    Ok(described
        .security_groups()
        .iter()
        .flat_map(|g| g.ip_permissions())
        .filter_map(|p| unwanted(p, group_id, allow))
        .collect())
}

/// Revoke every ingress rule of the cluster's group that is not one of its wanted rules.
async fn revoke_stale(ec2: &Client, region: &str, group_id: &str, allow: &[String]) -> Result<()> {
    let stale = stale_rules(ec2, region, group_id, allow).await?;
    if stale.is_empty() {
        return Ok(());
    }
    match ec2
        .revoke_security_group_ingress()
        .group_id(group_id)
        .set_ip_permissions(Some(stale))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code(&e) == Some("InvalidPermission.NotFound") => Ok(()),
        Err(e) => Err(errors::map("ec2:RevokeSecurityGroupIngress", region, e)),
    }
}

/// How long [`delete_groups`] retries while network interfaces detach.
const GROUP_DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Delete the security groups tagged for `cluster`, retrying `DependencyViolation` (interfaces
/// of terminated instances or stopped tasks detach a little after they end) for up to
/// [`GROUP_DELETE_TIMEOUT`].
pub async fn delete_groups(ec2: &Client, region: &str, cluster: &ClusterName) -> Result<()> {
    let started = std::time::Instant::now();
    for Group { id, .. } in groups(ec2, region, Some(cluster)).await? {
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

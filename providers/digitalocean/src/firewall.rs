//! The cluster's cloud firewall `clusterctl-NAME`, applied to the droplets by the cluster tag,
//! and the address range `--private` clients come from (the VPC's).
//!
//! A DigitalOcean firewall denies everything not allowed, in both directions and between
//! droplets of one tag too, so it says all of it: the scheduler and dashboard ports from the
//! allowed CIDRs only (never 0.0.0.0/0 unless given); tcp, udp and icmp between members (Dask
//! workers and nannies listen on random ports); and all outbound traffic, without which nodes
//! could not install Docker or pull the Dask image.

use clusterctl_core::{Error, Result, bootstrap, model::ClusterName};

use crate::api::{FirewallCreate, InboundRule, OutboundRule, Target, Vpc};

/// Every port of a protocol.
const ALL_PORTS: &str = "1-65535";
/// The `ports` of an ICMP rule (ICMP has none; the API reports `0`).
const NO_PORTS: &str = "0";
/// Anywhere, both families.
const ANYWHERE: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// The firewall's name. Firewall names are unique, so of two launches that both create it,
/// one gets 409 (see `claim.rs`).
pub fn firewall_name(cluster: &ClusterName) -> String {
    format!("clusterctl-{cluster}")
}

/// The firewall of a cluster whose droplets carry `cluster_tag`, reachable from `allowed`.
pub fn rules(cluster: &ClusterName, cluster_tag: &str, allowed: &[String]) -> FirewallCreate {
    let members = || Target {
        tags: vec![cluster_tag.to_string()],
        ..Default::default()
    };
    let anywhere = || Target {
        addresses: ANYWHERE.iter().map(|a| a.to_string()).collect(),
        ..Default::default()
    };
    let mut inbound = vec![
        InboundRule {
            protocol: "tcp",
            ports: ALL_PORTS.into(),
            sources: members(),
        },
        InboundRule {
            protocol: "udp",
            ports: ALL_PORTS.into(),
            sources: members(),
        },
        InboundRule {
            protocol: "icmp",
            ports: NO_PORTS.into(),
            sources: members(),
        },
    ];
    if !allowed.is_empty() {
        inbound.push(InboundRule {
            protocol: "tcp",
            ports: format!(
                "{}-{}",
                bootstrap::SCHEDULER_PORT,
                bootstrap::DASHBOARD_PORT
            ),
            sources: Target {
                addresses: allowed.to_vec(),
                ..Default::default()
            },
        });
    }
    FirewallCreate {
        name: firewall_name(cluster),
        tags: vec![cluster_tag.to_string()],
        inbound_rules: inbound,
        outbound_rules: vec![
            OutboundRule {
                protocol: "tcp",
                ports: ALL_PORTS.into(),
                destinations: anywhere(),
            },
            OutboundRule {
                protocol: "udp",
                ports: ALL_PORTS.into(),
                destinations: anywhere(),
            },
            OutboundRule {
                protocol: "icmp",
                ports: NO_PORTS.into(),
                destinations: anywhere(),
            },
        ],
    }
}

/// The range of the VPC the cluster lives in: `given` (checked to be in `region`), else the
/// region's default VPC among `all`.
pub fn vpc_range(
    vpc: Option<&Vpc>,
    given: Option<&str>,
    all: &[Vpc],
    region: &str,
) -> Result<String> {
    let chosen = match given {
        Some(id) => {
            let v = vpc.ok_or_else(|| {
                Error::invalid(
                    "--vpc",
                    id,
                    "DigitalOcean has no VPC with this id",
                    Some("`doctl vpcs list` shows the VPCs".into()),
                )
            })?;
            if let Some(r) = v.region.as_deref().filter(|r| *r != region) {
                return Err(Error::invalid(
                    "--vpc",
                    id,
                    format!("the VPC is in {r}, the cluster in {region}"),
                    Some(format!("pass `--region {r}`, or a VPC of {region}")),
                ));
            }
            v
        }
        None => all
            .iter()
            .find(|v| v.default && v.region.as_deref() == Some(region))
            .ok_or_else(|| {
                Error::invalid(
                    "--private",
                    "true",
                    format!("{region} has no default VPC yet, so no client can be inside it"),
                    Some(
                        "pass `--vpc <uuid>` of the VPC the client runs in, or `--allow-cidr`"
                            .into(),
                    ),
                )
            })?,
    };
    chosen
        .ip_range
        .clone()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::Provider {
            provider: clusterctl_core::model::ProviderKind::Digitalocean,
            operation: "GET /v2/vpcs".into(),
            message: format!("VPC {} has no ip_range", chosen.id),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_talk_freely_clients_reach_only_the_scheduler_ports() {
        let c = ClusterName::new("ci").unwrap();
        let fw = rules(&c, "clusterctl-cluster:ci", &["203.0.113.7/32".into()]);
        assert_eq!(fw.name, "clusterctl-ci");
        assert_eq!(fw.tags, ["clusterctl-cluster:ci"]);
        let client: Vec<&InboundRule> = fw
            .inbound_rules
            .iter()
            .filter(|r| !r.sources.addresses.is_empty())
            .collect();
        assert_eq!(client.len(), 1);
        assert_eq!(
            (client[0].protocol, client[0].ports.as_str()),
            ("tcp", "8786-8787")
        );
        assert_eq!(client[0].sources.addresses, ["203.0.113.7/32"]);
        for p in ["tcp", "udp", "icmp"] {
            assert!(fw.inbound_rules.iter().any(|r| r.protocol == p
                && r.sources.tags == ["clusterctl-cluster:ci"]
                && r.sources.addresses.is_empty()));
            assert!(
                fw.outbound_rules
                    .iter()
                    .any(|r| r.protocol == p && r.destinations.addresses == ["0.0.0.0/0", "::/0"])
            );
        }
        let no_world = fw
            .inbound_rules
            .iter()
            .all(|r| !r.sources.addresses.iter().any(|a| a.ends_with("/0")));
        assert!(no_world, "never open to the world unless given");
        let v = serde_json::to_value(&fw).unwrap();
        assert!(v["inbound_rules"][0]["sources"].get("addresses").is_none());
    }

    fn vpc(id: &str, region: &str, default: bool, range: &str) -> Vpc {
        Vpc {
            id: id.into(),
            region: Some(region.into()),
            ip_range: Some(range.into()),
            default,
        }
    }

    #[test]
    fn the_vpc_range() {
        let all = [
            vpc("a", "sfo3", true, "10.124.0.0/20"),
            vpc("b", "nyc3", false, "10.10.0.0/16"),
            vpc("c", "nyc3", true, "10.116.0.0/20"),
        ];
        assert_eq!(
            vpc_range(None, None, &all, "nyc3").unwrap(),
            "10.116.0.0/20"
        );
        assert_eq!(
            vpc_range(Some(&all[1]), Some("b"), &[], "nyc3").unwrap(),
            "10.10.0.0/16"
        );
        assert_eq!(
            vpc_range(None, Some("x"), &[], "nyc3")
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            vpc_range(Some(&all[0]), Some("a"), &[], "nyc3")
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            vpc_range(None, None, &all, "ams3").unwrap_err().exit_code(),
            2
        );
    }
}

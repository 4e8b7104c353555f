//! The cluster's network, as request bodies with only properties the Network specs define: the
//! VNet with its one subnet (inline, created once), the network security group (tcp 8786-8787
//! from `--allow-cidr` only; members of the VNet reach each other through Azure's default
//! `AllowVnetInBound`), the scheduler's Standard static public IP, and a NIC per node (its
//! private IP is in the PUT's answer, so the workers learn the scheduler's address before its VM
//! exists).

use std::collections::BTreeMap;

use clusterctl_core::bootstrap::{DASHBOARD_PORT, SCHEDULER_PORT};
use serde_json::{Value, json};

use crate::options::{SUBNET_PREFIX, VNET_PREFIX};

/// The subnet's name in a VNet clusterctl made.
pub const SUBNET_NAME: &str = "nodes";
/// The NSG rule opening the scheduler's ports to `--allow-cidr`.
pub const DASK_RULE: &str = "dask-from-allowed";

/// The VNet with its subnet.
pub fn vnet_body(location: &str, tags: &BTreeMap<String, String>) -> Value {
    json!({
        "location": location,
        "tags": tags,
        "properties": {
            "addressSpace": {"addressPrefixes": [VNET_PREFIX]},
            "subnets": [{"name": SUBNET_NAME, "properties": {"addressPrefix": SUBNET_PREFIX}}],
        },
    })
}

/// The NSG: the scheduler and dashboard ports from `allow` (no rule when empty: only the
/// VNet's members reach them, through the default rules).
pub fn nsg_body(location: &str, tags: &BTreeMap<String, String>, allow: &[String]) -> Value {
    let mut rules = Vec::new();
    if !allow.is_empty() {
        rules.push(json!({
            "name": DASK_RULE,
            "properties": {
                "description": "Dask scheduler and dashboard, from --allow-cidr only",
                "protocol": "Tcp",
                "access": "Allow",
                "direction": "Inbound",
                "priority": 100,
                "sourceAddressPrefixes": allow,
                "sourcePortRange": "*",
                "destinationAddressPrefix": "*",
                "destinationPortRange": format!("{SCHEDULER_PORT}-{DASHBOARD_PORT}"),
            },
        }));
    }
    json!({"location": location, "tags": tags, "properties": {"securityRules": rules}})
}

/// The scheduler's public IP: Standard (Basic is retired), static, closed until the NSG allows.
pub fn public_ip_body(location: &str, tags: &BTreeMap<String, String>) -> Value {
    json!({
        "location": location,
        "tags": tags,
        "sku": {"name": "Standard", "tier": "Regional"},
        "properties": {"publicIPAllocationMethod": "Static", "publicIPAddressVersion": "IPv4"},
    })
}

/// A node's NIC in `subnet` behind `nsg`, with `public_ip` (deleted with the NIC) if any.
pub fn nic_body(
    location: &str,
    tags: &BTreeMap<String, String>,
    subnet: &str,
    nsg: &str,
    public_ip: Option<&str>,
) -> Value {
    let mut conf = json!({"subnet": {"id": subnet}, "privateIPAllocationMethod": "Dynamic"});
    if let Some(ip) = public_ip {
        conf["publicIPAddress"] = json!({"id": ip, "properties": {"deleteOption": "Delete"}});
    }
    json!({
        "location": location,
        "tags": tags,
        "properties": {
            "networkSecurityGroup": {"id": nsg},
            "ipConfigurations": [{"name": "ipconfig1", "properties": conf}],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nsg_opens_dask_only_to_the_allowed() {
        let tags = BTreeMap::new();
        let b = nsg_body("eastus", &tags, &["203.0.113.7/32".into()]);
        let rules = b["properties"]["securityRules"].as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0]["properties"]["destinationPortRange"], "8786-8787");
        assert_eq!(
            rules[0]["properties"]["sourceAddressPrefixes"],
            json!(["203.0.113.7/32"])
        );
        let none = nsg_body("eastus", &tags, &[]);
        assert_eq!(none["properties"]["securityRules"], json!([]));
    }

    #[test]
    fn only_the_scheduler_nic_has_a_public_ip() {
        let tags = BTreeMap::new();
        let w = nic_body("eastus", &tags, "/s", "/n", None);
        assert!(
            w["properties"]["ipConfigurations"][0]["properties"]
                .get("publicIPAddress")
                .is_none()
        );
        let s = nic_body("eastus", &tags, "/s", "/n", Some("/ip"));
        assert_eq!(
            s["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]["id"],
            "/ip"
        );
    }
}

//! Instance ↔ Node: resource names, the request body of an instance (`instances.insert`) or of
//! a batch's shared properties (`bulkInsert`'s `instanceProperties`), and the status table from
//! Compute's instance states to `NodeState`.

use std::collections::BTreeMap;

use clusterctl_core::{
    lifecycle::worker_index,
    model::{ClusterName, ClusterSpec, Node, NodeState, Role},
    tags,
};
use serde_json::{Value, json};

use crate::{
    api::Instance,
    credential::CLOUD_PLATFORM,
    labels,
    options::{GcpOptions, Gpu},
};

/// A node's instance name: `NAME-scheduler`, `NAME-worker-3`.
pub fn instance_name(cluster: &ClusterName, node: &str) -> String {
    format!("{cluster}-{node}")
}

/// The network tag only the cluster's instances carry (the firewall rules' target).
pub fn network_tag(cluster: &ClusterName) -> String {
    format!("clusterctl-{cluster}")
}

/// The firewall rule opening the scheduler's ports (its creation claims the name).
pub fn ports_rule(cluster: &ClusterName) -> String {
    format!("clusterctl-{cluster}")
}

/// The firewall rule letting the cluster's instances reach each other.
pub fn internal_rule(cluster: &ClusterName) -> String {
    format!("clusterctl-{cluster}-internal")
}

/// The per-cluster service account's id (6–30 characters): `clusterctl-NAME`, or for long
/// names `cc-` + the name's first 18 characters + 8 hex digits of its hash.
pub fn account_id(cluster: &ClusterName) -> String {
    let full = format!("clusterctl-{cluster}");
    if full.len() <= 30 {
        return full;
    }
    let mut h: u32 = 2_166_136_261;
    for b in cluster.as_str().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    let head: String = cluster.as_str().chars().take(18).collect();
    format!("cc-{head}-{h:08x}")
}

/// The prefix of the cluster's secrets' ids.
pub fn secret_prefix(cluster: &ClusterName) -> String {
    format!("clusterctl-{cluster}-")
}

/// A Secret Manager secret id from a name (`[A-Za-z0-9_-]`; anything else becomes `_`): the
/// same mapping as `templates/fetch_secrets.py`'s `gcp-secret-manager` store.
pub fn secret_id(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What differs between the instances of a request.
#[derive(Debug, Clone)]
pub struct Shape<'a> {
    /// Bare machine type name.
    pub machine_type: &'a str,
    /// The zone (for `insert`'s zonal machine type URL).
    pub zone: &'a str,
    /// Spot or standard.
    pub spot: bool,
    /// The internal address to take (the scheduler's, chosen before it exists).
    pub network_ip: Option<&'a str>,
    /// With an ephemeral external address.
    pub external: bool,
    /// For `bulkInsert` (bare machine type and accelerator type, no name).
    pub bulk: bool,
    /// GPUs to attach.
    pub gpu: Option<&'a Gpu>,
}

/// The body of an instance (`insert`, with `name`) or of `instanceProperties` (`bulk`).
/// How long before the cluster's expiry Compute Engine is asked to delete an instance
/// (`maxRunDuration`). The timer acts only on a RUNNING instance and may act up to 30 s late,
/// while at the expiry itself Dask closes (the scheduler's TTL preload) and the machine powers
/// off: an instance TERMINATED first would never be deleted, and its disk would bill until
/// `down` or `gc`. Asking 30 s ahead lets the platform's delete win.
pub const DELETE_AHEAD_SECS: u64 = 30;

#[allow(clippy::too_many_arguments)]
pub fn body(
    spec: &ClusterSpec,
    opts: &GcpOptions,
    shape: &Shape<'_>,
    name: Option<&str>,
    labels: &BTreeMap<String, String>,
    user_data: &str,
    service_account: &str,
    now: u64,
) -> Value {
    let ttl = spec
        .expires_at()
        .saturating_sub(now)
        .saturating_sub(DELETE_AHEAD_SECS)
        .max(30);
    let mut scheduling = json!({
        "provisioningModel": if shape.spot { "SPOT" } else { "STANDARD" },
        "instanceTerminationAction": "DELETE",
        "maxRunDuration": {"seconds": ttl.to_string()},
    });
    if shape.spot {
        scheduling["onHostMaintenance"] = json!("TERMINATE");
        scheduling["automaticRestart"] = json!(false);
    }
    // GPU VMs cannot live-migrate: host maintenance stops them.
    if shape.gpu.is_some() {
        scheduling["onHostMaintenance"] = json!("TERMINATE");
    }
    let mut nic = json!({"network": format!("global/networks/{}", opts.network())});
    if let Some(s) = &opts.subnetwork {
        nic["subnetwork"] = json!(format!(
            "regions/{}/subnetworks/{s}",
            crate::options::region_of(shape.zone)
        ));
    }
    if let Some(ip) = shape.network_ip {
        nic["networkIP"] = json!(ip);
    }
    if shape.external {
        nic["accessConfigs"] = json!([{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]);
    }
    let machine_type = if shape.bulk {
        shape.machine_type.to_string()
    } else {
        format!("zones/{}/machineTypes/{}", shape.zone, shape.machine_type)
    };
    let mut b = json!({
        "machineType": machine_type,
        "labels": labels,
        "tags": {"items": [network_tag(&spec.name)]},
        "metadata": {"items": [{"key": "user-data", "value": user_data}]},
        "disks": [{
            "boot": true, "autoDelete": true,
            "initializeParams": {"sourceImage": opts.image(), "diskSizeGb": opts.boot_disk().to_string(), "labels": labels},
        }],
        "networkInterfaces": [nic],
        "serviceAccounts": [{"email": service_account, "scopes": [CLOUD_PLATFORM]}],
        "scheduling": scheduling,
    });
    if let Some(g) = shape.gpu {
        let kind = if shape.bulk {
            g.kind.clone()
        } else {
            format!("zones/{}/acceleratorTypes/{}", shape.zone, g.kind)
        };
        b["guestAccelerators"] = json!([{"acceleratorType": kind, "acceleratorCount": g.count}]);
    }
    if let Some(n) = name {
        b["name"] = json!(n);
    }
    b
}

/// The node state of an instance status.
pub fn map_state(status: &str, message: Option<&str>) -> NodeState {
    match status {
        "PROVISIONING" | "STAGING" | "REPAIRING" | "PENDING" => NodeState::Pending,
        "RUNNING" => NodeState::Running,
        "STOPPING" | "SUSPENDING" | "PENDING_STOP" => NodeState::Stopping,
        "TERMINATED" | "STOPPED" | "SUSPENDED" => NodeState::Failed(format!(
            "stopped ({status}{}); its disk is billed until `down` deletes it",
            message.map(|m| format!(": {m}")).unwrap_or_default()
        )),
        _ => NodeState::Pending,
    }
}

fn epoch(time: &str) -> Option<u64> {
    let head: String = time.chars().take(19).collect();
    humantime::parse_rfc3339_weak(&format!("{head}Z"))
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The zone of an instance (its `zone` is a URL).
pub fn zone_of(i: &Instance) -> &str {
    i.zone.rsplit('/').next().unwrap_or_default()
}

/// The node of an instance (`None` when its labels do not say its role and cluster). Its id is
/// `zones/ZONE/instances/NAME`.
pub fn node_of(i: &Instance) -> Option<Node> {
    let t = labels::decode_all(&i.labels);
    let role: Role = t.get(tags::ROLE)?.parse().ok()?;
    let cluster = t.get(tags::CLUSTER)?;
    let name = match role {
        Role::Scheduler => t
            .get(tags::NODE)
            .cloned()
            .unwrap_or_else(|| "scheduler".into()),
        Role::Worker => i
            .name
            .strip_prefix(&format!("{cluster}-"))
            .unwrap_or(&i.name)
            .to_string(),
    };
    let nic = i.network_interfaces.first();
    Some(Node {
        id: format!("zones/{}/instances/{}", zone_of(i), i.name),
        name,
        role,
        state: map_state(&i.status, i.status_message.as_deref()),
        private_ip: nic.and_then(|n| n.network_ip.clone()),
        public_ip: nic.and_then(|n| n.access_configs.iter().find_map(|a| a.nat_ip.clone())),
        created_at: i.creation_timestamp.as_deref().and_then(epoch),
        tags: t,
    })
}

/// The nodes of instances, sorted by role, worker index and name.
pub fn nodes_of(instances: &[Instance]) -> Vec<Node> {
    let mut nodes: Vec<Node> = instances.iter().filter_map(node_of).collect();
    nodes.sort_by_key(|n| {
        (
            n.role,
            worker_index(&n.name).unwrap_or(u32::MAX),
            n.name.clone(),
        )
    });
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(map_state("PROVISIONING", None), NodeState::Pending);
        assert_eq!(map_state("STAGING", None), NodeState::Pending);
        assert_eq!(map_state("RUNNING", None), NodeState::Running);
        assert_eq!(map_state("STOPPING", None), NodeState::Stopping);
        assert!(
            matches!(map_state("TERMINATED", None), NodeState::Failed(r) if r.contains("billed"))
        );
        assert!(matches!(map_state("SUSPENDED", None), NodeState::Failed(_)));
    }

    #[test]
    fn names_fit_compute_and_iam() {
        let long = ClusterName::new("a-very-long-cluster-name-of-32ch").unwrap();
        let id = account_id(&long);
        assert!((6..=30).contains(&id.len()), "{id}");
        assert_eq!(
            account_id(&ClusterName::new("c1").unwrap()),
            "clusterctl-c1"
        );
        assert!(internal_rule(&long).len() <= 63);
        assert_eq!(
            secret_id("clusterctl-c1-worker-key.pem"),
            "clusterctl-c1-worker-key_pem"
        );
    }

    #[test]
    fn an_instance_becomes_a_node() {
        let i: Instance = serde_json::from_value(json!({
            "name": "c1-worker-3", "status": "RUNNING",
            "zone": "https://compute.googleapis.com/compute/v1/projects/p/zones/us-central1-a",
            "labels": {"clusterctl-role": "worker", "clusterctl-cluster": "c1", "clusterctl-protocol": "tls"},
            "creationTimestamp": "2026-03-01T02:00:00.000-08:00",
            "networkInterfaces": [{"networkIP": "10.128.0.5"}]
        }))
        .unwrap();
        let n = node_of(&i).unwrap();
        assert_eq!((n.role, n.name.as_str()), (Role::Worker, "worker-3"));
        assert_eq!(n.id, "zones/us-central1-a/instances/c1-worker-3");
        assert_eq!(n.private_ip.as_deref(), Some("10.128.0.5"));
        assert_eq!(n.public_ip, None);
        assert_eq!(n.state, NodeState::Running);
        assert!(n.created_at.is_some());
    }
}

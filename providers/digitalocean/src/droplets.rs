//! Droplets as cluster nodes: the status table, and the mapping from a droplet (with its tags)
//! to a [`Node`].
//!
//! | droplet status | node state | why |
//! |---|---|---|
//! | `new` | `Pending` | being created; its addresses come later |
//! | `active` | `Running` | powered on (Dask may still be starting) |
//! | `off` | `Failed("powered off …")` | Dask exited or the TTL passed and the run script powered it off |
//! | `archive` | `Terminated` | destroyed |
//!
//! `off` is neither `Stopping` (nothing is stopping it: it is stopped, and stays so) nor
//! `Terminated` (the droplet still exists and, powered off, is still billed; `down` skips
//! terminated nodes, so it would never be deleted). `Failed` with the reason is what EC2's
//! `stopped` maps to as well: `up` and `wait` fail at once on it, `status` says what it is and
//! that it costs money, and `down` deletes it.

use clusterctl_core::{
    model::{Node, NodeState, Role},
    tags as core_tags,
};

use crate::{api::Droplet, tags};

/// Why a powered-off droplet is not alive, as `status` shows it.
pub const OFF_REASON: &str = "powered off (Dask exited or the TTL passed); a powered-off droplet is still billed until `clusterctl down` deletes it";

/// Droplet status → node state.
pub fn map_status(status: &str) -> NodeState {
    match status {
        "new" => NodeState::Pending,
        "active" => NodeState::Running,
        "off" => NodeState::Failed(OFF_REASON.into()),
        "archive" => NodeState::Terminated,
        other => NodeState::Failed(format!("unknown droplet status `{other}`")),
    }
}

/// The droplet's address of `kind` (`public` or `private`).
pub fn address(d: &Droplet, kind: &str) -> Option<String> {
    d.networks
        .v4
        .iter()
        .find(|n| n.kind == kind)
        .map(|n| n.ip_address.clone())
}

/// The droplet name of a node: `<cluster>-scheduler`, `<cluster>-worker-<index>`.
pub fn droplet_name(cluster: &str, node: &str) -> String {
    format!("{cluster}-{node}")
}

/// The node a droplet is, when it is a clusterctl node (it has a role tag). Its name is the
/// node tag where there is one (the scheduler), else its droplet name without the cluster's
/// prefix (`worker-3`: workers are created ten to a request, which gives all ten the same tags).
pub fn node_of(d: &Droplet) -> Option<Node> {
    let tags = tags::decode_all(&d.tags);
    let role: Role = tags.get(core_tags::ROLE)?.parse().ok()?;
    let name = match tags.get(core_tags::NODE) {
        Some(n) => n.clone(),
        None => {
            let cluster = tags
                .get(core_tags::CLUSTER)
                .map(String::as_str)
                .unwrap_or("");
            d.name
                .strip_prefix(cluster)
                .and_then(|r| r.strip_prefix('-'))
                .unwrap_or(&d.name)
                .to_string()
        }
    };
    Some(Node {
        id: d.id.to_string(),
        name,
        role,
        state: map_status(&d.status),
        private_ip: address(d, "private"),
        public_ip: address(d, "public"),
        created_at: d
            .created_at
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        tags,
    })
}

/// The nodes among droplets, sorted by role, creation and id.
pub fn nodes_of(droplets: &[Droplet]) -> Vec<Node> {
    let mut nodes: Vec<Node> = droplets.iter().filter_map(node_of).collect();
    nodes.sort_by(|a, b| {
        (a.role, a.created_at, a.id.len(), &a.id).cmp(&(b.role, b.created_at, b.id.len(), &b.id))
    });
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NetworkV4, Networks};

    fn droplet(status: &str, tags: &[&str]) -> Droplet {
        Droplet {
            id: 42,
            name: "ci-worker-7".into(),
            status: status.into(),
            created_at: Some("2026-03-01T10:00:00Z".into()),
            networks: Networks {
                v4: vec![
                    NetworkV4 {
                        ip_address: "10.116.0.5".into(),
                        kind: "private".into(),
                    },
                    NetworkV4 {
                        ip_address: "203.0.113.9".into(),
                        kind: "public".into(),
                    },
                ],
            },
            tags: tags.iter().map(|t| t.to_string()).collect(),
            size_slug: None,
        }
    }

    const WORKER: &[&str] = &[
        "clusterctl-managed:true",
        "clusterctl-cluster:ci",
        "clusterctl-role:worker",
        "web",
    ];

    #[test]
    fn new_is_pending() {
        assert_eq!(map_status("new"), NodeState::Pending);
    }

    #[test]
    fn active_is_running() {
        assert_eq!(map_status("active"), NodeState::Running);
    }

    #[test]
    fn off_is_failed_billed_and_deleted_by_down() {
        let s = map_status("off");
        assert!(!s.is_alive(), "up and wait must not wait for it");
        assert_ne!(s, NodeState::Terminated, "down skips terminated nodes");
        assert!(s.to_string().contains("still billed"), "{s}");
    }

    #[test]
    fn archive_is_terminated() {
        assert_eq!(map_status("archive"), NodeState::Terminated);
    }

    #[test]
    fn unknown_statuses_fail_loudly() {
        assert!(matches!(map_status("melted"), NodeState::Failed(r) if r.contains("melted")));
    }

    #[test]
    fn a_worker_droplet_is_a_node() {
        let n = node_of(&droplet("active", WORKER)).unwrap();
        assert_eq!(n.id, "42");
        assert_eq!(n.name, "worker-7");
        assert_eq!(n.role, Role::Worker);
        assert_eq!(n.private_ip.as_deref(), Some("10.116.0.5"));
        assert_eq!(n.public_ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(n.created_at, Some(1_772_359_200));
        assert_eq!(n.tags["clusterctl-cluster"], "ci");
        assert!(!n.tags.contains_key("web"));
        assert_eq!(
            clusterctl_core::lifecycle::worker_index(&n.name),
            Some(7),
            "scale numbers new workers after it"
        );
    }

    #[test]
    fn the_node_tag_names_the_scheduler() {
        let mut d = droplet(
            "new",
            &[
                "clusterctl-cluster:ci",
                "clusterctl-role:scheduler",
                "clusterctl-node:scheduler",
            ],
        );
        d.networks.v4.clear();
        d.name = "ci-scheduler".into();
        let n = node_of(&d).unwrap();
        assert_eq!((n.name.as_str(), n.role), ("scheduler", Role::Scheduler));
        assert_eq!(n.private_ip, None);
    }

    #[test]
    fn droplets_without_a_role_are_not_nodes() {
        assert!(node_of(&droplet("active", &["clusterctl-cluster:ci"])).is_none());
    }
}

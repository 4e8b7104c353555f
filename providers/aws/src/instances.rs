//! EC2 instances as cluster nodes: the state table and the mapping from an instance (with its
//! tags) to a [`Node`], and the tag-filtered listing.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, InstanceStateName};
use clusterctl_core::{
    Result,
    model::{ClusterName, Node, NodeState, Role},
    tags,
};

use crate::Ec2Provider;

/// States clusterctl treats as "the node exists" (terminated instances linger in listings).
pub(crate) const LIVE_STATES: &[&str] =
    &["pending", "running", "stopping", "stopped", "shutting-down"];

/// EC2 instance state → node state.
pub fn map_state(state: &InstanceStateName, reason: Option<&str>) -> NodeState {
    match state {
        InstanceStateName::Pending => NodeState::Pending,
        InstanceStateName::Running => NodeState::Running,
        InstanceStateName::Stopping | InstanceStateName::ShuttingDown => NodeState::Stopping,
        InstanceStateName::Stopped => NodeState::Failed(format!(
            "instance stopped{}",
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        )),
        InstanceStateName::Terminated => NodeState::Terminated,
        other => NodeState::Failed(format!("unknown instance state {}", other.as_str())),
    }
}

pub(crate) fn node_of(i: &aws_sdk_ec2::types::Instance) -> Option<Node> {
    let tags: BTreeMap<String, String> = i
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    let role = tags.get(tags::ROLE)?.parse().ok()?;
    let id = i.instance_id()?.to_string();
    let state = i
        .state()
        .and_then(|s| s.name())
        .map_or(NodeState::Pending, |s| {
            map_state(s, i.state_reason().and_then(|r| r.message()))
        });
    Some(Node {
        name: if role == Role::Scheduler {
            "scheduler".into()
        } else {
            id.clone()
        },
        id,
        role,
        state,
        private_ip: i.private_ip_address().map(str::to_string),
        public_ip: i.public_ip_address().map(str::to_string),
        created_at: i.launch_time().map(|t| t.secs().max(0) as u64),
        tags,
    })
}

impl Ec2Provider {
    pub(crate) async fn describe(
        &self,
        cluster: Option<&ClusterName>,
        states: &[&str],
    ) -> Result<Vec<Node>> {
        let mut filters = vec![
            Filter::builder()
                .name(format!("tag:{}", tags::MANAGED))
                .values(tags::MANAGED_VALUE)
                .build(),
        ];
        if let Some(c) = cluster {
            filters.push(
                Filter::builder()
                    .name(format!("tag:{}", tags::CLUSTER))
                    .values(c.as_str())
                    .build(),
            );
        }
        if !states.is_empty() {
            filters.push(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(states.iter().map(|s| s.to_string()).collect()))
                    .build(),
            );
        }
        let mut pages = self
            .ec2
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        let mut nodes = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map("ec2:DescribeInstances", e))?;
            for r in page.reservations() {
                nodes.extend(r.instances().iter().filter_map(node_of));
            }
        }
        nodes.sort_by(|a, b| (a.role, &a.created_at, &a.id).cmp(&(b.role, &b.created_at, &b.id)));
        Ok(nodes)
    }
}

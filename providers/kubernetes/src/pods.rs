//! Reading Pods as clusterctl nodes: role and name from the labels, state from the pod's phase,
//! conditions and container states, with the failures that will not heal (image pulls, crash
//! loops, unschedulable pods) reported as failed at once.

use clusterctl_core::{
    model::{Node, NodeState, Role},
    tags,
};
use k8s_openapi::api::core::v1::{Event, Pod};

/// Container waiting reasons that do not heal by waiting.
const FATAL_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// The node id of a pod: `namespace/name`, unique across namespaces.
pub fn node_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Split a node id back into namespace and pod name.
pub fn split_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('/')
}

/// Whether a reason from [`fatal_reason`] says the cluster has no room for the pod (the
/// scheduler's `Insufficient cpu`/`memory`/`nvidia.com/gpu`, `Too many pods`), rather than that
/// no node may take it (a taint, a selector) or that its container cannot run.
pub fn is_capacity(reason: &str) -> bool {
    reason.starts_with("unschedulable:")
        && (reason.contains("Insufficient ") || reason.contains("Too many pods"))
}

/// Why the pod cannot become ready, if that is already certain.
pub fn fatal_reason(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    for c in status.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or_default();
            if FATAL_WAITING.contains(&reason) {
                let msg = w.message.as_deref().unwrap_or_default();
                return Some(
                    format!("container {}: {reason}: {msg}", c.name)
                        .trim_end_matches(": ")
                        .to_string(),
                );
            }
        }
    }
    for cond in status.conditions.iter().flatten() {
        if cond.type_ == "PodScheduled"
            && cond.status == "False"
            && cond.reason.as_deref() == Some("Unschedulable")
        {
            return Some(format!(
                "unschedulable: {}",
                cond.message.as_deref().unwrap_or("no node fits the pod")
            ));
        }
    }
    None
}

/// Why a pod in phase Failed failed.
fn failed_reason(pod: &Pod) -> String {
    let status = pod.status.as_ref();
    let mut parts = Vec::new();
    if let Some(r) = status.and_then(|s| s.reason.as_deref()) {
        parts.push(r.to_string());
    }
    if let Some(m) = status.and_then(|s| s.message.as_deref()) {
        parts.push(m.to_string());
    }
    for c in status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            parts.push(format!(
                "container {} exited with code {}{}",
                c.name,
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
    }
    if parts.is_empty() {
        "the pod failed".into()
    } else {
        parts.join(": ")
    }
}

/// The node of a clusterctl pod (`None` for pods without clusterctl's role label).
pub fn to_node(pod: &Pod) -> Option<Node> {
    let meta = &pod.metadata;
    let labels = meta.labels.as_ref()?;
    let role: Role = labels.get(tags::ROLE)?.parse().ok()?;
    let name = meta.name.clone()?;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    let state = if meta.deletion_timestamp.is_some() {
        NodeState::Stopping
    } else {
        match phase {
            "Succeeded" => NodeState::Terminated,
            "Failed" => NodeState::Failed(failed_reason(pod)),
            _ => match fatal_reason(pod) {
                Some(r) if is_capacity(&r) => NodeState::NoCapacity(r),
                Some(r) => NodeState::Failed(r),
                None if phase == "Running" => NodeState::Running,
                None => NodeState::Pending,
            },
        }
    };
    Some(Node {
        id: node_id(&namespace, &name),
        name: labels
            .get(tags::NODE)
            .cloned()
            .unwrap_or_else(|| name.clone()),
        role,
        state,
        private_ip: status.and_then(|s| s.pod_ip.clone()),
        public_ip: None,
        created_at: meta
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second().max(0) as u64),
        tags: labels.clone(),
    })
}

/// The warning events of a pod, oldest first, one line each (`FailedScheduling: 0/3 nodes ...`).
pub fn event_lines(events: &[Event]) -> Vec<String> {
    let mut ev: Vec<&Event> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    ev.sort_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0));
    ev.iter()
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.as_deref().unwrap_or("Event"),
                e.message.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// Whether a cluster autoscaler is adding a node for this pod (its `TriggeredScaleUp` event),
/// in which case an unschedulable pod is only waiting.
pub fn scale_up_triggered(events: &[Event]) -> bool {
    events
        .iter()
        .any(|e| e.reason.as_deref() == Some("TriggeredScaleUp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn labelled(status: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "demo-worker-0", "namespace": "ci",
                "labels": {"clusterctl-role": "worker", "clusterctl-node": "worker-0"}},
            "status": status,
        }))
    }

    #[test]
    fn states_from_pods() {
        let n = to_node(&labelled(
            serde_json::json!({"phase": "Running", "podIP": "10.244.0.3"}),
        ))
        .unwrap();
        assert_eq!(n.id, "ci/demo-worker-0");
        assert_eq!(n.name, "worker-0");
        assert_eq!(n.role, Role::Worker);
        assert_eq!(n.state, NodeState::Running);
        assert_eq!(n.private_ip.as_deref(), Some("10.244.0.3"));

        let n = to_node(&labelled(serde_json::json!({"phase": "Pending",
            "containerStatuses": [{"name": "dask", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"x\""}}}]})))
        .unwrap();
        assert!(
            matches!(&n.state, NodeState::Failed(r) if r.contains("ImagePullBackOff") && r.contains("Back-off")),
            "{:?}",
            n.state
        );

        let n = to_node(&labelled(serde_json::json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient cpu."}]})))
        .unwrap();
        assert!(matches!(&n.state, NodeState::NoCapacity(r) if r.contains("Insufficient cpu")));

        // No node may take it (a taint): not a capacity shortage.
        let n = to_node(&labelled(serde_json::json!({"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."}]})))
        .unwrap();
        assert!(matches!(&n.state, NodeState::Failed(r) if r.contains("untolerated taint")));

        let n = to_node(&labelled(serde_json::json!({"phase": "Failed",
            "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"})))
        .unwrap();
        assert!(matches!(&n.state, NodeState::Failed(r) if r.starts_with("DeadlineExceeded")));

        let n = to_node(&labelled(serde_json::json!({"phase": "Succeeded"}))).unwrap();
        assert_eq!(n.state, NodeState::Terminated);
        assert!(to_node(&pod(serde_json::json!({"metadata": {"name": "other"}}))).is_none());
    }
}

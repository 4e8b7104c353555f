//! Names of a cluster's Fargate resources. Prefixes alone could match another cluster (`a` and
//! `a-b`), so lookups compare whole names and check tags.

use clusterctl_core::model::{ClusterName, Role};

/// Path of the IAM roles clusterctl creates.
pub const ROLE_PATH: &str = crate::access::ROLE_PATH;

/// The cluster's own ECS cluster.
pub fn ecs_cluster(c: &ClusterName) -> String {
    format!("clusterctl-{c}")
}
/// The task definition family of a role.
pub fn family(c: &ClusterName, role: Role) -> String {
    format!("clusterctl-{c}-{}", role.as_str())
}
/// The created task execution role.
pub fn execution_role(c: &ClusterName) -> String {
    format!("clusterctl-{c}-exec")
}
/// The created task role.
pub fn task_role(c: &ClusterName) -> String {
    format!("clusterctl-{c}-task")
}
/// Both roles clusterctl may create.
pub fn roles(c: &ClusterName) -> [String; 2] {
    [execution_role(c), task_role(c)]
}
/// The created log group.
pub fn log_group(c: &ClusterName) -> String {
    format!("/clusterctl/{c}")
}
/// The SSM path of the cluster's secrets (with the trailing `/`).
pub fn secrets_path(c: &ClusterName) -> String {
    format!("/clusterctl/{c}/")
}
/// The SSM parameter of one secret file.
pub fn secret(c: &ClusterName, file: &str) -> String {
    format!("/clusterctl/{c}/{file}")
}

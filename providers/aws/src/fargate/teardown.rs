//! Teardown of a Fargate cluster: stopping its tasks, then deleting task definitions, TLS
//! parameters, roles, log group, security group and ECS cluster (only what the tags say
//! clusterctl made for it), and reporting anything still there.
//!
//! Every call is counted against `down`'s budget (docs/benchmarks.md): what an earlier answer
//! of this process already told (an ECS cluster's tags, a task STOPPED, the task definitions
//! the tasks run, the roles they use) is not asked again, and each kind is read once after its
//! deletion; a verification read that still finds something of the cluster deletes it and
//! reads again, so that nothing depends on what was skipped.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::TaskDefinitionStatus;
use clusterctl_core::{
    Result,
    model::{ClusterName, Node, NodeState, Role},
};

use super::{FargateProvider, cluster_of, names, resources, tasks::task_id};
use crate::{access, errors, network};

/// StopTask requests in flight at once: bounded, as ECS throttles each action per account (a
/// throttled request is retried by the SDK with jittered backoff).
const STOP_CONCURRENCY: usize = 16;
/// The files whose keys `up` stores as SSM parameters (`bootstrap::tls_files`).
const SECRET_FILES: [&str; 2] = ["scheduler-key.pem", "worker-key.pem"];

impl FargateProvider {
    /// StopTask for each live node, [`STOP_CONCURRENCY`] at once (ECS stops one task per call).
    pub(super) async fn stop_nodes(&self, cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        // Task ARNs name their ECS cluster in the long ARN format; for old short ARNs, the
        // listing knows it.
        let known: BTreeMap<String, String> = if nodes.iter().all(|n| cluster_of(&n.id).is_some()) {
            BTreeMap::new()
        } else {
            self.describe(Some(cluster))
                .await?
                .into_iter()
                .map(|t| (t.node.id, t.cluster_arn))
                .collect()
        };
        let own = self.ecs_cluster_name(cluster);
        let targets: Vec<(String, Node)> = nodes
            .iter()
            .filter(|n| n.state != NodeState::Terminated)
            .map(|n| {
                let ecs_cluster = cluster_of(&n.id)
                    .map(str::to_string)
                    .or_else(|| known.get(&n.id).filter(|c| !c.is_empty()).cloned())
                    .unwrap_or_else(|| own.clone());
                (ecs_cluster, n.clone())
            })
            .collect();
        // Every task is asked to stop even when one request fails; a sliding window of
        // STOP_CONCURRENCY requests in flight, so 100 tasks stop in about the time of ten.
        clusterctl_core::concurrent::each(targets, STOP_CONCURRENCY, |(c, n)| async move {
            self.stop_task(&c, &n).await
        })
        .await
    }

    async fn stop_task(&self, ecs_cluster: &str, node: &Node) -> Result<()> {
        match self
            .ecs
            .stop_task()
            .cluster(ecs_cluster)
            .task(&node.id)
            .reason("clusterctl: stopped by down or scale")
            .send()
            .await
        {
            Ok(out) => {
                // The answer says the task's state: one STOPPED at once needs no look-up.
                if let Some(task) = out.task() {
                    self.stopped(node, task);
                }
                Ok(())
            }
            // Already gone (stopped tasks age out of ECS).
            Err(e) if errors::code(&e) == Some("InvalidParameterException") => Ok(()),
            Err(e) => Err(self.map("ecs:StopTask", e)),
        }
    }

    /// Delete every supporting resource clusterctl made for `cluster`, then report what is left.
    pub(super) async fn remove_resources(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        // Task definitions: the revisions the cluster's tasks ran (known from the listing of
        // its tasks), else those a listing of both families finds; deregistered, then deleted.
        let mut definitions = self.task_definitions_run(cluster);
        if definitions.is_empty() {
            definitions = self
                .task_definitions(cluster, TaskDefinitionStatus::Active)
                .await?;
        }
        let roles_used = self.retire_task_definitions(&definitions).await?;
        if definitions.is_empty() {
            // Nothing active: revisions an interrupted `down` deregistered but did not delete.
            let inactive = self
                .task_definitions(cluster, TaskDefinitionStatus::Inactive)
                .await?;
            self.delete_task_definitions(&inactive).await?;
        }
        let secrets: Vec<String> = SECRET_FILES
            .iter()
            .map(|f| names::secret(cluster, f))
            .collect();
        self.access().delete_secret_names(&secrets).await?;
        // The roles the deregistered task definitions used tell which of the cluster's roles
        // exist; without any, each is looked up.
        let exec = names::execution_role(cluster);
        let task_role = names::task_role(cluster);
        let uses = |role: &str| {
            definitions.is_empty() || roles_used.iter().any(|a| a.ends_with(&format!("/{role}")))
        };
        if uses(&exec) {
            self.access()
                .delete_role_as_made(
                    &exec,
                    cluster,
                    &[access::SECRETS_POLICY],
                    &[resources::EXECUTION_POLICY],
                )
                .await?;
        }
        if uses(&task_role) {
            self.access().delete_role(&task_role, cluster).await?;
        }
        if let Some((group, found)) = self.own_log_group(cluster).await?
            && !found.contains_key(resources::KEEP_LOGS_TAG)
        {
            self.delete_log_group(&group).await?;
        }
        let own_deleted = self.delete_ecs_cluster(cluster).await?;
        // The group claims the name: removed last, so that a teardown cut off on the way
        // leaves it, and `gc` finds what is left through it.
        network::delete_groups(&self.ec2, &self.region, cluster).await?;

        self.left(cluster, own_deleted).await
    }

    /// The verification after the deletions: one read per kind of resource. Whatever of the
    /// cluster a read still finds (e.g. a role no task definition named, parameters of a
    /// former version) is deleted as clusterctl deletes it, and read again.
    async fn left(&self, cluster: &ClusterName, own_deleted: bool) -> Result<Vec<String>> {
        let mut left = Vec::new();
        let own = names::ecs_cluster(cluster);
        let own_left = self.ecs_cluster_left(cluster).await?;
        // ECS does not delete a cluster that has tasks, nor start one in an inactive cluster:
        // the cluster's own ECS cluster deleted and still inactive, no task of it is left.
        if !(own_deleted && own_left.is_none() && self.ecs_cluster_name(cluster) == own) {
            left.extend(
                self.describe(Some(cluster))
                    .await?
                    .into_iter()
                    .filter(|t| t.node.state != NodeState::Terminated)
                    .map(|t| format!("task {} ({})", task_id(&t.node.id), t.node.state)),
            );
        }
        let mut active = self
            .task_definitions(cluster, TaskDefinitionStatus::Active)
            .await?;
        if !active.is_empty() {
            self.retire_task_definitions(&active).await?;
            active = self
                .task_definitions(cluster, TaskDefinitionStatus::Active)
                .await?;
        }
        left.extend(active.into_iter().map(|a| format!("task definition {a}")));
        let prefix = names::secrets_path(cluster);
        let mut secrets = self.access().secret_names(&prefix).await?;
        if !secrets.is_empty() {
            self.access().delete_secrets(&prefix).await?;
            secrets = self.access().secret_names(&prefix).await?;
        }
        left.extend(secrets.into_iter().map(|n| format!("SSM parameter {n}")));
        let role_names = names::roles(cluster);
        let mut roles = self
            .access()
            .roles_left_listed(&role_names, cluster)
            .await?;
        if !roles.is_empty() {
            for r in &roles {
                self.access().delete_role(r, cluster).await?;
            }
            roles = self.access().roles_left(&roles, cluster).await?;
        }
        left.extend(roles.into_iter().map(|r| format!("IAM role {r}")));
        if let Some((group, found)) = self.listed_log_group(cluster).await?
            && !found.contains_key(resources::KEEP_LOGS_TAG)
        {
            left.push(format!("log group {group}"));
        }
        left.extend(
            network::groups(&self.ec2, &self.region, Some(cluster))
                .await?
                .into_iter()
                .map(|g| format!("security group {} ({})", g.id, g.name)),
        );
        if let Some(c) = own_left {
            left.push(format!("ECS cluster {c}"));
        }
        Ok(left)
    }

    async fn delete_log_group(&self, group: &str) -> Result<()> {
        match self
            .logs
            .delete_log_group()
            .log_group_name(group)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::code(&e) == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(self.map("logs:DeleteLogGroup", e)),
        }
    }

    /// The task definition revisions of the cluster's families that its tasks ran, as this
    /// process listed them.
    fn task_definitions_run(&self, cluster: &ClusterName) -> Vec<String> {
        let families = [
            names::family(cluster, Role::Scheduler),
            names::family(cluster, Role::Worker),
        ];
        let mut arns: Vec<String> = self
            .seen()
            .stopped
            .values()
            .filter_map(|t| t.task_definition_arn.clone())
            .filter(|a| family_of(a).is_some_and(|f| families.iter().any(|x| x == f)))
            .collect();
        arns.sort();
        arns.dedup();
        arns
    }

    /// Deregister `arns`, then delete them (10 per call). Returns the roles (execution and task
    /// role ARNs) the deregistered revisions named.
    async fn retire_task_definitions(&self, arns: &[String]) -> Result<Vec<String>> {
        let mut roles = Vec::new();
        for arn in arns {
            match self
                .ecs
                .deregister_task_definition()
                .task_definition(arn)
                .send()
                .await
            {
                Ok(out) => {
                    if let Some(td) = out.task_definition() {
                        roles.extend(td.execution_role_arn().map(str::to_string));
                        roles.extend(td.task_role_arn().map(str::to_string));
                    }
                }
                // Deregistered already (by an interrupted `down`): deleted below all the same.
                Err(e) if errors::code(&e) == Some("ClientException") => {}
                Err(e) => return Err(self.map("ecs:DeregisterTaskDefinition", e)),
            }
        }
        self.delete_task_definitions(arns).await?;
        Ok(roles)
    }

    async fn delete_task_definitions(&self, arns: &[String]) -> Result<()> {
        for chunk in arns.chunks(10) {
            self.ecs
                .delete_task_definitions()
                .set_task_definitions(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.map("ecs:DeleteTaskDefinitions", e))?;
        }
        Ok(())
    }

    /// Task definition revisions of `status` of the cluster's two families: one listing per
    /// family, since ECS's `familyPrefix` takes a full family name (moto does the same), not a
    /// prefix that would cover both.
    async fn task_definitions(
        &self,
        cluster: &ClusterName,
        status: TaskDefinitionStatus,
    ) -> Result<Vec<String>> {
        let mut arns = Vec::new();
        for family in [
            names::family(cluster, Role::Scheduler),
            names::family(cluster, Role::Worker),
        ] {
            let mut pages = self
                .ecs
                .list_task_definitions()
                .family_prefix(&family)
                .status(status.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.map("ecs:ListTaskDefinitions", e))?;
                arns.extend(
                    page.task_definition_arns()
                        .iter()
                        .filter(|a| family_of(a) == Some(family.as_str()))
                        .cloned(),
                );
            }
        }
        Ok(arns)
    }
}

/// The family of a task definition ARN (`arn:…:task-definition/<family>:<revision>`).
fn family_of(arn: &str) -> Option<&str> {
    arn.rsplit_once('/')
        .and_then(|(_, fr)| fr.rsplit_once(':'))
        .map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_come_from_task_definition_arns() {
        assert_eq!(
            family_of("arn:aws:ecs:us-east-1:123456789012:task-definition/clusterctl-a-worker:3"),
            Some("clusterctl-a-worker")
        );
        assert_eq!(family_of("clusterctl-a-worker"), None);
    }
}

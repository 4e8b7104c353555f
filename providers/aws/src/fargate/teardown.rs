//! Teardown of a Fargate cluster: stopping its tasks, then deleting task definitions, TLS
//! parameters, roles, log group, security group and ECS cluster (only what the tags say
//! clusterctl made for it), and reporting anything still there.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::TaskDefinitionStatus;
use clusterctl_core::{
    Result,
    model::{ClusterName, Node, NodeState, Role},
};

use super::{FargateProvider, cluster_of, names, resources, tasks::task_id};
use crate::{errors, network};

/// StopTask requests in flight at once: bounded, as ECS throttles each action per account (a
/// throttled request is retried by the SDK with jittered backoff).
const STOP_CONCURRENCY: usize = 16;

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
        let targets: Vec<(String, String)> = nodes
            .iter()
            .filter(|n| n.state != NodeState::Terminated)
            .map(|n| {
                let ecs_cluster = cluster_of(&n.id)
                    .map(str::to_string)
                    .or_else(|| known.get(&n.id).filter(|c| !c.is_empty()).cloned())
                    .unwrap_or_else(|| own.clone());
                (ecs_cluster, n.id.clone())
            })
            .collect();
        // Every task is asked to stop even when one request fails; a sliding window of
        // STOP_CONCURRENCY requests in flight, so 100 tasks stop in about the time of ten.
        clusterctl_core::concurrent::each(targets, STOP_CONCURRENCY, |(c, id)| async move {
            self.stop_task(&c, &id).await
        })
        .await
    }

    async fn stop_task(&self, ecs_cluster: &str, task: &str) -> Result<()> {
        match self
            .ecs
            .stop_task()
            .cluster(ecs_cluster)
            .task(task)
            .reason("clusterctl: stopped by down or scale")
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (stopped tasks age out of ECS).
            Err(e) if errors::code(&e) == Some("InvalidParameterException") => Ok(()),
            Err(e) => Err(self.map("ecs:StopTask", e)),
        }
    }

    /// Delete every supporting resource clusterctl made for `cluster`, then report what is left.
    pub(super) async fn remove_resources(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        for arn in self
            .task_definitions(cluster, TaskDefinitionStatus::Active)
            .await?
        {
            self.ecs
                .deregister_task_definition()
                .task_definition(&arn)
                .send()
                .await
                .map_err(|e| self.map("ecs:DeregisterTaskDefinition", e))?;
        }
        let inactive = self
            .task_definitions(cluster, TaskDefinitionStatus::Inactive)
            .await?;
        for chunk in inactive.chunks(10) {
            self.ecs
                .delete_task_definitions()
                .set_task_definitions(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.map("ecs:DeleteTaskDefinitions", e))?;
        }
        self.access()
            .delete_secrets(&names::secrets_path(cluster))
            .await?;
        for role in names::roles(cluster) {
            self.access().delete_role(&role, cluster).await?;
        }
        if let Some((group, found)) = self.own_log_group(cluster).await?
            && !found.contains_key(resources::KEEP_LOGS_TAG)
        {
            match self
                .logs
                .delete_log_group()
                .log_group_name(&group)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if errors::code(&e) == Some("ResourceNotFoundException") => {}
                Err(e) => return Err(self.map("logs:DeleteLogGroup", e)),
            }
        }
        self.delete_ecs_cluster(cluster).await?;
        // The group claims the name: removed last, so that a teardown cut off on the way
        // leaves it, and `gc` finds what is left through it.
        network::delete_groups(&self.ec2, &self.region, cluster).await?;

        let mut left: Vec<String> = self
            .describe(Some(cluster))
            .await?
            .into_iter()
            .filter(|t| t.node.state != NodeState::Terminated)
            .map(|t| format!("task {} ({})", task_id(&t.node.id), t.node.state))
            .collect();
        left.extend(
            self.task_definitions(cluster, TaskDefinitionStatus::Active)
                .await?
                .into_iter()
                .map(|a| format!("task definition {a}")),
        );
        left.extend(
            self.access()
                .secret_names(&names::secrets_path(cluster))
                .await?
                .into_iter()
                .map(|n| format!("SSM parameter {n}")),
        );
        left.extend(
            self.access()
                .roles_left(&names::roles(cluster), cluster)
                .await?
                .into_iter()
                .map(|r| format!("IAM role {r}")),
        );
        if let Some((group, found)) = self.own_log_group(cluster).await?
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
        if let Some(c) = self.ecs_cluster_left(cluster).await? {
            left.push(format!("ECS cluster {c}"));
        }
        Ok(left)
    }

    /// Task definition families of the cluster with revisions of `status`: (family, ARN).
    async fn task_definitions(
        &self,
        cluster: &ClusterName,
        status: TaskDefinitionStatus,
    ) -> Result<Vec<String>> {
        let families = [
            names::family(cluster, Role::Scheduler),
            names::family(cluster, Role::Worker),
        ];
        let mut arns = Vec::new();
        for family in &families {
            let mut pages = self
                .ecs
                .list_task_definitions()
                .family_prefix(family)
                .status(status.clone())
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| self.map("ecs:ListTaskDefinitions", e))?;
                // `family_prefix` is a prefix: keep exactly this family's revisions.
                arns.extend(
                    page.task_definition_arns()
                        .iter()
                        .filter(|a| {
                            a.rsplit_once('/')
                                .and_then(|(_, fr)| fr.rsplit_once(':'))
                                .is_some_and(|(f, _)| f == family)
                        })
                        .cloned(),
                );
            }
        }
        Ok(arns)
    }
}

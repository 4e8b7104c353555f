//! The supporting resources of a Fargate cluster besides its tasks and security group: the ECS
//! cluster, the task execution and task roles, the CloudWatch log group and the SSM parameters
//! that hold the TLS private keys. Each is created tagged, found by name and tags, and deleted
//! only when its tags say clusterctl made it for this cluster.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::ClusterField;
use clusterctl_core::{Error, Result, model::ClusterName};

use super::{FargateProvider, names};
use crate::access::{self, ours};
use crate::errors::code;

/// The AWS-managed policy that lets ECS pull images and write logs for a task.
pub(crate) const EXECUTION_POLICY: &str = "policy/service-role/AmazonECSTaskExecutionRolePolicy";
/// Tag on a created log group that `down` keeps (`--keep-logs`).
pub const KEEP_LOGS_TAG: &str = "clusterctl-keep-logs";
/// How long `cleanup` retries deleting the ECS cluster while its tasks drain.
const CLUSTER_DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

impl FargateProvider {
    /// Whether the ECS cluster `name` exists and is active.
    pub(crate) async fn ecs_cluster_active(&self, name: &str) -> Result<bool> {
        Ok(self
            .describe_ecs_cluster(name)
            .await?
            .is_some_and(|(status, _)| status == "ACTIVE"))
    }

    /// The ECS cluster `name` as this process last found it active, else as DescribeClusters
    /// says now (`None`: not active).
    pub(super) async fn active_ecs_cluster(&self, name: &str) -> Result<Option<super::EcsCluster>> {
        if let Some(c) = self.seen().ecs_clusters.get(name) {
            return Ok(Some(c.clone()));
        }
        self.describe_ecs_cluster(name).await?;
        Ok(self.seen().ecs_clusters.get(name).cloned())
    }

    /// DescribeClusters of `name` (always asked): its status and tags. An active cluster is
    /// remembered, one that is not is forgotten.
    async fn describe_ecs_cluster(
        &self,
        name: &str,
    ) -> Result<Option<(String, BTreeMap<String, String>)>> {
        let out = self
            .ecs
            .describe_clusters()
            .clusters(name)
            .include(ClusterField::Tags)
            .send()
            .await
            .map_err(|e| self.map("ecs:DescribeClusters", e))?;
        let found = out.clusters().first().map(|c| {
            (
                c.status().unwrap_or_default().to_string(),
                c.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect::<BTreeMap<String, String>>(),
                c.cluster_arn().unwrap_or_default().to_string(),
            )
        });
        let mut seen = self.seen();
        match &found {
            Some((status, tags, arn)) if status == "ACTIVE" => {
                seen.ecs_clusters.insert(
                    name.to_string(),
                    super::EcsCluster {
                        arn: arn.clone(),
                        tags: tags.clone(),
                    },
                );
            }
            _ => {
                seen.ecs_clusters.remove(name);
            }
        }
        Ok(found.map(|(status, tags, _)| (status, tags)))
    }

    /// The ECS cluster to run in: `--ecs-cluster` (which must exist), else the cluster's own,
    /// created with the FARGATE and FARGATE_SPOT capacity providers.
    pub(crate) async fn ensure_ecs_cluster(
        &self,
        cluster: &ClusterName,
        cluster_tags: &BTreeMap<String, String>,
    ) -> Result<String> {
        if let Some(given) = &self.options.ecs_cluster {
            if !self.ecs_cluster_active(given).await? {
                return Err(Error::invalid(
                    "--ecs-cluster",
                    given,
                    "no active ECS cluster of this name in the region",
                    Some("create it first, or drop --ecs-cluster to have one made".into()),
                ));
            }
            return Ok(given.clone());
        }
        let name = names::ecs_cluster(cluster);
        match self.describe_ecs_cluster(&name).await? {
            Some((status, found)) if status == "ACTIVE" => {
                if !ours(&found, cluster) {
                    return Err(Error::invalid(
                        "--name",
                        cluster.as_str(),
                        format!(
                            "the ECS cluster {name} exists and was not made by clusterctl for this cluster"
                        ),
                        Some("choose another --name, or run in it with --ecs-cluster".into()),
                    ));
                }
            }
            _ => {
                self.ecs
                    .create_cluster()
                    .cluster_name(&name)
                    .capacity_providers("FARGATE")
                    .capacity_providers("FARGATE_SPOT")
                    .set_tags(Some(super::tasks::ecs_tags(cluster_tags)))
                    .send()
                    .await
                    .map_err(|e| self.map("ecs:CreateCluster", e))?;
            }
        }
        Ok(name)
    }

    /// The execution role's policies: the managed execution policy, and reading the cluster's
    /// secret parameters.
    pub(crate) async fn execution_policies(
        &self,
        cluster: &ClusterName,
    ) -> Result<(Vec<String>, Vec<(&'static str, String)>)> {
        let id = self.identity().await?;
        let managed = vec![format!("arn:{}:iam::aws:{EXECUTION_POLICY}", id.partition)];
        let secrets = access::read_secrets_policy(
            &id.partition,
            &self.region,
            &id.account,
            &names::secrets_path(cluster),
        );
        Ok((managed, vec![(access::SECRETS_POLICY, secrets)]))
    }

    /// Create the cluster's log group with its retention (tagged, and marked when `down` must
    /// keep it).
    pub(crate) async fn ensure_log_group(
        &self,
        name: &str,
        cluster_tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut req = self.logs.create_log_group().log_group_name(name);
        for (k, v) in cluster_tags {
            req = req.tags(k, v);
        }
        if self.options.keep_logs {
            req = req.tags(KEEP_LOGS_TAG, "true");
        }
        match req.send().await {
            Ok(_) => {}
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => {}
            Err(e) => return Err(self.map("logs:CreateLogGroup", e)),
        }
        self.logs
            .put_retention_policy()
            .log_group_name(name)
            .retention_in_days(
                self.options
                    .log_retention_days
                    .unwrap_or(super::options::DEFAULT_LOG_RETENTION_DAYS),
            )
            .send()
            .await
            .map_err(|e| self.map("logs:PutRetentionPolicy", e))?;
        Ok(())
    }

    /// The cluster's own log group with its tags, if it exists and clusterctl made it: one
    /// ListTagsForResource when this process knows the account (from an ECS ARN it saw), else
    /// DescribeLogGroups and ListTagsForResource.
    pub(crate) async fn own_log_group(
        &self,
        cluster: &ClusterName,
    ) -> Result<Option<(String, BTreeMap<String, String>)>> {
        let name = names::log_group(cluster);
        let arn = match self.known_account() {
            Some((partition, account)) => format!(
                "arn:{partition}:logs:{}:{account}:log-group:{name}",
                self.region
            ),
            None => return self.listed_log_group(cluster).await,
        };
        match self.log_group_tags(arn).await? {
            Some(found) => Ok(ours(&found, cluster).then_some((name, found))),
            None => Ok(None),
        }
    }

    /// [`Self::own_log_group`] found by a listing (DescribeLogGroups), as the verification reads
    /// it.
    pub(crate) async fn listed_log_group(
        &self,
        cluster: &ClusterName,
    ) -> Result<Option<(String, BTreeMap<String, String>)>> {
        let name = names::log_group(cluster);
        let out = self
            .logs
            .describe_log_groups()
            .log_group_name_prefix(&name)
            .send()
            .await
            .map_err(|e| self.map("logs:DescribeLogGroups", e))?;
        let Some(group) = out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name.as_str()))
        else {
            return Ok(None);
        };
        let arn = group
            .log_group_arn()
            .map(str::to_string)
            .or_else(|| group.arn().map(|a| a.trim_end_matches(":*").to_string()))
            .unwrap_or_default();
        let found = self.log_group_tags(arn).await?.unwrap_or_default();
        Ok(ours(&found, cluster).then_some((name, found)))
    }

    /// The tags of the log group `arn`; `None` when it does not exist.
    async fn log_group_tags(&self, arn: String) -> Result<Option<BTreeMap<String, String>>> {
        match self
            .logs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
        {
            Ok(found) => Ok(Some(
                found
                    .tags()
                    .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            )),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(self.map("logs:ListTagsForResource", e)),
        }
    }

    /// The partition and account of an ECS ARN this process saw (an ECS cluster's or a task's).
    fn known_account(&self) -> Option<(String, String)> {
        let seen = self.seen();
        let arns = seen
            .ecs_clusters
            .values()
            .map(|c| c.arn.as_str())
            .chain(seen.stopped.keys().map(String::as_str));
        for arn in arns {
            let parts: Vec<&str> = arn.splitn(6, ':').collect();
            if parts.len() == 6 && parts[0] == "arn" && !parts[1].is_empty() && !parts[4].is_empty()
            {
                return Some((parts[1].to_string(), parts[4].to_string()));
            }
        }
        None
    }

    /// Delete the cluster's own ECS cluster once its tasks are gone (tasks drain for a while
    /// after StopTask), if clusterctl made it: its tags as this process found them when it
    /// listed the cluster's tasks in it (else read now). Returns whether it was deleted.
    pub(crate) async fn delete_ecs_cluster(&self, cluster: &ClusterName) -> Result<bool> {
        let name = names::ecs_cluster(cluster);
        match self.active_ecs_cluster(&name).await? {
            Some(c) if ours(&c.tags, cluster) => {}
            _ => return Ok(false),
        }
        let started = std::time::Instant::now();
        let mut delay = std::time::Duration::from_secs(2);
        loop {
            match self.ecs.delete_cluster().cluster(&name).send().await {
                Ok(_) => break,
                Err(e) if code(&e) == Some("ClusterNotFoundException") => break,
                Err(e)
                    if matches!(
                        code(&e),
                        Some("ClusterContainsTasksException" | "UpdateInProgressException")
                    ) && started.elapsed() < CLUSTER_DELETE_TIMEOUT =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(15));
                }
                Err(e) => return Err(self.map("ecs:DeleteCluster", e)),
            }
        }
        self.seen().ecs_clusters.remove(&name);
        Ok(true)
    }

    /// Whether the cluster's own ECS cluster is still active.
    pub(crate) async fn ecs_cluster_left(&self, cluster: &ClusterName) -> Result<Option<String>> {
        let name = names::ecs_cluster(cluster);
        Ok(match self.describe_ecs_cluster(&name).await? {
            Some((status, found)) if status == "ACTIVE" && ours(&found, cluster) => Some(name),
            _ => None,
        })
    }
}

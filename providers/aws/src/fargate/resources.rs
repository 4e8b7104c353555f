//! The supporting resources of a Fargate cluster besides its tasks and security group: the ECS
//! cluster, the task execution and task roles, the CloudWatch log group and the SSM parameters
//! that hold the TLS private keys. Each is created tagged, found by name and tags, and deleted
//! only when its tags say clusterctl made it for this cluster.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::ClusterField;
use aws_sdk_ssm::types::ParameterType;
use clusterctl_core::{Error, Result, container::SecretFile, model::ClusterName, tags};
use serde_json::json;

use super::{FargateProvider, names};
use crate::errors::code;

/// The AWS-managed policy that lets ECS pull images and write logs for a task.
const EXECUTION_POLICY: &str = "policy/service-role/AmazonECSTaskExecutionRolePolicy";
/// The inline policy of a created execution role that lets it read the cluster's secrets.
pub const SECRETS_POLICY: &str = "clusterctl-secrets";
/// Tag on a created log group that `down` keeps (`--keep-logs`).
pub const KEEP_LOGS_TAG: &str = "clusterctl-keep-logs";
/// How long `cleanup` retries deleting the ECS cluster while its tasks drain.
const CLUSTER_DELETE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

fn ours(found: &BTreeMap<String, String>, cluster: &ClusterName) -> bool {
    found.get(tags::MANAGED).map(String::as_str) == Some(tags::MANAGED_VALUE)
        && found.get(tags::CLUSTER).map(String::as_str) == Some(cluster.as_str())
}

fn role_tags(role: Option<&aws_sdk_iam::types::Role>) -> BTreeMap<String, String> {
    role.map(|r| {
        r.tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect()
    })
    .unwrap_or_default()
}

fn trust_policy() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
            "Action": "sts:AssumeRole"
        }]
    })
    .to_string()
}

impl FargateProvider {
    /// Whether the ECS cluster `name` exists and is active.
    pub(crate) async fn ecs_cluster_active(&self, name: &str) -> Result<bool> {
        Ok(self
            .describe_ecs_cluster(name)
            .await?
            .is_some_and(|(status, _)| status == "ACTIVE"))
    }

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
        Ok(out.clusters().first().map(|c| {
            (
                c.status().unwrap_or_default().to_string(),
                c.tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                    .collect(),
            )
        }))
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

    /// Store the secret files as SecureString parameters `/clusterctl/NAME/<file>` (task
    /// definitions refer to them by ARN, see `FargateProvider::secret_arns`).
    pub(crate) async fn put_secrets(
        &self,
        cluster: &ClusterName,
        secrets: &BTreeMap<String, SecretFile>,
        cluster_tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        for file in secrets.values() {
            let name = names::secret(cluster, &file.file_name);
            let mut req = self
                .ssm
                .put_parameter()
                .name(&name)
                .value(&file.contents)
                .r#type(ParameterType::SecureString)
                .description(format!("clusterctl cluster {cluster}: TLS key"));
            for (k, v) in cluster_tags {
                req = req.tags(
                    aws_sdk_ssm::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                        .map_err(|e| Error::Runtime {
                            message: format!("building an SSM tag failed: {e}"),
                            hint: None,
                        })?,
                );
            }
            match req.send().await {
                Ok(_) => {}
                // A repeated bootstrap of the same `up`: same name, same cluster; tags stay.
                Err(e) if code(&e) == Some("ParameterAlreadyExists") => {
                    self.ssm
                        .put_parameter()
                        .name(&name)
                        .value(&file.contents)
                        .r#type(ParameterType::SecureString)
                        .overwrite(true)
                        .send()
                        .await
                        .map_err(|e| self.map("ssm:PutParameter", e))?;
                }
                Err(e) => return Err(self.map("ssm:PutParameter", e)),
            }
        }
        Ok(())
    }

    /// The names of the cluster's secret parameters.
    pub(crate) async fn secret_names(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        let mut pages = self
            .ssm
            .get_parameters_by_path()
            .path(names::secrets_path(cluster).trim_end_matches('/'))
            .recursive(true)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map("ssm:GetParametersByPath", e))?;
            // The path is a hierarchy on AWS; keep only this cluster's names in any case.
            found.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name())
                    .filter(|n| n.starts_with(&names::secrets_path(cluster)))
                    .map(str::to_string),
            );
        }
        Ok(found)
    }

    /// Create (or reuse) a role for ECS tasks, tagged for the cluster, with these managed
    /// policies and inline policies. Returns its ARN.
    pub(crate) async fn ensure_role(
        &self,
        name: &str,
        cluster: &ClusterName,
        cluster_tags: &BTreeMap<String, String>,
        managed: &[String],
        inline: &[(&str, String)],
    ) -> Result<String> {
        let mut req = self
            .iam
            .create_role()
            .role_name(name)
            .path(names::ROLE_PATH)
            .assume_role_policy_document(trust_policy())
            .description(format!("clusterctl cluster {cluster}: Fargate tasks"));
        for (k, v) in cluster_tags {
            req = req.tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| Error::Runtime {
                        message: format!("building an IAM tag failed: {e}"),
                        hint: None,
                    })?,
            );
        }
        let arn = match req.send().await {
            Ok(out) => out.role().map(|r| r.arn().to_string()),
            Err(e) if code(&e) == Some("EntityAlreadyExists") => {
                let role = self
                    .iam
                    .get_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| self.map("iam:GetRole", e))?;
                let role = role.role();
                let found = role_tags(role);
                if !ours(&found, cluster) {
                    return Err(Error::invalid(
                        "--name",
                        cluster.as_str(),
                        format!("the IAM role {name} exists and was not made by clusterctl for this cluster"),
                        Some("choose another --name, or pass the roles with --execution-role-arn/--task-role-arn".into()),
                    ));
                }
                role.map(|r| r.arn().to_string())
            }
            Err(e) => return Err(self.map("iam:CreateRole", e)),
        }
        .ok_or_else(|| Error::Provider {
            provider: clusterctl_core::ProviderKind::Fargate,
            operation: "iam:CreateRole".into(),
            message: "no role in the response".into(),
        })?;
        for policy in managed {
            self.iam
                .attach_role_policy()
                .role_name(name)
                .policy_arn(policy)
                .send()
                .await
                .map_err(|e| self.map("iam:AttachRolePolicy", e))?;
        }
        for (policy_name, document) in inline {
            self.iam
                .put_role_policy()
                .role_name(name)
                .policy_name(*policy_name)
                .policy_document(document)
                .send()
                .await
                .map_err(|e| self.map("iam:PutRolePolicy", e))?;
        }
        Ok(arn)
    }

    /// The execution role's policies: the managed execution policy, and reading the cluster's
    /// secret parameters.
    pub(crate) async fn execution_policies(
        &self,
        cluster: &ClusterName,
    ) -> Result<(Vec<String>, Vec<(&'static str, String)>)> {
        let id = self.identity().await?;
        let managed = vec![format!("arn:{}:iam::aws:{EXECUTION_POLICY}", id.partition)];
        let secrets = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "ssm:GetParameters",
                "Resource": format!(
                    "arn:{}:ssm:{}:{}:parameter{}*",
                    id.partition,
                    self.region,
                    id.account,
                    names::secrets_path(cluster)
                )
            }]
        })
        .to_string();
        Ok((managed, vec![(SECRETS_POLICY, secrets)]))
    }

    /// Delete a role clusterctl made for `cluster` (its tags say so); any other role is left
    /// alone. Returns whether it is gone.
    pub(crate) async fn delete_role(&self, name: &str, cluster: &ClusterName) -> Result<()> {
        let role = match self.iam.get_role().role_name(name).send().await {
            Ok(r) => r,
            Err(e) if code(&e) == Some("NoSuchEntity") => return Ok(()),
            Err(e) => return Err(self.map("iam:GetRole", e)),
        };
        let found = role_tags(role.role());
        if !ours(&found, cluster) {
            return Ok(());
        }
        let attached = self
            .iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| self.map("iam:ListAttachedRolePolicies", e))?;
        for p in attached.attached_policies() {
            if let Some(arn) = p.policy_arn() {
                self.iam
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| self.map("iam:DetachRolePolicy", e))?;
            }
        }
        let inline = self
            .iam
            .list_role_policies()
            .role_name(name)
            .send()
            .await
            .map_err(|e| self.map("iam:ListRolePolicies", e))?;
        for p in inline.policy_names() {
            self.iam
                .delete_role_policy()
                .role_name(name)
                .policy_name(p)
                .send()
                .await
                .map_err(|e| self.map("iam:DeleteRolePolicy", e))?;
        }
        match self.iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("NoSuchEntity") => Ok(()),
            Err(e) => Err(self.map("iam:DeleteRole", e)),
        }
    }

    /// Roles clusterctl made for `cluster` that still exist.
    pub(crate) async fn roles_left(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        let mut left = Vec::new();
        for name in names::roles(cluster) {
            match self.iam.get_role().role_name(&name).send().await {
                Ok(r) => {
                    let found = role_tags(r.role());
                    if ours(&found, cluster) {
                        left.push(name);
                    }
                }
                Err(e) if code(&e) == Some("NoSuchEntity") => {}
                Err(e) => return Err(self.map("iam:GetRole", e)),
            }
        }
        Ok(left)
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

    /// The cluster's own log group with its tags, if it exists and clusterctl made it.
    pub(crate) async fn own_log_group(
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
        let found = self
            .logs
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| self.map("logs:ListTagsForResource", e))?;
        let found: BTreeMap<String, String> = found
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(ours(&found, cluster).then_some((name, found)))
    }

    /// Delete the cluster's own ECS cluster once its tasks are gone (tasks drain for a while
    /// after StopTask), if clusterctl made it.
    pub(crate) async fn delete_ecs_cluster(&self, cluster: &ClusterName) -> Result<()> {
        let name = names::ecs_cluster(cluster);
        let started = std::time::Instant::now();
        let mut delay = std::time::Duration::from_secs(2);
        loop {
            match self.describe_ecs_cluster(&name).await? {
                Some((status, found)) if status == "ACTIVE" && ours(&found, cluster) => {}
                _ => return Ok(()),
            }
            match self.ecs.delete_cluster().cluster(&name).send().await {
                Ok(_) => return Ok(()),
                Err(e) if code(&e) == Some("ClusterNotFoundException") => return Ok(()),
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

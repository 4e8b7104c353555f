//! ECS tasks as cluster nodes: the task definitions of scheduler and workers, RunTask in
//! batches with the spot fallback, the task state table, and the tag-filtered listing.

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility,
    ContainerDefinition, CpuArchitecture, DesiredStatus, KeyValuePair, LaunchType,
    LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, OsFamily, PortMapping,
    RuntimePlatform, Secret, Tag, Task, TaskDefinition, TaskField, TransportProtocol,
};
use clusterctl_core::{
    Error, Result, bootstrap,
    container::ContainerBoot,
    model::{ClusterName, Node, NodeState, ProviderKind, Role},
    tags,
};

use super::{FargateProvider, names, options::TaskSize};

/// Most tasks one RunTask call starts.
pub const RUN_TASK_MAX: u32 = 10;
/// Most tasks one DescribeTasks call describes.
const DESCRIBE_MAX: usize = 100;
/// The container's name in every task definition (and in awslogs stream names).
pub const CONTAINER: &str = "dask";
/// What RunTask's `startedBy` says, so listings can skip other tasks of a shared ECS cluster.
pub const STARTED_BY: &str = "clusterctl";

/// A task as clusterctl needs it besides the [`Node`]: where its logs are and why it stopped.
#[derive(Debug, Clone)]
pub(crate) struct TaskInfo {
    pub node: Node,
    pub cluster_arn: String,
    pub task_definition_arn: Option<String>,
    pub eni: Option<String>,
    pub stopped_reason: Option<String>,
}

/// ECS task `lastStatus` (and `desiredStatus`) → node state.
pub fn map_state(last: &str, desired: &str) -> NodeState {
    match last {
        "STOPPED" | "DELETED" => NodeState::Terminated,
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" => NodeState::Stopping,
        "RUNNING" if desired == "STOPPED" => NodeState::Stopping,
        "RUNNING" => NodeState::Running,
        "PROVISIONING" | "PENDING" | "ACTIVATING" => {
            if desired == "STOPPED" {
                NodeState::Stopping
            } else {
                NodeState::Pending
            }
        }
        other => NodeState::Failed(format!("unknown task status {other}")),
    }
}

/// The task id: the last segment of its ARN.
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn detail<'a>(task: &'a Task, name: &str) -> Option<&'a str> {
    task.attachments()
        .iter()
        .filter(|a| a.r#type() == Some("ElasticNetworkInterface"))
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some(name))
        .and_then(|d| d.value())
}

pub(crate) fn info_of(task: &Task) -> Option<TaskInfo> {
    let tags: BTreeMap<String, String> = task
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    if tags.get(tags::MANAGED).map(String::as_str) != Some(tags::MANAGED_VALUE) {
        return None;
    }
    let role: Role = tags.get(tags::ROLE)?.parse().ok()?;
    let arn = task.task_arn()?.to_string();
    let state = map_state(
        task.last_status().unwrap_or("PROVISIONING"),
        task.desired_status().unwrap_or("RUNNING"),
    );
    let node = Node {
        name: if role == Role::Scheduler {
            "scheduler".into()
        } else {
            task_id(&arn).to_string()
        },
        id: arn,
        role,
        state,
        private_ip: detail(task, "privateIPv4Address").map(str::to_string),
        public_ip: None,
        created_at: task.created_at().map(|t| t.secs().max(0) as u64),
        tags,
    };
    Some(TaskInfo {
        node,
        cluster_arn: task.cluster_arn().unwrap_or_default().to_string(),
        task_definition_arn: task.task_definition_arn().map(str::to_string),
        eni: detail(task, "networkInterfaceId").map(str::to_string),
        stopped_reason: task
            .stopped_reason()
            .filter(|r| !r.is_empty() && task.last_status() == Some("STOPPED"))
            .map(str::to_string),
    })
}

fn built<T>(
    r: std::result::Result<T, aws_smithy_types::error::operation::BuildError>,
) -> Result<T> {
    r.map_err(|e| Error::Runtime {
        message: format!("building an ECS request failed: {e}"),
        hint: None,
    })
}

/// Everything one task definition is made of.
pub(crate) struct TaskDefinitionInput<'a> {
    pub family: String,
    pub role: Role,
    pub size: TaskSize,
    pub architecture: &'a str,
    pub image: &'a str,
    pub boot: &'a ContainerBoot,
    /// Secret variable → SSM parameter ARN.
    pub secret_arns: BTreeMap<String, String>,
    pub execution_role_arn: &'a str,
    pub task_role_arn: Option<&'a str>,
    pub log_group: &'a str,
    pub tags: BTreeMap<String, String>,
}

impl TaskDefinitionInput<'_> {
    fn container(&self, region: &str) -> Result<ContainerDefinition> {
        let mut c = ContainerDefinition::builder()
            .name(CONTAINER)
            .image(self.image)
            .essential(true)
            // Fargate sizes the task; a container reservation equal to it changes nothing there
            // and is what moto needs to schedule the task.
            .memory_reservation(self.size.memory as i32)
            .stop_timeout(30)
            .set_command(Some(self.boot.command.clone()))
            .set_environment(Some(
                self.boot
                    .env
                    .iter()
                    .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                    .collect(),
            ))
            .log_configuration(built(
                LogConfiguration::builder()
                    .log_driver(LogDriver::Awslogs)
                    .options("awslogs-group", self.log_group)
                    .options("awslogs-region", region)
                    .options("awslogs-stream-prefix", self.role.as_str())
                    .build(),
            )?);
        for (name, arn) in &self.secret_arns {
            c = c.secrets(built(Secret::builder().name(name).value_from(arn).build())?);
        }
        if self.role == Role::Scheduler {
            for port in [bootstrap::SCHEDULER_PORT, bootstrap::DASHBOARD_PORT] {
                c = c.port_mappings(
                    PortMapping::builder()
                        .container_port(i32::from(port))
                        .protocol(TransportProtocol::Tcp)
                        .build(),
                );
            }
        }
        Ok(c.build())
    }

    /// Whether `existing` (the family's latest revision) already says what this input says.
    fn matches(&self, existing: &TaskDefinition, region: &str) -> Result<bool> {
        let want = self.container(region)?;
        let same_container = existing.container_definitions().len() == 1
            && existing.container_definitions().first().is_some_and(|c| {
                let env = |c: &ContainerDefinition| {
                    let mut v: Vec<(String, String)> = c
                        .environment()
                        .iter()
                        .map(|kv| {
                            (
                                kv.name().unwrap_or_default().to_string(),
                                kv.value().unwrap_or_default().to_string(),
                            )
                        })
                        .collect();
                    v.sort();
                    v
                };
                let secrets = |c: &ContainerDefinition| {
                    let mut v: Vec<(String, String)> = c
                        .secrets()
                        .iter()
                        .map(|s| (s.name().to_string(), s.value_from().to_string()))
                        .collect();
                    v.sort();
                    v
                };
                c.image() == want.image()
                    && c.command() == want.command()
                    && env(c) == env(&want)
                    && secrets(c) == secrets(&want)
            });
        Ok(same_container
            && existing.cpu() == Some(self.size.cpu.to_string().as_str())
            && existing.memory() == Some(self.size.memory.to_string().as_str())
            && existing.execution_role_arn() == Some(self.execution_role_arn)
            && existing.task_role_arn() == self.task_role_arn
            && existing
                .runtime_platform()
                .and_then(|p| p.cpu_architecture())
                .map(|a| a.as_str())
                == Some(self.architecture))
    }
}

impl FargateProvider {
    /// The ARN of a task definition saying `input`: the family's latest revision when it matches,
    /// else a new revision. In an `up` (`bootstrap` ran in this process) the revision is
    /// registered without looking: the name was just claimed, so its families hold nothing this
    /// launch could reuse (`down` deletes the revisions of an earlier cluster of the name; one
    /// left by a crash is deleted by the next `down`'s verification, which reads the families).
    /// `scale` looks first, and reuses the revision `up` registered.
    pub(crate) async fn task_definition(&self, input: &TaskDefinitionInput<'_>) -> Result<String> {
        let launching = self.launching.load(std::sync::atomic::Ordering::SeqCst);
        let latest = if launching {
            None
        } else {
            Some(
                self.ecs
                    .describe_task_definition()
                    .task_definition(&input.family)
                    .send()
                    .await,
            )
        };
        match latest {
            None => {}
            Some(Ok(out)) => {
                if let Some(td) = out.task_definition()
                    && td.status().map(|s| s.as_str()) == Some("ACTIVE")
                    && input.matches(td, &self.region)?
                    && let Some(arn) = td.task_definition_arn()
                {
                    return Ok(arn.to_string());
                }
            }
            // A family that does not exist yet.
            Some(Err(e)) if crate::errors::code(&e) == Some("ClientException") => {}
            Some(Err(e)) => return Err(self.map("ecs:DescribeTaskDefinition", e)),
        }
        let req = self
            .ecs
            .register_task_definition()
            .family(&input.family)
            .network_mode(NetworkMode::Awsvpc)
            .requires_compatibilities(Compatibility::Fargate)
            .cpu(input.size.cpu.to_string())
            .memory(input.size.memory.to_string())
            .runtime_platform(
                RuntimePlatform::builder()
                    .cpu_architecture(CpuArchitecture::from(input.architecture))
                    .operating_system_family(OsFamily::Linux)
                    .build(),
            )
            .execution_role_arn(input.execution_role_arn)
            .set_task_role_arn(input.task_role_arn.map(str::to_string))
            .container_definitions(input.container(&self.region)?)
            .set_tags(Some(ecs_tags(&input.tags)));
        let out = req
            .send()
            .await
            .map_err(|e| self.map("ecs:RegisterTaskDefinition", e))?;
        out.task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(str::to_string)
            .ok_or_else(|| Error::Provider {
                provider: ProviderKind::Fargate,
                operation: "ecs:RegisterTaskDefinition".into(),
                message: "no task definition in the response".into(),
            })
    }

    /// One RunTask call of up to [`RUN_TASK_MAX`] tasks. Returns the started tasks and the
    /// reasons of those that did not start.
    pub(crate) async fn run_tasks(
        &self,
        launch: &RunInput<'_>,
        count: u32,
        spot: bool,
        token: &str,
    ) -> Result<(Vec<Node>, Vec<String>)> {
        let network = built(
            AwsVpcConfiguration::builder()
                .set_subnets(Some(launch.subnets.to_vec()))
                .security_groups(launch.group)
                .assign_public_ip(if launch.private {
                    AssignPublicIp::Disabled
                } else {
                    AssignPublicIp::Enabled
                })
                .build(),
        )?;
        let mut req = self
            .ecs
            .run_task()
            .cluster(launch.ecs_cluster)
            .task_definition(launch.task_definition)
            .count(count as i32)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(network)
                    .build(),
            )
            .set_tags(Some(ecs_tags(&launch.tags)))
            .enable_ecs_managed_tags(true)
            .started_by(STARTED_BY)
            .client_token(token);
        req = if spot {
            req.capacity_provider_strategy(built(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE_SPOT")
                    .weight(1)
                    .build(),
            )?)
        } else {
            req.launch_type(LaunchType::Fargate)
        };
        let out = self
            .with_role_propagation("ecs:RunTask", || req.clone().send())
            .await?;
        let nodes = out
            .tasks()
            .iter()
            .filter_map(info_of)
            .map(|i| i.node)
            .collect();
        let failures = out
            .failures()
            .iter()
            .map(|f| {
                let mut text = f.reason().unwrap_or("unknown reason").to_string();
                if let Some(d) = f.detail() {
                    text.push_str(&format!(" ({d})"));
                }
                text
            })
            .collect();
        Ok((nodes, failures))
    }

    /// The tasks of `cluster` (or of every clusterctl cluster with `None`) in the ECS clusters
    /// where they can be: the configured one, the cluster's own, or, when neither exists, every
    /// ECS cluster of the region (tasks in a shared cluster are found without the record too).
    pub(crate) async fn describe(&self, cluster: Option<&ClusterName>) -> Result<Vec<TaskInfo>> {
        self.describe_tasks_of(cluster, false).await
    }

    /// The tasks of `cluster` that `down` has to stop or wait for
    /// (`ClusterProvider::list_nodes_to_stop`): in the cluster's own ECS cluster, when its tags
    /// say clusterctl made it for this cluster, only the tasks desired RUNNING (one ListTasks
    /// instead of two); elsewhere all of [`Self::describe`].
    ///
    /// Why leaving out the tasks desired STOPPED leaves nothing behind: such a task needs no
    /// StopTask (ECS stops it already, and starts nothing new in its place outside a service,
    /// which clusterctl does not use). Until it has stopped, it holds the ECS cluster:
    /// `cleanup` deletes that cluster because its tags are ours, and ECS refuses DeleteCluster
    /// while the cluster has active tasks (`ClusterContainsTasksException`, retried while
    /// tasks drain, up to three minutes, else `down` fails and says what is left), so the
    /// security group (held by the task's interface) goes only after every task stopped, and
    /// the verification's DescribeClusters reads the cluster inactive. A task that stopped by
    /// itself and that neither listing showed (the first lagging, the confirming one not
    /// asking for it) is covered the same way; the revision it ran, if no other task ran it,
    /// is found by the verification's listing of the families and deleted then. With
    /// `--ecs-cluster`, or an own ECS cluster absent or not tagged ours (no DeleteCluster to
    /// wait on), both halves are listed and stopping tasks are waited for by `down` as before,
    /// and the verification lists the tasks. Tasks this process already saw STOPPED are not
    /// described again either way.
    pub(crate) async fn tasks_to_stop(&self, cluster: &ClusterName) -> Result<Vec<Node>> {
        Ok(self
            .describe_tasks_of(Some(cluster), true)
            .await?
            .into_iter()
            .map(|t| t.node)
            .collect())
    }

    /// [`Self::describe`], or with `to_stop` [`Self::tasks_to_stop`].
    async fn describe_tasks_of(
        &self,
        cluster: Option<&ClusterName>,
        to_stop: bool,
    ) -> Result<Vec<TaskInfo>> {
        let mut found = Vec::new();
        for ecs_cluster in self.search_clusters(cluster).await? {
            let running_only =
                to_stop && cluster.is_some_and(|c| self.own_and_ours(c, &ecs_cluster));
            let halves: &[DesiredStatus] = if running_only {
                &[DesiredStatus::Running]
            } else {
                &[DesiredStatus::Running, DesiredStatus::Stopped]
            };
            let mut arns = Vec::new();
            for status in halves.iter().cloned() {
                let mut pages = self
                    .ecs
                    .list_tasks()
                    .cluster(&ecs_cluster)
                    .started_by(STARTED_BY)
                    .desired_status(status)
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    match page {
                        Ok(p) => arns.extend(p.task_arns().iter().cloned()),
                        // Deleted between the listing of clusters and this call.
                        Err(e) if crate::errors::code(&e) == Some("ClusterNotFoundException") => {
                            break;
                        }
                        Err(e) => return Err(self.map("ecs:ListTasks", e)),
                    }
                }
            }
            arns.sort();
            arns.dedup();
            // Tasks this process saw STOPPED stay so, and a task's tags do not change: each is
            // described once when STOPPED or of another cluster (a shared ECS cluster's other
            // tasks, listed again by each listing of `down`).
            let unknown: Vec<String> = {
                let seen = self.seen();
                found.extend(
                    arns.iter()
                        .filter_map(|a| seen.stopped.get(a))
                        .filter(|i| of_cluster(i, cluster))
                        .cloned(),
                );
                arns.into_iter()
                    .filter(|a| !seen.stopped.contains_key(a))
                    .filter(|a| match seen.owners.get(a) {
                        None => true,
                        Some(owner) => {
                            owner.is_some()
                                && cluster.is_none_or(|c| owner.as_deref() == Some(c.as_str()))
                        }
                    })
                    .collect()
            };
            found.extend(
                self.describe_tasks(&ecs_cluster, &unknown)
                    .await?
                    .into_iter()
                    .filter(|i| of_cluster(i, cluster)),
            );
        }
        found.sort_by(|a, b| {
            (a.node.role, &a.node.created_at, &a.node.id).cmp(&(
                b.node.role,
                &b.node.created_at,
                &b.node.id,
            ))
        });
        // One task can be listed under several clusters when every cluster is searched (moto's
        // ListTasks also matches cluster names as substrings).
        found.dedup_by(|a, b| a.node.id == b.node.id);
        Ok(found)
    }

    /// DescribeTasks of `arns` in `ecs_cluster`, [`DESCRIBE_MAX`] per call, with their tags;
    /// tasks found STOPPED are remembered, and which cluster each task is of. Tasks ECS does
    /// not show (yet) are left out.
    async fn describe_tasks(&self, ecs_cluster: &str, arns: &[String]) -> Result<Vec<TaskInfo>> {
        let mut found = Vec::new();
        for chunk in arns.chunks(DESCRIBE_MAX) {
            let out = self
                .ecs
                .describe_tasks()
                .cluster(ecs_cluster)
                .set_tasks(Some(chunk.to_vec()))
                .include(TaskField::Tags)
                .send()
                .await
                .map_err(|e| self.map("ecs:DescribeTasks", e))?;
            let mut seen = self.seen();
            for t in out.tasks() {
                if let Some(arn) = t.task_arn() {
                    seen.owners.insert(arn.to_string(), owner_of(t));
                }
            }
            drop(seen);
            found.extend(out.tasks().iter().filter_map(info_of));
        }
        let mut seen = self.seen();
        for i in &found {
            if i.node.state == NodeState::Terminated {
                seen.stopped.insert(i.node.id.clone(), i.clone());
            }
        }
        Ok(found)
    }

    /// The current state of the tasks `nodes` of `cluster`, by DescribeTasks on their ARNs (one
    /// call per 100 per ECS cluster; none for tasks already seen STOPPED).
    pub(crate) async fn task_states(
        &self,
        cluster: &ClusterName,
        nodes: &[Node],
    ) -> Result<Vec<Node>> {
        let own = self.ecs_cluster_name(cluster);
        let mut out = Vec::new();
        let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        {
            let seen = self.seen();
            for n in nodes {
                match seen.stopped.get(&n.id) {
                    Some(i) => out.push(i.node.clone()),
                    None => by_cluster
                        .entry(super::cluster_of(&n.id).unwrap_or(&own).to_string())
                        .or_default()
                        .push(n.id.clone()),
                }
            }
        }
        for (ecs_cluster, arns) in by_cluster {
            out.extend(
                self.describe_tasks(&ecs_cluster, &arns)
                    .await?
                    .into_iter()
                    .filter(|i| of_cluster(i, Some(cluster)))
                    .map(|i| i.node),
            );
        }
        Ok(out)
    }

    /// Remember that StopTask answered `task` as STOPPED (the node as it was known, now
    /// terminated).
    pub(crate) fn stopped(&self, node: &Node, task: &Task) {
        if task.last_status() != Some("STOPPED") {
            return;
        }
        let info = TaskInfo {
            node: Node {
                state: NodeState::Terminated,
                ..node.clone()
            },
            cluster_arn: task.cluster_arn().unwrap_or_default().to_string(),
            task_definition_arn: task.task_definition_arn().map(str::to_string),
            eni: detail(task, "networkInterfaceId").map(str::to_string),
            stopped_reason: task.stopped_reason().map(str::to_string),
        };
        self.seen().stopped.insert(node.id.clone(), info);
    }

    /// Whether `ecs_cluster` is `cluster`'s own ECS cluster (no `--ecs-cluster`), found active
    /// with tags saying clusterctl made it for `cluster`: the one `cleanup` deletes.
    fn own_and_ours(&self, cluster: &ClusterName, ecs_cluster: &str) -> bool {
        let own = names::ecs_cluster(cluster);
        self.options.ecs_cluster.is_none()
            && ecs_cluster == own
            && self
                .seen()
                .ecs_clusters
                .get(&own)
                .is_some_and(|c| crate::access::ours(&c.tags, cluster))
    }

    async fn search_clusters(&self, cluster: Option<&ClusterName>) -> Result<Vec<String>> {
        if let Some(c) = &self.options.ecs_cluster {
            return Ok(vec![c.clone()]);
        }
        if let Some(c) = cluster {
            let own = names::ecs_cluster(c);
            if self.active_ecs_cluster(&own).await?.is_some() {
                return Ok(vec![own]);
            }
        }
        let mut all = Vec::new();
        let mut pages = self.ecs.list_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.map("ecs:ListClusters", e))?;
            all.extend(page.cluster_arns().iter().cloned());
        }
        Ok(all)
    }
}

/// The clusterctl cluster a task's tags name (`None`: not a clusterctl task).
fn owner_of(task: &Task) -> Option<String> {
    let tag = |key: &str| {
        task.tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    (tag(tags::MANAGED) == Some(tags::MANAGED_VALUE))
        .then(|| tag(tags::CLUSTER).map(str::to_string))
        .flatten()
}

/// Whether `info` is a task of `cluster` (any clusterctl cluster with `None`).
fn of_cluster(info: &TaskInfo, cluster: Option<&ClusterName>) -> bool {
    cluster
        .is_none_or(|c| info.node.tags.get(tags::CLUSTER).map(String::as_str) == Some(c.as_str()))
}

/// What every RunTask of one role shares.
pub(crate) struct RunInput<'a> {
    pub ecs_cluster: &'a str,
    pub task_definition: &'a str,
    pub subnets: &'a [String],
    pub group: &'a str,
    pub private: bool,
    pub tags: BTreeMap<String, String>,
}

pub(crate) fn ecs_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// Whether a RunTask failure reason means "no capacity here now" (worth the on-demand
/// fallback), as opposed to a limit of the account.
pub fn is_capacity_failure(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("capacity") && !r.contains("limit")
}

/// Whether a RunTask failure reason is an account limit (the Fargate On-Demand or Spot vCPU
/// quota, the concurrent task limit).
pub fn is_quota_failure(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("limit") || r.contains("quota")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_status_has_a_state() {
        let cases = [
            ("PROVISIONING", "RUNNING", NodeState::Pending),
            ("PENDING", "RUNNING", NodeState::Pending),
            ("ACTIVATING", "RUNNING", NodeState::Pending),
            ("RUNNING", "RUNNING", NodeState::Running),
            ("RUNNING", "STOPPED", NodeState::Stopping),
            ("PENDING", "STOPPED", NodeState::Stopping),
            ("DEACTIVATING", "STOPPED", NodeState::Stopping),
            ("STOPPING", "STOPPED", NodeState::Stopping),
            ("DEPROVISIONING", "STOPPED", NodeState::Stopping),
            ("STOPPED", "STOPPED", NodeState::Terminated),
            // moto leaves desiredStatus at RUNNING for tasks that stopped by themselves.
            ("STOPPED", "RUNNING", NodeState::Terminated),
            ("DELETED", "STOPPED", NodeState::Terminated),
        ];
        for (last, desired, want) in cases {
            assert_eq!(map_state(last, desired), want, "{last}/{desired}");
        }
        assert!(matches!(map_state("NEW", "RUNNING"), NodeState::Failed(_)));
    }

    #[test]
    fn failure_reasons_are_classified() {
        assert!(is_capacity_failure(
            "Capacity is unavailable at this time. Please try again later or in a different availability zone"
        ));
        assert!(!is_quota_failure("Capacity is unavailable at this time."));
        assert!(is_quota_failure(
            "You've reached the limit on the number of vCPUs you can run concurrently"
        ));
        assert!(!is_capacity_failure(
            "You've reached the limit on the number of vCPUs you can run concurrently"
        ));
        assert!(!is_capacity_failure("MISSING"));
    }

    #[test]
    fn task_ids_come_from_arns() {
        assert_eq!(
            task_id("arn:aws:ecs:us-east-1:123456789012:task/clusterctl-a/0123abcd"),
            "0123abcd"
        );
    }
}

//! The `fargate` provider: a Dask cluster as AWS Fargate tasks on ECS.
//!
//! Each node is one task running the pinned Dask image with the container form of the boot
//! intent (`clusterctl_core::container`): TLS private keys come from SSM SecureString
//! parameters through the task execution role, never from the task definition. Per cluster:
//! an ECS cluster (or `--ecs-cluster`), an execution role (or `--execution-role-arn`), an
//! optional task role, a log group, the security group of the EC2 provider, and one task
//! definition per role. Everything is tagged with the cluster tags and found by them; `down`
//! deletes only what those tags say clusterctl made for the cluster.
//!
//! The TTL holds without clusterctl: the scheduler's preload closes it at the expiry, the
//! entry script's `timeout` stops the container a minute later in any case, workers exit at
//! their death timeout, and a task whose essential container exited stops (and stops billing).

mod logs;
#[cfg(test)]
mod mocks;
/// Names of the per-cluster resources.
pub mod names;
mod options;
mod plan;
mod resources;
mod tasks;
mod teardown;

use std::{collections::BTreeMap, future::Future, time::Duration};

use async_trait::async_trait;
use aws_sdk_ecs::error::SdkError;
use clusterctl_core::{
    Error, Result,
    bootstrap::{self, BootLayout, scheduler_intent, worker_intent},
    container::{ContainerBoot, render_container},
    model::{
        ClusterName, ClusterSpec, ClusterSummary, Endpoints, Node, ProviderKind, Role,
        summarize_with_claims,
    },
    provider::{ClusterProvider, LaunchContext, NodeLog, Plan, SchedulerLaunch, WorkerBatch},
    tags,
};
use futures_util::{StreamExt, stream};
pub use options::{FargateOptions, TaskSize, task_size};
use tasks::{RUN_TASK_MAX, RunInput, TaskDefinitionInput, task_id};
use tokio::sync::OnceCell;

use crate::{Identity, access, api_log, errors, network, network::Network};

/// Where the node's files go inside the container.
const FILES_ROOT: &str = "/tmp/clusterctl";
/// RunTask calls in flight at once when starting many workers.
const LAUNCH_CONCURRENCY: usize = 5;
/// How long RunTask is retried while a just-created role is not yet assumable by ECS (IAM is
/// eventually consistent).
const ROLE_PROPAGATION: Duration = Duration::from_secs(60);

/// The Fargate provider.
#[derive(Debug)]
pub struct FargateProvider {
    ec2: aws_sdk_ec2::Client,
    ecs: aws_sdk_ecs::Client,
    iam: aws_sdk_iam::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    ssm: aws_sdk_ssm::Client,
    sts: aws_sdk_sts::Client,
    region: String,
    options: FargateOptions,
    identity: OnceCell<Identity>,
    network: OnceCell<Network>,
    /// The cluster's security group, once this process created or claimed it.
    group: OnceCell<String>,
    /// `bootstrap` ran in this process (an `up`): see [`FargateProvider::task_definition`].
    launching: std::sync::atomic::AtomicBool,
    /// What this process has seen of ECS, so that `down` does not ask twice.
    seen: std::sync::Mutex<Seen>,
}

/// ECS answers a process keeps: the ECS clusters it found active (ARN and tags, until it
/// deletes them: a cluster's name is derived from the clusterctl cluster's, so it need not be
/// rediscovered on every poll), the tasks it found STOPPED (a final state), and the cluster
/// each described task is of.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    ecs_clusters: BTreeMap<String, EcsCluster>,
    stopped: BTreeMap<String, tasks::TaskInfo>,
    /// Tasks described, by the clusterctl cluster their tags name (`None`: not clusterctl's):
    /// tags set by RunTask do not change, so a task of another cluster is not described again.
    owners: BTreeMap<String, Option<String>>,
}

/// An active ECS cluster as DescribeClusters told it.
#[derive(Debug, Clone)]
pub(crate) struct EcsCluster {
    arn: String,
    tags: BTreeMap<String, String>,
}

/// The clients of [`FargateProvider::from_clients`].
#[derive(Debug)]
pub struct FargateClients {
    pub ec2: aws_sdk_ec2::Client,
    pub ecs: aws_sdk_ecs::Client,
    pub iam: aws_sdk_iam::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub sts: aws_sdk_sts::Client,
}

impl FargateProvider {
    /// Build from the standard AWS configuration chain, honouring `AWS_ENDPOINT_URL`.
    pub async fn from_env(options: FargateOptions) -> Result<Self> {
        let (config, region) = crate::load_config(options.region.as_deref()).await?;
        let log = api_log::ApiLog::from_env();
        macro_rules! client {
            ($krate:ident) => {{
                let b = $krate::config::Builder::from(&config).interceptor(log.clone());
                $krate::Client::from_conf(b.build())
            }};
        }
        let clients = FargateClients {
            ec2: client!(aws_sdk_ec2),
            ecs: client!(aws_sdk_ecs),
            iam: client!(aws_sdk_iam),
            logs: client!(aws_sdk_cloudwatchlogs),
            ssm: client!(aws_sdk_ssm),
            sts: client!(aws_sdk_sts),
        };
        Ok(Self::from_clients(clients, region, options))
    }

    /// Build from ready clients (tests use mocked ones).
    pub fn from_clients(c: FargateClients, region: String, options: FargateOptions) -> Self {
        FargateProvider {
            ec2: c.ec2,
            ecs: c.ecs,
            iam: c.iam,
            logs: c.logs,
            ssm: c.ssm,
            sts: c.sts,
            region,
            options,
            identity: OnceCell::new(),
            network: OnceCell::new(),
            group: OnceCell::new(),
            launching: Default::default(),
            seen: std::sync::Mutex::default(),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn map<E, R>(&self, operation: &str, err: SdkError<E, R>) -> Error
    where
        E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        errors::with_identity(
            errors::map_for(ProviderKind::Fargate, operation, &self.region, err),
            self.identity.get().map(|i| i.shown.as_str()),
        )
    }

    /// The IAM and SSM calls shared with the EC2 provider, with this provider's error mapping.
    pub(crate) fn access(&self) -> crate::access::Access<'_> {
        crate::access::Access {
            iam: &self.iam,
            ssm: &self.ssm,
            kind: ProviderKind::Fargate,
            region: &self.region,
            identity: self.identity.get().map(|i| i.shown.as_str()),
        }
    }

    pub(crate) async fn identity(&self) -> Result<&Identity> {
        self.identity
            .get_or_try_init(|| crate::identity(&self.sts, &self.region))
            .await
            .map_err(|e| match e {
                Error::PermissionDenied {
                    action, message, ..
                } => Error::PermissionDenied {
                    provider: ProviderKind::Fargate,
                    action,
                    message,
                },
                other => other,
            })
    }

    async fn network(&self) -> Result<&Network> {
        self.network
            .get_or_try_init(|| {
                network::resolve(
                    &self.ec2,
                    &self.region,
                    self.options.vpc.as_deref(),
                    &self.options.subnets,
                    self.options.allow_cidrs.is_empty(),
                )
            })
            .await
    }

    fn layout() -> BootLayout {
        BootLayout {
            dask: vec!["dask".into()],
            files_root: FILES_ROOT.into(),
            bind_host: "0.0.0.0".into(),
            scheduler_port: bootstrap::SCHEDULER_PORT,
            dashboard_port: bootstrap::DASHBOARD_PORT,
            nanny: true,
        }
    }

    fn boot(ctx: &LaunchContext<'_>, role: Role, scheduler_address: &str) -> Result<ContainerBoot> {
        let layout = Self::layout();
        let intent = match role {
            Role::Scheduler => scheduler_intent(ctx.spec, &layout, ctx.tls),
            Role::Worker => worker_intent(ctx.spec, &layout, ctx.tls, scheduler_address, None),
        };
        render_container(&intent, FILES_ROOT)
    }

    fn sizes(spec: &ClusterSpec) -> Result<(TaskSize, TaskSize)> {
        Ok((
            task_size(
                &spec.scheduler_size,
                options::DEFAULT_SCHEDULER,
                "--scheduler-cpus/--scheduler-memory",
            )?,
            task_size(
                &spec.worker_size,
                options::DEFAULT_WORKER,
                "--worker-cpus/--worker-memory",
            )?,
        ))
    }

    fn allowed_cidrs(&self, network: &Network) -> Vec<String> {
        if self.options.allow_cidrs.is_empty() {
            vec![network.vpc_cidr.clone()]
        } else {
            self.options.allow_cidrs.clone()
        }
    }

    fn ecs_cluster_name(&self, cluster: &ClusterName) -> String {
        self.options
            .ecs_cluster
            .clone()
            .unwrap_or_else(|| names::ecs_cluster(cluster))
    }

    fn log_group_name(&self, cluster: &ClusterName) -> String {
        self.options
            .log_group
            .clone()
            .unwrap_or_else(|| names::log_group(cluster))
    }

    async fn role_arn(&self, name: &str) -> Result<String> {
        let id = self.identity().await?;
        Ok(format!(
            "arn:{}:iam::{}:role{}{name}",
            id.partition,
            id.account,
            names::ROLE_PATH
        ))
    }

    async fn execution_role_arn(&self, cluster: &ClusterName) -> Result<String> {
        match &self.options.execution_role_arn {
            Some(a) => Ok(a.clone()),
            None => self.role_arn(&names::execution_role(cluster)).await,
        }
    }

    async fn task_role_arn(&self, cluster: &ClusterName) -> Result<Option<String>> {
        match (
            &self.options.task_role_arn,
            self.options.task_role_policies.is_empty(),
        ) {
            (Some(a), _) => Ok(Some(a.clone())),
            (None, false) => Ok(Some(self.role_arn(&names::task_role(cluster)).await?)),
            (None, true) => Ok(None),
        }
    }

    async fn secret_arns(
        &self,
        cluster: &ClusterName,
        boot: &ContainerBoot,
    ) -> Result<BTreeMap<String, String>> {
        let id = self.identity().await?;
        Ok(boot
            .secret_env
            .iter()
            .map(|(var, f)| {
                (
                    var.clone(),
                    format!(
                        "arn:{}:ssm:{}:{}:parameter{}",
                        id.partition,
                        self.region,
                        id.account,
                        names::secret(cluster, &f.file_name)
                    ),
                )
            })
            .collect())
    }

    /// The task definition of `role`, registered unless its latest revision already matches.
    async fn task_definition_for(
        &self,
        ctx: &LaunchContext<'_>,
        role: Role,
        boot: &ContainerBoot,
    ) -> Result<String> {
        let spec = ctx.spec;
        let (scheduler, worker) = Self::sizes(spec)?;
        let execution = self.execution_role_arn(&spec.name).await?;
        let task_role = self.task_role_arn(&spec.name).await?;
        let input = TaskDefinitionInput {
            family: names::family(&spec.name, role),
            role,
            size: if role == Role::Scheduler {
                scheduler
            } else {
                worker
            },
            architecture: options::architecture(self.options.architecture.as_deref())?,
            image: &spec.image,
            boot,
            secret_arns: self.secret_arns(&spec.name, boot).await?,
            execution_role_arn: &execution,
            task_role_arn: task_role.as_deref(),
            log_group: &self.log_group_name(&spec.name),
            tags: tags::cluster_tags(spec),
        };
        self.task_definition(&input).await
    }

    /// Run an ECS call, retrying while ECS cannot assume a role created moments ago.
    pub(crate) async fn with_role_propagation<T, E, R, F, Fut>(
        &self,
        operation: &str,
        call: F,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = std::result::Result<T, SdkError<E, R>>>,
        E: aws_sdk_ecs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let started = std::time::Instant::now();
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(SdkError::ServiceError(e))
                    if e.err()
                        .message()
                        .is_some_and(|m| m.to_ascii_lowercase().contains("unable to assume"))
                        && started.elapsed() < ROLE_PROPAGATION =>
                {
                    let jitter = Duration::from_millis(fastrand::u64(0..1000));
                    tokio::time::sleep(Duration::from_secs(2) + jitter).await;
                }
                Err(e) => return Err(self.map(operation, e)),
            }
        }
    }

    fn token(spec: &ClusterSpec, what: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut t = format!("cc-{}-{what}-{nanos:x}", spec.name);
        t.truncate(64);
        t
    }

    fn run_input<'a>(
        &self,
        spec: &'a ClusterSpec,
        role: Role,
        task_definition: &'a str,
        ecs_cluster: &'a str,
        group: &'a str,
        subnets: &'a [String],
    ) -> RunInput<'a> {
        RunInput {
            ecs_cluster,
            task_definition,
            subnets,
            group,
            private: spec.private,
            tags: tags::node_tags(spec, role, role.as_str()),
        }
    }

    async fn group_id(&self, cluster: &ClusterName) -> Result<String> {
        if let Some(id) = self.group.get() {
            return Ok(id.clone());
        }
        network::groups(&self.ec2, &self.region, Some(cluster))
            .await?
            .into_iter()
            .next()
            .map(|g| g.id)
            .ok_or_else(|| Error::Provider {
                provider: ProviderKind::Fargate,
                operation: "launch".into(),
                message: format!("the security group of cluster `{cluster}` is missing"),
            })
    }

    /// Start `count` workers in RunTask calls of at most [`RUN_TASK_MAX`], several in flight;
    /// spot capacity errors fall back to on-demand; account limits are reported.
    async fn start_workers(
        &self,
        ctx: &LaunchContext<'_>,
        run: &RunInput<'_>,
        count: u32,
    ) -> Result<Vec<Node>> {
        let chunks: Vec<u32> = (0..count.div_ceil(RUN_TASK_MAX))
            .map(|i| RUN_TASK_MAX.min(count - i * RUN_TASK_MAX))
            .collect();
        let spot = self.options.spot;
        let results: Vec<Result<(Vec<Node>, Vec<String>)>> =
            stream::iter(chunks.into_iter().enumerate())
                .map(|(i, n)| async move {
                    let token =
                        Self::token(ctx.spec, &format!("w{i}{}", if spot { "s" } else { "" }));
                    let (mut nodes, failures) = self.run_tasks(run, n, spot, &token).await?;
                    if !spot || failures.is_empty() {
                        return Ok((nodes, failures));
                    }
                    let (capacity, other): (Vec<String>, Vec<String>) = failures
                        .into_iter()
                        .partition(|f| tasks::is_capacity_failure(f));
                    if !capacity.is_empty() {
                        ctx.progress.note(&format!(
                    "no Fargate Spot capacity for {} worker(s) ({}); starting them on demand",
                    capacity.len(),
                    capacity[0]
                ));
                        let token = Self::token(ctx.spec, &format!("w{i}o"));
                        let (more, failed) = self
                            .run_tasks(run, capacity.len() as u32, false, &token)
                            .await?;
                        nodes.extend(more);
                        return Ok((nodes, other.into_iter().chain(failed).collect()));
                    }
                    Ok((nodes, other))
                })
                .buffer_unordered(LAUNCH_CONCURRENCY)
                .collect()
                .await;
        let mut started = Vec::new();
        let mut failures = Vec::new();
        let mut first_error = None;
        for r in results {
            match r {
                Ok((n, f)) => {
                    started.extend(n);
                    failures.extend(f);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        if let Some(reason) = failures.first() {
            let message = format!(
                "{} of {count} worker task(s) did not start: {reason}",
                failures.len()
            );
            return Err(self.run_task_failure(&failures, message));
        }
        Ok(started)
    }

    /// The error for tasks RunTask did not start: an account limit, no capacity, or another
    /// reason ECS gave.
    fn run_task_failure(&self, failures: &[String], message: String) -> Error {
        if failures.iter().any(|f| tasks::is_quota_failure(f)) {
            Error::QuotaExceeded {
                provider: ProviderKind::Fargate,
                message,
            }
        } else if failures.iter().any(|f| tasks::is_capacity_failure(f)) {
            Error::CapacityUnavailable {
                provider: ProviderKind::Fargate,
                location: self.region.clone(),
                message,
            }
        } else {
            Error::Provider {
                provider: ProviderKind::Fargate,
                operation: "ecs:RunTask".into(),
                message,
            }
        }
    }
}

/// The ECS cluster of a task, from its ARN (`arn:…:task/<cluster>/<id>`).
fn cluster_of(task_arn: &str) -> Option<&str> {
    let resource = task_arn.splitn(6, ':').nth(5)?;
    let mut parts = resource.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("task"), Some(cluster), Some(_)) => Some(cluster),
        _ => None,
    }
}

#[async_trait]
impl ClusterProvider for FargateProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Fargate
    }

    fn location(&self) -> String {
        self.region.clone()
    }

    async fn plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        self.make_plan(ctx).await
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        self.launching
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let spec = ctx.spec;
        let cluster_tags = tags::cluster_tags(spec);
        let net = self.network().await?;
        // The security group claims the name; nothing else is touched before it is ours.
        let group = network::ensure_group(
            &self.ec2,
            &self.region,
            ProviderKind::Fargate,
            &spec.name,
            net,
            &cluster_tags,
            &self.allowed_cidrs(net),
            || async {
                Ok(self
                    .describe(Some(&spec.name))
                    .await?
                    .iter()
                    .any(|t| t.node.state.is_alive()))
            },
        )
        .await?;
        let _ = self.group.set(group);
        self.ensure_ecs_cluster(&spec.name, &cluster_tags).await?;
        if self.options.log_group.is_none() {
            self.ensure_log_group(&names::log_group(&spec.name), &cluster_tags)
                .await?;
        }
        // Keys of both roles; workers share one certificate, so the worker boot needs no
        // scheduler address to know its secrets.
        let mut secrets = Self::boot(ctx, Role::Scheduler, "")?.secret_env;
        secrets.extend(Self::boot(ctx, Role::Worker, "")?.secret_env);
        let secrets: BTreeMap<String, String> = secrets
            .values()
            .map(|f| (names::secret(&spec.name, &f.file_name), f.contents.clone()))
            .collect();
        self.access()
            .put_secrets(&secrets, &spec.name, &cluster_tags)
            .await?;
        if self.options.execution_role_arn.is_none() {
            let (managed, inline) = self.execution_policies(&spec.name).await?;
            self.access()
                .ensure_role(
                    &access::RoleSpec {
                        name: &names::execution_role(&spec.name),
                        service: "ecs-tasks.amazonaws.com",
                        description: format!("clusterctl cluster {}: Fargate tasks", spec.name),
                        managed: &managed,
                        inline: &inline,
                    },
                    &spec.name,
                    &cluster_tags,
                )
                .await?;
        }
        if self.options.task_role_arn.is_none() && !self.options.task_role_policies.is_empty() {
            self.access()
                .ensure_role(
                    &access::RoleSpec {
                        name: &names::task_role(&spec.name),
                        service: "ecs-tasks.amazonaws.com",
                        description: format!("clusterctl cluster {}: Fargate tasks", spec.name),
                        managed: &self.options.task_role_policies,
                        inline: &[],
                    },
                    &spec.name,
                    &cluster_tags,
                )
                .await?;
        }
        Ok(())
    }

    async fn launch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        let spec = ctx.spec;
        let boot = Self::boot(ctx, Role::Scheduler, "")?;
        let task_definition = self
            .task_definition_for(ctx, Role::Scheduler, &boot)
            .await?;
        let group = self.group_id(&spec.name).await?;
        let net = self.network().await?;
        let ecs_cluster = self.ecs_cluster_name(&spec.name);
        let run = self.run_input(
            spec,
            Role::Scheduler,
            &task_definition,
            &ecs_cluster,
            &group,
            &net.subnets,
        );
        let (nodes, failures) = self
            .run_tasks(&run, 1, false, &Self::token(spec, "s"))
            .await?;
        let Some(node) = nodes.into_iter().next() else {
            let message = format!("the scheduler task did not start: {}", failures.join("; "));
            return Err(self.run_task_failure(&failures, message));
        };
        let address = self.worker_facing_address(ctx, &node).await?;
        Ok(SchedulerLaunch { node, address })
    }

    async fn launch_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let spec = ctx.spec;
        let boot = Self::boot(ctx, Role::Worker, scheduler_address)?;
        let task_definition = self.task_definition_for(ctx, Role::Worker, &boot).await?;
        let group = self.group_id(&spec.name).await?;
        let net = self.network().await?;
        let ecs_cluster = self.ecs_cluster_name(&spec.name);
        let run = self.run_input(
            spec,
            Role::Worker,
            &task_definition,
            &ecs_cluster,
            &group,
            &net.subnets,
        );
        self.start_workers(ctx, &run, batch.count).await
    }

    async fn list_nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        Ok(self
            .describe(cluster)
            .await?
            .into_iter()
            .map(|t| t.node)
            .collect())
    }

    async fn list_nodes_to_stop(&self, cluster: &ClusterName) -> Result<Vec<Node>> {
        self.tasks_to_stop(cluster).await
    }

    async fn endpoints(&self, scheduler: &Node, private: bool) -> Result<Endpoints> {
        let host = if private {
            scheduler.private_ip.clone()
        } else {
            self.public_ip(scheduler).await?
        };
        let host = host.ok_or_else(|| Error::Provider {
            provider: ProviderKind::Fargate,
            operation: "endpoints".into(),
            message: format!(
                "the scheduler task {} has no {} address",
                task_id(&scheduler.id),
                if private { "private" } else { "public" }
            ),
        })?;
        Ok(Endpoints::on_host(tags::protocol(&scheduler.tags), &host))
    }

    async fn terminate_nodes(&self, cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        self.stop_nodes(cluster, nodes).await
    }

    async fn node_states(
        &self,
        cluster: &ClusterName,
        nodes: &[Node],
    ) -> Result<Option<Vec<Node>>> {
        self.task_states(cluster, nodes).await.map(Some)
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterSummary>> {
        let (nodes, groups) = tokio::try_join!(
            self.list_nodes(None),
            network::groups(&self.ec2, &self.region, None),
        )?;
        let claims = groups
            .into_iter()
            .filter(|g| g.is_of(ProviderKind::Fargate));
        Ok(summarize_with_claims(
            nodes,
            claims.map(|g| g.tags).collect(),
        ))
    }

    async fn cleanup(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        self.remove_resources(cluster).await
    }

    async fn logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>> {
        self.task_logs(cluster, role, tail, max_nodes).await
    }
}

impl FargateProvider {
    /// The public address of a task: ECS tells only its network interface, EC2 the address.
    async fn public_ip(&self, node: &Node) -> Result<Option<String>> {
        let Some(cluster) = node
            .tags
            .get(tags::CLUSTER)
            .and_then(|c| ClusterName::new(c).ok())
        else {
            return Ok(None);
        };
        let Some(eni) = self
            .describe(Some(&cluster))
            .await?
            .into_iter()
            .find(|t| t.node.id == node.id)
            .and_then(|t| t.eni)
        else {
            return Ok(None);
        };
        let out = self
            .ec2
            .describe_network_interfaces()
            .network_interface_ids(&eni)
            .send()
            .await
            .map_err(|e| self.map("ec2:DescribeNetworkInterfaces", e))?;
        Ok(out
            .network_interfaces()
            .first()
            .and_then(|n| n.association())
            .and_then(|a| a.public_ip())
            .map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_arns_name_their_cluster() {
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:123456789012:task/clusterctl-a/abc"),
            Some("clusterctl-a")
        );
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:123456789012:task/abc"),
            None
        );
    }

    #[test]
    fn names_of_two_clusters_never_collide() {
        let a = ClusterName::new("a").unwrap();
        let ab = ClusterName::new("a-b").unwrap();
        assert!(!names::secret(&ab, "x").starts_with(&names::secrets_path(&a)));
        assert_ne!(
            names::family(&a, Role::Worker),
            names::family(&ab, Role::Worker)
        );
    }
}

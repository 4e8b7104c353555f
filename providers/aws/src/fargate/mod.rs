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

#[cfg(test)]
mod mocks;
mod options;
mod resources;
mod tasks;

use std::{collections::BTreeMap, future::Future, time::Duration};

use async_trait::async_trait;
use aws_sdk_ecs::{error::SdkError, types::TaskDefinitionStatus};
use clusterctl_core::{
    Error, Result,
    bootstrap::{self, BootLayout, scheduler_intent, worker_intent},
    container::{ContainerBoot, render_container},
    model::{ClusterName, ClusterSpec, Endpoints, Node, NodeState, ProviderKind, Role},
    provider::{
        ClusterProvider, LaunchContext, NodeLog, Plan, RenderedBootstrap, SchedulerLaunch,
        WorkerBatch, last_lines,
    },
    tags,
};
use futures_util::{StreamExt, stream};
pub use options::{FargateOptions, TaskSize, task_size};
use tasks::{RUN_TASK_MAX, RunInput, TaskDefinitionInput, task_id};
use tokio::sync::OnceCell;

use crate::{Identity, api_log, errors, network, network::Network};

/// Where the node's files go inside the container.
const FILES_ROOT: &str = "/tmp/clusterctl";
/// RunTask calls in flight at once when starting many workers.
const LAUNCH_CONCURRENCY: usize = 5;
/// How long RunTask is retried while a just-created role is not yet assumable by ECS (IAM is
/// eventually consistent).
const ROLE_PROPAGATION: Duration = Duration::from_secs(60);

/// Names of the per-cluster resources. Prefixes alone could match another cluster (`a` and
/// `a-b`), so lookups compare whole names and check tags.
pub mod names {
    use clusterctl_core::model::{ClusterName, Role};

    /// Path of the IAM roles clusterctl creates.
    pub const ROLE_PATH: &str = "/clusterctl/";

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
}

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
                let mut b = $krate::config::Builder::from(&config);
                if let Some(l) = &log {
                    b = b.interceptor(l.clone());
                }
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
        }
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

    async fn run_input<'a>(
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
        network::groups(&self.ec2, &self.region, Some(cluster))
            .await?
            .into_iter()
            .next()
            .map(|(id, _)| id)
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

    /// The log group and stream prefix a task definition sends logs to.
    async fn log_target(&self, task_definition: &str) -> Result<Option<(String, String)>> {
        let out = self
            .ecs
            .describe_task_definition()
            .task_definition(task_definition)
            .send()
            .await
            .map_err(|e| self.map("ecs:DescribeTaskDefinition", e))?;
        Ok(out
            .task_definition()
            .and_then(|t| t.container_definitions().first())
            .and_then(|c| c.log_configuration())
            .and_then(|l| l.options())
            .and_then(|o| {
                Some((
                    o.get("awslogs-group")?.clone(),
                    o.get("awslogs-stream-prefix")?.clone(),
                ))
            }))
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

/// Shown files of a container for `--dry-run`: certificates and keys elided.
fn shown_container(boot: &ContainerBoot, secrets: &BTreeMap<String, String>) -> String {
    let env: BTreeMap<&String, String> = boot
        .env
        .iter()
        .map(|(k, v)| {
            let shown = if !k.starts_with("CLUSTERCTL_FILE_") {
                v.clone()
            } else if v.contains("CERTIFICATE") {
                "<certificate>".into()
            } else {
                format!("<{} bytes>", v.len())
            };
            (k, shown)
        })
        .collect();
    let secrets: Vec<serde_json::Value> = secrets
        .iter()
        .map(|(k, arn)| serde_json::json!({"name": k, "valueFrom": arn}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "command": boot.command,
        "environment": env,
        "secrets": secrets,
    }))
    .unwrap_or_default()
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
        let spec = ctx.spec;
        self.options.validate(spec.private)?;
        let (scheduler_size, worker_size) = Self::sizes(spec)?;
        let architecture = options::architecture(self.options.architecture.as_deref())?;
        let identity = self.identity().await?.shown.clone();
        if self
            .describe(Some(&spec.name))
            .await?
            .iter()
            .any(|t| t.node.state.is_alive())
        {
            return Err(Error::AlreadyExists {
                name: spec.name.to_string(),
                provider: ProviderKind::Fargate,
            });
        }
        let net = self.network().await?;
        if let Some(c) = &self.options.ecs_cluster
            && !self.ecs_cluster_active(c).await?
        {
            return Err(Error::invalid(
                "--ecs-cluster",
                c,
                "no active ECS cluster of this name in the region",
                Some("create it first, or drop --ecs-cluster to have one made".into()),
            ));
        }
        let placeholder =
            bootstrap::scheduler_address(bootstrap::scheme(spec), "<scheduler task IP>");
        let s = Self::boot(ctx, Role::Scheduler, "")?;
        let w = Self::boot(ctx, Role::Worker, &placeholder)?;
        let name = &spec.name;
        let mut plan = Plan {
            identity: Some(identity),
            ..Default::default()
        };
        let r = &mut plan.resources;
        match &self.options.ecs_cluster {
            Some(c) => r.push(format!("tasks in the existing ECS cluster {c}")),
            None => r.push(format!(
                "ECS cluster {} (capacity providers FARGATE, FARGATE_SPOT)",
                names::ecs_cluster(name)
            )),
        }
        match &self.options.execution_role_arn {
            Some(a) => r.push(format!("tasks use the existing execution role {a}")),
            None => r.push(format!(
                "IAM role {}{} (task execution: AmazonECSTaskExecutionRolePolicy, read {}*)",
                names::ROLE_PATH,
                names::execution_role(name),
                names::secrets_path(name)
            )),
        }
        if self.options.task_role_arn.is_none() && !self.options.task_role_policies.is_empty() {
            r.push(format!(
                "IAM role {}{} (task role: {})",
                names::ROLE_PATH,
                names::task_role(name),
                self.options.task_role_policies.join(", ")
            ));
        }
        match &self.options.log_group {
            Some(g) => r.push(format!("logs to the existing log group {g}")),
            None => r.push(format!(
                "log group {} (retention {} days{})",
                names::log_group(name),
                self.options
                    .log_retention_days
                    .unwrap_or(options::DEFAULT_LOG_RETENTION_DAYS),
                if self.options.keep_logs {
                    ", kept after down"
                } else {
                    ""
                }
            )),
        }
        let secrets: Vec<String> = s
            .secret_env
            .values()
            .chain(w.secret_env.values())
            .map(|f| names::secret(name, &f.file_name))
            .collect();
        if !secrets.is_empty() {
            r.push(format!(
                "SSM SecureString parameters {} (TLS keys)",
                secrets.join(", ")
            ));
        }
        r.push(format!(
            "security group {} in {}: all traffic between members; tcp {}-{} from {}",
            network::group_name(name),
            net.vpc_id,
            bootstrap::SCHEDULER_PORT,
            bootstrap::DASHBOARD_PORT,
            self.allowed_cidrs(net).join(", ")
        ));
        r.push(format!(
            "task definitions {} ({scheduler_size}) and {} ({worker_size}), {architecture}",
            names::family(name, Role::Scheduler),
            names::family(name, Role::Worker),
        ));
        r.push(format!(
            "1 scheduler task (FARGATE) and {} worker task(s) ({}) in {}",
            spec.workers,
            if self.options.spot {
                "FARGATE_SPOT, falling back to FARGATE"
            } else {
                "FARGATE"
            },
            net.subnets.join(", ")
        ));
        plan.notes.push(format!(
            "tasks run {}; the scheduler closes at the TTL ({}s) and the container stops a minute later at the latest",
            spec.image,
            spec.ttl.as_secs()
        ));
        if !spec.private {
            plan.notes
                .push("the scheduler task gets a public address; clients connect to it".into());
        }
        for (role, boot) in [(Role::Scheduler, &s), (Role::Worker, &w)] {
            plan.bootstraps.push(RenderedBootstrap {
                role,
                format: "ecs-container-definition".into(),
                text: shown_container(boot, &self.secret_arns(name, boot).await?),
            });
        }
        Ok(plan)
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        let spec = ctx.spec;
        let cluster_tags = tags::cluster_tags(spec);
        let net = self.network().await?;
        network::ensure_group(
            &self.ec2,
            &self.region,
            &spec.name,
            net,
            &cluster_tags,
            &self.allowed_cidrs(net),
        )
        .await?;
        self.ensure_ecs_cluster(&spec.name, &cluster_tags).await?;
        if self.options.log_group.is_none() {
            self.ensure_log_group(&names::log_group(&spec.name), &cluster_tags)
                .await?;
        }
        // Keys of both roles; workers share one certificate, so the worker boot needs no
        // scheduler address to know its secrets.
        let mut secrets = Self::boot(ctx, Role::Scheduler, "")?.secret_env;
        secrets.extend(Self::boot(ctx, Role::Worker, "")?.secret_env);
        self.put_secrets(&spec.name, &secrets, &cluster_tags)
            .await?;
        if self.options.execution_role_arn.is_none() {
            let (managed, inline) = self.execution_policies(&spec.name).await?;
            self.ensure_role(
                &names::execution_role(&spec.name),
                &spec.name,
                &cluster_tags,
                &managed,
                &inline,
            )
            .await?;
        }
        if self.options.task_role_arn.is_none() && !self.options.task_role_policies.is_empty() {
            self.ensure_role(
                &names::task_role(&spec.name),
                &spec.name,
                &cluster_tags,
                &self.options.task_role_policies,
                &[],
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
        let run = self
            .run_input(
                spec,
                Role::Scheduler,
                &task_definition,
                &ecs_cluster,
                &group,
                &net.subnets,
            )
            .await;
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

    async fn worker_facing_address(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler: &Node,
    ) -> Result<Option<String>> {
        Ok(scheduler
            .private_ip
            .as_ref()
            .map(|ip| bootstrap::scheduler_address(bootstrap::scheme(ctx.spec), ip)))
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
        let run = self
            .run_input(
                spec,
                Role::Worker,
                &task_definition,
                &ecs_cluster,
                &group,
                &net.subnets,
            )
            .await;
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
        for chunk in targets.chunks(10) {
            let stops = chunk.iter().map(|(c, id)| self.stop_task(c, id));
            for r in futures_util::future::join_all(stops).await {
                r?;
            }
        }
        Ok(())
    }

    async fn cleanup(&self, cluster: &ClusterName) -> Result<Vec<String>> {
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
        let secrets = self.secret_names(cluster).await?;
        for chunk in secrets.chunks(10) {
            self.ssm
                .delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.map("ssm:DeleteParameters", e))?;
        }
        for role in names::roles(cluster) {
            self.delete_role(&role, cluster).await?;
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
        network::delete_groups(&self.ec2, &self.region, cluster).await?;
        self.delete_ecs_cluster(cluster).await?;

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
            self.secret_names(cluster)
                .await?
                .into_iter()
                .map(|n| format!("SSM parameter {n}")),
        );
        left.extend(
            self.roles_left(cluster)
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
                .map(|(id, name)| format!("security group {id} ({name})")),
        );
        if let Some(c) = self.ecs_cluster_left(cluster).await? {
            left.push(format!("ECS cluster {c}"));
        }
        Ok(left)
    }

    async fn logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
    ) -> Result<Vec<NodeLog>> {
        let mut targets: BTreeMap<String, Option<(String, String)>> = BTreeMap::new();
        let mut logs = Vec::new();
        for t in self
            .describe(Some(cluster))
            .await?
            .into_iter()
            .filter(|t| role.is_none_or(|r| r == t.node.role))
        {
            let mut lines = Vec::new();
            if let Some(td) = &t.task_definition_arn {
                if !targets.contains_key(td) {
                    targets.insert(td.clone(), self.log_target(td).await?);
                }
                if let Some(Some((group, prefix))) = targets.get(td) {
                    let stream = format!("{prefix}/{}/{}", tasks::CONTAINER, task_id(&t.node.id));
                    match self
                        .logs
                        .get_log_events()
                        .log_group_name(group)
                        .log_stream_name(&stream)
                        .limit(tail.clamp(1, 10_000) as i32)
                        .start_from_head(false)
                        .send()
                        .await
                    {
                        Ok(out) => {
                            let text: Vec<&str> =
                                out.events().iter().filter_map(|e| e.message()).collect();
                            lines = last_lines(&text.join("\n"), tail);
                        }
                        // The container has not written anything yet.
                        Err(e) if errors::code(&e) == Some("ResourceNotFoundException") => {}
                        Err(e) => return Err(self.map("logs:GetLogEvents", e)),
                    }
                }
            }
            if let Some(reason) = &t.stopped_reason {
                lines.push(format!("[ecs] task stopped: {reason}"));
            }
            logs.push(NodeLog {
                node: t.node.name,
                role: t.node.role,
                lines,
            });
        }
        Ok(logs)
    }
}

impl FargateProvider {
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

//! The `aws` provider: a Dask cluster on EC2 virtual machines.
//!
//! Each node is an instance that runs the rendered cloud-init (`clusterctl_core::bootstrap`):
//! the pinned Dask image with host networking, TLS material, a TTL power-off, and power-off when
//! Dask exits; instances terminate on shutdown, so an ended node stops billing. Every instance
//! and the per-cluster security group carry the cluster tags, and everything is found by them.
//!
//! Calls are retried by the SDK's standard retry mode (jittered exponential backoff on
//! throttling and transient errors, up to [`MAX_ATTEMPTS`]); capacity errors are not retried but
//! move the launch to the next subnet, instance type or market.

#[cfg(test)]
#[macro_use]
mod test_support;

pub(crate) mod access;
pub(crate) mod api_log;
mod doctor;
pub mod errors;
#[cfg(feature = "fargate")]
pub mod fargate;
mod instances;
mod launch;
pub mod network;
pub mod options;
mod resolve;

use std::time::Duration;

use async_trait::async_trait;
use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region};
use base64::Engine as _;
use clusterctl_core::{
    Error, Result,
    bootstrap::{
        self, BootLayout, KeyDelivery, SecretStore, VmOptions, render_cloud_init, scheduler_intent,
        worker_intent,
    },
    model::{
        ClusterName, ClusterSpec, ClusterSummary, Endpoints, Node, ProviderKind, Role,
        summarize_with_claims,
    },
    provider::{
        ClusterProvider, LaunchContext, NodeLog, Plan, RenderedBootstrap, SchedulerLaunch,
        WorkerBatch,
    },
    tags,
};
#[cfg(feature = "fargate")]
pub use fargate::{FargateOptions, FargateProvider};
use instances::LIVE_STATES;
pub use options::Ec2Options;
use resolve::Resolved;
use tokio::sync::OnceCell;

/// Attempts per API call (the first and the retries).
pub const MAX_ATTEMPTS: u32 = 8;

/// The EC2 provider.
#[derive(Debug)]
pub struct Ec2Provider {
    ec2: aws_sdk_ec2::Client,
    iam: aws_sdk_iam::Client,
    ssm: aws_sdk_ssm::Client,
    sts: aws_sdk_sts::Client,
    region: String,
    /// The SSM endpoint the nodes fetch their keys from (the one this process uses).
    ssm_endpoint: String,
    options: Ec2Options,
    resolved: OnceCell<Resolved>,
    /// The caller's identity (STS), once asked; named in permission errors.
    identity: OnceCell<Identity>,
    /// The cluster's security group, once this process created or claimed it (a later
    /// process, e.g. `scale`, looks it up by its tags).
    group: OnceCell<String>,
}

/// Names of what the EC2 provider creates besides instances and the security group.
pub mod names {
    use clusterctl_core::model::ClusterName;

    /// The nodes' role, and the instance profile that holds it (same name).
    pub fn node_role(c: &ClusterName) -> String {
        format!("clusterctl-{c}-node")
    }
    /// The SSM path of the cluster's node keys (with the trailing `/`). Not under Fargate's
    /// `/clusterctl/NAME/`, so that neither provider ever lists the other's keys.
    pub fn secrets_prefix(c: &ClusterName) -> String {
        format!("/clusterctl-ec2/{c}/")
    }
}

/// How long a node keeps trying to read its keys (its instance profile may take a while to be
/// usable after launch) before it gives up and powers off.
const KEY_FETCH_DEADLINE_SECS: u64 = 600;
/// How long RunInstances is retried while a just-created instance profile is not yet known to
/// EC2 (IAM is eventually consistent: "Invalid IAM Instance Profile name").
const PROFILE_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);

impl Ec2Provider {
    /// Build from the standard AWS configuration chain (environment, profiles, SSO, web
    /// identity, instance metadata), honouring `AWS_ENDPOINT_URL`.
    pub async fn from_env(options: Ec2Options) -> Result<Self> {
        let (config, region) = load_config(options.region.as_deref()).await?;
        let log = api_log::ApiLog::from_env();
        let mut ec2 = aws_sdk_ec2::config::Builder::from(&config);
        let mut iam = aws_sdk_iam::config::Builder::from(&config);
        let mut ssm = aws_sdk_ssm::config::Builder::from(&config);
        let mut sts = aws_sdk_sts::config::Builder::from(&config);
        ec2 = ec2.interceptor(log.clone());
        iam = iam.interceptor(log.clone());
        ssm = ssm.interceptor(log.clone());
        sts = sts.interceptor(log);
        // The nodes read their keys where this process writes them: a custom endpoint (a VPC
        // endpoint, FIPS, a test emulator) is kept, else the region's public one.
        let ssm_endpoint = std::env::var("AWS_ENDPOINT_URL_SSM")
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| config.endpoint_url().map(str::to_string));
        let mut provider = Self::from_clients(
            aws_sdk_ec2::Client::from_conf(ec2.build()),
            aws_sdk_iam::Client::from_conf(iam.build()),
            aws_sdk_ssm::Client::from_conf(ssm.build()),
            aws_sdk_sts::Client::from_conf(sts.build()),
            region,
            options,
        );
        if let Some(e) = ssm_endpoint {
            provider.ssm_endpoint = e;
        }
        Ok(provider)
    }

    /// Build from ready clients (tests use mocked ones).
    pub fn from_clients(
        ec2: aws_sdk_ec2::Client,
        iam: aws_sdk_iam::Client,
        ssm: aws_sdk_ssm::Client,
        sts: aws_sdk_sts::Client,
        region: String,
        options: Ec2Options,
    ) -> Self {
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        Ec2Provider {
            ec2,
            iam,
            ssm,
            sts,
            ssm_endpoint: format!("https://ssm.{region}.{domain}"),
            region,
            options,
            resolved: OnceCell::new(),
            identity: OnceCell::new(),
            group: OnceCell::new(),
        }
    }

    /// The IAM and SSM calls shared with the Fargate provider, with this provider's errors.
    fn access(&self) -> access::Access<'_> {
        access::Access {
            iam: &self.iam,
            ssm: &self.ssm,
            kind: ProviderKind::Aws,
            region: &self.region,
            identity: self.identity.get().map(|i| i.shown.as_str()),
        }
    }

    async fn identity(&self) -> Result<&Identity> {
        self.identity
            .get_or_try_init(|| identity(&self.sts, &self.region))
            .await
    }

    fn map<E, R>(&self, operation: &str, err: aws_sdk_ec2::error::SdkError<E, R>) -> Error
    where
        E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        errors::with_identity(
            errors::map(operation, &self.region, err),
            self.identity.get().map(|i| i.shown.as_str()),
        )
    }

    fn vm_options(&self, spec: &ClusterSpec, resolved: &Resolved) -> VmOptions {
        // The default image (ECS-optimized Amazon Linux) has Docker; another AMI may not.
        VmOptions {
            image: spec.image.clone(),
            install_docker: self.options.ami.is_some(),
            gpu: resolved.gpu,
            // EC2 returns user-data to anyone allowed ec2:DescribeInstanceAttribute (AWS's
            // ReadOnlyAccess): the keys go to SSM, readable by the nodes' role only.
            keys: KeyDelivery::SecretStore(SecretStore {
                kind: "aws-ssm".into(),
                region: self.region.clone(),
                endpoint: self.ssm_endpoint.clone(),
                prefix: names::secrets_prefix(&spec.name),
                deadline_secs: KEY_FETCH_DEADLINE_SECS,
            }),
        }
    }

    /// The instance profile the nodes run with: `--instance-profile`, else the cluster's own.
    fn instance_profile(&self, cluster: &ClusterName) -> String {
        self.options
            .instance_profile
            .clone()
            .unwrap_or_else(|| names::node_role(cluster))
    }

    /// The nodes' keys by their SSM names: the scheduler's and the workers' (one shared).
    fn node_secrets(ctx: &LaunchContext<'_>) -> BTreeMap<String, String> {
        let layout = BootLayout::vm();
        let prefix = names::secrets_prefix(&ctx.spec.name);
        let s = scheduler_intent(ctx.spec, &layout, ctx.tls);
        let w = worker_intent(ctx.spec, &layout, ctx.tls, "", None);
        bootstrap::secret_files(&s)
            .into_iter()
            .chain(bootstrap::secret_files(&w))
            .map(|f| (format!("{prefix}{}", f.file_name()), f.contents.clone()))
            .collect()
    }

    /// The nodes' role (reading the cluster's keys, nothing else) and its instance profile,
    /// unless `--instance-profile` names the user's own.
    async fn ensure_node_access(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        let spec = ctx.spec;
        let cluster_tags = tags::cluster_tags(spec);
        let id = self.identity().await?.clone();
        if self.options.instance_profile.is_none() {
            let name = names::node_role(&spec.name);
            let policy = access::read_secrets_policy(
                &id.partition,
                &self.region,
                &id.account,
                &names::secrets_prefix(&spec.name),
            );
            self.access()
                .ensure_role(
                    &access::RoleSpec {
                        name: &name,
                        service: "ec2.amazonaws.com",
                        description: format!("clusterctl cluster {}: its nodes' keys", spec.name),
                        managed: &[],
                        inline: &[(access::SECRETS_POLICY, policy)],
                    },
                    &spec.name,
                    &cluster_tags,
                )
                .await?;
            self.access()
                .ensure_instance_profile(&name, &name, &spec.name, &cluster_tags)
                .await?;
        }
        self.access()
            .put_secrets(&Self::node_secrets(ctx), &spec.name, &cluster_tags)
            .await
    }

    fn allowed_cidrs(&self, resolved: &Resolved) -> Vec<String> {
        if self.options.allow_cidrs.is_empty() {
            // `--private`: the client is inside the VPC.
            vec![resolved.network.vpc_cidr.clone()]
        } else {
            self.options.allow_cidrs.clone()
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
                provider: ProviderKind::Aws,
                operation: "launch".into(),
                message: format!("the security group of cluster `{cluster}` is missing"),
            })
    }
}

/// The shared AWS configuration of every client: the standard chain (environment, profiles, SSO,
/// web identity, instance metadata; `AWS_ENDPOINT_URL` honoured), the standard retry mode with
/// jittered exponential backoff, and the region (`region`, else the chain's).
pub(crate) async fn load_config(
    region_flag: Option<&str>,
) -> Result<(aws_config::SdkConfig, String)> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).retry_config(
        aws_config::retry::RetryConfig::standard()
            .with_max_attempts(MAX_ATTEMPTS)
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(20)),
    );
    if let Some(r) = region_flag {
        loader = loader.region(Region::new(r.to_string()));
    }
    let config = loader.load().await;
    let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
        Error::invalid(
            "--region",
            "",
            "no AWS region is configured",
            Some("pass `--region us-east-1`, or set AWS_REGION or a profile region".into()),
        )
    })?;
    options::validate_region(&region, region_given(region.as_str(), region_flag))?;
    Ok((config, region))
}

/// Where the region came from, for its error message.
fn region_given(region: &str, flag: Option<&str>) -> &'static str {
    if flag == Some(region) {
        "--region"
    } else {
        "AWS region (AWS_REGION or the profile's region)"
    }
}

/// The caller's identity as shown in plans and permission errors, and its account and
/// partition (for ARNs clusterctl builds).
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub shown: String,
    pub account: String,
    pub partition: String,
}

pub(crate) async fn identity(sts: &aws_sdk_sts::Client, region: &str) -> Result<Identity> {
    let out = sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| errors::map("sts:GetCallerIdentity", region, e))?;
    let arn = out.arn().unwrap_or("?");
    Ok(Identity {
        shown: format!("{arn} (account {})", out.account().unwrap_or("?")),
        account: out.account().unwrap_or_default().to_string(),
        partition: arn.split(':').nth(1).unwrap_or("aws").to_string(),
    })
}

#[async_trait]
impl ClusterProvider for Ec2Provider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }

    fn location(&self) -> String {
        self.region.clone()
    }

    async fn doctor(&self, ctx: &LaunchContext<'_>) -> Vec<clusterctl_core::doctor::Check> {
        self.doctor_checks(ctx).await
    }

    async fn plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        let spec = ctx.spec;
        self.options.validate(spec.private)?;
        let identity = self.identity().await?.shown.clone();
        // Every cluster's security group exists before its first instance and outlives its
        // last (it cannot be deleted while an instance uses it): no group, no instances.
        let existing = network::cluster_group(&self.ec2, &self.region, &spec.name).await?;
        if existing.is_some()
            && self
                .describe(Some(&spec.name), LIVE_STATES)
                .await?
                .iter()
                .any(|n| n.state.is_alive())
        {
            return Err(Error::AlreadyExists {
                name: spec.name.to_string(),
                provider: ProviderKind::Aws,
            });
        }
        let r = self.resolve(spec).await?;
        let layout = BootLayout::vm();
        let vm = self.vm_options(spec, r);
        let s = scheduler_intent(spec, &layout, ctx.tls);
        let address =
            bootstrap::scheduler_address(bootstrap::scheme(spec), "<scheduler private IP>");
        let w = worker_intent(spec, &layout, ctx.tls, &address, None);
        let mut plan = Plan {
            identity: Some(identity),
            ..Default::default()
        };
        plan.resources.push(format!(
            "security group {} in {}: all traffic between members; tcp {}-{} from {}",
            network::group_name(&spec.name),
            r.network.vpc_id,
            bootstrap::SCHEDULER_PORT,
            bootstrap::DASHBOARD_PORT,
            self.allowed_cidrs(r).join(", ")
        ));
        if let Some(group) = &existing {
            let id = group.group_id().unwrap_or_default();
            let stale = network::stale_in(group, &self.allowed_cidrs(r));
            if !stale.is_empty() {
                let rules: Vec<String> = stale.iter().map(network::describe_rule).collect();
                plan.notes.push(format!(
                    "the security group {id} left by an earlier cluster of this name is reused; its other rules are revoked: {}",
                    rules.join("; ")
                ));
            }
        }
        let secrets = Self::node_secrets(ctx);
        match &self.options.instance_profile {
            None => plan.resources.push(format!(
                "IAM role and instance profile {name} (path {path}): reads {prefix}* and nothing else",
                name = names::node_role(&spec.name),
                path = access::ROLE_PATH,
                prefix = names::secrets_prefix(&spec.name),
            )),
            Some(p) => plan.notes.push(format!(
                "nodes run with your instance profile {p}: its role must allow ssm:GetParameters on {}*",
                names::secrets_prefix(&spec.name)
            )),
        }
        if !secrets.is_empty() {
            plan.resources.push(format!(
                "SSM SecureString parameters {}: the nodes' TLS keys, fetched at boot with the \
                 instance role (never in user-data)",
                secrets.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        plan.resources.push(format!(
            "1 scheduler instance {} (on-demand) in {}",
            r.scheduler_type, r.network.subnets[0]
        ));
        plan.resources.push(format!(
            "{} worker instance(s) {} ({}) in {}",
            spec.workers,
            r.worker_types.join(" or "),
            if self.options.spot {
                "spot, falling back to on-demand"
            } else {
                "on-demand"
            },
            r.network.subnets.join(", ")
        ));
        plan.notes.push(format!(
            "image {} from {}; containers run {}",
            r.ami, r.ami_source, spec.image
        ));
        plan.notes.push(format!(
            "instances terminate on shutdown; they power off at the TTL ({})",
            humanize(spec.ttl)
        ));
        if !spec.private {
            plan.notes
                .push("the scheduler gets a public address; clients connect to it".into());
        }
        plan.bootstraps.push(RenderedBootstrap {
            role: Role::Scheduler,
            format: "cloud-init".into(),
            // No key to hide: the keys are not in the user-data (see `vm_options`).
            text: render_cloud_init(spec, &s, &layout, &vm)?,
        });
        plan.bootstraps.push(RenderedBootstrap {
            role: Role::Worker,
            format: "cloud-init".into(),
            text: render_cloud_init(spec, &w, &layout, &vm)?,
        });
        Ok(plan)
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        let r = self.resolve(ctx.spec).await?;
        // The security group claims the name; nothing else is touched before it is ours.
        let group = network::ensure_group(
            &self.ec2,
            &self.region,
            ProviderKind::Aws,
            &ctx.spec.name,
            &r.network,
            &tags::cluster_tags(ctx.spec),
            &self.allowed_cidrs(r),
            || async {
                Ok(self
                    .describe(Some(&ctx.spec.name), LIVE_STATES)
                    .await?
                    .iter()
                    .any(|n| n.state.is_alive()))
            },
        )
        .await?;
        let _ = self.group.set(group);
        self.ensure_node_access(ctx).await
    }

    async fn launch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        self.start_scheduler(ctx).await
    }

    async fn launch_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        self.start_workers(ctx, scheduler_address, batch).await
    }

    async fn list_nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        self.describe(cluster, LIVE_STATES).await
    }

    async fn endpoints(&self, scheduler: &Node, private: bool) -> Result<Endpoints> {
        let host = if private {
            scheduler.private_ip.as_deref()
        } else {
            scheduler.public_ip.as_deref()
        };
        let host = host.ok_or_else(|| Error::Provider {
            provider: ProviderKind::Aws,
            operation: "endpoints".into(),
            message: format!(
                "the scheduler {} has no {} address",
                scheduler.id,
                if private { "private" } else { "public" }
            ),
        })?;
        Ok(Endpoints::on_host(tags::protocol(&scheduler.tags), host))
    }

    async fn terminate_nodes(&self, _cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        for chunk in ids.chunks(1000) {
            match self
                .ec2
                .terminate_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if errors::code(&e) == Some("InvalidInstanceID.NotFound") => {}
                Err(e) => return Err(self.map("ec2:TerminateInstances", e)),
            }
        }
        Ok(())
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterSummary>> {
        let (nodes, groups) = tokio::try_join!(
            self.list_nodes(None),
            network::groups(&self.ec2, &self.region, None),
        )?;
        let claims = groups.into_iter().filter(|g| g.is_of(ProviderKind::Aws));
        Ok(summarize_with_claims(
            nodes,
            claims.map(|g| g.tags).collect(),
        ))
    }

    async fn cleanup(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        let role = names::node_role(cluster);
        let prefix = names::secrets_prefix(cluster);
        self.access().delete_secrets(&prefix).await?;
        // Profile before role: a role still in a profile cannot be deleted.
        self.access()
            .delete_instance_profile(&role, cluster)
            .await?;
        self.access()
            .delete_known_role(&role, cluster, &[access::SECRETS_POLICY])
            .await?;
        // The group claims the name: removed last, so that a teardown cut off on the way
        // leaves it, and `gc` finds what is left through it.
        network::delete_groups(&self.ec2, &self.region, cluster).await?;
        let mut left: Vec<String> = self
            .describe(Some(cluster), LIVE_STATES)
            .await?
            .into_iter()
            .map(|n| format!("instance {} ({})", n.id, n.state))
            .collect();
        left.extend(
            network::groups(&self.ec2, &self.region, Some(cluster))
                .await?
                .into_iter()
                .map(|g| format!("security group {} ({})", g.id, g.name)),
        );
        left.extend(
            self.access()
                .secret_names(&prefix)
                .await?
                .into_iter()
                .map(|n| format!("SSM parameter {n}")),
        );
        if self.access().instance_profile_left(&role, cluster).await? {
            left.push(format!("IAM instance profile {role}"));
        }
        left.extend(
            self.access()
                .roles_left(std::slice::from_ref(&role), cluster)
                .await?
                .into_iter()
                .map(|r| format!("IAM role {r}")),
        );
        Ok(left)
    }

    async fn logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>> {
        let nodes = self.describe(Some(cluster), &[]).await?;
        let mut logs = Vec::new();
        for n in nodes
            .into_iter()
            .filter(|n| role.is_none_or(|r| r == n.role))
            .take(max_nodes.unwrap_or(usize::MAX))
        {
            let out = self
                .ec2
                .get_console_output()
                .instance_id(&n.id)
                .latest(true)
                .send()
                .await
                .map_err(|e| self.map("ec2:GetConsoleOutput", e))?;
            let text = out
                .output()
                .and_then(|o| base64::engine::general_purpose::STANDARD.decode(o).ok())
                .map(|b| String::from_utf8_lossy(&b).to_string())
                .unwrap_or_default();
            let lines = clusterctl_core::provider::last_lines(&text, tail);
            logs.push(NodeLog {
                node: n.name,
                role: n.role,
                lines,
            });
        }
        Ok(logs)
    }
}

fn humanize(d: Duration) -> String {
    let m = d.as_secs() / 60;
    if m.is_multiple_of(60) {
        format!("{}h", m / 60)
    } else {
        format!("{m}m")
    }
}

#[cfg(test)]
mod tests;

//! `plan` of the Fargate provider: the checks before anything exists and what `--dry-run`
//! shows (resources, and the container definitions with keys as SSM references).

use std::collections::BTreeMap;

use clusterctl_core::{
    Error, Result, bootstrap,
    container::ContainerBoot,
    model::{ProviderKind, Role},
    provider::{LaunchContext, Plan, RenderedBootstrap},
};

use super::{FargateProvider, names, options};
use crate::network;

impl FargateProvider {
    /// What `up` would create, with the container definitions as Fargate would get them.
    pub(super) async fn make_plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        let spec = ctx.spec;
        self.options.validate(spec.private)?;
        let (scheduler_size, worker_size) = Self::sizes(spec)?;
        let architecture = options::architecture(self.options.architecture.as_deref())?;
        let identity = self.identity().await?.shown.clone();
        // Every cluster's security group exists before its first task and outlives its last
        // (it cannot be deleted while a task's interface uses it): no group, no tasks, and
        // no need to look for them in every ECS cluster.
        if network::cluster_group(&self.ec2, &self.region, &spec.name)
            .await?
            .is_some()
            && self
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

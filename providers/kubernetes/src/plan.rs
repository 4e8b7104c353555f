//! `plan` of the Kubernetes provider: the checks before anything exists (options, labels, the
//! API server's answer, the namespace, a cluster of the same name) and what `--dry-run` shows
//! (the objects, with the pods as the API server would receive them).

use clusterctl_core::{
    Error, Result, bootstrap,
    model::{ProviderKind, Role},
    provider::{LaunchContext, Plan, RenderedBootstrap},
    tags,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;

use crate::{
    KubernetesProvider,
    errors::map_for,
    nodes::sizes,
    objects::{self, names},
    options::{is_label_key, is_label_value},
};

impl KubernetesProvider {
    /// Check everything that can be checked without creating anything.
    pub(crate) async fn make_plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        let spec = ctx.spec;
        self.options.validate(spec.private)?;
        for (k, v) in &spec.tags {
            if !is_label_key(k) {
                return Err(Error::invalid(
                    "--tag",
                    format!("{k}={v}"),
                    "the key is not a valid Kubernetes label key",
                    Some("use letters, digits, '-', '_' or '.', optionally after a DNS prefix and '/', e.g. `team=data`".into()),
                ));
            }
            if !is_label_value(v) {
                return Err(Error::invalid(
                    "--tag",
                    format!("{k}={v}"),
                    "the value is not a valid Kubernetes label value",
                    Some("use up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit".into()),
                ));
            }
        }
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let ns = nss
            .get_opt(&self.namespace)
            .await
            .map_err(map_for(format!("get namespace {}", self.namespace)))?;
        if ns.is_none() && !self.options.create_namespace {
            return Err(Error::invalid(
                "--namespace",
                &self.namespace,
                format!("the namespace does not exist in context {}", self.context),
                Some(
                    "create it, pick another with `--namespace`, or add `--create-namespace`"
                        .into(),
                ),
            ));
        }
        if ns.is_some() {
            let root = names::root(&spec.name);
            if self
                .api::<ConfigMap>()
                .get_opt(&root)
                .await
                .map_err(map_for(format!("get configmap {root}")))?
                .is_some()
                || !self.find_nodes(Some(&spec.name)).await?.is_empty()
            {
                return Err(Error::AlreadyExists {
                    name: spec.name.to_string(),
                    provider: ProviderKind::Kubernetes,
                });
            }
        }
        if self.options.operator {
            if spec.idle_timeout.is_zero() {
                return Err(Error::invalid(
                    "--idle-timeout",
                    "0",
                    "with `--k8s-operator` the operator's idle timeout is what ends a forgotten cluster (its Deployments restart pods, so they cannot carry the TTL's deadline)",
                    Some("keep an idle timeout (default 1h), or drop `--k8s-operator`".into()),
                ));
            }
            self.check_operator().await?;
        }
        let mut plan = Plan {
            identity: Some(format!(
                "context {}, namespace {}",
                self.context, self.namespace
            )),
            ..Default::default()
        };
        let name = &spec.name;
        let (s_size, w_size) = sizes(spec);
        let r = &mut plan.resources;
        if ns.is_none() {
            r.push(format!("Namespace {} (deleted on `down`)", self.namespace));
        }
        r.push(format!(
            "ConfigMap {} (the root: every other object is owned by it)",
            names::root(name)
        ));
        r.push(format!(
            "Secret {} (the nodes' files: TLS material, TTL preload; mounted read-only)",
            names::files(name)
        ));
        if self.options.operator {
            r.push(format!(
                "DaskCluster {name} ({}); the operator makes the scheduler Pod and Service {} ({} CPU, {} MiB) and {} worker Pod(s) ({} CPU, {} MiB each)",
                crate::operator::GROUP_VERSION,
                names::scheduler(name),
                s_size.cpus,
                s_size.memory_mib,
                spec.workers,
                w_size.cpus,
                w_size.memory_mib
            ));
        } else {
            r.push(format!(
                "Pod {} ({} CPU, {} MiB; readiness probe on /health)",
                names::scheduler(name),
                s_size.cpus,
                s_size.memory_mib
            ));
            let mut exposure = String::new();
            if self.options.service_type == crate::ServiceType::LoadBalancer {
                exposure = format!(
                    "; loadBalancerSourceRanges {}",
                    self.options.allow_cidrs.join(",")
                );
                if spec.private {
                    let keys: Vec<&str> = crate::objects::INTERNAL_LB_ANNOTATIONS
                        .iter()
                        .map(|(k, _)| *k)
                        .collect();
                    exposure.push_str(&format!(
                        "; an internal load balancer asked for with {}",
                        keys.join(", ")
                    ));
                }
            }
            r.push(format!(
                "Service {} ({}, ports {} and {}{exposure})",
                names::scheduler(name),
                self.options.service_type.as_str(),
                bootstrap::SCHEDULER_PORT,
                bootstrap::DASHBOARD_PORT
            ));
            r.push(format!(
                "{} worker Pod(s) {}-worker-<i> ({} CPU, {} MiB each)",
                spec.workers, name, w_size.cpus, w_size.memory_mib
            ));
        }
        let placeholder = bootstrap::scheduler_address(
            bootstrap::scheme(spec),
            "<the scheduler Service's cluster IP>",
        );
        let owner = objects::owner_ref(&names::root(name), "<root uid>");
        if self.options.operator {
            let dc = self.dask_cluster(ctx, &owner)?;
            plan.bootstraps.push(RenderedBootstrap {
                role: Role::Scheduler,
                format: "DaskCluster (JSON)".into(),
                text: serde_json::to_string_pretty(&dc).unwrap_or_default(),
            });
            return Ok(plan);
        }
        for (role, node) in [(Role::Scheduler, "scheduler"), (Role::Worker, "worker-0")] {
            let pod = self.render_pod(ctx, role, node, &placeholder, &owner)?;
            plan.bootstraps.push(RenderedBootstrap {
                role,
                format: "Pod (JSON)".into(),
                text: serde_json::to_string_pretty(&pod).unwrap_or_default(),
            });
        }
        plan.notes.push(format!(
            "pods end by themselves at the TTL (activeDeadlineSeconds), labelled {}={name}",
            tags::CLUSTER
        ));
        if !self.in_cluster
            && !self.options.private
            && self.options.service_type == crate::ServiceType::ClusterIP
        {
            plan.notes.push(
                "the scheduler is reached from this machine through a port-forward (`clusterctl dashboard` holds one open)".into(),
            );
        }
        Ok(plan)
    }
}

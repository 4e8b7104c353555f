//! The `kubernetes` provider: a Dask cluster as pods in a kube context and namespace.
//!
//! Per cluster: a root ConfigMap `NAME-cluster` that owns everything else through
//! `ownerReferences` (deleting it lets the API server's garbage collector remove the rest), a
//! Secret `NAME-files` with the nodes' files (TLS material, the TTL preload) mounted read-only
//! into the pods, the scheduler Pod with a readiness probe on `/health`, its Service (ClusterIP
//! by default), and one Pod per worker, so `scale` retires and removes exactly the workers it
//! chose. Everything carries clusterctl's labels and is found by them.
//!
//! The TTL holds without clusterctl: every pod has `activeDeadlineSeconds` (the kubelet kills
//! it at the expiry plus the entry script's grace), the scheduler's preload closes the cluster
//! at the expiry and after the idle timeout, and workers exit at their death timeout.
//!
//! Outside the cluster, a ClusterIP scheduler is reached through the API server's port-forward
//! ([`tunnel`]); `clusterctl dashboard` holds one open.

mod doctor;
mod errors;
mod nodes;
pub mod objects;
mod operator;
pub mod options;
mod plan;
pub mod pods;
mod teardown;
pub mod tunnel;

use std::time::Duration;

use async_trait::async_trait;
use clusterctl_core::{
    Error, Result,
    model::{
        ClusterName, ClusterSummary, Endpoints, Node, ProviderKind, Role, summarize_with_claims,
    },
    provider::{
        ClusterProvider, LaunchContext, LocalPorts, NodeLog, Plan, Reach, SchedulerLaunch,
        WorkerBatch,
    },
};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};
pub use options::{KubernetesOptions, ServiceType};

/// How long one API request may go without an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The Kubernetes provider.
#[derive(Clone)]
pub struct KubernetesProvider {
    client: Client,
    namespace: String,
    /// The context's name, or `in-cluster`.
    context: String,
    in_cluster: bool,
    options: KubernetesOptions,
}

impl std::fmt::Debug for KubernetesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesProvider")
            .field("context", &self.context)
            .field("namespace", &self.namespace)
            .field("options", &self.options)
            .finish()
    }
}

impl KubernetesProvider {
    /// Build from the kubeconfig (`KUBECONFIG` or `~/.kube/config`, `--context`), or from the
    /// in-cluster configuration when there is no kubeconfig and clusterctl runs in a pod.
    pub async fn from_env(options: KubernetesOptions) -> Result<Self> {
        let (mut config, context, in_cluster) = match (Kubeconfig::read(), &options.context) {
            (Ok(kc), chosen) => {
                let name = chosen.clone().or_else(|| kc.current_context.clone());
                if let Some(c) = chosen
                    && !kc.contexts.iter().any(|n| &n.name == c)
                {
                    let known: Vec<&str> = kc.contexts.iter().map(|n| n.name.as_str()).collect();
                    return Err(Error::invalid(
                        "--context",
                        c,
                        "no such context in the kubeconfig",
                        Some(format!("known contexts: {}", known.join(", "))),
                    ));
                }
                let opts = KubeConfigOptions {
                    context: chosen.clone(),
                    ..Default::default()
                };
                let config = Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|e| Error::Unauthenticated {
                        provider: ProviderKind::Kubernetes,
                        message: format!("the kubeconfig could not be used: {e}"),
                    })?;
                (config, name.unwrap_or_else(|| "default".into()), false)
            }
            (Err(e), Some(c)) => {
                return Err(Error::invalid(
                    "--context",
                    c,
                    format!("no kubeconfig could be read ({e})"),
                    Some("set KUBECONFIG or create ~/.kube/config".into()),
                ));
            }
            (Err(kubeconfig), None) => match Config::incluster() {
                Ok(c) => (c, "in-cluster".to_string(), true),
                Err(incluster) => {
                    return Err(Error::Unauthenticated {
                        provider: ProviderKind::Kubernetes,
                        message: format!(
                            "no kubeconfig ({kubeconfig}) and not running in a cluster ({incluster})"
                        ),
                    });
                }
            },
        };
        config.read_timeout = Some(READ_TIMEOUT);
        let namespace = options
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| Error::Provider {
            provider: ProviderKind::Kubernetes,
            operation: "build the API client".into(),
            message: e.to_string(),
        })?;
        Ok(KubernetesProvider {
            client,
            namespace,
            context,
            in_cluster,
            options,
        })
    }

    /// The namespace clusters are made in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn pods_in(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Open a port-forward tunnel to the cluster's scheduler on the given local ports.
    pub async fn tunnel(
        &self,
        scheduler: &Node,
        local: LocalPorts,
    ) -> Result<(Endpoints, tunnel::Tunnel)> {
        let (namespace, pod) =
            pods::split_id(&scheduler.id).unwrap_or((&self.namespace, &scheduler.id));
        let protocol = clusterctl_core::tags::protocol(&scheduler.tags).to_string();
        tunnel::open(self.pods_in(namespace), pod, &protocol, local).await
    }
}

#[async_trait]
impl ClusterProvider for KubernetesProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Kubernetes
    }

    fn pinned_options(&self, given: &serde_json::Value) -> serde_json::Value {
        let mut o = given.clone();
        if let Some(map) = o.as_object_mut() {
            if !self.in_cluster {
                map.insert("context".into(), self.context.clone().into());
            }
            map.insert("namespace".into(), self.namespace.clone().into());
        }
        o
    }

    fn locate_flags(&self) -> Vec<String> {
        let mut flags = vec!["--provider".to_string(), "kubernetes".into()];
        if !self.in_cluster {
            flags.extend(["--context".to_string(), self.context.clone()]);
        }
        flags.extend(["--namespace".to_string(), self.namespace.clone()]);
        flags
    }

    fn location(&self) -> String {
        if self.options.all_namespaces {
            format!("{} (all namespaces)", self.context)
        } else {
            format!("{}/{}", self.context, self.namespace)
        }
    }

    async fn plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        self.make_plan(ctx).await
    }

    /// Lists are consistent reads (etcd quorum), and a pod created by a launch racing the
    /// teardown is owned by the root ConfigMap, which `down` deletes: the garbage collector
    /// removes it. No second listing is needed to believe an empty one.
    fn listing_is_authoritative(&self) -> bool {
        true
    }

    async fn doctor(&self, ctx: &LaunchContext<'_>) -> Vec<clusterctl_core::doctor::Check> {
        self.doctor_checks(ctx).await
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        self.create_supporting(ctx).await
    }

    async fn launch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        self.start_scheduler(ctx).await
    }

    async fn worker_facing_address(
        &self,
        ctx: &LaunchContext<'_>,
        _scheduler: &Node,
    ) -> Result<Option<String>> {
        self.service_address(ctx.spec).await
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
        self.find_nodes(cluster).await
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterSummary>> {
        let (nodes, roots) = tokio::try_join!(self.find_nodes(None), self.root_labels())?;
        Ok(summarize_with_claims(nodes, roots))
    }

    async fn endpoints(&self, scheduler: &Node, _private: bool) -> Result<Endpoints> {
        self.published_endpoints(scheduler).await
    }

    async fn reach(
        &self,
        scheduler: &Node,
        published: &Endpoints,
        local: LocalPorts,
    ) -> Result<Reach> {
        let service_type = self.service_type_of(scheduler).await?;
        let direct =
            self.in_cluster || self.options.private || service_type != ServiceType::ClusterIP;
        if direct {
            return Ok(Reach::direct(published.clone()));
        }
        let (endpoints, tunnel) = self.tunnel(scheduler, local).await?;
        Ok(Reach::tunnel(
            endpoints,
            "a port-forward through the Kubernetes API server",
            tunnel,
        ))
    }

    async fn set_worker_count(&self, ctx: &LaunchContext<'_>, count: u32) -> Result<bool> {
        if !self.operator_mode() {
            return Ok(false);
        }
        self.set_replicas(&ctx.spec.name, count).await?;
        Ok(true)
    }

    async fn terminate_nodes(&self, cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        self.delete_nodes(cluster, nodes).await
    }

    async fn cleanup(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        self.delete_supporting(cluster).await
    }

    async fn logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>> {
        self.node_logs(cluster, role, tail, max_nodes).await
    }
}

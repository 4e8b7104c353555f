//! `--k8s-operator`: the cluster as a `DaskCluster` (`kubernetes.dask.org/v1`) of the Dask
//! Kubernetes operator instead of pods clusterctl makes itself.
//!
//! The root ConfigMap and the files Secret are clusterctl's as always; the DaskCluster is owned
//! by the root, and the operator makes the scheduler pod, its Service and the worker pods from
//! the pod specs clusterctl renders (the same container, files, probe, deadline and labels).
//! Workers are scaled through `spec.worker.replicas`; on the way down the operator retires
//! workers through the scheduler itself, so clusterctl only sets the count.

use std::time::Duration;

use clusterctl_core::{
    ClusterSpec, Error, Result, bootstrap,
    model::{ClusterName, Node, Role},
    provider::{LaunchContext, SchedulerLaunch, WorkerBatch},
    tags,
    wait::{Deadline, Interval, Poll, poll_until},
};
use kube::{
    Api,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::{
    KubernetesProvider,
    errors::{self, map_for},
    objects::{self, names},
};

/// The operator's API group and version.
pub const GROUP_VERSION: &str = "kubernetes.dask.org/v1";
/// How long to wait for the operator to make the pods it was asked for.
const OPERATOR_REACTION: Duration = Duration::from_secs(120);
/// The operator's worker name variable, set in each worker pod it makes.
const WORKER_NAME_VAR: &str = "$(DASK_WORKER_NAME)";

/// The `daskclusters` resource.
pub fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubernetes.dask.org", "v1", "DaskCluster"),
        "daskclusters",
    )
}

/// The address workers dial: the Service the operator makes, by its cluster DNS name.
fn scheduler_dns(spec: &ClusterSpec, namespace: &str) -> String {
    bootstrap::scheduler_address(
        bootstrap::scheme(spec),
        &format!(
            "{}.{namespace}.svc.cluster.local",
            names::scheduler(&spec.name)
        ),
    )
}

impl KubernetesProvider {
    fn dask_clusters(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource())
    }

    /// Refuse `--k8s-operator` when the operator's resource is not installed.
    pub(crate) async fn check_operator(&self) -> Result<()> {
        let missing = || {
            Error::invalid(
                "--k8s-operator",
                &self.context,
                format!("the Dask Kubernetes operator's DaskCluster resource ({GROUP_VERSION}) is not installed in this cluster"),
                Some("install the operator (`helm install --repo https://helm.dask.org --create-namespace -n dask-operator --generate-name dask-kubernetes-operator`), or drop `--k8s-operator`".into()),
            )
        };
        match self.client.list_api_group_resources(GROUP_VERSION).await {
            Ok(list) if list.resources.iter().any(|r| r.name == "daskclusters") => Ok(()),
            Ok(_) => Err(missing()),
            Err(e) if errors::is_not_found(&e) => Err(missing()),
            Err(e) => Err(errors::map(&format!("discover {GROUP_VERSION}"), e)),
        }
    }

    /// The DaskCluster clusterctl would create (replicas 0: workers come with `launch_workers`).
    pub(crate) fn dask_cluster(
        &self,
        ctx: &LaunchContext<'_>,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<serde_json::Value> {
        let spec = ctx.spec;
        let address = scheduler_dns(spec, &self.namespace);
        let pod_spec = |role: Role, node: &str| -> Result<serde_json::Value> {
            let pod = self.render_pod(ctx, role, node, &address, owner)?;
            Ok(serde_json::to_value(pod.spec).unwrap_or_default())
        };
        let labels = |role: Role| {
            let mut l = objects::node_labels(spec, role, "");
            // Worker pods are named by the operator, so their node name is the pod's name.
            l.remove(tags::NODE);
            l
        };
        let ports = json!([
            {"name": objects::PORT_COMM, "port": bootstrap::SCHEDULER_PORT, "targetPort": objects::PORT_COMM, "protocol": "TCP"},
            {"name": objects::PORT_DASHBOARD, "port": bootstrap::DASHBOARD_PORT, "targetPort": objects::PORT_DASHBOARD, "protocol": "TCP"},
        ]);
        let mut body = json!({
            "apiVersion": GROUP_VERSION,
            "kind": "DaskCluster",
            "metadata": {
                "name": spec.name.as_str(),
                "namespace": self.namespace,
                "labels": objects::cluster_labels(spec),
                "annotations": {objects::OWNER_ANNOTATION: spec.owner},
                "ownerReferences": [owner],
            },
            "spec": {
                "scheduler": {
                    "metadata": {"labels": labels(Role::Scheduler)},
                    "spec": pod_spec(Role::Scheduler, "scheduler")?,
                    "service": {
                        "type": "ClusterIP",
                        "selector": {"dask.org/cluster-name": spec.name.as_str(), "dask.org/component": "scheduler"},
                        "ports": ports,
                    },
                },
                "worker": {
                    "replicas": 0,
                    "metadata": {"labels": labels(Role::Worker)},
                    "spec": pod_spec(Role::Worker, WORKER_NAME_VAR)?,
                },
            },
        });
        if !spec.idle_timeout.is_zero() {
            body["spec"]["idleTimeout"] = json!(spec.idle_timeout.as_secs());
        }
        Ok(body)
    }

    /// Create the DaskCluster and wait until the operator made the scheduler pod.
    pub(crate) async fn start_operator_cluster(
        &self,
        ctx: &LaunchContext<'_>,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<SchedulerLaunch> {
        let spec = ctx.spec;
        let body = self.dask_cluster(ctx, owner)?;
        let object: DynamicObject = serde_json::from_value(body).map_err(|e| Error::Runtime {
            message: format!("the DaskCluster object: {e}"),
            hint: None,
        })?;
        self.dask_clusters()
            .create(&PostParams::default(), &object)
            .await
            .map_err(map_for(format!("create daskcluster {}", spec.name)))?;
        let node = poll_until(
            "waiting for the operator to make the scheduler pod",
            Deadline::after(OPERATOR_REACTION),
            Interval::FAST,
            || async {
                let nodes = self.find_nodes(Some(&spec.name)).await?;
                Ok(
                    match nodes.into_iter().find(|n| n.role == Role::Scheduler) {
                        Some(n) => Poll::Ready(n),
                        None => Poll::Pending("no scheduler pod yet".into()),
                    },
                )
            },
        )
        .await?;
        Ok(SchedulerLaunch {
            node,
            address: Some(scheduler_dns(spec, &self.namespace)),
        })
    }

    async fn replicas(&self, cluster: &ClusterName) -> Result<u32> {
        let dc = self
            .dask_clusters()
            .get(cluster.as_str())
            .await
            .map_err(map_for(format!("get daskcluster {cluster}")))?;
        Ok(dc.data["spec"]["worker"]["replicas"].as_u64().unwrap_or(0) as u32)
    }

    /// Set `spec.worker.replicas`.
    pub(crate) async fn set_replicas(&self, cluster: &ClusterName, replicas: u32) -> Result<()> {
        let patch = json!({"spec": {"worker": {"replicas": replicas}}});
        self.dask_clusters()
            .patch(
                cluster.as_str(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(map_for(format!("scale daskcluster {cluster}")))?;
        Ok(())
    }

    /// More workers: raise the replicas by the batch and wait until the operator made the pods.
    pub(crate) async fn add_operator_workers(
        &self,
        cluster: &ClusterName,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let before: Vec<String> = self
            .alive_workers(cluster)
            .await?
            .into_iter()
            .map(|n| n.id)
            .collect();
        let target = self.replicas(cluster).await? + batch.count;
        self.set_replicas(cluster, target).await?;
        poll_until(
            "waiting for the operator to make the worker pods",
            Deadline::after(OPERATOR_REACTION),
            Interval::FAST,
            || async {
                let alive = self.alive_workers(cluster).await?;
                if alive.len() >= target as usize {
                    return Ok(Poll::Ready(
                        alive
                            .into_iter()
                            .filter(|n| !before.contains(&n.id))
                            .collect(),
                    ));
                }
                Ok(Poll::Pending(format!(
                    "{} of {target} worker pods",
                    alive.len()
                )))
            },
        )
        .await
    }

    async fn alive_workers(&self, cluster: &ClusterName) -> Result<Vec<Node>> {
        Ok(self
            .find_nodes(Some(cluster))
            .await?
            .into_iter()
            .filter(|n| n.role == Role::Worker && n.state.is_alive())
            .collect())
    }

    /// Delete the cluster's DaskCluster, if the resource exists in this cluster at all.
    pub(crate) async fn delete_dask_cluster(&self, cluster: &ClusterName) -> Result<()> {
        match self
            .dask_clusters()
            .delete(cluster.as_str(), &kube::api::DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if errors::is_not_found(&e) => Ok(()),
            Err(e) => Err(errors::map(&format!("delete daskcluster {cluster}"), e)),
        }
    }

    /// DaskClusters labelled for `cluster` (none where the resource is not installed).
    pub(crate) async fn dask_cluster_leftovers(
        &self,
        cluster: &ClusterName,
    ) -> Result<Vec<String>> {
        let lp = kube::api::ListParams::default().labels(&objects::selector(Some(cluster), None));
        match self.dask_clusters().list(&lp).await {
            Ok(l) => Ok(l
                .items
                .into_iter()
                .map(|o| format!("daskcluster/{}", o.metadata.name.unwrap_or_default()))
                .collect()),
            Err(e) if errors::is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(errors::map("list daskclusters", e)),
        }
    }

    /// Whether this provider was told to use the operator (kept in the record's options).
    pub(crate) fn operator_mode(&self) -> bool {
        self.options.operator
    }
}

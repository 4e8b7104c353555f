//! Removing a cluster: pods (and, with the scheduler, the root, whose deletion lets the garbage
//! collector remove every owned object), then whatever still carries the cluster's labels, the
//! namespace clusterctl created for it, and a final check that nothing is left.

use std::time::Duration;

use clusterctl_core::{
    Result,
    model::{ClusterName, Node, Role},
    wait::{Deadline, Interval, Poll, poll_until},
};
use futures_util::future::try_join_all;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::{
    Api,
    api::{DeleteParams, ListParams},
    runtime::wait::{await_condition, conditions},
};

use crate::{
    KubernetesProvider,
    errors::{self, map_for},
    objects::{self, CREATED_NAMESPACE, names},
    pods,
};

/// Seconds a deleted pod gets to stop before the kubelet kills it.
const POD_GRACE_SECONDS: u32 = 5;
/// How long `down` waits for the garbage collector and the namespace.
const GONE_TIMEOUT: Duration = Duration::from_secs(300);

async fn delete_opt<K>(api: &Api<K>, kind: &str, name: &str) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(e) if errors::is_not_found(&e) => Ok(()),
        Err(e) => Err(errors::map(&format!("delete {kind} {name}"), e)),
    }
}

/// Delete every object of `api` that `lp` lists.
async fn delete_listed<K>(api: &Api<K>, kind: &str, lp: &ListParams) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for o in api
        .list(lp)
        .await
        .map_err(map_for(format!("list {kind}s")))?
    {
        delete_opt(api, kind, o.meta().name.as_deref().unwrap_or_default()).await?;
    }
    Ok(())
}

impl KubernetesProvider {
    /// Delete the pods of these nodes; with the scheduler among them, delete the root first so
    /// nothing of the cluster outlives this call for long even if clusterctl stops here.
    pub(crate) async fn delete_nodes(&self, cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        let whole = nodes.iter().any(|n| n.role == Role::Scheduler);
        let roots = self.api::<ConfigMap>();
        let root = names::root(cluster);
        if whole {
            let mode = roots
                .get_opt(&root)
                .await
                .map_err(map_for(format!("get configmap {root}")))?
                .and_then(|r| r.data?.get(objects::MODE_KEY).cloned());
            // The operator would remake deleted pods while its DaskCluster exists.
            if self.operator_mode() || mode.as_deref() == Some(objects::MODE_OPERATOR) {
                self.delete_dask_cluster(cluster).await?;
            }
        }
        // A short grace: workers being removed were retired first (or the whole cluster goes),
        // and a Dask worker told to stop while its scheduler closes can hang in its own close.
        let quick = DeleteParams {
            grace_period_seconds: Some(POD_GRACE_SECONDS),
            ..DeleteParams::background()
        };
        try_join_all(nodes.iter().map(|n| {
            let quick = &quick;
            async move {
                let (ns, pod) = pods::split_id(&n.id).unwrap_or((&self.namespace, &n.id));
                match self.pods_in(ns).delete(pod, quick).await {
                    Ok(_) => Ok(()),
                    Err(e) if errors::is_not_found(&e) => Ok(()),
                    Err(e) => Err(errors::map(&format!("delete pod {pod}"), e)),
                }
            }
        }))
        .await?;
        // Then the root: the garbage collector removes whatever else it owns, even if
        // clusterctl stops right here.
        if whole {
            delete_opt(&roots, "configmap", &root).await?;
        }
        Ok(())
    }

    /// After the pods are gone: the root, anything else labelled for the cluster, and the
    /// namespace if clusterctl created it. Returns what is still there.
    pub(crate) async fn delete_supporting(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        let roots = self.api::<ConfigMap>();
        let root = names::root(cluster);
        if let Some(r) = roots
            .get_opt(&root)
            .await
            .map_err(map_for(format!("get configmap {root}")))?
        {
            delete_opt(&roots, "configmap", &root).await?;
            // Watch the root until it is gone (the garbage collector acts once it is).
            if let Some(uid) = r.metadata.uid {
                let gone = await_condition(roots.clone(), &root, conditions::is_deleted(&uid));
                let _ = tokio::time::timeout(Duration::from_secs(60), gone).await;
            }
        }
        let deadline = Deadline::after(GONE_TIMEOUT);
        poll_until(
            "waiting for the cluster's objects to be deleted",
            deadline,
            Interval::CLOUD,
            || async {
                let left = self.leftovers(cluster, false).await?;
                if left.is_empty() {
                    return Ok(Poll::Ready(()));
                }
                // What the garbage collector has not removed (objects made without an owner, or
                // a collector that is behind) is deleted directly.
                self.delete_labelled(cluster).await?;
                Ok(Poll::Pending(format!("still there: {}", left.join(", "))))
            },
        )
        .await?;
        self.delete_created_namespace(cluster, deadline).await?;
        self.leftovers(cluster, true).await
    }

    async fn delete_labelled(&self, cluster: &ClusterName) -> Result<()> {
        let lp = ListParams::default().labels(&objects::selector(Some(cluster), None));
        delete_listed(&self.api::<Service>(), "service", &lp).await?;
        delete_listed(&self.api::<Secret>(), "secret", &lp).await?;
        delete_listed(&self.api::<ConfigMap>(), "configmap", &lp).await?;
        delete_listed(&self.api::<Pod>(), "pod", &lp).await
    }

    /// Everything in the namespace still labelled for `cluster`, as `kind/name` (and, with
    /// `namespace`, the namespace itself when clusterctl created it and no one else uses it).
    async fn leftovers(&self, cluster: &ClusterName, namespace: bool) -> Result<Vec<String>> {
        let lp = ListParams::default().labels(&objects::selector(Some(cluster), None));
        let mut left = Vec::new();
        let names_of = |kind: &str, metas: Vec<Option<String>>| {
            metas
                .into_iter()
                .map(|n| format!("{kind}/{}", n.unwrap_or_default()))
                .collect::<Vec<_>>()
        };
        let ns_gone = |e: &kube::Error| errors::is_not_found(e);
        macro_rules! collect {
            ($t:ty, $kind:literal) => {
                match self.api::<$t>().list(&lp).await {
                    Ok(l) => left.extend(names_of(
                        $kind,
                        l.items.into_iter().map(|o| o.metadata.name).collect(),
                    )),
                    Err(e) if ns_gone(&e) => {}
                    Err(e) => return Err(errors::map(concat!("list ", $kind, "s"), e)),
                }
            };
        }
        collect!(Pod, "pod");
        collect!(Service, "service");
        collect!(Secret, "secret");
        collect!(ConfigMap, "configmap");
        if self.operator_mode() {
            left.extend(self.dask_cluster_leftovers(cluster).await?);
        }
        let nss: Api<Namespace> = Api::all(self.client.clone());
        if namespace
            && let Some(ns) = nss
                .get_opt(&self.namespace)
                .await
                .map_err(map_for(format!("get namespace {}", self.namespace)))?
            && creator(&ns).is_some()
            && self.tenants().await?.is_empty()
        {
            left.push(format!("namespace/{}", self.namespace));
        }
        Ok(left)
    }

    /// What else lives in the namespace (pods, services, config maps, secrets), as
    /// `kind/name`, besides what Kubernetes puts in every namespace. Called once this cluster's
    /// own objects are gone, so anything listed belongs to someone else.
    async fn tenants(&self) -> Result<Vec<String>> {
        let lp = ListParams::default();
        let mut found = Vec::new();
        macro_rules! collect {
            ($t:ty, $kind:literal) => {
                match self.api::<$t>().list(&lp).await {
                    Ok(l) => found.extend(
                        l.items
                            .into_iter()
                            .filter_map(|o| o.metadata.name)
                            .filter(|n| !is_default_object($kind, n))
                            .map(|n| format!("{}/{n}", $kind)),
                    ),
                    Err(e) if errors::is_not_found(&e) => {}
                    Err(e) => return Err(errors::map(concat!("list ", $kind, "s"), e)),
                }
            };
        }
        collect!(Pod, "pod");
        collect!(Service, "service");
        collect!(ConfigMap, "configmap");
        collect!(Secret, "secret");
        Ok(found)
    }

    /// Delete the namespace if clusterctl created it (for this cluster or another one) and
    /// nothing else lives in it any more, and wait until it is gone. A namespace made with
    /// `--create-namespace` may be shared (a config file naming one namespace for every CI job):
    /// the last cluster to leave deletes it, never one that others still use.
    async fn delete_created_namespace(
        &self,
        _cluster: &ClusterName,
        deadline: Deadline,
    ) -> Result<()> {
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let Some(ns) = nss
            .get_opt(&self.namespace)
            .await
            .map_err(map_for(format!("get namespace {}", self.namespace)))?
        else {
            return Ok(());
        };
        if creator(&ns).is_none() || !self.tenants().await?.is_empty() {
            return Ok(());
        }
        delete_opt(&nss, "namespace", &self.namespace).await?;
        poll_until(
            "waiting for the namespace to be deleted",
            deadline,
            Interval::CLOUD,
            || async {
                Ok(
                    match nss
                        .get_opt(&self.namespace)
                        .await
                        .map_err(map_for(format!("get namespace {}", self.namespace)))?
                    {
                        None => Poll::Ready(()),
                        Some(_) => {
                            Poll::Pending(format!("namespace {} terminating", self.namespace))
                        }
                    },
                )
            },
        )
        .await
    }
}

/// The cluster for which clusterctl created `ns`, if it did.
fn creator(ns: &Namespace) -> Option<&str> {
    ns.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CREATED_NAMESPACE))
        .map(String::as_str)
}

/// Whether `name` is an object Kubernetes itself puts in every namespace.
fn is_default_object(kind: &str, name: &str) -> bool {
    kind == "configmap" && name == "kube-root-ca.crt"
}

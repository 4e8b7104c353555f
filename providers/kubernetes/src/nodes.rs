//! Creating and finding the cluster's objects: the namespace, root, files Secret, scheduler Pod
//! and Service, worker Pods; the nodes found by label; the endpoints; the logs.

use std::collections::BTreeMap;

use clusterctl_core::{
    ClusterSpec, Error, Result,
    bootstrap::{
        self, BootFile, BootLayout, DASHBOARD_PORT, SCHEDULER_PORT, scheduler_intent, worker_intent,
    },
    container::{ContainerBoot, render_container},
    model::{
        ClusterName, Endpoints, Node, NodeSize, NodeState, ProviderKind, Role, claim_held,
        launch_started, now_epoch,
    },
    provider::{LaunchContext, NodeLog, SchedulerLaunch, WorkerBatch, last_lines},
    tags,
    wait::{Deadline, Interval, Poll, poll_until},
};
use futures_util::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    api::core::v1::{ConfigMap, Event, Namespace, Pod, Secret, Service},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api,
    api::{ListParams, LogParams, PostParams},
};

use crate::{
    KubernetesProvider, ServiceType,
    errors::{self, map_for},
    objects::{self, FILES_ROOT, PodInput, PodSize, names},
    options::{DEFAULT_SCHEDULER, DEFAULT_WORKER},
    pods,
};

/// Pod creations in flight at once when starting many workers.
const LAUNCH_CONCURRENCY: usize = 8;

/// How the node runs in a pod: the image's `dask`, files from the Secret volume, bound to the
/// pod's address, no nanny (the kubelet supervises the container and enforces its memory limit).
pub(crate) fn layout() -> BootLayout {
    BootLayout {
        dask: vec!["dask".into()],
        files_root: FILES_ROOT.into(),
        bind_host: "0.0.0.0".into(),
        scheduler_port: SCHEDULER_PORT,
        dashboard_port: DASHBOARD_PORT,
        nanny: false,
    }
}

/// The scheduler's and the workers' pod sizes.
pub(crate) fn sizes(spec: &ClusterSpec) -> (PodSize, PodSize) {
    let size = |s: &NodeSize, d: (u32, u64)| PodSize {
        cpus: s.cpus.unwrap_or(d.0),
        memory_mib: s.memory_mib.unwrap_or(d.1),
    };
    (
        size(&spec.scheduler_size, DEFAULT_SCHEDULER),
        size(&spec.worker_size, DEFAULT_WORKER),
    )
}

/// The container form of a node's intent, and the files it mounts from the Secret.
pub(crate) fn boot(
    ctx: &LaunchContext<'_>,
    role: Role,
    node: &str,
    scheduler_address: &str,
) -> Result<(ContainerBoot, Vec<BootFile>)> {
    let (_, worker) = sizes(ctx.spec);
    let mut spec = ctx.spec.clone();
    // Dask's threads and memory limit match what the pod asks of Kubernetes.
    spec.worker_size = NodeSize {
        cpus: Some(worker.cpus),
        memory_mib: Some(worker.memory_mib),
    };
    let mut intent = match role {
        Role::Scheduler => scheduler_intent(&spec, &layout(), ctx.tls),
        Role::Worker => {
            let mut i = worker_intent(&spec, &layout(), ctx.tls, scheduler_address, Some(node));
            i.env
                .insert("DASK_SCHEDULER_ADDRESS".into(), scheduler_address.into());
            i
        }
    };
    let files = std::mem::take(&mut intent.files);
    Ok((render_container(&intent, FILES_ROOT)?, files))
}

fn kind_err(operation: String, message: impl Into<String>) -> Error {
    Error::Provider {
        provider: ProviderKind::Kubernetes,
        operation,
        message: message.into(),
    }
}

impl KubernetesProvider {
    /// The Pod of one node: its boot intent as the container, its role's files mounted from the
    /// Secret, its size, owned by the root.
    pub(crate) fn render_pod(
        &self,
        ctx: &LaunchContext<'_>,
        role: Role,
        node: &str,
        scheduler_address: &str,
        owner: &OwnerReference,
    ) -> Result<Pod> {
        // With the operator, its `idleTimeout` ends an idle cluster (it deletes the DaskCluster);
        // a scheduler closing itself first would only be restarted by its Deployment.
        let mut operator_spec = ctx.spec.clone();
        operator_spec.idle_timeout = std::time::Duration::ZERO;
        let operator_ctx = LaunchContext {
            spec: &operator_spec,
            ..*ctx
        };
        let ctx = if self.operator_mode() {
            &operator_ctx
        } else {
            ctx
        };
        let (mut b, files) = boot(ctx, role, node, scheduler_address)?;
        if self.operator_mode() {
            // The operator sets the workers' scheduler address itself.
            b.env.remove("DASK_SCHEDULER_ADDRESS");
        }
        let (s, w) = sizes(ctx.spec);
        let mut pod = objects::node_pod(&PodInput {
            spec: ctx.spec,
            namespace: &self.namespace,
            role,
            node,
            boot: &b,
            files: &files,
            size: if role == Role::Scheduler { s } else { w },
            owner,
        })?;
        if self.operator_mode()
            && let Some(spec) = pod.spec.as_mut()
        {
            // The operator runs the pod specs as Deployments, which must restart their pods and
            // may not carry a deadline.
            spec.restart_policy = Some("Always".into());
            spec.active_deadline_seconds = None;
        }
        Ok(pod)
    }

    /// The root's owner reference (the root must exist).
    async fn owner(
        &self,
        cluster: &ClusterName,
    ) -> Result<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
        let name = names::root(cluster);
        let root = self
            .api::<ConfigMap>()
            .get(&name)
            .await
            .map_err(map_for(format!("get configmap {name}")))?;
        let uid = root
            .metadata
            .uid
            .ok_or_else(|| kind_err(format!("get configmap {name}"), "the root has no uid"))?;
        Ok(objects::owner_ref(&name, &uid))
    }

    /// Namespace (when asked), root ConfigMap and files Secret.
    pub(crate) async fn create_supporting(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        let spec = ctx.spec;
        let pp = PostParams::default();
        if self.options.create_namespace {
            let nss: Api<Namespace> = Api::all(self.client.clone());
            let exists = nss
                .get_opt(&self.namespace)
                .await
                .map_err(map_for(format!("get namespace {}", self.namespace)))?
                .is_some();
            if !exists {
                match nss
                    .create(&pp, &objects::namespace(&self.namespace, spec))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if errors::is_conflict(&e) => {}
                    Err(e) => {
                        return Err(errors::map(
                            &format!("create namespace {}", self.namespace),
                            e,
                        ));
                    }
                }
            }
        }
        let root = objects::root(&self.namespace, spec, &self.options);
        let name = names::root(&spec.name);
        // The root claims the name: a second `up` of it cannot also create it.
        let created = match self.api::<ConfigMap>().create(&pp, &root).await {
            Ok(r) => r,
            Err(e) if errors::is_conflict(&e) => return Err(self.name_taken(spec).await),
            Err(e) => return Err(errors::map(&format!("create configmap {name}"), e)),
        };
        let uid = created.metadata.uid.unwrap_or_default();
        let owner = objects::owner_ref(&name, &uid);
        let mut files: BTreeMap<String, BootFile> = BTreeMap::new();
        for role in [Role::Scheduler, Role::Worker] {
            let placeholder = bootstrap::scheduler_address(bootstrap::scheme(spec), "0.0.0.0");
            let (_, f) = boot(ctx, role, "worker-0", &placeholder)?;
            for file in f {
                files.insert(objects::file_key(&file), file);
            }
        }
        let files: Vec<BootFile> = files.into_values().collect();
        let secret = objects::files_secret(&self.namespace, spec, &owner, &files);
        self.api::<Secret>()
            .create(&pp, &secret)
            .await
            .map_err(map_for(format!(
                "create secret {}",
                names::files(&spec.name)
            )))?;
        Ok(())
    }

    /// The error of an `up` whose root ConfigMap another launch created first: that launch's
    /// cluster (running, or being created) holds the name, or its `up` died and left the root,
    /// which `down` removes. Either way nothing of it is touched here.
    async fn name_taken(&self, spec: &ClusterSpec) -> Error {
        let name = names::root(&spec.name);
        let holder = match self.api::<ConfigMap>().get_opt(&name).await {
            Ok(Some(root)) => root
                .metadata
                .labels
                .and_then(|l| l.get(tags::LAUNCH).cloned()),
            _ => None,
        };
        let alive = self
            .find_nodes(Some(&spec.name))
            .await
            .map(|nodes| nodes.iter().any(|n| n.state.is_alive()))
            .unwrap_or(true);
        let held = claim_held(holder.as_deref(), alive, now_epoch());
        let started = holder
            .as_deref()
            .and_then(launch_started)
            .map(|t| format!(", started {}s ago", now_epoch().saturating_sub(t)))
            .unwrap_or_default();
        Error::NameTaken {
            name: spec.name.to_string(),
            provider: ProviderKind::Kubernetes,
            holder: format!(
                "the ConfigMap {name} in namespace {} belongs to launch {}{started}{}",
                self.namespace,
                holder.as_deref().unwrap_or("(none)"),
                match (held, alive) {
                    (_, true) => ", whose pods are running",
                    (true, false) => ", whose `up` is still creating it",
                    (false, false) =>
                        ", left by an `up` that stopped: `clusterctl down` removes it",
                }
            ),
        }
    }

    /// The scheduler Pod and its Service; the address is the Service's cluster IP.
    pub(crate) async fn start_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        let spec = ctx.spec;
        let owner = self.owner(&spec.name).await?;
        if self.operator_mode() {
            return self.start_operator_cluster(ctx, &owner).await;
        }
        let pod = self.render_pod(ctx, Role::Scheduler, "scheduler", "", &owner)?;
        let pp = PostParams::default();
        let pod_name = names::scheduler(&spec.name);
        let created = self
            .api::<Pod>()
            .create(&pp, &pod)
            .await
            .map_err(map_for(format!("create pod {pod_name}")))?;
        let service = objects::scheduler_service(&self.namespace, spec, &owner, &self.options);
        self.api::<Service>()
            .create(&pp, &service)
            .await
            .map_err(map_for(format!("create service {pod_name}")))?;
        let node = pods::to_node(&created).ok_or_else(|| {
            kind_err(
                format!("create pod {pod_name}"),
                "the pod came back without its labels",
            )
        })?;
        Ok(SchedulerLaunch {
            node,
            address: self.service_address(spec).await?,
        })
    }

    /// `tls://<cluster IP>:8786`: the address workers dial, stable for the Service's life.
    pub(crate) async fn service_address(&self, spec: &ClusterSpec) -> Result<Option<String>> {
        let name = names::scheduler(&spec.name);
        let svc = self
            .api::<Service>()
            .get_opt(&name)
            .await
            .map_err(map_for(format!("get service {name}")))?;
        Ok(svc
            .and_then(|s| s.spec?.cluster_ip)
            .filter(|ip| !ip.is_empty() && ip != "None")
            .map(|ip| bootstrap::scheduler_address(bootstrap::scheme(spec), &ip)))
    }

    /// Worker Pods `NAME-worker-<i>`, created concurrently.
    pub(crate) async fn start_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let spec = ctx.spec;
        if self.operator_mode() {
            return self.add_operator_workers(&spec.name, batch).await;
        }
        let owner = self.owner(&spec.name).await?;
        let mut pods_to_make = Vec::new();
        for node in batch.names() {
            pods_to_make.push(self.render_pod(
                ctx,
                Role::Worker,
                &node,
                scheduler_address,
                &owner,
            )?);
        }
        let api = self.api::<Pod>();
        let api = &api;
        stream::iter(pods_to_make)
            .map(|pod| async move {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let created = api
                    .create(&PostParams::default(), &pod)
                    .await
                    .map_err(map_for(format!("create pod {name}")))?;
                pods::to_node(&created).ok_or_else(|| {
                    kind_err(
                        format!("create pod {name}"),
                        "the pod came back without its labels",
                    )
                })
            })
            .buffer_unordered(LAUNCH_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The labels of every cluster's root ConfigMap in the namespace: the claims of their
    /// names, there from the first object `up` creates until `down` removes the root (the
    /// garbage collector then removes what it owns, even if clusterctl stops).
    pub(crate) async fn root_labels(&self) -> Result<Vec<BTreeMap<String, String>>> {
        let list = self
            .api::<ConfigMap>()
            .list(&ListParams::default().labels(&objects::selector(None, None)))
            .await
            .map_err(map_for("list configmaps"))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|cm| {
                let labels = cm.metadata.labels?;
                let cluster = ClusterName::new(labels.get(tags::CLUSTER)?).ok()?;
                (cm.metadata.name? == objects::names::root(&cluster)).then_some(labels)
            })
            .collect())
    }

    /// Pods of `cluster` (or of every clusterctl cluster), as nodes; failures that will not heal
    /// carry the pod's warning events. One pod listing, and one event listing per namespace
    /// holding such a failure (none while no pod fails), whatever the number of pods: this is
    /// the listing readiness polls.
    pub(crate) async fn find_nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        let api: Api<Pod> = if cluster.is_none() && self.options.all_namespaces {
            Api::all(self.client.clone())
        } else {
            self.api()
        };
        let list = api
            .list(&ListParams::default().labels(&objects::selector(cluster, None)))
            .await
            .map_err(map_for("list pods"))?;
        let mut nodes = Vec::new();
        // Nodes (by index) whose pod failed in a way its events explain.
        let mut explain: Vec<(usize, &Pod)> = Vec::new();
        for pod in &list.items {
            let Some(node) = pods::to_node(pod) else {
                continue;
            };
            let failed_phase =
                pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed");
            if matches!(node.state, NodeState::Failed(_) | NodeState::NoCapacity(_))
                && !failed_phase
            {
                explain.push((nodes.len(), pod));
            }
            nodes.push(node);
        }
        if explain.is_empty() {
            return Ok(nodes);
        }
        let mut events = self.events_of_pods(explain.iter().map(|(_, p)| *p)).await;
        for (i, pod) in explain {
            let node = &mut nodes[i];
            let (NodeState::Failed(reason) | NodeState::NoCapacity(reason)) = &node.state else {
                continue;
            };
            let reason = reason.clone();
            let events = events
                .remove(&pod_key(pod, &self.namespace))
                .unwrap_or_default();
            if reason.starts_with("unschedulable") && pods::scale_up_triggered(&events) {
                node.state = NodeState::Pending;
            } else {
                let lines = pods::event_lines(&events);
                let shown = lines[lines.len().saturating_sub(3)..].join("; ");
                if !shown.is_empty() {
                    let reason = format!("{reason} (events: {shown})");
                    node.state = match node.state {
                        NodeState::NoCapacity(_) => NodeState::NoCapacity(reason),
                        _ => NodeState::Failed(reason),
                    };
                }
            }
        }
        Ok(nodes)
    }

    /// The events of `pods`, by (namespace, pod name): one listing per namespace, of that pod's
    /// events when it is the namespace's only one, else of every pod's event in the namespace
    /// (`involvedObject.kind=Pod`), sorted out by name. A namespace whose events cannot be read
    /// gives none (the failure is still reported, without its events).
    async fn events_of_pods<'a>(
        &self,
        pods: impl Iterator<Item = &'a Pod>,
    ) -> BTreeMap<(String, String), Vec<Event>> {
        let mut by_namespace: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pod in pods {
            let (ns, name) = pod_key(pod, &self.namespace);
            by_namespace.entry(ns).or_default().push(name);
        }
        let mut out: BTreeMap<(String, String), Vec<Event>> = BTreeMap::new();
        for (ns, names) in by_namespace {
            let fields = match names.as_slice() {
                [one] => format!("involvedObject.kind=Pod,involvedObject.name={one}"),
                _ => "involvedObject.kind=Pod".to_string(),
            };
            let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
            let Ok(list) = api.list(&ListParams::default().fields(&fields)).await else {
                continue;
            };
            for e in list.items {
                let Some(name) = e.involved_object.name.clone() else {
                    continue;
                };
                if names.contains(&name) {
                    out.entry((ns.clone(), name)).or_default().push(e);
                }
            }
        }
        out
    }

    async fn pod_events(&self, pod: &Pod) -> Result<Vec<Event>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or(&self.namespace);
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let fields = format!("involvedObject.kind=Pod,involvedObject.name={name}");
        Ok(api
            .list(&ListParams::default().fields(&fields))
            .await
            .map_err(map_for(format!("list events of pod {name}")))?
            .items)
    }

    fn service_api_of(&self, scheduler: &Node) -> (Api<Service>, String) {
        let ns = pods::split_id(&scheduler.id).map_or(self.namespace.as_str(), |(ns, _)| ns);
        let cluster = scheduler
            .tags
            .get(tags::CLUSTER)
            .cloned()
            .unwrap_or_default();
        (
            Api::namespaced(self.client.clone(), ns),
            format!("{cluster}-scheduler"),
        )
    }

    async fn scheduler_service(&self, scheduler: &Node) -> Result<Service> {
        let (api, name) = self.service_api_of(scheduler);
        api.get(&name)
            .await
            .map_err(map_for(format!("get service {name}")))
    }

    /// The Service type of the scheduler's Service.
    pub(crate) async fn service_type_of(&self, scheduler: &Node) -> Result<ServiceType> {
        let svc = self.scheduler_service(scheduler).await?;
        ServiceType::parse(
            svc.spec
                .and_then(|s| s.type_)
                .as_deref()
                .unwrap_or("ClusterIP"),
        )
    }

    /// What clients dial: the load balancer, a node port, or the cluster IP (inside the
    /// cluster; from outside, [`ClusterProvider::reach`] tunnels to it).
    pub(crate) async fn published_endpoints(&self, scheduler: &Node) -> Result<Endpoints> {
        let protocol = tags::protocol(&scheduler.tags).to_string();
        let svc = self.scheduler_service(scheduler).await?;
        let spec = svc.spec.clone().unwrap_or_default();
        match spec.type_.as_deref().unwrap_or("ClusterIP") {
            "LoadBalancer" => {
                let (api, name) = self.service_api_of(scheduler);
                let host = poll_until(
                    "waiting for the load balancer's address",
                    Deadline::after(std::time::Duration::from_secs(600)),
                    Interval::CLOUD,
                    || async {
                        let s = api
                            .get(&name)
                            .await
                            .map_err(map_for(format!("get service {name}")))?;
                        let ingress = s
                            .status
                            .and_then(|st| st.load_balancer)
                            .and_then(|lb| lb.ingress)
                            .and_then(|i| i.into_iter().next());
                        Ok(match ingress.and_then(|i| i.ip.or(i.hostname)) {
                            Some(h) => Poll::Ready(h),
                            None => Poll::Pending("no ingress address yet".into()),
                        })
                    },
                )
                .await?;
                Ok(Endpoints::on_host(&protocol, &host))
            }
            "NodePort" => {
                let node_port = |port: u16| {
                    spec.ports
                        .iter()
                        .flatten()
                        .find(|p| p.port == i32::from(port))
                        .and_then(|p| p.node_port)
                };
                let (ns, pod) =
                    pods::split_id(&scheduler.id).unwrap_or((&self.namespace, &scheduler.id));
                let host_ip = self
                    .pods_in(ns)
                    .get(pod)
                    .await
                    .map_err(map_for(format!("get pod {pod}")))?
                    .status
                    .and_then(|s| s.host_ip);
                match (
                    host_ip,
                    node_port(SCHEDULER_PORT),
                    node_port(DASHBOARD_PORT),
                ) {
                    (Some(h), Some(s), Some(d)) => Ok(Endpoints {
                        scheduler_address: format!("{protocol}://{h}:{s}"),
                        dashboard_url: format!("http://{h}:{d}/status"),
                    }),
                    _ => Err(kind_err(
                        format!("get service {}", svc.metadata.name.unwrap_or_default()),
                        "the NodePort Service has no node ports or the scheduler no node yet",
                    )),
                }
            }
            _ => match spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") {
                Some(ip) => Ok(Endpoints::on_host(&protocol, &ip)),
                None => Err(kind_err(
                    format!("get service {}", svc.metadata.name.unwrap_or_default()),
                    "the Service has no cluster IP",
                )),
            },
        }
    }

    /// The last `tail` lines of each pod's log, followed by its warning events.
    pub(crate) async fn node_logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>> {
        let api = self.api::<Pod>();
        let list = api
            .list(&ListParams::default().labels(&objects::selector(Some(cluster), role)))
            .await
            .map_err(map_for("list pods"))?;
        let mut out = Vec::new();
        for pod in &list.items {
            if out.len() >= max_nodes.unwrap_or(usize::MAX) {
                break;
            }
            let Some(node) = pods::to_node(pod) else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            let params = LogParams {
                container: Some(objects::CONTAINER.into()),
                tail_lines: Some(tail as i64),
                ..Default::default()
            };
            let mut lines = match api.logs(&name, &params).await {
                Ok(text) => last_lines(&text, tail),
                Err(e) => vec![format!(
                    "(no log: {})",
                    errors::map(&format!("logs of pod {name}"), e)
                )],
            };
            for e in pods::event_lines(&self.pod_events(pod).await.unwrap_or_default()) {
                lines.push(format!("[event] {e}"));
            }
            out.push(NodeLog {
                node: node.name,
                role: node.role,
                lines,
            });
        }
        out.sort_by(|a, b| {
            (a.role != Role::Scheduler, &a.node).cmp(&(b.role != Role::Scheduler, &b.node))
        });
        Ok(out)
    }
}

/// A pod's namespace (`default_ns` when the object does not say) and name.
fn pod_key(pod: &Pod, default_ns: &str) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| default_ns.to_string()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

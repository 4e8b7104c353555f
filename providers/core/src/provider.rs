//! The [`ClusterProvider`] trait: the one interface every platform implements.
//!
//! The split follows the life of a cluster, as SkyPilot's provision layer and Ray's node
//! providers do: check (`plan`), create supporting resources (`bootstrap`), start nodes
//! (`launch_scheduler`, `launch_workers`), find them by tags (`list_nodes`), reach them
//! (`endpoints`), read them (`logs`), and remove them (`terminate_nodes`, `cleanup`). Methods are
//! idempotent and keep no state between calls: everything a later call needs is on the platform,
//! in the tags of [`crate::tags`], so `down` works after a crash and from another machine.
//!
//! The orchestration (ordering, parallel boot, readiness, rollback) lives once in
//! [`crate::lifecycle`]; a provider only does what its platform requires.

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    error::Result,
    lifecycle::Progress,
    model::{ClusterName, ClusterSpec, Endpoints, Node, ProviderKind, Role},
    tls::TlsBundle,
    wait::Interval,
};

/// What `up`, `scale` and `--dry-run` hand to a provider.
#[derive(Debug, Clone, Copy)]
pub struct LaunchContext<'a> {
    /// The validated spec.
    pub spec: &'a ClusterSpec,
    /// The cluster's TLS material when `spec.tls` is on.
    pub tls: Option<&'a TlsBundle>,
    /// Where to report progress and remarks (retries, runtime installation).
    pub progress: &'a dyn Progress,
}

impl Debug for dyn Progress + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// What `up` would do, for `--dry-run` and for the checks before anything is created.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// The identity the provider acts as (account, principal, user), when it has one.
    pub identity: Option<String>,
    /// Resources `up` would create, one line each.
    pub resources: Vec<String>,
    /// The rendered bootstrap of each kind of node, as the platform would receive it
    /// (private keys elided).
    pub bootstraps: Vec<RenderedBootstrap>,
    /// Anything else worth saying (e.g. "the Dask runtime will be installed first").
    pub notes: Vec<String>,
}

/// One rendered bootstrap in a [`Plan`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenderedBootstrap {
    /// Scheduler or worker.
    pub role: Role,
    /// The form the platform receives: cloud-init, a container spec, a command line.
    pub format: String,
    /// The text.
    pub text: String,
}

/// The scheduler as started by [`ClusterProvider::launch_scheduler`].
#[derive(Debug, Clone)]
pub struct SchedulerLaunch {
    /// The scheduler node.
    pub node: Node,
    /// The address workers dial (e.g. `tls://10.0.1.5:8786`), when the platform already told
    /// it. When `None`, the lifecycle polls [`ClusterProvider::worker_facing_address`].
    pub address: Option<String>,
}

/// Which workers to start.
#[derive(Debug, Clone, Copy)]
pub struct WorkerBatch {
    /// How many.
    pub count: u32,
    /// Index of the first new worker (names are `worker-<index>` where the platform lets
    /// clusterctl name nodes).
    pub first_index: u32,
}

impl WorkerBatch {
    /// The names of the batch's workers.
    pub fn names(&self) -> Vec<String> {
        (self.first_index..self.first_index + self.count)
            .map(worker_name)
            .collect()
    }
}

/// The name of worker `index`.
pub fn worker_name(index: u32) -> String {
    format!("worker-{index}")
}

/// How this process reaches a cluster's scheduler right now: the endpoints to dial, and what keeps
/// them open. Most platforms publish endpoints that any client on the network can dial
/// ([`Reach::direct`]); Kubernetes without a load balancer is reached through a port-forward
/// that lives only as long as this value ([`Reach::tunnel`]).
#[derive(Clone)]
pub struct Reach {
    /// Where to dial.
    pub endpoints: Endpoints,
    /// How, when not directly (e.g. "port-forward through the Kubernetes API server").
    pub via: Option<String>,
    keep: Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

impl Reach {
    /// The published endpoints, dialled as they are.
    pub fn direct(endpoints: Endpoints) -> Self {
        Reach {
            endpoints,
            via: None,
            keep: None,
        }
    }

    /// Endpoints that work while `keep` lives (a tunnel's tasks, aborted when dropped).
    pub fn tunnel(
        endpoints: Endpoints,
        via: impl Into<String>,
        keep: impl std::any::Any + Send + Sync,
    ) -> Self {
        Reach {
            endpoints,
            via: Some(via.into()),
            keep: Some(std::sync::Arc::new(keep)),
        }
    }

    /// Whether the endpoints only work while this value lives.
    pub fn is_tunnel(&self) -> bool {
        self.keep.is_some()
    }
}

impl Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reach")
            .field("endpoints", &self.endpoints)
            .field("via", &self.via)
            .finish()
    }
}

/// Local ports a tunnel listens on (`0`: any free port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalPorts {
    /// For the scheduler's comm port.
    pub scheduler: u16,
    /// For the dashboard.
    pub dashboard: u16,
}

/// The log of one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeLog {
    /// The node's name.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// The last lines, oldest first.
    pub lines: Vec<String>,
}

/// The last `n` lines of `text`, oldest first: the one way every provider cuts a log tail.
pub fn last_lines(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// One platform that can run a Dask cluster.
///
/// Implementations must tag every resource they create with [`crate::tags::cluster_tags`] or
/// [`crate::tags::node_tags`] (or the platform's equivalent of tags) and find resources only by
/// those tags, never by local state. All methods are idempotent: an already-deleted resource is
/// success for the delete methods.
#[async_trait]
pub trait ClusterProvider: Send + Sync + Debug {
    /// Which platform this is.
    fn kind(&self) -> ProviderKind;

    /// Where its clusters live: a region, a kube context and namespace, or the local scope.
    fn location(&self) -> String;

    /// The provider options to keep in the local record, from those `up` was built with
    /// (`given`), with whatever the provider resolved from its environment pinned, so that later
    /// commands act on the same place even if that environment changes (a kube context switched
    /// after `up`). By default the options as given.
    fn pinned_options(&self, given: &serde_json::Value) -> serde_json::Value {
        given.clone()
    }

    /// The flags after `clusterctl down NAME` that find this provider's clusters without a
    /// local record: `--provider KIND` and, for cloud providers, `--region <location>`.
    /// Providers located otherwise (a kube context and namespace) override it.
    fn locate_flags(&self) -> Vec<String> {
        let mut flags = vec!["--provider".to_string(), self.kind().to_string()];
        if self.kind().is_remote() {
            flags.extend(["--region".to_string(), self.location()]);
        }
        flags
    }

    /// How often the lifecycle polls [`Self::list_nodes`] while it waits (nodes to stop,
    /// workers to retire, an address to appear). By default [`Interval::CLOUD`]: control planes
    /// have rate limits, and a listing costs API calls. A provider whose listing is cheap and
    /// local (the process table) polls faster.
    fn poll_interval(&self) -> Interval {
        Interval::CLOUD
    }

    /// Whether `down` may believe an empty listing at once, even of a cluster launched moments
    /// ago: the platform lists consistently, and removes by itself whatever a launch racing the
    /// teardown still creates. By default `false`: an empty listing of a young cluster is only
    /// believed when a second one, a poll interval later, is empty too (eventually consistent
    /// listings such as EC2's and DigitalOcean's).
    fn listing_is_authoritative(&self) -> bool {
        false
    }

    /// Whether a node missing from [`Self::list_nodes`] is gone: the listing shows every node
    /// from the moment its launch call returned until the node no longer exists. Readiness then
    /// takes a missing scheduler, or too few listed workers, for dead ones at once; otherwise
    /// only what a listing shows (a node stopped or failed, one that vanished for longer than
    /// the lag of the listing) is believed. By default [`Self::listing_is_authoritative`].
    fn listing_is_consistent(&self) -> bool {
        self.listing_is_authoritative()
    }

    /// The current state of `nodes` of `cluster`, looked up by their ids (ECS DescribeTasks on
    /// known task ARNs), for `down` waiting until the nodes it stopped are gone: where the
    /// platform allows, cheaper than a listing. A node the platform does not show (yet) is left
    /// out. `None` (the default): no such lookup, and `down` polls [`Self::list_nodes`] instead.
    /// With a lookup, `down` lists again only once the known nodes are terminated, to find
    /// nodes a lagging listing did not show.
    async fn node_states(
        &self,
        cluster: &ClusterName,
        nodes: &[Node],
    ) -> Result<Option<Vec<Node>>> {
        let _ = (cluster, nodes);
        Ok(None)
    }

    /// The nodes of `cluster` that `down` has to stop or wait for: its first listing, and the
    /// listing that confirms none is left once the nodes it knows are gone (where
    /// [`Self::node_states`] looks them up; the eventual-consistency guard). By default
    /// [`Self::list_nodes`]. A provider whose `cleanup` itself waits until nodes already
    /// stopping are gone, before it deletes anything they hold, may leave those out and save
    /// calls (Fargate in the cluster's own ECS cluster: only tasks desired RUNNING, one
    /// ListTasks instead of two, as DeleteCluster is refused until every task has drained).
    /// Nodes that still need a terminate call must be shown. `down`'s polls without a
    /// [`Self::node_states`] lookup use [`Self::list_nodes`], which shows stopping nodes.
    async fn list_nodes_to_stop(&self, cluster: &ClusterName) -> Result<Vec<Node>> {
        self.list_nodes(Some(cluster)).await
    }

    /// Check the spec against the platform (sizes, quotas, credentials) and describe what `up`
    /// would create. Creates nothing.
    async fn plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan>;

    /// `clusterctl doctor`: what `up` of `ctx` would need, checked without creating anything.
    /// By default the plan's checks; providers add permission checks their platform can make
    /// without side effects (a dry run, an access review).
    async fn doctor(&self, ctx: &LaunchContext<'_>) -> Vec<crate::doctor::Check> {
        let (check, _) = crate::doctor::plan_check(self, ctx).await;
        vec![check]
    }

    /// Create or reuse what the nodes need besides themselves: firewall rules, roles, log
    /// groups, namespaces, secrets, a runtime. Every created resource carries the cluster tags
    /// (with this launch's `clusterctl-launch`).
    ///
    /// First of all, it claims the cluster's name for this launch ([`ClusterSpec::launch`]),
    /// atomically where the platform allows: by creating a resource whose name is the
    /// cluster's and that a second `up` cannot also create (EC2/Fargate: the security group;
    /// Kubernetes: the root ConfigMap). When another launch holds it and
    /// [`crate::model::claim_held`] says it still does, it returns [`Error::NameTaken`] before
    /// creating or changing anything, and `up` then rolls nothing back: what carries the
    /// name is the other launch's. A claim not held (a leftover of an `up` that died) is taken
    /// over.
    ///
    /// [`ClusterSpec::launch`]: crate::model::ClusterSpec::launch
    /// [`Error::NameTaken`]: crate::Error::NameTaken
    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()>;

    /// Start the scheduler.
    async fn launch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch>;

    /// The address workers dial for this scheduler node, once the platform knows it. By
    /// default its private IP on the scheduler port (VMs and tasks); platforms that name the
    /// scheduler otherwise (a Service, the local scope) override it.
    async fn worker_facing_address(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler: &Node,
    ) -> Result<Option<String>> {
        Ok(scheduler
            .private_ip
            .as_ref()
            .map(|ip| crate::bootstrap::scheduler_address(crate::bootstrap::scheme(ctx.spec), ip)))
    }

    /// Start a batch of workers that dial `scheduler_address`, in as few platform calls as it
    /// allows. They may start before the scheduler listens: Dask workers retry.
    async fn launch_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>>;

    /// Nodes of `cluster` (or of every clusterctl cluster with `None`) found by tags. Nodes that
    /// the platform still lists as terminated may be included with that state.
    async fn list_nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>>;

    /// Every clusterctl cluster the platform holds anything of, found by tags: the clusters of
    /// [`Self::list_nodes`] and those with only supporting resources left, through the
    /// resource that claims a cluster's name ([`Self::bootstrap`]), which `up` creates first
    /// and `cleanup` removes last so that no half-made cluster is without it. `gc` judges
    /// expiry on these ([`crate::model::ClusterSummary::is_expired`]). By default the
    /// clusters of the nodes (platforms whose clusters have no supporting resources).
    async fn list_clusters(&self) -> Result<Vec<crate::model::ClusterSummary>> {
        Ok(crate::model::summarize(self.list_nodes(None).await?))
    }

    /// How a client on this machine reaches the scheduler: public or private address, a load
    /// balancer, or a tunnel the provider opens.
    async fn endpoints(&self, scheduler: &Node, private: bool) -> Result<Endpoints>;

    /// How this process reaches the scheduler whose published endpoints are `published`. By
    /// default it dials them directly; platforms whose endpoints are only reachable from inside
    /// (a Kubernetes ClusterIP Service) open a tunnel here.
    /// A tunnel listens on `local`.
    async fn reach(
        &self,
        scheduler: &Node,
        published: &Endpoints,
        local: LocalPorts,
    ) -> Result<Reach> {
        let _ = (scheduler, local);
        Ok(Reach::direct(published.clone()))
    }

    /// Set the number of workers where the platform scales them itself and retires surplus
    /// workers through the scheduler on its own (an operator's replica count). Returns `false`
    /// (the default) when the platform leaves it to clusterctl: `scale` then launches a batch,
    /// or retires the workers it chose and terminates their nodes.
    async fn set_worker_count(&self, ctx: &LaunchContext<'_>, count: u32) -> Result<bool> {
        let _ = (ctx, count);
        Ok(false)
    }

    /// Stop and delete these nodes of `cluster`. Already-gone nodes are fine.
    async fn terminate_nodes(&self, cluster: &ClusterName, nodes: &[Node]) -> Result<()>;

    /// After the nodes are gone: delete the supporting resources of `cluster`, then return a
    /// description of anything still tagged for it (empty when nothing is left).
    async fn cleanup(&self, cluster: &ClusterName) -> Result<Vec<String>>;

    /// The last `tail` lines of the logs of the nodes of `cluster` (only of `role`, if given;
    /// of at most `max_nodes` nodes, if given, so that a caller showing one node's log fetches
    /// only that), including nodes that already stopped, as far as the platform keeps their
    /// logs.
    async fn logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>>;
}

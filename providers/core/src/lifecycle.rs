//! The life of a cluster over any provider: `up` (bootstrap, parallel boot, readiness, rollback
//! on any failure or interruption) and `scale`; readiness waits are in [`crate::readiness`],
//! `down` in [`crate::teardown`]. Providers do platform work; the order, the deadlines and the guarantees
//! live here, once.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::sync::Notify;

pub use crate::readiness::wait_ready;
pub use crate::teardown::{TEARDOWN_TIMEOUT, Teardown, Tracker, down};
use crate::{
    error::{Error, Result},
    health::{Dashboard, SchedulerView},
    model::{ClusterName, Endpoints, Node, Role},
    provider::{ClusterProvider, LaunchContext, Reach, WorkerBatch},
    readiness::failed,
    wait::{Deadline, Poll, poll_until},
};

/// Phases reported while a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Creating supporting resources.
    CreatingResources,
    /// Starting the scheduler node.
    StartingScheduler,
    /// Starting the worker nodes.
    StartingWorkers,
    /// Waiting for the scheduler's health check.
    WaitingScheduler,
    /// Waiting for workers to join.
    WaitingWorkers,
    /// Retiring workers before removing them.
    RetiringWorkers,
    /// Deleting nodes and resources.
    TearingDown,
}

impl Phase {
    /// A short human description.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::CreatingResources => "creating resources",
            Phase::StartingScheduler => "starting the scheduler",
            Phase::StartingWorkers => "starting workers",
            Phase::WaitingScheduler => "waiting for the scheduler",
            Phase::WaitingWorkers => "waiting for workers to join",
            Phase::RetiringWorkers => "retiring workers",
            Phase::TearingDown => "tearing down",
        }
    }
}

/// Receives progress; the CLI draws it (spinner on a terminal, lines otherwise).
pub trait Progress: Send + Sync {
    /// A new phase began.
    fn phase(&self, phase: Phase);
    /// Workers joined so far, out of those awaited.
    fn workers(&self, joined: usize, wanted: usize);
    /// A remark worth showing (a retry, a rollback result).
    fn note(&self, message: &str);
}

/// A [`Progress`] that shows nothing.
pub struct Silent;

impl Progress for Silent {
    fn phase(&self, _: Phase) {}
    fn workers(&self, _: usize, _: usize) {}
    fn note(&self, _: &str) {}
}

/// What `up` should wait for.
#[derive(Debug, Clone, Copy)]
pub struct ReadyWait {
    /// Workers that must have joined.
    pub workers: u32,
    /// Deadline for the whole of `up` from this point.
    pub timeout: Duration,
}

/// What a successful `up` returns.
#[derive(Debug, Clone)]
pub struct Launched {
    /// How to reach the cluster (the published endpoints, recorded and printed).
    pub endpoints: Endpoints,
    /// How this process reached it for readiness (a tunnel stays open while this lives).
    pub reach: Reach,
    /// Nodes started.
    pub nodes: Vec<Node>,
    /// The scheduler's view when ready (`None` with `--no-wait`).
    pub ready: Option<SchedulerView>,
}

/// How long an interrupted `up` lets a launch call in flight return, to learn (and then remove)
/// the nodes it started.
pub const LAUNCH_GRACE: Duration = Duration::from_secs(15);

/// A request to stop `up`, set by the caller (on a signal) and honoured between platform calls.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    set: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// Ask `up` to stop and remove what it created.
    pub fn cancel(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether it was asked.
    pub fn is_cancelled(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Resolves once it is asked.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Create the cluster, wait until it is ready (unless `wait` is `None`), and on any failure, or
/// when `cancel` is set, remove everything created before returning the error
/// ([`Error::Interrupted`] when cancelled). A launch call in flight when `cancel` is set may
/// finish (up to [`LAUNCH_GRACE`]) so that its nodes are known; `tracker` keeps every node a
/// launch call returned, and the rollback terminates them even where the platform's listing
/// does not show them yet. When the rollback cannot remove everything, the error is
/// [`Error::LeftBehind`], carrying the original one.
pub async fn up(
    provider: &dyn ClusterProvider,
    ctx: &LaunchContext<'_>,
    wait: Option<ReadyWait>,
    progress: &dyn Progress,
    cancel: &Cancel,
    tracker: &Tracker,
) -> Result<Launched> {
    tracker.created(ctx.spec.created_at);
    let deadline = wait.map(|w| Deadline::after(w.timeout));
    let work = launch_and_wait(provider, ctx, wait, deadline, progress, cancel, tracker);
    tokio::pin!(work);
    let finished = tokio::select! {
        r = &mut work => Some(r),
        () = cancel.cancelled() => None,
    };
    let result = match finished {
        Some(r) => r,
        None => {
            if tracker.is_launching() {
                progress.note(&format!(
                    "waiting up to {}s for the launch call in flight to return, to remove what it started",
                    LAUNCH_GRACE.as_secs()
                ));
                let _ = tokio::time::timeout(LAUNCH_GRACE, &mut work).await;
            }
            Err(Error::Interrupted)
        }
    };
    let err = match result {
        Ok(launched) => return Ok(launched),
        // The name is another launch's: this `up` created nothing, and everything tagged with
        // the name is the other's. A rollback would destroy it.
        Err(e @ Error::NameTaken { .. }) => return Err(e),
        Err(e) => e,
    };
    if !matches!(err, Error::Interrupted) {
        progress.note(&format!("up failed ({err}); removing what was created"));
    }
    tracing::info!(
        target: "clusterctl::rollback",
        cluster = %ctx.spec.name,
        cause = %err,
        launched = tracker.known().len(),
        "rolling back"
    );
    match down(
        provider,
        &ctx.spec.name,
        tracker,
        TEARDOWN_TIMEOUT,
        progress,
    )
    .await
    {
        Ok(t) => {
            tracing::info!(
                target: "clusterctl::rollback",
                cluster = %ctx.spec.name,
                nodes = t.nodes_terminated.len(),
                "rollback complete"
            );
            Err(err)
        }
        Err(failure) => {
            tracing::warn!(
                target: "clusterctl::rollback",
                cluster = %ctx.spec.name,
                error = %failure,
                "rollback incomplete"
            );
            Err(tracker.left_behind(provider, &ctx.spec.name, Some(err), failure))
        }
    }
}

/// One platform call that creates something: marked in flight while it runs, its nodes
/// remembered as soon as it returns, and the cancellation checked before and after.
async fn launch_step<T>(
    tracker: &Tracker,
    cancel: &Cancel,
    nodes_of: impl Fn(&T) -> Vec<Node>,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    if cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    tracker.set_launching(true);
    let out = call.await;
    tracker.set_launching(false);
    if let Ok(v) = &out {
        tracker.launched(&nodes_of(v));
    }
    if cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    out
}

async fn launch_and_wait(
    provider: &dyn ClusterProvider,
    ctx: &LaunchContext<'_>,
    wait: Option<ReadyWait>,
    deadline: Option<Deadline>,
    progress: &dyn Progress,
    cancel: &Cancel,
    tracker: &Tracker,
) -> Result<Launched> {
    progress.phase(Phase::CreatingResources);
    launch_step(tracker, cancel, |_| Vec::new(), provider.bootstrap(ctx)).await?;
    progress.phase(Phase::StartingScheduler);
    let launch = launch_step(
        tracker,
        cancel,
        |l: &crate::provider::SchedulerLaunch| vec![l.node.clone()],
        provider.launch_scheduler(ctx),
    )
    .await?;
    let address = match launch.address.clone() {
        Some(a) => a,
        None => {
            let d = deadline.unwrap_or_else(|| Deadline::after(Duration::from_secs(300)));
            poll_until(
                "waiting for the scheduler's address",
                d,
                provider.poll_interval(),
                || async {
                    let nodes = provider.list_nodes(Some(&ctx.spec.name)).await?;
                    let Some(node) = nodes.iter().find(|n| n.role == Role::Scheduler) else {
                        return Ok(Poll::Pending("scheduler not listed yet".into()));
                    };
                    if let Some(failure) = failed(provider, node) {
                        return Err(failure);
                    }
                    Ok(match provider.worker_facing_address(ctx, node).await? {
                        Some(a) => Poll::Ready(a),
                        None => Poll::Pending(format!("scheduler {}", node.state)),
                    })
                },
            )
            .await?
        }
    };
    // Workers start right away, in parallel with the scheduler's boot: they retry until it
    // listens.
    progress.phase(Phase::StartingWorkers);
    let mut nodes = vec![launch.node.clone()];
    if ctx.spec.workers > 0 {
        let batch = WorkerBatch {
            count: ctx.spec.workers,
            first_index: 0,
        };
        nodes.extend(
            launch_step(
                tracker,
                cancel,
                |n: &Vec<Node>| n.clone(),
                provider.launch_workers(ctx, &address, batch),
            )
            .await?,
        );
    }
    let endpoints = provider.endpoints(&launch.node, ctx.spec.private).await?;
    let reach = provider
        .reach(&launch.node, &endpoints, Default::default())
        .await?;
    let ready = match (wait, deadline) {
        (Some(w), Some(d)) => Some(
            wait_ready(
                provider,
                &ctx.spec.name,
                &ctx.spec.launch,
                &reach.endpoints,
                w.workers as usize,
                d,
                progress,
            )
            .await?,
        ),
        _ => None,
    };
    Ok(Launched {
        endpoints,
        reach,
        nodes,
        ready,
    })
}

/// What `scale` changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scaled {
    /// Workers before.
    pub from: usize,
    /// Workers now.
    pub to: usize,
    /// Names of workers added.
    pub added: Vec<String>,
    /// Names of workers removed.
    pub removed: Vec<String>,
}

/// Bring the cluster to `target` workers. New workers are launched in one batch and awaited;
/// surplus workers are retired through the scheduler (their data moves to the others) before
/// their nodes are terminated.
pub async fn scale(
    provider: &dyn ClusterProvider,
    ctx: &LaunchContext<'_>,
    endpoints: &Endpoints,
    target: u32,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Scaled> {
    let cluster = &ctx.spec.name;
    let deadline = Deadline::after(timeout);
    let nodes = provider.list_nodes(Some(cluster)).await?;
    let scheduler = nodes
        .iter()
        .find(|n| n.role == Role::Scheduler && n.state.is_alive())
        .ok_or_else(|| Error::NotFound {
            name: cluster.to_string(),
            where_: format!(" on {} (no running scheduler)", provider.kind()),
        })?
        .clone();
    let mut workers: Vec<Node> = nodes
        .into_iter()
        .filter(|n| n.role == Role::Worker && n.state.is_alive())
        .collect();
    workers.sort_by_key(|n| worker_index(&n.name).unwrap_or(u32::MAX));
    let from = workers.len();
    let target = target as usize;
    let mut out = Scaled {
        from,
        to: target,
        ..Default::default()
    };
    if target > from {
        let address = provider
            .worker_facing_address(ctx, &scheduler)
            .await?
            .ok_or_else(|| Error::Scheduler {
                operation: "scale".into(),
                message: "the scheduler's address is not known".into(),
            })?;
        let first_index = workers
            .iter()
            .filter_map(|n| worker_index(&n.name))
            .max()
            .map_or(0, |m| m + 1);
        progress.phase(Phase::StartingWorkers);
        let batch = WorkerBatch {
            count: (target - from) as u32,
            first_index,
        };
        let added = provider.launch_workers(ctx, &address, batch).await?;
        out.added = added.iter().map(|n| n.name.clone()).collect();
        wait_ready(
            provider,
            cluster,
            &ctx.spec.launch,
            endpoints,
            target,
            deadline,
            progress,
        )
        .await?;
    } else if target < from && provider.set_worker_count(ctx, target as u32).await? {
        // The platform retires and removes the surplus itself; wait until it has.
        progress.phase(Phase::RetiringWorkers);
        let before: Vec<Node> = workers;
        let left = poll_until(
            "waiting for the platform to retire the surplus workers",
            deadline,
            provider.poll_interval(),
            || async {
                let alive: Vec<Node> = provider
                    .list_nodes(Some(cluster))
                    .await?
                    .into_iter()
                    .filter(|n| n.role == Role::Worker && n.state.is_alive())
                    .collect();
                Ok(if alive.len() <= target {
                    Poll::Ready(alive)
                } else {
                    Poll::Pending(format!("{} workers still running", alive.len()))
                })
            },
        )
        .await?;
        out.removed = before
            .into_iter()
            .filter(|b| !left.iter().any(|n| n.id == b.id))
            .map(|n| n.name)
            .collect();
    } else if target < from {
        let surplus: Vec<Node> = workers.split_off(target);
        progress.phase(Phase::RetiringWorkers);
        let dash = Dashboard::new(
            endpoints.dashboard_base(),
            deadline.remaining().max(Duration::from_secs(1)),
        );
        let view = dash.view().await?;
        let addresses = dask_addresses_of(&view, &workers, &surplus);
        dash.retire_workers(&addresses).await?;
        progress.phase(Phase::TearingDown);
        provider.terminate_nodes(cluster, &surplus).await?;
        wait_stopped(provider, cluster, &surplus, deadline).await?;
        out.removed = surplus.into_iter().map(|n| n.name).collect();
    }
    Ok(out)
}

/// Wait until the retired `surplus` nodes are gone, asking again (as `down` does) for those still
/// listed as running: a node slow to stop is stopped harder (a local process gets SIGKILL once
/// SIGTERM has had its time), and a node the listing showed late is stopped at all.
async fn wait_stopped(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    surplus: &[Node],
    deadline: Deadline,
) -> Result<()> {
    let ids: Vec<&str> = surplus.iter().map(|n| n.id.as_str()).collect();
    poll_until(
        "waiting for retired workers to stop",
        deadline,
        provider.poll_interval(),
        || async {
            let left: Vec<Node> = provider
                .list_nodes(Some(cluster))
                .await?
                .into_iter()
                .filter(|n| ids.contains(&n.id.as_str()) && n.state.is_alive())
                .collect();
            if left.is_empty() {
                return Ok(Poll::Ready(()));
            }
            crate::teardown::terminate_late(provider, cluster, &left).await?;
            Ok(Poll::Pending(format!("{} still running", left.len())))
        },
    )
    .await
}

/// The Dask addresses of the `surplus` nodes. A Dask worker is matched to a node by name (the
/// node name clusterctl passed as `--name`); a worker Dask named by its address is matched by
/// host, but only when that host belongs to exactly one node (several local workers share
/// 127.0.0.1).
fn dask_addresses_of(view: &SchedulerView, kept: &[Node], surplus: &[Node]) -> Vec<String> {
    let all = || kept.iter().chain(surplus);
    view.workers
        .iter()
        .filter(|w| {
            if all().any(|n| n.name == w.name) {
                return surplus.iter().any(|n| n.name == w.name);
            }
            let same_host = |n: &&Node| n.private_ip.as_deref() == Some(w.host());
            all().filter(same_host).count() == 1 && surplus.iter().any(|n| same_host(&n))
        })
        .map(|w| w.address.clone())
        .collect()
}

/// The index of a worker named by [`crate::provider::worker_name`].
pub fn worker_index(name: &str) -> Option<u32> {
    name.strip_prefix("worker-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{health::JoinedWorker, model::NodeState};

    fn node(name: &str, ip: &str) -> Node {
        Node {
            id: name.into(),
            name: name.into(),
            role: Role::Worker,
            state: NodeState::Running,
            private_ip: Some(ip.into()),
            public_ip: None,
            created_at: None,
            tags: Default::default(),
        }
    }

    fn view(workers: &[(&str, &str)]) -> SchedulerView {
        SchedulerView {
            workers: workers
                .iter()
                .map(|(a, n)| JoinedWorker {
                    address: a.to_string(),
                    name: n.to_string(),
                })
                .collect(),
        }
    }

    #[tokio::test]
    async fn retired_workers_that_outlive_the_first_terminate_are_asked_again() {
        // A worker process that survives SIGTERM (local nodes get SIGKILL on a later call):
        // waiting without asking again would run into the deadline.
        let fake = crate::fake::Fake::new(crate::fake::QUICK);
        fake.set(|s| s.stubborn = true);
        let kept = fake.add(Role::Worker, "worker-0");
        let surplus = vec![fake.add(Role::Worker, "worker-1")];
        let cluster = crate::bootstrap::tests::spec().name;
        fake.terminate_nodes(&cluster, &surplus).await.unwrap();
        assert_eq!(fake.running().len(), 2, "the fake ignored no terminate");
        wait_stopped(
            &fake,
            &cluster,
            &surplus,
            Deadline::after(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        assert_eq!(fake.running(), vec![kept.id]);
    }

    #[test]
    fn retire_by_name_when_hosts_are_shared() {
        let kept = [node("worker-0", "127.0.0.1")];
        let surplus = [node("worker-1", "127.0.0.1")];
        let v = view(&[
            ("tcp://127.0.0.1:5", "worker-0"),
            ("tcp://127.0.0.1:6", "worker-1"),
        ]);
        assert_eq!(
            dask_addresses_of(&v, &kept, &surplus),
            ["tcp://127.0.0.1:6"]
        );
    }

    #[test]
    fn retire_by_unique_host_when_dask_named_the_worker() {
        let kept = [node("i-aaa", "10.0.0.1")];
        let surplus = [node("i-bbb", "10.0.0.2")];
        let v = view(&[
            ("tls://10.0.0.1:5", "tls://10.0.0.1:5"),
            ("tls://10.0.0.2:5", "tls://10.0.0.2:5"),
        ]);
        assert_eq!(dask_addresses_of(&v, &kept, &surplus), ["tls://10.0.0.2:5"]);
    }
}

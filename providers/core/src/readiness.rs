//! Readiness: waiting until a cluster's scheduler answers and its workers joined, in Dask's
//! terms, with a deadline, while a listing of the platform once per the provider's poll interval
//! fails the wait early on evidence that a node died (and only on evidence where the listing may
//! lag). Used by `up`, `wait` and `scale` ([`crate::lifecycle`]).

use std::{
    collections::BTreeMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::{
    error::{Error, Result},
    health::{Dashboard, SchedulerView},
    lifecycle::{Phase, Progress},
    model::{ClusterName, Endpoints, Node, NodeState, Role},
    provider::ClusterProvider,
    wait::{Deadline, Interval, Poll, poll_until},
};

/// The shortest time between two node listings while waiting (the fail-fast check). A
/// provider's listings come every [`ClusterProvider::poll_interval`]'s `max` (5 s for the cloud
/// providers' [`Interval::CLOUD`]), but never more often than this: the local provider polls its
/// process table at [`Interval::FAST`] (100 ms) for short waits, and a scan of `/proc` ten times
/// a second for the whole of a readiness wait would cost CPU the booting Dask processes need,
/// for evidence that is only wanted within seconds.
const MIN_NODE_CHECK_EVERY: Duration = Duration::from_secs(2);

/// How long a node that a listing showed may then be missing from a listing that is not
/// consistent ([`ClusterProvider::listing_is_consistent`]) before readiness takes it for deleted
/// by the platform. Well above the few seconds EC2's and DigitalOcean's listings lag behind; a
/// node that dies visibly (listed stopped, terminated or failed) fails the wait at once.
const UNLISTED_ALLOWANCE: Duration = Duration::from_secs(30);

/// How a readiness wait checks the platform's listing.
#[derive(Debug, Clone, Copy)]
struct Checks {
    /// Time between two listings.
    every: Duration,
    /// How long a node once listed may be missing before it counts as gone.
    unlisted_allowance: Duration,
}

impl Checks {
    /// The checks of a wait on a provider polled at `interval`: one listing of the whole
    /// cluster per `interval.max` (at least [`MIN_NODE_CHECK_EVERY`]), whatever its size.
    fn at(interval: Interval) -> Self {
        Checks {
            every: interval.max.max(MIN_NODE_CHECK_EVERY),
            unlisted_allowance: UNLISTED_ALLOWANCE,
        }
    }
}

/// The error a node's listed state means for a wait, if any: a failed node, or one the platform
/// has no capacity for (typed as such, so that a script can tell "try later" from "broken").
pub(crate) fn failed(provider: &dyn ClusterProvider, node: &Node) -> Option<Error> {
    match &node.state {
        NodeState::Failed(reason) => Some(Error::NodeFailed {
            role: node.role,
            node: node.name.clone(),
            reason: reason.clone(),
            log_tail: String::new(),
        }),
        NodeState::NoCapacity(reason) => Some(Error::CapacityUnavailable {
            provider: provider.kind(),
            location: provider.location(),
            message: format!("{} node `{}` cannot start: {reason}", node.role, node.name),
        }),
        _ => None,
    }
}

/// Wait until the scheduler is healthy and `wanted` workers joined, failing fast when the
/// platform's listing shows the scheduler dead or too few workers left alive to reach `wanted`
/// (where the listing lags behind launches, only on positive evidence: see `Evidence`).
/// Errors carry log tails.
/// `launch` is the cluster's launch id ([`crate::model::ClusterSpec::launch`]): stopped nodes of
/// earlier launches of the name, which platforms keep listing for a while, are not its own.
pub async fn wait_ready(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    launch: &str,
    endpoints: &Endpoints,
    wanted: usize,
    deadline: Deadline,
    progress: &dyn Progress,
) -> Result<SchedulerView> {
    let checks = Checks::at(provider.poll_interval());
    wait_ready_checking(
        provider, cluster, launch, endpoints, wanted, deadline, progress, checks,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn wait_ready_checking(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    launch: &str,
    endpoints: &Endpoints,
    wanted: usize,
    deadline: Deadline,
    progress: &dyn Progress,
    checks: Checks,
) -> Result<SchedulerView> {
    let dash = Dashboard::new(endpoints.dashboard_base(), Duration::from_secs(3));
    let evidence = Mutex::new(Evidence::new(
        provider.listing_is_consistent(),
        launch,
        checks.unlisted_allowance,
    ));
    let result = wait_ready_inner(
        provider,
        cluster,
        &dash,
        wanted,
        deadline,
        progress,
        checks.every,
        &evidence,
    )
    .await;
    match result {
        Err(mut err) => {
            attach_logs(provider, cluster, &mut err, LOG_DEADLINE).await;
            Err(err)
        }
        ok => ok,
    }
}

#[allow(clippy::too_many_arguments)]
async fn wait_ready_inner(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    dash: &Dashboard,
    wanted: usize,
    deadline: Deadline,
    progress: &dyn Progress,
    check_every: Duration,
    evidence: &Mutex<Evidence>,
) -> Result<SchedulerView> {
    let mut last_check = Instant::now();
    let mut check_nodes = move || {
        let due = last_check.elapsed() >= check_every;
        if due {
            last_check = Instant::now();
        }
        due
    };
    // What the listings left undecided goes with what is awaited, so a timeout says it.
    let seen = |awaited: String| {
        let note = lock(evidence).note.clone();
        if note.is_empty() {
            awaited
        } else {
            format!("{awaited}; {note}")
        }
    };
    progress.phase(Phase::WaitingScheduler);
    poll_until(
        "waiting for the scheduler's /health",
        deadline,
        Interval::FAST,
        || {
            let check = check_nodes();
            async move {
                // The listing, when due, runs beside the probe: a probe that hangs until its own
                // timeout (a dropped connection) does not delay it.
                let (healthy, alive) = tokio::join!(
                    dash.healthy(),
                    check_if(check, provider, cluster, 0, evidence)
                );
                if healthy {
                    return Ok(Poll::Ready(()));
                }
                alive?;
                Ok(Poll::Pending(seen(format!(
                    "{}/health not answering yet",
                    dash.base()
                ))))
            }
        },
    )
    .await?;
    progress.phase(Phase::WaitingWorkers);
    progress.workers(0, wanted);
    poll_until(
        "waiting for workers to join",
        deadline,
        Interval::FAST,
        || {
            let check = check_nodes();
            async move {
                let (view, alive) = tokio::join!(
                    dash.view(),
                    check_if(check, provider, cluster, wanted, evidence)
                );
                let view = view.ok();
                let joined = view.as_ref().map_or(0, |v| v.workers.len());
                progress.workers(joined, wanted);
                if let Some(v) = view.filter(|_| joined >= wanted) {
                    return Ok(Poll::Ready(v));
                }
                alive?;
                Ok(Poll::Pending(seen(format!(
                    "{joined} of {wanted} workers joined"
                ))))
            }
        },
    )
    .await
}

/// The evidence, even after a panic elsewhere (it holds no invariant a panic could break).
fn lock(evidence: &Mutex<Evidence>) -> std::sync::MutexGuard<'_, Evidence> {
    evidence
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// [`ensure_alive`] when the check is due; nothing otherwise.
async fn check_if(
    due: bool,
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    workers: usize,
    evidence: &Mutex<Evidence>,
) -> Result<()> {
    if due {
        ensure_alive(provider, cluster, workers, evidence).await
    } else {
        Ok(())
    }
}

/// List the cluster's nodes and fail when they show the scheduler dead or fewer than `workers`
/// workers alive (see [`Evidence::judge`]).
async fn ensure_alive(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    workers: usize,
    evidence: &Mutex<Evidence>,
) -> Result<()> {
    let nodes = provider.list_nodes(Some(cluster)).await?;
    lock(evidence).judge(provider, nodes, workers, Instant::now())
}

/// A node of this launch that a listing of the wait showed alive.
#[derive(Debug)]
struct Seen {
    role: Role,
    name: String,
    /// When a listing last showed it.
    listed_at: Instant,
}

/// What the fail-fast listings of one readiness wait have shown, and the rule that judges them.
///
/// A listing that is consistent ([`ClusterProvider::listing_is_consistent`]: Kubernetes, local
/// processes) is believed as it is: a scheduler missing from it is gone, fewer live workers
/// than awaited are too few. Any other listing (EC2, DigitalOcean, ...) lags behind launches,
/// so only positive evidence fails the wait:
/// - a node of this launch listed failed, or a scheduler listed stopping or terminated;
/// - a node listed alive earlier and missing from every listing for longer than the
///   allowance (the platform deleted it);
/// - fewer live workers than awaited, counted only once the listings have shown as many
///   distinct live workers as awaited (a worker listed earlier and missing for less than the
///   allowance still counts as alive).
///
/// A scheduler never listed fails nothing: the wait ends at its deadline, saying so.
#[derive(Debug)]
struct Evidence {
    consistent: bool,
    launch: String,
    allowance: Duration,
    /// By node id.
    seen: BTreeMap<String, Seen>,
    /// What the last listing left undecided (empty when nothing).
    note: String,
}

impl Evidence {
    fn new(consistent: bool, launch: &str, allowance: Duration) -> Self {
        Evidence {
            consistent,
            launch: launch.to_string(),
            allowance,
            seen: BTreeMap::new(),
            note: String::new(),
        }
    }

    /// Judge one listing, taken at `now`, against `workers` awaited workers.
    fn judge(
        &mut self,
        provider: &dyn ClusterProvider,
        mut nodes: Vec<Node>,
        workers: usize,
        now: Instant,
    ) -> Result<()> {
        nodes.retain(|n| !earlier_launch(n, &self.launch));
        if let Some(err) = nodes.iter().find_map(|n| failed(provider, n)) {
            return Err(err);
        }
        for n in nodes.iter().filter(|n| n.state.is_alive()) {
            self.seen.insert(
                n.id.clone(),
                Seen {
                    role: n.role,
                    name: n.name.clone(),
                    listed_at: now,
                },
            );
        }
        self.note.clear();
        match nodes.iter().find(|n| n.role == Role::Scheduler) {
            Some(s) if s.state.is_alive() => {}
            Some(s) => {
                return Err(Error::NodeFailed {
                    role: Role::Scheduler,
                    node: s.name.clone(),
                    reason: format!("it is {}", s.state),
                    log_tail: String::new(),
                });
            }
            None => self.scheduler_unlisted(now)?,
        }
        if workers > 0 {
            self.judge_workers(&nodes, workers, now)?;
        }
        Ok(())
    }

    fn scheduler_unlisted(&mut self, now: Instant) -> Result<()> {
        let last = self
            .seen
            .values()
            .filter(|s| s.role == Role::Scheduler)
            .max_by_key(|s| s.listed_at);
        let gone = |node: &str, reason: String| Error::NodeFailed {
            role: Role::Scheduler,
            node: node.to_string(),
            reason,
            log_tail: String::new(),
        };
        match last {
            _ if self.consistent => Err(gone(
                last.map_or("scheduler", |s| &s.name),
                "it is gone (no longer in the platform's listing)".into(),
            )),
            Some(s) if now.duration_since(s.listed_at) > self.allowance => Err(gone(
                &s.name,
                format!(
                    "it is gone (listed earlier, then missing from the platform's listing for {}s)",
                    now.duration_since(s.listed_at).as_secs()
                ),
            )),
            Some(s) => {
                self.note = format!(
                    "the scheduler has been missing from the platform's listing for {}s",
                    now.duration_since(s.listed_at).as_secs()
                );
                Ok(())
            }
            None => {
                self.note = "the platform has never listed the scheduler".into();
                Ok(())
            }
        }
    }

    fn judge_workers(&mut self, nodes: &[Node], wanted: usize, now: Instant) -> Result<()> {
        let listed = |id: &str| nodes.iter().find(|n| n.id == id);
        let too_few = |alive: usize, dead: Option<(&str, String)>| {
            let (node, why) = dead.map_or(("worker".to_string(), String::new()), |(n, w)| {
                (n.to_string(), format!(" ({n} {w})"))
            });
            Error::NodeFailed {
                role: Role::Worker,
                node,
                reason: format!(
                    "only {alive} of the {wanted} awaited workers are still running{why}"
                ),
                log_tail: String::new(),
            }
        };
        if self.consistent {
            let alive = nodes
                .iter()
                .filter(|n| n.role == Role::Worker && n.state.is_alive())
                .count();
            if alive >= wanted {
                return Ok(());
            }
            let dead = nodes
                .iter()
                .find(|n| n.role == Role::Worker && !n.state.is_alive())
                .map(|n| (n.name.as_str(), format!("is {}", n.state)))
                .or_else(|| {
                    self.seen
                        .iter()
                        .find(|(id, s)| s.role == Role::Worker && listed(id).is_none())
                        .map(|(_, s)| (s.name.as_str(), "is gone".to_string()))
                });
            return Err(too_few(alive, dead));
        }
        let workers = || self.seen.iter().filter(|(_, s)| s.role == Role::Worker);
        let shown = workers().count();
        if shown < wanted {
            // The listing may not show every worker yet: no count to judge by.
            let note = format!("the platform has listed {shown} of the {wanted} awaited workers");
            self.note = if self.note.is_empty() {
                note
            } else {
                format!("{}; {note}", self.note)
            };
            return Ok(());
        }
        let mut alive = 0;
        let mut dead = None;
        for (id, s) in workers() {
            let missing = now.duration_since(s.listed_at);
            match listed(id) {
                Some(n) if n.state.is_alive() => alive += 1,
                Some(n) => {
                    dead.get_or_insert((s.name.as_str(), format!("is {}", n.state)));
                }
                // Missing for less than the allowance: maybe the listing's lag.
                None if missing <= self.allowance => alive += 1,
                None => {
                    dead.get_or_insert((
                        s.name.as_str(),
                        format!(
                            "is gone: missing from the platform's listing for {}s",
                            missing.as_secs()
                        ),
                    ));
                }
            }
        }
        if alive < wanted {
            return Err(too_few(alive, dead));
        }
        Ok(())
    }
}

/// Whether `node` is what an earlier launch of the name left in the platform's listing (a
/// stopped task ECS lists for an hour, a terminated instance EC2 lists for one): no longer
/// alive and tagged with another launch than `launch`. A new cluster of the name is not judged
/// by it.
fn earlier_launch(node: &Node, launch: &str) -> bool {
    !launch.is_empty()
        && !node.state.is_alive()
        && node
            .tags
            .get(crate::tags::LAUNCH)
            .is_some_and(|l| l != launch)
}

/// How long the logs shown with a failure may take to arrive: the rollback waits for them.
const LOG_DEADLINE: Duration = Duration::from_secs(5);

/// Put the tails of the nodes' logs into a timeout or node failure: the scheduler's and one
/// worker's (they tell most; all workers would flood the terminal and cost a platform call
/// each), fetched within `within`.
async fn attach_logs(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    err: &mut Error,
    within: Duration,
) {
    let (Error::Timeout { log_tail, .. } | Error::NodeFailed { log_tail, .. }) = err else {
        return;
    };
    let one = |role| async move {
        provider
            .logs(cluster, Some(role), 15, Some(1))
            .await
            .unwrap_or_default()
            .into_iter()
            .take(1)
    };
    let fetch = async {
        let (s, w) = tokio::join!(one(Role::Scheduler), one(Role::Worker));
        s.chain(w).collect::<Vec<_>>()
    };
    let Ok(shown) = tokio::time::timeout(within, fetch).await else {
        *log_tail = format!(
            "(the nodes' logs did not arrive within {}s)\n",
            within.as_secs()
        );
        return;
    };
    let mut text = String::new();
    for log in shown {
        text.push_str(&format!("--- {} ({}) ---\n", log.node, log.role));
        for line in &log.lines {
            text.push_str(line);
            text.push('\n');
        }
    }
    *log_tail = text;
}

#[cfg(test)]
#[path = "readiness_tests.rs"]
mod tests;

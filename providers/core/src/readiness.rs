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
mod tests {
    use super::*;
    use crate::{
        fake::{Fake, FakeState, QUICK},
        lifecycle::Silent,
        model::NodeState,
    };

    #[tokio::test]
    async fn logs_shown_with_a_failure_are_one_per_role_and_bounded() {
        let fake = Fake::new(QUICK);
        fake.add(Role::Scheduler, "scheduler");
        for w in ["worker-0", "worker-1", "worker-2"] {
            fake.add(Role::Worker, w);
        }
        let cluster = ClusterName::new("t").unwrap();
        let timeout = || Error::Timeout {
            phase: "waiting".into(),
            after: Duration::from_secs(1),
            detail: String::new(),
            log_tail: String::new(),
        };
        let mut err = timeout();
        attach_logs(&fake, &cluster, &mut err, Duration::from_secs(5)).await;
        let tail = err.log_tail().unwrap();
        assert!(
            tail.contains("--- scheduler (scheduler) ---\nlog of scheduler")
                && tail.contains("--- worker-0 (worker) ---")
                && !tail.contains("worker-1"),
            "{tail}"
        );
        let mut calls = fake.get(|s| s.log_calls.clone());
        calls.sort();
        assert_eq!(
            calls,
            [
                (Some(Role::Scheduler), Some(1)),
                (Some(Role::Worker), Some(1))
            ]
        );

        // A platform that does not answer delays the rollback by the deadline, no more.
        fake.set(|s| s.logs_hang = true);
        let mut err = timeout();
        let started = std::time::Instant::now();
        let bounded = attach_logs(&fake, &cluster, &mut err, Duration::from_millis(200));
        tokio::time::timeout(Duration::from_secs(5), bounded)
            .await
            .expect("log collection has no deadline");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(err.log_tail().unwrap().contains("did not arrive within"));
    }

    /// Checks quick enough for a test: a listing every 20 ms, a node missing for 300 ms gone.
    const QUICK_CHECKS: Checks = Checks {
        every: Duration::from_millis(20),
        unlisted_allowance: Duration::from_millis(300),
    };

    /// A scheduler whose dashboard never answers (nothing listens on the discard port).
    fn silent_dashboard() -> Endpoints {
        Endpoints {
            scheduler_address: "tcp://127.0.0.1:9".into(),
            dashboard_url: "http://127.0.0.1:9/status".into(),
        }
    }

    /// A scheduler whose `/health` answers `ok` and to which no worker ever joins: readiness
    /// waits for workers, checking the listing.
    async fn healthy_dashboard() -> Endpoints {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = if request.starts_with(b"GET /health ") {
                        "ok"
                    } else {
                        r#"{"workers": []}"#
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(reply.as_bytes()).await;
                });
            }
        });
        Endpoints {
            scheduler_address: "tcp://127.0.0.1:9".into(),
            dashboard_url: format!("http://127.0.0.1:{port}/status"),
        }
    }

    async fn wait_on(
        fake: &Fake,
        endpoints: &Endpoints,
        wanted: usize,
        timeout: Duration,
    ) -> Result<SchedulerView> {
        wait_ready_checking(
            fake,
            &ClusterName::new("t").unwrap(),
            "",
            endpoints,
            wanted,
            Deadline::after(timeout),
            &Silent,
            QUICK_CHECKS,
        )
        .await
    }

    /// Once the fake was listed `lists` times, run `change` on its state; nothing when that
    /// does not happen within 3 s (the wait ended first).
    async fn after_lists(fake: &Fake, lists: usize, change: impl FnOnce(&mut FakeState)) {
        let started = Instant::now();
        while fake.get(|s| s.lists) < lists {
            if started.elapsed() > Duration::from_secs(3) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fake.set(change);
    }

    #[test]
    fn listings_come_at_the_providers_poll_interval() {
        // Cloud providers: every 5 s (Interval::CLOUD's max); local (Interval::FAST, 100 ms):
        // not more often than every 2 s.
        assert_eq!(Checks::at(Interval::CLOUD).every, Duration::from_secs(5));
        assert_eq!(Checks::at(Interval::FAST).every, MIN_NODE_CHECK_EVERY);
        let slow = Interval {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        assert_eq!(Checks::at(slow).every, Duration::from_secs(30));
    }

    /// A cluster of `workers` healthy-looking workers that never join: how many listings a
    /// wait of `timeout` makes with `checks`.
    async fn lists_of_a_wait(workers: usize, timeout: Duration, checks: Option<Checks>) -> usize {
        let fake = Fake::new(Interval::CLOUD);
        fake.add(Role::Scheduler, "scheduler");
        for i in 0..workers {
            fake.add(Role::Worker, &format!("worker-{i}"));
        }
        let dashboard = healthy_dashboard().await;
        let cluster = ClusterName::new("t").unwrap();
        let deadline = Deadline::after(timeout);
        let err = match checks {
            Some(c) => {
                wait_ready_checking(
                    &fake, &cluster, "", &dashboard, workers, deadline, &Silent, c,
                )
                .await
            }
            None => wait_ready(&fake, &cluster, "", &dashboard, workers, deadline, &Silent).await,
        }
        .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        fake.get(|s| s.lists)
    }

    #[tokio::test]
    async fn one_listing_per_interval_whatever_the_cluster_size() {
        // 1 and 10 workers, listed every 100 ms for 1 s: about ten listings each, the same.
        let every = Checks {
            every: Duration::from_millis(100),
            unlisted_allowance: UNLISTED_ALLOWANCE,
        };
        let second = Duration::from_secs(1);
        let (one, ten) = tokio::join!(
            lists_of_a_wait(1, second, Some(every)),
            lists_of_a_wait(10, second, Some(every))
        );
        for lists in [one, ten] {
            assert!((7..=10).contains(&lists), "{one} and {ten} listings");
        }
        assert!(one.abs_diff(ten) <= 1, "{one} and {ten} listings");

        // Through `wait_ready`, a cloud provider's wait of 5.6 s lists once (at 5 s), not
        // every 2 s as before, for either size.
        let wait = Duration::from_millis(5600);
        let (one, ten) = tokio::join!(
            lists_of_a_wait(1, wait, None),
            lists_of_a_wait(10, wait, None)
        );
        assert_eq!((one, ten), (1, 1));
    }

    #[tokio::test]
    async fn a_lagging_listing_does_not_fail_readiness() {
        // EC2 or DigitalOcean: the scheduler is missing from three listings, then listed.
        let fake = Fake::new(QUICK);
        fake.set(|s| s.lag = Duration::from_secs(3600));
        fake.add(Role::Scheduler, "scheduler");
        let reveal = after_lists(&fake, 3, |s| s.nodes[0].visible_at = Instant::now());
        let dashboard = silent_dashboard();
        let (result, ()) = tokio::join!(
            wait_on(&fake, &dashboard, 0, Duration::from_millis(600)),
            reveal
        );
        // Only the deadline ends it (the dashboard never answers).
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(!err.to_string().contains("never listed"), "{err}");
        assert!(fake.get(|s| s.lists) > 3, "the wait stopped listing");

        // The same for workers: the listing shows none of them yet while the scheduler waits
        // for them.
        let fake = Fake::new(QUICK);
        fake.add(Role::Scheduler, "scheduler");
        fake.set(|s| s.lag = Duration::from_secs(3600));
        fake.add(Role::Worker, "worker-0");
        fake.add(Role::Worker, "worker-1");
        let err = wait_on(
            &fake,
            &healthy_dashboard().await,
            2,
            Duration::from_millis(600),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(err, Error::Timeout { .. })
                && err
                    .to_string()
                    .contains("the platform has listed 0 of the 2 awaited workers"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_scheduler_missing_from_an_authoritative_listing_fails_fast() {
        let fake = Fake::new(QUICK);
        fake.set(|s| {
            s.authoritative = true;
            s.lag = Duration::from_secs(3600);
        });
        fake.add(Role::Scheduler, "scheduler");
        let started = Instant::now();
        let err = wait_on(&fake, &silent_dashboard(), 0, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::NodeFailed { role: Role::Scheduler, reason, .. } if reason.contains("gone")),
            "{err}"
        );
        assert_eq!(fake.get(|s| s.lists), 1, "absence is evidence at once");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_scheduler_listed_dead_fails_fast_on_every_listing() {
        for authoritative in [false, true] {
            for dead in [NodeState::Failed("OOMKilled".into()), NodeState::Stopping] {
                let fake = Fake::new(QUICK);
                fake.set(|s| s.authoritative = authoritative);
                fake.add(Role::Scheduler, "scheduler");
                fake.add(Role::Worker, "worker-0");
                fake.set(|s| s.nodes[0].node.state = dead.clone());
                let started = Instant::now();
                let err = wait_on(&fake, &silent_dashboard(), 0, Duration::from_secs(10))
                    .await
                    .unwrap_err();
                let Error::NodeFailed { role, reason, .. } = &err else {
                    panic!("{authoritative} {dead}: {err}");
                };
                assert_eq!(*role, Role::Scheduler);
                assert!(
                    reason.contains(&dead.to_string()) || reason.contains("OOMKilled"),
                    "{err}"
                );
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "{authoritative}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_node_the_platform_has_no_room_for_is_a_capacity_error() {
        let fake = Fake::new(QUICK);
        fake.add(Role::Scheduler, "scheduler");
        fake.set(|s| {
            s.nodes[0].node.state =
                NodeState::NoCapacity("unschedulable: 1 Insufficient cpu".into())
        });
        let err = wait_on(&fake, &silent_dashboard(), 0, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "capacity_unavailable", "{err}");
        assert!(err.to_string().contains("Insufficient cpu"), "{err}");
    }

    #[tokio::test]
    async fn a_worker_listed_then_terminated_fails_fast() {
        let dashboard = healthy_dashboard().await;
        for authoritative in [false, true] {
            let fake = Fake::new(QUICK);
            fake.set(|s| {
                s.authoritative = authoritative;
                s.stop_after = Duration::from_secs(3600);
            });
            fake.add(Role::Scheduler, "scheduler");
            fake.add(Role::Worker, "worker-0");
            fake.add(Role::Worker, "worker-1");
            let started = Instant::now();
            let kill = after_lists(&fake, 2, |s| {
                s.nodes[2].terminated_at = Some(Instant::now())
            });
            let (result, ()) =
                tokio::join!(wait_on(&fake, &dashboard, 2, Duration::from_secs(10)), kill);
            let err = result.unwrap_err();
            assert!(
                matches!(&err, Error::NodeFailed { role: Role::Worker, node, reason, .. }
                    if node == "worker-1" && reason.contains("only 1 of the 2") && reason.contains("stopping")),
                "{authoritative}: {err}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{authoritative}"
            );
        }
    }

    #[tokio::test]
    async fn a_node_deleted_from_a_lagging_listing_fails_after_the_allowance() {
        // DigitalOcean deletes a droplet: listed, then missing for good. A lagging listing
        // judges it gone once it was missing for longer than the allowance, and not before.
        let dashboard = healthy_dashboard().await;
        for role in [Role::Scheduler, Role::Worker] {
            let fake = Fake::new(QUICK);
            fake.add(Role::Scheduler, "scheduler");
            fake.add(Role::Worker, "worker-0");
            let gone = if role == Role::Scheduler { 0 } else { 1 };
            let endpoints = if role == Role::Scheduler {
                silent_dashboard()
            } else {
                dashboard.clone()
            };
            let delete = after_lists(&fake, 2, |s| {
                s.nodes[gone].terminated_at = Some(Instant::now())
            });
            let started = Instant::now();
            let (result, ()) = tokio::join!(
                wait_on(&fake, &endpoints, 1, Duration::from_secs(10)),
                delete
            );
            let err = result.unwrap_err();
            let Error::NodeFailed {
                role: failed,
                reason,
                ..
            } = &err
            else {
                panic!("{role}: {err}");
            };
            assert_eq!(*failed, role, "{err}");
            assert!(
                reason.contains("missing from the platform's listing"),
                "{err}"
            );
            let took = started.elapsed();
            assert!(
                took >= QUICK_CHECKS.unlisted_allowance && took < Duration::from_secs(3),
                "{role}: {took:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_scheduler_never_listed_fails_at_the_timeout_saying_so() {
        let fake = Fake::new(QUICK);
        fake.set(|s| s.lag = Duration::from_secs(3600));
        fake.add(Role::Scheduler, "scheduler");
        let started = Instant::now();
        let err = wait_on(&fake, &silent_dashboard(), 0, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("the platform has never listed the scheduler"),
            "{err}"
        );
    }
}

//! Removing a cluster: `down` (and the rollback of a failed `up`) over any provider, and what is
//! said when it cannot finish. [`Tracker`] holds what this process knows besides the platform's
//! listing (the nodes it launched, what teardown saw last), so that nodes a lagging listing
//! does not show are terminated anyway, and an unfinished teardown names what it leaves.

use std::{
    cell::{Cell, RefCell},
    collections::HashSet,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    error::{Error, Result},
    lifecycle::{Phase, Progress},
    model::{ClusterName, Node, NodeState, now_epoch},
    provider::ClusterProvider,
    wait::{Deadline, Poll, poll_until},
};

/// How long a rollback or `down` may take before it reports what is left.
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(600);

/// A cluster younger than this may have nodes a cloud's listing does not show yet: its empty
/// listing is confirmed by a second one before teardown believes it.
pub const YOUNG: Duration = Duration::from_secs(120);

/// What `down` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Teardown {
    /// Nodes that were terminated.
    pub nodes_terminated: Vec<String>,
}

/// What this process knows about a cluster's nodes while it creates or removes it. Shared with
/// the caller, so that a teardown that is abandoned (a third signal) can still say what it
/// leaves.
#[derive(Debug, Default)]
pub struct Tracker {
    state: Mutex<Known>,
}

#[derive(Debug, Default)]
struct Known {
    created_at: Option<u64>,
    launched: Vec<Node>,
    launching: bool,
    /// The last listing's nodes that were not terminated yet.
    seen: Option<Vec<Node>>,
    /// Ids any listing has shown.
    ever_seen: HashSet<String>,
    /// The nodes are gone; cleanup of the supporting resources started.
    nodes_gone: bool,
}

impl Tracker {
    /// A tracker for a cluster created at `created_at` (Unix seconds), if known.
    pub fn new(created_at: Option<u64>) -> Self {
        let t = Tracker::default();
        t.lock().created_at = created_at;
        t
    }

    /// A tracker that knows the nodes `nodes` were launched (e.g. by the `up` of `run`).
    pub fn with_nodes(created_at: Option<u64>, nodes: &[Node]) -> Self {
        let t = Tracker::new(created_at);
        t.launched(nodes);
        t
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remember when the cluster was created.
    pub fn created(&self, at: u64) {
        self.lock().created_at = Some(at);
    }

    /// Remember nodes a launch call returned.
    pub fn launched(&self, nodes: &[Node]) {
        let mut k = self.lock();
        for n in nodes {
            if !k.launched.iter().any(|l| l.id == n.id) {
                k.launched.push(n.clone());
            }
        }
    }

    /// Nodes launched by this process.
    pub fn known(&self) -> Vec<Node> {
        self.lock().launched.clone()
    }

    /// Mark a launch call as in flight (or not): an interruption lets it finish first.
    pub(crate) fn set_launching(&self, on: bool) {
        self.lock().launching = on;
    }

    /// Whether a launch call is in flight.
    pub fn is_launching(&self) -> bool {
        self.lock().launching
    }

    fn saw(&self, nodes: &[Node]) {
        let mut k = self.lock();
        k.ever_seen.extend(nodes.iter().map(|n| n.id.clone()));
        k.seen = Some(nodes.to_vec());
    }

    fn nodes_gone(&self) {
        self.lock().nodes_gone = true;
    }

    /// Whether the cluster is young enough that its listing may lag behind its launches.
    fn young(&self, listed: &[Node]) -> bool {
        let created = self
            .lock()
            .created_at
            .or_else(|| listed.iter().filter_map(|n| n.created_at).min());
        created.is_some_and(|c| now_epoch().saturating_sub(c) < YOUNG.as_secs())
    }

    /// What is not known to be removed, one entry each: the nodes last seen and those launched
    /// that no listing confirmed gone, then the supporting resources.
    pub fn unremoved(&self, cluster: &ClusterName) -> Vec<String> {
        let k = self.lock();
        if k.nodes_gone {
            return vec![format!(
                "supporting resources of cluster `{cluster}` (cleanup did not finish)"
            )];
        }
        let seen: Vec<&Node> = k.seen.iter().flatten().collect();
        let unconfirmed = k
            .launched
            .iter()
            .filter(|l| !k.ever_seen.contains(&l.id) && !seen.iter().any(|n| n.id == l.id));
        let nodes: Vec<&Node> = seen.iter().copied().chain(unconfirmed).collect();
        let mut out: Vec<String> = nodes
            .iter()
            .map(|n| format!("{} {} ({})", n.role, n.name, n.id))
            .collect();
        if k.seen.is_none() && k.launched.is_empty() {
            out.push(format!(
                "any nodes of cluster `{cluster}` (none were listed)"
            ));
        }
        out.push(format!(
            "supporting resources of cluster `{cluster}`, if any (cleanup did not run)"
        ));
        out
    }

    /// The error that says removing `cluster` did not finish because of `failure`, after
    /// `original` (what made the command tear down, if anything): what is left and the command
    /// that finishes the job.
    pub fn left_behind(
        &self,
        provider: &dyn ClusterProvider,
        cluster: &ClusterName,
        original: Option<Error>,
        failure: Error,
    ) -> Error {
        let (why, left) = match failure {
            Error::Leftovers { resources, .. } => ("still there after teardown".into(), resources),
            Error::Interrupted => (
                "teardown was stopped by a signal".to_string(),
                self.unremoved(cluster),
            ),
            Error::LeftBehind { why, left, .. } => (why, left),
            other => (other.to_string(), self.unremoved(cluster)),
        };
        Error::LeftBehind {
            name: cluster.to_string(),
            locate: provider.locate_flags(),
            original: original.map(Box::new),
            why,
            left,
        }
    }
}

/// Remove every node and resource tagged for `cluster`, wait until they are gone, and verify
/// that nothing tagged for it is left. Safe to repeat; works from tags alone, plus what
/// `tracker` knows: nodes it launched are terminated even if the listing does not show them,
/// and an empty listing of a young cluster (or one missing nodes known to exist) is believed
/// only when a second one, a poll interval later, is empty too. Both listings go through
/// [`ClusterProvider::list_nodes_to_stop`]; polls without a lookup by id through
/// [`ClusterProvider::list_nodes`]. `timeout` bounds all of it, cleanup included.
pub async fn down(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    tracker: &Tracker,
    timeout: Duration,
    progress: &dyn Progress,
) -> Result<Teardown> {
    progress.phase(Phase::TearingDown);
    let deadline = Deadline::after(timeout);
    let work = remove(provider, cluster, tracker, deadline);
    match tokio::time::timeout(deadline.remaining(), work).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout {
            phase: if tracker.lock().nodes_gone {
                "removing the supporting resources".into()
            } else {
                "removing the nodes".into()
            },
            after: timeout,
            detail: String::new(),
            log_tail: String::new(),
        }),
    }
}

fn not_terminated(nodes: Vec<Node>) -> Vec<Node> {
    nodes
        .into_iter()
        .filter(|n| n.state != NodeState::Terminated)
        .collect()
}

async fn remove(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    tracker: &Tracker,
    deadline: Deadline,
) -> Result<Teardown> {
    let interval = provider.poll_interval();
    // What must be stopped or waited for; a provider may leave out nodes already stopping that
    // its cleanup waits for anyway (`ClusterProvider::list_nodes_to_stop`).
    let listed = not_terminated(provider.list_nodes_to_stop(cluster).await?);
    tracker.saw(&listed);
    // Launched by this process, but not (yet) in the listing: terminated all the same.
    let unlisted: Vec<Node> = tracker
        .known()
        .into_iter()
        .filter(|k| !listed.iter().any(|n| n.id == k.id))
        .collect();
    let confirm =
        !unlisted.is_empty() || (!provider.listing_is_authoritative() && tracker.young(&listed));
    tracing::info!(
        target: "clusterctl::teardown",
        cluster = %cluster,
        listed = listed.len(),
        unlisted = unlisted.len(),
        confirm,
        "terminating nodes"
    );
    let mut targets = listed;
    targets.extend(unlisted);
    if !targets.is_empty() {
        provider.terminate_nodes(cluster, &targets).await?;
    }
    let first_empty: Cell<Option<Instant>> = Cell::new(None);
    // Nodes known to exist and not yet seen terminated: where the provider looks nodes up by
    // id, they are waited on that way, and the cluster is listed again only once they are gone.
    let pending: RefCell<Vec<Node>> = RefCell::new(targets.clone());
    let by_id = Cell::new(true);
    // With `confirm`, the listing that ends the wait must come at least a poll interval after
    // the last one that showed a node not known before (the first listing, to begin with):
    // whatever a lagging listing hid then shows by that time.
    let reference = Cell::new(Instant::now());
    let found_late: RefCell<Vec<Node>> = RefCell::new(Vec::new());
    poll_until(
        "waiting for nodes to terminate",
        deadline,
        interval,
        || async {
            if by_id.get() {
                let known = pending.borrow().clone();
                if !known.is_empty() {
                    match provider.node_states(cluster, &known).await? {
                        None => by_id.set(false),
                        Some(states) => {
                            // A node not shown (yet) is left to the listing below, which
                            // `confirm` (always set when a known node was unlisted) delays.
                            let left = not_terminated(states);
                            tracker.saw(&left);
                            terminate_late(provider, cluster, &left).await?;
                            let n = left.len();
                            *pending.borrow_mut() = left;
                            if n > 0 {
                                return Ok(Poll::Pending(format!("{n} node(s) still stopping")));
                            }
                        }
                    }
                }
            }
            if by_id.get() {
                if confirm && reference.get().elapsed() < interval.max {
                    return Ok(Poll::Pending(
                        "known nodes gone; listing again a poll interval after the first listing"
                            .into(),
                    ));
                }
                // The confirming listing (the eventual-consistency guard): like the first, only
                // what must still be stopped or waited for.
                let left = not_terminated(provider.list_nodes_to_stop(cluster).await?);
                tracker.saw(&left);
                if left.is_empty() {
                    return Ok(Poll::Ready(()));
                }
                // Nodes the first listing did not show (a lagging listing, a launch racing
                // this teardown): stopped, and waited on by id like the others.
                reference.set(Instant::now());
                terminate_late(provider, cluster, &left).await?;
                let n = left.len();
                found_late.borrow_mut().extend(left.iter().cloned());
                *pending.borrow_mut() = left;
                return Ok(Poll::Pending(format!("{n} node(s) listed late")));
            }
            let left = not_terminated(provider.list_nodes(Some(cluster)).await?);
            tracker.saw(&left);
            if left.is_empty() {
                if !confirm {
                    return Ok(Poll::Ready(()));
                }
                // An eventually consistent listing can be empty right after launches: believe
                // it when it is still empty a poll interval later.
                let since = first_empty.get().unwrap_or_else(Instant::now);
                first_empty.set(Some(since));
                if since.elapsed() >= interval.max {
                    return Ok(Poll::Ready(()));
                }
                return Ok(Poll::Pending(
                    "no node listed; confirming with a second listing".into(),
                ));
            }
            first_empty.set(None);
            terminate_late(provider, cluster, &left).await?;
            Ok(Poll::Pending(format!(
                "{} node(s) still running",
                left.len()
            )))
        },
    )
    .await?;
    tracker.nodes_gone();
    tracing::info!(target: "clusterctl::teardown", cluster = %cluster, "nodes gone; removing the supporting resources");
    let leftovers = provider.cleanup(cluster).await?;
    tracing::info!(
        target: "clusterctl::teardown",
        cluster = %cluster,
        leftovers = leftovers.len(),
        "verified"
    );
    if !leftovers.is_empty() {
        return Err(Error::Leftovers {
            name: cluster.to_string(),
            resources: leftovers,
        });
    }
    let mut terminated = targets;
    for n in found_late.into_inner() {
        if !terminated.iter().any(|t| t.id == n.id) {
            terminated.push(n);
        }
    }
    Ok(Teardown {
        nodes_terminated: terminated.into_iter().map(|n| n.name).collect(),
    })
}

/// Terminate the nodes of `left` that are still listed as running (late in the listing, or
/// slow to stop); those already stopping are left to finish.
pub(crate) async fn terminate_late(
    provider: &dyn ClusterProvider,
    cluster: &ClusterName,
    left: &[Node],
) -> Result<()> {
    let late: Vec<Node> = left
        .iter()
        .filter(|n| n.state.is_alive())
        .cloned()
        .collect();
    if late.is_empty() {
        return Ok(());
    }
    tracing::info!(
        target: "clusterctl::teardown",
        cluster = %cluster,
        late = late.len(),
        "terminating nodes still listed as running (late in the listing, or slow to stop)"
    );
    provider.terminate_nodes(cluster, &late).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fake::{Fake, QUICK},
        lifecycle::{Cancel, ReadyWait, Silent, up},
        model::{ClusterSpec, Role},
        provider::LaunchContext,
        wait::Interval,
    };

    const HOUR: Duration = Duration::from_secs(3600);

    fn spec() -> ClusterSpec {
        crate::bootstrap::tests::spec()
    }

    fn name() -> ClusterName {
        spec().name
    }

    async fn up_with(fake: &Fake, wait: Option<ReadyWait>, cancel: &Cancel) -> Result<()> {
        let spec = spec();
        let ctx = LaunchContext {
            spec: &spec,
            tls: None,
            progress: &Silent,
        };
        up(fake, &ctx, wait, &Silent, cancel, &Tracker::default())
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn rollback_terminates_launched_nodes_the_listing_does_not_show() {
        let fake = Fake::new(QUICK);
        fake.set(|s| s.lag = HOUR);
        let wait = ReadyWait {
            workers: 2,
            timeout: Duration::from_millis(300),
        };
        let err = up_with(&fake, Some(wait), &Cancel::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert_eq!(fake.running(), Vec::<String>::new(), "nodes leaked");
    }

    #[tokio::test]
    async fn a_name_held_by_another_launch_is_not_rolled_back() {
        // Another launch's nodes carry the name: a rollback (teardown by the name's tags)
        // would destroy its cluster.
        let fake = Fake::new(QUICK);
        let theirs = fake.add(Role::Scheduler, "scheduler");
        fake.set(|s| s.name_taken = true);
        let err = up_with(&fake, None, &Cancel::default()).await.unwrap_err();
        assert!(matches!(err, Error::NameTaken { .. }), "{err}");
        assert_eq!(
            fake.running(),
            vec![theirs.id],
            "the other launch's node was touched"
        );
        assert_eq!(fake.get(|s| s.lists + s.stop_lists), 0, "no teardown ran");
    }

    #[tokio::test]
    async fn a_failed_worker_launch_does_not_forget_the_scheduler() {
        let fake = Fake::new(QUICK);
        fake.set(|s| {
            s.lag = HOUR;
            s.fail_workers = true;
        });
        let err = up_with(&fake, None, &Cancel::default()).await.unwrap_err();
        assert!(matches!(err, Error::QuotaExceeded { .. }), "{err}");
        assert_eq!(fake.running(), Vec::<String>::new(), "the scheduler leaked");
    }

    #[tokio::test]
    async fn an_interrupted_launch_returns_and_its_nodes_are_removed() {
        let fake = Fake::new(QUICK);
        fake.set(|s| {
            s.lag = HOUR;
            s.launch_delay = Duration::from_millis(300);
        });
        let cancel = Cancel::default();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            c.cancel();
        });
        let started = Instant::now();
        let err = up_with(&fake, None, &cancel).await.unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err}");
        // The workers were created when the call started; their ids came back 300ms later.
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(fake.running(), Vec::<String>::new(), "workers leaked");
    }

    #[tokio::test]
    async fn a_cancel_before_anything_launches_creates_nothing() {
        let fake = Fake::new(QUICK);
        let cancel = Cancel::default();
        cancel.cancel();
        let err = up_with(&fake, None, &cancel).await.unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err}");
        assert!(fake.get(|s| s.nodes.is_empty()));
    }

    #[tokio::test]
    async fn down_confirms_an_empty_listing_of_a_young_cluster() {
        // `up --no-wait`, then `down` from another process at once: this process launched
        // nothing, and the listing does not show the node yet.
        let fake = Fake::new(Interval {
            first: Duration::from_millis(20),
            max: Duration::from_millis(400),
        });
        fake.set(|s| s.lag = Duration::from_millis(250));
        fake.add(Role::Scheduler, "scheduler");
        let young = Tracker::new(Some(now_epoch()));
        down(&fake, &name(), &young, Duration::from_secs(10), &Silent)
            .await
            .unwrap();
        assert_eq!(
            fake.running(),
            Vec::<String>::new(),
            "trusted one empty listing"
        );

        // An old cluster's empty listing is believed at once (one listing, one poll).
        let fake = Fake::new(QUICK);
        let started = Instant::now();
        let old = Tracker::new(Some(1_000));
        down(&fake, &name(), &old, Duration::from_secs(10), &Silent)
            .await
            .unwrap();
        assert_eq!(fake.get(|s| s.lists + s.stop_lists), 2);
        assert!(started.elapsed() < Duration::from_millis(40));
    }

    #[tokio::test]
    async fn down_waits_on_known_nodes_by_id_and_lists_again_a_poll_interval_later() {
        let fake = Fake::new(Interval {
            first: Duration::from_millis(20),
            max: Duration::from_millis(300),
        });
        fake.set(|s| {
            s.by_id = true;
            s.stop_after = Duration::from_millis(200);
        });
        fake.add(Role::Scheduler, "scheduler");
        // A worker launched just before `down`: the first listing does not show it yet.
        fake.set(|s| s.lag = Duration::from_millis(150));
        fake.add(Role::Worker, "worker-0");
        let young = Tracker::new(Some(now_epoch()));
        let started = Instant::now();
        let done = down(&fake, &name(), &young, Duration::from_secs(10), &Silent)
            .await
            .unwrap();
        assert_eq!(
            fake.running(),
            Vec::<String>::new(),
            "the late worker leaked"
        );
        assert_eq!(done.nodes_terminated, ["scheduler", "worker-0"]);
        // The first listing; one a poll interval later, which shows the worker; one a poll
        // interval after that, empty. The stopping nodes were looked up by id in between.
        assert_eq!(fake.get(|s| s.lists + s.stop_lists), 3);
        assert!(fake.get(|s| s.lookups) >= 2);
        assert!(started.elapsed() >= Duration::from_millis(600));

        // An old cluster: once its known node is gone, one listing, believed at once.
        let fake = Fake::new(QUICK);
        fake.set(|s| s.by_id = true);
        fake.add(Role::Worker, "worker-0");
        let old = Tracker::new(Some(1_000));
        down(&fake, &name(), &old, Duration::from_secs(10), &Silent)
            .await
            .unwrap();
        assert_eq!(fake.get(|s| s.lists + s.stop_lists), 2);
        assert_eq!(fake.get(|s| s.lookups), 1);
    }

    #[tokio::test]
    async fn down_lists_what_is_to_stop_and_waits_on_stopping_nodes_all_the_same() {
        // The first listing and the confirming one go through `list_nodes_to_stop` (the fake's
        // leaves out stopping nodes, as Fargate's ListTasks of tasks desired RUNNING does); the
        // stopped nodes are waited on by id.
        let fake = Fake::new(Interval {
            first: Duration::from_millis(20),
            max: Duration::from_millis(200),
        });
        fake.set(|s| {
            s.by_id = true;
            s.stop_after = Duration::from_millis(100);
        });
        fake.add(Role::Scheduler, "scheduler");
        fake.add(Role::Worker, "worker-0");
        let young = Tracker::new(Some(now_epoch()));
        let done = down(&fake, &name(), &young, Duration::from_secs(10), &Silent)
            .await
            .unwrap();
        assert_eq!(done.nodes_terminated, ["scheduler", "worker-0"]);
        assert_eq!(fake.running(), Vec::<String>::new());
        assert_eq!(
            fake.get(|s| s.stop_lists),
            2,
            "first and confirming listing"
        );
        assert_eq!(fake.get(|s| s.lists), 0, "no full listing");
        assert!(fake.get(|s| s.lookups) >= 1);

        // Without a lookup by id, the polls use the full listing, which shows the nodes still
        // stopping: they are waited for.
        let fake = Fake::new(QUICK);
        fake.set(|s| s.stop_after = Duration::from_millis(300));
        fake.add(Role::Worker, "worker-0");
        let old = Tracker::new(Some(1_000));
        let started = Instant::now();
        down(&fake, &name(), &old, Duration::from_secs(10), &Silent)
            .await
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "did not wait for the stopping node"
        );
        assert_eq!(fake.get(|s| s.stop_lists), 1, "the first listing");
        assert!(fake.get(|s| s.lists) >= 2);
    }

    #[tokio::test]
    async fn down_bounds_the_whole_teardown_cleanup_included() {
        let fake = Fake::new(QUICK);
        fake.set(|s| s.cleanup_hangs = true);
        fake.add(Role::Scheduler, "scheduler");
        let started = Instant::now();
        let tracker = Tracker::default();
        let cluster = name();
        let work = down(
            &fake,
            &cluster,
            &tracker,
            Duration::from_millis(300),
            &Silent,
        );
        let err = tokio::time::timeout(Duration::from_secs(5), work)
            .await
            .expect("down --timeout did not bound cleanup")
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            err.to_string()
                .contains("timed out after 300ms while removing the supporting resources"),
            "{err}"
        );
        let left = tracker.left_behind(&fake, &name(), None, err);
        assert_eq!(
            left.left_behind(),
            ["supporting resources of cluster `t` (cleanup did not finish)"]
        );
    }

    #[tokio::test]
    async fn a_failed_rollback_says_what_is_left_and_how_to_finish() {
        let fake = Fake::new(QUICK);
        fake.set(|s| {
            s.fail_workers = true;
            s.leftovers = vec!["security group sg-1".into()];
        });
        let err = up_with(&fake, None, &Cancel::default()).await.unwrap_err();
        let Error::LeftBehind { original, .. } = &err else {
            panic!("{err}");
        };
        assert!(matches!(
            original.as_deref(),
            Some(Error::QuotaExceeded { .. })
        ));
        let text = err.to_string();
        assert!(
            text.starts_with("aws: quota exceeded: no more instances; then cluster `t` was not removed completely")
                && text.ends_with("left behind: security group sg-1"),
            "{text}"
        );
        assert_eq!(err.exit_code(), 1);
        assert_eq!(err.left_behind(), ["security group sg-1"]);
        let hints = err.hints();
        assert!(
            hints[0].starts_with(
                "`clusterctl down t --provider aws --region eu-west-1` finishes removing it"
            ),
            "{hints:?}"
        );
        // The original error's own hint follows.
        assert!(hints[1].contains("quota"), "{hints:?}");
    }

    #[tokio::test]
    async fn an_unfinished_teardown_names_the_nodes_it_saw() {
        let fake = Fake::new(QUICK);
        fake.set(|s| s.stop_after = HOUR);
        let w = fake.add(Role::Worker, "worker-0");
        let tracker = Tracker::default();
        let err = down(
            &fake,
            &name(),
            &tracker,
            Duration::from_millis(200),
            &Silent,
        )
        .await
        .unwrap_err();
        let err = tracker.left_behind(&fake, &name(), Some(Error::Interrupted), err);
        assert_eq!(
            err.left_behind(),
            [
                format!("worker worker-0 ({})", w.id),
                "supporting resources of cluster `t`, if any (cleanup did not run)".into()
            ]
        );
        assert!(
            err.to_string().starts_with("interrupted; then cluster `t`"),
            "{err}"
        );
        // Abandoned before any listing: the launched nodes are what is known.
        let tracker = Tracker::with_nodes(None, std::slice::from_ref(&w));
        assert_eq!(
            tracker.unremoved(&name())[0],
            format!("worker worker-0 ({})", w.id)
        );
    }

    #[tokio::test]
    async fn down_polls_a_cloud_at_the_cloud_interval() {
        let fake = Fake::new(Interval::CLOUD);
        fake.set(|s| s.stop_after = Duration::from_millis(1500));
        fake.add(Role::Worker, "worker-0");
        let tracker = Tracker::new(Some(1_000));
        down(&fake, &name(), &tracker, Duration::from_secs(30), &Silent)
            .await
            .unwrap();
        // 0, 0.5, 1.25 and 2.4 s after the first listing; at 10 Hz it would be about 16.
        let lists = fake.get(|s| s.lists);
        assert!(lists <= 6, "{lists} listings in 1.5s");
    }
}

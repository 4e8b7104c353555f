//! Tests of the readiness wait against the fake provider and a stand-in dashboard: fail-fast
//! evidence from listings, deadlines, log tails.

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
        s.nodes[0].node.state = NodeState::NoCapacity("unschedulable: 1 Insufficient cpu".into())
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

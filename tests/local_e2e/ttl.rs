//! Clusters that end by themselves: at the idle timeout and at the TTL.

use std::time::{Duration, Instant};

use crate::common::Env;

#[test]
fn idle_timeout_and_ttl_end_clusters_by_themselves() {
    let e = Env::new();
    let (code, _, err) = e.json(&[
        "up",
        "--workers",
        "1",
        "--name",
        "e2e-idle",
        // Long enough that the worker joins before the scheduler counts as idle, even on a
        // loaded 2-core machine (the idle clock starts when the scheduler does).
        "--idle-timeout",
        "10s",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = e.json(&[
        "up",
        "--workers",
        "1",
        "--name",
        "e2e-ttl",
        "--ttl",
        "1m",
        "--idle-timeout",
        "0",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let started = Instant::now();
    let gone = |name: &str| {
        let (code, st, _) = e.json(&["status", name]);
        code == Some(1) && st["state"] == "gone"
    };
    while !gone("e2e-idle") {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "idle cluster still running"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!gone("e2e-ttl"), "the TTL cluster ended early");
    while !gone("e2e-ttl") {
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "TTL cluster still running"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // Processes exit by themselves; `down` only forgets the records.
    while !e.processes().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(200),
            "processes outlived the scheduler: {:?}",
            e.processes()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(e.run(&["down", "--all"]).status.code(), Some(0));
    e.assert_clean();
}

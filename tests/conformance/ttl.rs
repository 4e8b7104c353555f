//! TTL: a cluster made with the shortest `--ttl` ends its own billing on the platform with no
//! clusterctl running (the node's power-off with terminate-on-shutdown, the task's and pod's
//! deadlines, the platform's maximum run duration, the scheduler deleting its own resource
//! group), judged on the platform's inventory. Where the platform keeps billing a powered-off
//! machine (a DigitalOcean droplet), that is what must remain, its Dask processes stopped, and
//! `gc --yes` removes it.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use crate::{
    common::Env,
    platform::{Platform, leaks, outcome, run},
    providers::Provider,
};

/// The shortest `--ttl` clusterctl accepts.
const TTL: Duration = Duration::from_secs(60);
/// How long after the TTL the platform may take to stop billing (a node's boot delays its
/// timer; deletes take their time).
const SLACK: Duration = Duration::from_secs(150);

pub fn ttl_ends_billing(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    let baseline = p.holdings(&env);
    let billed_before = p.billed(&env);
    p.boot_nodes();

    let name = "cfttl";
    let mut up = p.up_args(name, 1);
    up.extend(["--ttl".to_string(), "1m".to_string()]);
    let started = Instant::now();
    let (code, err) = outcome(&run(p, &env, &up));
    assert_eq!(code, Some(0), "up --ttl 1m: {err}");
    let billed: Vec<String> = p.billed(&env).difference(&billed_before).cloned().collect();
    assert!(
        billed.len() >= 2,
        "a ready cluster is billed for its scheduler and worker: {billed:?}"
    );
    // No clusterctl from here on: its process has exited, and nothing of it remembers the
    // cluster (but the local provider, whose state directory is the platform itself).
    if !p.shares_state() {
        p.forget(&env);
    }

    // Billing ends by itself: all that remains billed is what the platform keeps billing by
    // design after a power-off.
    let kept = p.billed_after_ttl();
    let still = || -> BTreeSet<String> {
        p.billed(&env)
            .difference(&billed_before)
            .filter(|l| !kept.iter().any(|k| l.starts_with(k)))
            .cloned()
            .collect()
    };
    let mut left = still();
    while !left.is_empty() && started.elapsed() < TTL + SLACK {
        std::thread::sleep(Duration::from_secs(2));
        left = still();
    }
    assert!(
        left.is_empty(),
        "still billed {:?} after a TTL of {TTL:?}: {left:?}",
        started.elapsed()
    );
    let ended = started.elapsed();
    let remaining: Vec<String> = p.billed(&env).difference(&billed_before).cloned().collect();
    eprintln!(
        "[conformance] {}: billing ended {:.0} s after `up --ttl 1m` started{}",
        p.provider(),
        ended.as_secs_f64(),
        if remaining.is_empty() {
            String::new()
        } else {
            format!(" but for {remaining:?} (billed until `gc`/`down`, by design)")
        }
    );

    // What remains (free resources; a powered-off droplet) is expired once the TTL has passed
    // (Compute Engine deletes its instances ahead of it), and `gc` removes it.
    if let Some(rest) = (TTL + Duration::from_secs(3)).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let mut gc = p.cmd(&env);
    gc.args(["gc", "--yes", "--provider", p.provider()])
        .args(p.locate_args())
        .args(["--output", "json"]);
    let (code, err) = outcome(&gc.output().unwrap());
    assert_eq!(code, Some(0), "gc --yes after the TTL: {err}");
    let left = leaks(p, &env, &baseline);
    assert!(left.is_empty(), "left after the TTL and gc: {left:?}");
    let errors = p.errors();
    assert!(
        errors.trim().is_empty(),
        "the platform refused requests: {errors}"
    );
}

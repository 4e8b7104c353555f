//! `clusterctl gc` from another machine: an expired cluster with nodes and an expired
//! half-made one (its `up` killed right after its first mutating request, the claim of the
//! name) are listed without a single mutating request, then removed with `--yes`, leaving
//! nothing of them; a live cluster beside them keeps every node.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use serde_json::Value;

use crate::{
    common::Env,
    platform::{Platform, down, leaks, listed, mutating_since, outcome, run, spawn, until},
    providers::Provider,
};

/// The shortest `--ttl` clusterctl accepts.
const TTL: Duration = Duration::from_secs(60);

fn gc(p: &dyn Platform, env: &Env, yes: bool) -> (Option<i32>, Value, String) {
    let mut c = p.cmd(env);
    c.args(["gc", "-v", "--provider", p.provider()])
        .args(p.locate_args())
        .args(["--output", "json"]);
    if yes {
        c.arg("--yes");
    }
    let out = c.output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let (code, err) = outcome(&out);
    (code, json, err)
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Nodes of `name` that `status` shows not terminated, from `env`.
fn live_nodes(p: &dyn Platform, env: &Env, name: &str) -> usize {
    let mut args = vec!["status".to_string(), name.to_string()];
    args.extend(["--provider".to_string(), p.provider().to_string()]);
    args.extend(p.locate_args());
    let out = run(p, env, &args);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["nodes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter(|n| n["state"] != "terminated" && n["state"] != "stopping")
                .count()
        })
        .unwrap_or(0)
}

pub fn gc_removes_expired_only(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    let baseline = p.holdings(&env);
    let (live, old, half) = ("cfgclive", "cfgcold", "cfgchalf");
    let ttl = [
        "--ttl".to_string(),
        "1m".to_string(),
        "--no-wait".to_string(),
    ];

    // A live cluster (the default TTL) and one that expires in a minute, each with a worker.
    let mut up_live = p.up_args(live, 1);
    up_live.push("--no-wait".into());
    let (code, err) = outcome(&run(p, &env, &up_live));
    assert_eq!(code, Some(0), "up {live}: {err}");
    // Both expire a TTL after the later of their starts.
    let mut started = Instant::now();
    let mut up_old = p.up_args(old, 1);
    up_old.extend(ttl.iter().cloned());
    let (code, err) = outcome(&run(p, &env, &up_old));
    assert_eq!(code, Some(0), "up {old}: {err}");
    // Where a cluster removes itself at its TTL, `gc` may find nothing of this one.
    let mut expected = BTreeSet::from([old.to_string()]);

    // A half-made one: `up` killed once its first mutating request (the claim) was answered.
    let half_made = p.gc_finds_half_made();
    if half_made {
        let mut up_half = p.up_args(half, 1);
        up_half.extend(ttl.iter().cloned());
        p.arm(1);
        started = Instant::now();
        let mut child = spawn({
            let mut c = p.cmd(&env);
            c.args(&up_half).args(["--output", "json"]);
            c
        });
        until(
            Duration::from_secs(120),
            "the half-made up's second mutating request",
            || {
                let g = p.gate();
                g.admitted == 1 && g.held > 0 && g.in_flight == 0
            },
        );
        kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        let _ = child.wait();
        p.disarm();
        expected.insert(half.to_string());
    }
    let live_before = live_nodes(p, &env, live);
    assert!(live_before >= 2, "{live} has its scheduler and worker");

    // From another machine, once both have expired.
    p.forget(&env);
    if let Some(rest) = (TTL + Duration::from_secs(3)).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }

    // 1. Listing only: both expired clusters, not the live one, and nothing changed.
    let from = p.requests().len();
    let (code, gc_listed, err) = gc(p, &env, false);
    assert_eq!(code, Some(0), "gc (listing): {err}");
    let found = names(&gc_listed["expired"]);
    if p.ttl_removes_everything() && !found.contains(old) {
        expected.remove(old);
    }
    assert_eq!(found, expected, "gc lists: {gc_listed}\n{err}");
    assert_eq!(names(&gc_listed["removed"]), BTreeSet::new());
    let made = mutating_since(p, from);
    assert!(made.is_empty(), "gc without --yes changed: {made:?}");
    // `list` shows the half-made one too: its claim, no node, past its TTL.
    if half_made {
        let shown = listed(p, &env);
        let half_shown = shown
            .get(half)
            .unwrap_or_else(|| panic!("list misses the half-made {half}: {shown:?}"));
        assert_eq!(half_shown["state"], "expired", "{half_shown}");
        assert_eq!(half_shown["scheduler_running"], false, "{half_shown}");
        assert_eq!(half_shown["workers_running"], 0, "{half_shown}");
        assert_eq!(shown[live]["state"], "running", "{shown:?}");
        // `status`: nothing runs (exit 1, `gone`), but resources are left, and `down` is named.
        let mut args = vec!["status".to_string(), half.to_string()];
        args.extend(["--provider".to_string(), p.provider().to_string()]);
        args.extend(p.locate_args());
        let out = run(p, &env, &args);
        let (code, err) = outcome(&out);
        let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(code, Some(1), "status {half}: {status}\n{err}");
        assert_eq!(status["state"], "gone", "status {half}: {status}\n{err}");
        assert_eq!(
            status["resources_left"], true,
            "status {half}: {status}\n{err}"
        );
        assert!(err.contains(&format!("clusterctl down {half}")), "{err}");
    }

    // 2. `--yes`: both removed, with nothing of them left; the live cluster untouched.
    let (code, done, err) = gc(p, &env, true);
    assert_eq!(code, Some(0), "gc --yes: {err}\n{done}");
    let removed = names(&done["removed"]);
    let mut must = expected.clone();
    if p.ttl_removes_everything() {
        // It may finish removing itself between the two `gc`s.
        must.remove(old);
    }
    assert!(
        removed.is_subset(&expected) && must.is_subset(&removed),
        "gc removed {removed:?}, expected {expected:?}: {done}"
    );
    assert_eq!(
        live_nodes(p, &env, live),
        live_before,
        "gc touched the live cluster: {done}"
    );
    // Idempotent: nothing more to do.
    let (code, again, err) = gc(p, &env, true);
    assert_eq!(code, Some(0), "gc again: {err}");
    assert_eq!(names(&again["removed"]), BTreeSet::new(), "{again}");

    let (code, err) = outcome(&down(p, &env, live));
    assert_eq!(code, Some(0), "down {live}: {err}");

    let left = leaks(p, &env, &baseline);
    assert!(left.is_empty(), "left after gc and down: {left:?}");
    let errors = p.errors();
    assert!(
        errors.trim().is_empty(),
        "the platform refused requests: {errors}"
    );
}

//! End-to-end tests of the local provider: real Dask processes, a real Dask client computing
//! through the printed address, and checks that nothing is left afterwards.
//!
//! Here: a TLS cluster that computes, scales and leaves nothing, `run`, `--wait-workers` and
//! `--no-wait`, and `down` without the record. By theme:
//!
//! - failures and what they leave behind (`local_e2e/failures.rs`);
//! - signals and interruptions of `up` and `down` (`local_e2e/signals.rs`);
//! - races over a cluster's lock (`local_e2e/races.rs`);
//! - the idle timeout and the TTL (`local_e2e/ttl.rs`);
//! - GitHub Actions: outputs, summary, annotations, the example action (`local_e2e/github.rs`);
//! - the Dask runtime and the client's: versions, `--pip`, `doctor` (`local_e2e/runtime.rs`).

mod common;
#[path = "local_e2e/failures.rs"]
mod failures;
#[path = "local_e2e/github.rs"]
mod github;
#[path = "local_e2e/races.rs"]
mod races;
#[path = "local_e2e/runtime.rs"]
mod runtime;
#[path = "local_e2e/signals.rs"]
mod signals;
#[path = "local_e2e/ttl.rs"]
mod ttl;

use std::time::{Duration, Instant};

use common::{Env, client};
use serde_json::Value;

/// The cluster's node processes (group leaders tagged with a node name), by node name, each with
/// whether it was forked by the launcher (its command line is the launcher's, not `dask …`).
/// Waits until no other tagged process is left: the launcher exits once its `up` or `scale` has.
fn nodes_and_how_they_started(e: &Env) -> std::collections::BTreeMap<String, bool> {
    let started = Instant::now();
    loop {
        let procs: Vec<_> = clusterctl_local::process::scan(&e.state_dir().display().to_string())
            .into_iter()
            .filter(|p| !p.zombie)
            .collect();
        if procs.iter().all(|p| p.tags.contains_key("clusterctl-node")) {
            return procs
                .iter()
                .filter(|p| p.leader)
                .map(|p| {
                    let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap();
                    let forked =
                        String::from_utf8_lossy(&cmdline).contains("clusterctl local launcher");
                    (p.tags["clusterctl-node"].clone(), forked)
                })
                .collect();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the launcher outlived its command: {procs:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn env_of(e: &Env, name: &str) -> Value {
    let (code, v, err) = e.json(&["env", name]);
    assert_eq!(code, Some(0), "{err}");
    v["env"].clone()
}

#[test]
fn tls_cluster_computes_scales_and_leaves_nothing() {
    let e = Env::new();
    let (code, up, err) = e.json(&["up", "--workers", "2", "--name", "e2e-tls", "--tls"]);
    assert_eq!(code, Some(0), "up failed: {err}");
    assert_eq!(up["ready"], true);
    assert_eq!(up["workers"]["joined"], 2);
    let address = up["scheduler_address"].as_str().unwrap();
    assert!(address.starts_with("tls://127.0.0.1:"), "{address}");
    for f in ["ca_file", "cert_file", "key_file"] {
        let p = up["tls"][f].as_str().unwrap();
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{p}");
    }

    // A client with the printed address and the TLS bundle computes on both workers.
    let env = env_of(&e, "e2e-tls");
    assert_eq!(env["DASK_SCHEDULER_ADDRESS"], address);
    let r = client(&env, &["compute", "200"]);
    assert_eq!(r["result"], (0..200u64).map(|x| x * x).sum::<u64>());
    assert_eq!(r["workers"], 2);
    // Without the client certificate the scheduler refuses the connection.
    let refused = client(&env, &["refuse-plain"]);
    assert_eq!(refused["refused"], true, "{refused}");
    // The dashboard link answers, and so does the health check.
    let dash = up["dashboard_url"].as_str().unwrap();
    assert_eq!(client(&env, &["http", dash])["status"], 200);
    let health = client(&env, &["http", &dash.replace("/status", "/health")]);
    assert_eq!(health["body"], "ok");

    // status asks the live cluster.
    let (code, st, _) = e.json(&["status", "e2e-tls"]);
    assert_eq!(code, Some(0));
    assert_eq!(st["state"], "ready");
    assert_eq!(st["workers"]["joined"], 2);
    assert_eq!(st["nodes"].as_array().unwrap().len(), 3);
    // Each node is its own process (group leader, tagged), forked by the launcher that imported
    // Dask once; the launcher itself is gone with the `up` that started it.
    let forked = |names: &[&str]| -> std::collections::BTreeMap<String, bool> {
        names.iter().map(|n| (n.to_string(), true)).collect()
    };
    assert_eq!(
        nodes_and_how_they_started(&e),
        forked(&["scheduler", "worker-0", "worker-1"])
    );

    // logs come from the scheduler's own output.
    let (code, logs, _) = e.json(&["logs", "e2e-tls", "--role", "scheduler", "--tail", "200"]);
    assert_eq!(code, Some(0));
    let text = logs["logs"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains("Scheduler at:") && text.contains("tls://"),
        "{text}"
    );

    // scale up, then down; the client sees the change.
    let (code, s, err) = e.json(&["scale", "e2e-tls", "--workers", "3"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["added"], serde_json::json!(["worker-2"]));
    assert_eq!(client(&env, &["workers"])["workers"], 3);
    assert_eq!(
        nodes_and_how_they_started(&e),
        forked(&["scheduler", "worker-0", "worker-1", "worker-2"])
    );
    let (code, s, err) = e.json(&["scale", "e2e-tls", "--workers", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["removed"].as_array().unwrap().len(), 2);
    assert_eq!(client(&env, &["workers"])["workers"], 1);
    assert_eq!(
        client(&env, &["compute", "50"])["result"],
        (0..50u64).map(|x| x * x).sum::<u64>()
    );

    let (code, down, err) = e.json(&["down", "e2e-tls"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(down["removed"][0]["name"], "e2e-tls");
    e.assert_clean();
    // Idempotent.
    let (code, _, err) = e.json(&["down", "e2e-tls"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn run_propagates_exit_code_and_tears_down() {
    let e = Env::new();
    let script = "import os, sys; from distributed import Client; \
                  c = Client(os.environ['DASK_SCHEDULER_ADDRESS'], timeout='20s'); \
                  assert c.submit(pow, 2, 10).result() == 1024; c.close(); sys.exit(7)";
    let py = common::python();
    let out = e.run(&[
        "run",
        "--workers",
        "1",
        "--name",
        "e2e-run",
        "--",
        py.to_str().unwrap(),
        "-c",
        script,
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    e.assert_clean();
}

#[test]
fn down_works_from_tags_without_the_record() {
    let e = Env::new();
    let (code, _, err) = e.json(&["up", "--workers", "1", "--name", "e2e-orphan"]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::remove_dir_all(e.state_dir().join("clusters/e2e-orphan")).unwrap();
    // list still finds it on the provider.
    let (_, list, _) = e.json(&["list"]);
    let found = &list["clusters"][0];
    assert_eq!(found["name"], "e2e-orphan");
    assert_eq!(found["recorded_here"], false);
    assert_eq!(found["workers_running"], 1);
    let (code, _, err) = e.json(&["down", "e2e-orphan"]);
    assert_eq!(code, Some(0), "{err}");
    e.assert_clean();
}

#[test]
fn wait_workers_fewer_than_all_is_ready_early() {
    let e = Env::new();
    let (code, up, err) = e.json(&[
        "up",
        "--workers",
        "3",
        "--wait-workers",
        "1",
        "--name",
        "e2e-partial",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(up["ready"], true);
    assert_eq!(up["workers"]["requested"], 3);
    assert_eq!(up["workers"]["awaited"], 1);
    let joined = up["workers"]["joined"].as_u64().unwrap();
    assert!((1..=3).contains(&joined), "{up}");
    // The rest keep joining; a client computes on what is there.
    let r = client(&env_of(&e, "e2e-partial"), &["compute", "10"]);
    assert_eq!(r["result"], 285);
    // `wait` uses the recorded `--wait-workers` too.
    let (code, w, err) = e.json(&["wait", "e2e-partial"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(w["workers"]["awaited"], 1);
    let (code, _, err) = e.json(&["down", "e2e-partial"]);
    assert_eq!(code, Some(0), "{err}");
    e.assert_clean();
}

#[test]
fn no_wait_then_wait() {
    let e = Env::new();
    let (code, up, err) = e.json(&["up", "--workers", "1", "--name", "e2e-later", "--no-wait"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(up["ready"], false);
    // `wait` takes the cluster's lock, like `scale` and `down`.
    let lock = std::fs::File::open(e.state_dir().join("locks/e2e-later.lock")).unwrap();
    lock.try_lock().unwrap();
    let (code, _, err) = e.json(&["wait"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("being changed by another clusterctl process"),
        "{err}"
    );
    drop(lock);
    let (code, w, err) = e.json(&["wait"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(w["ready"], true);
    assert_eq!(w["workers"]["joined"], 1);
    let r = client(&env_of(&e, "e2e-later"), &["compute", "10"]);
    assert_eq!(r["result"], 285);
    let (code, _, err) = e.json(&["down"]);
    assert_eq!(code, Some(0), "{err}");
    e.assert_clean();
}

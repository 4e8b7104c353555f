//! End-to-end tests of the local provider: real Dask processes, a real Dask client computing
//! through the printed address, and checks that nothing is left afterwards.

mod common;

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use common::{Env, client};
use serde_json::Value;

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
fn timeout_rolls_back_and_shows_log_tail() {
    let e = Env::new();
    let out = e.run(&[
        "up",
        "--workers",
        "1",
        "--name",
        "e2e-slow",
        "--timeout",
        "300ms",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timed out after 300ms"), "{stderr}");
    assert!(
        stderr.contains("--- scheduler (scheduler) ---"),
        "no log tail: {stderr}"
    );
    assert!(stderr.contains("hint: raise `--timeout`"), "{stderr}");
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
fn sigint_during_up_leaves_nothing() {
    let e = Env::new();
    let child = e
        .cmd()
        .args(["up", "--workers", "2", "--name", "e2e-int"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the scheduler process exists, before the cluster is ready.
    let started = Instant::now();
    while e.processes().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "scheduler never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("tearing down"), "{stderr}");
    e.assert_clean();
}

#[test]
fn no_wait_then_wait() {
    let e = Env::new();
    let (code, up, err) = e.json(&["up", "--workers", "1", "--name", "e2e-later", "--no-wait"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(up["ready"], false);
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

#[test]
fn concurrent_up_of_one_name_lets_only_one_proceed() {
    let e = Env::new();
    let spawn = || {
        e.cmd()
            .args(["up", "--workers", "1", "--name", "e2e-race", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "{codes:?}\n--- first:\n{}\n--- second:\n{}",
        String::from_utf8_lossy(&outs[0].stderr),
        String::from_utf8_lossy(&outs[1].stderr)
    );
    let loser = outs.iter().find(|o| o.status.code() != Some(0)).unwrap();
    let stderr = String::from_utf8_lossy(&loser.stderr);
    assert!(
        stderr.contains("being changed by another clusterctl process")
            || stderr.contains("already exists"),
        "{stderr}"
    );
    let (_, list, _) = e.json(&["list"]);
    assert_eq!(list["clusters"].as_array().unwrap().len(), 1);
    assert_eq!(e.run(&["down", "e2e-race"]).status.code(), Some(0));
    e.assert_clean();
}

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

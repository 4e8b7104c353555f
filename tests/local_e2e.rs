//! End-to-end tests of the local provider: real Dask processes, a real Dask client computing
//! through the printed address, and checks that nothing is left afterwards.

mod common;

use std::{
    io::BufRead,
    os::unix::process::CommandExt,
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{Env, client};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

/// Send `signal` to a clusterctl process.
fn send(child: &Child, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// Wait until process `pid` handles each of `signals` itself (its handlers are installed).
fn until_it_handles(pid: u32, signals: &[Signal]) {
    let status = format!("/proc/{pid}/status");
    let wanted = signals.iter().fold(0u64, |m, s| m | (1 << (*s as u64 - 1)));
    let started = Instant::now();
    loop {
        let caught = std::fs::read_to_string(&status)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .unwrap_or(0);
        if caught & wanted == wanted {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "process {pid} never handled {signals:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait until the cluster's first node process exists (`up` is past bootstrap).
fn until_a_node_runs(e: &Env) {
    let started = Instant::now();
    while e.processes().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no node ever started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A node of `cluster` that survives SIGTERM, as a node slow to stop does: the local provider
/// kills it only 10 s after its first SIGTERM, which keeps a teardown busy that long. Each
/// SIGTERM it gets adds a line to the returned file, so a test knows a teardown has reached it.
fn stubborn_node(e: &Env, cluster: &str, name: &str) -> (Child, std::path::PathBuf) {
    let tags = serde_json::json!({
        "clusterctl-managed": "true",
        "clusterctl-cluster": cluster,
        "clusterctl-role": "worker",
        "clusterctl-node": name,
    });
    let marker = e.dir.path().join(format!("{name}.sigterms"));
    let script = format!(
        "trap 'echo TERM >> {}' TERM; while :; do sleep 0.1; done",
        marker.display()
    );
    let child = std::process::Command::new("sh")
        .args(["-c", &script])
        .env("CLUSTERCTL_SCOPE", e.state_dir().display().to_string())
        .env("CLUSTERCTL_TAGS", tags.to_string())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Ready once the shell has its trap (a SIGTERM before it would end the shell at once).
    until_it_handles(child.id(), &[Signal::SIGTERM]);
    (child, marker)
}

/// SIGTERMs the stubborn node of `marker` got so far.
fn sigterms(marker: &std::path::Path) -> usize {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .lines()
        .count()
}

/// Wait until the stubborn node of `marker` got more than `n` SIGTERMs.
fn until_terminated(marker: &std::path::Path, n: usize) {
    let started = Instant::now();
    while sigterms(marker) <= n {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no teardown reached the node"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The stderr of a running clusterctl, line by line.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: String,
}

impl Lines {
    fn of(child: &mut Child) -> Self {
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: String::new(),
        }
    }

    /// Read until a line contains `needle`; that line.
    fn until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push_str(&line);
                    self.seen.push('\n');
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("`{needle}` never came; stderr so far:\n{}", self.seen),
            }
        }
    }

    /// Everything until the process closed its stderr.
    fn rest(&mut self) -> String {
        while let Ok(line) = self.rx.recv_timeout(Duration::from_secs(60)) {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        self.seen.clone()
    }
}

/// Wait for `child` to exit within `within`; its exit code.
fn exits_within(child: &mut Child, within: Duration) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(started.elapsed() < within, "still running after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
fn run_waits_for_the_lock_before_tearing_down() {
    let e = Env::new();
    // The command leaves a process holding the cluster's lock for 3 s (as a `clusterctl scale`
    // it started in the background would).
    let lock = e.state_dir().join("locks/e2e-runlock.lock");
    // It returns once that process holds the lock (`flock -n` fails then).
    let script = format!(
        "flock {l} sleep 3 & while flock -n {l} true; do sleep 0.05; done",
        l = lock.display()
    );
    let out = e.run(&[
        "run",
        "--workers",
        "1",
        "--name",
        "e2e-runlock",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("another clusterctl process holds cluster `e2e-runlock`; waiting"),
        "{stderr}"
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
        "--output",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timed out after 300ms"), "{stderr}");
    assert!(
        stderr.contains("--- scheduler (scheduler) ---"),
        "no log tail: {stderr}"
    );
    assert!(stderr.contains("hint: raise `--timeout`"), "{stderr}");
    // The same error as the one JSON object on stdout, with every key of its shape.
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let error = v["error"].as_object().expect("an error object");
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cause_kind",
            "exit_code",
            "hints",
            "kind",
            "left_behind",
            "log_tail",
            "message"
        ]
    );
    assert_eq!(error["exit_code"], 1);
    assert_eq!(error["kind"], "timeout");
    assert_eq!(error["cause_kind"], "timeout");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 300ms")
    );
    assert!(
        error["hints"][0]
            .as_str()
            .unwrap()
            .contains("raise `--timeout`")
    );
    assert!(
        error["log_tail"]
            .as_str()
            .unwrap()
            .contains("--- scheduler (scheduler) ---")
    );
    // The rollback removed everything: nothing is left behind.
    assert_eq!(error["left_behind"], serde_json::json!([]));
    e.assert_clean();
}

#[test]
fn a_failed_rollback_keeps_the_record_and_says_what_is_left() {
    let e = Env::new();
    // The node directory's place is taken by a file: bootstrap cannot create it, and the
    // rollback cannot remove it.
    let blocked = e.state_dir().join("local/e2e-stuck");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, "in the way").unwrap();
    let out = e.run(&[
        "up",
        "--workers",
        "1",
        "--name",
        "e2e-stuck",
        "--quiet",
        "--output",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let shown = blocked.display().to_string();
    // Shown even with --quiet: the original failure, what is left, and how to finish.
    assert!(stderr.contains(&format!("creating {shown}")), "{stderr}");
    assert!(
        stderr.contains(&format!("left behind: directory {shown}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: `clusterctl down e2e-stuck --provider local` finishes removing it"),
        "{stderr}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let left = v["error"]["left_behind"].as_array().expect("a list");
    assert_eq!(left.len(), 1, "{v}");
    assert!(
        left[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("directory {shown}"))
    );
    assert_eq!(v["error"]["exit_code"], 1);
    // The record stays, so that `down` finds the cluster and finishes the job.
    assert_eq!(e.records(), ["e2e-stuck"]);
    std::fs::remove_file(&blocked).unwrap();
    let (code, _, err) = e.json(&["down", "e2e-stuck"]);
    assert_eq!(code, Some(0), "{err}");
    e.assert_clean();
}

#[test]
fn down_exits_1_and_keeps_the_record_while_something_is_left() {
    let e = Env::new();
    let (code, _, err) = e.json(&["up", "--workers", "1", "--name", "e2e-left"]);
    assert_eq!(code, Some(0), "{err}");
    // The node directory cannot be removed: a file took its place (the nodes keep their logs
    // open in the moved directory).
    let dir = e.state_dir().join("local/e2e-left");
    std::fs::rename(&dir, e.dir.path().join("moved")).unwrap();
    std::fs::write(&dir, "in the way").unwrap();
    let (code, v, err) = e.json(&["down", "e2e-left"]);
    assert_eq!(code, Some(1), "{err}");
    let shown = dir.display().to_string();
    let left = v["error"]["left_behind"].as_array().expect("a list");
    assert!(
        left.len() == 1
            && left[0]
                .as_str()
                .unwrap()
                .starts_with(&format!("directory {shown}")),
        "{v}"
    );
    assert!(
        err.contains("hint: `clusterctl down e2e-left --provider local`"),
        "{err}"
    );
    // The nodes are gone; the record stays until the cluster is.
    assert_eq!(e.processes(), Vec::<i32>::new());
    assert_eq!(e.records(), ["e2e-left"]);
    std::fs::remove_file(&dir).unwrap();
    let (code, _, err) = e.json(&["down", "e2e-left"]);
    assert_eq!(code, Some(0), "{err}");
    e.assert_clean();
}

#[test]
fn down_timeout_bounds_the_teardown_and_a_second_signal_stops_it() {
    let e = Env::new();
    let (code, _, err) = e.json(&["up", "--workers", "1", "--name", "e2e-slowdown"]);
    assert_eq!(code, Some(0), "{err}");
    let (mut stubborn, marker) = stubborn_node(&e, "e2e-slowdown", "worker-9");
    let pid = stubborn.id();

    // `--timeout` bounds the whole teardown and names what it could not remove in time.
    let started = Instant::now();
    let (code, v, err) = e.json(&["down", "e2e-slowdown", "--timeout", "2s"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(started.elapsed() < Duration::from_secs(8), "{err}");
    assert!(err.contains("timed out after 2s"), "{err}");
    let left = v["error"]["left_behind"].as_array().expect("a list");
    assert!(
        left.iter()
            .any(|l| l == &format!("worker worker-9 ({pid})")),
        "{v}"
    );
    assert_eq!(e.records(), ["e2e-slowdown"]);

    // A signal during teardown is answered; the next one stops it at once.
    let before = sigterms(&marker);
    let mut down = e
        .cmd()
        .args(["down", "e2e-slowdown"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut down);
    // In teardown: it terminated the node (again, after the first `down`).
    until_terminated(&marker, before);
    send(&down, Signal::SIGINT);
    let answer = lines.until("in progress");
    assert!(
        answer.contains("SIGINT received: the teardown of `e2e-slowdown` is in progress")
            && answer.contains("another signal stops it at once and leaves behind: ")
            && answer.contains(&format!("worker worker-9 ({pid})")),
        "{answer}"
    );
    send(&down, Signal::SIGTERM);
    assert_eq!(exits_within(&mut down, Duration::from_secs(3)), Some(1));
    let stderr = lines.rest();
    assert!(
        stderr.contains("teardown was stopped by a signal"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: `clusterctl down e2e-slowdown --provider local`"),
        "{stderr}"
    );
    assert_eq!(e.records(), ["e2e-slowdown"]);

    // Given the time, `down` finishes the job (the stubborn node is killed 10 s after SIGTERM).
    let (code, _, err) = e.json(&["down", "e2e-slowdown"]);
    assert_eq!(code, Some(0), "{err}");
    stubborn.wait().unwrap();
    e.assert_clean();
}

#[test]
fn up_answers_a_second_signal_and_leaves_at_once_on_a_third() {
    let e = Env::new();
    let mut up = e
        .cmd()
        .args(["up", "--workers", "1", "--name", "e2e-three", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Lines::of(&mut up);
    until_a_node_runs(&e);
    let (mut stubborn, marker) = stubborn_node(&e, "e2e-three", "worker-9");
    send(&up, Signal::SIGTERM);
    // Answered even with --quiet.
    lines.until("SIGTERM received: tearing down what was created");
    // The rollback has listed and terminated the nodes.
    until_terminated(&marker, 0);
    send(&up, Signal::SIGINT);
    let answer = lines.until("in progress");
    assert!(
        answer.contains(&format!("worker worker-9 ({})", stubborn.id())),
        "{answer}"
    );
    send(&up, Signal::SIGINT);
    assert_eq!(exits_within(&mut up, Duration::from_secs(3)), Some(1));
    let stderr = lines.rest();
    assert!(
        stderr.contains("interrupted; then cluster `e2e-three` was not removed completely (teardown was stopped by a signal); left behind:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: `clusterctl down e2e-three --provider local`"),
        "{stderr}"
    );
    assert_eq!(e.records(), ["e2e-three"]);
    let (code, _, err) = e.json(&["down", "e2e-three"]);
    assert_eq!(code, Some(0), "{err}");
    stubborn.wait().unwrap();
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

fn interrupted_up_leaves_nothing(signal: Signal) {
    let e = Env::new();
    let child = e
        .cmd()
        .args(["up", "--workers", "2", "--name", "e2e-int"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the scheduler process exists, before the cluster is ready.
    until_a_node_runs(&e);
    send(&child, signal);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("{signal} received: tearing down")),
        "{stderr}"
    );
    e.assert_clean();
}

#[test]
fn sigint_during_up_leaves_nothing() {
    interrupted_up_leaves_nothing(Signal::SIGINT);
}

#[test]
fn sigterm_during_up_leaves_nothing() {
    interrupted_up_leaves_nothing(Signal::SIGTERM);
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

/// In a GitHub Actions job: `up` writes the step outputs and a summary, `down` adds what it
/// removed, and an error becomes an annotation with its hint; outside one, none of it.
#[test]
fn github_actions_outputs_summary_and_error_annotations() {
    let e = Env::new();
    let output = e.dir.path().join("github_output");
    let summary = e.dir.path().join("github_step_summary");
    let in_actions = |args: &[&str]| {
        let mut c = e.cmd();
        c.args(args)
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STEP_SUMMARY", &summary);
        c.output().unwrap()
    };
    let out = in_actions(&["up", "--workers", "1", "--name", "gha"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let outputs: std::collections::BTreeMap<String, String> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let address = outputs["scheduler-address"].clone();
    assert!(address.starts_with("tcp://127.0.0.1:"), "{outputs:?}");
    assert!(
        stdout.contains(&address),
        "the same address as printed: {stdout}"
    );
    assert_eq!(outputs["name"], "gha");
    assert_eq!(outputs["provider"], "local");
    assert!(outputs["dashboard-url"].starts_with("http://127.0.0.1:"));
    assert!(outputs["expires-at"].ends_with('Z'), "{outputs:?}");
    assert!(
        humantime::parse_rfc3339(&outputs["expires-at"]).is_ok(),
        "{outputs:?}"
    );
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        text.contains("cluster `gha` is ready") && text.contains("| workers joined | 1 of 1 |"),
        "{text}"
    );
    // The address works.
    let r = client(
        &json!({"DASK_SCHEDULER_ADDRESS": address}),
        &["compute", "5"],
    );
    assert_eq!(r["result"], 30);

    let out = in_actions(&["down", "gha"]);
    assert!(out.status.success());
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.contains("removed `gha` (local"), "{text}");

    // An error: an annotation with the hint, on stderr (stdout keeps the result contract).
    let out = in_actions(&["up", "--workers", "-3"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let annotation = stderr
        .lines()
        .find(|l| l.starts_with("::error title=clusterctl::"))
        .unwrap_or_else(|| panic!("no annotation: {stderr}"));
    assert!(
        annotation.contains("-3") && annotation.contains("%0Ahint: "),
        "{annotation}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("::error"));

    // Outside a job, nothing of it.
    std::fs::remove_file(&output).unwrap();
    let out = e.run(&["up", "--workers", "-3"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("::error"));
    assert!(!output.exists());
    e.assert_clean();
}

/// The client's Dask against the cluster's: a `python3` on PATH with another release gets a
/// warning with the fix from `env`, an error with `--strict-versions`, and `status` shows
/// both versions; the same release (the runtime's own Python) says nothing.
#[test]
fn a_client_on_another_dask_release_is_warned_or_refused() {
    let e = Env::new();
    let (code, _, err) = e.json(&["up", "--workers", "1", "--name", "vers"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.contains("differs from the cluster's"),
        "same release: {err}"
    );

    let bin = e.dir.path().join("old-client");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("python3");
    std::fs::write(&fake, "#!/bin/sh\necho 2025.1.0\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let with_old_client = |args: &[&str]| {
        let mut c = e.cmd();
        c.args(args).env("PATH", &path);
        c.output().unwrap()
    };
    let out = with_old_client(&["env", "vers"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the client's distributed 2025.1.0")
            && stderr.contains(clusterctl_core::DASK_VERSION)
            && stderr.contains("hint: start the cluster with `--dask-version 2025.1.0`"),
        "{stderr}"
    );
    let out = with_old_client(&["env", "vers", "--strict-versions"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no exports when refused");
    let out = with_old_client(&["status", "vers", "--output", "json"]);
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["dask_versions"]["client"], "2025.1.0");
    assert_eq!(
        st["dask_versions"]["cluster"],
        clusterctl_core::DASK_VERSION
    );

    assert!(e.run(&["down", "vers"]).status.success());
    e.assert_clean();
}

/// The example GitHub action (`examples/github-actions/clusterctl`) run as the runner runs it:
/// its main step with the inputs as INPUT_* variables brings a cluster up and sets the step
/// outputs; its post step, given the state the main step saved, removes the cluster.
#[test]
fn the_github_action_brings_a_cluster_up_and_its_post_step_removes_it() {
    let e = Env::new();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github-actions/clusterctl");
    let output = e.dir.path().join("github_output");
    let state = e.dir.path().join("github_state");
    let node = |script: &str, extra: &[(&str, String)]| {
        let base = e.cmd();
        let mut c = std::process::Command::new("node");
        c.arg(dir.join(script)).current_dir(e.dir.path());
        for (k, v) in base.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", &output)
            .env("GITHUB_STATE", &state)
            .env("GITHUB_RUN_ID", "4242")
            .env("GITHUB_RUN_ATTEMPT", "2");
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output()
            .expect("node runs (tests/run.sh installs nodejs)")
    };
    let bin = env!("CARGO_BIN_EXE_clusterctl").to_string();
    let out = node(
        "main.js",
        &[
            ("INPUT_PROVIDER", "local".into()),
            ("INPUT_WORKERS", "1".into()),
            ("INPUT_CLUSTERCTL", bin),
            ("INPUT_TTL", "20m".into()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs = std::fs::read_to_string(&output).unwrap();
    assert!(outputs.contains("name=ci-4242-2\n"), "{outputs}");
    let address = outputs
        .lines()
        .find_map(|l| l.strip_prefix("scheduler-address="))
        .unwrap()
        .to_string();
    let r = client(
        &json!({"DASK_SCHEDULER_ADDRESS": address}),
        &["compute", "4"],
    );
    assert_eq!(r["result"], 14);

    let saved: Vec<(String, String)> = std::fs::read_to_string(&state)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (format!("STATE_{k}"), v.to_string()))
        .collect();
    let extra: Vec<(&str, String)> = saved.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let out = node("post.js", &extra);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(e.records().is_empty(), "the post step removed the cluster");
    e.assert_clean();
}

/// A wheel of a package nobody has (`clusterctl_pip_probe`, `VALUE = 42`), built in `dir`.
fn probe_wheel(dir: &std::path::Path) -> String {
    let wheel = dir.join("clusterctl_pip_probe-1.0-py3-none-any.whl");
    let script = r#"
import sys, zipfile
files = {
    "clusterctl_pip_probe/__init__.py": "VALUE = 42\n",
    "clusterctl_pip_probe-1.0.dist-info/METADATA":
        "Metadata-Version: 2.1\nName: clusterctl-pip-probe\nVersion: 1.0\n",
    "clusterctl_pip_probe-1.0.dist-info/WHEEL":
        "Wheel-Version: 1.0\nGenerator: clusterctl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files["clusterctl_pip_probe-1.0.dist-info/RECORD"] = "".join(f"{n},,\n" for n in [*files, "clusterctl_pip_probe-1.0.dist-info/RECORD"])
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
"#;
    let out = std::process::Command::new(common::python())
        .args(["-c", script])
        .arg(&wheel)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wheel.display().to_string()
}

#[test]
fn pip_packages_are_the_clusters_own() {
    let e = Env::new();
    let wheel = probe_wheel(e.dir.path());

    // --dry-run says what would be installed, and where.
    let (code, plan, err) = e.json(&["up", "--name", "e2e-pip", "--pip", &wheel, "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(plan.to_string().contains("pip installs"), "{plan}");

    let (code, up, err) = e.json(&["up", "--workers", "2", "--name", "e2e-pip", "--pip", &wheel]);
    assert_eq!(code, Some(0), "up failed: {err}");
    assert_eq!(up["workers"]["joined"], 2);
    // Importable on the scheduler and on every worker, not in the client's (the test's) Python,
    // which is the runtime the nodes run: the shared runtime was not changed.
    let r = client(&env_of(&e, "e2e-pip"), &["import", "clusterctl_pip_probe"]);
    assert_eq!(r["workers"], json!([42, 42]), "{r}");
    assert_eq!(r["scheduler"], 42, "{r}");
    assert_eq!(r["client_has_it"], false, "{r}");
    let site = e.state_dir().join("local/e2e-pip/site-packages");
    assert!(site.join("clusterctl_pip_probe/__init__.py").is_file());
    // Still forked by the launcher (started with the packages on its path), not exec'd.
    assert!(
        nodes_and_how_they_started(&e)
            .values()
            .all(|forked| *forked),
        "--pip made the nodes fall back to exec"
    );

    // Another cluster of the same runtime, without --pip, does not see it.
    let (code, _, err) = e.json(&["up", "--workers", "1", "--name", "e2e-nopip"]);
    assert_eq!(code, Some(0), "up failed: {err}");
    let r = client(
        &env_of(&e, "e2e-nopip"),
        &["import", "clusterctl_pip_probe"],
    );
    assert_eq!(r["workers"], json!([null]), "{r}");

    // A path that does not exist is refused before anything exists (exit 2, naming it).
    let (code, v, err) = e.json(&[
        "up",
        "--workers",
        "1",
        "--name",
        "e2e-badpip",
        "--pip",
        "./no-such.whl",
    ]);
    assert_eq!(code, Some(2), "{v} {err}");
    assert!(err.contains("./no-such.whl"), "{err}");
    // A wheel pip cannot install fails `up` (exit 1) with pip's words, and leaves nothing.
    let broken = e.dir.path().join("broken-1.0-py3-none-any.whl");
    std::fs::write(&broken, b"not a zip").unwrap();
    let (code, v, err) = e.json(&[
        "up",
        "--workers",
        "1",
        "--name",
        "e2e-badpip",
        "--pip",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{v} {err}");
    assert!(
        err.contains("installing") && err.contains("broken-1.0"),
        "{err}"
    );
    assert!(
        !e.state_dir().join("local/e2e-badpip").exists(),
        "the failed up left its directory"
    );

    for name in ["e2e-pip", "e2e-nopip"] {
        let (code, _, err) = e.json(&["down", name]);
        assert_eq!(code, Some(0), "{err}");
    }
    assert!(!site.exists(), "down left the cluster's packages");
    assert!(e.processes().is_empty());
}

#[test]
fn doctor_checks_the_runtime_and_the_client_and_creates_nothing() {
    let e = Env::new();
    let (code, v, err) = e.json(&["doctor", "--workers", "3"]);
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["provider"], "local");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "settings",
            "Dask runtime",
            "credentials, location, sizes, quotas and name",
            "client Python's Dask"
        ],
        "{v}"
    );
    // Text: one line per check with its mark.
    let out = e.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("✓ ")).count(),
        4,
        "{text}"
    );
    assert!(e.processes().is_empty() && e.records().is_empty());
    assert!(
        !e.state_dir().join("local").exists(),
        "doctor created a cluster directory"
    );

    // An interpreter without Dask: both the runtime and the client checks fail, with hints.
    let fake = e.dir.path().join("python-without-dask");
    std::fs::write(&fake, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, v, err) = e.json(&["doctor", "--python", fake.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v} {err}");
    assert_eq!(v["ok"], false);
    let failed = common::failed_checks(&v);
    assert_eq!(failed.len(), 2, "{v}");
    for c in failed {
        assert!(
            c["detail"]
                .as_str()
                .unwrap()
                .contains("python-without-dask"),
            "{c}"
        );
        assert!(c["hint"].as_str().is_some_and(|h| !h.is_empty()), "{c}");
    }
    let out = e.run(&["doctor", "--python", fake.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("✗ ") && text.contains("  hint: "), "{text}");

    // Flags that cannot be read are a usage error, as for `up`.
    let (code, _, err) = e.json(&["doctor", "--workers", "-1"]);
    assert_eq!(code, Some(2), "{err}");
}

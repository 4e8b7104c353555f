//! Signals and interruptions: SIGINT or SIGTERM during `up` leave nothing; during a teardown a
//! signal is answered and the next one stops it at once; `down --timeout` bounds a teardown
//! held up by a node slow to stop.

use std::{
    io::BufRead,
    os::unix::process::CommandExt,
    process::{Child, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;

use crate::common::Env;

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

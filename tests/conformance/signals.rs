//! Signals: SIGINT and SIGTERM at each phase of `up` (before its first mutating request, in
//! the middle of them, before the last, and while it waits for the cluster), and during the
//! command of `run`, make clusterctl tear down everything itself and exit 130: the platform
//! holds nothing afterwards, with no `down` run.

use std::{
    collections::BTreeSet,
    process::Output,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{
    common::Env,
    platform::{Platform, down, leaks, mutating_since, outcome, run, spawn, until},
    providers::Provider,
};

/// Wait until process `pid` handles `signal` itself (its handler is installed).
fn until_it_handles(pid: u32, signal: Signal) {
    let wanted = 1u64 << (signal as u64 - 1);
    until(Duration::from_secs(30), "the signal handler", || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & wanted != 0)
    });
}

/// An interrupted run must have exited 130 and left nothing, not even its record; a failure is
/// noted in `failures` and cleaned up for the next phase.
fn judge(
    p: &dyn Platform,
    env: &Env,
    baseline: &BTreeSet<String>,
    name: &str,
    what: &str,
    out: &Output,
    failures: &mut Vec<String>,
) {
    let (code, stderr) = outcome(out);
    let left = leaks(p, env, baseline);
    let recorded = env.records();
    if code != Some(130) || !left.is_empty() || !recorded.is_empty() {
        failures.push(format!(
            "{what}: exit {code:?}, left {left:?}, records {recorded:?}\n    {}",
            stderr.trim().replace('\n', "\n    ")
        ));
        p.forget(env);
        let _ = down(p, env, name);
    }
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Held before its (k+1)-th mutating request.
    Before(u64),
    /// All mutating requests answered, waiting for the cluster.
    Waiting,
}

pub fn signals(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    let baseline = p.holdings(&env);
    let name = "cfsig";

    // How many mutating requests `up` makes (as in the crash scenario).
    let mut no_wait = p.up_args(name, 2);
    no_wait.push("--no-wait".into());
    let from = p.requests().len();
    let (code, err) = outcome(&run(p, &env, &no_wait));
    assert_eq!(code, Some(0), "{err}");
    // Local nodes start after `up --no-wait` returned: the count must settle.
    let mut total = mutating_since(p, from).len() as u64;
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let now = mutating_since(p, from).len() as u64;
        if now == total {
            break;
        }
        total = now;
    }
    let (code, err) = outcome(&down(p, &env, name));
    assert_eq!(code, Some(0), "{err}");

    let mut phases = vec![Phase::Before(0)];
    for k in [total / 2, total.saturating_sub(1)] {
        if !phases
            .iter()
            .any(|p| matches!(p, Phase::Before(x) if *x == k))
        {
            phases.push(Phase::Before(k));
        }
    }
    if p.has_wait_phase() {
        phases.push(Phase::Waiting);
    }
    let up = p.up_args(name, 2);
    let mut failures = Vec::new();
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        for phase in &phases {
            p.forget(&env);
            p.arm(match phase {
                Phase::Before(k) => *k,
                Phase::Waiting => 1_000_000,
            });
            let mut child = spawn({
                let mut c = p.cmd(&env);
                c.args(&up).args(["--output", "json"]);
                c
            });
            let started = Instant::now();
            loop {
                assert!(
                    child.try_wait().unwrap().is_none(),
                    "{signal} {phase:?}: `up` ended before the phase"
                );
                let g = p.gate();
                let there = match phase {
                    Phase::Before(k) => g.held > 0 && g.in_flight == 0 && g.admitted == *k,
                    Phase::Waiting => g.admitted >= total && g.in_flight == 0,
                };
                if there {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "{signal} {phase:?}: not reached ({g:?})"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(phase, Phase::Waiting) {
                std::thread::sleep(Duration::from_millis(500));
            }
            until_it_handles(child.id(), signal);
            kill(Pid::from_raw(child.id() as i32), signal).unwrap();
            // The teardown's own requests must pass; a held request is dropped (the CLI sees
            // a 503 for it).
            p.disarm();
            let out = child.wait_with_output().unwrap();
            judge(
                p,
                &env,
                &baseline,
                name,
                &format!("{signal} at {phase:?}"),
                &out,
                &mut failures,
            );
        }
    }
    // During `run`'s command (one worker: the phase is the command, not the boot).
    p.boot_nodes();
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        p.forget(&env);
        let marker = env.dir.path().join(format!("command-started-{signal}"));
        let mut args = p.up_args(name, 1);
        args[0] = "run".into();
        args.extend([
            "--".to_string(),
            "sh".to_string(),
            "-c".to_string(),
            format!("touch '{}' && exec sleep 600", marker.display()),
        ]);
        let child = spawn({
            let mut c = p.cmd(&env);
            c.args(&args);
            c
        });
        let pid = child.id();
        until(Duration::from_secs(300), "run's command to start", || {
            marker.exists()
        });
        until_it_handles(pid, signal);
        kill(Pid::from_raw(pid as i32), signal).unwrap();
        let out = child.wait_with_output().unwrap();
        let what = format!("{signal} during run's command");
        judge(p, &env, &baseline, name, &what, &out, &mut failures);
    }
    eprintln!(
        "[conformance] {}: signals at {} phases of `up` and during `run`'s command x 2, {} failed",
        p.provider(),
        phases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{}: interrupted `up` or `run` did not tear down and exit 130:\n{}",
        p.provider(),
        failures.join("\n")
    );
    let errors = p.errors();
    assert!(
        errors.trim().is_empty(),
        "the platform refused requests: {errors}"
    );
}

//! Crash at every step: `up` killed (SIGKILL) right after its k-th mutating request was
//! answered, for every k, then `down` from another machine must leave nothing on the platform.

use std::{
    process::Child,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{
    common::Env,
    platform::{Platform, down, leaks, mutating_since, outcome, run, spawn},
    providers::Provider,
};

/// How long one crash point may take to reach its gate.
const REACH: Duration = Duration::from_secs(120);

/// What happened at one crash point.
enum Reached {
    /// The (k+1)-th mutating request is held: `up` was killed there.
    Held,
    /// `up` finished with fewer mutating requests than recorded (a run that needed fewer
    /// retries or calls): nothing to kill.
    Finished,
}

/// Wait until the platform holds the (k+1)-th mutating request with the first k answered, or
/// `up` ends by itself (which must be a success).
fn reach(p: &dyn Platform, child: &mut Child, k: u64) -> Reached {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child_output(child);
            assert!(
                status.success(),
                "crash point {k}: `up` failed before reaching it: {}",
                out
            );
            return Reached::Finished;
        }
        let g = p.gate();
        if g.held > 0 && g.in_flight == 0 && g.admitted == k {
            return Reached::Held;
        }
        assert!(
            started.elapsed() < REACH,
            "crash point {k}: `up` did not reach its {}-th mutating request within {REACH:?} ({g:?})",
            k + 1
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn child_output(child: &mut Child) -> String {
    use std::io::Read;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// One line of the crash matrix.
pub struct Point {
    pub k: u64,
    /// The mutating request the CLI was killed after (or "(none yet)").
    pub after: String,
    pub leaked: Vec<String>,
    pub down: (Option<i32>, String),
}

pub fn crash_at_every_step(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    let name = "cfcrash";
    let waiting = p.up_args(name, 2);
    let mut up = waiting.clone();
    up.push("--no-wait".into());

    // 1. The mutating requests of a normal `up` (2 workers), recorded by the platform.
    let mut baseline = p.holdings(&env);
    let from = p.requests().len();
    p.arm(1_000_000);
    let (code, err) = outcome(&run(p, &env, &up));
    assert_eq!(code, Some(0), "the recording `up`: {err}");
    // Local nodes start after `up --no-wait` returned: the count must settle.
    let mut gate = p.gate();
    loop {
        std::thread::sleep(Duration::from_millis(1000));
        let now = p.gate();
        if now.admitted == gate.admitted {
            break;
        }
        gate = now;
    }
    p.disarm();
    let steps = mutating_since(p, from);
    assert!(
        !gate.log.is_empty() || !steps.is_empty(),
        "no mutating request recorded"
    );
    let total = gate.admitted;
    assert_eq!(
        total as usize,
        steps.len(),
        "the gate and the request log count the same mutating requests: {:?} vs {steps:?}",
        gate.log
    );
    let (code, err) = outcome(&down(p, &env, name));
    assert_eq!(code, Some(0), "down after the recording `up`: {err}");
    let left = leaks(p, &env, &baseline);
    assert!(left.is_empty(), "after the recording run's down: {left:?}");
    eprintln!(
        "[conformance] {}: `up --no-wait` makes {total} mutating requests: {steps:?}",
        p.provider()
    );

    // 2. A crash after each of them.
    let mut points = Vec::new();
    for k in 0..total {
        p.forget(&env);
        p.arm(k);
        let mut child = spawn({
            let mut c = p.cmd(&env);
            c.args(&up).args(["--output", "json"]);
            c
        });
        let reached = reach(p, &mut child, k);
        if matches!(reached, Reached::Held) {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
        }
        let _ = child.wait();
        p.disarm();
        // Another machine: no record, only the name.
        p.forget(&env);
        let down_out = outcome(&down(p, &env, name));
        let leaked = leaks(p, &env, &baseline);
        if !leaked.is_empty() {
            // Judge the next points on their own.
            baseline = p.holdings(&env);
        }
        let after = if k == 0 {
            "(none yet)".to_string()
        } else {
            steps
                .get(k as usize - 1)
                .cloned()
                .unwrap_or_else(|| "?".into())
        };
        points.push(Point {
            k,
            after,
            leaked,
            down: down_out,
        });
    }

    // 3. A fresh `up` of the same name, waiting for the cluster, succeeds after the last crash
    //    (each crash point's `up` already got past the previous crash's leftovers up to its
    //    own gate), makes no mutating request beyond those of `--no-wait` (so the crash points
    //    cover every one), and is removed.
    p.forget(&env);
    p.boot_nodes();
    let from = p.requests().len();
    let (code, err) = outcome(&run(p, &env, &waiting));
    assert_eq!(code, Some(0), "a fresh `up` after the crashes: {err}");
    let made = mutating_since(p, from);
    assert_eq!(
        made.len(),
        steps.len(),
        "a waiting `up` makes other mutating requests than `up --no-wait`: {made:?} vs {steps:?}"
    );
    let (code, err) = outcome(&down(p, &env, name));
    assert_eq!(code, Some(0), "its down: {err}");
    let final_left = leaks(p, &env, &baseline);

    report(p.provider(), &points);
    let failed: Vec<&Point> = points
        .iter()
        .filter(|pt| !pt.leaked.is_empty() || pt.down.0 != Some(0))
        .collect();
    assert!(
        failed.is_empty(),
        "{}: crash points that left something or whose down failed:\n{}",
        p.provider(),
        failed
            .iter()
            .map(|pt| format!(
                "  k={} after {}: down exit {:?}, left {:?}\n    {}",
                pt.k,
                pt.after,
                pt.down.0,
                pt.leaked,
                pt.down.1.trim().replace('\n', "\n    ")
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        final_left.is_empty(),
        "after the fresh up's down: {final_left:?}"
    );
    let errors = p.errors();
    assert!(
        errors.trim().is_empty(),
        "the platform refused requests: {errors}"
    );
}

fn report(provider: &str, points: &[Point]) {
    eprintln!("[conformance] crash matrix for {provider}:");
    for pt in points {
        eprintln!(
            "[conformance]   k={:<3} killed after {:<60} down={:?} leaks={}",
            pt.k,
            pt.after,
            pt.down.0,
            pt.leaked.len()
        );
    }
}

/// `up` (waiting), `down`, and `up` of the same name again (waiting): the second cluster is
/// healthy whatever the platform still lists of the first (stopped nodes), then removed.
pub fn recreate(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    let baseline = p.holdings(&env);
    p.boot_nodes();
    let name = "cfagain";
    for round in ["first", "second"] {
        let (code, err) = outcome(&run(p, &env, &p.up_args(name, 2)));
        assert_eq!(code, Some(0), "the {round} `up` of {name}: {err}");
        let (code, err) = outcome(&down(p, &env, name));
        assert_eq!(code, Some(0), "the {round} `down`: {err}");
        let left = leaks(p, &env, &baseline);
        assert!(left.is_empty(), "after the {round} down: {left:?}");
    }
}

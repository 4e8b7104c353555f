//! Races: two `up`s of one name at once from two machines (exactly one cluster, healthy, of one
//! launch; the loser exits 1 or 2 with no record, having touched nothing of the winner's),
//! `down` twice at once, `down` during `up`, `scale` during `down`. No leak, no crash (panic,
//! exit 101, a signal), and any refusal is a clear error.

use std::process::Output;

use serde_json::Value;

use crate::{
    common::{self, Env},
    platform::{Platform, down, leaks, outcome, run, spawn, until},
    providers::Provider,
};

/// A run that did not crash: exit 0, or exit 1/2 with an `error:` line.
fn clean_exit(what: &str, out: &Output) -> Option<i32> {
    let (code, stderr) = outcome(out);
    assert!(
        matches!(code, Some(0..=2)) && !stderr.contains("panicked"),
        "{what} crashed: exit {code:?}\n{stderr}"
    );
    if code != Some(0) {
        assert!(
            stderr.contains("error"),
            "{what} failed without a clear error: exit {code:?}\n{stderr}"
        );
    }
    code
}

fn down_cmd(p: &dyn Platform, env: &Env, name: &str) -> std::process::Command {
    let mut c = p.cmd(env);
    c.args(["down", name, "--provider", p.provider()])
        .args(p.locate_args())
        .args(["--output", "json"]);
    c
}

pub fn races(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    let baseline = p.holdings(&env);
    let other_env = Env::new();
    let other = if p.shares_state() { &env } else { &other_env };

    // 0. Two waiting `up`s of one name at once, each from its own machine.
    p.boot_nodes();
    let both = p.up_args("cfrace0", 1);
    let cmd = |e: &Env| {
        let mut c = p.cmd(e);
        c.args(&both);
        c
    };
    let ((winner, _), (loser, _)) = common::race_two_ups(p.provider(), cmd(&env), cmd(other));
    let envs = [&env, other];
    let (won_env, lost_env) = (envs[winner], envs[loser]);
    if !p.shares_state() {
        assert!(lost_env.records().is_empty(), "the loser keeps no record");
    }
    let mut status = vec!["status".to_string(), "cfrace0".into()];
    status.extend(["--provider".to_string(), p.provider().to_string()]);
    status.extend(p.locate_args());
    let out = run(p, won_env, &status);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    assert_eq!(v["state"], "ready", "the winner's cluster is whole: {v}");
    let launches: std::collections::BTreeSet<String> = v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["tags"]["clusterctl-launch"].as_str().map(str::to_string))
        .collect();
    assert_eq!(launches.len(), 1, "the nodes of one launch only: {v}");
    let (code, err) = outcome(&down(p, won_env, "cfrace0"));
    assert_eq!(code, Some(0), "down the winner: {err}");
    let left = leaks(p, &env, &baseline);
    assert!(left.is_empty(), "left after the two ups' cluster: {left:?}");

    let name = "cfrace";
    let mut up = p.up_args(name, 2);
    up.push("--no-wait".into());

    // 1. `down` twice at once, one with the record, one from another machine.
    let (code, err) = outcome(&run(p, &env, &up));
    assert_eq!(code, Some(0), "up: {err}");
    let a = spawn(down_cmd(p, &env, name));
    let b = spawn(down_cmd(p, other, name));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [
        clean_exit("down (here)", &a),
        clean_exit("down (elsewhere)", &b),
    ];
    assert!(
        codes.contains(&Some(0)),
        "one `down` at least succeeds: {codes:?}"
    );
    let left = leaks(p, &env, &baseline);
    assert!(left.is_empty(), "left after two concurrent downs: {left:?}");

    // 2. `down` (from another machine) while `up` is creating.
    p.forget(&env);
    p.arm(1_000_000);
    let upc = spawn({
        let mut c = p.cmd(&env);
        c.args(&up).args(["--output", "json"]);
        c
    });
    until(
        std::time::Duration::from_secs(60),
        "up's first mutating request",
        || p.gate().admitted >= 1,
    );
    p.disarm();
    let d = down_cmd(p, other, name).output().unwrap();
    let up_out = upc.wait_with_output().unwrap();
    let up_code = clean_exit("up during down", &up_out);
    clean_exit("down during up", &d);
    // Whatever order they ended in, one more `down` leaves nothing.
    p.forget(&env);
    let (code, err) = outcome(&down(p, &env, name));
    assert_eq!(
        code,
        Some(0),
        "down after the race (up exited {up_code:?}): {err}"
    );
    let left = leaks(p, &env, &baseline);
    assert!(left.is_empty(), "left after down during up: {left:?}");

    // 3. `scale` during `down` (same machine: the record is there for both).
    p.forget(&env);
    let (code, err) = outcome(&run(p, &env, &up));
    assert_eq!(code, Some(0), "up: {err}");
    let dc = spawn(down_cmd(p, &env, name));
    let sc = spawn({
        let mut c = p.cmd(&env);
        c.args(["scale", name, "--workers", "3", "--output", "json"]);
        c
    });
    let (d, s) = (
        dc.wait_with_output().unwrap(),
        sc.wait_with_output().unwrap(),
    );
    let down_code = clean_exit("down during scale", &d);
    let scale_code = clean_exit("scale during down", &s);
    if down_code == Some(0) {
        let left = leaks(p, &env, &baseline);
        assert!(
            left.is_empty(),
            "`down` succeeded while `scale` ran (exit {scale_code:?}) yet left: {left:?}\nscale: {}",
            outcome(&s).1
        );
    }
    p.forget(&env);
    let (code, err) = outcome(&down(p, &env, name));
    assert_eq!(code, Some(0), "final down: {err}");
    let left = leaks(p, &env, &baseline);
    assert!(left.is_empty(), "left after scale during down: {left:?}");
    let errors = p.errors();
    assert!(
        errors.trim().is_empty(),
        "the platform refused requests: {errors}"
    );
}

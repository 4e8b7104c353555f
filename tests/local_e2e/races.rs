//! Races over a cluster's lock: two `up`s of one name at once (only one proceeds), and `run`
//! waiting for the lock before it tears down.

use std::process::Stdio;

use crate::common::Env;

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

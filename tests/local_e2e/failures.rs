//! Failures and what they leave: an `up` that times out rolls back and shows the log tail; a
//! rollback or a `down` that cannot remove everything keeps the record and names what is left.

use serde_json::Value;

use crate::common::Env;

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

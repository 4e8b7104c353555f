//! GitHub Actions: the step outputs, the job summary and error annotations, and the example
//! action's main and post steps.

use serde_json::json;

use crate::common::{Env, client};

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

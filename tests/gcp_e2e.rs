//! End-to-end tests of the `gcp` provider against the Compute Engine + IAM + Secret Manager
//! simulator of `tests/gcp/`: instances whose metadata `user-data` the shared VM boot runtime
//! runs as real Dask processes on their internal addresses, the nodes' keys fetched at boot
//! from Secret Manager with the instance's service-account token from the metadata server, a
//! real Dask client computing with TLS through the scheduler's external address behind the
//! cluster's firewall rule, what the simulator holds after each command (firewall rules, no
//! external IP on workers, labels on every resource, no key in metadata, maxRunDuration with
//! DELETE), nothing labelled after `down`, and Compute deleting the instances at the TTL with
//! no clusterctl running.
//!
//! Addresses are `10.x`, so each test runs in its own network namespace (`common::sandbox`),
//! where the client's source address is `10.0.0.0`: the clusters allow `10.0.0.0/32`.

mod common;

use std::{time::Duration, time::Instant};

use common::{
    Env, client,
    gce::{Gce, PROJECT, role},
};
use serde_json::{Value, json};

#[test]
fn gcp_cluster_runs_computes_scales_logs_and_leaves_nothing() {
    let g = Gce::new(&[]);
    // Throttling on the way: Compute's 403 rateLimitExceeded on the workers' bulkInsert, retried.
    g.sim.fault(json!({"method": "POST", "path": "bulkInsert", "status": 403, "count": 1,
        "body": {"error": {"code": 403, "message": "Rate Limit Exceeded", "status": "PERMISSION_DENIED",
            "errors": [{"message": "Rate Limit Exceeded", "domain": "usageLimits", "reason": "rateLimitExceeded"}]}}}));
    g.sim.mark("up");
    let (code, up, err) = g.json(&Gce::up_args("gce", "2"));
    assert_eq!(
        code,
        Some(0),
        "up failed: {err}\nsim errors: {}",
        g.sim.errors()
    );
    assert_eq!(up["ready"], true);
    assert_eq!(up["provider"], "gcp");
    assert_eq!(up["workers"]["joined"], 2);
    let address = up["scheduler_address"].as_str().unwrap().to_string();
    assert!(address.starts_with("tls://"), "{address}");

    let inv = g.sim.inventory();
    let all = g.instances("gce");
    assert_eq!(all.len(), 3, "{all:?}");
    let scheduler = role(&all, "scheduler");
    assert_eq!(scheduler.len(), 1);
    assert_eq!(scheduler[0]["name"], "gce-scheduler");
    assert_eq!(scheduler[0]["machine_type"], "e2-standard-2");
    assert!(scheduler[0]["external_ip"].is_string(), "{}", scheduler[0]);
    for w in role(&all, "worker") {
        assert_eq!(w["machine_type"], "e2-standard-4");
        assert!(
            w["external_ip"].is_null(),
            "no external IP on a worker: {w}"
        );
    }
    let email = format!("clusterctl-gce@{PROJECT}.iam.gserviceaccount.com");
    for i in &all {
        assert_eq!(i["booted"], "booted", "{}", i["name"]);
        for key in [
            "clusterctl-managed",
            "clusterctl-cluster",
            "clusterctl-expires",
            "clusterctl-launch",
            "clusterctl-owner",
        ] {
            assert!(i["labels"].get(key).is_some(), "{key} on {}", i["name"]);
        }
        assert_eq!(i["tags"], json!(["clusterctl-gce"]));
        assert_eq!(i["metadata_keys"], json!(["user-data"]));
        let ud = i["metadata"]["user-data"].as_str().unwrap();
        assert!(ud.starts_with("#cloud-config"));
        assert!(
            !ud.contains("PRIVATE KEY"),
            "a private key in metadata: {}",
            i["name"]
        );
        assert_eq!(i["service_account"], email.as_str());
        assert_eq!(i["scheduling"]["instanceTerminationAction"], "DELETE");
        assert!(
            i["scheduling"]["maxRunDuration"]["seconds"].is_string(),
            "{}",
            i["scheduling"]
        );
    }
    // Firewall rules: 8786-8787 from --allow-cidr only; all traffic between the cluster's own.
    let rules: Vec<&Value> = inv["firewalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"].as_str().unwrap().starts_with("clusterctl-gce"))
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    for r in &rules {
        assert_eq!(r["world_open"], false, "{r}");
        assert_eq!(r["targetTags"], json!(["clusterctl-gce"]));
    }
    let ports = rules
        .iter()
        .find(|r| r["name"] == "clusterctl-gce")
        .unwrap();
    assert_eq!(
        ports["sourceRanges"],
        json!(["10.0.0.0/32", "203.0.113.7/32"])
    );
    assert_eq!(
        ports["allowed"],
        json!([{"IPProtocol": "tcp", "ports": ["8786-8787"]}])
    );
    // Keys: Secret Manager secrets readable only by the cluster's account, read by the nodes.
    let secrets: Vec<&Value> = inv["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["labels"]["clusterctl-cluster"] == "gce")
        .collect();
    assert!(!secrets.is_empty());
    for s in &secrets {
        assert_eq!(
            s["bindings"],
            json!([{"role": "roles/secretmanager.secretAccessor", "members": [format!("serviceAccount:{email}")]}])
        );
        assert_eq!(
            s["accessed_by"],
            json!([format!("serviceAccount:{email}")]),
            "{s}"
        );
    }
    let faults = g.sim.control("GET", "/_sim/faults", None).to_string();
    assert!(
        !faults.contains("\"remaining\":1"),
        "the injected fault was hit: {faults}"
    );

    let (_, env, _) = g.json(&["env", "gce"]);
    let r = client(&env["env"], &["compute", "300"]);
    assert_eq!(r["result"], (0..300u64).map(|x| x * x).sum::<u64>());
    assert_eq!(r["workers"], 2);

    let (code, status, err) = g.json(&["status", "gce"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status["state"], "ready");

    let (code, logs, err) = g.json(&["logs", "gce", "--role", "scheduler", "--tail", "300"]);
    assert_eq!(code, Some(0), "{err}");
    let text = logs.to_string();
    assert!(
        text.contains("Scheduler at") || text.contains("Register worker"),
        "the scheduler's Dask log: {text}"
    );

    let (code, listed, err) = g.json(&["list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(listed.to_string().contains("gce"), "{listed}");

    g.sim.mark("scale");
    let (code, scaled, err) = g.json(&["scale", "gce", "--workers", "3"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(scaled["added"].as_array().unwrap().len(), 1, "{scaled}");
    assert_eq!(role(&g.instances("gce"), "worker").len(), 3);
    assert_eq!(client(&env["env"], &["workers"])["workers"], 3);
    let (code, scaled, err) = g.json(&["scale", "gce", "--workers", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(scaled["removed"].as_array().unwrap().len(), 2, "{scaled}");
    assert_eq!(role(&g.instances("gce"), "worker").len(), 1);

    g.sim.mark("down");
    let (code, down, err) = g.json(&["down", "gce"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(down["removed"][0]["name"], "gce");
    g.assert_nothing_left("gce");
    // Again from a machine without the record, where the environment names another project:
    // `--project` says where to look (a project the simulator does not know would fail).
    let out = g
        .cmd()
        .args([
            "down",
            "gce",
            "--provider",
            "gcp",
            "--region",
            "us-central1-a",
        ])
        .args(["--project", PROJECT, "--output", "json"])
        .env("GOOGLE_CLOUD_PROJECT", "some-other-project")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_input_exits_2_and_creates_nothing() {
    let g = Gce::new(&[]);
    let refuse = |extra: &[&str], needle: &str| {
        let mut args = Gce::up_args("gcb", "1");
        if extra.contains(&"--zone") {
            let at = args.iter().position(|a| *a == "--zone").unwrap();
            args.drain(at..at + 2);
        }
        args.extend_from_slice(extra);
        let out = g.cmd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {needle} in {err}");
        assert!(err.contains("hint:"), "{extra:?}: {err}");
    };
    refuse(&["--zone", "us-central1"], "us-central1");
    refuse(&["--zone", "mars-north9-z"], "mars-north9-z");
    refuse(
        &[
            "--zone",
            "us-east1-d",
            "--worker-machine-type",
            "c3-standard-4",
        ],
        "c3-standard-4",
    );
    refuse(&["--project", "Bad_Project"], "Bad_Project");
    refuse(&["--tag", "Team=x"], "Team=x");
    refuse(
        &[
            "--gcp-image",
            "projects/cos-cloud/global/images/family/cos-99",
        ],
        "cos-99",
    );
    let mut args = Gce::up_args("gcb", "1");
    args.push("--dry-run");
    let out = g.cmd().args(&args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("service account") && text.contains(PROJECT),
        "{text}"
    );
    let inv = g.sim.inventory();
    assert_eq!(inv["instances"], json!([]));
    assert!(
        inv["firewalls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["name"].as_str().unwrap().starts_with("default-"))
    );
    assert_eq!(inv["secrets"], json!([]));
    assert_eq!(
        inv["service_accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["email"].as_str().unwrap().starts_with("clusterctl-"))
            .count(),
        0
    );
    let errors = g.sim.errors();
    assert!(
        errors.trim().is_empty(),
        "the simulator refused requests: {errors}"
    );
}

/// Two `up` of one name at once from two machines: the firewall rule's insert claims the name
/// (Compute answers the second 409), so one cluster of one launch exists and computes, and the
/// loser exits 1 (`NameTaken`) removing nothing of it.
#[test]
fn two_ups_of_one_name_at_once_leave_one_healthy_cluster() {
    let g = Gce::new(&[]);
    let other = Env::new();
    let args = Gce::up_args("gcrace", "1");
    let cmd = |env: &Env| {
        let mut c = g.cmd_in(env);
        c.args(&args);
        c
    };
    let ((winner, _), (loser, _)) = common::race_two_ups("gcp", cmd(&g.env), cmd(&other));
    let (won_env, lost_env) = ([&g.env, &other][winner], [&g.env, &other][loser]);
    assert!(lost_env.records().is_empty());
    let all = g.instances("gcrace");
    assert_eq!(all.len(), 2, "{all:?}");
    let launches: std::collections::BTreeSet<String> = all
        .iter()
        .map(|v| v["labels"]["clusterctl-launch"].to_string())
        .collect();
    assert_eq!(launches.len(), 1, "{launches:?}");
    let (mut env, mut down) = (g.cmd_in(won_env), g.cmd_in(won_env));
    env.args(["env", "gcrace"]);
    down.args(["down", "gcrace"]);
    common::winner_computes_and_goes(env, down, 30);
    g.assert_nothing_left("gcrace");
}

/// The TTL without clusterctl: every instance carries maxRunDuration (the time left) with
/// DELETE, and Compute (the simulator, its durations scaled down) deletes them then.
#[test]
fn compute_engine_deletes_the_instances_at_the_ttl() {
    let g = Gce::new(&["--run-duration-scale", "0.05"]);
    let mut args = Gce::up_args("gcttl", "1");
    args.extend(["--ttl", "10m"]);
    let (code, _, err) = g.json(&args);
    assert_eq!(code, Some(0), "{err}");
    let all = g.instances("gcttl");
    assert_eq!(all.len(), 2);
    for i in &all {
        let secs: u64 = i["scheduling"]["maxRunDuration"]["seconds"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        // The time left, 30 s ahead of the expiry (the timer may act 30 s late).
        assert!((480..=570).contains(&secs), "{secs}");
    }
    // No clusterctl runs from here on; 600 s scaled by 0.05 is 30 s.
    let started = Instant::now();
    while !g.instances("gcttl").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "still there: {:?}",
            g.instances("gcttl")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let deleted = g.sim.inventory()["deleted_instances"].to_string();
    assert!(deleted.contains("maxRunDuration"), "{deleted}");
    let out = g.cmd().args(["down", "gcttl"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    g.assert_nothing_left("gcttl");
}

#[test]
fn doctor_checks_credentials_zone_and_quota_creating_nothing() {
    let g = Gce::new(&[]);
    let doctor = |workers: &str| {
        let mut args = vec!["doctor"];
        args.extend(&Gce::up_args("gcdoc", workers)[1..]);
        g.json(&args)
    };
    let (code, v, err) = doctor("2");
    assert_eq!(code, Some(0), "{v} {err}\nsim errors: {}", g.sim.errors());
    assert_eq!(v["ok"], true, "{v}");
    // The CPU quota of the region below what 1 + 5 nodes need: that check fails, exit 1.
    g.sim.control(
        "POST",
        "/_sim/quota",
        Some(&json!({"metric": "CPUS", "limit": 4})),
    );
    let (code, v, err) = doctor("5");
    assert_eq!(code, Some(1), "{v} {err}");
    let failed = common::failed_checks(&v);
    assert_eq!(failed.len(), 1, "{v}");
    assert!(
        failed[0]["detail"].as_str().unwrap().contains("CPUS"),
        "{v}"
    );
    // Read-only: no request but reads and the token exchange reached the simulator.
    let writes = g.sim.writes();
    assert!(writes.is_empty(), "{writes:?}");
    g.assert_nothing_left("gcdoc");
}

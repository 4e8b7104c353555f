//! What fails or is refused: pods that cannot run fail fast and roll back, bad input exits 2
//! creating nothing, and `doctor` dry-runs the creates and reports a forbidden one.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Kube, common};

#[test]
fn pods_that_cannot_run_fail_fast_with_their_events_and_roll_back() {
    let k = Kube::with(&["--backoff-scale", "0.1"]);
    // An image that does not exist.
    let started = Instant::now();
    let mut args = k.up_args("k8img", "1");
    args.extend(["--image", "ghcr.io/dask/dask:0.0.0-missing"]);
    let (code, out, err) = k.json(&args);
    assert_eq!(code, Some(1), "{out} {err}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "failed fast, not at the timeout"
    );
    let msg = out["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("ErrImagePull") || msg.contains("ImagePullBackOff"),
        "{out}"
    );
    k.assert_nothing_left_but("k8img", Some("0.0.0-missing"));

    // More CPU than the node has: unschedulable, with the scheduler's event.
    let (code, out, err) = k.json(&[
        "up",
        "--provider",
        "kubernetes",
        "--name",
        "k8big",
        "--workers",
        "1",
        "--scheduler-memory",
        "1GiB",
        "--worker-cpus",
        "64",
        "--timeout",
        "120s",
    ]);
    assert_eq!(code, Some(1), "{out} {err}");
    let msg = out["error"]["message"].to_string();
    assert!(msg.contains("Insufficient cpu"), "{out}");
    assert_eq!(out["error"]["kind"], "capacity_unavailable", "{out}");
    k.assert_nothing_left_but("k8big", Some("0.0.0-missing"));

    // A worker that crashes: the failure names it and carries its log tail.
    k.sim
        .faults(&json!({"pods": [{"name": "k8crash-worker-0", "mode": "crash"}]}));
    let (code, out, err) = k.json(&k.up_args("k8crash", "1"));
    assert_eq!(code, Some(1), "{out} {err}");
    let msg = out["error"]["message"].to_string();
    assert!(msg.contains("worker-0"), "{out}");
    k.assert_nothing_left_but("k8crash", Some("0.0.0-missing"));
}

#[test]
fn bad_input_exits_2_and_creates_nothing() {
    let k = Kube::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--namespace", "missing-ns"], "--create-namespace"),
        (&["--namespace", "Bad_NS"], "Bad_NS"),
        (&["--service-type", "Ingress"], "Ingress"),
        (&["--service-type", "LoadBalancer"], "--allow-cidr"),
        // An internal load balancer is only asked for: it needs source ranges too.
        (
            &["--service-type", "LoadBalancer", "--private"],
            "--allow-cidr",
        ),
        (&["--allow-cidr", "203.0.113.7/32"], "LoadBalancer"),
        (&["--tag", "team=a@b"], "a@b"),
        (&["--context", "nope"], "nope"),
        (&["--region", "us-east-1"], "--context"),
        (&["--k8s-operator"], "not installed"),
        // Past the TTL the operator's Deployments restart their pods: only its idle timeout
        // ends a forgotten cluster, so it may not be turned off (issue 13 #13).
        (&["--k8s-operator", "--idle-timeout", "0"], "idle timeout"),
    ];
    for (extra, needle) in cases {
        let mut args = k.up_args("k8bad", "1");
        args.extend(*extra);
        let (code, out, err) = k.json(&args);
        assert_eq!(code, Some(2), "{extra:?}: {out} {err}");
        assert!(out.to_string().contains(needle), "{extra:?}: {out}");
    }
    // `--private` with a load balancer asks EKS, GKE and AKS for an internal one, with ranges.
    let mut args = k.up_args("k8dry", "2");
    args.extend([
        "--service-type",
        "LoadBalancer",
        "--private",
        "--allow-cidr",
        "10.0.0.0/8",
        "--dry-run",
    ]);
    let (code, plan, err) = k.json(&args);
    assert_eq!(code, Some(0), "{err}");
    let text = plan["plan"].to_string();
    for annotation in [
        "service.beta.kubernetes.io/aws-load-balancer-scheme",
        "networking.gke.io/load-balancer-type",
        "service.beta.kubernetes.io/azure-load-balancer-internal",
    ] {
        assert!(text.contains(annotation), "{annotation} in {plan}");
    }
    assert!(text.contains("loadBalancerSourceRanges"), "{plan}");
    assert!(
        text.contains("k8dry-scheduler") && text.contains("activeDeadlineSeconds"),
        "{plan}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{plan}");
    for name in ["k8bad", "k8dry"] {
        k.assert_nothing_left(name);
    }
    let all = k
        .sim
        .objects(Some("app.kubernetes.io/managed-by=clusterctl"));
    assert_eq!(
        all["objects"],
        json!({}),
        "nothing at all was created: {all}"
    );
}

#[test]
fn doctor_dry_runs_the_creates_and_reports_a_forbidden_one() {
    let k = Kube::new();
    let flags: Vec<&str> = k.up_args("k8doc", "2")[1..].to_vec();
    let mut args = vec!["doctor"];
    args.extend(&flags);
    let (code, v, err) = k.json(&args);
    assert_eq!(code, Some(0), "{v} {err}\nsim errors: {}", k.sim.errors());
    for kind in ["configmaps", "services", "pods"] {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == format!("permission to create {kind}"))
            .unwrap_or_else(|| panic!("no check for {kind}: {v}"));
        assert_eq!(c["ok"], true, "{c}");
    }
    // Every create was a server-side dry run, and nothing was kept.
    let posts: Vec<Value> = k
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST")
        .collect();
    assert_eq!(posts.len(), 3, "{posts:?}");
    for p in &posts {
        assert_eq!(p["query"]["dryRun"], json!(["All"]), "{p}");
        assert_eq!(p["status"], 201, "{p}");
    }
    k.assert_nothing_left("k8doc");
    assert_eq!(
        k.sim
            .objects(Some("app.kubernetes.io/managed-by=clusterctl"))["objects"],
        json!({})
    );

    // RBAC says no to pods: that line fails with the permission error, exit 1.
    k.sim.faults(&json!({"api": [
        {"method": "POST", "path": "/api/v1/namespaces/default/pods$", "status": 403, "count": 1},
    ]}));
    let (code, v, err) = k.json(&args);
    assert_eq!(code, Some(1), "{v} {err}");
    let failed = common::failed_checks(&v);
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["name"], "permission to create pods", "{v}");
    k.assert_nothing_left("k8doc");
}

//! End-to-end tests of the `gcp` provider on the paths the main test does not take, against the
//! simulator of `tests/gcp/`: workload identity federation (an `external_account` file with a
//! URL-sourced subject token and service-account impersonation, as google-github-actions/auth
//! writes it; a file-sourced one; a forged subject token refused) with the project taken from
//! gcloud's active configuration; a Spot stockout falling back to standard; a stockout in
//! every zone of `--zone` and a quota refusal (up front, and inside the operation) exiting 1
//! with nothing left; the scheduler's chosen internal address taken by another resource;
//! `--service-account` with `--gpu` workers; a custom-mode VPC. Every check reads what the
//! simulator holds.

mod common;

use std::path::Path;

use common::{
    client,
    gce::{Gce, PROJECT, failed_ops, role},
};
use serde_json::{Value, json};

/// The files an instance's cloud-init writes (base64 in its `user-data`), decoded.
fn boot_files(instance: &Value) -> String {
    use base64::Engine as _;
    let user_data = instance["metadata"]["user-data"].as_str().unwrap();
    user_data
        .lines()
        .filter_map(|l| l.trim().strip_prefix("content: "))
        .map(|c| {
            let b64: String = serde_json::from_str(c).unwrap();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            String::from_utf8_lossy(&raw).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A gcloud configuration directory whose active configuration `ci` names `project`.
fn gcloud_config(dir: &Path, project: &str) {
    std::fs::create_dir_all(dir.join("configurations")).unwrap();
    std::fs::write(dir.join("active_config"), "ci\n").unwrap();
    std::fs::write(
        dir.join("configurations/config_default"),
        "[core]\nproject = not-the-one\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("configurations/config_ci"),
        format!("[core]\naccount = ci@example.com\nproject = {project}\n\n[compute]\nzone = us-central1-a\n"),
    )
    .unwrap();
}

/// clusterctl with `credentials` as ADC and no project but gcloud's configuration.
fn federated(
    g: &Gce,
    credentials: &str,
    gcloud: &Path,
    args: &[&str],
) -> (Option<i32>, Value, String) {
    let out = g
        .cmd()
        .env("GOOGLE_APPLICATION_CREDENTIALS", credentials)
        .env_remove("GOOGLE_CLOUD_PROJECT")
        .env_remove("CLOUDSDK_CORE_PROJECT")
        .env_remove("GCLOUD_PROJECT")
        .env("CLOUDSDK_CONFIG", gcloud)
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn workload_identity_federation_with_the_project_from_gcloud() {
    let g = Gce::new(&[]);
    let gcloud = g.env.dir.path().join("gcloud");
    gcloud_config(&gcloud, PROJECT);
    let fed = g.sim.inventory()["federation"].clone();
    let url_file = fed["url_credentials"].as_str().unwrap().to_string();
    let file_file = fed["file_credentials"].as_str().unwrap().to_string();
    let deployer = fed["deployer"].as_str().unwrap().to_string();

    // A forged subject token: STS refuses it, `up` stops before creating anything.
    let forged_dir = g.env.dir.path().join("forged");
    std::fs::create_dir_all(&forged_dir).unwrap();
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&file_file).unwrap()).unwrap();
    let token =
        std::fs::read_to_string(cfg["credential_source"]["file"].as_str().unwrap()).unwrap();
    let (head, _sig) = token.trim().rsplit_once('.').unwrap();
    let forged_token = forged_dir.join("oidc-token");
    std::fs::write(&forged_token, format!("{head}.AAAA")).unwrap();
    cfg["credential_source"]["file"] = json!(forged_token);
    let forged = forged_dir.join("external_account.json");
    std::fs::write(&forged, cfg.to_string()).unwrap();
    let mut args = Gce::up_args("gcwif", "1");
    let (code, _, err) = federated(&g, forged.to_str().unwrap(), &gcloud, &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("Security Token Service") && err.contains("Invalid JWT signature"),
        "{err}"
    );
    assert!(!err.contains(head), "the subject token is printed: {err}");
    assert!(g.instances("gcwif").is_empty());
    assert_eq!(g.sim.inventory()["federation"]["sts_refused"], 1);

    // The file source (text), no impersonation: `up --no-wait`, `list`, `down`.
    let direct = "principal://iam.googleapis.com/projects/";
    let mut no_wait = Gce::up_args("gcwff", "0");
    no_wait.push("--no-wait");
    let (code, _, err) = federated(&g, &file_file, &gcloud, &no_wait);
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", g.sim.errors());
    let sched = g.instances("gcwff");
    assert_eq!(sched.len(), 1, "{sched:?}");
    assert!(
        sched[0]["created_by"]
            .as_str()
            .unwrap()
            .starts_with(&direct["principal:".len()..]),
        "created by the federated principal: {}",
        sched[0]["created_by"]
    );
    let (code, listed, err) = federated(&g, &file_file, &gcloud, &["list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(listed.to_string().contains("gcwff"), "{listed}");
    let (code, _, err) = federated(&g, &file_file, &gcloud, &["down", "gcwff"]);
    assert_eq!(code, Some(0), "{err}");
    g.assert_nothing_left("gcwff");

    // The URL source as google-github-actions/auth writes it, impersonating the deployer
    // account: a full `up` that computes, then `down`.
    let (code, up, err) = federated(&g, &url_file, &gcloud, &args);
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", g.sim.errors());
    assert_eq!(up["ready"], true);
    let all = g.instances("gcwif");
    assert_eq!(all.len(), 2, "{all:?}");
    for i in &all {
        assert_eq!(i["created_by"], deployer.as_str(), "{}", i["name"]);
    }
    let inv = g.sim.inventory();
    assert!(inv["auth"]["issued"]["impersonated"].as_u64().unwrap() >= 1);
    assert!(inv["federation"]["oidc_issued"].as_u64().unwrap() >= 2);
    assert_eq!(inv["federation"]["impersonation_refused"], 0);
    let (_, env, _) = federated(&g, &url_file, &gcloud, &["env", "gcwif"]);
    let r = client(&env["env"], &["compute", "40"]);
    assert_eq!(r["result"], (0..40u64).map(|x| x * x).sum::<u64>());
    args = vec!["down", "gcwif"];
    let (code, _, err) = federated(&g, &url_file, &gcloud, &args);
    assert_eq!(code, Some(0), "{err}");
    g.assert_nothing_left("gcwif");
}

#[test]
fn spot_stockout_falls_back_to_standard() {
    let g = Gce::new(&["--stockout", "us-central1-a:e2-standard-4:SPOT"]);
    let mut args = Gce::up_args("gcspot", "2");
    args.extend(["--spot", "--no-wait"]);
    let (code, _, err) = g.json(&args);
    assert_eq!(code, Some(0), "{err}");
    let all = g.instances("gcspot");
    let workers = role(&all, "worker");
    assert_eq!(workers.len(), 2, "{all:?}");
    for w in &workers {
        assert_eq!(w["scheduling"]["provisioningModel"], "STANDARD", "{w}");
    }
    let refused = failed_ops(&g.sim.inventory(), "ZONE_RESOURCE_POOL_EXHAUSTED");
    assert_eq!(
        refused.len(),
        1,
        "the Spot bulkInsert was tried first: {refused:?}"
    );
    assert_eq!(refused[0]["operationType"], "bulkInsert");
    let (code, _, err) = g.json(&["down", "gcspot"]);
    assert_eq!(code, Some(0), "{err}");
    g.assert_nothing_left("gcspot");
}

#[test]
fn stockout_in_every_zone_and_quota_refusals_exit_1_leaving_nothing() {
    let g = Gce::new(&[
        "--stockout",
        "us-central1-a",
        "--stockout",
        "us-central1-b",
        "--quota",
        "INSTANCES=2",
    ]);
    let refuse = |name: &str, extra: &[&str], needles: &[&str]| {
        let mut args = Gce::up_args(name, "2");
        let at = args.iter().position(|a| *a == "--zone").unwrap();
        args.drain(at..at + 2);
        args.extend_from_slice(extra);
        let out = g.cmd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{n} in {err}");
        }
        g.assert_nothing_left(name);
        err
    };
    refuse(
        "gcstock",
        &["--zone", "us-central1-a,us-central1-b"],
        &["ZONE_RESOURCE_POOL_EXHAUSTED", "capacity"],
    );
    let inv = g.sim.inventory();
    let zones: std::collections::BTreeSet<String> =
        failed_ops(&inv, "ZONE_RESOURCE_POOL_EXHAUSTED")
            .iter()
            .map(|o| o["scope"][1].as_str().unwrap().to_string())
            .collect();
    assert_eq!(
        zones.into_iter().collect::<Vec<_>>(),
        ["us-central1-a", "us-central1-b"],
        "both zones were tried"
    );
    // INSTANCES=2 while the cluster needs 3: the operation's QUOTA_EXCEEDED.
    refuse(
        "gcquota",
        &["--zone", "us-central1-c"],
        &["quota", "INSTANCES", "us-central1"],
    );
    assert!(!failed_ops(&g.sim.inventory(), "QUOTA_EXCEEDED").is_empty());
    // CPUS: refused at plan time, before anything exists.
    g.sim.control(
        "POST",
        "/_sim/quota",
        Some(&json!({"metric": "CPUS", "limit": 4})),
    );
    let before = g.sim.inventory()["operations"].as_array().unwrap().len();
    refuse(
        "gccpus",
        &["--zone", "us-central1-c"],
        &["quota", "CPUS", "us-central1"],
    );
    assert_eq!(
        g.sim.inventory()["operations"].as_array().unwrap().len(),
        before,
        "nothing was attempted"
    );
}

#[test]
fn a_taken_scheduler_address_moves_the_scheduler_and_its_workers() {
    let g = Gce::new(&[]);
    g.sim
        .control("POST", "/_sim/steal-ips", Some(&json!({"count": 1})));
    let (code, up, err) = g.json(&Gce::up_args("gcip", "2"));
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", g.sim.errors());
    assert_eq!(up["workers"]["joined"], 2);
    let inv = g.sim.inventory();
    let foreign = inv["foreign_addresses"].as_array().unwrap();
    assert_eq!(foreign.len(), 1, "{foreign:?}");
    let taken = failed_ops(&inv, "IP_IN_USE_BY_ANOTHER_RESOURCE");
    assert_eq!(taken.len(), 1, "{taken:?}");
    let all = g.instances("gcip");
    let sched = role(&all, "scheduler");
    assert_eq!(sched.len(), 1);
    assert_ne!(sched[0]["internal_ip"], foreign[0]["ip"]);
    let (_, env, _) = g.json(&["env", "gcip"]);
    let r = client(&env["env"], &["compute", "50"]);
    assert_eq!(r["result"], (0..50u64).map(|x| x * x).sum::<u64>());
    assert_eq!(r["workers"], 2);
    let (code, _, err) = g.json(&["down", "gcip"]);
    assert_eq!(code, Some(0), "{err}");
    g.assert_nothing_left("gcip");
}

/// `--service-account`: the instances run as the user's account (cloud-platform scope), which
/// is granted read access to the key secrets instead of a per-cluster account being made;
/// `down` leaves the user's account alone. `--gpu`: the workers (only) get the accelerators
/// with onHostMaintenance TERMINATE, and the container gets the GPUs.
#[test]
fn user_service_account_and_gpu_workers() {
    let g = Gce::new(&[
        "--service-account",
        "dask-nodes",
        "--quota",
        "NVIDIA_T4_GPUS=4",
    ]);
    let sa = format!("dask-nodes@{PROJECT}.iam.gserviceaccount.com");
    let image = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64";
    let refuse = |extra: &[&str], needles: &[&str]| {
        let mut args = Gce::up_args("gcsa", "1");
        args.extend_from_slice(extra);
        let out = g.cmd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{n} in {err}");
        }
    };
    let nobody = format!("nobody@{PROJECT}.iam.gserviceaccount.com");
    refuse(&["--service-account", &nobody], &[&nobody, "hint:"]);
    refuse(&["--gpu", "nvidia-tesla-t4"], &["--gpu", "--gcp-image"]);
    refuse(
        &[
            "--gpu",
            "nvidia-l4",
            "--gcp-image",
            image,
            "--zone",
            "us-central1-c",
        ],
        &["nvidia-l4", "us-central1-c"],
    );
    refuse(
        &["--gpu", "nvidia-l4:3", "--gcp-image", image],
        &["nvidia-l4:3"],
    );
    assert!(g.instances("gcsa").is_empty());

    let mut args = Gce::up_args("gcsa", "1");
    args.extend(["--service-account", &sa, "--gpu", "nvidia-tesla-t4:2"]);
    args.extend(["--gcp-image", image]);
    let (code, up, err) = g.json(&args);
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", g.sim.errors());
    assert_eq!(up["workers"]["joined"], 1);
    let inv = g.sim.inventory();
    let all = g.instances("gcsa");
    assert_eq!(all.len(), 2);
    for i in &all {
        assert_eq!(i["service_account"], sa.as_str(), "{}", i["name"]);
        assert_eq!(
            i["scopes"],
            json!(["https://www.googleapis.com/auth/cloud-platform"])
        );
    }
    let worker = role(&all, "worker")[0];
    assert_eq!(worker["guest_accelerators"].as_array().unwrap().len(), 1);
    let acc = &worker["guest_accelerators"][0];
    assert!(
        acc["acceleratorType"]
            .as_str()
            .unwrap()
            .ends_with("/zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4"),
        "{acc}"
    );
    assert_eq!(acc["acceleratorCount"], 2);
    assert_eq!(worker["scheduling"]["onHostMaintenance"], "TERMINATE");
    assert!(boot_files(worker).contains("--gpus all"));
    let sched = role(&all, "scheduler")[0];
    assert_eq!(sched["guest_accelerators"], json!([]));
    assert!(!boot_files(sched).contains("--gpus"));
    let made: Vec<&Value> = inv["service_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["email"].as_str().unwrap().starts_with("clusterctl-"))
        .collect();
    assert!(made.is_empty(), "no per-cluster account: {made:?}");
    let member = json!([format!("serviceAccount:{sa}")]);
    for s in inv["secrets"].as_array().unwrap() {
        assert_eq!(s["bindings"][0]["members"], member, "{s}");
        assert_eq!(s["accessed_by"], member, "{s}");
    }
    let (_, env, _) = g.json(&["env", "gcsa"]);
    let r = client(&env["env"], &["compute", "20"]);
    assert_eq!(r["result"], (0..20u64).map(|x| x * x).sum::<u64>());
    let (code, _, err) = g.json(&["down", "gcsa"]);
    assert_eq!(code, Some(0), "{err}");
    g.assert_nothing_left("gcsa");
    let still: Vec<Value> = g.sim.inventory()["service_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["email"] == sa.as_str())
        .cloned()
        .collect();
    assert_eq!(still.len(), 1, "the user's account is left alone");
}

/// A custom-mode VPC: the instances on `--subnetwork` of `--network`, the firewall rules on that
/// network (the default network's rules do not apply there), and a client computing through
/// them; a network or subnetwork that does not exist or does not match exits 2.
#[test]
fn custom_vpc_network_and_subnetwork() {
    let g = Gce::new(&["--network", "dask-vpc:dask-subnet:us-central1:10.64.0.0/24"]);
    let refuse = |extra: &[&str], needles: &[&str]| {
        let mut args = Gce::up_args("gcvpc", "1");
        args.extend_from_slice(extra);
        let out = g.cmd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{n} in {err}");
        }
    };
    refuse(&["--network", "no-such-vpc"], &["no-such-vpc", "hint:"]);
    refuse(&["--network", "dask-vpc"], &["--subnetwork", "custom-mode"]);
    refuse(
        &["--network", "dask-vpc", "--subnetwork", "default"],
        &["default", "dask-vpc"],
    );
    assert!(g.instances("gcvpc").is_empty());

    let mut args = Gce::up_args("gcvpc", "1");
    args.extend(["--network", "dask-vpc", "--subnetwork", "dask-subnet"]);
    let (code, up, err) = g.json(&args);
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", g.sim.errors());
    assert_eq!(up["workers"]["joined"], 1);
    let all = g.instances("gcvpc");
    assert_eq!(all.len(), 2);
    for i in &all {
        assert_eq!(i["network"], "dask-vpc", "{}", i["name"]);
        assert_eq!(i["subnetwork"], "dask-subnet", "{}", i["name"]);
        assert!(
            i["internal_ip"].as_str().unwrap().starts_with("10.64.0."),
            "{}",
            i["internal_ip"]
        );
    }
    let rules: Vec<Value> = g.sim.inventory()["firewalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"].as_str().unwrap().starts_with("clusterctl-gcvpc"))
        .cloned()
        .collect();
    assert_eq!(rules.len(), 2);
    for r in &rules {
        assert!(
            r["network"]
                .as_str()
                .unwrap()
                .ends_with("/global/networks/dask-vpc"),
            "{r}"
        );
        assert_eq!(r["world_open"], false);
    }
    let (_, env, _) = g.json(&["env", "gcvpc"]);
    let r = client(&env["env"], &["compute", "30"]);
    assert_eq!(r["result"], (0..30u64).map(|x| x * x).sum::<u64>());
    let (code, _, err) = g.json(&["down", "gcvpc"]);
    assert_eq!(code, Some(0), "{err}");
    g.assert_nothing_left("gcvpc");
}

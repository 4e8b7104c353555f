//! What is refused or fails, leaving nothing: bad input exits 2, the simulator's failure knobs
//! (fall back, refuse, roll back), and `doctor`, which only reads.

use serde_json::json;

use crate::{Az, CLIENT_ID, TENANT, common, role};

#[test]
fn bad_input_exits_2_and_creates_nothing() {
    let az = Az::new(&[]);
    let refuse = |extra: &[&str], location: &str, needle: &str| {
        let mut args = Az::up_args("azb", "1");
        let at = args.iter().position(|a| *a == "eastus").unwrap();
        args[at] = location;
        args.extend_from_slice(extra);
        let out = az.cmd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {needle} in {err}");
        assert!(err.contains("hint:"), "{extra:?}: {err}");
    };
    refuse(&[], "East US", "East US");
    refuse(&[], "marsnorth", "marsnorth");
    refuse(
        &["--worker-vm-size", "Standard_D2as_v5"],
        "uksouth",
        "Standard_D2as_v5",
    );
    refuse(&["--resource-group", "bad name!"], "eastus", "bad name!");
    refuse(&["--private"], "eastus", "--subnet");
    refuse(
        &["--azure-image", "Canonical:ubuntu-99:server:latest"],
        "eastus",
        "ubuntu-99",
    );
    // --dry-run names the identity and creates nothing.
    let mut args = Az::up_args("azb", "1");
    args.push("--dry-run");
    let out = az.cmd().args(&args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(CLIENT_ID) && text.contains(TENANT),
        "the identity: {text}"
    );
    assert!(
        text.contains("the scheduler VM deletes the resource group clusterctl-azb"),
        "what ends billing at the TTL: {text}"
    );
    let inv = az.sim.inventory();
    assert_eq!(
        inv["resource_groups"],
        json!([]),
        "{}",
        inv["resource_groups"]
    );
    assert_eq!(inv["resources"], json!([]));
    let errors = az.sim.errors();
    assert!(
        errors.trim().is_empty(),
        "the simulator refused requests: {errors}"
    );
}

/// The failure paths against the simulator's knobs, one after the other on one simulator.
#[test]
fn failures_fall_back_or_refuse_or_roll_back_leaving_nothing() {
    let az = Az::new(&[]);
    let up = |name: &str, extra: &[&str]| {
        let mut args = Az::up_args(name, "1");
        args.extend_from_slice(extra);
        az.json(&args)
    };
    let down_clean = |name: &str| {
        let (code, _, err) = az.json(&["down", name]);
        assert_eq!(code, Some(0), "{err}");
        az.assert_nothing_left(name);
    };

    // A vCPU quota shortfall: QuotaExceeded (exit 1) naming the quota, nothing created.
    let mut args = Az::up_args("azquota", "30");
    args.extend(["--output", "json"]);
    let out = az.cmd().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("quota") && err.contains("DSv5"), "{err}");
    assert!(err.contains("eastus"), "{err}");
    assert_eq!(az.sim.inventory()["resource_groups"], json!([]));

    // No capacity for the first worker size: the failed VM is deleted, the next size is used.
    az.sim.control(
        "POST",
        "/_sim/capacity",
        Some(&json!({"no_capacity": ["Standard_D4s_v5"]})),
    );
    let (code, _, err) = up(
        "azcap",
        &["--worker-vm-size", "Standard_D4s_v5,Standard_F4s_v2"],
    );
    assert_eq!(code, Some(0), "{err}");
    let vms = az.vms("azcap");
    let worker = role(&vms, "worker")[0].clone();
    assert_eq!(worker["size"], "Standard_F4s_v2");
    assert_eq!(worker["provisioningState"], "Succeeded");
    let inv = az.sim.inventory();
    let deleted_failed = inv["events"].as_array().unwrap().iter().any(|e| {
        e["event"] == "deleted"
            && e["id"] == worker["id"]
            && e["type"] == "Microsoft.Compute/virtualMachines"
    });
    assert!(
        deleted_failed,
        "the Failed VM was deleted before the next size"
    );
    down_clean("azcap");

    // No Spot capacity: the worker is a regular VM.
    az.sim.control(
        "POST",
        "/_sim/capacity",
        Some(&json!({"no_capacity": [], "spot_no_capacity": ["Standard_D4s_v5"]})),
    );
    let (code, _, err) = up("azspot", &["--spot"]);
    assert_eq!(code, Some(0), "{err}");
    let vms = az.vms("azspot");
    assert_eq!(role(&vms, "worker")[0]["priority"], "Regular");
    down_clean("azspot");

    // A 5xx on the worker's creation that persists: `up` fails after its retries and rolls back
    // the scheduler, its group and everything in it.
    az.sim
        .fault(json!({"method": "PUT", "path": "virtualMachines/azfail-worker", "status": 500}));
    let (code, _, err) = up("azfail", &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("InternalServerError"), "{err}");
    az.assert_nothing_left("azfail");
}

#[test]
fn doctor_checks_identity_location_and_quota_creating_nothing() {
    let az = Az::new(&[]);
    let doctor = |workers: &str| {
        let mut args = vec!["doctor"];
        args.extend(&Az::up_args("azdoc", workers)[1..]);
        az.json(&args)
    };
    let (code, v, err) = doctor("1");
    assert_eq!(code, Some(0), "{v} {err}\nsim errors: {}", az.sim.errors());
    assert_eq!(v["ok"], true, "{v}");
    // 30 workers need more of the region's vCPU quota than the subscription has.
    let (code, v, err) = doctor("30");
    assert_eq!(code, Some(1), "{v} {err}");
    let failed = common::failed_checks(&v);
    assert_eq!(failed.len(), 1, "{v}");
    let detail = failed[0]["detail"].as_str().unwrap();
    assert!(detail.contains("quota") && detail.contains("eastus"), "{v}");
    // Read-only: nothing but reads (and the token requests) reached ARM.
    let writes = az.sim.writes();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(az.sim.inventory()["resource_groups"], json!([]));
}

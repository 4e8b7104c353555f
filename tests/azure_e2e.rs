//! End-to-end tests of the `azure` provider against the ARM + Entra ID simulator of
//! `tests/azure/`: VMs whose customData the shared VM boot runtime runs as real Dask processes on
//! their NICs' private addresses, a real Dask client computing with TLS through the printed
//! (public) address behind the cluster's NSG, what the simulator holds after each command (the
//! NSG's rules, no public IP on workers, tags on every resource, no userData, no password, no
//! credential in customData), and nothing tagged after `down`.
//!
//! Addresses are `10.x` (the VNet 10.42.0.0/16, "public" IPs 10.251.0.0/16), so each test runs
//! in its own network namespace (`common::sandbox`), where the client's source address is
//! `10.0.0.0`: the clusters allow `10.0.0.0/32`, and the simulator's forwarder drops what the
//! NSG does not allow. Every request the simulator accepts and every answer it gives is
//! validated against the bundled ARM specs; each test asserts it refused nothing.

mod common;

use std::{process::Command, time::Duration, time::Instant};

use common::{Env, client, restsim::RestSim, sandbox::Sandbox};
use serde_json::{Value, json};

/// The service principal's secret the simulator accepts.
const SECRET: &str = "azsim-client-secret-0123456789";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT_ID: &str = "0f3e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
const SUBSCRIPTION: &str = "00000000-0000-4000-8000-00000000c1c7";

struct Az {
    env: Env,
    sim: RestSim,
    _sandbox: Sandbox,
}

impl Az {
    fn new(sim_args: &[&str]) -> Self {
        let sandbox = Sandbox::enter();
        let env = Env::new();
        let sim = RestSim::start("tests/azure/az_sim.py", env.dir.path(), SECRET, sim_args);
        Az {
            env,
            sim,
            _sandbox: sandbox,
        }
    }

    /// clusterctl pointed at the simulator: ARM endpoint, Entra ID authority, CA, credentials.
    fn cmd(&self) -> Command {
        self.cmd_in(&self.env)
    }

    /// As [`Az::cmd`], with another state directory (another machine).
    fn cmd_in(&self, env: &Env) -> Command {
        let mut c = env.cmd();
        c.env("AZURE_RESOURCE_MANAGER_ENDPOINT", &self.sim.url)
            .env("AZURE_AUTHORITY_HOST", &self.sim.url)
            .env("CLUSTERCTL_EXTRA_CA_FILE", &self.sim.ca_file)
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT_ID)
            .env("AZURE_CLIENT_SECRET", SECRET)
            .env("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION);
        c
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let out = self
            .cmd()
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

    fn up_args<'a>(name: &'a str, workers: &'a str) -> Vec<&'a str> {
        vec![
            "up",
            "--provider",
            "azure",
            "--location",
            "eastus",
            "--name",
            name,
            "--workers",
            workers,
            "--allow-cidr",
            "10.0.0.0/32,203.0.113.7/32",
            "--timeout",
            "240s",
        ]
    }

    /// The VMs tagged for `cluster`.
    fn vms(&self, cluster: &str) -> Vec<Value> {
        self.sim.inventory()["vms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["tags"]["clusterctl-cluster"] == cluster)
            .cloned()
            .collect()
    }

    /// Nothing tagged for `cluster` is left, no VM process runs, the simulator refused nothing.
    fn assert_nothing_left(&self, cluster: &str) {
        let inv = self.sim.inventory();
        let tagged: Vec<&Value> = inv["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["tags"]["clusterctl-cluster"] == cluster)
            .collect();
        assert!(tagged.is_empty(), "resources left: {tagged:?}");
        let groups: Vec<&Value> = inv["resource_groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["tags"]["clusterctl-cluster"] == cluster)
            .collect();
        assert!(groups.is_empty(), "groups left: {groups:?}");
        assert!(
            inv["leftover_disks"].as_array().unwrap().is_empty(),
            "{}",
            inv["leftover_disks"]
        );
        self.sim.assert_no_vm_runs();
        let errors = self.sim.errors();
        assert!(
            errors.trim().is_empty(),
            "the simulator refused requests: {errors}"
        );
        self.env.assert_clean();
    }
}

fn role<'a>(vms: &'a [Value], role: &str) -> Vec<&'a Value> {
    vms.iter()
        .filter(|v| v["tags"]["clusterctl-role"] == role)
        .collect()
}

#[test]
fn azure_cluster_runs_computes_scales_logs_and_leaves_nothing() {
    let az = Az::new(&[]);
    // Throttling on the way: retried after Retry-After.
    az.sim.fault(
        json!({"method": "PUT", "path": "networkSecurityGroups", "status": 429, "count": 1,
        "headers": {"retry-after": "1"}}),
    );
    az.sim.mark("up");
    let (code, up, err) = az.json(&Az::up_args("aze", "2"));
    assert_eq!(
        code,
        Some(0),
        "up failed: {err}\nsim errors: {}",
        az.sim.errors()
    );
    assert_eq!(up["ready"], true);
    assert_eq!(up["provider"], "azure");
    assert_eq!(up["workers"]["joined"], 2);
    let address = up["scheduler_address"].as_str().unwrap().to_string();
    assert!(
        address.starts_with("tls://10.251."),
        "TLS, the scheduler's public IP: {address}"
    );

    let inv = az.sim.inventory();
    let vms = az.vms("aze");
    assert_eq!(vms.len(), 3, "{vms:?}");
    let scheduler = role(&vms, "scheduler");
    assert_eq!(scheduler.len(), 1);
    assert_eq!(scheduler[0]["name"], "aze-scheduler");
    assert_eq!(scheduler[0]["size"], "Standard_D2s_v5");
    assert_eq!(scheduler[0]["public_ips"].as_array().unwrap().len(), 1);
    for w in role(&vms, "worker") {
        assert_eq!(w["size"], "Standard_D4s_v5");
        assert_eq!(
            w["public_ips"],
            json!([]),
            "no public IP on a worker: {}",
            w["name"]
        );
    }
    for vm in &vms {
        assert_eq!(vm["booted"], "booted", "{}", vm["name"]);
        assert_eq!(vm["custom_data_present"], true);
        let custom = vm["custom_data"].as_str().unwrap();
        assert!(custom.starts_with("#cloud-config"), "{}", &custom[..40]);
        assert!(
            !custom.contains(SECRET),
            "the client secret is in customData"
        );
        assert!(vm["user_data"].is_null(), "userData is set: {}", vm["name"]);
        assert_eq!(vm["admin_password_used"], false);
        assert!(vm["ssh_keys"].as_u64().unwrap() >= 1);
        assert_eq!(vm["os_disk_delete_option"], "Delete");
        assert_eq!(vm["boot_diagnostics"], true);
        assert_eq!(vm["image"]["offer"], "ubuntu-24_04-lts");
    }
    // Tags on every resource of the cluster's group, from its creation.
    let group: Vec<&Value> = inv["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["resource_group"] == "clusterctl-aze")
        .collect();
    assert!(group.len() >= 10, "{group:?}");
    for r in &group {
        for key in [
            "clusterctl-managed",
            "clusterctl-cluster",
            "clusterctl-expires",
            "clusterctl-protocol",
        ] {
            assert!(
                r["tags"].get(key).is_some(),
                "{key} on {}: {}",
                r["id"],
                r["tags"]
            );
        }
    }
    // The NSG: 8786-8787 from --allow-cidr only; nothing open to the world.
    let nsg = inv["nsgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["tags"]["clusterctl-cluster"] == "aze")
        .unwrap()
        .clone();
    assert_eq!(nsg["world_open"], json!([]), "{nsg}");
    let rules = nsg["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["destinationPortRange"], "8786-8787");
    assert_eq!(
        rules[0]["sourceAddressPrefixes"],
        json!(["10.0.0.0/32", "203.0.113.7/32"])
    );
    let faults = az.sim.control("GET", "/_sim/faults", None).to_string();
    assert!(
        !faults.contains("\"remaining\":1"),
        "the injected fault was hit: {faults}"
    );

    // A real client through the printed address, with the client certificate.
    let (_, env, _) = az.json(&["env", "aze"]);
    let r = client(&env["env"], &["compute", "300"]);
    assert_eq!(r["result"], (0..300u64).map(|x| x * x).sum::<u64>());
    assert_eq!(r["workers"], 2);

    let (code, status, err) = az.json(&["status", "aze"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status["state"], "ready");
    assert_eq!(status["workers"]["joined"], 2);

    // logs: the boot diagnostics' serial log, where the Dask output goes.
    let (code, logs, err) = az.json(&["logs", "aze", "--role", "scheduler", "--tail", "300"]);
    assert_eq!(code, Some(0), "{err}");
    let text = logs.to_string();
    assert!(
        text.contains("Scheduler at") || text.contains("Register worker"),
        "the scheduler's Dask log: {text}"
    );

    az.sim.mark("scale");
    let (code, scaled, err) = az.json(&["scale", "aze", "--workers", "3"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(scaled["added"], json!(["worker-2"]));
    assert_eq!(role(&az.vms("aze"), "worker").len(), 3);
    assert_eq!(client(&env["env"], &["workers"])["workers"], 3);
    let (code, scaled, err) = az.json(&["scale", "aze", "--workers", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(scaled["removed"].as_array().unwrap().len(), 2, "{scaled}");
    assert_eq!(role(&az.vms("aze"), "worker").len(), 1);
    let nics = az.sim.inventory()["nics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["tags"]["clusterctl-cluster"] == "aze")
        .count();
    assert_eq!(nics, 2, "the removed workers' NICs went with their VMs");

    // A worker that powered itself off is stopped but still billed: `status` says so.
    let left = role(&az.vms("aze"), "worker")[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    az.sim
        .control("POST", &format!("/_sim/vms/{left}/power_off"), None);
    az.sim.mark("status-stopped");
    let (_, status, err) = az.json(&["status", "aze"]);
    let node = status["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{status} {err}"))
        .iter()
        .find(|n| format!("aze-{}", n["name"].as_str().unwrap()) == left)
        .unwrap()
        .clone();
    assert_eq!(node["state"], "failed", "{node}");
    assert!(
        node["reason"]
            .as_str()
            .is_some_and(|r| r.contains("still billed until down")),
        "{node}"
    );
    assert_eq!(status["workers"]["running"], 0, "{status}");
    // Power states come from one listing, not a read per VM.
    let reads: Vec<Value> = az
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["phase"] == "status-stopped")
        .collect();
    let views = reads
        .iter()
        .filter(|r| r.to_string().contains("instanceView"))
        .count();
    assert_eq!(views, 0, "{reads:?}");

    az.sim.mark("down");
    let (code, down, err) = az.json(&["down", "aze"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(down["removed"][0]["name"], "aze");
    az.assert_nothing_left("aze");
    // Idempotent, without the record.
    let (code, _, err) = az.json(&["down", "aze", "--provider", "azure"]);
    assert_eq!(code, Some(0), "{err}");
}

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

/// Two `up` of one name at once from two machines (state directories): the resource group's
/// creation claims the name (ARM answers one of them 201), so one cluster of one launch exists
/// afterwards and computes, and the loser exits 1 (`NameTaken`), removing nothing of it.
#[test]
fn two_ups_of_one_name_at_once_leave_one_healthy_cluster() {
    let az = Az::new(&[]);
    let other = Env::new();
    let args = Az::up_args("azrace", "1");
    let cmd = |env: &Env| {
        let mut c = az.cmd_in(env);
        c.args(&args);
        c
    };
    let ((winner, _), (loser, _)) = common::race_two_ups("azure", cmd(&az.env), cmd(&other));
    let (won_env, lost_env) = ([&az.env, &other][winner], [&az.env, &other][loser]);
    assert!(lost_env.records().is_empty());
    let vms = az.vms("azrace");
    assert_eq!(vms.len(), 2, "{vms:?}");
    let launches: std::collections::BTreeSet<String> = vms
        .iter()
        .map(|v| v["tags"]["clusterctl-launch"].to_string())
        .collect();
    assert_eq!(launches.len(), 1, "{launches:?}");
    let out = az
        .cmd_in(won_env)
        .args(["env", "azrace", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = client(&env["env"], &["compute", "30"]);
    assert_eq!(r["result"], (0..30u64).map(|x| x * x).sum::<u64>());
    let out = az
        .cmd_in(won_env)
        .args(["down", "azrace"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    az.assert_nothing_left("azrace");
}

/// The TTL that ends billing with no clusterctl running: `up` (the shortest TTL) gives the
/// scheduler VM a managed identity with Contributor on the cluster's own group only; at the TTL
/// the scheduler deletes that group through ARM with a token from IMDS, and the simulator shows
/// it deleted by the managed identity, every VM's billing ended, nothing tagged left.
#[test]
fn the_cluster_deletes_its_own_group_at_the_ttl() {
    let az = Az::new(&[]);
    let started = Instant::now();
    let mut args = Az::up_args("azttl", "1");
    args.extend(["--ttl", "60s"]);
    let (code, _, err) = az.json(&args);
    assert_eq!(code, Some(0), "up: {err}\nsim errors: {}", az.sim.errors());
    let group_id = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/clusterctl-azttl");
    let inv = az.sim.inventory();
    let vms = az.vms("azttl");
    let principal = role(&vms, "scheduler")[0]["identity_principal"]
        .as_str()
        .expect("the scheduler VM has a system-assigned identity")
        .to_string();
    assert!(
        role(&vms, "worker")
            .iter()
            .all(|w| w["identity_principal"].is_null())
    );
    let grants: Vec<&Value> = inv["role_assignments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["principalId"] == principal.as_str())
        .collect();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0]["scope"], group_id.as_str(), "the group only");
    assert_eq!(grants[0]["role"], "b24988ac-6180-42a0-ab88-20f7382dd24c");
    assert_eq!(grants[0]["principalType"], "ServicePrincipal");

    // No clusterctl runs from here on.
    let deleted_by = loop {
        let inv = az.sim.inventory();
        let event = inv["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "group-deleting" && e["name"] == "clusterctl-azttl")
            .cloned();
        let gone = !inv["resource_groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "clusterctl-azttl");
        if let (Some(e), true) = (event, gone) {
            break e;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the group was not deleted at the TTL; scheduler console:\n{}",
            az.sim.control("GET", "/_sim/console/azttl-scheduler", None)
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(deleted_by["principal_kind"], "managed_identity");
    assert_eq!(deleted_by["by"], principal.as_str());
    let inv = az.sim.inventory();
    let live: Vec<&Value> = inv["billing"]["live"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["id"].as_str().unwrap_or("").contains("clusterctl-azttl"))
        .collect();
    assert!(live.is_empty(), "still billed: {live:?}");
    let ended = inv["billing"]["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "Microsoft.Compute/virtualMachines")
        .count();
    assert_eq!(ended, 2, "{}", inv["billing"]);
    assert!(inv["role_assignments"].as_array().unwrap().is_empty());
    // The record is the only thing left; `down` finds nothing else and removes it.
    let (code, _, err) = az.json(&["down", "azttl"]);
    assert_eq!(code, Some(0), "{err}");
    az.assert_nothing_left("azttl");
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

/// ARM as a user drives it outside clusterctl (the portal, `az`): a token from the simulator's
/// Entra ID endpoint for the service principal, then `method path?api-version=api` with `body`,
/// following an `Azure-AsyncOperation` to its end. The answer's status.
fn arm_as_user(az: &Az, method: &str, path: &str, api: &str, body: &Value) -> u16 {
    let code = r#"
import json, ssl, sys, time, urllib.parse, urllib.request
url, ca, tenant, client, secret, method, path, api, body = sys.argv[1:10]
ctx = ssl.create_default_context(cafile=ca)
form = urllib.parse.urlencode({"client_id": client, "client_secret": secret,
    "grant_type": "client_credentials", "scope": "https://management.azure.com/.default"}).encode()
with urllib.request.urlopen(urllib.request.Request(f"{url}/{tenant}/oauth2/v2.0/token", data=form),
                            context=ctx, timeout=30) as r:
    token = json.load(r)["access_token"]
auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
req = urllib.request.Request(f"{url}{path}?api-version={api}", data=body.encode() or None,
                             method=method, headers=auth)
with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
    status, op = r.status, r.headers.get("Azure-AsyncOperation")
deadline = time.time() + 60
while op and time.time() < deadline:
    with urllib.request.urlopen(urllib.request.Request(op, headers=auth), context=ctx, timeout=30) as r:
        if json.load(r)["status"] != "InProgress":
            break
    time.sleep(0.5)
print(status)
"#;
    let body = body.to_string();
    let ca = az.sim.ca_file.display().to_string();
    let args = [
        az.sim.url.as_str(),
        &ca,
        TENANT,
        CLIENT_ID,
        SECRET,
        method,
        path,
        api,
        &body,
    ];
    let out = common::run_python(code, &args, &format!("{method} {path}"));
    String::from_utf8_lossy(&out).trim().parse().unwrap()
}

/// A cluster `up` put in the user's own group (`--resource-group`) has no group of its own to
/// claim its name: cut off before any VM existed, it is found by `gc` from another machine
/// through its tagged resources once expired, and `gc --yes` deletes them all, the VNet last (a
/// `gc` failing on it finds the cluster again), leaving the user's group and the user's own
/// resource in it alone.
#[test]
fn gc_finds_and_removes_a_half_made_cluster_in_an_existing_group() {
    let az = Az::new(&[]);
    let (rg, name) = ("team-data", "azrgh");
    let group = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}");
    assert_eq!(
        arm_as_user(
            &az,
            "PUT",
            &group,
            "2024-07-01",
            &json!({"location": "eastus", "tags": {"team": "data"}})
        ),
        201
    );
    let foreign = format!("{group}/providers/Microsoft.Network/networkSecurityGroups/team-nsg");
    assert_eq!(
        arm_as_user(
            &az,
            "PUT",
            &foreign,
            "2024-03-01",
            &json!({"location": "eastus", "tags": {"team": "data"},
                    "properties": {"securityRules": []}})
        ),
        201
    );
    let tagged = |inv: &Value| -> Vec<String> {
        let mut kinds: Vec<String> = inv["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["tags"]["clusterctl-cluster"] == name)
            .map(|r| r["type"].as_str().unwrap().to_string())
            .collect();
        kinds.sort();
        kinds
    };

    // `up` killed once its first four mutating requests were answered (the NSG, the VNet and
    // the public IP, in any order, then the scheduler's NIC), its scheduler VM's PUT held.
    az.sim.control(
        "POST",
        "/_sim/gate",
        Some(&json!({"after": 4, "ignore": "/oauth2/"})),
    );
    let started = Instant::now();
    let mut args = Az::up_args(name, "1");
    args.extend(["--resource-group", rg, "--ttl", "1m", "--no-wait"]);
    let mut up = az.cmd().args(&args).spawn().unwrap();
    loop {
        let g = az.sim.control("GET", "/_sim/gate", None);
        if g["admitted"] == 4 && g["held"].as_u64().unwrap() > 0 && g["in_flight"] == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "up never reached its VM: {g}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    up.kill().unwrap();
    let _ = up.wait();
    az.sim.control("DELETE", "/_sim/gate", None);
    let inv = az.sim.inventory();
    assert_eq!(
        tagged(&inv),
        [
            "Microsoft.Network/networkInterfaces",
            "Microsoft.Network/networkSecurityGroups",
            "Microsoft.Network/publicIPAddresses",
            "Microsoft.Network/virtualNetworks",
        ],
        "what the killed up made"
    );
    assert!(az.vms(name).is_empty());

    // Another machine, once the cluster expired.
    let other = Env::new();
    let gc = |yes: bool| {
        let mut c = az.cmd_in(&other);
        c.args(["gc", "--provider", "azure", "--subscription", SUBSCRIPTION])
            .args(["--resource-group", rg, "--output", "json"]);
        if yes {
            c.arg("--yes");
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    if let Some(rest) = Duration::from_secs(65).checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let from = az.sim.requests().len();
    let (code, listed, err) = gc(false);
    assert_eq!(code, Some(0), "gc: {err}");
    assert_eq!(names(&listed["expired"]), [name], "{listed}");
    let made: Vec<Value> = az.sim.requests()[from..].to_vec();
    let writes: Vec<&Value> = made
        .iter()
        .filter(|r| r["method"] != "GET" && !r["path"].as_str().unwrap().contains("/oauth2/"))
        .collect();
    assert!(writes.is_empty(), "gc without --yes changed: {writes:?}");
    // The claims cost one listing of the group (no tag filter: it would omit the tags).
    let listings: Vec<&Value> = made
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&format!("{group}/resources"))
        })
        .collect();
    assert_eq!(listings.len(), 1, "{made:?}");
    assert!(
        made.len() <= 8,
        "gc's listing made {} requests: {made:?}",
        made.len()
    );

    // A `gc --yes` cut short on the VNet (the last to go) leaves it tagged, and found again.
    az.sim.fault(
        json!({"method": "DELETE", "path": format!("virtualNetworks/{name}-vnet"),
                        "status": 409, "count": 1}),
    );
    let (code, failed, err) = gc(true);
    assert_eq!(
        code,
        Some(1),
        "gc --yes with the VNet's delete refused: {err}\n{failed}"
    );
    assert_eq!(
        tagged(&az.sim.inventory()),
        ["Microsoft.Network/virtualNetworks"],
        "everything but the VNet went first"
    );
    let (code, listed, err) = gc(false);
    assert_eq!(code, Some(0), "gc: {err}");
    assert_eq!(names(&listed["expired"]), [name], "{listed}");

    let (code, done, err) = gc(true);
    assert_eq!(code, Some(0), "gc --yes: {err}\n{done}");
    assert_eq!(names(&done["removed"]), [name], "{done}");
    let inv = az.sim.inventory();
    assert_eq!(tagged(&inv), Vec::<String>::new(), "left of the cluster");
    let groups: Vec<&Value> = inv["resource_groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] == rg)
        .collect();
    assert_eq!(groups.len(), 1, "the user's group stays");
    assert_eq!(groups[0]["tags"], json!({"team": "data"}));
    let own: Vec<&Value> = inv["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"].as_str().unwrap().eq_ignore_ascii_case(&foreign))
        .collect();
    assert_eq!(own.len(), 1, "the user's NSG stays: {}", inv["resources"]);
    assert_eq!(own[0]["tags"], json!({"team": "data"}));
    let (code, again, err) = gc(false);
    assert_eq!(code, Some(0), "gc: {err}");
    assert_eq!(again["expired"], json!([]), "{again}");
    let errors = az.sim.errors();
    assert!(
        errors.trim().is_empty(),
        "the simulator refused requests: {errors}"
    );
    other.assert_clean();
}

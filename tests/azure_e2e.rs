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
//!
//! Here: a cluster that runs, computes, scales, logs and leaves nothing. By theme:
//!
//! - bad input, the failure paths, `doctor` (`azure_e2e/failures.rs`);
//! - the TTL and `gc` of a half-made cluster (`azure_e2e/expiry.rs`);
//! - two `up`s of one name at once, leftover, held and foreign claims (`azure_e2e/races.rs`).

mod common;
#[path = "azure_e2e/expiry.rs"]
mod expiry;
#[path = "azure_e2e/failures.rs"]
mod failures;
#[path = "azure_e2e/races.rs"]
mod races;

use std::process::Command;

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

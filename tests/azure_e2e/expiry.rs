//! Expiry: the cluster deletes its own group at the TTL, and `gc` finds and removes a
//! half-made cluster in an existing group (with ARM driven as a user, outside clusterctl).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Az, SUBSCRIPTION, arm_as_user, common::Env, role};

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

//! Races: two `up`s of one name at once from two machines leave one healthy cluster, in the
//! cluster's own resource group and in a group the user named.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::{
    Az, SUBSCRIPTION, arm_as_user,
    common::{self, Env, client},
};

/// Two `up` of one name at once from two machines (state directories): the resource group's
/// creation claims the name (ARM answers one of them 201), so one cluster of one launch exists
/// afterwards and computes, and the loser exits 1 (`NameTaken`), removing nothing of it.
#[test]
fn two_ups_of_one_name_at_once_leave_one_healthy_cluster() {
    race(&Az::new(&[]), "azrace", &[]);
}

/// The same in a group the user named (`--resource-group`), where the cluster has no group of
/// its own: the NSG's creation claims the name instead (201 to one launch only). The loser's
/// write of the NSG is undone by the winner, whose launch tag and rules it carries afterwards;
/// the user's group and the user's own resource in it stay.
#[test]
fn two_ups_of_one_name_at_once_in_a_named_group_leave_one_healthy_cluster() {
    let az = Az::new(&[]);
    let rg = "team-race";
    let group = format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{rg}");
    let put = |path: &str, api: &str, body: Value| {
        assert_eq!(arm_as_user(&az, "PUT", path, api, &body), 201, "{path}");
    };
    put(&group, "2024-07-01", json!({"location": "eastus"}));
    let foreign = format!("{group}/providers/Microsoft.Network/networkSecurityGroups/team-nsg");
    put(
        &foreign,
        "2024-03-01",
        json!({"location": "eastus", "properties": {"securityRules": []}}),
    );
    race(&az, "azrgrace", &["--resource-group", rg]);
    let inv = az.sim.inventory();
    let groups: Vec<&Value> = inv["resource_groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["name"] == rg)
        .collect();
    assert_eq!(groups.len(), 1, "the user's group stays: {groups:?}");
    assert!(
        inv["resources"].as_array().unwrap().iter().any(|r| r["id"]
            .as_str()
            .is_some_and(|id| id.eq_ignore_ascii_case(&foreign))),
        "the user's own NSG stays"
    );
}

/// Race two `up`s of `name` (with `extra` flags), then check the winner's cluster: one launch
/// on every VM and on the NSG, its rules allowing the client, a computation through it, and
/// nothing of the name left after its `down`.
fn race(az: &Az, name: &str, extra: &[&str]) {
    let other = Env::new();
    let mut args = Az::up_args(name, "1");
    args.extend_from_slice(extra);
    let cmd = |env: &Env| {
        let mut c = az.cmd_in(env);
        c.args(&args);
        c
    };
    let ((winner, _), (loser, lost)) = common::race_two_ups("azure", cmd(&az.env), cmd(&other));
    eprintln!("[race {name}] the loser: {}", lost.1["error"]["message"]);
    let (won_env, lost_env) = ([&az.env, &other][winner], [&az.env, &other][loser]);
    assert!(lost_env.records().is_empty());
    let vms = az.vms(name);
    assert_eq!(vms.len(), 2, "{vms:?}");
    let launches: BTreeSet<String> = vms
        .iter()
        .map(|v| v["tags"]["clusterctl-launch"].to_string())
        .collect();
    assert_eq!(launches.len(), 1, "{launches:?}");
    // The NSG is the winner's too (in a named group the loser wrote it once; the winner put
    // its own back).
    let inv = az.sim.inventory();
    let nsgs: Vec<&Value> = inv["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["type"] == "Microsoft.Network/networkSecurityGroups"
                && r["tags"]["clusterctl-cluster"] == name
        })
        .collect();
    assert_eq!(nsgs.len(), 1, "{nsgs:?}");
    assert!(
        launches.contains(&nsgs[0]["tags"]["clusterctl-launch"].to_string()),
        "the NSG carries the winner's launch: {:?} vs {launches:?}",
        nsgs[0]["tags"]
    );
    let out = az
        .cmd_in(won_env)
        .args(["env", name, "--output", "json"])
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
    let out = az.cmd_in(won_env).args(["down", name]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    az.assert_nothing_left(name);
}

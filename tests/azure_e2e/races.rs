//! Races and claims: two `up`s of one name at once from two machines leave one healthy
//! cluster, in the cluster's own resource group and in a group the user named; a leftover claim
//! is taken over, a held or foreign one refused.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::{
    Az, SUBSCRIPTION, arm_as_user,
    common::{self, Env},
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
    let (mut env, mut down) = (az.cmd_in(won_env), az.cmd_in(won_env));
    env.args(["env", name]);
    down.args(["down", name]);
    common::winner_computes_and_goes(env, down, 30);
    az.assert_nothing_left(name);
}

/// What a claim left by an earlier launch means to a new `up`, in the cluster's own group and
/// in a named one: a leftover (its launch older than the claim's grace, no VM) is taken over
/// (its launch tag becomes the new launch's, the cluster comes up and goes); a young one is
/// another launch's (`NameTaken`, exit 1, the claim untouched); an NSG of the name that is not
/// clusterctl's is refused (exit 2 naming `--name`, nothing created).
#[test]
fn leftover_claims_are_taken_over_and_held_or_foreign_ones_refused() {
    let az = Az::new(&[]);
    let rg = "team-claims";
    let sub = format!("/subscriptions/{SUBSCRIPTION}");
    let group = format!("{sub}/resourceGroups/{rg}");
    let nsg = |name: &str| {
        format!("{group}/providers/Microsoft.Network/networkSecurityGroups/{name}-nsg")
    };
    let put = |path: &str, api: &str, body: Value| {
        assert_eq!(arm_as_user(&az, "PUT", path, api, &body), 201, "{path}");
    };
    let claim_tags = |name: &str, launch: &str| {
        json!({"clusterctl-managed": "true", "clusterctl-cluster": name,
               "clusterctl-launch": launch, "clusterctl-expires": "1700003600"})
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let young = format!("{now}-0badc0de");
    let old = "1700000000-0badf00d";
    put(&group, "2024-07-01", json!({"location": "eastus"}));
    let nsg_body = |tags: Value| json!({"location": "eastus", "tags": tags, "properties": {"securityRules": []}});
    put(
        &nsg("azleft"),
        "2024-03-01",
        nsg_body(claim_tags("azleft", old)),
    );
    put(
        &nsg("azheld"),
        "2024-03-01",
        nsg_body(claim_tags("azheld", &young)),
    );
    put(
        &nsg("azother"),
        "2024-03-01",
        nsg_body(json!({"team": "data"})),
    );
    put(
        &format!("{sub}/resourceGroups/clusterctl-azown"),
        "2024-07-01",
        json!({"location": "eastus", "tags": claim_tags("azown", old)}),
    );
    let tags_of = |id: &str| -> Value {
        let inv = az.sim.inventory();
        inv["resources"]
            .as_array()
            .unwrap()
            .iter()
            .chain(inv["resource_groups"].as_array().unwrap())
            .find(|r| {
                r["id"].as_str().is_some_and(|i| i.eq_ignore_ascii_case(id))
                    || format!("{sub}/resourceGroups/{}", r["name"].as_str().unwrap_or(""))
                        .eq_ignore_ascii_case(id)
            })
            .map(|r| r["tags"].clone())
            .unwrap_or(Value::Null)
    };
    let up = |name: &str, extra: &[&str]| {
        let mut args = Az::up_args(name, "1");
        args.extend_from_slice(extra);
        args.push("--no-wait");
        let refs: Vec<&str> = args.to_vec();
        az.json(&refs)
    };

    // Held by a young launch: refused, untouched.
    let (code, out, err) = up("azheld", &["--resource-group", rg]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(out["error"]["kind"], "name_taken", "{out}");
    assert!(err.contains(&young), "{err}");
    assert_eq!(tags_of(&nsg("azheld")), claim_tags("azheld", &young));
    assert!(az.vms("azheld").is_empty());

    // Not clusterctl's: bad input naming the flag, nothing created.
    let (code, _, err) = up("azother", &["--resource-group", rg]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--name") && err.contains("azother-nsg"),
        "{err}"
    );
    assert_eq!(tags_of(&nsg("azother")), json!({"team": "data"}));

    // Leftovers, in the named group and as the cluster's own group: taken over.
    for (name, extra, claim) in [
        ("azleft", &["--resource-group", rg][..], nsg("azleft")),
        (
            "azown",
            &[][..],
            format!("{sub}/resourceGroups/clusterctl-azown"),
        ),
    ] {
        let (code, _, err) = up(name, extra);
        assert_eq!(code, Some(0), "{name}: {err}");
        let vms = az.vms(name);
        assert_eq!(vms.len(), 2, "{vms:?}");
        let launch = &vms[0]["tags"]["clusterctl-launch"];
        assert_ne!(launch, old);
        assert_eq!(tags_of(&claim)["clusterctl-launch"], *launch, "{name}");
        let mut down = vec!["down", name];
        down.extend_from_slice(extra);
        let (code, _, err) = az.json(&down);
        assert_eq!(code, Some(0), "down {name}: {err}");
        az.assert_nothing_left(name);
    }
}

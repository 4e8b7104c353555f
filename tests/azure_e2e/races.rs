//! Races: two `up`s of one name at once from two machines leave one healthy cluster.

use serde_json::Value;

use crate::{
    Az,
    common::{self, Env, client},
};

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

//! Races: two `up`s of one name at once from two machines leave one healthy cluster.

use crate::{
    Kube,
    common::{self, Env},
};

/// Two `up` of one name at once from two machines (state directories): the root ConfigMap
/// claims the name, so one cluster exists afterwards and computes, and the loser exits 1 with
/// `NameTaken` without deleting anything of the winner (before, its rollback deleted the
/// winner's root and with it the whole cluster).
#[test]
fn two_ups_of_one_name_at_once_leave_one_healthy_cluster() {
    let k = Kube::new();
    let other = Env::new();
    let args = k.up_args("k8race", "1");
    let cmd = |env: &Env| {
        let mut c = env.cmd();
        c.envs(k.sim.env()).args(&args);
        c
    };
    let ((winner, won), (loser, _)) = common::race_two_ups("kubernetes", cmd(&k.env), cmd(&other));
    let (won_env, lost_env) = ([&k.env, &other][winner], [&k.env, &other][loser]);
    assert_eq!(won.1["workers"]["joined"], 1, "{won:?}");
    assert!(lost_env.records().is_empty(), "the loser keeps no record");
    let launches: std::collections::BTreeSet<String> = k
        .held("k8race", "Pod")
        .iter()
        .map(|p| p["metadata"]["labels"]["clusterctl-launch"].to_string())
        .collect();
    assert_eq!(k.held("k8race", "Pod").len(), 2);
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(k.held("k8race", "ConfigMap").len(), 1);

    let mut env = won_env.cmd();
    env.envs(k.sim.env())
        .args(["env", "k8race", "--output", "json"]);
    let out = env.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut down = won_env.cmd();
    down.envs(k.sim.env()).args(["down", "k8race"]);
    let out = down.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    k.assert_nothing_left("k8race");
}

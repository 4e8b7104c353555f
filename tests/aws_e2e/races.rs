//! Races: two `up`s of one name at once from two machines leave one healthy cluster.

use serde_json::Value;

use crate::{
    Aws,
    common::{self, Env, client, moto::BootAgent},
    live,
};

/// Two `up` of one name started at once from two machines (state directories): the security
/// group claims the name, so exactly one cluster exists afterwards and it computes; the other
/// exits 1 with `NameTaken` having created nothing and removed nothing of the winner.
#[test]
fn two_ups_of_one_name_at_once_leave_one_healthy_cluster() {
    let aws = Aws::new();
    let agent = BootAgent::start(&aws.moto, &aws.env.dir.path().join("agent"));
    let other = Env::new();
    // The second subnet (127.0.2.0/24): the other booting test's instances get the same
    // addresses from their own moto in the first one, and a node can only bind its own.
    let mut args = aws.up_args("race", "1");
    let first = args.iter().position(|a| *a == "--subnet").unwrap() + 1;
    args[first] = &aws.subnets[1];
    let cmd = |env: &Env| {
        let mut c = env.cmd();
        c.args(&args).envs(aws.moto.env());
        c
    };
    let ((winner, _), (loser, _)) = common::race_two_ups("aws", cmd(&aws.env), cmd(&other));
    let envs = [[&aws.env, &other][winner], [&aws.env, &other][loser]];
    assert!(envs[1].records().is_empty(), "the loser keeps no record");

    // The winner's cluster is whole and computes: the loser removed nothing of it.
    let held = aws.moto.inspect("race");
    let launches: std::collections::BTreeSet<&str> = live(&held["instances"])
        .iter()
        .map(|i| i["tags"]["clusterctl-launch"].as_str().unwrap())
        .collect();
    assert_eq!(live(&held["instances"]).len(), 2, "{held}");
    assert_eq!(launches.len(), 1, "one launch's nodes only: {launches:?}");
    assert_eq!(held["security_groups"].as_array().unwrap().len(), 1);
    assert_eq!(
        held["security_groups"][0]["tags"]["clusterctl-launch"].as_str(),
        launches.first().copied()
    );
    assert_eq!(held["ssm_parameters"].as_array().unwrap().len(), 2);
    let (code, env, err) = envs[0].json(&["env", "race"]);
    assert_eq!(code, Some(0), "{err}");
    let r = client(&env["env"], &["compute", "50"]);
    assert_eq!(r["result"], (0..50u64).map(|x| x * x).sum::<u64>());

    // A later `up` of the name, from either machine, is refused before anything is made.
    let (code, _, err) = aws.json(&aws.up_args("race", "1"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("already exists"), "{err}");

    let mut down = envs[0].cmd();
    down.args(["down", "race"]).envs(aws.moto.env());
    assert!(down.output().unwrap().status.success());
    let held = aws.moto.inspect("race");
    assert!(live(&held["instances"]).is_empty(), "{held}");
    assert_eq!(held["node_role"], Value::Null);
    assert_eq!(agent.errors(), "");
}

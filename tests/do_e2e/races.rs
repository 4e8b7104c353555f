//! Races: two `up`s of one name at once from two machines leave one healthy cluster.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{
    Do, claim_keys,
    common::{self, Env, client},
    held,
};

/// Two `up` of one name at once from two machines (state directories). DigitalOcean has no
/// resource only one of them could create, so each checks once its scheduler droplet exists:
/// the launch that started first keeps the name, the other removes its own droplet, key and
/// firewall and exits 1. Afterwards one cluster of one launch exists, and it computes.
#[test]
fn two_ups_of_one_name_at_once_leave_one_healthy_cluster() {
    let d = Do::new(&[]);
    let other = Env::new();
    let args = Do::up_args("dorace", "1");
    let cmd = |env: &Env| {
        let mut c = d.cmd_in(env);
        c.args(&args);
        c
    };
    let ((winner, _), (loser, lost)) =
        common::race_two_ups("digitalocean", cmd(&d.env), cmd(&other));
    let (won_env, lost_env) = ([&d.env, &other][winner], [&d.env, &other][loser]);
    assert!(!lost.2.contains("could not all be removed"), "{}", lost.2);
    assert!(lost_env.records().is_empty());

    // One launch's droplets only, one firewall, one key; and the cluster computes.
    let started = Instant::now();
    let launches = loop {
        let droplets = d.droplets("dorace");
        let launches: std::collections::BTreeSet<String> = droplets
            .iter()
            .flat_map(|x| x["tags"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t.as_str().map(str::to_string))
            .filter(|t| t.starts_with("clusterctl-launch:"))
            .collect();
        if droplets.len() == 2 || started.elapsed() > Duration::from_secs(20) {
            break launches;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(d.droplets("dorace").len(), 2);
    let inv = d.sim.inventory();
    let fw = held(&inv, "firewalls", |f| {
        f["name"] == json!("clusterctl-dorace")
    });
    assert_eq!(fw.len(), 1, "{fw:?}");
    let keys = claim_keys(&inv, "dorace");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let launch = launches
        .first()
        .unwrap()
        .trim_start_matches("clusterctl-launch:");
    assert!(
        keys[0]["name"]
            .to_string()
            .contains(&format!(" launch {launch} ")),
        "the claim is the winner's: {keys:?}"
    );
    let (code, env, err) = d.json_in(won_env, &["env", "dorace"]);
    assert_eq!(code, Some(0), "{err}");
    let r = client(&env["env"], &["compute", "40"]);
    assert_eq!(r["result"], (0..40u64).map(|x| x * x).sum::<u64>());

    let (code, _, err) = d.json_in(won_env, &["down", "dorace"]);
    assert_eq!(code, Some(0), "{err}");
    d.assert_nothing_left("dorace");
}

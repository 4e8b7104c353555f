//! Expiry and half-made clusters, from another machine: without the record, droplets powered
//! off at the TTL and removed by `down --expired`; a half-made cluster holding its name until
//! it expires and `gc` removes it.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Do, claim_keys, common::Env, held, live};

#[test]
fn without_the_record_size_fallback_ttl_power_off_and_down_expired() {
    let d = Do::new(&[]);
    // The first size has no capacity when the workers are created: the next one is used.
    d.sim.fault(
        json!({"method": "POST", "path": "^/v2/droplets$", "after": 1, "count": 1,
        "status": 422, "body": {"id": "unprocessable_entity",
        "message": "Size is not available in this region."}}),
    );
    let mut args = Do::up_args("dot", "1");
    args.extend([
        "--worker-size",
        "g-4vcpu-16gb,s-4vcpu-8gb",
        "--ttl",
        "1m",
        "--idle-timeout",
        "0",
    ]);
    let (code, up, err) = d.json(&args);
    assert_eq!(
        code,
        Some(0),
        "up failed: {err}\nsim errors: {}",
        d.sim.errors()
    );
    let expires_at = up["expires_at"].as_u64().unwrap();
    let droplets = d.droplets("dot");
    let workers = live(&droplets, "worker");
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0]["size"], "s-4vcpu-8gb", "the fallback size");

    // Another machine: no record. `list` finds the cluster from its tags.
    let other = Env::new();
    let row = d.listed_in(&other, "dot");
    assert_eq!(row["state"], "running", "{row}");
    assert_eq!(row["recorded_here"], false);
    let (code, status, err) = d.json_in(&other, &["status", "dot", "--provider", "digitalocean"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["recorded_here"], false);
    let (code, logs, err) = d.json_in(&other, &["logs", "dot", "--provider", "digitalocean"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        logs["logs"].as_array().is_some_and(|l| l.len() == 2),
        "the scheduler's and the worker's logs, without the record: {logs}"
    );

    // At the TTL the nodes power themselves off; DigitalOcean keeps billing them.
    let started = Instant::now();
    loop {
        let states: Vec<String> = d
            .droplets("dot")
            .iter()
            .map(|x| x["status"].as_str().unwrap().to_string())
            .collect();
        if states.iter().all(|s| s == "off") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "droplets did not power off at the TTL: {states:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    assert!(clusterctl_core::model::now_epoch() + 5 >= expires_at);
    let row = d.listed_in(&other, "dot");
    assert_eq!(row["state"], "expired", "{row}");
    let billing = d.sim.inventory()["billing"].clone();
    assert!(
        billing["live"].as_array().is_some_and(|l| !l.is_empty()),
        "powered-off droplets still accrue: {billing}"
    );

    // `down --expired` from the other machine removes it.
    let (code, down, err) = d.json_in(&other, &["down", "--expired", "--provider", "digitalocean"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(down["removed"][0]["name"], "dot", "{down}");
    let inv = d.sim.inventory();
    assert!(
        inv["billing"]["live"].as_array().unwrap().is_empty(),
        "nothing billed after down: {}",
        inv["billing"]
    );
    // The record on the first machine is stale now: its `down` is still success.
    let (code, _, err) = d.json(&["down", "dot"]);
    assert_eq!(code, Some(0), "{err}");
    d.assert_nothing_left("dot");
}

/// An `up` killed right after its first mutating request leaves only the name's claim: the SSH
/// key whose name carries the cluster, the launch and the expiry. Meanwhile a second `up` of the
/// name is refused (the claim is young) and changes nothing. From another machine, `gc` leaves
/// the half-made cluster alone until it expires, then lists it without a single mutating
/// request, and `gc --yes` removes it, leaving nothing.
#[test]
fn a_half_made_cluster_holds_its_name_and_gc_finds_and_removes_it() {
    let d = Do::new(&[]);
    let mut args = Do::up_args("dohalf", "1");
    args.extend(["--ttl", "1m"]);
    // Every mutating request after the first is held, unprocessed, until the gate is disarmed.
    d.sim
        .control("POST", "/_sim/gate", Some(&json!({"after": 1})));
    let started = Instant::now();
    let mut up = d
        .cmd_in(&d.env)
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let gate = loop {
        let g = d.sim.control("GET", "/_sim/gate", None);
        if g["admitted"] == 1 && g["held"].as_u64() > Some(0) && g["in_flight"] == 0 {
            break g;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "up never sent its second mutating request: {g}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    up.kill().unwrap();
    let _ = up.wait();
    d.sim.control("DELETE", "/_sim/gate", None);
    // The held request is dropped (answered 503, never processed) once disarmed.
    while d.sim.control("GET", "/_sim/gate", None)["held"] != 0 {
        assert!(started.elapsed() < Duration::from_secs(130));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        gate["log"],
        json!(["POST /v2/account/keys"]),
        "the claim is the first thing up creates"
    );

    // Only the claim exists: no droplet, firewall or tag of the cluster.
    let inv = d.sim.inventory();
    let keys = claim_keys(&inv, "dohalf");
    assert_eq!(keys.len(), 1, "{keys:?}");
    let claim = keys[0]["name"].as_str().unwrap().to_string();
    let words: Vec<&str> = claim.split(' ').collect();
    assert_eq!(words.len(), 7, "{claim}");
    assert_eq!((words[3], words[5]), ("launch", "expires"), "{claim}");
    let (launch, expires): (&str, u64) = (words[4], words[6].parse().unwrap());
    let now = clusterctl_core::model::now_epoch();
    assert!(
        (now + 55..=now + 61).contains(&expires),
        "the claim carries the 1-minute expiry: {claim}"
    );
    assert!(d.droplets("dohalf").is_empty());
    assert!(held(&inv, "firewalls", |f| f["name"] == "clusterctl-dohalf").is_empty());
    assert!(held(&inv, "tags", |t| t == "clusterctl-cluster:dohalf").is_empty());

    // A second `up` of the name from another machine: the young claim holds it.
    let other = Env::new();
    let writes = d.sim.writes().len();
    let (code, out, err) = d.json_in(&other, &Do::up_args("dohalf", "1"));
    let said = format!("{out}\n{err}");
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(launch), "names the holding launch: {said}");
    assert_eq!(
        d.sim.writes().len(),
        writes,
        "the refused up changed nothing"
    );
    assert_eq!(claim_keys(&d.sim.inventory(), "dohalf"), keys);
    assert!(other.records().is_empty());

    // Before its expiry, `gc` leaves it alone.
    let gc = |yes: bool| {
        let mut a = vec!["gc", "--provider", "digitalocean", "--region", "nyc3"];
        if yes {
            a.push("--yes");
        }
        let (code, out, err) = d.json_in(&other, &a);
        assert_eq!(code, Some(0), "gc: {err}");
        out
    };
    let listed = gc(false);
    assert_eq!(listed["expired"], json!([]), "{listed}");

    // Once expired: listed, with nothing changed.
    let wait = Duration::from_secs(expires.saturating_sub(clusterctl_core::model::now_epoch()) + 2);
    std::thread::sleep(wait);
    let writes = d.sim.writes().len();
    let listed = gc(false);
    let expired = listed["expired"].as_array().unwrap();
    assert_eq!(expired.len(), 1, "{listed}");
    assert_eq!(expired[0]["name"], "dohalf", "{listed}");
    assert_eq!(listed["removed"], json!([]), "{listed}");
    assert_eq!(
        d.sim.writes().len(),
        writes,
        "gc without --yes changed something"
    );

    // `--yes` removes it, and a second run finds nothing more.
    let done = gc(true);
    assert_eq!(done["removed"][0]["name"], "dohalf", "{done}");
    assert_eq!(gc(true)["removed"], json!([]));
    // The killed `up`'s record on the first machine is stale: its `down` is still success.
    let (code, _, err) = d.json(&["down", "dohalf"]);
    assert_eq!(code, Some(0), "{err}");
    d.assert_nothing_left("dohalf");
}

//! End-to-end tests of the `digitalocean` provider against the API simulator of
//! `tests/digitalocean/`: droplets whose cloud-init the shared VM boot runtime runs as real Dask
//! processes on their VPC addresses, a real Dask client computing through the printed (public)
//! address behind the cluster's cloud firewall, what the simulator holds after each command
//! (droplets, tags, firewall rules, SSH keys, no root-password e-mail, no token in user_data),
//! and nothing left after `down`.
//!
//! Droplet addresses are `10.x` (VPC `10.108.0.0/20` in nyc3, "public" `10.250.0.0/16`), so each
//! test runs in its own network namespace (`common::sandbox`). The client's source address
//! there is `10.0.0.0`, which is why the clusters allow `10.0.0.0/32`: the simulator's NAT
//! forwarder drops what the firewall does not allow. Every request the simulator accepts and
//! every answer it gives is validated against DigitalOcean's OpenAPI document in
//! `../shared/specs`; each test asserts it refused nothing.

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::{Env, client, restsim::RestSim, sandbox::Sandbox};
use serde_json::{Value, json};

const TOKEN: &str = "dop_v1_simulated0123456789abcdef0123456789abcdef0123456789abcdef0123";

struct Do {
    env: Env,
    sim: RestSim,
    _sandbox: Sandbox,
}

impl Do {
    fn new(sim_args: &[&str]) -> Self {
        let sandbox = Sandbox::enter();
        let env = Env::new();
        let sim = RestSim::start(
            "tests/digitalocean/do_sim.py",
            env.dir.path(),
            TOKEN,
            sim_args,
        );
        Do {
            env,
            sim,
            _sandbox: sandbox,
        }
    }

    /// clusterctl pointed at the simulator: its URL, its CA, its token.
    fn cmd_in(&self, env: &Env) -> Command {
        let mut c = env.cmd();
        c.env("DIGITALOCEAN_API_URL", &self.sim.url)
            .env("CLUSTERCTL_EXTRA_CA_FILE", &self.sim.ca_file)
            .env("DIGITALOCEAN_TOKEN", TOKEN);
        c
    }

    fn json_in(&self, env: &Env, args: &[&str]) -> (Option<i32>, Value, String) {
        let out = self
            .cmd_in(env)
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

    /// The row of `cluster` in `clusterctl list --provider digitalocean` run in `env`.
    fn listed_in(&self, env: &Env, cluster: &str) -> Value {
        let (code, listed, err) = self.json_in(env, &["list", "--provider", "digitalocean"]);
        assert_eq!(code, Some(0), "{err}");
        listed["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == cluster)
            .unwrap_or_else(|| panic!("{cluster} listed: {listed}"))
            .clone()
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        self.json_in(&self.env, args)
    }

    fn up_args<'a>(name: &'a str, workers: &'a str) -> Vec<&'a str> {
        vec![
            "up",
            "--provider",
            "digitalocean",
            "--region",
            "nyc3",
            "--name",
            name,
            "--workers",
            workers,
            // The test client's address in the sandbox, and a documentation address.
            "--allow-cidr",
            "10.0.0.0/32,203.0.113.7/32",
            "--timeout",
            "180s",
        ]
    }

    /// Droplets the simulator holds that carry `cluster`'s tag.
    fn droplets(&self, cluster: &str) -> Vec<Value> {
        let tag = format!("clusterctl-cluster:{cluster}");
        held(&self.sim.inventory(), "droplets", |d| has_tag(d, &tag))
    }

    /// Nothing of `cluster` is left: droplets, its firewall, its SSH key, its tag; no Dask
    /// process of any droplet still runs; the simulator refused nothing.
    fn assert_nothing_left(&self, cluster: &str) {
        let inv = self.sim.inventory();
        let tag = format!("clusterctl-cluster:{cluster}");
        let named = format!("clusterctl-{cluster}");
        for (kind, left) in [
            ("droplets", held(&inv, "droplets", |d| has_tag(d, &tag))),
            (
                "firewalls",
                held(&inv, "firewalls", |f| f["name"] == json!(named)),
            ),
            (
                "SSH keys",
                [
                    claim_keys(&inv, cluster),
                    held(&inv, "ssh_keys", |k| k["name"] == json!(named)),
                ]
                .concat(),
            ),
            ("tags", held(&inv, "tags", |t| t == &json!(tag))),
        ] {
            assert!(left.is_empty(), "{kind} left: {left:?}");
        }
        self.sim.assert_no_vm_runs();
        assert!(
            inv["root_password_emails"].as_array().unwrap().is_empty(),
            "a root password was e-mailed: {}",
            inv["root_password_emails"]
        );
        let errors = self.sim.errors();
        assert!(
            errors.trim().is_empty(),
            "the simulator refused requests: {errors}"
        );
        self.env.assert_clean();
    }
}

/// The objects of `kind` in the simulator's inventory that `pick` selects.
fn held(inv: &Value, kind: &str, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
    inv[kind]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| pick(o))
        .cloned()
        .collect()
}

/// The SSH keys that claim `cluster`'s name: named `clusterctl cluster NAME launch L expires E`.
fn claim_keys(inv: &Value, cluster: &str) -> Vec<Value> {
    let prefix = format!("clusterctl cluster {cluster} launch ");
    held(inv, "ssh_keys", |k| {
        k["name"].as_str().is_some_and(|n| n.starts_with(&prefix))
    })
}

/// Whether a droplet carries `tag`.
fn has_tag(droplet: &Value, tag: &str) -> bool {
    droplet["tags"].as_array().unwrap().iter().any(|t| t == tag)
}

fn live<'a>(droplets: &'a [Value], role: &str) -> Vec<&'a Value> {
    let tag = format!("clusterctl-role:{role}");
    droplets.iter().filter(|d| has_tag(d, &tag)).collect()
}

#[test]
fn digitalocean_cluster_runs_computes_scales_and_leaves_nothing() {
    let d = Do::new(&[]);
    // Throttling and a server error on the way: both are retried.
    d.sim.fault(
        json!({"method": "POST", "path": "^/v2/droplets$", "status": 429, "count": 1,
        "headers": {"retry-after": "1"}}),
    );
    d.sim
        .fault(json!({"method": "GET", "path": "^/v2/sizes", "status": 500, "count": 1}));
    d.sim.mark("up");
    let (code, up, err) = d.json(&Do::up_args("doe", "2"));
    assert_eq!(
        code,
        Some(0),
        "up failed: {err}\nsim errors: {}",
        d.sim.errors()
    );
    assert_eq!(up["ready"], true);
    assert_eq!(up["provider"], "digitalocean");
    assert_eq!(up["location"], "nyc3");
    assert_eq!(up["workers"]["joined"], 2);
    let address = up["scheduler_address"].as_str().unwrap().to_string();
    assert!(
        address.starts_with("tls://10.250."),
        "TLS on, the scheduler's public address: {address}"
    );
    let faults = d.sim.control("GET", "/_sim/faults", None);
    assert!(
        faults.to_string().contains("\"remaining\":0") || !faults.to_string().contains("remaining"),
        "the injected faults were all hit: {faults}"
    );

    // What DigitalOcean holds.
    let inv = d.sim.inventory();
    let droplets = d.droplets("doe");
    assert_eq!(droplets.len(), 3, "{droplets:?}");
    let scheduler = live(&droplets, "scheduler");
    assert_eq!(scheduler.len(), 1);
    assert_eq!(scheduler[0]["name"], "doe-scheduler");
    assert_eq!(scheduler[0]["size"], "g-2vcpu-8gb");
    assert_eq!(scheduler[0]["image"], "ubuntu-24-04-x64");
    let mut worker_names: Vec<&str> = live(&droplets, "worker")
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    worker_names.sort();
    assert_eq!(worker_names, ["doe-worker-0", "doe-worker-1"]);
    for drop in &droplets {
        let tags = drop["tags"].to_string();
        for want in [
            "clusterctl-managed:true",
            "clusterctl-cluster:doe",
            "clusterctl-protocol:tls",
        ] {
            assert!(tags.contains(want), "{want} on {}: {tags}", drop["name"]);
        }
        assert!(tags.contains("clusterctl-expires:"), "{tags}");
        assert_eq!(drop["monitoring"], false);
        assert!(
            !drop["ssh_keys"].as_array().unwrap().is_empty(),
            "every droplet has an SSH key, so no root password is e-mailed"
        );
        let user_data = drop["user_data"].as_str().unwrap();
        assert!(
            user_data.starts_with("#cloud-config"),
            "{}",
            &user_data[..40]
        );
        assert!(!user_data.contains(TOKEN), "the API token is in user_data");
        assert!(
            !user_data.contains("dop_v1_"),
            "a DigitalOcean token is in user_data"
        );
        assert!(
            !user_data.contains("AWS_SECRET"),
            "a credential is in user_data"
        );
        assert_eq!(drop["booted"], "booted", "{}", drop["name"]);
    }
    // The throwaway key is the name's claim: its name carries the cluster's expiry.
    let keys = claim_keys(&inv, "doe");
    assert_eq!(keys.len(), 1, "one claim key: {keys:?}");
    let key = &keys[0];
    assert!(
        key["name"]
            .as_str()
            .unwrap()
            .ends_with(&format!(" expires {}", up["expires_at"])),
        "{key}"
    );
    assert!(
        droplets.iter().all(
            |d| d["ssh_keys"].to_string().contains(&key["id"].to_string())
                || d["ssh_keys"]
                    .to_string()
                    .contains(key["fingerprint"].as_str().unwrap())
        ),
        "the droplets carry the cluster's key"
    );
    assert!(inv["root_password_emails"].as_array().unwrap().is_empty());

    // The firewall: the scheduler's ports only from --allow-cidr, members free among
    // themselves, outbound open; nothing inbound from the world.
    let fw = inv["firewalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "clusterctl-doe")
        .expect("the cluster's firewall")
        .clone();
    assert_eq!(fw["tags"], json!(["clusterctl-cluster:doe"]), "{fw}");
    let inbound = fw["inbound_rules"].as_array().unwrap();
    let dask_ports: Vec<&Value> = inbound
        .iter()
        .filter(|r| r["ports"] == "8786-8787")
        .collect();
    assert_eq!(dask_ports.len(), 1, "{inbound:?}");
    let mut sources: Vec<&str> = dask_ports[0]["sources"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    sources.sort();
    assert_eq!(sources, ["10.0.0.0/32", "203.0.113.7/32"]);
    for rule in inbound {
        let addrs = rule["sources"]["addresses"].to_string();
        assert!(
            !addrs.contains("0.0.0.0/0") && !addrs.contains("::/0"),
            "an inbound rule open to the world: {rule}"
        );
    }
    assert!(
        inbound.iter().any(|r| r["protocol"] == "tcp"
            && ["0", "all", "1-65535"].contains(&r["ports"].as_str().unwrap_or_default())
            && r["sources"]["tags"] == json!(["clusterctl-cluster:doe"])),
        "members reach each other on every tcp port: {inbound:?}"
    );
    for reach in inv["firewall_vpc_reachability"].as_array().unwrap() {
        assert_eq!(
            reach["blocked_listening"],
            json!([]),
            "the firewall blocks a port a member listens on: {reach}"
        );
    }
    for egress in inv["firewall_egress"].as_array().unwrap() {
        let text = egress.to_string();
        assert!(
            !text.contains("false"),
            "the firewall blocks DNS, HTTPS or HTTP egress (apt, image pulls): {egress}"
        );
    }

    // A real client through the printed public address, with the client certificate.
    let (_, env, _) = d.json(&["env", "doe"]);
    let r = client(&env["env"], &["compute", "300"]);
    assert_eq!(r["result"], (0..300u64).map(|x| x * x).sum::<u64>());
    assert_eq!(r["workers"], 2);
    assert_eq!(client(&env["env"], &["refuse-plain"])["refused"], true);

    // status, logs (from the scheduler's own HTTP server: DigitalOcean has no console API).
    let (code, status, err) = d.json(&["status", "doe"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(status["state"], "ready");
    assert_eq!(status["workers"]["running"], 2);
    assert_eq!(status["workers"]["joined"], 2);
    let (code, logs, err) = d.json(&["logs", "doe", "--role", "scheduler", "--tail", "200"]);
    assert_eq!(code, Some(0), "{err}");
    let text = logs.to_string();
    assert!(
        text.contains("Scheduler at") || text.contains("Register worker"),
        "the scheduler's Dask log: {text}"
    );

    // scale up, then down through the scheduler's retirement.
    d.sim.mark("scale");
    let (code, scaled, err) = d.json(&["scale", "doe", "--workers", "3"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(scaled["added"], json!(["worker-2"]));
    assert_eq!(live(&d.droplets("doe"), "worker").len(), 3);
    assert_eq!(client(&env["env"], &["workers"])["workers"], 3);
    let (code, scaled, err) = d.json(&["scale", "doe", "--workers", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(scaled["removed"].as_array().unwrap().len(), 2, "{scaled}");
    assert_eq!(live(&d.droplets("doe"), "worker").len(), 1);
    assert_eq!(client(&env["env"], &["workers"])["workers"], 1);

    d.sim.mark("down");
    let (code, down, err) = d.json(&["down", "doe"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(down["removed"][0]["name"], "doe");
    d.assert_nothing_left("doe");
    // Idempotent.
    let (code, _, err) = d.json(&["down", "doe", "--provider", "digitalocean"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn bad_input_exits_2_dry_run_and_quota_failure_leave_nothing() {
    let d = Do::new(&["--droplet-limit", "2"]);
    let refuse = |env_token: Option<&str>, extra: &[&str], needle: &str| {
        let mut args = Do::up_args("dob", "1");
        if extra.contains(&"--region") {
            // Replace the region of the common arguments.
            let at = args.iter().position(|a| *a == "--region").unwrap();
            args.drain(at..at + 2);
        }
        args.extend_from_slice(extra);
        let mut c = d.cmd_in(&d.env);
        match env_token {
            Some(t) => c.env("DIGITALOCEAN_TOKEN", t),
            None => c.env_remove("DIGITALOCEAN_TOKEN"),
        };
        let out = c.args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {needle} in {err}");
        assert!(err.contains("hint:"), "{extra:?}: {err}");
    };
    refuse(None, &[], "DIGITALOCEAN_TOKEN");
    refuse(Some(TOKEN), &["--region", "NYC-3"], "NYC-3");
    refuse(
        Some(TOKEN),
        &["--worker-size", "s-2vcpu-4gb"],
        "s-2vcpu-4gb",
    );
    refuse(Some(TOKEN), &["--region", "xyz9"], "xyz9");
    {
        // No --allow-cidr and not --private.
        let out = d
            .cmd_in(&d.env)
            .args([
                "up",
                "--provider",
                "digitalocean",
                "--region",
                "nyc3",
                "--name",
                "dob",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--allow-cidr"), "{err}");
    }

    // A dry run names the account, shows the cloud-init without keys, and warns about billing.
    let mut args = Do::up_args("dob", "1");
    args.push("--dry-run");
    let (code, plan, err) = d.json(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(plan["dry_run"], true);
    let identity = plan["plan"]["identity"].as_str().unwrap_or_default();
    assert!(identity.contains('@'), "the account's e-mail: {plan}");
    let notes = plan["plan"]["notes"].to_string();
    assert!(
        notes.contains("billed"),
        "powered-off droplets are billed: {notes}"
    );
    let boot = plan["plan"]["bootstraps"][0]["text"].as_str().unwrap();
    assert!(boot.starts_with("#cloud-config"), "{boot}");
    assert!(
        !boot.contains("BEGIN PRIVATE KEY"),
        "keys elided in the dry run"
    );

    // Nothing was created by any of them.
    let posts: Vec<Value> = d
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .collect();
    assert!(
        posts.is_empty(),
        "refused input created something: {posts:?}"
    );

    // The account allows 2 droplets: a cluster of 3 is refused before anything is created, as
    // a quota error (exit 1) that names the limit.
    let (code, out, err) = d.json(&Do::up_args("doq", "2"));
    assert_eq!(code, Some(1), "{err}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("quota") && message.contains("droplet limit") && message.contains('2'),
        "{out}"
    );
    assert!(
        d.sim.requests().iter().all(|r| r["method"] == "GET"),
        "nothing is created for a cluster over the limit"
    );

    // The limit is reached while the workers are created (another client made droplets in the
    // meantime): `up` reports the quota (exit 1) and removes the scheduler it had created.
    d.sim.fault(
        json!({"method": "POST", "path": "^/v2/droplets$", "after": 1, "count": 1,
        "status": 422, "body": {"id": "unprocessable_entity",
        "message": "creating this/these droplet(s) will exceed your droplet limit"}}),
    );
    let (code, out, err) = d.json(&Do::up_args("doq", "1"));
    assert_eq!(code, Some(1), "{err}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("quota"), "{out}");
    assert!(
        d.sim.inventory()["deleted_droplets"]
            .to_string()
            .contains("doq-scheduler"),
        "the scheduler was created, then rolled back"
    );
    d.assert_nothing_left("doq");
}

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

#[test]
fn doctor_reports_the_account_the_limit_and_a_bad_token_creating_nothing() {
    let d = Do::new(&["--droplet-limit", "3"]);
    let doctor = |workers: &str, token: &str| {
        let mut args = vec!["doctor"];
        args.extend(&Do::up_args("dodoc", workers)[1..]);
        let out = d
            .cmd_in(&d.env)
            .env("DIGITALOCEAN_TOKEN", token)
            .args(&args)
            .args(["--output", "json"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            v,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, v, err) = doctor("2", TOKEN);
    assert_eq!(code, Some(0), "{v} {err}");
    assert!(common::failed_checks(&v).is_empty(), "{v}");
    // The account's droplet limit against what `up` would create (1 + 5 > 3).
    let (code, v, err) = doctor("5", TOKEN);
    assert_eq!(code, Some(1), "{v} {err}");
    let f = common::failed_checks(&v);
    assert_eq!(f.len(), 1, "{v}");
    assert!(f[0]["detail"].as_str().unwrap().contains("limit"), "{v}");
    // A token the API refuses.
    let (code, v, err) = doctor("2", "dop_v1_not-a-valid-token");
    assert_eq!(code, Some(1), "{v} {err}");
    assert_eq!(common::failed_checks(&v).len(), 1, "{v}");
    assert!(
        common::failed_checks(&v)[0]["hint"].as_str().is_some(),
        "{v}"
    );
    // Read-only: not one creating request reached the API.
    let writes: Vec<Value> = d
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    d.assert_nothing_left("dodoc");
}

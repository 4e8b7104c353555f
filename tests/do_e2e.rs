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
//!
//! Here: a cluster that runs, computes, scales and leaves nothing. By theme:
//!
//! - bad input, the dry run, the droplet limit, `doctor` (`do_e2e/failures.rs`);
//! - the TTL without the record, and `gc` of a half-made cluster (`do_e2e/expiry.rs`);
//! - two `up`s of one name at once (`do_e2e/races.rs`).

mod common;
#[path = "do_e2e/expiry.rs"]
mod expiry;
#[path = "do_e2e/failures.rs"]
mod failures;
#[path = "do_e2e/races.rs"]
mod races;

use std::process::Command;

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

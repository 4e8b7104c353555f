//! The Compute Engine simulator (`tests/gcp/gce_sim.py`) in a network sandbox of its own, and a
//! clusterctl pointed at it (endpoint, CA, the simulator's service-account key, the project):
//! what the GCP end-to-end tests share.

use std::process::Command;

use serde_json::Value;

use super::{Env, restsim::RestSim, sandbox::Sandbox};

pub const PROJECT: &str = "clusterctl-sim";

/// The simulator's delays for tests: operations pending then running, deletes and firewall
/// rules taking effect later, service accounts and IAM bindings propagating, as on GCE, but in
/// seconds.
pub const SIM_TIMINGS: &[&str] = &[
    "--op-pending",
    "0.2",
    "--op-delay",
    "0.5",
    "--delete-delay",
    "0.5",
    "--firewall-delay",
    "0.2",
    "--sa-propagation",
    "2",
    "--iam-propagation",
    "1",
];

pub struct Gce {
    pub env: Env,
    pub sim: RestSim,
    _sandbox: Sandbox,
}

impl Gce {
    pub fn new(sim_args: &[&str]) -> Self {
        let sandbox = Sandbox::enter();
        let env = Env::new();
        let mut args = SIM_TIMINGS.to_vec();
        args.extend_from_slice(sim_args);
        let sim = RestSim::start_with("tests/gcp/gce_sim.py", env.dir.path(), &args);
        Gce {
            env,
            sim,
            _sandbox: sandbox,
        }
    }

    pub fn cmd(&self) -> Command {
        self.cmd_in(&self.env)
    }

    pub fn cmd_in(&self, env: &Env) -> Command {
        let mut c = env.cmd();
        c.env("CLUSTERCTL_GCP_ENDPOINT", &self.sim.url)
            .env("CLUSTERCTL_EXTRA_CA_FILE", &self.sim.ca_file)
            .env(
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.sim.ready["credentials_file"].as_str().unwrap(),
            )
            .env("GOOGLE_CLOUD_PROJECT", PROJECT);
        c
    }

    pub fn json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let out = self
            .cmd()
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

    pub fn up_args<'a>(name: &'a str, workers: &'a str) -> Vec<&'a str> {
        vec![
            "up",
            "--provider",
            "gcp",
            "--zone",
            "us-central1-a",
            "--name",
            name,
            "--workers",
            workers,
            "--allow-cidr",
            "10.0.0.0/32,203.0.113.7/32",
            "--timeout",
            "240s",
        ]
    }

    pub fn instances(&self, cluster: &str) -> Vec<Value> {
        self.sim.inventory()["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["labels"]["clusterctl-cluster"] == cluster)
            .cloned()
            .collect()
    }

    /// Nothing labelled or named for `cluster` is left, no VM process runs, nothing refused.
    pub fn assert_nothing_left(&self, cluster: &str) {
        let inv = self.sim.inventory();
        assert!(self.instances(cluster).is_empty(), "instances left");
        let fw: Vec<&Value> = inv["firewalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                f["name"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with(&format!("clusterctl-{cluster}"))
            })
            .collect();
        assert!(fw.is_empty(), "firewall rules left: {fw:?}");
        let secrets: Vec<&Value> = inv["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["labels"]["clusterctl-cluster"] == cluster)
            .collect();
        assert!(secrets.is_empty(), "secrets left: {secrets:?}");
        let sas: Vec<&Value> = inv["service_accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["email"].as_str().unwrap_or_default().contains(cluster))
            .collect();
        assert!(sas.is_empty(), "service accounts left: {sas:?}");
        self.sim.assert_no_vm_runs();
        let errors = self.sim.errors();
        assert!(
            errors.trim().is_empty(),
            "the simulator refused requests: {errors}"
        );
        self.env.assert_clean();
    }
}

/// The simulator's operations that ended with `code` among their errors.
pub fn failed_ops(inv: &Value, code: &str) -> Vec<Value> {
    inv["operations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| {
            o["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|c| c == code))
        })
        .cloned()
        .collect()
}

pub fn role<'a>(all: &'a [Value], role: &str) -> Vec<&'a Value> {
    all.iter()
        .filter(|v| v["labels"]["clusterctl-role"] == role)
        .collect()
}

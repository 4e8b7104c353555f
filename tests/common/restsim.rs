//! A REST cloud simulator per test (DigitalOcean today; Azure and GCP share the toolkit in
//! `tests/simkit/`): started on a loopback port with HTTPS from a CA of its own, with droplets
//! or VMs booted by the shared VM boot runtime (`tests/vmboot/`) inside the test's sandbox
//! network namespace. Exposes what it holds (`/_sim/inventory`), fault rules, phase marks, the
//! requests it served and the ones it refused.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::Duration,
};

use serde_json::Value;

use super::python;

/// A running simulator; stopped (with every node's processes) on drop.
pub struct RestSim {
    child: Child,
    /// Where it keeps node files, logs and its request and error logs.
    pub workdir: PathBuf,
    /// The API's base URL (`https://127.0.0.1:PORT`).
    pub url: String,
    /// The PEM file of the CA that signed its certificate.
    pub ca_file: PathBuf,
    /// The bearer token it accepts.
    pub token: String,
    /// Its whole ready line.
    pub ready: Value,
}

impl RestSim {
    /// Start the simulator `script` (relative to the repository) with `serve` and `extra`
    /// arguments, accepting `token`.
    pub fn start(script: &str, dir: &Path, token: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--token", token];
        args.extend_from_slice(extra);
        let mut sim = Self::start_with(script, dir, &args);
        sim.token = token.to_string();
        sim
    }

    /// Start the simulator `script` with `serve` and exactly `extra` besides its work
    /// directory and Python (for a simulator that issues its own credentials, e.g. GCE's).
    pub fn start_with(script: &str, dir: &Path, extra: &[&str]) -> Self {
        let workdir = dir.join("sim");
        std::fs::create_dir_all(&workdir).unwrap();
        let (child, ready) = super::spawn_ready(
            Command::new(python())
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
                .args(["serve", "--workdir", workdir.to_str().unwrap()])
                .args(["--python", python().to_str().unwrap()])
                .args(extra),
            &workdir.join("sim.log"),
        );
        RestSim {
            child,
            workdir,
            url: ready["url"].as_str().unwrap_or_default().to_string(),
            ca_file: PathBuf::from(ready["ca_file"].as_str().unwrap_or_default()),
            token: String::new(),
            ready,
        }
    }

    /// A call to the simulator's control API (`/_sim/...`), through Python so that the tests
    /// need no HTTP client of their own; the answer as JSON (`null` for an empty body).
    pub fn control(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let code = r#"
import json, ssl, sys, urllib.request
url, ca, method, body = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
data = body.encode() if body else None
req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
    sys.stdout.write(r.read().decode() or "null")
"#;
        let body = body.map(Value::to_string).unwrap_or_default();
        let url = format!("{}{path}", self.url);
        let args = [url.as_str(), self.ca_file.to_str().unwrap(), method, &body];
        let out = super::run_python(code, &args, &format!("{method} {path}"));
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{method} {path} answered no JSON ({e})"))
    }

    /// Everything the simulator holds.
    pub fn inventory(&self) -> Value {
        self.control("GET", "/_sim/inventory", None)
    }

    /// Make the next matching requests fail (see the simulator's README for the rule's keys).
    pub fn fault(&self, rule: Value) {
        self.control("POST", "/_sim/faults", Some(&rule));
    }

    /// Label the requests that follow with `phase` in the request log.
    pub fn mark(&self, phase: &str) {
        self.control(
            "POST",
            "/_sim/mark",
            Some(&serde_json::json!({ "phase": phase })),
        );
    }

    /// Requests the simulator refused as invalid against the API's specification, and its own
    /// errors: must be empty.
    pub fn errors(&self) -> String {
        let mut all = String::new();
        for f in ["sim-errors.jsonl", "agent-errors.jsonl"] {
            all.push_str(&std::fs::read_to_string(self.workdir.join(f)).unwrap_or_default());
        }
        all
    }

    /// Wait (30 s at most) until no VM process of the simulator runs: the processes of deleted
    /// VMs stop in the background (SIGTERM, SIGKILL after 5 s).
    pub fn assert_no_vm_runs(&self) {
        let started = std::time::Instant::now();
        loop {
            let alive: Vec<Value> = self.inventory()["runtime_nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|n| n["alive"] == true)
                .cloned()
                .collect();
            if alive.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "VM processes still running: {alive:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The requests that may have changed something: all but reads and token exchanges
    /// (OAuth and Entra ID token endpoints are POSTs that create nothing).
    pub fn writes(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"] != "GET" && !r["path"].as_str().unwrap_or("").contains("token"))
            .collect()
    }

    /// The request log, one JSON object per request.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.workdir.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for RestSim {
    fn drop(&mut self) {
        super::stop(&mut self.child, Duration::from_secs(20));
    }
}

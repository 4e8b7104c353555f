//! The conformance table: one `Platform` per provider (how to start its emulator or simulator,
//! the flags `up` needs there, what the platform holds, its mutating-request log and gate).
//! A new provider joins by adding a variant to `Provider` and a `Platform` here.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::{
    common::{
        Env, k8s,
        moto::{Agent, BootAgent, Moto},
        python,
        restsim::RestSim,
        sandbox::Sandbox,
    },
    platform::{Control, Fault, GateState, Platform, identities},
};

/// Every provider the suite covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Local,
    Aws,
    Fargate,
    Kubernetes,
    DigitalOcean,
    Azure,
    Gcp,
}

impl Provider {
    /// Start the provider's platform under `dir` (inside a fresh network sandbox where its
    /// machines need one).
    pub fn start(self, dir: &Path) -> Box<dyn Platform> {
        match self {
            Provider::Local => Box::new(Local::start(dir)),
            Provider::Aws | Provider::Fargate => Box::new(Aws::start(self, dir)),
            Provider::Kubernetes => Box::new(Kube::start(dir)),
            Provider::DigitalOcean | Provider::Azure | Provider::Gcp => {
                Box::new(Rest::start(self, dir))
            }
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mutating_method(m: &str) -> bool {
    matches!(m, "POST" | "PUT" | "PATCH" | "DELETE")
}

// ----- local -----

/// The local provider: the platform is this machine. Its "mutating requests" are the node
/// processes it starts with exec (`--env CONFORMANCE_EXEC=1` turns the launcher's forks off)
/// through the Python interpreter (`CLUSTERCTL_PYTHON` is a gate script
/// that counts each start but `python -c` probes and, once armed, holds the starts after the
/// first K before Python runs); what it holds is the processes carrying its scope, the records
/// and the node files.
pub struct Local {
    gate_dir: PathBuf,
    wrapper: PathBuf,
}

impl Local {
    fn start(dir: &Path) -> Self {
        let gate_dir = dir.join("gate");
        std::fs::create_dir_all(&gate_dir).unwrap();
        let wrapper = dir.join("python-gate.sh");
        let script = format!(
            r#"#!/bin/sh
# The local provider's crash-point gate (tests/conformance/providers.rs).
# `python -c ...` reads (the interpreter's Dask version): not a node start, not counted.
if [ "$1" = "-c" ]; then exec '{py}' "$@"; fi
G='{g}'
n=$(flock "$G/lock" sh -c 'n=$(( $(cat "$1/count" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$1/count"; echo "$n $2" >> "$1/log"; echo "$n"' sh "$G" "$*")
if [ -f "$G/after" ] && [ "$n" -gt "$(cat "$G/after")" ]; then
  touch "$G/held.$n"
  while [ ! -f "$G/released" ]; do sleep 0.05; done
  rm -f "$G/held.$n"
  exit 75
fi
exec '{py}' "$@"
"#,
            g = gate_dir.display(),
            py = python().display()
        );
        std::fs::write(&wrapper, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        Local { gate_dir, wrapper }
    }
}

impl Local {
    fn clear_held(&self) {
        for e in std::fs::read_dir(&self.gate_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with("held.") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

impl Platform for Local {
    fn provider(&self) -> &'static str {
        "local"
    }

    fn cmd(&self, env: &Env) -> Command {
        let mut c = env.cmd();
        c.env("CLUSTERCTL_PYTHON", &self.wrapper);
        c
    }

    fn up_args(&self, name: &str, workers: u32) -> Vec<String> {
        let mut a = strings(&["up", "--provider", "local", "--name", name, "--workers"]);
        a.push(workers.to_string());
        // A variable the launcher's imports might have read makes the provider start every
        // node with exec (its documented fallback): each start then passes the gate. Forked
        // starts never run the interpreter again, so they could not be held one by one.
        a.extend(strings(&[
            "--timeout",
            "120s",
            "--env",
            "CONFORMANCE_EXEC=1",
        ]));
        a
    }

    fn locate_args(&self) -> Vec<String> {
        Vec::new()
    }

    fn holdings(&self, env: &Env) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for pid in env.processes() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            out.insert(format!("process {pid} {}", cmdline.trim()));
        }
        for r in env.records() {
            out.insert(format!("record {r}"));
        }
        if let Ok(entries) = std::fs::read_dir(env.state_dir().join("local")) {
            for e in entries.flatten() {
                out.insert(format!("node files {}", e.path().display()));
            }
        }
        out
    }

    fn shares_state(&self) -> bool {
        true
    }

    fn gc_finds_half_made(&self) -> bool {
        false
    }

    fn has_wait_phase(&self) -> bool {
        // Local nodes are ready within moments of their start.
        false
    }

    fn forget(&self, env: &Env) {
        // Another machine has no record; the processes are found by their scope and tags.
        let _ = std::fs::remove_dir_all(env.state_dir().join("clusters"));
    }

    fn requests(&self) -> Vec<(bool, String)> {
        std::fs::read_to_string(self.gate_dir.join("log"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                (
                    true,
                    format!("spawn python {}", l.split_once(' ').map_or("", |x| x.1)),
                )
            })
            .collect()
    }

    fn arm(&self, after: u64) {
        for f in ["count", "released", "after"] {
            let _ = std::fs::remove_file(self.gate_dir.join(f));
        }
        self.clear_held();
        std::fs::write(self.gate_dir.join("after"), after.to_string()).unwrap();
    }

    fn gate(&self) -> GateState {
        let count: u64 = std::fs::read_to_string(self.gate_dir.join("count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let after: u64 = std::fs::read_to_string(self.gate_dir.join("after"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u64::MAX);
        let held = std::fs::read_dir(&self.gate_dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("held."))
                    .count() as u64
            })
            .unwrap_or(0);
        GateState {
            admitted: count.min(after),
            in_flight: 0,
            held,
            log: Vec::new(),
        }
    }

    fn disarm(&self) {
        std::fs::write(self.gate_dir.join("released"), "").unwrap();
        let _ = std::fs::remove_file(self.gate_dir.join("after"));
        let started = std::time::Instant::now();
        while self.gate().held > 0 && started.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // What is still marked held was killed while held (a teardown signals its group).
        self.clear_held();
    }

    fn bad_inputs(&self) -> Vec<(Vec<String>, Vec<String>)> {
        vec![
            (
                strings(&["--region", "us-east-1"]),
                strings(&["`us-east-1`", "no regions"]),
            ),
            (
                strings(&["--python", "/nonexistent/python3"]),
                strings(&["/nonexistent/python3"]),
            ),
        ]
    }
}

// ----- aws, fargate (moto) -----

/// EC2 or Fargate against moto (`tests/aws/moto_server.py --record`): its requests and gate
/// by AWS action (Describe/List/Get are reads), what it holds from `/_sim/inventory`.
pub struct Aws {
    provider: Provider,
    moto: Moto,
    control: Control,
    record: PathBuf,
    subnet: String,
    ami: String,
    dir: PathBuf,
    agent: std::cell::RefCell<Option<BootAgent>>,
    _sandbox: Option<Sandbox>,
}

impl Aws {
    fn start(provider: Provider, dir: &Path) -> Self {
        // Fargate tasks get 10.x addresses: a sandbox (as fargate_e2e does).
        let sandbox = (provider == Provider::Fargate).then(Sandbox::enter);
        let record = dir.join("record");
        let moto = Moto::start_recorded(dir, &record);
        let (subnet, ami) = if provider == Provider::Fargate {
            let setup = moto.run_agent(Agent::Ecs, &["setup"]);
            (
                setup["subnet_ids"][0].as_str().unwrap().to_string(),
                String::new(),
            )
        } else {
            let setup = moto.agent(&["setup"]);
            (
                setup["subnet_ids"][0].as_str().unwrap().to_string(),
                setup["ami_id"].as_str().unwrap().to_string(),
            )
        };
        let control = Control {
            base: moto.url(),
            ca: None,
            token: None,
        };
        Aws {
            provider,
            moto,
            control,
            record,
            subnet,
            ami,
            dir: dir.to_path_buf(),
            agent: std::cell::RefCell::new(None),
            _sandbox: sandbox,
        }
    }
}

impl Platform for Aws {
    fn provider(&self) -> &'static str {
        match self.provider {
            Provider::Fargate => "fargate",
            _ => "aws",
        }
    }

    fn cmd(&self, env: &Env) -> Command {
        let mut c = env.cmd();
        c.envs(self.moto.env());
        c
    }

    fn up_args(&self, name: &str, workers: u32) -> Vec<String> {
        let mut a = strings(&["up", "--provider", self.provider(), "--name", name]);
        a.extend(["--workers".to_string(), workers.to_string()]);
        a.extend(strings(&["--private", "--timeout", "120s"]));
        if self.provider == Provider::Fargate {
            a.extend(strings(&["--worker-cpus", "1", "--worker-memory", "2GiB"]));
        } else {
            a.extend(["--subnet".to_string(), self.subnet.clone()]);
            a.extend(["--ami".to_string(), self.ami.clone()]);
        }
        a
    }

    fn locate_args(&self) -> Vec<String> {
        strings(&["--region", "us-east-1"])
    }

    fn holdings(&self, _env: &Env) -> BTreeSet<String> {
        let inv = self.control.call("GET", "/_sim/inventory", None);
        inv["held"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    fn requests(&self) -> Vec<(bool, String)> {
        std::fs::read_to_string(self.record.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            // clusterctl's own requests, not the test agents' (the ECS agent ships logs).
            .filter(|r| r["clusterctl"] != false)
            .map(|r| {
                (
                    r["mutating"] == true,
                    format!(
                        "{}:{}",
                        r["service"].as_str().unwrap_or("?"),
                        r["action"].as_str().unwrap_or("?")
                    ),
                )
            })
            .collect()
    }

    fn inject(&self, fault: Option<(Fault, f64)>) -> bool {
        match fault {
            Some((f, rate)) => {
                let kind = if f == Fault::Throttle {
                    "throttle"
                } else {
                    "server"
                };
                self.control.call(
                    "POST",
                    "/_sim/faults",
                    Some(&serde_json::json!({ "kind": kind, "rate": rate })),
                );
            }
            None => {
                self.control.call("DELETE", "/_sim/faults", None);
            }
        }
        true
    }

    fn faults_fired(&self) -> u64 {
        self.control.call("GET", "/_sim/faults", None)["fired"]
            .as_u64()
            .unwrap_or(0)
    }

    fn arm(&self, after: u64) {
        self.control.arm(after, None);
    }

    fn gate(&self) -> GateState {
        self.control.gate()
    }

    fn disarm(&self) {
        self.control.disarm();
    }

    fn boot_nodes(&self) {
        let mut agent = self.agent.borrow_mut();
        if agent.is_none() {
            let kind = match self.provider {
                Provider::Fargate => Agent::Ecs,
                _ => Agent::Ec2,
            };
            *agent = Some(BootAgent::start_agent(
                kind,
                &self.moto,
                &self.dir.join("agent"),
            ));
        }
    }

    fn bad_inputs(&self) -> Vec<(Vec<String>, Vec<String>)> {
        let mut v = vec![
            (
                strings(&["--allow-cidr", "1.2.3.4"]),
                strings(&["`1.2.3.4`", "prefix length"]),
            ),
            // A region that cannot exist: refused before the SDK sends anything to it.
            (
                strings(&["--region", "mars-1"]),
                strings(&["`mars-1`", "--region us-east-1"]),
            ),
        ];
        if self.provider == Provider::Fargate {
            v.push((strings(&["--worker-cpus", "3"]), strings(&["3"])));
        } else {
            v.push((strings(&["--ami", "not-an-ami"]), strings(&["not-an-ami"])));
        }
        v
    }
}

// ----- kubernetes -----

/// The Kubernetes API simulator: every object it holds but Events (which the real API
/// server expires by itself), its request log by HTTP method, its gate.
pub struct Kube {
    sim: k8s::Sim,
    control: Control,
    _sandbox: Sandbox,
}

impl Kube {
    fn start(dir: &Path) -> Self {
        let sandbox = Sandbox::enter();
        let sim = k8s::Sim::start(dir, &[]);
        let (token, ca) = sim.service_account();
        let ca_file = dir.join("k8s-ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let control = Control {
            base: sim.url.clone(),
            ca: Some(ca_file),
            token: Some(token),
        };
        Kube {
            sim,
            control,
            _sandbox: sandbox,
        }
    }
}

impl Platform for Kube {
    fn provider(&self) -> &'static str {
        "kubernetes"
    }

    fn cmd(&self, env: &Env) -> Command {
        let mut c = env.cmd();
        c.envs(self.sim.env());
        c
    }

    fn up_args(&self, name: &str, workers: u32) -> Vec<String> {
        let mut a = strings(&["up", "--provider", "kubernetes", "--name", name]);
        a.extend(["--workers".to_string(), workers.to_string()]);
        a.extend(strings(&[
            "--scheduler-cpus",
            "1",
            "--scheduler-memory",
            "1GiB",
            "--worker-cpus",
            "1",
            "--worker-memory",
            "1GiB",
            "--timeout",
            "120s",
        ]));
        a
    }

    fn locate_args(&self) -> Vec<String> {
        Vec::new()
    }

    fn holdings(&self, _env: &Env) -> BTreeSet<String> {
        let all = self.control.call("GET", "/_sim/objects", None);
        let mut out = BTreeSet::new();
        for (kind, objs) in all["objects"].as_object().unwrap() {
            if kind == "Event" {
                continue;
            }
            for o in objs.as_array().unwrap() {
                let m = &o["metadata"];
                out.insert(format!(
                    "{kind} {}/{}",
                    m["namespace"].as_str().unwrap_or(""),
                    m["name"].as_str().unwrap_or("")
                ));
            }
        }
        out
    }

    fn requests(&self) -> Vec<(bool, String)> {
        self.sim
            .requests()
            .iter()
            .filter(|r| !r["path"].as_str().unwrap_or("").starts_with("/_sim/"))
            .map(|r| {
                let m = r["method"].as_str().unwrap_or("");
                (
                    mutating_method(m),
                    format!("{m} {}", r["path"].as_str().unwrap_or("")),
                )
            })
            .collect()
    }

    fn inject(&self, fault: Option<(Fault, f64)>) -> bool {
        let api = match fault {
            Some((Fault::Throttle, rate)) => {
                serde_json::json!([{ "path": "^/api", "status": 429, "rate": rate }])
            }
            Some((Fault::Server, rate)) => {
                serde_json::json!([{ "path": "^/api", "status": 503, "rate": rate }])
            }
            None => serde_json::json!([]),
        };
        self.sim.faults(&serde_json::json!({ "api": api }));
        true
    }

    fn faults_fired(&self) -> u64 {
        self.sim.faults_state()["api"]
            .as_array()
            .map(|rules| rules.iter().filter_map(|r| r["hits"].as_u64()).sum())
            .unwrap_or(0)
    }

    fn arm(&self, after: u64) {
        self.control.arm(after, None);
    }

    fn gate(&self) -> GateState {
        self.control.gate()
    }

    fn disarm(&self) {
        self.control.disarm();
    }

    fn settle(&self) {
        // Pods are deleted with a grace period: wait until none is left terminating.
        crate::platform::until(Duration::from_secs(60), "pods gone", || {
            self.control.call("GET", "/_sim/objects", None)["objects"]["Pod"]
                .as_array()
                .is_none_or(|p| p.is_empty())
        });
    }

    fn errors(&self) -> String {
        self.sim.errors()
    }

    fn bad_inputs(&self) -> Vec<(Vec<String>, Vec<String>)> {
        vec![
            (strings(&["--namespace", "Bad_NS"]), strings(&["`Bad_NS`"])),
            (
                strings(&["--region", "us-east-1"]),
                strings(&["`us-east-1`"]),
            ),
        ]
    }
}

// ----- digitalocean, azure, gcp (simkit simulators) -----

const DO_TOKEN: &str = "dop_v1_simulated0123456789abcdef0123456789abcdef0123456789abcdef0123";
const AZ_SECRET: &str = "azsim-client-secret-0123456789";
const AZ_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AZ_CLIENT_ID: &str = "0f3e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
const AZ_SUBSCRIPTION: &str = "00000000-0000-4000-8000-00000000c1c7";
const GCP_PROJECT: &str = "clusterctl-sim";

/// A REST cloud simulator of `tests/simkit`: what it holds from its inventory (the lists of
/// billed or named resources), its request log, the simkit gate.
pub struct Rest {
    provider: Provider,
    sim: RestSim,
    control: Control,
    _sandbox: Sandbox,
}

impl Rest {
    fn start(provider: Provider, dir: &Path) -> Self {
        let sandbox = Sandbox::enter();
        let sim = match provider {
            Provider::DigitalOcean => {
                RestSim::start("tests/digitalocean/do_sim.py", dir, DO_TOKEN, &[])
            }
            Provider::Azure => RestSim::start("tests/azure/az_sim.py", dir, AZ_SECRET, &[]),
            _ => RestSim::start_with(
                "tests/gcp/gce_sim.py",
                dir,
                &[
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
                ],
            ),
        };
        let control = Control {
            base: sim.url.clone(),
            ca: Some(sim.ca_file.clone()),
            token: None,
        };
        Rest {
            provider,
            sim,
            control,
            _sandbox: sandbox,
        }
    }

    /// Requests that change nothing though they are POSTs (token endpoints, IAM reads, GCE's
    /// operation waits).
    fn ignored(&self) -> Option<&'static str> {
        match self.provider {
            Provider::Azure => Some("/oauth2/"),
            Provider::Gcp => Some("^/token$|:getIamPolicy$|:testIamPermissions$|/wait$"),
            _ => None,
        }
    }

    fn is_ignored(&self, path: &str) -> bool {
        match self.provider {
            Provider::Azure => path.contains("/oauth2/"),
            Provider::Gcp => {
                path == "/token"
                    || path.ends_with("/wait")
                    || path.ends_with(":getIamPolicy")
                    || path.ends_with(":testIamPermissions")
            }
            _ => false,
        }
    }

    fn held_keys(&self) -> &'static [&'static str] {
        match self.provider {
            Provider::DigitalOcean => &["droplets", "ssh_keys", "tags", "firewalls", "vpcs"],
            Provider::Azure => &[
                "resource_groups",
                "resources",
                "vms",
                "nics",
                "public_ips",
                "nsgs",
                "disks",
                "leftover_disks",
                "role_assignments",
            ],
            _ => &["instances", "firewalls", "service_accounts", "secrets"],
        }
    }
}

impl Platform for Rest {
    fn ttl_removes_everything(&self) -> bool {
        self.provider == Provider::Azure
    }

    fn provider(&self) -> &'static str {
        match self.provider {
            Provider::DigitalOcean => "digitalocean",
            Provider::Azure => "azure",
            _ => "gcp",
        }
    }

    fn cmd(&self, env: &Env) -> Command {
        let mut c = env.cmd();
        c.env("CLUSTERCTL_EXTRA_CA_FILE", &self.sim.ca_file);
        match self.provider {
            Provider::DigitalOcean => {
                c.env("DIGITALOCEAN_API_URL", &self.sim.url)
                    .env("DIGITALOCEAN_TOKEN", DO_TOKEN);
            }
            Provider::Azure => {
                c.env("AZURE_RESOURCE_MANAGER_ENDPOINT", &self.sim.url)
                    .env("AZURE_AUTHORITY_HOST", &self.sim.url)
                    .env("AZURE_TENANT_ID", AZ_TENANT)
                    .env("AZURE_CLIENT_ID", AZ_CLIENT_ID)
                    .env("AZURE_CLIENT_SECRET", AZ_SECRET)
                    .env("AZURE_SUBSCRIPTION_ID", AZ_SUBSCRIPTION);
            }
            _ => {
                c.env("CLUSTERCTL_GCP_ENDPOINT", &self.sim.url)
                    .env(
                        "GOOGLE_APPLICATION_CREDENTIALS",
                        self.sim.ready["credentials_file"].as_str().unwrap(),
                    )
                    .env("GOOGLE_CLOUD_PROJECT", GCP_PROJECT);
            }
        }
        c
    }

    fn up_args(&self, name: &str, workers: u32) -> Vec<String> {
        let mut a = strings(&["up", "--provider", self.provider(), "--name", name]);
        a.extend(["--workers".to_string(), workers.to_string()]);
        a.extend(match self.provider {
            Provider::DigitalOcean => strings(&["--region", "nyc3"]),
            Provider::Azure => strings(&["--location", "eastus"]),
            _ => strings(&["--zone", "us-central1-a"]),
        });
        a.extend(strings(&[
            "--allow-cidr",
            "10.0.0.0/32,203.0.113.7/32",
            "--timeout",
            "240s",
        ]));
        a
    }

    fn locate_args(&self) -> Vec<String> {
        match self.provider {
            Provider::Gcp => strings(&["--region", "us-central1-a", "--project", GCP_PROJECT]),
            _ => Vec::new(),
        }
    }

    fn holdings(&self, _env: &Env) -> BTreeSet<String> {
        let inv = self.sim.inventory();
        let mut out = BTreeSet::new();
        for key in self.held_keys() {
            identities(&inv, key, &mut out);
        }
        // (Azure's `principals` are left out: a VM's system-assigned identity goes with the VM,
        // which is listed; the simulator keeps the principal's record.)
        for n in inv["runtime_nodes"].as_array().unwrap() {
            if n["alive"] == true {
                out.insert(format!("running VM process {n}"));
            }
        }
        out
    }

    fn requests(&self) -> Vec<(bool, String)> {
        self.sim
            .requests()
            .iter()
            .map(|r| {
                let m = r["method"].as_str().unwrap_or("");
                let path = r["path"].as_str().unwrap_or("");
                let op = r["operation"].as_str().unwrap_or(path);
                (
                    mutating_method(m) && !self.is_ignored(path),
                    format!("{m} {op}"),
                )
            })
            .collect()
    }

    fn inject(&self, fault: Option<(Fault, f64)>) -> bool {
        self.control.call("DELETE", "/_sim/faults", None);
        let Some((fault, rate)) = fault else {
            return true;
        };
        // The API paths only (not the simulated identity provider's token endpoints), with
        // each platform's throttling answer: DigitalOcean and ARM 429 with a wait, Compute
        // Engine 403 rateLimitExceeded (its documented throttling error).
        let (path, throttle) = match self.provider {
            Provider::DigitalOcean => ("^/v2/", 429),
            Provider::Azure => ("^/subscriptions/", 429),
            _ => ("^/(compute|v1)/", 403),
        };
        let status = if fault == Fault::Throttle {
            throttle
        } else {
            503
        };
        let mut rule = serde_json::json!({ "path": path, "status": status, "rate": rate });
        if status == 429 {
            rule["headers"] = serde_json::json!({ "Retry-After": "1" });
        }
        self.sim.fault(rule);
        true
    }

    fn faults_fired(&self) -> u64 {
        self.control.call("GET", "/_sim/faults", None)["rules"]
            .as_array()
            .map(|rules| rules.iter().filter_map(|r| r["hits"].as_u64()).sum())
            .unwrap_or(0)
    }

    fn arm(&self, after: u64) {
        self.control.arm(after, self.ignored());
    }

    fn gate(&self) -> GateState {
        self.control.gate()
    }

    fn disarm(&self) {
        self.control.disarm();
    }

    fn settle(&self) {
        // VM processes of deleted VMs stop in the background (SIGTERM, SIGKILL after 5 s); any
        // still running after 30 s is listed by `holdings` as a leak.
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_secs(30)
            && self.sim.inventory()["runtime_nodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["alive"] == true))
        {
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn errors(&self) -> String {
        self.sim.errors()
    }

    fn bad_inputs(&self) -> Vec<(Vec<String>, Vec<String>)> {
        match self.provider {
            Provider::DigitalOcean => vec![
                (strings(&["--region", "mars1"]), strings(&["`mars1`"])),
                (
                    strings(&["--worker-size", "s-999vcpu-1gb"]),
                    strings(&["s-999vcpu-1gb"]),
                ),
            ],
            Provider::Azure => vec![
                (
                    strings(&["--location", "marsnorth"]),
                    strings(&["`marsnorth`"]),
                ),
                (
                    strings(&["--resource-group", "bad name!"]),
                    strings(&["bad name!"]),
                ),
            ],
            _ => vec![
                (
                    strings(&["--zone", "us-central1"]),
                    strings(&["`us-central1`"]),
                ),
                (
                    strings(&["--zone", "mars-north9-z"]),
                    strings(&["mars-north9-z"]),
                ),
                (
                    strings(&["--project", "Bad_Project"]),
                    strings(&["Bad_Project"]),
                ),
            ],
        }
    }
}

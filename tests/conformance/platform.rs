//! What the suite needs of a provider's platform (`Platform`): its clusterctl command line, what
//! it holds (tagged or not), its mutating-request log and its crash-point gate; plus the
//! control client every platform's `/_sim/...` API is reached with.

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::{Child, Command, Output},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::common::{Env, run_python};

/// The gate's counters (tests/simkit/gate.py).
#[derive(Debug, Clone, Default)]
pub struct GateState {
    pub admitted: u64,
    pub in_flight: u64,
    pub held: u64,
    pub log: Vec<String>,
}

impl GateState {
    pub fn of(v: &Value) -> Self {
        let n = |k: &str| {
            v[k].as_u64()
                .unwrap_or_else(|| panic!("gate state {k}: {v}"))
        };
        GateState {
            admitted: n("admitted"),
            in_flight: n("in_flight"),
            held: n("held"),
            log: v["log"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|s| s.as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// An injected fault: the platform's throttling error, or its server error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    Server,
}

/// What the platform runs short of (`Platform::short_of`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortage {
    /// No capacity for anything `up` may launch there (every size, type and zone allowed).
    Capacity,
    /// An account or project quota below what the cluster needs.
    Quota,
}

/// How `up` is to meet a shortage and what it must say about it.
#[derive(Debug, Clone)]
pub struct Shortfall {
    /// Workers to ask for (more where the quota is counted in nodes or vCPUs).
    pub workers: u32,
    /// `error.kind` of the JSON error (see README, "Exit codes").
    pub kind: &'static str,
    /// Words the message must hold: the platform's code, the quota's name.
    pub needles: Vec<String>,
}

/// One provider's platform as the suite sees it, from outside clusterctl.
pub trait Platform {
    /// The provider's name (`--provider`).
    fn provider(&self) -> &'static str;
    /// clusterctl in `env` (its own state directory), pointed at this platform.
    fn cmd(&self, env: &Env) -> Command;
    /// `up NAME` with `workers` workers and every flag this platform needs.
    fn up_args(&self, name: &str, workers: u32) -> Vec<String>;
    /// What `down NAME` needs besides the name to find the cluster without a record.
    fn locate_args(&self) -> Vec<String>;
    /// Everything the platform holds that clusterctl could have made, tagged or not, one line
    /// each (kind and identity): compared with what it held before the test. `env` is the
    /// test's clusterctl installation (the local provider's scope).
    fn holdings(&self, env: &Env) -> BTreeSet<String>;
    /// Make `env` another machine: no record of any cluster (by default, no state at all).
    fn forget(&self, env: &Env) {
        let _ = std::fs::remove_dir_all(env.state_dir());
    }
    /// Line prefixes of `holdings` that the platform bills for (machines, tasks, pods, disks,
    /// addresses, and the processes of a VM that runs).
    fn billed_kinds(&self) -> &'static [&'static str];
    /// What the platform bills for now, a line each.
    fn billed(&self, env: &Env) -> BTreeSet<String> {
        let kinds = self.billed_kinds();
        self.holdings(env)
            .into_iter()
            .filter(|l| kinds.iter().any(|k| l.starts_with(k)))
            .collect()
    }
    /// Prefixes of `billed` lines the platform keeps billing after a node powered itself off
    /// at its TTL (a DigitalOcean droplet is billed until deleted, and no credential on the
    /// node may delete it): `gc` removes them.
    fn billed_after_ttl(&self) -> &'static [&'static str] {
        &[]
    }
    /// The API requests the platform answered so far: (mutating, label).
    fn requests(&self) -> Vec<(bool, String)>;
    /// Arm the crash-point gate: the first `after` mutating requests pass, the next are held.
    fn arm(&self, after: u64);
    fn gate(&self) -> GateState;
    /// Disarm: held requests are dropped unprocessed.
    fn disarm(&self);
    /// Wait for what the platform finishes in the background after a delete (VM processes
    /// stopping); the holdings are read after this.
    fn settle(&self) {}
    /// Start what boots the nodes `up` creates where the platform does not by itself (the
    /// EC2 and ECS boot agents next to moto); before a waiting `up`.
    fn boot_nodes(&self) {}
    /// Whether every clusterctl of this platform shares one state (the local provider: the
    /// state directory is its scope), so that "another machine" is the same installation.
    fn shares_state(&self) -> bool {
        false
    }
    /// Answer `rate` of clusterctl's API requests (mutating ones included) with `fault` in the
    /// platform's own format, unprocessed; `None` stops. Returns `false` where the platform has
    /// no API to fault (local).
    fn inject(&self, fault: Option<(Fault, f64)>) -> bool {
        let _ = fault;
        false
    }
    /// Put the platform in `shortage` for what clusterctl launches next, in its own terms (its
    /// refusals, operations or scheduler), or lift it (`None`). `None` back where the platform
    /// has neither capacity nor quotas (local).
    fn short_of(&self, shortage: Option<Shortage>) -> Option<Shortfall> {
        let _ = shortage;
        None
    }
    /// How many requests were answered with an injected fault since the last `inject`.
    fn faults_fired(&self) -> u64 {
        0
    }
    /// Whether a cluster with no node left (an `up` killed after its first mutating request)
    /// carries its expiry on the platform, so that `gc` finds it: not on `local` (its mutating
    /// requests are node starts; the directory `gc` finds comes before them).
    fn gc_finds_half_made(&self) -> bool {
        true
    }
    /// Whether a cluster removes everything of itself at its TTL (an Azure cluster's
    /// scheduler deletes its own resource group), so that
    /// `gc` may find nothing of it once it expired.
    fn ttl_removes_everything(&self) -> bool {
        false
    }
    /// Whether `up` waits long enough for its cluster (after its last mutating request) that a
    /// signal can be sent in that phase.
    fn has_wait_phase(&self) -> bool {
        true
    }
    /// Requests the platform refused as invalid against its specification, and its own
    /// errors: must be empty.
    fn errors(&self) -> String {
        String::new()
    }
    /// Extra `up` flags that make this platform's `up` fail validation only where the others
    /// do not (provider-specific bad inputs): (args, needles in stderr).
    fn bad_inputs(&self) -> Vec<(Vec<String>, Vec<String>)>;
}

/// `/_sim/...` of a simulator or of the moto recorder, through the test Python (the tests have
/// no HTTP client of their own): HTTPS with the simulator's CA, a bearer token where needed.
pub struct Control {
    pub base: String,
    pub ca: Option<PathBuf>,
    pub token: Option<String>,
}

impl Control {
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.call_as(method, path, body, "application/json")
    }

    /// `call` with another content type (a Kubernetes merge patch).
    pub fn call_as(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Value {
        let code = r#"
import json, ssl, sys, urllib.request
url, ca, token, method, body, ctype = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca) if ca else None
headers = {"Content-Type": ctype}
if token:
    headers["Authorization"] = "Bearer " + token
req = urllib.request.Request(url, data=body.encode() if body else None, method=method, headers=headers)
with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
    sys.stdout.write(r.read().decode() or "null")
"#;
        let ca = self
            .ca
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let body = body.map(Value::to_string).unwrap_or_default();
        let url = format!("{}{path}", self.base);
        let token = self.token.as_deref().unwrap_or("");
        let args = [url.as_str(), &ca, token, method, &body, content_type];
        let out = run_python(code, &args, &format!("{method} {path}"));
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{method} {path} answered no JSON ({e})"))
    }

    pub fn arm(&self, after: u64, ignore: Option<&str>) {
        let mut body = serde_json::json!({ "after": after });
        if let Some(i) = ignore {
            body["ignore"] = i.into();
        }
        self.call("POST", "/_sim/gate", Some(&body));
    }

    pub fn gate(&self) -> GateState {
        GateState::of(&self.call("GET", "/_sim/gate", None))
    }

    pub fn disarm(&self) {
        self.call("DELETE", "/_sim/gate", None);
    }
}

/// Identity lines for the elements of `inv[key]` (an array of objects or strings): `key id`.
pub fn identities(inv: &Value, key: &str, out: &mut BTreeSet<String>) {
    let Some(items) = inv[key].as_array() else {
        panic!("the inventory has no `{key}` list: update the conformance table");
    };
    for item in items {
        let id = ["id", "urn", "email", "name", "self_link", "selfLink"]
            .iter()
            .find_map(|k| item[*k].as_str().map(str::to_string))
            .or_else(|| item.as_str().map(str::to_string))
            .unwrap_or_else(|| item.to_string());
        out.insert(format!("{key} {id}"));
    }
}

/// Wait (up to `within`) until `done` holds.
pub fn until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running clusterctl whose output is collected.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("clusterctl starts")
}

/// Exit code and stderr of a finished run.
pub fn outcome(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `clusterctl ARGS --output json` with `p`'s environment in `env`.
pub fn run(p: &dyn Platform, env: &Env, args: &[String]) -> Output {
    p.cmd(env)
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("clusterctl runs")
}

/// `down NAME` from `env`, found on the platform (no record needed).
pub fn down(p: &dyn Platform, env: &Env, name: &str) -> Output {
    let mut args = vec!["down".to_string(), name.to_string()];
    args.extend(["--provider".to_string(), p.provider().to_string()]);
    args.extend(p.locate_args());
    run(p, env, &args)
}

/// `list --provider P` from `env`: the clusters it shows, by name (exit 0 asserted).
pub fn listed(p: &dyn Platform, env: &Env) -> std::collections::BTreeMap<String, Value> {
    let mut args = vec!["list".to_string(), "--provider".into(), p.provider().into()];
    args.extend(p.locate_args());
    let out = run(p, env, &args);
    let (code, err) = outcome(&out);
    assert_eq!(code, Some(0), "list: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["clusters"]
        .as_array()
        .unwrap_or_else(|| panic!("list gives clusters[]: {v}"))
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_string(),
                c.clone(),
            )
        })
        .collect()
}

/// What the platform holds beyond `baseline`, after it settled.
pub fn leaks(p: &dyn Platform, env: &Env, baseline: &BTreeSet<String>) -> Vec<String> {
    p.settle();
    p.holdings(env).difference(baseline).cloned().collect()
}

/// The mutating requests answered since the log had `from` entries.
pub fn mutating_since(p: &dyn Platform, from: usize) -> Vec<String> {
    p.requests()
        .into_iter()
        .skip(from)
        .filter(|(m, _)| *m)
        .map(|(_, l)| l)
        .collect()
}

//! The Kubernetes row of the conformance table: the API simulator (objects, requests, gate,
//! fault rules, its node).

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use serde_json::Value;

use super::{mutating_method, strings};
use crate::{
    common::{Env, k8s, sandbox::Sandbox},
    platform::{Control, Fault, GateState, Platform, Shortage, Shortfall},
};

/// The Kubernetes API simulator: every object it holds but Events (which the real API
/// server expires by itself), its request log by HTTP method, its gate.
pub struct Kube {
    sim: k8s::Sim,
    control: Control,
    _sandbox: Sandbox,
}

impl Kube {
    pub(super) fn start(dir: &Path) -> Self {
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
        a.extend(strings(k8s::SMALL_PODS));
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

    fn billed_kinds(&self) -> &'static [&'static str] {
        &["Pod "]
    }

    /// Pods that hold a node's resources: those not Succeeded or Failed (a pod past its
    /// `activeDeadlineSeconds` is Failed and its containers are stopped).
    fn billed(&self, _env: &Env) -> BTreeSet<String> {
        let all = self.control.call("GET", "/_sim/objects", None);
        all["objects"]["Pod"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .map(|p| {
                let m = &p["metadata"];
                format!(
                    "Pod {}/{}",
                    m["namespace"].as_str().unwrap_or(""),
                    m["name"].as_str().unwrap_or("")
                )
            })
            .collect()
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

    fn short_of(&self, shortage: Option<Shortage>) -> Option<Shortfall> {
        const NODE: &str = "/api/v1/nodes/sim-node-1/status";
        let node = self.control.call("GET", NODE, None);
        let capacity = node["status"]["capacity"].clone();
        let allocatable = |a: Value| {
            self.control.call_as(
                "PATCH",
                NODE,
                Some(&serde_json::json!({ "status": { "allocatable": a } })),
                "application/merge-patch+json",
            );
        };
        match shortage {
            None => {
                allocatable(capacity);
                self.sim.faults(&serde_json::json!({ "api": [] }));
                Some(Shortfall {
                    workers: 0,
                    kind: "",
                    needles: Vec::new(),
                })
            }
            // The node is full (as the kubelet reports it): nothing fits, and with no cluster
            // autoscaler asked to add a node the pods stay unschedulable.
            Some(Shortage::Capacity) => {
                allocatable(serde_json::json!({ "cpu": "500m" }));
                Some(Shortfall {
                    workers: 2,
                    kind: "capacity_unavailable",
                    needles: strings(&["no capacity", "unschedulable", "Insufficient cpu"]),
                })
            }
            // A ResourceQuota of the namespace refuses the pods (403 from its admission plugin).
            Some(Shortage::Quota) => {
                self.sim.faults(&serde_json::json!({ "api": [
                    { "method": "POST", "path": "/pods$", "status": 403, "quota": "compute-resources" }
                ] }));
                Some(Shortfall {
                    workers: 2,
                    kind: "quota_exceeded",
                    needles: strings(&["exceeded quota", "compute-resources"]),
                })
            }
        }
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

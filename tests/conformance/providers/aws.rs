//! The EC2 and Fargate rows of the conformance table: moto with its recorder (requests, gate,
//! faults, shortages, inventory) and the boot agents.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use serde_json::Value;

use super::{Provider, strings};
use crate::{
    common::{
        Env,
        moto::{Agent, BootAgent, Moto},
        sandbox::Sandbox,
    },
    platform::{Control, Fault, GateState, Platform, Shortage, Shortfall},
};

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
    pub(super) fn start(provider: Provider, dir: &Path) -> Self {
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

    fn billed_kinds(&self) -> &'static [&'static str] {
        &[
            "ec2 instance ",
            "ec2 volume ",
            "ec2 address ",
            "ecs task arn:",
        ]
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

    fn short_of(&self, shortage: Option<Shortage>) -> Option<Shortfall> {
        let Some(shortage) = shortage else {
            self.control.call("DELETE", "/_sim/shortage", None);
            return Some(Shortfall {
                workers: 0,
                kind: "",
                needles: Vec::new(),
            });
        };
        let (kind, word) = match shortage {
            Shortage::Capacity => ("capacity_unavailable", "capacity"),
            Shortage::Quota => ("quota_exceeded", "quota"),
        };
        self.control.call(
            "POST",
            "/_sim/shortage",
            Some(&serde_json::json!({ "kind": word })),
        );
        // EC2 answers RunInstances with its error; ECS answers RunTask with failures.
        let needles = match (self.provider, shortage) {
            (Provider::Fargate, Shortage::Capacity) => strings(&["Capacity is unavailable"]),
            (Provider::Fargate, Shortage::Quota) => {
                strings(&["quota exceeded", "limit on the number of vCPUs"])
            }
            (_, Shortage::Capacity) => strings(&["no capacity", "InsufficientInstanceCapacity"]),
            (_, Shortage::Quota) => strings(&["quota exceeded", "VcpuLimitExceeded"]),
        };
        Some(Shortfall {
            workers: 2,
            kind,
            needles,
        })
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

//! The DigitalOcean, Azure and GCE rows of the conformance table: the simkit simulators
//! (inventory, request log, gate, fault rules, capacity and quota controls).

use std::{collections::BTreeSet, path::Path, process::Command, time::Duration};

use super::{Provider, mutating_method, strings};
use crate::{
    common::{Env, gce, restsim::RestSim, sandbox::Sandbox},
    platform::{Control, Fault, GateState, Platform, Shortage, Shortfall, identities},
};

const DO_TOKEN: &str = "dop_v1_simulated0123456789abcdef0123456789abcdef0123456789abcdef0123";
const AZ_SECRET: &str = "azsim-client-secret-0123456789";
const AZ_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const AZ_CLIENT_ID: &str = "0f3e4c1a-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
const AZ_SUBSCRIPTION: &str = "00000000-0000-4000-8000-00000000c1c7";

/// A REST cloud simulator of `tests/simkit`: what it holds from its inventory (the lists of
/// billed or named resources), its request log, the simkit gate.
pub struct Rest {
    provider: Provider,
    sim: RestSim,
    control: Control,
    _sandbox: Sandbox,
}

impl Rest {
    pub(super) fn start(provider: Provider, dir: &Path) -> Self {
        let sandbox = Sandbox::enter();
        let sim = match provider {
            Provider::DigitalOcean => {
                RestSim::start("tests/digitalocean/do_sim.py", dir, DO_TOKEN, &[])
            }
            Provider::Azure => RestSim::start("tests/azure/az_sim.py", dir, AZ_SECRET, &[]),
            _ => RestSim::start_with("tests/gcp/gce_sim.py", dir, gce::SIM_TIMINGS),
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

    fn billed_kinds(&self) -> &'static [&'static str] {
        match self.provider {
            Provider::DigitalOcean => &["droplets ", "running VM process "],
            Provider::Azure => &[
                "vms ",
                "disks ",
                "leftover_disks ",
                "public_ips ",
                "running VM process ",
            ],
            _ => &["instances ", "running VM process "],
        }
    }

    fn billed_after_ttl(&self) -> &'static [&'static str] {
        match self.provider {
            Provider::DigitalOcean => &["droplets "],
            _ => &[],
        }
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
                    .env("GOOGLE_CLOUD_PROJECT", gce::PROJECT);
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
            Provider::Gcp => strings(&["--region", "us-central1-a", "--project", gce::PROJECT]),
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

    fn short_of(&self, shortage: Option<Shortage>) -> Option<Shortfall> {
        use serde_json::json;
        let lifted = Shortfall {
            workers: 0,
            kind: "",
            needles: Vec::new(),
        };
        let capacity = |needles: &[&str]| Shortfall {
            workers: 2,
            kind: "capacity_unavailable",
            needles: strings(needles),
        };
        let quota = |workers: u32, needles: &[&str]| Shortfall {
            workers,
            kind: "quota_exceeded",
            needles: strings(needles),
        };
        Some(match (self.provider, shortage) {
            (Provider::DigitalOcean, None) => {
                self.control.call("DELETE", "/_sim/faults", None);
                lifted
            }
            // Every droplet create refused with the API's 422 for a size it cannot place.
            (Provider::DigitalOcean, Some(Shortage::Capacity)) => {
                self.sim.fault(json!({
                    "method": "POST", "path": "^/v2/droplets$", "status": 422,
                    "body": { "id": "unprocessable_entity",
                              "message": "Size is not available in this region." }
                }));
                capacity(&["no capacity", "not available"])
            }
            // The scheduler is created, then the account's droplet limit is reached (another
            // client's droplets): the workers' create is refused.
            (Provider::DigitalOcean, Some(Shortage::Quota)) => {
                self.sim.fault(json!({
                    "method": "POST", "path": "^/v2/droplets$", "status": 422, "after": 1,
                    "body": { "id": "unprocessable_entity",
                              "message": "creating this/these droplet(s) will exceed your droplet limit" }
                }));
                quota(2, &["quota exceeded", "droplet limit"])
            }
            (Provider::Azure, None) => {
                self.control.call(
                    "POST",
                    "/_sim/capacity",
                    Some(&json!({ "no_capacity": [] })),
                );
                lifted
            }
            // Neither the scheduler's nor the workers' size can be allocated (the VM's
            // operation ends Failed, AllocationFailed).
            (Provider::Azure, Some(Shortage::Capacity)) => {
                self.control.call(
                    "POST",
                    "/_sim/capacity",
                    Some(&json!({ "no_capacity": ["Standard_D2s_v5", "Standard_D4s_v5"] })),
                );
                capacity(&["no capacity", "AllocationFailed"])
            }
            // 30 workers need more of the region's vCPU quota than the subscription has.
            (Provider::Azure, Some(Shortage::Quota)) => quota(30, &["quota", "eastus"]),
            (Provider::Gcp, None) => {
                self.control.call("DELETE", "/_sim/stockouts", None);
                self.control.call(
                    "POST",
                    "/_sim/quota",
                    Some(&json!({ "metric": "INSTANCES", "limit": 24 })),
                );
                lifted
            }
            // The only zone `up` may use is out of every machine type.
            (Provider::Gcp, Some(Shortage::Capacity)) => {
                self.control.call(
                    "POST",
                    "/_sim/stockouts",
                    Some(&json!({ "zone": "us-central1-a" })),
                );
                capacity(&["no capacity", "ZONE_RESOURCE_POOL_EXHAUSTED"])
            }
            // Room for two instances while the cluster needs three: the bulk insert's operation
            // ends QUOTA_EXCEEDED once the scheduler exists.
            (Provider::Gcp, Some(Shortage::Quota)) => {
                self.control.call(
                    "POST",
                    "/_sim/quota",
                    Some(&json!({ "metric": "INSTANCES", "limit": 2 })),
                );
                quota(2, &["quota", "INSTANCES", "us-central1"])
            }
            _ => unreachable!("not a simkit provider"),
        })
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

//! The Kubernetes API simulator (`tests/k8s/k8s_sim.py`) per test: HTTPS on a loopback port
//! with a kubeconfig of its own, a kubelet that runs pods as local Dask processes on `10.244.x`
//! addresses (inside the test's sandbox network namespace, see `common::sandbox`), and what it
//! holds, the requests it rejected and the faults it injects.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::python;

/// Small pods for `up` (the simulated node has 4 CPUs and 8 GiB) and a deadline.
pub const SMALL_PODS: &[&str] = &[
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
];

/// A running simulator; stopped (with every pod process) on drop.
pub struct Sim {
    child: Child,
    /// Its kubeconfig (context `sim`, namespace `default`).
    pub kubeconfig: PathBuf,
    /// Where it keeps pod files, logs and its error and request logs.
    pub workdir: PathBuf,
    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/k8s/k8s_sim.py")
}

impl Sim {
    /// Start a simulator whose node has `cpu` CPUs and `memory` (e.g. `8Gi`).
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        let workdir = dir.join("sim");
        std::fs::create_dir_all(&workdir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        let (child, ready) = super::spawn_ready(
            Command::new(python())
                .arg(script())
                .args([
                    "serve",
                    "--workdir",
                    workdir.to_str().unwrap(),
                    "--python",
                    python().to_str().unwrap(),
                    "--kubeconfig-out",
                    kubeconfig.to_str().unwrap(),
                ])
                .args(extra),
            &workdir.join("sim.log"),
        );
        Sim {
            child,
            kubeconfig,
            workdir,
            url: ready["url"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// Environment that points clusterctl (and kubectl) at this simulator.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![("KUBECONFIG", self.kubeconfig.display().to_string())]
    }

    fn tool(&self, args: &[&str]) -> Value {
        let out = Command::new(python())
            .arg(script())
            .args(args)
            .args(["--kubeconfig", self.kubeconfig.to_str().unwrap()])
            .output()
            .expect("k8s_sim.py runs");
        assert!(
            out.status.success(),
            "k8s_sim.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("k8s_sim.py {args:?} printed no JSON ({e})"))
    }

    /// The bearer token and the CA certificate (PEM) a pod's service account would get.
    pub fn service_account(&self) -> (String, String) {
        let token = std::fs::read_to_string(self.workdir.join("sim-token")).unwrap();
        let text = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let kc: Value = serde_saphyr::from_str(&text).unwrap();
        let ca = kc["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let out = Command::new("base64")
            .arg("-d")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(ca.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        (
            token.trim().to_string(),
            String::from_utf8(out.stdout).unwrap(),
        )
    }

    /// Every object the simulator holds (optionally only those matching a label selector),
    /// grouped by kind.
    pub fn objects(&self, selector: Option<&str>) -> Value {
        match selector {
            Some(s) => self.tool(&["inspect", "--selector", s]),
            None => self.tool(&["inspect"]),
        }
    }

    /// Replace the fault rules (see tests/k8s/README.md).
    pub fn faults(&self, rules: &Value) -> Value {
        self.tool(&["faults", "--set", &rules.to_string()])
    }

    /// The fault rules with their remaining counts and hits.
    pub fn faults_state(&self) -> Value {
        self.tool(&["faults"])
    }

    /// Requests the simulator rejected as invalid, and its own errors: must be empty.
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.workdir.join("sim-errors.jsonl")).unwrap_or_default()
    }

    /// The request log, one JSON object per line.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.workdir.join("sim-requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        super::stop(&mut self.child, Duration::from_secs(15));
    }
}

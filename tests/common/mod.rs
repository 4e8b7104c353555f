//! Shared helpers of the integration tests: an isolated clusterctl (own state and cache
//! directories), the test Python with Dask, and the check that nothing is left behind.

#![allow(dead_code)]

pub mod gce;
pub mod k8s;
pub mod moto;
pub mod restsim;
pub mod sandbox;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

/// The Python interpreter with Dask that the tests use, from `CLUSTERCTL_TEST_PYTHON`.
pub fn python() -> PathBuf {
    let p = std::env::var_os("CLUSTERCTL_TEST_PYTHON").map(PathBuf::from).expect(
        "CLUSTERCTL_TEST_PYTHON must point at a Python with dask[distributed]; run the tests with `bash tests/run.sh`",
    );
    assert!(
        p.exists(),
        "CLUSTERCTL_TEST_PYTHON={} does not exist",
        p.display()
    );
    p
}

/// Run a Python snippet of a test (`python -c CODE ARGS...`), failing the test with its stderr
/// and `what` when it fails; its stdout. The tests' HTTP calls to simulators go this way, so that
/// the tests need no HTTP client of their own.
pub fn run_python<S: AsRef<std::ffi::OsStr>>(code: &str, args: &[S], what: &str) -> Vec<u8> {
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// One isolated clusterctl installation: its own state directory (which scopes local clusters)
/// and cache directory.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// A `clusterctl` command in this environment, using the test Python for the local provider.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_clusterctl"));
        c.env("CLUSTERCTL_STATE_DIR", self.state_dir())
            .env("CLUSTERCTL_CACHE_DIR", self.dir.path().join("cache"))
            .env("CLUSTERCTL_PYTHON", python())
            .env_remove("CLUSTERCTL_CONFIG")
            .env_remove("CLUSTERCTL_PROVIDER")
            .env_remove("CLUSTERCTL_OUTPUT")
            .env_remove("CLUSTERCTL_LOG")
            // Never reach a real AWS endpoint or the instance metadata service from tests.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_PROFILE")
            // Never reach a real Kubernetes cluster from tests: no kubeconfig unless a test
            // points KUBECONFIG at its simulator, and no in-cluster configuration.
            .env("KUBECONFIG", self.dir.path().join("no-kubeconfig"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("CLUSTERCTL_KUBE_CONTEXT")
            .env_remove("CLUSTERCTL_NAMESPACE")
            // Never reach DigitalOcean: no token unless a test gives its simulator's, an API URL
            // that goes nowhere, and no doctl configuration (the user config dir is our own).
            .env_remove("DIGITALOCEAN_TOKEN")
            .env_remove("DIGITALOCEAN_ACCESS_TOKEN")
            .env("DIGITALOCEAN_API_URL", "https://127.0.0.1:9")
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("CLUSTERCTL_EXTRA_CA_FILE")
            // Not inside the GitHub Actions job that may run these tests.
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_OUTPUT")
            .env_remove("GITHUB_STEP_SUMMARY")
            .current_dir(self.dir.path());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("clusterctl runs")
    }

    /// Run and parse stdout as JSON (`--output json` is added).
    pub fn json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.run(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let v = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            v,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Processes that carry this environment's scope: must be none after `down`.
    pub fn processes(&self) -> Vec<i32> {
        clusterctl_local::process::scan(&self.state_dir().display().to_string())
            .into_iter()
            .filter(|p| !p.zombie)
            .map(|p| p.pid)
            .collect()
    }

    /// Records on disk.
    pub fn records(&self) -> Vec<String> {
        let dir = self.state_dir().join("clusters");
        std::fs::read_dir(dir)
            .map(|e| {
                e.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Assert nothing of any cluster is left: no process, no record, no node files.
    pub fn assert_clean(&self) {
        assert_eq!(self.processes(), Vec::<i32>::new(), "processes left behind");
        assert_eq!(self.records(), Vec::<String>::new(), "records left behind");
        let local = self.state_dir().join("local");
        let left: Vec<_> = std::fs::read_dir(&local)
            .map(|e| e.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "node files left behind: {left:?}");
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // A failed test must not leak Dask processes into the rest of the run.
        for pid in self.processes() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Start a test double (a simulator, a boot agent) that prints one JSON line on stdout once it
/// is ready, with its stderr in `log`; wait up to a minute for that line and return it.
pub fn spawn_ready(cmd: &mut Command, log: &Path) -> (std::process::Child, Value) {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("the test double starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the test double prints its ready line within 60 s");
    let ready: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        panic!("ready line {line:?}: {e}; {}:\n{text}", log.display())
    });
    assert_eq!(ready["ready"], true, "{ready}");
    (child, ready)
}

/// Stop a helper process: SIGTERM (it stops what it started), SIGKILL after `grace`.
pub fn stop(child: &mut std::process::Child, grace: std::time::Duration) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let started = std::time::Instant::now();
    while started.elapsed() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Run `cmd` (a clusterctl command) and assert it succeeded; its standard output.
#[allow(dead_code)]
pub fn succeeds(mut cmd: Command) -> Vec<u8> {
    let out = cmd.output().expect("clusterctl runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The winner of a race of two `up`s: through its cluster's environment (`env`, a
/// `clusterctl env NAME` command of the winner's machine), a Dask client computes the sum of
/// the squares below `n`; then `down` (the winner's `clusterctl down NAME`) succeeds.
#[allow(dead_code)]
pub fn winner_computes_and_goes(mut env: Command, down: Command, n: u64) {
    env.args(["--output", "json"]);
    let cluster: Value = serde_json::from_slice(&succeeds(env)).unwrap();
    let r = client(&cluster["env"], &["compute", &n.to_string()]);
    assert_eq!(r["result"], (0..n).map(|x| x * x).sum::<u64>());
    succeeds(down);
}

/// Run the Dask client script with `env` (pairs from `clusterctl env --output json`).
pub fn client(env: &Value, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_check.py");
    let mut c = Command::new(python());
    c.arg(script).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("DASK_") {
            c.env_remove(k);
        }
    }
    for (k, v) in env.as_object().expect("env object") {
        c.env(k, v.as_str().expect("string value"));
    }
    let out = c.output().expect("python runs");
    assert!(
        out.status.success(),
        "client {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

/// One `clusterctl ... --output json` run: exit code, stdout's JSON, stderr.
pub type Outcome = (Option<i32>, Value, String);

/// Two `up`s of one cluster name started at once (`a` and `b`, each with its own state
/// directory): returns (winner, loser), each with the index (0 for `a`) of the command that
/// ran it, after checking that exactly one won and that the other lost as a second `up` of a
/// taken name must (exit 1 with the provider's `is taken on PROVIDER`, or exit 2 `already
/// exists` when it arrived after the winner's cluster was up, or exit 1 `busy` when both share
/// one state directory and the winner holds the name's lock), keeping no record.
pub fn race_two_ups(
    provider: &str,
    mut a: Command,
    mut b: Command,
) -> ((usize, Outcome), (usize, Outcome)) {
    let spawn = |c: &mut Command| {
        c.args(["--output", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (pa, pb) = (spawn(&mut a), spawn(&mut b));
    let outcome = |o: std::process::Output| -> Outcome {
        (
            o.status.code(),
            serde_json::from_slice(&o.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let mut both = [
        (0, outcome(pa.wait_with_output().unwrap())),
        (1, outcome(pb.wait_with_output().unwrap())),
    ];
    if both[0].1.0 != Some(0) {
        both.swap(0, 1);
    }
    let [won, lost] = both;
    assert_eq!(won.1.0, Some(0), "one `up` wins: {won:?} {lost:?}");
    let taken = format!("is taken on {provider}");
    // Where both share one state directory (the local provider), the loser may instead find
    // the name's lock held: `busy`, exit 1.
    assert!(
        (lost.1.0 == Some(1) && lost.1.2.contains(&taken))
            || (lost.1.0 == Some(2) && lost.1.2.contains("already exists"))
            || (lost.1.0 == Some(1) && lost.1.1["error"]["kind"] == "busy"),
        "the other loses without touching the winner: {lost:?}"
    );
    assert_eq!(
        lost.1.1["error"]["left_behind"],
        serde_json::json!([]),
        "{lost:?}"
    );
    (won, lost)
}

/// The checks of a `doctor --output json` result that failed.
pub fn failed_checks(doctor: &Value) -> Vec<Value> {
    doctor["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("not a doctor result: {doctor}"))
        .iter()
        .filter(|c| c["ok"] == false)
        .cloned()
        .collect()
}

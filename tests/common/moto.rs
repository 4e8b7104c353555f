//! A moto server (AWS emulator) per test, on a free loopback port, and the boot agents that make
//! moto's machines real: `tests/aws/ec2_agent.py` boots instances from their user-data,
//! `tests/aws/ecs_agent.py` boots Fargate tasks from their task definitions (inside the test's
//! sandbox network namespace, see `common::sandbox`). moto runs through
//! `tests/aws/moto_server.py`, so GetConsoleOutput shows what the booted instances wrote to
//! their console (the EC2 agent links each one into the server's console directory).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::python;

pub const REGION: &str = "us-east-1";

/// A running moto server; killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    /// Where GetConsoleOutput reads each instance's console (`<instance-id>`, linked by the
    /// EC2 agent).
    pub console_dir: PathBuf,
}

impl Moto {
    pub fn start(log_dir: &Path) -> Self {
        Self::start_with(log_dir, None)
    }

    /// As [`Moto::start`], with moto's requests recorded in `record/requests.jsonl` and the
    /// conformance suite's `/_sim/gate`, `/_sim/requests` and `/_sim/inventory` served
    /// (`tests/aws/recorder.py`).
    pub fn start_recorded(log_dir: &Path, record: &Path) -> Self {
        Self::start_with(log_dir, Some(record))
    }

    fn start_with(log_dir: &Path, record: Option<&Path>) -> Self {
        // The port is picked free, then released for moto to take: when another process takes
        // it first, moto exits at once, and the start is tried again on another port.
        let mut failures = Vec::new();
        for _ in 0..3 {
            match Self::try_start(log_dir, record) {
                Ok(moto) => return moto,
                Err(why) => failures.push(why),
            }
        }
        panic!("moto did not start: {failures:#?}");
    }

    fn try_start(log_dir: &Path, record: Option<&Path>) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log_path = log_dir.join("moto.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let console_dir = log_dir.join("consoles");
        let child = Command::new(python())
            .arg(aws_dir().join("moto_server.py"))
            .arg("--console-dir")
            .arg(&console_dir)
            .args(
                record
                    .map(|r| vec!["--record".into(), r.as_os_str().to_owned()])
                    .unwrap_or_default(),
            )
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            // AmazonECSTaskExecutionRolePolicy and the other AWS-managed policies.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("moto starts");
        let mut moto = Moto {
            child,
            port,
            console_dir,
        };
        let started = Instant::now();
        // Up when it answers HTTP itself: a bare connect can also reach another process that
        // took the port, or the connecting socket itself (a loopback self-connect).
        while !answers_http(port) {
            if let Ok(Some(status)) = moto.child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("moto on port {port} exited ({status}): {log}"));
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!("moto on port {port} did not answer within 30 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(moto)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment that points the AWS SDK (of clusterctl and of the agent) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Run an EC2 agent subcommand that prints JSON.
    pub fn agent(&self, args: &[&str]) -> Value {
        self.run_agent(Agent::Ec2, args)
    }

    /// Run a subcommand of `agent` that prints JSON.
    pub fn run_agent(&self, agent: Agent, args: &[&str]) -> Value {
        let out = Command::new(python())
            .arg(agent.script())
            .args(args)
            .args(["--endpoint", &self.url(), "--region", REGION])
            .envs(self.env())
            .output()
            .expect("agent runs");
        assert!(
            out.status.success(),
            "agent {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("agent {args:?} printed no JSON ({e})"))
    }

    /// What moto holds for `cluster`.
    pub fn inspect(&self, cluster: &str) -> Value {
        self.agent(&["inspect", "--cluster", cluster])
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an HTTP server answers on `port` (any status).
fn answers_http(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// Which boot agent.
#[derive(Debug, Clone, Copy)]
pub enum Agent {
    /// EC2 instances from their user-data.
    Ec2,
    /// ECS (Fargate) tasks from their task definitions.
    Ecs,
}

impl Agent {
    fn script(self) -> PathBuf {
        let name = match self {
            Agent::Ec2 => "ec2_agent.py",
            Agent::Ecs => "ecs_agent.py",
        };
        aws_dir().join(name)
    }
}

/// `tests/aws`: the agents and the moto wrapper.
fn aws_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws")
}

/// The boot agent, running in the background; stopped on drop.
pub struct BootAgent {
    child: Child,
    pub workdir: PathBuf,
}

impl BootAgent {
    pub fn start(moto: &Moto, workdir: &Path) -> Self {
        Self::start_agent(Agent::Ec2, moto, workdir)
    }

    pub fn start_agent(agent: Agent, moto: &Moto, workdir: &Path) -> Self {
        std::fs::create_dir_all(workdir).unwrap();
        let log = std::fs::File::create(workdir.join("agent.log")).unwrap();
        let child = Command::new(python())
            .arg(agent.script())
            .args([
                "boot",
                "--python",
                python().to_str().unwrap(),
                "--workdir",
                workdir.to_str().unwrap(),
            ])
            .args(["--endpoint", &moto.url(), "--region", REGION])
            .args(match agent {
                Agent::Ec2 => vec!["--console-dir".into(), moto.console_dir.clone()],
                Agent::Ecs => vec![],
            })
            .envs(moto.env())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("agent starts");
        BootAgent {
            child,
            workdir: workdir.to_path_buf(),
        }
    }

    /// Interpretation errors the agent logged (a mismatch between bootstrap and agent).
    pub fn errors(&self) -> String {
        std::fs::read_to_string(self.workdir.join("agent-errors.jsonl")).unwrap_or_default()
    }

    /// Whether the agent is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for BootAgent {
    fn drop(&mut self) {
        super::stop(&mut self.child, Duration::from_secs(10));
    }
}

/// The AWS API calls a command made, by `service:Operation`, from the file it wrote as
/// `CLUSTERCTL_API_LOG` (one line per request attempt; the CLI's `phase:` marks left out).
#[allow(dead_code)]
pub fn api_calls(log: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut calls = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        let Some((_, what)) = line.split_once(' ') else {
            continue;
        };
        if !what.starts_with("phase:") {
            *calls.entry(what.to_string()).or_insert(0) += 1;
        }
    }
    calls
}

//! The launcher: one Python process per `up` (or `scale`) that imports Dask once and forks the
//! cluster's nodes from it (`launcher.py` says how), so the nodes skip the import that makes a
//! local boot CPU-bound. Each node is still a separate Dask process in a process group of its
//! own, found by its tags and stopped by `down` like a node started with exec.
//!
//! The launcher lives as long as the CLI process that started it: it exits when its stdin (our
//! pipe) closes. Whatever goes wrong with it, the provider falls back to starting each node
//! with exec, which is slower but the same cluster.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use clusterctl_core::model::Role;
use serde::Deserialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::process::{SCOPE_ENV, TAGS_ENV, inherited_settings};

/// The launcher's program, run with `python -c`.
const SCRIPT: &str = include_str!("launcher.py");

/// Bytes reserved for a node's tags in the launcher's environment block: node tags longer than
/// this (many or long `--tag`s) are started with exec instead.
pub const TAG_SLOT: usize = 8192;

/// How long the launcher may take to import Dask (several seconds on a loaded machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one fork may take to be answered.
const FORK_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the launcher cannot start a node (the caller falls back to exec).
#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    /// The interpreter could not be started.
    #[error("could not start the launcher `{python}`: {source}")]
    Start {
        /// The interpreter.
        python: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The launcher said it cannot fork nodes here.
    #[error("the launcher cannot fork nodes: {0}")]
    Refused(String),
    /// The pipe to the launcher failed or it answered something else than the protocol.
    #[error("the launcher's pipe: {0}")]
    Protocol(String),
    /// No answer within the deadline.
    #[error("the launcher did not answer within {0:?}")]
    Timeout(Duration),
    /// The node's tags do not fit the slot.
    #[error("the node's tags take {0} bytes, more than the launcher's {TAG_SLOT}")]
    TagsTooLong(usize),
    /// The launcher could not fork this node.
    #[error("the launcher could not fork the node: {0}")]
    Fork(String),
}

#[derive(Deserialize)]
struct Reply {
    ready: Option<bool>,
    why: Option<String>,
    pid: Option<i32>,
    error: Option<String>,
}

/// A running launcher.
#[derive(Debug)]
pub struct Launcher {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    ready: bool,
    /// A request whose answer was not read (its caller was cancelled): the pipe is out of step.
    pending: bool,
}

/// What one node needs from the launcher.
#[derive(Debug)]
pub struct ForkRequest<'a> {
    /// `scheduler` or `worker`.
    pub role: Role,
    /// The arguments after `dask scheduler` or `dask worker`.
    pub args: &'a [String],
    /// Environment on top of the launcher's.
    pub env: &'a BTreeMap<String, String>,
    /// The node's log (stdout and stderr, appended).
    pub log: &'a Path,
    /// The node's tags as JSON.
    pub tags: &'a str,
}

impl Launcher {
    /// Start a launcher with `python`, scoped to `scope`, carrying `tags` (the cluster's, no
    /// node) in its own environment, its own output in `log`. It imports Dask in the
    /// background; [`Launcher::fork`] waits for that.
    pub fn spawn(
        python: &Path,
        scope: &str,
        tags: &BTreeMap<String, String>,
        log: &Path,
        python_path: Option<&Path>,
    ) -> Result<Self, LauncherError> {
        let start = |source| LauncherError::Start {
            python: python.to_path_buf(),
            source,
        };
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(start)?;
        let own = serde_json::to_string(tags).expect("tags serialize");
        if own.len() > TAG_SLOT {
            return Err(LauncherError::TagsTooLong(own.len()));
        }
        let mut cmd = Command::new(python);
        cmd.args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            // Its own group, as the nodes': the terminal's Ctrl-C is not for it.
            .process_group(0);
        for k in inherited_settings() {
            cmd.env_remove(k);
        }
        // The slot the launcher rewrites with each node's tags before it forks the node.
        cmd.env(SCOPE_ENV, scope)
            .env(TAGS_ENV, format!("{own:<TAG_SLOT$}"));
        if let Some(p) = python_path {
            let mut path = std::ffi::OsString::from(p);
            if let Some(old) = std::env::var_os("PYTHONPATH").filter(|v| !v.is_empty()) {
                path.push(":");
                path.push(old);
            }
            cmd.env("PYTHONPATH", path);
        }
        let mut child = cmd.spawn().map_err(start)?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Ok(Launcher {
            child,
            stdin,
            stdout,
            ready: false,
            pending: false,
        })
    }

    async fn read(&mut self, within: Duration) -> Result<Reply, LauncherError> {
        let line = tokio::time::timeout(within, self.stdout.next_line())
            .await
            .map_err(|_| LauncherError::Timeout(within))?
            .map_err(|e| LauncherError::Protocol(e.to_string()))?
            .ok_or_else(|| LauncherError::Protocol("it exited".into()))?;
        serde_json::from_str(&line).map_err(|e| LauncherError::Protocol(format!("{e} in {line:?}")))
    }

    /// Fork one node; its pid (the leader of its own process group, tagged) on success.
    pub async fn fork(&mut self, request: &ForkRequest<'_>) -> Result<i32, LauncherError> {
        if self.pending {
            return Err(LauncherError::Protocol(
                "an earlier request was abandoned".into(),
            ));
        }
        if request.tags.len() > TAG_SLOT {
            return Err(LauncherError::TagsTooLong(request.tags.len()));
        }
        self.pending = true;
        if !self.ready {
            let reply = self.read(READY_TIMEOUT).await?;
            if reply.ready != Some(true) {
                return Err(LauncherError::Refused(
                    reply.why.unwrap_or_else(|| "no reason given".into()),
                ));
            }
            self.ready = true;
        }
        let mut line = serde_json::to_string(&serde_json::json!({
            "role": request.role.as_str(),
            "args": request.args,
            "env": request.env,
            "log": request.log,
            "tags": request.tags,
        }))
        .expect("request serializes");
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| LauncherError::Protocol(e.to_string()))?;
        self.stdin
            .flush()
            .await
            .map_err(|e| LauncherError::Protocol(e.to_string()))?;
        let reply = self.read(FORK_TIMEOUT).await?;
        self.pending = false;
        match (reply.pid, reply.error) {
            (Some(pid), _) if pid > 0 => Ok(pid),
            (_, Some(e)) => Err(LauncherError::Fork(e)),
            _ => Err(LauncherError::Protocol("an answer without a pid".into())),
        }
    }

    /// Stop the launcher (not its nodes, which are in groups of their own).
    pub fn kill(mut self) {
        let _ = self.child.start_kill();
    }
}

//! Local processes as cluster nodes: spawning a node detached in its own process group, finding
//! nodes again by the tags in their environment (`/proc/<pid>/environ`), and signalling them.
//!
//! The environment is this provider's equivalent of cloud tags: every node process carries
//! `CLUSTERCTL_SCOPE` (the state directory, so clusters of different state directories never
//! mix) and `CLUSTERCTL_TAGS` (the cluster's tags as JSON). Children inherit both, which lets
//! `cleanup` find stragglers of a node whose group leader is gone.

use std::{
    collections::BTreeMap,
    fs,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
};

use clusterctl_core::{Error, Result};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

/// Environment variable holding the scope (state directory) of a node.
pub const SCOPE_ENV: &str = "CLUSTERCTL_SCOPE";
/// Environment variable holding the node's tags as JSON.
pub const TAGS_ENV: &str = "CLUSTERCTL_TAGS";

/// A process that carries our tags.
#[derive(Debug, Clone)]
pub struct TaggedProcess {
    /// Its pid.
    pub pid: i32,
    /// Whether it leads its process group (a node, rather than a node's child).
    pub leader: bool,
    /// Whether it is a zombie (exited, not yet reaped).
    pub zombie: bool,
    /// Its tags.
    pub tags: BTreeMap<String, String>,
}

/// Start `argv` detached from the terminal in a new process group, with `env` on top of this
/// process's environment (minus inherited `DASK_*` and `CLUSTERCTL_*` settings, which belong to
/// other clusters or to the client), output appended to `log`.
pub fn spawn_node(argv: &[String], env: &BTreeMap<String, String>, log: &Path) -> Result<Child> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::io(format!("opening {}", log.display()), e))?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // A group of its own: the terminal's Ctrl-C does not reach it, and `down` can signal
        // the node with all its children at once.
        .process_group(0);
    for k in inherited_settings() {
        cmd.env_remove(k);
    }
    cmd.envs(env);
    cmd.spawn().map_err(|e| Error::Runtime {
        message: format!("could not start `{}`: {e}", argv[0]),
        hint: Some("check `--python` or the Dask runtime (see `clusterctl config show`)".into()),
    })
}

/// The variables of this process's environment that a node must not inherit: `DASK_*` and
/// `CLUSTERCTL_*` settings belong to other clusters or to the client.
pub fn inherited_settings() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("DASK_") || k.starts_with("CLUSTERCTL_"))
        .collect()
}

/// Every process of this user in `scope` that carries tags.
pub fn scan(scope: &str) -> Vec<TaggedProcess> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        // Processes of other users are unreadable: skipped.
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut in_scope = false;
        let mut tags = None;
        for var in environ.split(|b| *b == 0) {
            let Ok(var) = std::str::from_utf8(var) else {
                continue;
            };
            if let Some(v) = var.strip_prefix("CLUSTERCTL_SCOPE=") {
                in_scope = v == scope;
            } else if let Some(v) = var.strip_prefix("CLUSTERCTL_TAGS=") {
                tags = serde_json::from_str::<BTreeMap<String, String>>(v).ok();
            }
        }
        let (true, Some(tags)) = (in_scope, tags) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may contain anything.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (Some(state), Some(pgrp)) = (
            fields.first(),
            fields.get(2).and_then(|p| p.parse::<i32>().ok()),
        ) else {
            continue;
        };
        found.push(TaggedProcess {
            pid,
            leader: pgrp == pid,
            zombie: *state == "Z" || *state == "X",
            tags,
        });
    }
    found
}

/// Send `signal` to the process group led by `pid`. A group that is already gone is fine.
pub fn signal_group(pid: i32, signal: Signal) -> Result<()> {
    match killpg(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::io(
            format!("sending {signal} to process group {pid}"),
            e.into(),
        )),
    }
}

/// Send `signal` to one process. A process that is already gone is fine.
pub fn signal_process(pid: i32, signal: Signal) -> Result<()> {
    match nix::sys::signal::kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::io(
            format!("sending {signal} to process {pid}"),
            e.into(),
        )),
    }
}

/// A free TCP port on 127.0.0.1 (the OS picks it; it is released before the node binds it).
pub fn free_port() -> Result<u16> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::io("choosing a free port on 127.0.0.1", e))
}

/// The last `n` lines of a file (empty when it does not exist).
pub fn tail(path: &Path, n: usize) -> Vec<String> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    clusterctl_core::provider::last_lines(&text, n)
}

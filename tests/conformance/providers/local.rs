//! The local provider's row of the conformance table: this machine as the platform, a gate on
//! the Python processes it starts.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use super::strings;
use crate::{
    common::{Env, python},
    platform::{GateState, Platform},
};

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
    pub(super) fn start(dir: &Path) -> Self {
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

    fn billed_kinds(&self) -> &'static [&'static str] {
        &["process "]
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

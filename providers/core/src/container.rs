//! The boot intent rendered for container platforms (Fargate tasks, Kubernetes pods): one
//! container command that writes the intent's files from environment variables, arms a hard TTL
//! backstop, and execs Dask.
//!
//! Containers get no user-data, so files travel as environment variables named
//! `CLUSTERCTL_FILE_<NAME>`. Files holding a private key are *secret*: the provider stores them in
//! the platform's secret store (SSM Parameter Store, a Kubernetes Secret) and injects them by
//! reference, so they never appear in a task definition or pod spec. The entry script removes
//! the variables before Dask starts, so Dask's environment holds no key either.
//!
//! The entry script is a fixed sequence of lines (test agents interpret it line by line):
//!
//! ```text
//! set -eu
//! umask 077
//! mkdir -p /tmp/clusterctl
//! printf '%s' "$CLUSTERCTL_FILE_CA_PEM" >/tmp/clusterctl/ca.pem
//! chmod 0644 /tmp/clusterctl/ca.pem
//! ...
//! unset CLUSTERCTL_FILE_CA_PEM ...
//! left=$((CLUSTERCTL_EXPIRES - $(date +%s)))
//! [ "$left" -gt 0 ] || exit 0
//! exec timeout -k 30 "$((left + 60))" "$@"
//! ```
//!
//! The scheduler's TTL preload closes the cluster at its expiry; `timeout` is the backstop that
//! ends the container a minute later even if Dask hangs, so the task or pod stops (and stops
//! billing) without clusterctl.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    bootstrap::BootIntent,
    error::{Error, Result},
};

/// `$0` of the entry script, as it shows in process listings.
pub const ENTRY_NAME: &str = "clusterctl-node";
/// Seconds the backstop waits after the expiry before it stops Dask (the preload goes first).
pub const TTL_GRACE_SECONDS: u64 = 60;
/// Seconds between the backstop's SIGTERM and its SIGKILL.
pub const KILL_AFTER_SECONDS: u64 = 30;

/// A node as a container: command, plain environment, and secret environment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerBoot {
    /// The container command (the image's entrypoint stays): `sh -c SCRIPT clusterctl-node ARGV...`.
    pub command: Vec<String>,
    /// Environment set in the task or pod spec: the intent's env and the non-secret files.
    pub env: BTreeMap<String, String>,
    /// Environment the platform injects from its secret store: variable → file contents.
    pub secret_env: BTreeMap<String, SecretFile>,
}

/// One secret file of a [`ContainerBoot`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFile {
    /// The file's name (e.g. `scheduler-key.pem`), for naming the secret.
    pub file_name: String,
    /// The contents.
    pub contents: String,
}

impl std::fmt::Debug for ContainerBoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secret contents are private keys: never print them.
        f.debug_struct("ContainerBoot")
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("secret_env", &self.secret_env.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretFile {{ file_name: {:?}, .. }}", self.file_name)
    }
}

/// The environment variable that carries a file (`ca.pem` → `CLUSTERCTL_FILE_CA_PEM`).
pub fn file_variable(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let mut v = String::from("CLUSTERCTL_FILE_");
    v.extend(base.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    v
}

/// Render `intent` for a container whose files live under `files_root`.
pub fn render_container(intent: &BootIntent, files_root: &str) -> Result<ContainerBoot> {
    let safe_path = |p: &str| {
        !p.is_empty()
            && p.starts_with('/')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    };
    if !safe_path(files_root) {
        return Err(Error::Runtime {
            message: format!("container files root `{files_root}` is not a plain absolute path"),
            hint: None,
        });
    }
    let mut env = intent.env.clone();
    let mut secret_env = BTreeMap::new();
    let mut lines = vec![
        "set -eu".to_string(),
        "umask 077".into(),
        format!("mkdir -p {files_root}"),
    ];
    let mut names = Vec::new();
    for f in &intent.files {
        let parent_ok = f
            .path
            .strip_prefix(files_root)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.contains('/'));
        if !safe_path(&f.path) || !parent_ok || !f.mode.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::Runtime {
                message: format!(
                    "bootstrap file `{}` is not a plain file directly under `{files_root}`",
                    f.path
                ),
                hint: None,
            });
        }
        let var = file_variable(&f.path);
        if env.contains_key(&var) || secret_env.contains_key(&var) {
            return Err(Error::Runtime {
                message: format!("two bootstrap files map to the variable {var}"),
                hint: None,
            });
        }
        lines.push(format!("printf '%s' \"${var}\" >{}", f.path));
        lines.push(format!("chmod {} {}", f.mode, f.path));
        if f.is_secret() {
            secret_env.insert(
                var.clone(),
                SecretFile {
                    file_name: f.file_name().to_string(),
                    contents: f.contents.clone(),
                },
            );
        } else {
            env.insert(var.clone(), f.contents.clone());
        }
        names.push(var);
    }
    if !names.is_empty() {
        lines.push(format!("unset {}", names.join(" ")));
    }
    lines.push("left=$((CLUSTERCTL_EXPIRES - $(date +%s)))".into());
    lines.push("[ \"$left\" -gt 0 ] || exit 0".into());
    lines.push(format!(
        "exec timeout -k {KILL_AFTER_SECONDS} \"$((left + {TTL_GRACE_SECONDS}))\" \"$@\""
    ));
    let mut command = vec![
        "sh".to_string(),
        "-c".into(),
        lines.join("\n"),
        ENTRY_NAME.into(),
    ];
    command.extend(intent.argv.iter().cloned());
    Ok(ContainerBoot {
        command,
        env,
        secret_env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        bootstrap::{BootFile, BootLayout, scheduler_intent, tests::spec, worker_intent},
        tls::TlsBundle,
    };

    fn layout() -> BootLayout {
        BootLayout {
            dask: vec!["dask".into()],
            files_root: "/tmp/clusterctl".into(),
            bind_host: "0.0.0.0".into(),
            scheduler_port: 8786,
            dashboard_port: 8787,
            nanny: true,
        }
    }

    #[test]
    fn keys_are_secret_and_everything_else_is_plain() {
        let s = spec();
        let tls = TlsBundle::generate("t").unwrap();
        let c = render_container(
            &scheduler_intent(&s, &layout(), Some(&tls)),
            "/tmp/clusterctl",
        )
        .unwrap();
        assert_eq!(&c.command[..2], &["sh".to_string(), "-c".into()]);
        assert_eq!(c.command[3], ENTRY_NAME);
        assert_eq!(&c.command[4..6], &["dask".to_string(), "scheduler".into()]);
        let script = &c.command[2];
        assert!(script.starts_with("set -eu\numask 077\nmkdir -p /tmp/clusterctl\n"));
        assert!(script.contains(
            "printf '%s' \"$CLUSTERCTL_FILE_SCHEDULER_KEY_PEM\" >/tmp/clusterctl/scheduler-key.pem\nchmod 0600 /tmp/clusterctl/scheduler-key.pem"
        ));
        assert!(script.ends_with("exec timeout -k 30 \"$((left + 60))\" \"$@\""));
        let unset = script.lines().find(|l| l.starts_with("unset ")).unwrap();
        for var in c.env.keys().chain(c.secret_env.keys()) {
            if var.starts_with("CLUSTERCTL_FILE_") {
                assert!(
                    unset.split(' ').any(|v| v == var),
                    "{var} stays set: {unset}"
                );
            }
        }
        // The key is only in the secret environment.
        let secret = &c.secret_env["CLUSTERCTL_FILE_SCHEDULER_KEY_PEM"];
        assert_eq!(secret.file_name, "scheduler-key.pem");
        assert_eq!(secret.contents, tls.scheduler.key_pem);
        assert!(c.env.values().all(|v| !v.contains("PRIVATE KEY")));
        assert!(c.command.iter().all(|v| !v.contains("PRIVATE KEY")));
        assert_eq!(c.env["CLUSTERCTL_FILE_CA_PEM"], tls.ca_pem);
        assert!(c.env["CLUSTERCTL_FILE_CLUSTERCTL_TTL_PY"].contains("def dask_setup"));
        assert_eq!(c.env["CLUSTERCTL_EXPIRES"], "4600");
        assert!(!format!("{c:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn plain_worker_has_no_secret() {
        let s = spec();
        let w = worker_intent(&s, &layout(), None, "tcp://10.1.2.3:8786", None);
        let c = render_container(&w, "/tmp/clusterctl").unwrap();
        assert!(c.secret_env.is_empty());
        assert!(!c.command[2].contains("unset"));
        assert_eq!(c.command[4..7], ["dask", "worker", "tcp://10.1.2.3:8786"]);
    }

    #[test]
    fn refuses_files_outside_the_root() {
        let mut i = worker_intent(&spec(), &layout(), None, "tcp://10.1.2.3:8786", None);
        i.files.push(BootFile {
            path: "/etc/passwd".into(),
            contents: "x".into(),
            mode: "0644".into(),
        });
        assert!(render_container(&i, "/tmp/clusterctl").is_err());
        assert!(render_container(&i, "/tmp/$(x)").is_err());
    }
}

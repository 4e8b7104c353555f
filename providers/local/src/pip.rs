//! `--pip` on the local provider: the cluster's requirements are installed into its own
//! directory (`<state>/local/<cluster>/site-packages`, on the nodes' `PYTHONPATH`), so the shared
//! runtime stays as it was for every other cluster, and `down` removes them with the cluster.
//!
//! Dependencies are pinned to the versions the runtime already has (a constraints file from
//! `pip freeze`): what lands in the cluster's directory can add packages but never shadow the
//! runtime's Dask with another release.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use clusterctl_core::{Error, Result};
use tokio::process::Command;

use crate::runtime::Runtime;

/// The longest an install may take (downloads included).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// The cluster's package directory under its files.
pub fn site_dir(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("site-packages")
}

async fn run(cmd: &mut Command, what: &str) -> Result<std::process::Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(INSTALL_TIMEOUT, cmd.output())
        .await
        .map_err(|_| Error::Runtime {
            message: format!(
                "{what} did not finish within {}",
                humantime::format_duration(INSTALL_TIMEOUT)
            ),
            hint: Some("check the network to the package index, or install fewer packages".into()),
        })?
        .map_err(|e| Error::Runtime {
            message: format!("{what} could not start: {e}"),
            hint: None,
        })?;
    Ok(out)
}

fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Install `requirements` for the cluster whose directory is `cluster_dir`; returns the
/// directory to put on the nodes' `PYTHONPATH`.
pub async fn install(
    runtime: &Runtime,
    cluster_dir: &Path,
    requirements: &[String],
) -> Result<PathBuf> {
    let python = runtime.python().ok_or_else(|| Error::Runtime {
        message: format!(
            "cannot tell which Python runs the local runtime ({})",
            runtime.description
        ),
        hint: Some("pass `--python PATH` to name the interpreter".into()),
    })?;
    let freeze = run(
        Command::new(&python).args(["-m", "pip", "freeze", "--disable-pip-version-check"]),
        "pip freeze",
    )
    .await?;
    if !freeze.status.success() {
        return Err(Error::Runtime {
            message: format!(
                "the runtime's pip cannot list its packages: {}",
                tail(&freeze.stderr, 5)
            ),
            hint: Some(format!(
                "`{} -m pip` must work for `--pip`",
                python.display()
            )),
        });
    }
    // Pins only: direct references (`name @ url`) cannot be constraints.
    let pins: String = String::from_utf8_lossy(&freeze.stdout)
        .lines()
        .filter(|l| l.contains("==") && !l.contains(" @ "))
        .map(|l| format!("{l}\n"))
        .collect();
    let constraints = cluster_dir.join("pip-constraints.txt");
    clusterctl_core::tls::write_private(&constraints, pins.as_bytes())?;
    let target = site_dir(cluster_dir);
    clusterctl_core::tls::create_private_dir(&target)?;
    let out = run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
            ])
            .args(["--quiet", "--target"])
            .arg(&target)
            .arg("--constraint")
            .arg(&constraints)
            .args(requirements),
        "pip install",
    )
    .await?;
    if !out.status.success() {
        return Err(Error::Runtime {
            message: format!(
                "installing {} failed:\n{}",
                requirements.join(" "),
                tail(&out.stderr, 15)
            ),
            hint: Some(
                "check the requirements given with --pip/--pip-file; versions of packages the runtime already has are pinned to its own"
                    .into(),
            ),
        });
    }
    Ok(target)
}

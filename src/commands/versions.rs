//! The client's Dask against the cluster's: a Dask client whose `distributed` differs from the
//! cluster's gets version-mismatch warnings or subtle failures, so `up`, `env` and `run` look up
//! the `distributed` of the Python that will run the job and warn (or, with
//! `--strict-versions`, refuse) when the minor versions differ.

use std::{path::Path, process::Stdio, time::Duration};

use clusterctl_core::Error;

use crate::output::Printer;

/// How long asking the client Python for its version may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client Python: `--python` when given, else `python3` on PATH.
pub fn client_python(python: Option<&Path>) -> std::path::PathBuf {
    python.map_or_else(|| "python3".into(), Path::to_path_buf)
}

/// The `distributed` version of `python`, or `None` (no such Python, no `distributed`, or no
/// answer within the probe's deadline).
pub fn client_version(python: &Path) -> Option<String> {
    let mut child = std::process::Command::new(python)
        // The installed distribution's metadata: tens of milliseconds, where importing
        // `distributed` would cost a second of CPU on every `up`.
        .args([
            "-c",
            "from importlib.metadata import version; print(version('distributed'))",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let started = std::time::Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if started.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    let v = out.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// `2026.8.0` → `2026.8`: Dask's releases are calendar versions, and a minor difference is a
/// different release line.
fn minor(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((i, _)) => &version[..i],
        None => version,
    }
}

/// Whether two versions are of one release line (same minor).
pub fn same_release(a: &str, b: &str) -> bool {
    minor(a) == minor(b)
}

/// Compare the client's version with the cluster's: a warning with a hint when the minor
/// versions differ, or (strict) an error; nothing when the client's cannot be read.
pub fn check(
    printer: &Printer,
    python: &Path,
    client: Option<&str>,
    cluster: &str,
    strict: bool,
) -> Result<(), Error> {
    let Some(client) = client else {
        return Ok(());
    };
    if minor(client) == minor(cluster) {
        return Ok(());
    }
    let what = format!(
        "the client's distributed {client} ({}) differs from the cluster's {cluster}",
        python.display()
    );
    let hint = format!(
        "start the cluster with `--dask-version {client}`, or give the client `pip install \"distributed=={cluster}\"`"
    );
    if strict {
        return Err(Error::invalid(
            "--strict-versions",
            client.to_string(),
            what,
            Some(hint),
        ));
    }
    printer.info(&format!("clusterctl: warning: {what}"));
    printer.hint(&hint);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn minor_versions_of_calendar_releases() {
        assert_eq!(super::minor("2026.8.0"), "2026.8");
        assert_eq!(super::minor("2026.8.1rc1"), "2026.8");
        assert_eq!(super::minor("2026"), "2026");
    }
}

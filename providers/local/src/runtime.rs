//! The Dask runtime the local provider runs: an explicit `--python`, else `dask` on `PATH`, else
//! a managed virtual environment that clusterctl creates once in its cache directory with the
//! pinned release, and reuses.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use clusterctl_core::{Error, Result, lifecycle::Progress};
use tokio::process::Command;

/// How the runtime was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSource {
    /// A Python interpreter given by the user (`--python`, `local.python`, `CLUSTERCTL_PYTHON`).
    Python(PathBuf),
    /// `dask` on PATH, else the managed runtime.
    Auto,
}

/// A usable runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// How to invoke `dask`.
    pub dask: Vec<String>,
    /// Where it came from, for `--dry-run` and `config show`.
    pub description: String,
}

/// What [`resolve`] would do, without doing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A runtime that exists.
    Ready(Runtime),
    /// The managed runtime, still to be installed at this path.
    Install(PathBuf),
}

/// How long installing the managed runtime may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);

/// The managed runtime's directory for `version` under `cache`.
pub fn managed_dir(cache: &Path, version: &str) -> PathBuf {
    cache.join("runtimes").join(format!("dask-{version}"))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| {
                std::fs::metadata(p)
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
            })
    })
}

/// Decide which runtime to use, checking an explicit interpreter, without installing anything.
pub async fn inspect(source: &RuntimeSource, version: &str, cache: &Path) -> Result<Resolution> {
    match source {
        RuntimeSource::Python(python) => {
            let status = Command::new(python)
                .args(["-c", "import importlib.util as u, sys; sys.exit(0 if u.find_spec('distributed') else 3)"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            match status {
                Ok(s) if s.success() => Ok(Resolution::Ready(Runtime {
                    dask: vec![python.display().to_string(), "-m".into(), "dask".into()],
                    description: format!("{} (given)", python.display()),
                })),
                Ok(_) => Err(Error::invalid(
                    "Python interpreter",
                    python.display().to_string(),
                    "it cannot import `distributed`",
                    Some(format!(
                        "install Dask into it: `{} -m pip install 'dask[distributed,diagnostics]=={version}'`, or drop `--python` to let clusterctl manage a runtime",
                        python.display()
                    )),
                )),
                Err(e) => Err(Error::invalid(
                    "Python interpreter",
                    python.display().to_string(),
                    format!("it cannot be run ({e})"),
                    Some("pass the path of a Python 3 executable to `--python`".into()),
                )),
            }
        }
        RuntimeSource::Auto => {
            if let Some(dask) = find_on_path("dask") {
                return Ok(Resolution::Ready(Runtime {
                    description: format!("{} (found on PATH)", dask.display()),
                    dask: vec![dask.display().to_string()],
                }));
            }
            let dir = managed_dir(cache, version);
            if dir.join(".clusterctl-ready").exists() {
                return Ok(Resolution::Ready(managed(&dir, version)));
            }
            Ok(Resolution::Install(dir))
        }
    }
}

impl Runtime {
    /// The directory holding the runtime's executables (`python`, `dask`), for a client that
    /// should use the same Dask as the cluster.
    pub fn bin_dir(&self) -> Option<PathBuf> {
        Path::new(self.dask.first()?)
            .parent()
            .map(Path::to_path_buf)
    }
}

impl Runtime {
    /// The Python interpreter that runs this runtime's `dask`: the one given (`python -m dask`),
    /// else the one named by the `dask` script's `#!` line (a virtual environment's). `None`
    /// when it cannot be told (a wrapper script, a `#!` with arguments).
    pub fn python(&self) -> Option<PathBuf> {
        match self.dask.as_slice() {
            [python, m, dask] if m == "-m" && dask == "dask" => Some(PathBuf::from(python)),
            [script] => {
                let mut head = [0u8; 512];
                let n =
                    std::io::Read::read(&mut std::fs::File::open(script).ok()?, &mut head).ok()?;
                let first = std::str::from_utf8(&head[..n]).ok()?.lines().next()?;
                let interpreter = first.strip_prefix("#!")?.trim();
                let path = PathBuf::from(interpreter);
                let named_python = path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .is_some_and(|f| f.starts_with("python"));
                (named_python && !interpreter.contains(' ') && path.is_file()).then_some(path)
            }
            _ => None,
        }
    }
}

fn managed(dir: &Path, version: &str) -> Runtime {
    Runtime {
        dask: vec![dir.join("bin").join("dask").display().to_string()],
        description: format!("managed runtime dask {version} in {}", dir.display()),
    }
}

/// Resolve the runtime, installing the managed one if needed (once; concurrent installs wait
/// for each other).
pub async fn resolve(
    source: &RuntimeSource,
    version: &str,
    cache: &Path,
    progress: &dyn Progress,
) -> Result<Runtime> {
    let dir = match inspect(source, version, cache).await? {
        Resolution::Ready(r) => return Ok(r),
        Resolution::Install(dir) => dir,
    };
    let parent = dir.parent().expect("managed dir has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    let lock_path = parent.join(format!(
        ".{}.lock",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("dask")
    ));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|_| lock))
        .await
        .expect("lock task")
        .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
    if dir.join(".clusterctl-ready").exists() {
        return Ok(managed(&dir, version));
    }
    let python = find_on_path("python3").ok_or_else(|| Error::Runtime {
        message: "no Dask on PATH and no `python3` to create a runtime with".into(),
        hint: Some(
            "install Python 3.10 or newer, or pass `--python` pointing at one with Dask installed"
                .into(),
        ),
    })?;
    progress.note(&format!(
        "installing dask {version} into {} (once; later clusters reuse it)",
        dir.display()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let steps: [(PathBuf, Vec<String>); 2] = [
        (
            python,
            vec!["-m".into(), "venv".into(), dir.display().to_string()],
        ),
        (
            dir.join("bin").join("python"),
            vec![
                "-m".into(),
                "pip".into(),
                "install".into(),
                "--disable-pip-version-check".into(),
                "--quiet".into(),
                format!("dask[distributed,diagnostics]=={version}"),
            ],
        ),
    ];
    for (program, args) in steps {
        let run = Command::new(&program)
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(INSTALL_TIMEOUT, run).await;
        let failure = match out {
            Ok(Ok(o)) if o.status.success() => None,
            Ok(Ok(o)) => Some(
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some(format!(
                "did not finish within {}",
                humantime_secs(INSTALL_TIMEOUT)
            )),
        };
        if let Some(why) = failure {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::Runtime {
                message: format!("installing dask {version} failed: `{} {}`: {why}", program.display(), args.join(" ")),
                hint: Some("check network access to the package index, or pass `--python` pointing at an interpreter with Dask installed".into()),
            });
        }
    }
    std::fs::write(dir.join(".clusterctl-ready"), version)
        .map_err(|e| Error::io(format!("writing {}", dir.display()), e))?;
    drop(lock);
    Ok(managed(&dir, version))
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::Runtime;
    use std::path::PathBuf;

    fn runtime(dask: &[&str]) -> Runtime {
        Runtime {
            dask: dask.iter().map(|s| s.to_string()).collect(),
            description: String::new(),
        }
    }

    #[test]
    fn the_launchers_interpreter_is_the_one_that_runs_dask() {
        // Given: `python -m dask`.
        assert_eq!(
            runtime(&["/opt/py/bin/python3", "-m", "dask"]).python(),
            Some(PathBuf::from("/opt/py/bin/python3"))
        );
        let dir = std::env::temp_dir().join(format!("clusterctl-runtime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let python = dir.join("python3.11");
        std::fs::write(&python, "").unwrap();
        let script = |name: &str, first: &str| {
            let p = dir.join(name);
            std::fs::write(&p, format!("{first}\nimport sys\n")).unwrap();
            runtime(&[p.to_str().unwrap()]).python()
        };
        // A virtual environment's `dask` script names its interpreter.
        assert_eq!(
            script("dask", &format!("#!{}", python.display())),
            Some(python.clone())
        );
        // Not told: arguments on the `#!` line, an interpreter that is not Python or does
        // not exist, no `#!` at all.
        assert_eq!(script("a", "#!/usr/bin/env python3"), None);
        assert_eq!(script("b", "#!/bin/sh"), None);
        assert_eq!(script("c", &format!("#!{}/python9", dir.display())), None);
        assert_eq!(script("d", "import dask"), None);
        assert_eq!(runtime(&["/nonexistent/dask"]).python(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

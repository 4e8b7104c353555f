//! `--pip`, `--pip-file` and the config file's `pip:`: the Python requirements installed on
//! every node before Dask starts, checked here so that a node never fails on one at boot.
//!
//! The nodes of the cloud providers install them through the Dask image's entrypoint
//! (`EXTRA_PIP_PACKAGES`, split on spaces by the shell), so a requirement is one word of a
//! plain character set: no spaces, quotes or shell syntax, and no pip options. A path on this
//! machine only exists for the local provider.

use std::path::Path;

use clusterctl_core::{Error, Result, model::ProviderKind};

/// Most requirements in one cluster (the entrypoint's command line stays short).
const MAX_REQUIREMENTS: usize = 100;

/// The requirements of the file (`file`), then of `pip:` in the config file, then the flags,
/// without repeats, checked for `provider`.
pub fn resolve(
    provider: ProviderKind,
    from_config: &[String],
    from_flags: &[String],
    file: Option<&Path>,
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let push = |r: String, out: &mut Vec<String>| {
        if !out.contains(&r) {
            out.push(r);
        }
    };
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::invalid(
                "--pip-file",
                path.display().to_string(),
                format!("cannot be read: {e}"),
                Some("give a readable requirements file".into()),
            )
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split(" #").next().unwrap_or_default().trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let r = check(provider, line).map_err(|e| match e {
                Error::InvalidInput { reason, hint, .. } => Error::InvalidInput {
                    what: "--pip-file line",
                    value: format!("{}:{}: {line}", path.display(), n + 1),
                    reason,
                    hint,
                },
                other => other,
            })?;
            push(r, &mut out);
        }
    }
    for r in from_config.iter().chain(from_flags) {
        push(check(provider, r.trim())?, &mut out);
    }
    if out.len() > MAX_REQUIREMENTS {
        return Err(Error::invalid(
            "--pip",
            format!("{} requirements", out.len()),
            format!("at most {MAX_REQUIREMENTS} are installed at boot"),
            Some("build an image with them (`--image`) instead".into()),
        ));
    }
    Ok(out)
}

/// A path to a package on this machine (a wheel, a source tree), not a name or a URL.
fn is_local_path(r: &str) -> bool {
    r.starts_with('/')
        || r.starts_with("./")
        || r.starts_with("../")
        || r.starts_with('~')
        || (!r.contains("://") && (r.ends_with(".whl") || r.ends_with(".tar.gz")))
}

/// One requirement, checked.
fn check(provider: ProviderKind, r: &str) -> Result<String> {
    let refuse = |reason: &str, hint: &str| {
        Err(Error::invalid(
            "--pip requirement",
            r,
            reason.to_string(),
            Some(hint.to_string()),
        ))
    };
    if r.is_empty() {
        return refuse("it is empty", "give a package, e.g. `--pip xarray`");
    }
    if r.starts_with('-') {
        return refuse(
            "pip options are not taken here",
            "give package requirements only (e.g. `pandas>=2`); for another index, build an image with `--image`",
        );
    }
    if let Some(c) = r
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-[],<>=!~+:/@#%*".contains(*c)))
    {
        return refuse(
            &format!("it contains {c:?}, which the nodes' installer cannot take"),
            "write one requirement per --pip without spaces, quotes or environment markers, e.g. `--pip 'xarray>=2024.1'`",
        );
    }
    if is_local_path(r) {
        if provider != ProviderKind::Local {
            return refuse(
                &format!("a path on this machine does not exist on the {provider} nodes"),
                "publish the package to an index and give its name, or give an https:// URL of the wheel",
            );
        }
        if !Path::new(r).exists() {
            return refuse(
                "no such file or directory",
                "give the path of a wheel or a package directory",
            );
        }
        // pip resolves a relative path against its own working directory, not ours.
        let abs = std::fs::canonicalize(r)
            .map_err(|e| Error::invalid("--pip requirement", r, e.to_string(), None))?;
        return Ok(abs.display().to_string());
    }
    Ok(r.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(provider: ProviderKind, r: &str) -> Result<Vec<String>> {
        resolve(provider, &[], &[r.to_string()], None)
    }

    #[test]
    fn plain_requirements_pass_and_repeats_are_dropped() {
        let got = resolve(
            ProviderKind::Aws,
            &["zarr".into()],
            &[
                "xarray>=2024.1".into(),
                "zarr".into(),
                "s3fs[boto]==2024.*".into(),
            ],
            None,
        )
        .unwrap();
        assert_eq!(got, ["zarr", "xarray>=2024.1", "s3fs[boto]==2024.*"]);
    }

    #[test]
    fn what_the_nodes_cannot_take_is_refused_with_the_value() {
        for bad in [
            "",
            "-r other.txt",
            "--index-url=https://x",
            "pandas >=2",
            "a;rm -rf /",
            "x'y",
            "pkg; python_version>'3'",
        ] {
            let e = one(ProviderKind::Gcp, bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains(bad), "{e}");
            assert!(!e.hints().is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_local_wheel_is_for_the_local_provider_only() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("probe-1.0-py3-none-any.whl");
        std::fs::write(&wheel, b"x").unwrap();
        let w = wheel.display().to_string();
        assert_eq!(
            one(ProviderKind::Local, &w).unwrap(),
            std::slice::from_ref(&w)
        );
        let e = one(ProviderKind::Azure, &w).unwrap_err();
        assert!(
            e.to_string().contains("does not exist on the azure nodes"),
            "{e}"
        );
        let missing = dir.path().join("nope.whl").display().to_string();
        assert!(one(ProviderKind::Local, &missing).is_err());
    }

    #[test]
    fn a_requirements_file_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("requirements.txt");
        std::fs::write(&f, "# data\nxarray>=2024.1  # arrays\n\nzarr\n-e .\n").unwrap();
        let e = resolve(ProviderKind::Aws, &[], &[], Some(&f)).unwrap_err();
        assert!(e.to_string().contains("requirements.txt:5: -e ."), "{e}");
        std::fs::write(&f, "# data\nxarray>=2024.1  # arrays\n\nzarr\n").unwrap();
        let ok = resolve(ProviderKind::Aws, &[], &["dask-ml".into()], Some(&f)).unwrap();
        assert_eq!(ok, ["xarray>=2024.1", "zarr", "dask-ml"]);
    }
}

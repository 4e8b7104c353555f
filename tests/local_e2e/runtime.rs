//! The Dask runtime and the client's: a client on another Dask release, `--pip` packages that
//! are the cluster's own, and `doctor`'s checks of the runtime and the client.

use serde_json::{Value, json};

use crate::{
    common::{self, Env, client},
    env_of, nodes_and_how_they_started,
};

/// The client's Dask against the cluster's: a `python3` on PATH with another release gets a
/// warning with the fix from `env`, an error with `--strict-versions`, and `status` shows
/// both versions; the same release (the runtime's own Python) says nothing.
#[test]
fn a_client_on_another_dask_release_is_warned_or_refused() {
    let e = Env::new();
    let (code, _, err) = e.json(&["up", "--workers", "1", "--name", "vers"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.contains("differs from the cluster's"),
        "same release: {err}"
    );

    let bin = e.dir.path().join("old-client");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("python3");
    std::fs::write(&fake, "#!/bin/sh\necho 2025.1.0\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let with_old_client = |args: &[&str]| {
        let mut c = e.cmd();
        c.args(args).env("PATH", &path);
        c.output().unwrap()
    };
    let out = with_old_client(&["env", "vers"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the client's distributed 2025.1.0")
            && stderr.contains(clusterctl_core::DASK_VERSION)
            && stderr.contains("hint: start the cluster with `--dask-version 2025.1.0`"),
        "{stderr}"
    );
    let out = with_old_client(&["env", "vers", "--strict-versions"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "no exports when refused");
    let out = with_old_client(&["status", "vers", "--output", "json"]);
    let st: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["dask_versions"]["client"], "2025.1.0");
    assert_eq!(
        st["dask_versions"]["cluster"],
        clusterctl_core::DASK_VERSION
    );

    assert!(e.run(&["down", "vers"]).status.success());
    e.assert_clean();
}

/// A wheel of a package nobody has (`clusterctl_pip_probe`, `VALUE = 42`), built in `dir`.
fn probe_wheel(dir: &std::path::Path) -> String {
    let wheel = dir.join("clusterctl_pip_probe-1.0-py3-none-any.whl");
    let script = r#"
import sys, zipfile
files = {
    "clusterctl_pip_probe/__init__.py": "VALUE = 42\n",
    "clusterctl_pip_probe-1.0.dist-info/METADATA":
        "Metadata-Version: 2.1\nName: clusterctl-pip-probe\nVersion: 1.0\n",
    "clusterctl_pip_probe-1.0.dist-info/WHEEL":
        "Wheel-Version: 1.0\nGenerator: clusterctl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
files["clusterctl_pip_probe-1.0.dist-info/RECORD"] = "".join(f"{n},,\n" for n in [*files, "clusterctl_pip_probe-1.0.dist-info/RECORD"])
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for name, text in files.items():
        z.writestr(name, text)
"#;
    let out = std::process::Command::new(common::python())
        .args(["-c", script])
        .arg(&wheel)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wheel.display().to_string()
}

#[test]
fn pip_packages_are_the_clusters_own() {
    let e = Env::new();
    let wheel = probe_wheel(e.dir.path());

    // --dry-run says what would be installed, and where.
    let (code, plan, err) = e.json(&["up", "--name", "e2e-pip", "--pip", &wheel, "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(plan.to_string().contains("pip installs"), "{plan}");

    let (code, up, err) = e.json(&["up", "--workers", "2", "--name", "e2e-pip", "--pip", &wheel]);
    assert_eq!(code, Some(0), "up failed: {err}");
    assert_eq!(up["workers"]["joined"], 2);
    // Importable on the scheduler and on every worker, not in the client's (the test's) Python,
    // which is the runtime the nodes run: the shared runtime was not changed.
    let r = client(&env_of(&e, "e2e-pip"), &["import", "clusterctl_pip_probe"]);
    assert_eq!(r["workers"], json!([42, 42]), "{r}");
    assert_eq!(r["scheduler"], 42, "{r}");
    assert_eq!(r["client_has_it"], false, "{r}");
    let site = e.state_dir().join("local/e2e-pip/site-packages");
    assert!(site.join("clusterctl_pip_probe/__init__.py").is_file());
    // Still forked by the launcher (started with the packages on its path), not exec'd.
    assert!(
        nodes_and_how_they_started(&e)
            .values()
            .all(|forked| *forked),
        "--pip made the nodes fall back to exec"
    );

    // Another cluster of the same runtime, without --pip, does not see it.
    let (code, _, err) = e.json(&["up", "--workers", "1", "--name", "e2e-nopip"]);
    assert_eq!(code, Some(0), "up failed: {err}");
    let r = client(
        &env_of(&e, "e2e-nopip"),
        &["import", "clusterctl_pip_probe"],
    );
    assert_eq!(r["workers"], json!([null]), "{r}");

    // A path that does not exist is refused before anything exists (exit 2, naming it).
    let (code, v, err) = e.json(&[
        "up",
        "--workers",
        "1",
        "--name",
        "e2e-badpip",
        "--pip",
        "./no-such.whl",
    ]);
    assert_eq!(code, Some(2), "{v} {err}");
    assert!(err.contains("./no-such.whl"), "{err}");
    // A wheel pip cannot install fails `up` (exit 1) with pip's words, and leaves nothing.
    let broken = e.dir.path().join("broken-1.0-py3-none-any.whl");
    std::fs::write(&broken, b"not a zip").unwrap();
    let (code, v, err) = e.json(&[
        "up",
        "--workers",
        "1",
        "--name",
        "e2e-badpip",
        "--pip",
        broken.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{v} {err}");
    assert!(
        err.contains("installing") && err.contains("broken-1.0"),
        "{err}"
    );
    assert!(
        !e.state_dir().join("local/e2e-badpip").exists(),
        "the failed up left its directory"
    );

    for name in ["e2e-pip", "e2e-nopip"] {
        let (code, _, err) = e.json(&["down", name]);
        assert_eq!(code, Some(0), "{err}");
    }
    assert!(!site.exists(), "down left the cluster's packages");
    assert!(e.processes().is_empty());
}

#[test]
fn doctor_checks_the_runtime_and_the_client_and_creates_nothing() {
    let e = Env::new();
    let (code, v, err) = e.json(&["doctor", "--workers", "3"]);
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["provider"], "local");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "settings",
            "Dask runtime",
            "credentials, location, sizes, quotas and name",
            "client Python's Dask"
        ],
        "{v}"
    );
    // Text: one line per check with its mark.
    let out = e.run(&["doctor"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("✓ ")).count(),
        4,
        "{text}"
    );
    assert!(e.processes().is_empty() && e.records().is_empty());
    assert!(
        !e.state_dir().join("local").exists(),
        "doctor created a cluster directory"
    );

    // An interpreter without Dask: both the runtime and the client checks fail, with hints.
    let fake = e.dir.path().join("python-without-dask");
    std::fs::write(&fake, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, v, err) = e.json(&["doctor", "--python", fake.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{v} {err}");
    assert_eq!(v["ok"], false);
    let failed = common::failed_checks(&v);
    assert_eq!(failed.len(), 2, "{v}");
    for c in failed {
        assert!(
            c["detail"]
                .as_str()
                .unwrap()
                .contains("python-without-dask"),
            "{c}"
        );
        assert!(c["hint"].as_str().is_some_and(|h| !h.is_empty()), "{c}");
    }
    let out = e.run(&["doctor", "--python", fake.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("✗ ") && text.contains("  hint: "), "{text}");

    // Flags that cannot be read are a usage error, as for `up`.
    let (code, _, err) = e.json(&["doctor", "--workers", "-1"]);
    assert_eq!(code, Some(2), "{err}");
}

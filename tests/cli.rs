//! The CLI's contract without a running cluster: bad input exits 2 with a message naming the
//! value and a `hint:`, and creates nothing; `--dry-run` shows the plan and creates nothing.

mod common;

use common::Env;

fn refused(e: &Env, args: &[&str], needles: &[&str]) {
    let out = e.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: `{n}` not in: {stderr}");
    }
    e.assert_clean();
}

#[test]
fn bad_input_exits_2_and_creates_nothing() {
    let e = Env::new();
    refused(
        &e,
        &["up", "--workers", "-1"],
        &["`-1`", "cannot be negative", "hint:"],
    );
    refused(
        &e,
        &["up", "--provider", "nimbus"],
        &[
            "`nimbus`",
            "local, aws, fargate, azure, gcp, digitalocean, kubernetes",
        ],
    );
    refused(
        &e,
        &["up", "--name", "Not_Valid"],
        &["`Not_Valid`", "hint:"],
    );
    refused(&e, &["up", "--ttl", "soon"], &["`soon`", "hint:"]);
    refused(
        &e,
        &["up", "--env", "AWS_SECRET_ACCESS_KEY=x"],
        &["credential", "hint:"],
    );
    refused(
        &e,
        &["up", "--provider", "local", "--region", "us-east-1"],
        &["`us-east-1`", "no regions"],
    );
    refused(
        &e,
        &["up", "--provider", "gcp", "--zone", "us-central1"],
        &["`us-central1`", "not a Compute Engine zone", "hint:"],
    );
    // AWS: the scheduler's ports are never opened to the world by default; no AWS call is made.
    refused(
        &e,
        &["up", "--provider", "aws", "--region", "us-east-1"],
        &["--allow-cidr", "never opened to the world"],
    );
    refused(
        &e,
        &[
            "up",
            "--provider",
            "aws",
            "--region",
            "us-east-1",
            "--allow-cidr",
            "1.2.3.4",
        ],
        &["`1.2.3.4`", "prefix length"],
    );
    refused(
        &e,
        &["scale", "x", "--workers", "-3"],
        &["cannot be negative"],
    );
    refused(&e, &["frobnicate"], &["unrecognized subcommand"]);
}

#[test]
fn config_errors_name_file_and_line() {
    let e = Env::new();
    let path = e.dir.path().join("clusterctl.yaml");
    std::fs::write(&path, "provider: local\nworkers: 2\nwrokers: 3\n").unwrap();
    refused(&e, &["up"], &["clusterctl.yaml", "wrokers", "line 3"]);
    std::fs::write(&path, "provider: local\nworkers: [1, 2\n").unwrap();
    refused(&e, &["up"], &["clusterctl.yaml", "hint: fix the file"]);
    std::fs::remove_file(&path).unwrap();
    refused(
        &e,
        &["up", "--config", "missing.yaml"],
        &["missing.yaml", "cannot be read"],
    );
}

#[test]
fn config_show_reports_sources() {
    let e = Env::new();
    std::fs::write(
        e.dir.path().join("clusterctl.yaml"),
        "workers: 4\nttl: 30m\n",
    )
    .unwrap();
    let out = e
        .cmd()
        .args(["config", "show", "--idle-timeout", "5m", "--output", "json"])
        .env("CLUSTERCTL_TIMEOUT", "2m")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let source = |k: &str| {
        let s = v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .unwrap();
        (
            s["value"].as_str().unwrap().to_string(),
            s["source"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        source("workers"),
        ("4".into(), "file clusterctl.yaml".into())
    );
    assert_eq!(
        source("idle_timeout"),
        ("5m".into(), "flag --idle-timeout".into())
    );
    assert_eq!(
        source("timeout"),
        ("2m".into(), "env CLUSTERCTL_TIMEOUT".into())
    );
    assert_eq!(source("provider"), ("local".into(), "default".into()));
    e.assert_clean();
}

#[test]
fn dry_run_shows_bootstrap_and_creates_nothing() {
    let e = Env::new();
    let (code, v, err) = e.json(&[
        "up",
        "--dry-run",
        "--workers",
        "3",
        "--name",
        "dry",
        "--tls",
        "--env",
        "FOO=bar",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["dry_run"], true);
    let boots = v["plan"]["bootstraps"].as_array().unwrap();
    let scheduler = boots.iter().find(|b| b["role"] == "scheduler").unwrap()["text"]
        .as_str()
        .unwrap();
    assert!(
        scheduler.contains("scheduler --host 127.0.0.1") && scheduler.contains("--protocol tls"),
        "{scheduler}"
    );
    assert!(scheduler.contains("FOO=\"bar\""), "{scheduler}");
    assert!(
        scheduler.contains("not shown") && !scheduler.contains("PRIVATE KEY"),
        "{scheduler}"
    );
    e.assert_clean();
    assert!(!e.state_dir().join("clusters").exists());
}

#[test]
fn down_status_without_clusters() {
    let e = Env::new();
    let out = e.run(&["down"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME is needed"));
    let out = e.run(&["status", "nothing-here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cluster named `nothing-here`"));
    let (code, v, _) = e.json(&["list"]);
    assert_eq!(code, Some(0));
    assert_eq!(v["clusters"], serde_json::json!([]));
}

/// The provider options `config show` reports under `key`, with `file` as ./clusterctl.yaml.
fn shown_options(file: &str, key: &str, args: &[&str]) -> serde_json::Value {
    let e = Env::new();
    std::fs::write(e.dir.path().join("clusterctl.yaml"), file).unwrap();
    let out = e
        .cmd()
        .args(["config", "show"])
        .args(args)
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let shown = v["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("{v}"));
    serde_json::from_str(shown["value"].as_str().unwrap()).unwrap()
}

#[test]
fn fargate_options_come_from_flags_then_the_file_section() {
    let options = shown_options(
        "provider: fargate\nfargate:\n  log_retention_days: 30\n  ecs_cluster: shared\n  spot: true\n",
        "fargate",
        &["--ecs-cluster", "mine", "--subnet", "subnet-0a1"],
    );
    assert_eq!(options["ecs_cluster"], "mine", "the flag wins: {options}");
    assert_eq!(
        options["log_retention_days"], 30,
        "the file fills in: {options}"
    );
    assert_eq!(options["spot"], true);
    assert_eq!(options["subnets"], serde_json::json!(["subnet-0a1"]));
    assert_eq!(options["keep_logs"], false);
}

#[test]
fn kubernetes_options_come_from_flags_then_the_file_section() {
    let options = shown_options(
        "provider: kubernetes\nkubernetes:\n  context: ci\n  namespace: from-file\n  create_namespace: true\n",
        "kubernetes",
        &[
            "-n",
            "from-flag",
            "--service-type",
            "loadbalancer",
            "--allow-cidr",
            "203.0.113.7/32",
        ],
    );
    assert_eq!(
        options["namespace"], "from-flag",
        "the flag wins: {options}"
    );
    assert_eq!(options["context"], "ci", "the file fills in: {options}");
    assert_eq!(options["create_namespace"], true);
    assert_eq!(options["service_type"], "LoadBalancer");
    assert_eq!(
        options["allow_cidrs"],
        serde_json::json!(["203.0.113.7/32"])
    );
    let bad = Env::new()
        .cmd()
        .args([
            "config",
            "show",
            "--provider",
            "kubernetes",
            "--service-type",
            "Ingress",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Ingress"));
}

#[test]
fn digitalocean_options_come_from_flags_then_the_file_section() {
    let options = shown_options(
        "provider: digitalocean\nregion: ams3\ndigitalocean:\n  scheduler_size: s-2vcpu-4gb\n  worker_sizes: [g-4vcpu-16gb]\n  allow_cidrs: [198.51.100.0/24]\n  monitoring: true\n",
        "digitalocean",
        &[
            "--worker-size",
            "c-4,c-8",
            "--droplet-image",
            "debian-12-x64",
        ],
    );
    assert_eq!(options["region"], "ams3", "the common region: {options}");
    assert_eq!(
        options["worker_sizes"],
        serde_json::json!(["c-4", "c-8"]),
        "the flag wins: {options}"
    );
    assert_eq!(
        options["scheduler_size"], "s-2vcpu-4gb",
        "the file fills in"
    );
    assert_eq!(options["image"], "debian-12-x64");
    assert_eq!(
        options["allow_cidrs"],
        serde_json::json!(["198.51.100.0/24"])
    );
    assert_eq!(options["monitoring"], true);
    // The token is never a setting: no flag takes it, and the file section refuses it.
    let e = Env::new();
    std::fs::write(
        e.dir.path().join("clusterctl.yaml"),
        "digitalocean:\n  token: dop_v1_abc\n",
    )
    .unwrap();
    let out = e.cmd().args(["config", "show"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token"), "{err}");
    assert!(
        !err.contains("dop_v1_abc"),
        "the value is not echoed: {err}"
    );
}

#[test]
fn absurd_lifetimes_and_sizes_are_refused() {
    let e = Env::new();
    // A TTL of a century would silently remove the self-destruct guarantee.
    refused(&e, &["up", "--ttl", "100y"], &["`100y`", "7days", "hint:"]);
    refused(&e, &["up", "--idle-timeout", "30d"], &["`30d`", "7days"]);
    // These overflowed the clock (a panic, exit 101) before they were capped.
    refused(
        &e,
        &["up", "--timeout", "1000000y"],
        &["`1000000y`", "maximum of 1day", "hint:"],
    );
    refused(
        &e,
        &["down", "nothing", "--timeout", "1000000y"],
        &["`1000000y`", "1day"],
    );
    refused(
        &e,
        &["up", "--worker-memory", "100TiB"],
        &["`100TiB`", "24TiB"],
    );
    refused(
        &e,
        &["gc", "--yes", "--timeout", "1000000y"],
        &["`1000000y`", "1day"],
    );
    refused(&e, &["gc", "--provider", "nimbus"], &["`nimbus`"]);
    // Nothing expired on the local provider: listed as such, exit 0, JSON with both lists.
    let out = e.run(&["gc", "--provider", "local", "--output", "json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["expired"], serde_json::json!([]), "{v}");
    assert_eq!(v["removed"], serde_json::json!([]), "{v}");
}

#[test]
fn an_untrusted_state_directory_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    let state = e.state_dir();
    let cluster = state.join("clusters/someone-elses");
    std::fs::create_dir_all(&cluster).unwrap();
    for dir in [&state, &state.join("clusters")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // A cluster directory anyone may write to: its record could point `down` anywhere.
    std::fs::set_permissions(&cluster, std::fs::Permissions::from_mode(0o777)).unwrap();
    let shown = cluster.display().to_string();
    for args in [
        &["list"][..],
        &["down", "someone-elses"],
        &["status", "someone-elses"],
    ] {
        let out = e.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(&shown), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("hint: `chmod go-w {shown}`")),
            "{args:?}: {stderr}"
        );
    }
    std::fs::set_permissions(&cluster, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The state directory writable by its group.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o775)).unwrap();
    let out = e.run(&["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("writable by its group (mode 775)"),
        "{stderr}"
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Owned by another user (only root can arrange that).
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&cluster, Some(4242), None).unwrap();
        let out = e.run(&["list"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("owned by uid 4242"), "{stderr}");
        assert!(stderr.contains("hint: `chown -R"), "{stderr}");
    }
    let out = e.run(&["list"]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&cluster).unwrap();
    assert_eq!(e.run(&["list"]).status.code(), Some(0));
}

/// The completion scripts and man pages come from the same definitions as `--help`: the bash
/// script loads in bash and completes a subcommand and a flag; the man pages render with
/// `man -l` and list the real flags; an unknown page is bad input.
#[test]
fn completions_and_man_pages_work_in_their_tools() {
    let e = Env::new();
    let out = e.run(&["completions", "bash"]);
    assert!(out.status.success());
    let script = e.dir.path().join("clusterctl.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |words: &str, cword: usize, cur: &str, prev: &str| -> String {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
                 _clusterctl clusterctl {cur} {prev}; echo \"${{COMPREPLY[@]}}\"",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("clusterctl st", 1, "st", "clusterctl"), "status");
    assert_eq!(
        complete("clusterctl up --prov", 2, "--prov", "up"),
        "--provider"
    );
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let out = e.run(&["completions", shell]);
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
    }

    for (page, needles) in [
        (None, &["clusterctl", "SUBCOMMANDS", "up"][..]),
        (
            Some("up"),
            &["clusterctl-up", "--workers", "--allow-cidr", "--ttl"][..],
        ),
        (Some("down"), &["clusterctl-down", "--expired"][..]),
    ] {
        let mut args = vec!["man"];
        args.extend(page);
        let out = e.run(&args);
        assert!(out.status.success(), "{page:?}");
        let file = e.dir.path().join("page.1");
        std::fs::write(&file, &out.stdout).unwrap();
        let rendered = std::process::Command::new("man")
            .args(["-l", file.to_str().unwrap()])
            .env("MANPAGER", "cat")
            .env("COLUMNS", "100")
            .output()
            .expect("man runs");
        assert!(rendered.status.success(), "{page:?}");
        let text = String::from_utf8_lossy(&rendered.stdout).replace('\u{2010}', "-");
        for needle in needles {
            assert!(text.contains(needle), "{page:?}: no {needle} in\n{text}");
        }
    }
    refused(&e, &["man", "nope"], &["nope", "the man pages are"]);
}

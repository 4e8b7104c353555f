//! Tests of settings resolution: precedence, sources, and refusals that name the value and fix.

use super::*;
use crate::config::parse;
use std::path::Path;

fn file(text: &str) -> LoadedConfig {
    LoadedConfig {
        path: PathBuf::from("c.yaml"),
        config: parse(Path::new("c.yaml"), text).unwrap(),
    }
}

#[test]
fn flags_beat_file_beats_defaults() {
    let f = file("workers: 5\nttl: 30m\n");
    let args = UpArgs {
        workers: Some("3".into()),
        ..Default::default()
    };
    let s = resolve_up(&args, None, Some(&f)).unwrap();
    assert_eq!(s.spec.workers, 3);
    assert_eq!(s.spec.ttl, Duration::from_secs(1800));
    assert_eq!(s.spec.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    assert_eq!(s.provider, ProviderKind::Local);
    assert!(!s.spec.tls, "local defaults to plain TCP on loopback");
    let src = |k: &str| s.shown.iter().find(|x| x.key == k).unwrap().source.clone();
    assert_eq!(src("workers"), "flag --workers");
    assert_eq!(src("ttl"), "file c.yaml");
    assert_eq!(src("idle_timeout"), "default");
}

#[test]
fn refusals_name_value_and_fix() {
    let bad = |args: UpArgs, needle: &str| {
        let e = resolve_up(&args, None, None).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        let msg = format!("{e} {}", e.hints().join(" "));
        assert!(msg.contains(needle), "{msg}");
    };
    bad(
        UpArgs {
            workers: Some("-1".into()),
            ..Default::default()
        },
        "cannot be negative",
    );
    bad(
        UpArgs {
            workers: Some("many".into()),
            ..Default::default()
        },
        "`many`",
    );
    bad(
        UpArgs {
            provider: Some("nimbus".into()),
            ..Default::default()
        },
        "kubernetes",
    );
    bad(
        UpArgs {
            name: Some("Bad_Name".into()),
            ..Default::default()
        },
        "`Bad_Name`",
    );
    bad(
        UpArgs {
            ttl: Some("forever".into()),
            ..Default::default()
        },
        "`forever`",
    );
    bad(
        UpArgs {
            env: vec!["AWS_SECRET_ACCESS_KEY=x".into()],
            ..Default::default()
        },
        "credential",
    );
    bad(
        UpArgs {
            env: vec!["NOEQUALS".into()],
            ..Default::default()
        },
        "K=V",
    );
    bad(
        UpArgs {
            tag: vec!["clusterctl-cluster=x".into()],
            ..Default::default()
        },
        "reserved",
    );
    bad(
        UpArgs {
            worker_memory: Some("lots".into()),
            ..Default::default()
        },
        "memory size",
    );
    bad(
        UpArgs {
            workers: Some("2".into()),
            wait_workers: Some("3".into()),
            ..Default::default()
        },
        "more than the 2",
    );
}

#[test]
fn memory_sizes() {
    assert_eq!(parse_memory("m", "4GiB").unwrap(), 4096);
    assert_eq!(parse_memory("m", "512MiB").unwrap(), 512);
    assert_eq!(parse_memory("m", "8G").unwrap(), 8192);
    assert_eq!(parse_memory("m", "1024").unwrap(), 1024);
    assert!(parse_memory("m", "64MiB").is_err());
    assert!(parse_memory("m", "4 parsecs").is_err());
    assert!(parse_memory("m", "25TiB").is_err());
    assert!(
        parse_memory("m", "18446744073709551615T").is_err(),
        "no overflow"
    );
}

#[test]
fn tls_flags() {
    let on = resolve_up(
        &UpArgs {
            tls: true,
            ..Default::default()
        },
        None,
        None,
    )
    .unwrap();
    assert!(on.spec.tls);
    let f = file("tls: true\n");
    let off = resolve_up(
        &UpArgs {
            no_tls: true,
            ..Default::default()
        },
        None,
        Some(&f),
    )
    .unwrap();
    assert!(!off.spec.tls);
}

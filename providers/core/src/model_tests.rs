//! Tests of the cluster model: names, tags, summaries, states and their serialization.

use super::*;

fn tagged(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn claims_without_nodes_are_clusters_and_the_newest_expiry_counts() {
    use crate::tags::{CLUSTER, EXPIRES, LAUNCH};
    let node = Node {
        id: "i-1".into(),
        name: "scheduler".into(),
        role: Role::Scheduler,
        state: NodeState::Terminated,
        private_ip: None,
        public_ip: None,
        created_at: None,
        tags: tagged(&[(CLUSTER, "a"), (EXPIRES, "100"), (LAUNCH, "50-00000001")]),
    };
    let claims = vec![
        // `a` taken over by a later launch: its claim carries the newer expiry.
        tagged(&[(CLUSTER, "a"), (EXPIRES, "5000"), (LAUNCH, "4000-00000002")]),
        // `b`: only its claim is left.
        tagged(&[(CLUSTER, "b"), (EXPIRES, "200"), (LAUNCH, "100-00000003")]),
        // Not a cluster's.
        tagged(&[(EXPIRES, "1")]),
    ];
    let found = summarize_with_claims(vec![node], claims);
    assert_eq!(found.len(), 2);
    let (a, b) = (&found[0], &found[1]);
    assert_eq!((a.name.as_str(), a.nodes.len()), ("a", 1));
    assert_eq!(a.expires_at, Some(5000));
    assert_eq!(a.launch.as_deref(), Some("4000-00000002"));
    assert_eq!(
        (b.name.as_str(), b.nodes.len(), b.expires_at),
        ("b", 0, Some(200))
    );
    // `a` has its claim beside a terminated node; `b` only its claim: both hold something.
    assert!(a.claimed && a.holds_anything() && b.holds_anything());
    let only_terminated = summarize(vec![found[0].nodes[0].clone()]);
    assert!(
        !only_terminated[0].holds_anything(),
        "terminated nodes alone are gone"
    );
    assert!(!a.is_expired(4999), "before its newest expiry");
    assert!(b.is_expired(200));
    assert!(!b.is_expired(199));
    // A launch that started after the expiry on the tags, within the claim's grace (it took
    // over an expired leftover and has not re-tagged it yet) is not expired, whatever the
    // tags say; once the grace passed (that `up` died too), it is.
    let taken_over = ClusterSummary {
        launch: Some(format!("{}-00000004", 10_000)),
        ..b.clone()
    };
    assert!(!taken_over.is_expired(10_000 + CLAIM_GRACE.as_secs() - 1));
    assert!(taken_over.is_expired(10_000 + CLAIM_GRACE.as_secs()));
    // A short TTL: expired a minute after its own launch, within the grace.
    let short = ClusterSummary {
        expires_at: Some(160),
        launch: Some("100-00000005".into()),
        ..b.clone()
    };
    assert!(short.is_expired(161));
    // No expiry tag: never judged expired.
    let untagged = ClusterSummary {
        expires_at: None,
        ..b.clone()
    };
    assert!(!untagged.is_expired(u64::MAX));
}

#[test]
fn a_claim_is_held_while_its_cluster_lives_or_its_up_is_young() {
    let id = new_launch_id(1_000_000);
    assert_eq!(launch_started(&id), Some(1_000_000));
    assert_eq!(id.len(), "1000000-".len() + 8);
    assert_ne!(new_launch_id(1), new_launch_id(1), "random part");
    assert_eq!(launch_started("made-by-hand"), None);
    let grace = CLAIM_GRACE.as_secs();
    // Young: an `up` still creating its first node.
    assert!(claim_held(Some(&id), false, 1_000_000 + grace - 1));
    // Old and nothing alive: a leftover, free to take over.
    assert!(!claim_held(Some(&id), false, 1_000_000 + grace));
    assert!(!claim_held(None, false, 2_000_000));
    // Nodes alive: held, however old or untagged.
    assert!(claim_held(Some(&id), true, u64::MAX));
    assert!(claim_held(None, true, 0));
}

#[test]
fn names_ok() {
    for ok in ["a", "ci-run-42", "dask-0a1b2c3d", &"x".repeat(32)] {
        assert_eq!(ClusterName::new(ok).unwrap().as_str(), ok);
    }
    assert!(ClusterName::generate().as_str().starts_with("dask-"));
    ClusterName::new(ClusterName::generate().as_str()).unwrap();
}

#[test]
fn names_refused_with_reason() {
    for (bad, why) in [
        ("", "empty"),
        ("Caps", "lowercase"),
        ("9lives", "lowercase letter"),
        ("trailing-", "end with"),
        ("under_score", "'_'"),
        ("dot.ted", "'.'"),
        (&"x".repeat(33), "longer"),
    ] {
        let err = ClusterName::new(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
        assert!(err.contains(&format!("`{bad}`")), "{err}");
    }
}

#[test]
fn provider_parse_lists_known() {
    assert_eq!("AWS".parse::<ProviderKind>().unwrap(), ProviderKind::Aws);
    assert_eq!(
        "k8s".parse::<ProviderKind>().unwrap(),
        ProviderKind::Kubernetes
    );
    let err = "nimbus".parse::<ProviderKind>().unwrap_err();
    let hints = err.hints().join(" ");
    for k in ProviderKind::ALL {
        assert!(hints.contains(k.as_str()), "{hints}");
    }
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn limits_name_value_maximum_and_fix() {
    let week = Duration::from_secs(7 * 24 * 3600);
    check_duration_max("--ttl", "7d", week, MAX_TTL).unwrap();
    let e = check_duration_max("--ttl", "100y", week * 600, MAX_TTL).unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let text = format!("{e} {}", e.hints().join(" "));
    assert!(
        text.contains("`100y`") && text.contains("7days") && text.contains("--ttl 7days"),
        "{text}"
    );
    let e = check_duration_max("--timeout", "2d", week, MAX_TIMEOUT).unwrap_err();
    assert!(e.to_string().contains("maximum of 1day"), "{e}");
    check_memory_max("--worker-memory", "8G", 8192).unwrap();
    let e = check_memory_max("--worker-memory", "100T", 100 << 20).unwrap_err();
    assert!(e.to_string().contains("`100T`") && e.to_string().contains("24TiB"));
}

#[test]
fn wait_workers() {
    assert_eq!("all".parse::<WaitWorkers>().unwrap().resolve(5), 5);
    assert_eq!("3".parse::<WaitWorkers>().unwrap().resolve(5), 3);
    assert_eq!("9".parse::<WaitWorkers>().unwrap().resolve(5), 5);
    assert_eq!("50%".parse::<WaitWorkers>().unwrap().resolve(5), 3);
    assert_eq!("0%".parse::<WaitWorkers>().unwrap().resolve(5), 0);
    assert!("101%".parse::<WaitWorkers>().is_err());
    assert!("-1".parse::<WaitWorkers>().is_err());
}

//! The TTL: a Kubernetes cluster ends itself at its deadline.

use std::time::{Duration, Instant};

use crate::Kube;

#[test]
fn a_kubernetes_cluster_ends_itself_at_its_ttl() {
    let k = Kube::new();
    let mut args = k.up_args("k8ttl", "0");
    args.extend(["--ttl", "1m", "--idle-timeout", "0", "--no-tls"]);
    let (code, _, err) = k.json(&args);
    assert_eq!(code, Some(0), "{err}");
    let deadline = k.held("k8ttl", "Pod")[0]["spec"]["activeDeadlineSeconds"]
        .as_i64()
        .unwrap();
    assert!((30..=60 + 120).contains(&deadline), "{deadline}");
    // The scheduler's preload closes it at the expiry; its pod ends by itself.
    let started = Instant::now();
    loop {
        let pods = k.held("k8ttl", "Pod");
        if pods[0]["status"]["phase"] == "Succeeded" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the scheduler pod did not end at its TTL: {pods:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (code, st, _) = k.json(&["status", "k8ttl"]);
    assert_eq!(code, Some(1), "{st}");
    assert_eq!(st["state"], "gone");
    // Its ConfigMaps, Secret and Service stay until `down`, and `status` says so.
    assert_eq!(st["resources_left"], true, "{st}");
    let (code, _, err) = k.json(&["down", "k8ttl"]);
    assert_eq!(code, Some(0), "{err}");
    k.assert_nothing_left("k8ttl");
}

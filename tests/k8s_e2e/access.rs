//! Where the cluster runs and how it is reached: a namespace `up` creates, clusterctl's
//! port-forward and `down` without the record, a LoadBalancer limited to the allowed ranges,
//! and clusterctl run inside a pod (the service account, the Service dialled directly).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use serde_json::{Value, json};

use crate::{Kube, common::client};

#[test]
fn created_namespace_port_forward_and_down_without_record() {
    let k = Kube::new();
    let mut args = k.up_args("k8ns", "1");
    args.extend(["--namespace", "ci-ns", "--create-namespace", "--no-tls"]);
    let (code, up, err) = k.json(&args);
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", k.sim.errors());
    assert_eq!(up["location"], "sim/ci-ns");
    let ns = k.sim.objects(Some("clusterctl-created-namespace=k8ns"));
    assert_eq!(
        ns["objects"]["Namespace"][0]["metadata"]["name"], "ci-ns",
        "{ns}"
    );

    // Listed from the provider, across namespaces.
    let (code, list, _) = k.json(&["list", "--provider", "kubernetes", "-A"]);
    assert_eq!(code, Some(0));
    assert!(list["clusters"].to_string().contains("k8ns"), "{list}");

    // `dashboard` holds a port-forward through the API server open.
    let mut dash = k
        .cmd()
        .args(["dashboard", "k8ns", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut text = String::new();
    let mut reader = BufReader::new(dash.stdout.take().unwrap());
    // Pretty-printed JSON: the object ends with a `}` line of its own.
    while !text.ends_with("}\n") || text.lines().last() != Some("}") {
        assert!(
            reader.read_line(&mut text).unwrap() > 0,
            "dashboard printed {text}"
        );
    }
    let forward: Value = serde_json::from_str(&text).unwrap();
    let url = forward["dashboard_url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{forward}");
    let health = url.replace("/status", "/health");
    assert_eq!(client(&json!({}), &["http", &health])["body"], "ok");
    let through = json!({"DASK_SCHEDULER_ADDRESS": forward["scheduler_address"]});
    assert_eq!(client(&through, &["compute", "10"])["workers"], 1);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dash.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    assert!(dash.wait().unwrap().success());
    let requests = k.sim.requests();
    assert!(
        requests.iter().any(|r| r["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/pods/k8ns-scheduler/portforward"))),
        "the API server's port-forward was used"
    );

    // Someone else uses the namespace too (another job's objects). Without the record, `down`
    // finds the cluster by labels and removes it, but leaves the namespace and the other job.
    k.api(
        "POST",
        "/api/v1/namespaces/ci-ns/configmaps",
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "other-job"}, "data": {"a": "b"}})),
    );
    std::fs::remove_dir_all(k.env.state_dir().join("clusters")).unwrap();
    let down = [
        "down",
        "k8ns",
        "--provider",
        "kubernetes",
        "--namespace",
        "ci-ns",
    ];
    let (code, _, err) = k.json(&down);
    assert_eq!(code, Some(0), "{err}");
    assert!(k.held("k8ns", "Pod").is_empty(), "the cluster is gone");
    let ns = k.sim.objects(None);
    assert!(
        ns["objects"]["Namespace"].to_string().contains("ci-ns"),
        "a shared namespace stays: {ns}"
    );
    assert!(
        ns["objects"]["ConfigMap"].to_string().contains("other-job"),
        "the other tenant's objects stay: {ns}"
    );
    // Once it is empty, the last one out deletes the namespace clusterctl made.
    k.api(
        "DELETE",
        "/api/v1/namespaces/ci-ns/configmaps/other-job",
        None,
    );
    let (code, _, err) = k.json(&down);
    assert_eq!(code, Some(0), "{err}");
    let ns = k.sim.objects(None);
    assert!(
        !ns["objects"]["Namespace"].to_string().contains("ci-ns"),
        "the namespace clusterctl made is gone: {ns}"
    );
    k.assert_nothing_left("k8ns");
}

#[test]
fn a_load_balancer_is_limited_to_the_allowed_ranges_and_dialled_directly() {
    let k = Kube::new();
    let mut args = k.up_args("k8lb", "1");
    args.extend([
        "--service-type",
        "LoadBalancer",
        "--allow-cidr",
        "10.0.0.0/8",
    ]);
    let (code, up, err) = k.json(&args);
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", k.sim.errors());
    let address = up["scheduler_address"].as_str().unwrap();
    let services = k.held("k8lb", "Service");
    let svc = &services[0];
    assert_eq!(svc["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc["spec"]["loadBalancerSourceRanges"],
        json!(["10.0.0.0/8"])
    );
    let ingress = svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap();
    assert_eq!(
        address,
        format!("tls://{ingress}:8786"),
        "the load balancer's address"
    );
    assert!(
        !err.contains("clusterctl dashboard"),
        "no port-forward needed: {err}"
    );
    assert!(
        !k.sim.requests().iter().any(|r| r["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/portforward"))),
        "readiness went through the load balancer"
    );
    let (code, cenv, _) = k.json(&["env", "k8lb"]);
    assert_eq!(code, Some(0));
    assert_eq!(client(&cenv["env"], &["compute", "20"])["workers"], 1);
    let (code, _, err) = k.json(&["down", "k8lb"]);
    assert_eq!(code, Some(0), "{err}");
    k.assert_nothing_left("k8lb");
}

/// `clusterctl` as it runs in a pod: no kubeconfig, the service account's token, CA and
/// namespace at the standard paths (a private mount namespace puts them there), and
/// `KUBERNETES_SERVICE_HOST`/`PORT` pointing at the API server.
fn in_pod(k: &Kube, args: &[&str]) -> (Option<i32>, Value, String) {
    let (token, ca) = k.sim.service_account();
    let port = k.sim.url.rsplit(':').next().unwrap().to_string();
    let script = "set -e; d=/var/run/secrets/kubernetes.io; mkdir -p $d; \
        mount -t tmpfs tmpfs $d; mkdir $d/serviceaccount; \
        printf %s \"$SA_TOKEN\" >$d/serviceaccount/token; printf %s \"$SA_CA\" >$d/serviceaccount/ca.crt; \
        printf default >$d/serviceaccount/namespace; exec \"$@\"";
    let base = k.env.cmd();
    let mut c = Command::new("unshare");
    c.args(["--mount", "sh", "-c", script, "sh"])
        .arg(base.get_program())
        .args(args)
        .args(["--output", "json"])
        .current_dir(k.env.dir.path());
    for (key, value) in base.get_envs() {
        match value {
            Some(v) => c.env(key, v),
            None => c.env_remove(key),
        };
    }
    let out = c
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", port)
        .env("SA_TOKEN", token)
        .env("SA_CA", ca)
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn in_a_pod_it_uses_the_service_account_and_dials_the_service_directly() {
    let k = Kube::new();
    let mut args = k.up_args("k8pod", "1");
    args.push("--no-tls");
    let (code, up, err) = in_pod(&k, &args);
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", k.sim.errors());
    assert_eq!(up["location"], "in-cluster/default", "{up}");
    assert!(
        up["scheduler_address"]
            .as_str()
            .unwrap()
            .starts_with("tcp://10.96."),
        "{up}"
    );
    assert!(
        !err.contains("clusterctl dashboard"),
        "inside the cluster no tunnel is needed: {err}"
    );
    assert!(
        !k.sim.requests().iter().any(|r| r["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("/portforward"))),
        "readiness dialled the Service directly"
    );
    let (code, cenv, _) = k.json(&["env", "k8pod"]);
    assert_eq!(code, Some(0));
    assert_eq!(client(&cenv["env"], &["compute", "10"])["workers"], 1);
    let (code, _, err) = in_pod(&k, &["down", "k8pod"]);
    assert_eq!(code, Some(0), "{err}");
    k.assert_nothing_left("k8pod");
}

//! End-to-end tests of the `kubernetes` provider against the API simulator of `tests/k8s/`:
//! what the simulator holds after each command (labels, ownerReferences, probes, resources, the
//! TTL deadline, the mounted Secret, no key in any pod spec), a real cluster whose pods the
//! simulator's kubelet runs as Dask processes on pod IPs, reached by a real Dask client through
//! the printed address and through clusterctl's port-forward, `kubectl` reading what clusterctl
//! made, and nothing left after `down`.
//!
//! Pod and Service IPs are `10.x` addresses, so every test runs in its own network namespace
//! (`common::sandbox`) where those addresses are local and nothing else is reachable. Every
//! request the simulator accepts and every object it returns is validated against the
//! Kubernetes OpenAPI documents in `../shared/specs`; each test asserts it rejected nothing.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Env, client, k8s, k8s::Sim, sandbox::Sandbox};
use serde_json::{Value, json};

struct Kube {
    env: Env,
    sim: Sim,
    _sandbox: Sandbox,
}

impl Kube {
    fn new() -> Self {
        Self::with(&[])
    }

    fn with(sim_args: &[&str]) -> Self {
        let sandbox = Sandbox::enter();
        let env = Env::new();
        let sim = Sim::start(env.dir.path(), sim_args);
        Kube {
            env,
            sim,
            _sandbox: sandbox,
        }
    }

    fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        c.envs(self.sim.env());
        c
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let out = self
            .cmd()
            .args(args)
            .args(["--output", "json"])
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// The objects of `kind` the simulator holds with the cluster's label.
    fn held(&self, cluster: &str, kind: &str) -> Vec<Value> {
        let all = self
            .sim
            .objects(Some(&format!("clusterctl-cluster={cluster}")));
        all["objects"][kind].as_array().cloned().unwrap_or_default()
    }

    /// One request to the API server as a plain client (bearer token, the simulator's CA):
    /// another tenant's writes, made without clusterctl.
    fn api(&self, method: &str, path: &str, body: Option<Value>) {
        let (token, ca) = self.sim.service_account();
        let ca_file = self.env.dir.path().join("sim-ca.pem");
        std::fs::write(&ca_file, ca).unwrap();
        let code = r#"
import ssl, sys, urllib.request
url, ca, token, method, body = sys.argv[1:6]
req = urllib.request.Request(url, data=body.encode() or None, method=method,
    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca), timeout=30).read()
"#;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let out = Command::new(common::python())
            .args(["-c", code, &format!("{}{path}", self.sim.url)])
            .args([ca_file.to_str().unwrap(), &token, method, &body])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new(kubectl())
            .args(["--kubeconfig", self.sim.kubeconfig.to_str().unwrap()])
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Nothing labelled for `cluster` is left, and the simulator rejected nothing.
    fn assert_nothing_left(&self, cluster: &str) {
        self.assert_nothing_left_but(cluster, None);
    }

    /// As [`Kube::assert_nothing_left`], with simulator errors that mention `expected` allowed
    /// (a test that runs an image on purpose that no registry has).
    fn assert_nothing_left_but(&self, cluster: &str, expected: Option<&str>) {
        let all = self
            .sim
            .objects(Some(&format!("clusterctl-cluster={cluster}")));
        let left: Vec<String> = all["objects"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(kind, _)| kind.as_str() != "Event")
            .flat_map(|(kind, objs)| {
                objs.as_array()
                    .unwrap()
                    .iter()
                    .map(move |o| format!("{kind}/{}", o["metadata"]["name"]))
            })
            .collect();
        assert!(left.is_empty(), "left after down: {left:?}");
        let errors: Vec<String> = self
            .sim
            .errors()
            .lines()
            .filter(|l| expected.is_none_or(|e| !l.contains(e)))
            .map(str::to_string)
            .collect();
        assert!(
            errors.is_empty(),
            "the simulator rejected requests: {errors:?}"
        );
        self.env.assert_clean();
    }

    fn up_args<'a>(&self, name: &'a str, workers: &'a str) -> Vec<&'a str> {
        vec![
            "up",
            "--provider",
            "kubernetes",
            "--name",
            name,
            "--workers",
            workers,
        ]
        .into_iter()
        .chain(k8s::SMALL_PODS.iter().copied())
        .collect()
    }
}

fn kubectl() -> String {
    std::env::var("CLUSTERCTL_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

fn pod<'a>(pods: &'a [Value], name: &str) -> &'a Value {
    pods.iter()
        .find(|p| p["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("pod {name} in {pods:?}"))
}

#[test]
fn kubernetes_cluster_runs_computes_scales_and_leaves_nothing() {
    let k = Kube::new();
    // Throttling and an unavailable API server on the way: the client retries them.
    k.sim.faults(&json!({"api": [
        {"method": "POST", "path": "/api/v1/namespaces/default/pods$", "status": 429, "count": 2, "retry_after": 1},
        {"method": "GET", "path": "/api/v1/namespaces/default/services/", "status": 503, "count": 1},
    ]}));
    let (code, up, err) = k.json(&k.up_args("k8e", "2"));
    assert_eq!(
        code,
        Some(0),
        "up failed: {err}\nsim errors: {}",
        k.sim.errors()
    );
    assert_eq!(up["ready"], true);
    assert_eq!(up["provider"], "kubernetes");
    assert_eq!(up["location"], "sim/default");
    assert_eq!(up["workers"]["joined"], 2);
    let address = up["scheduler_address"].as_str().unwrap().to_string();
    assert!(
        address.starts_with("tls://10.96."),
        "TLS on, the Service's cluster IP: {address}"
    );
    assert!(
        err.contains("clusterctl dashboard k8e"),
        "up says how to reach it from outside: {err}"
    );
    // Readiness went through the API server's port-forward, as it must from outside the
    // cluster: here the cluster IPs happen to be local, so a `reach` that dialled them
    // directly would still work, and only the request log tells.
    let forwards = || {
        k.sim
            .requests()
            .iter()
            .filter(|r| {
                r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/pods/k8e-scheduler/portforward"))
            })
            .count()
    };
    let after_up = forwards();
    assert!(after_up > 0, "up's readiness used no port-forward");
    // The record pins the context and namespace `up` resolved (the kubeconfig's current ones),
    // so later commands act there even if the kubeconfig changes.
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(k.env.state_dir().join("clusters/k8e/record.json")).unwrap(),
    )
    .unwrap();
    let options = &record["provider_config"]["options"];
    assert_eq!(
        (&options["context"], &options["namespace"]),
        (&json!("sim"), &json!("default")),
        "{record}"
    );
    let faults = k.sim.faults_state();
    assert!(
        faults["api"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["remaining"] == 0 && r["hits"].as_u64() > Some(0)),
        "the injected faults were met and retried: {faults}"
    );

    // The objects.
    let roots = k.held("k8e", "ConfigMap");
    assert_eq!(roots.len(), 1, "{roots:?}");
    let root = &roots[0];
    assert_eq!(root["metadata"]["name"], "k8e-cluster");
    let root_uid = root["metadata"]["uid"].as_str().unwrap();
    let secrets = k.held("k8e", "Secret");
    assert_eq!(secrets.len(), 1);
    let secret = &secrets[0];
    assert_eq!(secret["metadata"]["name"], "k8e-files");
    assert_eq!(secret["immutable"], true);
    let keys: Vec<&str> = secret["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "ca.pem",
        "scheduler.pem",
        "scheduler-key.pem",
        "worker.pem",
        "worker-key.pem",
        "clusterctl_ttl.py",
    ] {
        assert!(keys.contains(&k), "{k} in {keys:?}");
    }
    let pods = k.held("k8e", "Pod");
    assert_eq!(pods.len(), 3, "{pods:?}");
    for p in &pods {
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["app.kubernetes.io/managed-by"], "clusterctl");
        assert_eq!(labels["clusterctl-cluster"], "k8e");
        let owners = p["metadata"]["ownerReferences"].as_array().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0]["kind"], "ConfigMap");
        assert_eq!(owners[0]["uid"], root_uid);
        let spec = &p["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["automountServiceAccountToken"], false);
        let deadline = spec["activeDeadlineSeconds"].as_i64().unwrap();
        assert!(
            (7200..=7200 + 120).contains(&deadline),
            "the TTL (2h) plus the backstop's grace: {deadline}"
        );
        let c = &spec["containers"][0];
        assert_eq!(c["image"], "ghcr.io/dask/dask:2026.8.0-py3.12");
        assert_eq!(c["volumeMounts"][0]["mountPath"], "/etc/clusterctl");
        assert_eq!(c["volumeMounts"][0]["readOnly"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["resources"]["requests"]["memory"], "1024Mi");
        assert_eq!(c["resources"]["limits"]["memory"], "1024Mi");
        assert_eq!(spec["volumes"][0]["secret"]["secretName"], "k8e-files");
        let text = p.to_string();
        assert!(!text.contains("PRIVATE KEY"), "no key in a pod spec");
        assert!(
            !text.contains("BEGIN CERTIFICATE"),
            "files come from the Secret"
        );
        assert_eq!(p["status"]["phase"], "Running");
    }
    let scheduler = pod(&pods, "k8e-scheduler");
    let probe = &scheduler["spec"]["containers"][0]["readinessProbe"]["httpGet"];
    assert_eq!(probe["path"], "/health");
    assert_eq!(probe["port"], "http-dashboard");
    let items: Vec<&str> = scheduler["spec"]["volumes"][0]["secret"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert!(
        items.contains(&"scheduler-key.pem") && !items.contains(&"worker-key.pem"),
        "{items:?}"
    );
    let worker = pod(&pods, "k8e-worker-0");
    let worker_items = worker["spec"]["volumes"][0]["secret"]["items"].to_string();
    assert!(
        !worker_items.contains("scheduler-key.pem"),
        "workers never see the scheduler key"
    );
    let env = worker["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "DASK_SCHEDULER_ADDRESS" && e["value"] == address.as_str()),
        "{env:?}"
    );
    let services = k.held("k8e", "Service");
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["spec"]["type"], "ClusterIP");
    assert_eq!(
        services[0]["metadata"]["ownerReferences"][0]["uid"],
        root_uid
    );
    assert!(address.contains(services[0]["spec"]["clusterIP"].as_str().unwrap()));

    // kubectl reads what clusterctl made.
    let listed: Value = serde_json::from_str(&k.kubectl(&[
        "get",
        "pods",
        "-l",
        "clusterctl-cluster=k8e",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 3);
    let described = k.kubectl(&["describe", "pod", "k8e-scheduler"]);
    assert!(described.contains("Readiness:"), "{described}");
    assert!(described.contains("/etc/clusterctl"), "{described}");
    let table = k.kubectl(&[
        "get",
        "pods,services,secrets,configmaps",
        "-l",
        "clusterctl-cluster=k8e",
    ]);
    assert!(
        table.contains("k8e-worker-1") && table.contains("k8e-files"),
        "{table}"
    );

    // A real client computes through the printed address (the Service) and the TLS bundle.
    let (code, cenv, _) = k.json(&["env", "k8e"]);
    assert_eq!(code, Some(0));
    let r = client(&cenv["env"], &["compute", "200"]);
    assert_eq!(r["result"], (0..200u64).map(|x| x * x).sum::<u64>());
    assert_eq!(r["workers"], 2);
    assert_eq!(client(&cenv["env"], &["refuse-plain"])["refused"], true);

    let (code, st, err) = k.json(&["status", "k8e"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["workers"]["joined"], 2);
    assert!(
        forwards() > after_up,
        "status asked the scheduler through a port-forward"
    );

    let (code, logs, err) = k.json(&["logs", "k8e", "--role", "scheduler"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        logs["logs"][0]["lines"]
            .to_string()
            .contains("Scheduler at"),
        "the pod's log: {logs}"
    );
    let (code, logs, _) = k.json(&["logs", "k8e", "--role", "worker", "--tail", "3"]);
    assert_eq!(code, Some(0));
    assert_eq!(logs["logs"].as_array().unwrap().len(), 2, "{logs}");

    // Scale up, then down: retired through the scheduler, then their pods deleted.
    let (code, s, err) = k.json(&["scale", "k8e", "--workers", "3"]);
    assert_eq!(code, Some(0), "{err}\nsim errors: {}", k.sim.errors());
    assert_eq!(s["added"], json!(["worker-2"]));
    assert_eq!(client(&cenv["env"], &["workers"])["workers"], 3);
    let (code, s, err) = k.json(&["scale", "k8e", "--workers", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["removed"].as_array().unwrap().len(), 2, "{s}");
    // Pods being deleted (their grace period) are on their way out.
    let names: Vec<String> = k
        .held("k8e", "Pod")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"k8e-worker-0".to_string()), "{names:?}");
    assert_eq!(client(&cenv["env"], &["workers"])["workers"], 1);

    let (code, down, err) = k.json(&["down", "k8e"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(down["removed"][0]["name"], "k8e");
    k.assert_nothing_left("k8e");
    let (code, _, _) = k.json(&["down", "k8e", "--provider", "kubernetes"]);
    assert_eq!(code, Some(0), "down is idempotent");
}

#[test]
fn pods_that_cannot_run_fail_fast_with_their_events_and_roll_back() {
    let k = Kube::with(&["--backoff-scale", "0.1"]);
    // An image that does not exist.
    let started = Instant::now();
    let mut args = k.up_args("k8img", "1");
    args.extend(["--image", "ghcr.io/dask/dask:0.0.0-missing"]);
    let (code, out, err) = k.json(&args);
    assert_eq!(code, Some(1), "{out} {err}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "failed fast, not at the timeout"
    );
    let msg = out["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("ErrImagePull") || msg.contains("ImagePullBackOff"),
        "{out}"
    );
    k.assert_nothing_left_but("k8img", Some("0.0.0-missing"));

    // More CPU than the node has: unschedulable, with the scheduler's event.
    let (code, out, err) = k.json(&[
        "up",
        "--provider",
        "kubernetes",
        "--name",
        "k8big",
        "--workers",
        "1",
        "--scheduler-memory",
        "1GiB",
        "--worker-cpus",
        "64",
        "--timeout",
        "120s",
    ]);
    assert_eq!(code, Some(1), "{out} {err}");
    let msg = out["error"]["message"].to_string();
    assert!(msg.contains("Insufficient cpu"), "{out}");
    assert_eq!(out["error"]["kind"], "capacity_unavailable", "{out}");
    k.assert_nothing_left_but("k8big", Some("0.0.0-missing"));

    // A worker that crashes: the failure names it and carries its log tail.
    k.sim
        .faults(&json!({"pods": [{"name": "k8crash-worker-0", "mode": "crash"}]}));
    let (code, out, err) = k.json(&k.up_args("k8crash", "1"));
    assert_eq!(code, Some(1), "{out} {err}");
    let msg = out["error"]["message"].to_string();
    assert!(msg.contains("worker-0"), "{out}");
    k.assert_nothing_left_but("k8crash", Some("0.0.0-missing"));
}

#[test]
fn bad_input_exits_2_and_creates_nothing() {
    let k = Kube::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--namespace", "missing-ns"], "--create-namespace"),
        (&["--namespace", "Bad_NS"], "Bad_NS"),
        (&["--service-type", "Ingress"], "Ingress"),
        (&["--service-type", "LoadBalancer"], "--allow-cidr"),
        // An internal load balancer is only asked for: it needs source ranges too.
        (
            &["--service-type", "LoadBalancer", "--private"],
            "--allow-cidr",
        ),
        (&["--allow-cidr", "203.0.113.7/32"], "LoadBalancer"),
        (&["--tag", "team=a@b"], "a@b"),
        (&["--context", "nope"], "nope"),
        (&["--region", "us-east-1"], "--context"),
        (&["--k8s-operator"], "not installed"),
        // Past the TTL the operator's Deployments restart their pods: only its idle timeout
        // ends a forgotten cluster, so it may not be turned off (issue 13 #13).
        (&["--k8s-operator", "--idle-timeout", "0"], "idle timeout"),
    ];
    for (extra, needle) in cases {
        let mut args = k.up_args("k8bad", "1");
        args.extend(*extra);
        let (code, out, err) = k.json(&args);
        assert_eq!(code, Some(2), "{extra:?}: {out} {err}");
        assert!(out.to_string().contains(needle), "{extra:?}: {out}");
    }
    // `--private` with a load balancer asks EKS, GKE and AKS for an internal one, with ranges.
    let mut args = k.up_args("k8dry", "2");
    args.extend([
        "--service-type",
        "LoadBalancer",
        "--private",
        "--allow-cidr",
        "10.0.0.0/8",
        "--dry-run",
    ]);
    let (code, plan, err) = k.json(&args);
    assert_eq!(code, Some(0), "{err}");
    let text = plan["plan"].to_string();
    for annotation in [
        "service.beta.kubernetes.io/aws-load-balancer-scheme",
        "networking.gke.io/load-balancer-type",
        "service.beta.kubernetes.io/azure-load-balancer-internal",
    ] {
        assert!(text.contains(annotation), "{annotation} in {plan}");
    }
    assert!(text.contains("loadBalancerSourceRanges"), "{plan}");
    assert!(
        text.contains("k8dry-scheduler") && text.contains("activeDeadlineSeconds"),
        "{plan}"
    );
    assert!(!text.contains("PRIVATE KEY"), "{plan}");
    for name in ["k8bad", "k8dry"] {
        k.assert_nothing_left(name);
    }
    let all = k
        .sim
        .objects(Some("app.kubernetes.io/managed-by=clusterctl"));
    assert_eq!(
        all["objects"],
        json!({}),
        "nothing at all was created: {all}"
    );
}

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
    let (code, _, err) = k.json(&["down", "k8ttl"]);
    assert_eq!(code, Some(0), "{err}");
    k.assert_nothing_left("k8ttl");
}

#[test]
fn operator_mode_makes_a_dask_cluster_and_scales_through_it() {
    let k = Kube::with(&["--with-dask-operator"]);
    let mut args = k.up_args("k8op", "2");
    args.push("--k8s-operator");
    let (code, up, err) = k.json(&args);
    assert_eq!(
        code,
        Some(0),
        "up failed: {err}\nsim errors: {}",
        k.sim.errors()
    );
    assert_eq!(up["workers"]["joined"], 2);
    let root_uid = k.held("k8op", "ConfigMap")[0]["metadata"]["uid"].clone();
    let dcs = k.held("k8op", "DaskCluster");
    assert_eq!(dcs.len(), 1, "{dcs:?}");
    let dc = &dcs[0];
    assert_eq!(dc["metadata"]["ownerReferences"][0]["uid"], root_uid);
    assert_eq!(dc["spec"]["worker"]["replicas"], 2);
    assert!(
        !dc.to_string().contains("PRIVATE KEY"),
        "no key in the DaskCluster"
    );
    let dc_uid = dc["metadata"]["uid"].clone();
    let pods = k.held("k8op", "Pod");
    assert_eq!(pods.len(), 3, "{pods:?}");
    for p in &pods {
        assert_eq!(
            p["metadata"]["ownerReferences"][0]["uid"], dc_uid,
            "made by the operator"
        );
        assert_eq!(
            p["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "clusterctl"
        );
        // The operator's Deployments restart their pods and carry no deadline.
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert!(p["spec"]["activeDeadlineSeconds"].is_null());
    }
    let (code, cenv, _) = k.json(&["env", "k8op"]);
    assert_eq!(code, Some(0));
    assert_eq!(client(&cenv["env"], &["compute", "50"])["workers"], 2);

    // Down to one worker: the operator retires it through the scheduler.
    let (code, s, err) = k.json(&["scale", "k8op", "--workers", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["removed"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(
        k.held("k8op", "DaskCluster")[0]["spec"]["worker"]["replicas"],
        1
    );
    assert_eq!(client(&cenv["env"], &["workers"])["workers"], 1);

    let (code, _, err) = k.json(&["down", "k8op"]);
    assert_eq!(code, Some(0), "{err}");
    k.assert_nothing_left("k8op");
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

/// Two `up` of one name at once from two machines (state directories): the root ConfigMap
/// claims the name, so one cluster exists afterwards and computes, and the loser exits 1 with
/// `NameTaken` without deleting anything of the winner (before, its rollback deleted the
/// winner's root and with it the whole cluster).
#[test]
fn two_ups_of_one_name_at_once_leave_one_healthy_cluster() {
    let k = Kube::new();
    let other = Env::new();
    let args = k.up_args("k8race", "1");
    let cmd = |env: &Env| {
        let mut c = env.cmd();
        c.envs(k.sim.env()).args(&args);
        c
    };
    let ((winner, won), (loser, _)) = common::race_two_ups("kubernetes", cmd(&k.env), cmd(&other));
    let (won_env, lost_env) = ([&k.env, &other][winner], [&k.env, &other][loser]);
    assert_eq!(won.1["workers"]["joined"], 1, "{won:?}");
    assert!(lost_env.records().is_empty(), "the loser keeps no record");
    let launches: std::collections::BTreeSet<String> = k
        .held("k8race", "Pod")
        .iter()
        .map(|p| p["metadata"]["labels"]["clusterctl-launch"].to_string())
        .collect();
    assert_eq!(k.held("k8race", "Pod").len(), 2);
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(k.held("k8race", "ConfigMap").len(), 1);

    let mut env = won_env.cmd();
    env.envs(k.sim.env())
        .args(["env", "k8race", "--output", "json"]);
    let out = env.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut down = won_env.cmd();
    down.envs(k.sim.env()).args(["down", "k8race"]);
    let out = down.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    k.assert_nothing_left("k8race");
}

#[test]
fn doctor_dry_runs_the_creates_and_reports_a_forbidden_one() {
    let k = Kube::new();
    let flags: Vec<&str> = k.up_args("k8doc", "2")[1..].to_vec();
    let mut args = vec!["doctor"];
    args.extend(&flags);
    let (code, v, err) = k.json(&args);
    assert_eq!(code, Some(0), "{v} {err}\nsim errors: {}", k.sim.errors());
    for kind in ["configmaps", "services", "pods"] {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == format!("permission to create {kind}"))
            .unwrap_or_else(|| panic!("no check for {kind}: {v}"));
        assert_eq!(c["ok"], true, "{c}");
    }
    // Every create was a server-side dry run, and nothing was kept.
    let posts: Vec<Value> = k
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["method"] == "POST")
        .collect();
    assert_eq!(posts.len(), 3, "{posts:?}");
    for p in &posts {
        assert_eq!(p["query"]["dryRun"], json!(["All"]), "{p}");
        assert_eq!(p["status"], 201, "{p}");
    }
    k.assert_nothing_left("k8doc");
    assert_eq!(
        k.sim
            .objects(Some("app.kubernetes.io/managed-by=clusterctl"))["objects"],
        json!({})
    );

    // RBAC says no to pods: that line fails with the permission error, exit 1.
    k.sim.faults(&json!({"api": [
        {"method": "POST", "path": "/api/v1/namespaces/default/pods$", "status": 403, "count": 1},
    ]}));
    let (code, v, err) = k.json(&args);
    assert_eq!(code, Some(1), "{v} {err}");
    let failed = common::failed_checks(&v);
    assert_eq!(failed.len(), 1, "{v}");
    assert_eq!(failed[0]["name"], "permission to create pods", "{v}");
    k.assert_nothing_left("k8doc");
}

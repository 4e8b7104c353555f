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
//!
//! Here: a cluster that runs, computes, scales and leaves nothing, and operator mode. By theme:
//!
//! - a created namespace, port-forward, a LoadBalancer, in a pod (`k8s_e2e/access.rs`);
//! - pods that cannot run, bad input, `doctor` (`k8s_e2e/failures.rs`);
//! - the TTL (`k8s_e2e/ttl.rs`);
//! - two `up`s of one name at once (`k8s_e2e/races.rs`).

#[path = "k8s_e2e/access.rs"]
mod access;
mod common;
#[path = "k8s_e2e/failures.rs"]
mod failures;
#[path = "k8s_e2e/races.rs"]
mod races;
#[path = "k8s_e2e/ttl.rs"]
mod ttl;

use std::process::Command;

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

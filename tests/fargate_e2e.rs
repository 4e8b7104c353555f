//! End-to-end tests of the `fargate` provider against the moto emulator: what moto holds after
//! each command (ECS cluster, task definitions, tasks, roles and policies, log group, SSM
//! parameters, security group), and a real cluster booted from the task definitions by the ECS
//! boot agent, reached by a real Dask client through the address `up` printed.
//!
//! moto gives tasks random `10.x` addresses, so every test runs in its own network namespace
//! (`common::sandbox`) where those addresses are local and nothing else is reachable.

mod common;

use std::process::Command;

use common::{
    Env, client,
    moto::{Agent, BootAgent, Moto, api_calls},
    python,
    sandbox::Sandbox,
};
use serde_json::Value;

struct Fargate {
    env: Env,
    moto: Moto,
    _sandbox: Sandbox,
}

impl Fargate {
    fn new() -> Self {
        let sandbox = Sandbox::enter();
        let env = Env::new();
        let moto = Moto::start(env.dir.path());
        let setup = moto.run_agent(Agent::Ecs, &["setup"]);
        assert!(
            setup["subnet_ids"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "{setup}"
        );
        Fargate {
            env,
            moto,
            _sandbox: sandbox,
        }
    }

    fn json(&self, args: &[&str]) -> (Option<i32>, Value, String) {
        let mut cmd = self.env.cmd();
        cmd.args(args)
            .args(["--output", "json"])
            .envs(self.moto.env());
        let out = cmd.output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            v,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    fn inspect(&self, cluster: &str) -> Value {
        self.moto
            .run_agent(Agent::Ecs, &["inspect", "--cluster", cluster])
    }

    /// Run clusterctl with `args` (JSON output), its API calls logged to `log`; it must exit 0.
    fn succeeds_logging_calls(&self, args: &[&str], log: &std::path::Path) {
        let out = self
            .env
            .cmd()
            .args(args)
            .args(["--output", "json"])
            .envs(self.moto.env())
            .env("CLUSTERCTL_API_LOG", log)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn up_args<'a>(&self, name: &'a str, workers: &'a str) -> Vec<&'a str> {
        vec![
            "up",
            "--provider",
            "fargate",
            "--name",
            name,
            "--workers",
            workers,
            "--private",
            // Small tasks, so that the local Dask workers are small too.
            "--worker-cpus",
            "1",
            "--worker-memory",
            "2GiB",
            "--timeout",
            "120s",
        ]
    }

    /// Create an IAM role in moto the way a user would before passing `--execution-role-arn`.
    fn foreign_role(&self, name: &str) -> String {
        let code = format!(
            "import boto3, json; iam = boto3.client('iam', endpoint_url='{}', region_name='us-east-1'); \
             trust = {{'Version': '2012-10-17', 'Statement': [{{'Effect': 'Allow', 'Principal': {{'Service': 'ecs-tasks.amazonaws.com'}}, 'Action': 'sts:AssumeRole'}}]}}; \
             r = iam.create_role(RoleName='{name}', AssumeRolePolicyDocument=json.dumps(trust)); \
             print(r['Role']['Arn'])",
            self.moto.url()
        );
        let out = Command::new(python())
            .args(["-c", &code])
            .envs(self.moto.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn running(tasks: &Value) -> Vec<&Value> {
    tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["last_status"] != "STOPPED")
        .collect()
}

fn active(defs: &Value) -> Vec<&Value> {
    defs.as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "ACTIVE")
        .collect()
}

/// Nothing of `name` is left in moto: no running task, no active task definition, no role, log
/// group, parameter or security group, and its ECS cluster is gone or inactive.
fn assert_nothing_left(held: &Value) {
    assert!(running(&held["tasks"]).is_empty(), "tasks left: {held}");
    assert!(
        active(&held["task_definitions"]).is_empty(),
        "task definitions left: {held}"
    );
    assert_eq!(held["roles"], serde_json::json!([]), "{held}");
    assert_eq!(held["log_groups"], serde_json::json!([]), "{held}");
    assert_eq!(held["ssm_parameters"], serde_json::json!([]), "{held}");
    assert_eq!(held["security_groups"], serde_json::json!([]), "{held}");
    assert!(
        held["ecs_clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] != "ACTIVE"),
        "ECS cluster left: {held}"
    );
}

#[test]
fn fargate_cluster_boots_from_task_definitions_computes_scales_and_leaves_nothing() {
    let fg = Fargate::new();
    let mut agent = BootAgent::start_agent(Agent::Ecs, &fg.moto, &fg.env.dir.path().join("agent"));
    let (code, up, err) = fg.json(&fg.up_args("fge", "2"));
    assert_eq!(
        code,
        Some(0),
        "up failed: {err}\nagent errors: {}",
        agent.errors()
    );
    assert_eq!(up["ready"], true);
    assert_eq!(up["provider"], "fargate");
    assert_eq!(up["workers"]["joined"], 2);
    let address = up["scheduler_address"].as_str().unwrap();
    assert!(
        address.starts_with("tls://10."),
        "TLS on by default, task IP: {address}"
    );

    // What moto holds.
    let held = fg.inspect("fge");
    let clusters = held["ecs_clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{held}");
    assert_eq!(clusters[0]["name"], "clusterctl-fge");
    assert_eq!(clusters[0]["status"], "ACTIVE");
    assert_eq!(clusters[0]["tags"]["clusterctl-managed"], "true");
    let providers = clusters[0]["capacity_providers"].to_string();
    assert!(providers.contains("FARGATE_SPOT"), "{providers}");

    let defs = active(&held["task_definitions"]);
    assert_eq!(defs.len(), 2, "one task definition per role: {held}");
    let exec_role = held["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "clusterctl-fge-exec")
        .unwrap_or_else(|| panic!("execution role: {held}"))
        .clone();
    for d in &defs {
        assert_eq!(d["network_mode"], "awsvpc");
        assert_eq!(
            d["requires_compatibilities"],
            serde_json::json!(["FARGATE"])
        );
        assert_eq!(d["execution_role_arn"], exec_role["arn"]);
        assert_eq!(d["tags"]["clusterctl-cluster"], "fge");
        let c = &d["containers"][0];
        assert_eq!(c["image"], "ghcr.io/dask/dask:2026.8.0-py3.12");
        assert_eq!(c["essential"], true);
        assert_eq!(c["command"][0], "sh");
        assert_eq!(c["log_configuration"]["logDriver"], "awslogs");
        assert_eq!(
            c["log_configuration"]["options"]["awslogs-group"],
            "/clusterctl/fge"
        );
        let text = d.to_string();
        assert!(
            !text.contains("PRIVATE KEY"),
            "keys never in a task definition"
        );
        assert!(
            !text.contains("testing"),
            "credentials never in a task definition"
        );
        let secrets = c["secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), 1, "{c}");
        assert!(
            secrets[0]["valueFrom"]
                .as_str()
                .unwrap()
                .starts_with("arn:aws:ssm:us-east-1:123456789012:parameter/clusterctl/fge/"),
            "{secrets:?}"
        );
    }
    let scheduler_def = defs
        .iter()
        .find(|d| d["family"] == "clusterctl-fge-scheduler")
        .unwrap();
    assert_eq!(
        (
            scheduler_def["cpu"].as_str(),
            scheduler_def["memory"].as_str()
        ),
        (Some("1024"), Some("4096"))
    );
    let worker_def = defs
        .iter()
        .find(|d| d["family"] == "clusterctl-fge-worker")
        .unwrap();
    assert_eq!(
        (worker_def["cpu"].as_str(), worker_def["memory"].as_str()),
        (Some("1024"), Some("2048"))
    );
    let worker_cmd = worker_def["containers"][0]["command"].to_string();
    assert!(
        worker_cmd.contains(address),
        "workers dial the scheduler's task IP: {worker_cmd}"
    );

    let attached = exec_role["attached_policies"].to_string();
    assert!(
        attached.contains("AmazonECSTaskExecutionRolePolicy"),
        "{exec_role}"
    );
    let inline = exec_role["inline_policies"]["clusterctl-secrets"].to_string();
    assert!(inline.contains("ssm:GetParameters"), "{exec_role}");
    assert!(
        inline.contains("parameter/clusterctl/fge/*"),
        "only this cluster's secrets: {exec_role}"
    );
    assert!(
        exec_role["assume_role_policy"]
            .to_string()
            .contains("ecs-tasks.amazonaws.com")
    );

    let groups = held["log_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{held}");
    assert_eq!(groups[0]["name"], "/clusterctl/fge");
    assert_eq!(groups[0]["retention_days"], 7);
    let params = held["ssm_parameters"].as_array().unwrap();
    assert_eq!(params.len(), 2, "scheduler and worker keys: {held}");
    assert!(
        params.iter().all(|p| p["type"] == "SecureString"),
        "{params:?}"
    );

    let tasks = running(&held["tasks"]);
    assert_eq!(tasks.len(), 3, "{held}");
    for t in &tasks {
        assert_eq!(t["last_status"], "RUNNING");
        assert_eq!(t["started_by"], "clusterctl");
        assert_eq!(t["tags"]["clusterctl-managed"], "true");
        assert_eq!(t["tags"]["clusterctl-protocol"], "tls");
    }
    assert_eq!(
        tasks
            .iter()
            .filter(|t| t["tags"]["clusterctl-role"] == "scheduler")
            .count(),
        1
    );
    let sg = &held["security_groups"].as_array().unwrap()[0];
    let rules = sg["rules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| r["referenced_group_id"] == sg["id"]),
        "{rules:?}"
    );
    assert!(
        rules.iter().all(|r| r["cidr_ipv4"] != "0.0.0.0/0"),
        "world-open rule: {rules:?}"
    );

    // A real client computes through the printed address and the TLS bundle.
    let (code, env, _) = fg.json(&["env", "fge"]);
    assert_eq!(code, Some(0));
    let r = client(&env["env"], &["compute", "300"]);
    assert_eq!(r["result"], (0..300u64).map(|x| x * x).sum::<u64>());
    assert_eq!(r["workers"], 2);
    assert_eq!(client(&env["env"], &["refuse-plain"])["refused"], true);

    let (code, st, _) = fg.json(&["status", "fge"]);
    assert_eq!(code, Some(0));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["workers"]["joined"], 2);

    // Logs come from CloudWatch Logs, where the tasks' awslogs streams are.
    let (code, logs, err) = fg.json(&["logs", "fge", "--role", "scheduler"]);
    assert_eq!(code, Some(0), "{err}");
    let lines = logs["logs"][0]["lines"].to_string();
    assert!(
        lines.contains("Scheduler at"),
        "scheduler log from CloudWatch: {logs}"
    );
    let (code, logs, _) = fg.json(&["logs", "fge", "--role", "worker", "--tail", "5"]);
    assert_eq!(code, Some(0));
    let worker_logs = logs["logs"].as_array().unwrap();
    assert_eq!(worker_logs.len(), 2);
    assert!(
        worker_logs
            .iter()
            .all(|l| l["lines"].as_array().unwrap().len() <= 5),
        "{logs}"
    );

    // Scale up in one batch, then down (retire through the scheduler, then stop the tasks).
    let (code, s, err) = fg.json(&["scale", "fge", "--workers", "3"]);
    assert_eq!(code, Some(0), "{err}\nagent errors: {}", agent.errors());
    assert_eq!(s["added"].as_array().unwrap().len(), 1);
    assert_eq!(client(&env["env"], &["workers"])["workers"], 3);
    let (code, s, err) = fg.json(&["scale", "fge", "--workers", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["removed"].as_array().unwrap().len(), 2);
    assert_eq!(client(&env["env"], &["workers"])["workers"], 1);
    assert_eq!(running(&fg.inspect("fge")["tasks"]).len(), 2);
    assert_eq!(
        active(&fg.inspect("fge")["task_definitions"]).len(),
        2,
        "scaling reuses the worker task definition"
    );

    let (code, _, err) = fg.json(&["down", "fge"]);
    assert_eq!(code, Some(0), "{err}");
    let held = fg.inspect("fge");
    assert_nothing_left(&held);
    assert!(
        !held["all_role_names"]
            .to_string()
            .contains("clusterctl-fge"),
        "{held}"
    );
    assert!(fg.env.records().is_empty());
    assert!(agent.alive(), "the boot agent died");
    assert_eq!(
        agent.errors(),
        "",
        "the agent could not run what the task definitions say"
    );
}

#[test]
fn down_and_list_work_from_tags_without_the_record_and_spare_what_clusterctl_did_not_make() {
    let fg = Fargate::new();
    let role = fg.foreign_role("my-exec-role");
    let mut args = fg.up_args("orphan", "12");
    args.extend(["--no-wait", "--execution-role-arn", &role, "--keep-logs"]);
    let (code, up, err) = fg.json(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(up["ready"], false);
    let held = fg.inspect("orphan");
    assert_eq!(
        running(&held["tasks"]).len(),
        13,
        "12 workers in two RunTask batches: {held}"
    );
    assert_eq!(
        held["roles"],
        serde_json::json!([]),
        "no role is created when one is given"
    );
    for d in active(&held["task_definitions"]) {
        assert_eq!(d["execution_role_arn"], role.as_str());
    }
    // A neighbour whose name starts like this one's: nothing of it may be touched.
    let mut args = fg.up_args("orphan-x", "1");
    args.push("--no-wait");
    let up_log = fg.env.dir.path().join("up-api.log");
    fg.succeeds_logging_calls(&args, &up_log);
    // `up` registers both task definitions without looking at the families first: the name was
    // just claimed, nothing to reuse (docs/benchmarks.md, `up`'s budget).
    let calls = api_calls(&up_log);
    assert_eq!(calls.get("ECS:DescribeTaskDefinition"), None, "{calls:?}");
    assert_eq!(
        calls.get("ECS:RegisterTaskDefinition"),
        Some(&2),
        "{calls:?}"
    );
    let neighbour = fg.inspect("orphan-x");
    std::fs::remove_dir_all(fg.env.state_dir().join("clusters/orphan")).unwrap();

    let (code, list, err) = fg.json(&["list", "--provider", "fargate", "--region", "us-east-1"]);
    assert_eq!(code, Some(0), "{err}");
    let found = list["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "orphan")
        .unwrap_or_else(|| panic!("{list}"))
        .clone();
    assert_eq!(found["workers_running"], 12);
    assert_eq!(found["recorded_here"], false);

    let down = [
        "down",
        "orphan",
        "--provider",
        "fargate",
        "--region",
        "us-east-1",
    ];
    let log = fg.env.dir.path().join("api.log");
    fg.succeeds_logging_calls(&down, &log);
    // The API budget of `down` (docs/benchmarks.md): at most 25 calls besides one StopTask per
    // task; the benchmark's case (created execution role, log group deleted) makes 24. This
    // one makes 20: no role to read and delete, no DeleteLogGroup (4 + 1 fewer), and the kept
    // log group's tags read again by the verification (1 more). Two ListTasks (the first
    // listing, both desired statuses; the confirming one, desired RUNNING only), and one
    // DescribeTasks although moto's ListTasks also shows the neighbour's tasks (its cluster
    // name contains this one's): a task of another cluster is described once. The stopped
    // tasks are waited on by DescribeTasks on their ARNs, not by listings.
    let calls = api_calls(&log);
    assert_eq!(calls.get("ECS:StopTask"), Some(&13), "{calls:?}");
    let rest: usize = calls
        .iter()
        .filter(|(k, _)| k.as_str() != "ECS:StopTask")
        .map(|(_, v)| v)
        .sum();
    assert!(rest <= 20, "{rest} calls besides StopTask: {calls:?}");
    assert!(
        calls.get("ECS:ListTasks").is_some_and(|n| *n <= 2),
        "{calls:?}"
    );
    assert!(
        calls.get("ECS:DescribeTasks").is_some_and(|n| *n <= 1),
        "{calls:?}"
    );
    let held = fg.inspect("orphan");
    assert!(running(&held["tasks"]).is_empty(), "{held}");
    assert!(active(&held["task_definitions"]).is_empty(), "{held}");
    assert_eq!(held["ssm_parameters"], serde_json::json!([]));
    assert_eq!(held["security_groups"], serde_json::json!([]));
    assert!(
        held["all_role_names"]
            .as_array()
            .unwrap()
            .contains(&Value::from("my-exec-role")),
        "a role clusterctl did not create is never deleted: {held}"
    );
    let groups = held["log_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "--keep-logs keeps the log group: {held}");
    // Idempotent.
    let (code, _, err) = fg.json(&down);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        fg.inspect("orphan-x"),
        neighbour,
        "the neighbour is untouched"
    );
    let (code, _, err) = fg.json(&["down", "orphan-x"]);
    assert_eq!(code, Some(0), "{err}");
    assert_nothing_left(&fg.inspect("orphan-x"));
}

#[test]
fn dry_run_and_bad_input_create_nothing() {
    let fg = Fargate::new();
    let mut args = fg.up_args("dry", "5");
    args.push("--dry-run");
    let (code, v, err) = fg.json(&args);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        v["plan"]["identity"]
            .as_str()
            .unwrap()
            .contains("123456789012"),
        "{v}"
    );
    let boots = v["plan"]["bootstraps"].as_array().unwrap();
    assert_eq!(boots.len(), 2);
    for b in boots {
        assert_eq!(b["format"], "ecs-container-definition");
        let text = b["text"].as_str().unwrap();
        assert!(text.contains("parameter/clusterctl/dry/"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }

    let bad: [&[&str]; 3] = [
        &["--scheduler-cpus", "3"],
        &["--scheduler-cpus", "1", "--scheduler-memory", "16GiB"],
        &["--execution-role-arn", "my-role"],
    ];
    for extra in bad {
        let mut args = fg.up_args("bad", "1");
        args.extend(extra);
        let (code, v, err) = fg.json(&args);
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(extra[1]) || message.contains("16GiB"),
            "{message}"
        );
        assert!(!v["error"]["hints"].as_array().unwrap().is_empty(), "{v}");
    }
    for name in ["dry", "bad"] {
        let held = fg.inspect(name);
        assert_eq!(held["ecs_clusters"], serde_json::json!([]), "{held}");
        assert_eq!(held["task_definitions"], serde_json::json!([]), "{held}");
        assert_eq!(held["roles"], serde_json::json!([]), "{held}");
        assert_eq!(held["security_groups"], serde_json::json!([]), "{held}");
    }
    assert!(fg.env.records().is_empty());
}

#[test]
fn a_timeout_rolls_back_everything() {
    // No boot agent: the tasks never run Dask, so readiness must time out and roll back.
    let fg = Fargate::new();
    let mut args = fg.up_args("stuck", "2");
    let at = args.iter().position(|a| *a == "120s").unwrap();
    args[at] = "3s";
    let (code, v, err) = fg.json(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 3s"),
        "{v}"
    );
    let held = fg.inspect("stuck");
    assert_eq!(
        held["tasks"].as_array().unwrap().len(),
        3,
        "the tasks were started: {held}"
    );
    assert_nothing_left(&held);
    assert!(fg.env.records().is_empty());
}

#[test]
fn a_fargate_cluster_ends_itself_at_its_ttl() {
    let fg = Fargate::new();
    let agent = BootAgent::start_agent(Agent::Ecs, &fg.moto, &fg.env.dir.path().join("agent"));
    let mut args = fg.up_args("ttl", "1");
    args.extend(["--ttl", "1m", "--idle-timeout", "0"]);
    let (code, up, err) = fg.json(&args);
    assert_eq!(code, Some(0), "{err}\nagent errors: {}", agent.errors());
    assert_eq!(up["ready"], true);
    let expires = up["expires_at"].as_u64().unwrap();

    // Nothing but the cluster itself ends it: the scheduler closes at the expiry, its container
    // exits, and ECS stops the task.
    let started = std::time::Instant::now();
    let scheduler = loop {
        let held = fg.inspect("ttl");
        let s = held["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tags"]["clusterctl-role"] == "scheduler")
            .unwrap()
            .clone();
        if s["last_status"] == "STOPPED" {
            break s;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(150),
            "still running: {held}"
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now >= expires, "the scheduler stopped before the TTL");
    assert!(
        scheduler["stopped_reason"]
            .to_string()
            .contains("Essential container"),
        "{scheduler}"
    );
    let (code, logs, err) = fg.json(&["logs", "ttl", "--role", "scheduler"]);
    assert_eq!(code, Some(0), "{err}");
    let lines = logs["logs"][0]["lines"].to_string();
    assert!(lines.contains("cluster TTL reached"), "{lines}");
    assert!(
        lines.contains("[ecs] task stopped: Essential container"),
        "{lines}"
    );

    let (code, _, err) = fg.json(&["down", "ttl"]);
    assert_eq!(code, Some(0), "{err}");
    assert_nothing_left(&fg.inspect("ttl"));
    assert_eq!(agent.errors(), "");
}

//! End-to-end tests of the `aws` provider against the moto emulator: what moto holds after each
//! command, and a real cluster booted from the instances' user-data by the boot agent, reached
//! by a real Dask client through the address `up` printed.
//!
//! Here: a private cluster booted from user-data, `down` and `list` from tags without the
//! record, and a timeout that rolls back. By theme:
//!
//! - what creates nothing: the dry run, `doctor`, verbose `up` (`aws_e2e/read_only.rs`);
//! - the network: a leftover security group, the defaults (`aws_e2e/network.rs`);
//! - two `up`s of one name at once (`aws_e2e/races.rs`).

mod common;
#[path = "aws_e2e/network.rs"]
mod network;
#[path = "aws_e2e/races.rs"]
mod races;
#[path = "aws_e2e/read_only.rs"]
mod read_only;

use std::collections::BTreeMap;

use common::{
    Env, client,
    moto::{BootAgent, Moto, api_calls},
};
use serde_json::Value;

struct Aws {
    env: Env,
    moto: Moto,
    subnets: Vec<String>,
    ami: String,
}

impl Aws {
    fn new() -> Self {
        let env = Env::new();
        let moto = Moto::start(env.dir.path());
        let setup = moto.agent(&["setup"]);
        let subnets = setup["subnet_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        let ami = setup["ami_id"].as_str().unwrap().to_string();
        Aws {
            env,
            moto,
            subnets,
            ami,
        }
    }

    /// `clusterctl ... --output json` against moto.
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

    /// [`Aws::json`] with the API calls the command made (`CLUSTERCTL_API_LOG`), by operation.
    fn json_counted(&self, args: &[&str]) -> (Option<i32>, Value, String, BTreeMap<String, usize>) {
        let log = self.env.dir.path().join("api.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.env.cmd();
        cmd.args(args)
            .args(["--output", "json"])
            .envs(self.moto.env())
            .env("CLUSTERCTL_API_LOG", &log);
        let out = cmd.output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            v,
            String::from_utf8_lossy(&out.stderr).to_string(),
            api_calls(&log),
        )
    }

    fn up_args<'a>(&'a self, name: &'a str, workers: &'a str) -> Vec<&'a str> {
        vec![
            "up",
            "--provider",
            "aws",
            "--name",
            name,
            "--workers",
            workers,
            "--private",
            "--subnet",
            &self.subnets[0],
            "--ami",
            &self.ami,
            "--timeout",
            "90s",
        ]
    }
}

/// The files a cloud-init user-data writes: (path, decoded contents).
fn user_data_files(user_data: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    let doc: Value = serde_saphyr::from_str(user_data).unwrap();
    doc["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(f["content"].as_str().unwrap())
                .unwrap();
            (
                f["path"].as_str().unwrap().to_string(),
                String::from_utf8(bytes).unwrap(),
            )
        })
        .collect()
}

fn live(instances: &Value) -> Vec<&Value> {
    instances
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["state"] != "terminated")
        .collect()
}

#[test]
fn private_cluster_boots_from_user_data_computes_scales_and_leaves_nothing() {
    let aws = Aws::new();
    let mut agent = BootAgent::start(&aws.moto, &aws.env.dir.path().join("agent"));
    let (code, up, err) = aws.json(&aws.up_args("ec2e", "2"));
    assert_eq!(
        code,
        Some(0),
        "up failed: {err}\nagent errors: {}",
        agent.errors()
    );
    assert_eq!(up["ready"], true);
    assert_eq!(up["workers"]["joined"], 2);
    assert_eq!(up["provider"], "aws");
    assert_eq!(up["location"], "us-east-1");
    let address = up["scheduler_address"].as_str().unwrap();
    assert!(
        address.starts_with("tls://127.0.1."),
        "TLS is on by default for AWS: {address}"
    );

    // What moto holds.
    let held = aws.moto.inspect("ec2e");
    let instances = live(&held["instances"]);
    assert_eq!(instances.len(), 3);
    for i in &instances {
        assert_eq!(i["state"], "running");
        assert_eq!(i["tags"]["clusterctl-managed"], "true");
        assert_eq!(i["tags"]["clusterctl-cluster"], "ec2e");
        assert_eq!(i["tags"]["clusterctl-protocol"], "tls");
        assert!(
            i["tags"]["clusterctl-expires"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        assert_eq!(
            i["shutdown_behavior"], "terminate",
            "powering off must end billing"
        );
        assert_eq!(i["metadata_http_tokens"], "required");
        assert_eq!(i["public_ip"], Value::Null, "--private: no public address");
        assert_eq!(i["subnet_id"], aws.subnets[0].as_str());
        let ud = i["user_data"].as_str().unwrap();
        assert!(ud.starts_with("#cloud-config\n"), "{ud}");
        assert!(
            !ud.contains("testing"),
            "credentials must never be in user-data"
        );
        // No private key in user-data, which EC2 returns to any caller allowed
        // ec2:DescribeInstanceAttribute: not inline, and not in any file (all base64).
        assert!(!ud.contains("PRIVATE KEY"), "{ud}");
        for file in user_data_files(ud) {
            assert!(
                !file.1.contains("PRIVATE KEY"),
                "{} carries a private key in user-data",
                file.0
            );
        }
        assert!(
            user_data_files(ud)
                .iter()
                .any(|(p, c)| p == "/etc/clusterctl/secrets.json"
                    && c.contains("/clusterctl-ec2/ec2e/")),
            "the node fetches its key from SSM"
        );
        assert_eq!(
            i["iam_instance_profile"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next(),
            Some("clusterctl-ec2e-node"),
            "every node runs with the cluster's instance profile"
        );
    }
    // The keys are SecureStrings under the cluster's path, readable by the nodes' role only.
    let params: Vec<(&str, &str)> = held["ssm_parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        params,
        vec![
            ("/clusterctl-ec2/ec2e/scheduler-key.pem", "SecureString"),
            ("/clusterctl-ec2/ec2e/worker-key.pem", "SecureString"),
        ]
    );
    let role = &held["node_role"];
    assert_eq!(role["tags"]["clusterctl-cluster"], "ec2e");
    assert_eq!(
        role["trust"]["Statement"][0]["Principal"]["Service"],
        "ec2.amazonaws.com"
    );
    assert_eq!(role["attached"], serde_json::json!([]), "{role}");
    let statements = role["inline"]["clusterctl-secrets"]["Statement"]
        .as_array()
        .unwrap();
    assert_eq!(statements.len(), 1, "{role}");
    assert_eq!(statements[0]["Action"], "ssm:GetParameters");
    assert!(
        statements[0]["Resource"]
            .as_str()
            .unwrap()
            .ends_with(":parameter/clusterctl-ec2/ec2e/*"),
        "{role}"
    );
    assert_eq!(
        held["instance_profile"]["roles"],
        serde_json::json!(["clusterctl-ec2e-node"])
    );
    let roles: Vec<&str> = instances
        .iter()
        .map(|i| i["tags"]["clusterctl-role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "scheduler").count(), 1);
    assert_eq!(
        instances
            .iter()
            .find(|i| i["tags"]["clusterctl-role"] == "scheduler")
            .unwrap()["instance_type"],
        "m7i.large"
    );
    assert_eq!(
        instances
            .iter()
            .find(|i| i["tags"]["clusterctl-role"] == "worker")
            .unwrap()["instance_type"],
        "m7i.xlarge"
    );
    let groups = held["security_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    let rules = groups[0]["rules"].as_array().unwrap();
    assert!(
        rules
            .iter()
            .any(|r| r["referenced_group_id"] == groups[0]["id"] && r["protocol"] == "-1"),
        "{rules:?}"
    );
    assert!(
        rules.iter().any(|r| r["cidr_ipv4"] == "127.0.0.0/16"
            && r["from_port"] == 8786
            && r["to_port"] == 8787),
        "--private opens the scheduler ports to the VPC only: {rules:?}"
    );
    assert!(
        rules.iter().all(|r| r["cidr_ipv4"] != "0.0.0.0/0"),
        "world-open rule: {rules:?}"
    );

    // A real client computes through the printed address and TLS bundle.
    let (code, env, _) = aws.json(&["env", "ec2e"]);
    assert_eq!(code, Some(0));
    let r = client(&env["env"], &["compute", "300"]);
    assert_eq!(r["result"], (0..300u64).map(|x| x * x).sum::<u64>());
    assert_eq!(r["workers"], 2);
    assert_eq!(client(&env["env"], &["refuse-plain"])["refused"], true);

    let (code, st, _) = aws.json(&["status", "ec2e"]);
    assert_eq!(code, Some(0));
    assert_eq!(st["state"], "ready", "{st}");
    assert_eq!(st["workers"]["joined"], 2);

    // `logs` is GetConsoleOutput: the run script sends Dask's output to the serial console too.
    let (code, logs, err) = aws.json(&["logs", "ec2e", "--role", "scheduler", "--tail", "1000"]);
    assert_eq!(code, Some(0), "{err}");
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 1);
    // A Dask line naming the scheduler's address (the padding between them varies).
    let has = |log: &Value, label: &str| {
        log["lines"].as_array().unwrap().iter().any(|l| {
            let l = l.as_str().unwrap();
            l.contains(label) && l.trim_end().ends_with(address)
        })
    };
    assert!(
        has(&logs[0], "Scheduler at:"),
        "the scheduler's console shows Dask: {logs:?}"
    );
    let (code, logs, err) = aws.json(&["logs", "ec2e", "--role", "worker", "--tail", "1000"]);
    assert_eq!(code, Some(0), "{err}");
    let logs = logs["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    for log in logs {
        assert!(
            has(log, "Registered to:"),
            "each worker's console shows it joined: {log}"
        );
    }

    // Scale up in one batch, then down (retire by address, then terminate).
    let (code, s, err) = aws.json(&["scale", "ec2e", "--workers", "3"]);
    assert_eq!(code, Some(0), "{err}\nagent errors: {}", agent.errors());
    assert_eq!(s["added"].as_array().unwrap().len(), 1);
    assert_eq!(client(&env["env"], &["workers"])["workers"], 3);
    let (code, s, err) = aws.json(&["scale", "ec2e", "--workers", "1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s["removed"].as_array().unwrap().len(), 2);
    assert_eq!(client(&env["env"], &["workers"])["workers"], 1);
    assert_eq!(live(&aws.moto.inspect("ec2e")["instances"]).len(), 2);

    let (code, _, err) = aws.json(&["down", "ec2e"]);
    assert_eq!(code, Some(0), "{err}");
    let held = aws.moto.inspect("ec2e");
    assert!(live(&held["instances"]).is_empty(), "{held}");
    assert_eq!(held["security_groups"], serde_json::json!([]));
    assert_eq!(held["ssm_parameters"], serde_json::json!([]), "{held}");
    assert_eq!(held["node_role"], Value::Null, "{held}");
    assert_eq!(held["instance_profile"], Value::Null, "{held}");
    assert!(aws.env.records().is_empty());
    assert!(agent.alive(), "the boot agent died");
    assert_eq!(
        agent.errors(),
        "",
        "the agent could not run what the user-data says"
    );
}

#[test]
fn down_and_list_work_from_tags_without_the_record() {
    let aws = Aws::new();
    let mut args = aws.up_args("orphan", "3");
    args.push("--no-wait");
    let (code, up, err, calls) = aws.json_counted(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(up["ready"], false);
    // The API budget of `up` (docs/benchmarks.md says why each call is needed): one lookup of
    // the name's security group, the subnet's VPC and its CIDR (`--private`), the image; the
    // group with both rules in one request; the nodes' role, profile and keys; one
    // RunInstances for the scheduler and one for all the workers.
    let want: BTreeMap<String, usize> = [
        ("STS:GetCallerIdentity", 1),
        ("EC2:DescribeSecurityGroups", 1),
        ("EC2:DescribeSubnets", 1),
        ("EC2:DescribeVpcs", 1),
        ("EC2:DescribeImages", 1),
        ("EC2:CreateSecurityGroup", 1),
        ("EC2:AuthorizeSecurityGroupIngress", 1),
        ("IAM:CreateRole", 1),
        ("IAM:PutRolePolicy", 1),
        ("IAM:CreateInstanceProfile", 1),
        ("IAM:AddRoleToInstanceProfile", 1),
        ("SSM:PutParameter", 2),
        ("EC2:RunInstances", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(calls, want, "the calls of `up --no-wait` with 3 workers");
    assert_eq!(live(&aws.moto.inspect("orphan")["instances"]).len(), 4);
    std::fs::remove_dir_all(aws.env.state_dir().join("clusters/orphan")).unwrap();

    let (code, list, err) = aws.json(&["list", "--provider", "aws", "--region", "us-east-1"]);
    assert_eq!(code, Some(0), "{err}");
    let found = list["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "orphan")
        .unwrap()
        .clone();
    assert_eq!(found["workers_running"], 3);
    assert_eq!(found["recorded_here"], false);

    let (code, _, err, calls) = aws.json_counted(&[
        "down",
        "orphan",
        "--provider",
        "aws",
        "--region",
        "us-east-1",
    ]);
    assert_eq!(code, Some(0), "{err}");
    // The role is deleted without listing its policies (it holds the one clusterctl put).
    for listing in ["IAM:ListRolePolicies", "IAM:ListAttachedRolePolicies"] {
        assert_eq!(calls.get(listing), None, "{calls:?}");
    }
    assert_eq!(calls.get("IAM:DeleteRolePolicy"), Some(&1), "{calls:?}");
    let held = aws.moto.inspect("orphan");
    assert!(live(&held["instances"]).is_empty(), "{held}");
    assert_eq!(held["security_groups"], serde_json::json!([]));
    // Idempotent.
    let (code, _, err) = aws.json(&[
        "down",
        "orphan",
        "--provider",
        "aws",
        "--region",
        "us-east-1",
    ]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_timeout_rolls_back_everything() {
    // No boot agent: the instances never run Dask, so readiness must time out and roll back.
    let aws = Aws::new();
    let mut args = aws.up_args("stuck", "2");
    let timeout_at = args.iter().position(|a| *a == "90s").unwrap();
    args[timeout_at] = "3s";
    let (code, v, err) = aws.json(&args);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out after 3s"),
        "{v}"
    );
    let held = aws.moto.inspect("stuck");
    assert_eq!(
        held["instances"].as_array().unwrap().len(),
        3,
        "the instances were created"
    );
    assert!(
        live(&held["instances"]).is_empty(),
        "and terminated by the rollback: {held}"
    );
    assert_eq!(held["security_groups"], serde_json::json!([]));
    assert!(aws.env.records().is_empty());
}

//! What creates nothing: a dry run shows the identity and the cloud-init, and `doctor` runs
//! EC2's own dry runs; a verbose `up` logs its requests without keys.

use serde_json::Value;

use crate::{Aws, common, live, user_data_files};

#[test]
fn dry_run_shows_identity_and_cloud_init_and_creates_nothing() {
    let aws = Aws::new();
    let mut args = aws.up_args("dry", "5");
    args.push("--dry-run");
    let (code, v, err) = aws.json(&args);
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
        assert_eq!(b["format"], "cloud-init");
        let text = b["text"].as_str().unwrap();
        assert!(text.starts_with("#cloud-config"));
        // What is shown is what would be sent: no key in it, the node fetches its key.
        let files = user_data_files(text);
        assert!(
            files
                .iter()
                .all(|(p, c)| !p.ends_with("-key.pem") && !c.contains("PRIVATE KEY"))
        );
        assert!(
            files
                .iter()
                .any(|(p, _)| p == "/etc/clusterctl/secrets.json")
        );
    }
    let resources = v["plan"]["resources"].to_string();
    assert!(
        resources.contains("clusterctl-dry-node")
            && resources.contains("/clusterctl-ec2/dry/scheduler-key.pem"),
        "{resources}"
    );
    let held = aws.moto.inspect("dry");
    assert_eq!(held["instances"], serde_json::json!([]));
    assert_eq!(held["security_groups"], serde_json::json!([]));
    assert_eq!(held["ssm_parameters"], serde_json::json!([]));
    assert_eq!(held["node_role"], Value::Null);
    assert!(aws.env.records().is_empty());
}

#[test]
fn doctor_dry_runs_and_verbose_up_logs_requests_without_keys() {
    let aws = Aws::new();
    let flags: Vec<&str> = aws.up_args("doc", "2")[1..].to_vec();

    // doctor: every check passes against moto, through EC2's own dry runs; nothing created.
    let mut args = vec!["doctor"];
    args.extend(&flags);
    let (code, v, err) = aws.json(&args);
    assert_eq!(code, Some(0), "{v} {err}");
    assert_eq!(v["ok"], true, "{v}");
    let checks = v["checks"].as_array().unwrap();
    let detail = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"].as_str().unwrap().contains(name))
            .unwrap_or_else(|| panic!("no check {name}: {v}"))["detail"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(detail("credentials").contains("123456789012"), "{v}");
    assert!(
        detail("security group").contains("would be allowed (dry run)"),
        "{v}"
    );
    assert!(
        detail("launch instances").contains("would be allowed (dry run)"),
        "{v}"
    );
    let held = aws.moto.inspect("doc");
    assert_eq!(held["instances"], serde_json::json!([]));
    assert_eq!(held["security_groups"], serde_json::json!([]));

    // A subnet that does not exist: that check fails with a hint, exit 1, nothing created.
    let mut bad = vec!["doctor"];
    bad.extend(&flags);
    let i = bad.iter().position(|a| *a == "--subnet").unwrap();
    bad[i + 1] = "subnet-0000000000000dead";
    let (code, v, err) = aws.json(&bad);
    assert_eq!(code, Some(1), "{v} {err}");
    assert_eq!(v["ok"], false);
    let failed = common::failed_checks(&v);
    assert_eq!(failed.len(), 1, "{v}");
    assert!(
        failed[0]["detail"]
            .as_str()
            .unwrap()
            .contains("subnet-0000000000000dead"),
        "{v}"
    );
    assert_eq!(
        aws.moto.inspect("doc")["security_groups"],
        serde_json::json!([])
    );

    // -vvv: every request on stderr (service, operation, status), the waits and the teardown;
    // no key, though PutParameter carried them; stdout still one JSON document.
    let mut up = aws.up_args("doc", "2");
    up.extend(["--no-wait", "-vvv"]);
    let (code, v, err) = aws.json(&up);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(v["name"], "doc", "stdout must stay JSON: {v}");
    for op in [
        "CreateSecurityGroup",
        "RunInstances",
        "PutParameter",
        "CreateRole",
    ] {
        assert!(
            err.lines().any(|l| l.contains("clusterctl::api")
                && l.contains(op)
                && l.contains("status=200")),
            "no request line for {op}:\n{err}"
        );
    }
    assert!(
        !err.contains("PRIVATE KEY") && !err.contains("BEGIN "),
        "key material in the log"
    );
    let (code, _, err) = aws.json(&["down", "doc", "-v"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("clusterctl::teardown") && err.contains("clusterctl::wait"),
        "{err}"
    );
    assert!(err.contains("TerminateInstances"), "{err}");
    let held = aws.moto.inspect("doc");
    assert!(live(&held["instances"]).is_empty(), "{held}");
    assert_eq!(held["security_groups"], serde_json::json!([]));

    // An unreadable filter is a usage error before anything runs.
    let out = aws
        .env
        .cmd()
        .args(["list"])
        .env("CLUSTERCTL_LOG", "clusterctl=loud")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CLUSTERCTL_LOG"));
}

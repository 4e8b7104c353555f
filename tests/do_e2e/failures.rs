//! What is refused, creating nothing: bad input exits 2, a dry run, the account's droplet limit
//! (before anything exists, or met midway and rolled back), and `doctor` with the limit and a
//! bad token.

use serde_json::{Value, json};

use crate::{Do, TOKEN, common};

#[test]
fn bad_input_exits_2_dry_run_and_quota_failure_leave_nothing() {
    let d = Do::new(&["--droplet-limit", "2"]);
    let refuse = |env_token: Option<&str>, extra: &[&str], needle: &str| {
        let mut args = Do::up_args("dob", "1");
        if extra.contains(&"--region") {
            // Replace the region of the common arguments.
            let at = args.iter().position(|a| *a == "--region").unwrap();
            args.drain(at..at + 2);
        }
        args.extend_from_slice(extra);
        let mut c = d.cmd_in(&d.env);
        match env_token {
            Some(t) => c.env("DIGITALOCEAN_TOKEN", t),
            None => c.env_remove("DIGITALOCEAN_TOKEN"),
        };
        let out = c.args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(needle), "{extra:?}: {needle} in {err}");
        assert!(err.contains("hint:"), "{extra:?}: {err}");
    };
    refuse(None, &[], "DIGITALOCEAN_TOKEN");
    refuse(Some(TOKEN), &["--region", "NYC-3"], "NYC-3");
    refuse(
        Some(TOKEN),
        &["--worker-size", "s-2vcpu-4gb"],
        "s-2vcpu-4gb",
    );
    refuse(Some(TOKEN), &["--region", "xyz9"], "xyz9");
    {
        // No --allow-cidr and not --private.
        let out = d
            .cmd_in(&d.env)
            .args([
                "up",
                "--provider",
                "digitalocean",
                "--region",
                "nyc3",
                "--name",
                "dob",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--allow-cidr"), "{err}");
    }

    // A dry run names the account, shows the cloud-init without keys, and warns about billing.
    let mut args = Do::up_args("dob", "1");
    args.push("--dry-run");
    let (code, plan, err) = d.json(&args);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(plan["dry_run"], true);
    let identity = plan["plan"]["identity"].as_str().unwrap_or_default();
    assert!(identity.contains('@'), "the account's e-mail: {plan}");
    let notes = plan["plan"]["notes"].to_string();
    assert!(
        notes.contains("billed"),
        "powered-off droplets are billed: {notes}"
    );
    let boot = plan["plan"]["bootstraps"][0]["text"].as_str().unwrap();
    assert!(boot.starts_with("#cloud-config"), "{boot}");
    assert!(
        !boot.contains("BEGIN PRIVATE KEY"),
        "keys elided in the dry run"
    );

    // Nothing was created by any of them.
    let posts: Vec<Value> = d
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .collect();
    assert!(
        posts.is_empty(),
        "refused input created something: {posts:?}"
    );

    // The account allows 2 droplets: a cluster of 3 is refused before anything is created, as
    // a quota error (exit 1) that names the limit.
    let (code, out, err) = d.json(&Do::up_args("doq", "2"));
    assert_eq!(code, Some(1), "{err}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("quota") && message.contains("droplet limit") && message.contains('2'),
        "{out}"
    );
    assert!(
        d.sim.requests().iter().all(|r| r["method"] == "GET"),
        "nothing is created for a cluster over the limit"
    );

    // The limit is reached while the workers are created (another client made droplets in the
    // meantime): `up` reports the quota (exit 1) and removes the scheduler it had created.
    d.sim.fault(
        json!({"method": "POST", "path": "^/v2/droplets$", "after": 1, "count": 1,
        "status": 422, "body": {"id": "unprocessable_entity",
        "message": "creating this/these droplet(s) will exceed your droplet limit"}}),
    );
    let (code, out, err) = d.json(&Do::up_args("doq", "1"));
    assert_eq!(code, Some(1), "{err}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("quota"), "{out}");
    assert!(
        d.sim.inventory()["deleted_droplets"]
            .to_string()
            .contains("doq-scheduler"),
        "the scheduler was created, then rolled back"
    );
    d.assert_nothing_left("doq");
}

#[test]
fn doctor_reports_the_account_the_limit_and_a_bad_token_creating_nothing() {
    let d = Do::new(&["--droplet-limit", "3"]);
    let doctor = |workers: &str, token: &str| {
        let mut args = vec!["doctor"];
        args.extend(&Do::up_args("dodoc", workers)[1..]);
        let out = d
            .cmd_in(&d.env)
            .env("DIGITALOCEAN_TOKEN", token)
            .args(&args)
            .args(["--output", "json"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (
            out.status.code(),
            v,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, v, err) = doctor("2", TOKEN);
    assert_eq!(code, Some(0), "{v} {err}");
    assert!(common::failed_checks(&v).is_empty(), "{v}");
    // The account's droplet limit against what `up` would create (1 + 5 > 3).
    let (code, v, err) = doctor("5", TOKEN);
    assert_eq!(code, Some(1), "{v} {err}");
    let f = common::failed_checks(&v);
    assert_eq!(f.len(), 1, "{v}");
    assert!(f[0]["detail"].as_str().unwrap().contains("limit"), "{v}");
    // A token the API refuses.
    let (code, v, err) = doctor("2", "dop_v1_not-a-valid-token");
    assert_eq!(code, Some(1), "{v} {err}");
    assert_eq!(common::failed_checks(&v).len(), 1, "{v}");
    assert!(
        common::failed_checks(&v)[0]["hint"].as_str().is_some(),
        "{v}"
    );
    // Read-only: not one creating request reached the API.
    let writes: Vec<Value> = d
        .sim
        .requests()
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    d.assert_nothing_left("dodoc");
}

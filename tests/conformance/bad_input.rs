//! Bad input: every provider's `up` refuses at least 25 bad values, flags, config keys and
//! combinations with exit 2, a message naming the value and the fix, and no mutating request
//! on the platform (its own request log) and nothing held.

use crate::{
    common::Env,
    platform::{Platform, leaks, mutating_since, outcome},
    providers::Provider,
};

/// One bad input: how it changes a good `up` command line, an optional config file, and what
/// stderr must contain.
struct Bad {
    /// Flags set (replacing the good value when the command line has the flag) or added.
    set: Vec<(String, Option<String>)>,
    config: Option<&'static str>,
    needles: Vec<String>,
}

fn set(flag: &str, value: &str, needles: &[&str]) -> Bad {
    Bad {
        set: vec![(flag.into(), Some(value.into()))],
        config: None,
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

fn config(text: &'static str, needles: &[&str]) -> Bad {
    Bad {
        set: Vec::new(),
        config: Some(text),
        needles: needles.iter().map(|s| s.to_string()).collect(),
    }
}

/// The bad inputs every provider refuses alike.
fn common_inputs() -> Vec<Bad> {
    let long = "a".repeat(80);
    vec![
        set("--workers", "-1", &["`-1`", "cannot be negative"]),
        set("--workers", "many", &["`many`"]),
        set("--name", "Not_Valid", &["`Not_Valid`"]),
        set("--name", Box::leak(long.into_boxed_str()), &["aaaaaaaaaa"]),
        set("--ttl", "soon", &["`soon`"]),
        set("--ttl", "100y", &["`100y`", "7days"]),
        set("--idle-timeout", "30d", &["`30d`", "7days"]),
        set("--timeout", "1000000y", &["`1000000y`", "1day"]),
        set("--timeout", "whenever", &["`whenever`"]),
        set("--worker-memory", "100TiB", &["`100TiB`", "24TiB"]),
        set("--worker-memory", "lots", &["`lots`"]),
        set("--worker-cpus", "-2", &["`-2`"]),
        set("--scheduler-cpus", "abc", &["`abc`"]),
        set("--wait-workers", "5", &["`5`", "more than the 2 workers"]),
        set("--timeout", "0s", &["`0s`"]),
        set("--ttl", "1s", &["`1s`"]),
        set("--tag", "k", &["`k`", "K=V"]),
        set(
            "--tag",
            "clusterctl-owner=me",
            &["`clusterctl-owner`", "reserved"],
        ),
        set("--scheduler-memory", "2XB", &["`2XB`"]),
        set("--env", "AWS_SECRET_ACCESS_KEY=x", &["credential"]),
        set("--env", "NOEQUALS", &["`NOEQUALS`"]),
        set("--tag", "=x", &["tag key ``"]),
        set("--wait-workers", "150%", &["`150%`"]),
        set("--provider", "nimbus", &["`nimbus`"]),
        set("--output", "xml", &["xml"]),
        set("--dask-version", "banana", &["`banana`"]),
        Bad {
            set: vec![("--frobnicate".into(), None)],
            config: None,
            needles: vec!["--frobnicate".into()],
        },
        config("wrokers: 3\n", &["clusterctl.yaml", "wrokers", "line 1"]),
        config("workers: [1, 2\n", &["clusterctl.yaml"]),
        config("ttl: 100y\n", &["`100y`"]),
        Bad {
            set: vec![("--config".into(), Some("missing.yaml".into()))],
            config: None,
            needles: vec!["missing.yaml".into(), "cannot be read".into()],
        },
    ]
}

/// `good` with `bad`'s flags applied.
fn apply(good: &[String], bad: &Bad) -> Vec<String> {
    let mut args = good.to_vec();
    for (flag, value) in &bad.set {
        let at = args.iter().position(|a| a == flag);
        match (at, value) {
            // `--flag=-2`: a value starting with `-` is not taken for a flag.
            (Some(i), Some(v)) if v.starts_with('-') => {
                args.drain(i..=i + 1);
                args.push(format!("{flag}={v}"));
            }
            (Some(i), Some(v)) => args[i + 1] = v.clone(),
            (None, Some(v)) if v.starts_with('-') => args.push(format!("{flag}={v}")),
            (None, Some(v)) => args.extend([flag.clone(), v.clone()]),
            (_, None) => args.push(flag.clone()),
        }
    }
    args
}

pub fn bad_input_is_refused(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    let baseline = p.holdings(&env);
    let good = p.up_args("cfbad", 2);
    let (mut cases, specific) = (common_inputs(), p.bad_inputs());
    for (args, needles) in specific {
        let mut b = Bad {
            set: Vec::new(),
            config: None,
            needles,
        };
        for pair in args.chunks(2) {
            b.set.push((pair[0].clone(), pair.get(1).cloned()));
        }
        cases.push(b);
    }
    assert!(cases.len() >= 25, "{} bad inputs only", cases.len());
    let from = p.requests().len();
    let config_file = env.dir.path().join("clusterctl.yaml");
    let mut failures = Vec::new();
    for bad in &cases {
        let args = apply(&good, bad);
        match bad.config {
            Some(text) => std::fs::write(&config_file, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&config_file);
            }
        }
        let before = p.requests().len();
        let (code, stderr) = outcome(&p.cmd(&env).args(&args).output().unwrap());
        let mutated = mutating_since(p, before);
        let missing: Vec<&String> = bad
            .needles
            .iter()
            .filter(|n| !stderr.contains(*n))
            .collect();
        // The fix: our `hint:`, or clap's `tip:`/`--help` for what clap itself refuses.
        // (or the form the value must take).
        let fix = ["hint:", "tip:", "--help", "of the form"]
            .iter()
            .any(|h| stderr.contains(h));
        if code != Some(2) || !missing.is_empty() || !fix || !mutated.is_empty() {
            failures.push(format!(
                "{:?}{}: exit {code:?}, missing {missing:?}{}, mutating requests {mutated:?}\n    {}",
                bad.set,
                bad.config.map(|c| format!(" config {c:?}")).unwrap_or_default(),
                if fix { "" } else { ", no fix named" },
                stderr.trim().replace('\n', "\n    ")
            ));
        }
    }
    let _ = std::fs::remove_file(&config_file);
    let mutated = mutating_since(p, from);
    let left = leaks(p, &env, &baseline);
    if !left.is_empty() {
        // A bad input that created a cluster: remove it before failing.
        let _ = crate::platform::down(p, &env, "cfbad");
    }
    eprintln!(
        "[conformance] {}: {} bad inputs, {} refused as required",
        p.provider(),
        cases.len(),
        cases.len() - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{}: bad inputs not refused as required:\n{}",
        p.provider(),
        failures.join("\n")
    );
    assert!(
        mutated.is_empty(),
        "mutating requests for bad input: {mutated:?}"
    );
    assert!(left.is_empty(), "held after bad input: {left:?}");
    assert_eq!(env.records(), Vec::<String>::new());
}

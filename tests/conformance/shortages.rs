//! Capacity and quota: the platform has no capacity for anything `up` may launch there, then
//! (another cluster) a quota below what the cluster needs. `up` exits 1 with the typed error
//! (`error.kind`, the platform's code or the quota named in the message), after removing all it
//! made: nothing is left on the platform, nothing is listed, and the name is free again once the
//! shortage is over.

use serde_json::Value;

use crate::{
    common::Env,
    platform::{Platform, Shortage, down, leaks, listed, mutating_since, outcome, run},
    providers::Provider,
};

pub fn shortages(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    if p.short_of(None).is_none() {
        eprintln!(
            "[conformance] {}: no capacity or quota to run short of (its nodes are local processes)",
            p.provider()
        );
        return;
    }
    let baseline = p.holdings(&env);
    p.boot_nodes();
    for (shortage, name) in [
        (Shortage::Capacity, "cfnocap"),
        (Shortage::Quota, "cfquota"),
    ] {
        let want = p.short_of(Some(shortage)).unwrap();
        let from = p.requests().len();
        let out = run(p, &env, &p.up_args(name, want.workers));
        p.short_of(None);
        let (code, err) = outcome(&out);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        assert_eq!(code, Some(1), "up short of {shortage:?}: {err}");
        assert_eq!(
            v["error"]["kind"], want.kind,
            "up short of {shortage:?}: {v}\n{err}"
        );
        let message = v["error"]["message"].as_str().unwrap_or_default();
        for needle in &want.needles {
            assert!(
                message.contains(needle.as_str()),
                "up short of {shortage:?}: `{needle}` is not in its message: {message}"
            );
        }
        assert_eq!(
            v["error"]["left_behind"],
            serde_json::json!([]),
            "up short of {shortage:?} says it left something: {v}"
        );
        let made = mutating_since(p, from);
        let left = leaks(p, &env, &baseline);
        assert!(
            left.is_empty(),
            "left after up short of {shortage:?} ({} mutating requests: {made:?}): {left:?}",
            made.len()
        );
        // No record and nothing on the platform: `list` knows nothing of it.
        let clusters = listed(p, &env);
        assert!(
            !clusters.contains_key(name),
            "{name} is still listed: {clusters:?}"
        );
        eprintln!(
            "[conformance] {}: short of {shortage:?}: exit 1, kind {}, {} mutating request(s) (the launch and its rollback): {message}",
            p.provider(),
            want.kind,
            made.len()
        );
    }

    // The shortage over, the name is free: no claim or record of the failed launch is in the way.
    let mut up = p.up_args("cfquota", 1);
    up.push("--no-wait".into());
    let (code, err) = outcome(&run(p, &env, &up));
    assert_eq!(code, Some(0), "up once the shortage is over: {err}");
    let (code, err) = outcome(&down(p, &env, "cfquota"));
    assert_eq!(code, Some(0), "down: {err}");
    let left = leaks(p, &env, &baseline);
    assert!(left.is_empty(), "left after the last down: {left:?}");
    let errors = p.errors();
    assert!(
        errors.trim().is_empty(),
        "the platform refused requests: {errors}"
    );
}

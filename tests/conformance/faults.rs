//! Faults: 30% of clusterctl's API requests answered with the platform's throttling error, then
//! (another cluster) 10% with its server error, mutating requests included, in the platform's
//! own format and unprocessed: a waiting `up` still reaches readiness, `down` still leaves
//! nothing, and the retries show in the request counts.

use crate::{
    common::Env,
    platform::{Fault, Platform, down, leaks, outcome, run},
    providers::Provider,
};

pub fn faults(provider: Provider) {
    let dir = tempfile::tempdir().unwrap();
    let p = provider.start(dir.path());
    let p: &dyn Platform = p.as_ref();
    let env = Env::new();
    if !p.inject(None) {
        eprintln!(
            "[conformance] {}: no platform API to fault (its nodes are local processes)",
            p.provider()
        );
        return;
    }
    let baseline = p.holdings(&env);
    p.boot_nodes();
    for (fault, rate, name) in [
        (Fault::Throttle, 0.3, "cfthrottle"),
        (Fault::Server, 0.1, "cferrors"),
    ] {
        let from = p.requests().len();
        assert!(p.inject(Some((fault, rate))));
        let (code, err) = outcome(&run(p, &env, &p.up_args(name, 2)));
        let fired_up = p.faults_fired();
        assert_eq!(
            code,
            Some(0),
            "`up` with {rate} of its requests answered {fault:?} ({fired_up} were): {err}"
        );
        let (code, err) = outcome(&down(p, &env, name));
        let fired = p.faults_fired();
        p.inject(None);
        assert_eq!(
            code,
            Some(0),
            "`down` with {rate} of its requests answered {fault:?}: {err}"
        );
        let total = p.requests().len() - from;
        assert!(
            fired > 0 && fired_up > 0,
            "no request of `up` or `down` was faulted ({fired_up} of up, {fired} in all, {total} requests)"
        );
        let left = leaks(p, &env, &baseline);
        assert!(left.is_empty(), "left after {fault:?} faults: {left:?}");
        eprintln!(
            "[conformance] {}: {fault:?} on {:.0}% of requests: `up` and `down` made {total} requests, {fired} answered with the fault and retried",
            p.provider(),
            rate * 100.0
        );
    }
    let errors = p.errors();
    assert!(
        errors.trim().is_empty(),
        "the platform refused requests: {errors}"
    );
}

//! The conformance suite (issue 10): the same scenarios for every provider, judged on what the
//! platform itself holds and the requests it received, never on clusterctl's own account.
//!
//! - crash at every step: `up` SIGKILLed after each of its mutating requests, `down` from
//!   another machine, nothing left (`conformance/crash.rs`);
//! - bad input: at least 25 refusals per provider, exit 2, the value and the fix named, no
//!   mutating request (`conformance/bad_input.rs`);
//! - races: `down` twice at once, `down` during `up`, `scale` during `down`
//!   (`conformance/races.rs`);
//! - signals: SIGINT and SIGTERM at each phase of `up` (`conformance/signals.rs`);
//! - faults: 30% throttling, then 10% server errors, on every request: `up` ready, `down`
//!   clean (`conformance/faults.rs`);
//! - gc: expired clusters (half-made ones included) removed, live ones untouched
//!   (`conformance/gc.rs`);
//! - shortages: no capacity anywhere `up` may launch, then a quota too small: exit 1 with the
//!   typed error, nothing left, the name free again (`conformance/shortages.rs`);
//! - TTL: a cluster's billing ends at its TTL with no clusterctl running, judged on the
//!   platform's inventory (`conformance/ttl.rs`).
//!
//! The table of providers is `conformance/providers.rs`; `conformance/platform.rs` says what a
//! provider must tell the suite. See tests/README.md ("The conformance suite").

#[path = "conformance/bad_input.rs"]
mod bad_input;
mod common;
#[path = "conformance/crash.rs"]
mod crash;
#[path = "conformance/faults.rs"]
mod faults;
#[path = "conformance/gc.rs"]
mod gc;
#[path = "conformance/platform.rs"]
mod platform;
#[path = "conformance/providers.rs"]
mod providers;
#[path = "conformance/races.rs"]
mod races;
#[path = "conformance/shortages.rs"]
mod shortages;
#[path = "conformance/signals.rs"]
mod signals;
#[path = "conformance/ttl.rs"]
mod ttl;

use providers::Provider;

macro_rules! per_provider {
    ($scenario:path => $($test:ident: $provider:expr),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                $scenario($provider);
            }
        )*
    };
}

per_provider!(crash::crash_at_every_step =>
    crash_local: Provider::Local,
    crash_aws: Provider::Aws,
    crash_fargate: Provider::Fargate,
    crash_kubernetes: Provider::Kubernetes,
    crash_digitalocean: Provider::DigitalOcean,
    crash_azure: Provider::Azure,
    crash_gcp: Provider::Gcp,
);

/// A waiting `up` of a name taken down before: ECS lists the earlier cluster's stopped tasks
/// for an hour (moto: until it stops), and they must not count as the new cluster's nodes.
#[test]
fn recreate_fargate() {
    crash::recreate(Provider::Fargate);
}

per_provider!(bad_input::bad_input_is_refused =>
    bad_input_local: Provider::Local,
    bad_input_aws: Provider::Aws,
    bad_input_fargate: Provider::Fargate,
    bad_input_kubernetes: Provider::Kubernetes,
    bad_input_digitalocean: Provider::DigitalOcean,
    bad_input_azure: Provider::Azure,
    bad_input_gcp: Provider::Gcp,
);

per_provider!(races::races =>
    races_local: Provider::Local,
    races_aws: Provider::Aws,
    races_fargate: Provider::Fargate,
    races_kubernetes: Provider::Kubernetes,
    races_digitalocean: Provider::DigitalOcean,
    races_azure: Provider::Azure,
    races_gcp: Provider::Gcp,
);

per_provider!(signals::signals =>
    signals_local: Provider::Local,
    signals_aws: Provider::Aws,
    signals_fargate: Provider::Fargate,
    signals_kubernetes: Provider::Kubernetes,
    signals_digitalocean: Provider::DigitalOcean,
    signals_azure: Provider::Azure,
    signals_gcp: Provider::Gcp,
);

/// Run `scenario` on every provider at once, each in its own thread (and network sandbox): for
/// the scenarios that mostly wait for a one-minute TTL, which one after the other would sleep
/// for minutes. Fails with every provider's failure. `CONFORMANCE_PROVIDERS=gcp,azure` runs
/// those only (when rerunning one by hand).
fn every_provider_at_once(scenario: fn(Provider)) {
    use Provider::*;
    let only = std::env::var("CONFORMANCE_PROVIDERS").unwrap_or_default();
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = [Local, Aws, Fargate, Kubernetes, DigitalOcean, Azure, Gcp]
            .into_iter()
            .filter(|p| {
                only.is_empty()
                    || only
                        .split(',')
                        .any(|o| o.trim().eq_ignore_ascii_case(&format!("{p:?}")))
            })
            .map(|p| (p, s.spawn(move || scenario(p))))
            .collect();
        runs.into_iter()
            .filter_map(|(p, run)| {
                run.join().err().map(|e| {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("{p:?}: {why}")
                })
            })
            .collect()
    });
    assert!(
        failures.is_empty(),
        "failed on {} provider(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn gc_every_provider() {
    every_provider_at_once(gc::gc_removes_expired_only);
}

#[test]
fn ttl_every_provider() {
    every_provider_at_once(ttl::ttl_ends_billing);
}

per_provider!(faults::faults =>
    faults_local: Provider::Local,
    faults_aws: Provider::Aws,
    faults_fargate: Provider::Fargate,
    faults_kubernetes: Provider::Kubernetes,
    faults_digitalocean: Provider::DigitalOcean,
    faults_azure: Provider::Azure,
    faults_gcp: Provider::Gcp,
);

per_provider!(shortages::shortages =>
    shortages_local: Provider::Local,
    shortages_aws: Provider::Aws,
    shortages_fargate: Provider::Fargate,
    shortages_kubernetes: Provider::Kubernetes,
    shortages_digitalocean: Provider::DigitalOcean,
    shortages_azure: Provider::Azure,
    shortages_gcp: Provider::Gcp,
);

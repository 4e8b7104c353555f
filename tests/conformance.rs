//! The conformance suite (issue 10): the same scenarios for every provider, judged on what the
//! platform itself holds and the requests it received, never on clusterctl's own account.
//!
//! - crash at every step: `up` SIGKILLed after each of its mutating requests, `down` from
//!   another machine, nothing left (`conformance/crash.rs`);
//! - bad input: at least 25 refusals per provider, exit 2, the value and the fix named, no
//!   mutating request (`conformance/bad_input.rs`);
//! - races: `down` twice at once, `down` during `up`, `scale` during `down`
//!   (`conformance/races.rs`);
//! - signals: SIGINT and SIGTERM at each phase of `up` (`conformance/signals.rs`).
//!
//! The table of providers is `conformance/providers.rs`; `conformance/platform.rs` says what a
//! provider must tell the suite. See tests/README.md ("The conformance suite").

#[path = "conformance/bad_input.rs"]
mod bad_input;
mod common;
#[path = "conformance/crash.rs"]
mod crash;
#[path = "conformance/platform.rs"]
mod platform;
#[path = "conformance/providers.rs"]
mod providers;
#[path = "conformance/races.rs"]
mod races;
#[path = "conformance/signals.rs"]
mod signals;

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
);

#[test]
#[ignore = "gcp: `up` killed right after `instances.bulkInsert` (the workers) was answered, `down` from another machine exits 0 but both worker VMs' processes still run 30 s later while the simulator lists no instance (a leak, or the simulator booting a VM whose delete already ran: not yet told apart); every other crash point passes; issue 10"]
fn crash_gcp() {
    crash::crash_at_every_step(Provider::Gcp);
}

#[test]
#[ignore = "fargate: a waiting `up` of a name taken down before fails: it takes the stopped scheduler task of the previous cluster (ECS lists stopped tasks for an hour) for its own, `scheduler node failed: it is terminated`; issue 10"]
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

#[test]
#[ignore = "aws: a region that cannot exist (`mars-1`) is sent to the API and fails with exit 1 after retries instead of exit 2 up front; issue 10"]
fn bad_input_known_gaps_aws() {
    bad_input::known_gaps(Provider::Aws);
}

#[test]
#[ignore = "fargate: a region that cannot exist (`mars-1`) is sent to the API and fails with exit 1 after retries instead of exit 2 up front; issue 10"]
fn bad_input_known_gaps_fargate() {
    bad_input::known_gaps(Provider::Fargate);
}

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

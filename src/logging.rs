//! Diagnostics on stderr through `tracing` (`-v`, `CLUSTERCTL_LOG`): what clusterctl is doing
//! when a CI job hangs or fails oddly. Off unless asked for; results on stdout are unaffected.
//!
//! Targets: `clusterctl::api` (every platform request: service, operation or path, status,
//! duration, retries and why), `clusterctl::wait` (each wait, its deadline and every poll's
//! outcome), `clusterctl::retry`, `clusterctl::rollback`, `clusterctl::teardown`, and the
//! crates' own module paths. No event carries a request or answer body, a token or a key.

use tracing_subscriber::{EnvFilter, fmt};

/// The environment variable with filter directives (`EnvFilter` syntax).
pub const LOG_ENV: &str = "CLUSTERCTL_LOG";

/// The filter for `-v` repeated `verbose` times; `None` for no diagnostics.
///
/// Dependencies are capped at `debug`: the AWS SDK's `trace` events include the request being
/// signed, and the verbosity flags must never print what a request carries.
pub fn directives(verbose: u8) -> Option<&'static str> {
    match verbose {
        0 => None,
        // Our events, and kube's one span per HTTP request (method and URL).
        1 => Some("clusterctl=debug,kube_client::client::builder=debug"),
        2 => Some("info,clusterctl=trace,kube_client::client::builder=debug"),
        _ => Some("debug,clusterctl=trace"),
    }
}

/// Install the stderr subscriber when `-v` or [`LOG_ENV`] asks for one. An unreadable
/// `CLUSTERCTL_LOG` is a usage error (exit 2), said before anything runs.
pub fn init(verbose: u8) -> Result<(), clusterctl_core::Error> {
    let from_env = std::env::var(LOG_ENV).ok().filter(|v| !v.trim().is_empty());
    let filter = match (&from_env, directives(verbose)) {
        (Some(text), _) => {
            EnvFilter::try_new(text).map_err(|e| clusterctl_core::Error::InvalidInput {
                what: "CLUSTERCTL_LOG",
                value: text.clone(),
                reason: e.to_string(),
                hint: Some(
                    "use filter directives such as `debug`, `clusterctl=debug` or \
                     `clusterctl::api=debug,clusterctl::wait=trace`, or unset it and pass -v"
                        .into(),
                ),
            })?
        }
        (None, Some(d)) => EnvFilter::new(d),
        (None, None) => return Ok(()),
    };
    fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_timer(fmt::time::uptime())
        .with_target(true)
        .init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verbosity_is_a_valid_filter_and_caps_dependencies() {
        assert_eq!(directives(0), None);
        for v in 1..=4 {
            let d = directives(v).expect("a filter");
            EnvFilter::try_new(d).expect("valid directives");
            // Nothing at `trace` for the dependencies, whose trace events show request contents.
            let global = d.split(',').find(|p| !p.contains('='));
            assert_ne!(
                global,
                Some("trace"),
                "-{} must not trace dependencies",
                "v".repeat(v as usize)
            );
        }
        assert!(directives(1).unwrap().contains("clusterctl=debug"));
    }
}

//! The conformance table: one `Platform` per provider (how to start its emulator or simulator,
//! the flags `up` needs there, what the platform holds, its mutating-request log and gate).
//! A new provider joins by adding a variant to `Provider` and a `Platform` here.

use std::path::Path;

use crate::platform::Platform;

#[path = "providers/aws.rs"]
mod aws;
#[path = "providers/kube.rs"]
mod kube;
#[path = "providers/local.rs"]
mod local;
#[path = "providers/rest.rs"]
mod rest;

use aws::Aws;
use kube::Kube;
use local::Local;
use rest::Rest;

/// Every provider the suite covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Local,
    Aws,
    Fargate,
    Kubernetes,
    DigitalOcean,
    Azure,
    Gcp,
}

impl Provider {
    /// Start the provider's platform under `dir` (inside a fresh network sandbox where its
    /// machines need one).
    pub fn start(self, dir: &Path) -> Box<dyn Platform> {
        match self {
            Provider::Local => Box::new(Local::start(dir)),
            Provider::Aws | Provider::Fargate => Box::new(Aws::start(self, dir)),
            Provider::Kubernetes => Box::new(Kube::start(dir)),
            Provider::DigitalOcean | Provider::Azure | Provider::Gcp => {
                Box::new(Rest::start(self, dir))
            }
        }
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mutating_method(m: &str) -> bool {
    matches!(m, "POST" | "PUT" | "PATCH" | "DELETE")
}

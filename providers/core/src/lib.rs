//! clusterctl-core: everything that is the same on every provider.
//!
//! The binary (`src/` at the workspace root) parses input and prints results; each provider crate
//! under `providers/` talks to one platform. This crate sits between them and owns:
//!
//! - [`provider`]: the [`ClusterProvider`] trait every platform implements;
//! - [`model`]: what a cluster is (spec in, nodes and endpoints out) and its validated names;
//! - [`tags`]: the tag set that makes `down`, `status` and `list` work from the platform alone;
//! - [`bootstrap`]: the boot intent of a node (command, env, files) and its rendering to cloud-init;
//! - [`expiry`]: a provider's end-of-life step for the scheduler at the TTL (Azure's self-deletion);
//! - [`container`]: the same intent as a container command, environment and secret environment;
//! - [`tls`]: the per-cluster CA and the scheduler, worker and client certificates;
//! - [`health`]: readiness probes in Dask terms (dashboard `/health`, workers joined);
//! - [`wait`] and [`retry`]: deadlines for every wait, jittered backoff for every throttled call;
//! - `rest` (Cargo feature `rest`): the JSON-over-HTTPS client of the REST clouds, and
//!   [`api_log`], the request log every platform client writes for benchmarks;
//! - [`lifecycle`]: `up` with rollback, readiness and `scale` over any provider;
//! - [`teardown`]: `down`, what it knows besides the listing, and what it says it leaves;
//! - [`jwt`]: PEM blocks, RSA keys and RS256-signed JWTs for self-signed credential assertions;
//! - [`sshkey`]: throwaway SSH public keys for clouds that demand a login credential;
//! - [`record`]: the local record of a cluster (atomic, 0600, locked);
//! - [`error`]: the typed errors, their exit codes and `hint:` lines.

pub mod api_log;
pub mod bootstrap;
pub mod concurrent;
pub mod container;
pub mod doctor;
pub mod error;
pub mod expiry;
pub mod health;
pub mod jwt;
pub mod lifecycle;
pub mod model;
pub mod provider;
pub mod readiness;
pub mod record;
#[cfg(feature = "rest")]
pub mod rest;
pub mod retry;
pub mod sshkey;
pub mod tags;
pub mod teardown;
pub mod tls;
pub mod wait;

#[cfg(test)]
mod fake;

pub use error::{Error, Result};
pub use model::{ClusterName, ClusterSpec, Node, NodeState, ProviderKind, Role};
pub use provider::ClusterProvider;

/// The Dask release clusterctl pins, for the local runtime and the container images alike.
pub const DASK_VERSION: &str = "2026.8.0";

/// The container image of [`DASK_VERSION`] that VMs, tasks and pods run unless `--image` says otherwise.
pub fn default_image(dask_version: &str) -> String {
    format!("ghcr.io/dask/dask:{dask_version}-py3.12")
}

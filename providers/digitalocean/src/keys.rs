//! The per-cluster throwaway SSH key. A droplet created without `ssh_keys` makes DigitalOcean
//! e-mail a root password for it; with a key it does not. So unless the user names their own
//! keys, `bootstrap` registers a fresh ed25519 public key named `clusterctl-NAME`
//! (`clusterctl_core::sshkey`: the private half is dropped at once, never written or logged):
//! nobody can log in with it, and it exists only to stop those e-mails. `cleanup` deletes it.

use clusterctl_core::{Result, model::ClusterName, model::ProviderKind};

/// The name of a cluster's throwaway key (and of its firewall).
pub fn key_name(cluster: &ClusterName) -> String {
    format!("clusterctl-{cluster}")
}

/// A fresh ed25519 key pair's public key line; the private key is dropped before this returns.
pub fn throwaway_public_key(comment: &str) -> Result<String> {
    clusterctl_core::sshkey::throwaway_public_key(ProviderKind::Digitalocean, comment)
}

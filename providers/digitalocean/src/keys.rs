//! The per-cluster throwaway SSH key's material. A droplet created without `ssh_keys` makes
//! DigitalOcean e-mail a root password for it; with a key it does not. So `bootstrap` registers
//! a fresh ed25519 public key (`clusterctl_core::sshkey`: the private half is dropped at once,
//! never written or logged): nobody can log in with it. It is also the claim of the cluster's
//! name, which is why it exists even when the user names their own keys (`claim.rs`).

use clusterctl_core::{Result, model::ProviderKind};

/// A fresh ed25519 key pair's public key line; the private key is dropped before this returns.
pub fn throwaway_public_key(comment: &str) -> Result<String> {
    clusterctl_core::sshkey::throwaway_public_key(ProviderKind::Digitalocean, comment)
}

//! Throwaway SSH keys: an ed25519 public key in OpenSSH form whose private half is dropped at
//! once, never written or logged. Clouds that insist on a login credential for a Linux VM
//! (DigitalOcean e-mails a root password without a key; Azure refuses a VM with neither key nor
//! password) get this, so nobody can log in and no password exists.

use base64::Engine as _;

use crate::{Error, Result, model::ProviderKind};

/// The OpenSSH public key line of a raw 32-byte ed25519 public key: `ssh-ed25519 <base64 of
/// string "ssh-ed25519", string key> comment`, each string a big-endian u32 length and bytes.
pub fn openssh_ed25519(public: &[u8], comment: &str) -> String {
    const ALG: &[u8] = b"ssh-ed25519";
    let mut blob = Vec::with_capacity(4 + ALG.len() + 4 + public.len());
    for part in [ALG, public] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    format!(
        "ssh-ed25519 {} {comment}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

/// A fresh ed25519 key pair's public key line; the private key is dropped before this returns.
pub fn throwaway_public_key(provider: ProviderKind, comment: &str) -> Result<String> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| Error::Provider {
        provider,
        operation: "generating the throwaway SSH key".into(),
        message: e.to_string(),
    })?;
    let line = openssh_ed25519(pair.public_key_raw(), comment);
    drop(pair);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openssh_line_has_the_wire_format() {
        let line = openssh_ed25519(&[7u8; 32], "clusterctl-ci");
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], "ssh-ed25519");
        assert_eq!(parts[2], "clusterctl-ci");
        let blob = base64::engine::general_purpose::STANDARD
            .decode(parts[1])
            .unwrap();
        assert_eq!(&blob[..4], &[0, 0, 0, 11]);
        assert_eq!(&blob[4..15], b"ssh-ed25519");
        assert_eq!(&blob[15..19], &[0, 0, 0, 32]);
        assert_eq!(&blob[19..], &[7u8; 32]);
        // Every ed25519 key line starts the same way.
        assert!(parts[1].starts_with("AAAAC3NzaC1lZDI1NTE5AAAAI"), "{line}");
    }

    #[test]
    fn throwaway_keys_are_fresh_and_public_only() {
        let a = throwaway_public_key(ProviderKind::Azure, "c").unwrap();
        let b = throwaway_public_key(ProviderKind::Azure, "c").unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI"));
        assert!(!a.contains("PRIVATE"));
    }
}

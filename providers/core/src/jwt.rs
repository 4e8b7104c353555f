//! Signed JWTs for the clouds whose credentials sign their own assertions (Azure's client
//! certificate; Google's service-account key signs the same way): PEM blocks, RSA private keys
//! in PKCS#8 or PKCS#1 DER, RS256 signatures with `aws-lc-rs` (the crypto provider of the whole build),
//! base64url, and the SHA-1 thumbprint a certificate is known by.

use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use serde_json::Value;

/// Why a key could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The DER is not an RSA private key of the expected form.
    #[error("not an RSA private key ({form}): {reason}")]
    BadKey {
        /// `PKCS#8` or `PKCS#1`.
        form: &'static str,
        /// What `aws-lc-rs` said.
        reason: String,
    },
    /// Signing failed.
    #[error("signing failed")]
    Sign,
}

/// base64url without padding (JWT's encoding).
pub fn b64url(data: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(data)
}

/// The blocks of a PEM text in order: (label, DER). Text outside the blocks (e.g. the
/// `Bag Attributes` lines `openssl pkcs12` writes) is ignored; a block whose body is not
/// base64 is skipped.
pub fn pem_blocks(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if line.starts_with("-----END ") {
            if let Some((label, body)) = current.take()
                && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body)
            {
                out.push((label, der));
            }
        } else if let Some((_, body)) = current.as_mut()
            && !line.contains(':')
        {
            body.push_str(line);
        }
    }
    out
}

/// The SHA-1 digest of `der` (a certificate's thumbprint; `x5t` is its base64url).
pub fn sha1(der: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .to_vec()
}

/// An RSA private key that signs RS256.
#[derive(Debug)]
pub struct RsaSigner {
    key: RsaKeyPair,
}

impl RsaSigner {
    /// From a PKCS#8 `PRIVATE KEY`.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, JwtError> {
        RsaKeyPair::from_pkcs8(der)
            .map(|key| RsaSigner { key })
            .map_err(|e| JwtError::BadKey {
                form: "PKCS#8",
                reason: e.to_string(),
            })
    }

    /// From a PKCS#1 `RSA PRIVATE KEY`.
    pub fn from_pkcs1(der: &[u8]) -> Result<Self, JwtError> {
        RsaKeyPair::from_der(der)
            .map(|key| RsaSigner { key })
            .map_err(|e| JwtError::BadKey {
                form: "PKCS#1",
                reason: e.to_string(),
            })
    }

    /// The public key as a DER `RSAPublicKey` (what a certificate's SubjectPublicKeyInfo holds).
    pub fn public_key_der(&self) -> &[u8] {
        use aws_lc_rs::signature::KeyPair as _;
        self.key.public_key().as_ref()
    }

    /// `header.claims.signature`, RS256. `alg` is set in the header here.
    pub fn sign(&self, header: &Value, claims: &Value) -> Result<String, JwtError> {
        let mut header = header.clone();
        header["alg"] = Value::from("RS256");
        let signing = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing.as_bytes(),
                &mut sig,
            )
            .map_err(|_| JwtError::Sign)?;
        Ok(format!("{signing}.{}", b64url(&sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_in_order_ignoring_attributes() {
        let text = "Bag Attributes\n    localKeyID: 01\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\nnoise\n-----BEGIN PRIVATE KEY-----\nAwQ=\n-----END PRIVATE KEY-----\n";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], ("CERTIFICATE".into(), vec![0, 1, 2]));
        assert_eq!(blocks[1], ("PRIVATE KEY".into(), vec![3, 4]));
    }

    #[test]
    fn thumbprints_and_bad_keys() {
        // The signature itself is verified by the Azure simulator's token endpoint (e2e).
        assert_eq!(b64url(&sha1(b"abc")), "qZk-NkcGgWq6PiVxeFDCbJzQ2J0");
        assert!(RsaSigner::from_pkcs1(b"not a key").is_err());
        assert!(RsaSigner::from_pkcs8(b"not a key").is_err());
    }
}

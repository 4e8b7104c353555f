//! The client certificate of a service principal (`AZURE_CLIENT_CERTIFICATE_PATH`) and the
//! client assertion it signs, as azure-identity's environment credential does: a PEM file with
//! the certificate (and optionally its chain) and the RSA private key, PKCS#8 (`PRIVATE KEY`) or
//! PKCS#1 (`RSA PRIVATE KEY`). The assertion is an RS256 JWT for the token endpoint (`aud`),
//! `iss` = `sub` = the client id, a random `jti`, `nbf`/`exp` ten minutes apart, with the
//! certificate's SHA-1 thumbprint as `x5t` and, when `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` is
//! true (subject name/issuer authentication), the chain as `x5c`.
//!
//! PKCS#12/PFX files and encrypted keys are refused with the `openssl` command that turns them
//! into an unencrypted PEM: no pure-Rust PKCS#12 reader is both maintained and stable today (see
//! docs/architecture.md), and openssl or a second TLS stack is not wanted in the build.

use base64::Engine as _;
use clusterctl_core::jwt::{RsaSigner, b64url, pem_blocks, sha1};
use serde_json::json;

use crate::errors::ArmError;

/// The environment variable naming the file.
pub const PATH_ENV: &str = "AZURE_CLIENT_CERTIFICATE_PATH";
/// How long an assertion is valid.
const ASSERTION_LIFETIME: u64 = 600;
/// DER of the OID rsaEncryption (1.2.840.113549.1.1.1).
const RSA_OID: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// A certificate with its private key, read from a PEM file.
#[derive(Debug)]
pub struct ClientCertificate {
    /// The certificate whose key this is, DER.
    leaf: Vec<u8>,
    /// Every certificate of the file, the leaf first (for `x5c`).
    chain: Vec<Vec<u8>>,
    key: RsaSigner,
}

fn invalid(path: &str, reason: impl Into<String>, hint: impl Into<String>) -> ArmError {
    ArmError::Invalid {
        what: PATH_ENV,
        value: path.to_string(),
        reason: reason.into(),
        hint: hint.into(),
    }
}

impl ClientCertificate {
    /// Read `path`.
    pub fn load(path: &str) -> Result<Self, ArmError> {
        let bytes = std::fs::read(path).map_err(|e| {
            invalid(
                path,
                format!("cannot be read: {e}"),
                "point it at a PEM file holding the certificate and its private key",
            )
        })?;
        Self::parse(path, &bytes)
    }

    /// Parse the file's content (`path` names it in errors).
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Self, ArmError> {
        let convert = format!(
            "convert it once with `openssl pkcs12 -in {path} -out {path}.pem -nodes` and set {PATH_ENV}={path}.pem (keep that file private: its key is not encrypted)"
        );
        let lower = path.to_ascii_lowercase();
        let text = std::str::from_utf8(bytes).ok();
        let blocks = text.map(pem_blocks).unwrap_or_default();
        if lower.ends_with(".pfx") || lower.ends_with(".p12") || blocks.is_empty() {
            let reason = if bytes.first() == Some(&0x30)
                || lower.ends_with(".pfx")
                || lower.ends_with(".p12")
            {
                "is a PKCS#12/PFX file, which clusterctl does not read"
            } else {
                "holds no PEM block (-----BEGIN CERTIFICATE----- and -----BEGIN PRIVATE KEY-----)"
            };
            return Err(invalid(path, reason, convert));
        }
        if blocks.iter().any(|(l, _)| l == "ENCRYPTED PRIVATE KEY")
            || text.is_some_and(|t| t.contains("Proc-Type: 4,ENCRYPTED"))
        {
            return Err(invalid(
                path,
                "its private key is encrypted, which clusterctl does not read (AZURE_CLIENT_CERTIFICATE_PASSWORD is not used)",
                format!(
                    "write the key unencrypted with `openssl pkey -in {path} -out key.pem` and put it with the certificate in one PEM file (keep it private)"
                ),
            ));
        }
        let keys: Vec<&(String, Vec<u8>)> = blocks
            .iter()
            .filter(|(l, _)| l.ends_with("PRIVATE KEY"))
            .collect();
        let key = match keys.as_slice() {
            [(label, der)] if label == "PRIVATE KEY" => RsaSigner::from_pkcs8(der),
            [(label, der)] if label == "RSA PRIVATE KEY" => RsaSigner::from_pkcs1(der),
            [(label, _)] => {
                return Err(invalid(
                    path,
                    format!("holds a `{label}`; Entra ID certificate credentials need an RSA key"),
                    "make the certificate with an RSA key (2048 bits or more)",
                ));
            }
            [] => {
                return Err(invalid(
                    path,
                    "holds no private key",
                    "append the certificate's private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`) to the file",
                ));
            }
            _ => {
                return Err(invalid(
                    path,
                    "holds more than one private key",
                    "keep only the key of the certificate registered on the application",
                ));
            }
        }
        .map_err(|e| {
            invalid(
                path,
                e.to_string(),
                "the key must be an unencrypted RSA key of 2048 bits or more",
            )
        })?;
        let certs: Vec<Vec<u8>> = blocks
            .iter()
            .filter(|(l, _)| l == "CERTIFICATE")
            .map(|(_, d)| d.clone())
            .collect();
        if certs.is_empty() {
            return Err(invalid(
                path,
                "holds no certificate",
                "append the certificate (-----BEGIN CERTIFICATE-----) registered on the application",
            ));
        }
        let Some(at) = certs
            .iter()
            .position(|c| rsa_public_key(c).is_some_and(|k| k == key.public_key_der()))
        else {
            return Err(invalid(
                path,
                "its private key belongs to none of its certificates",
                "put the certificate and the private key it was made with in the file",
            ));
        };
        let leaf = certs[at].clone();
        let mut chain = vec![leaf.clone()];
        chain.extend(
            certs
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != at)
                .map(|(_, c)| c.clone()),
        );
        Ok(ClientCertificate { leaf, chain, key })
    }

    /// The certificate's SHA-1 thumbprint, hex upper case (as the Azure portal shows it).
    pub fn thumbprint(&self) -> String {
        sha1(&self.leaf)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }

    /// A client assertion for `token_url` (`aud`) as `client_id`, `nbf` = `now`.
    pub fn assertion(
        &self,
        token_url: &str,
        client_id: &str,
        send_chain: bool,
        now: u64,
    ) -> Result<String, ArmError> {
        let mut header = json!({"typ": "JWT", "x5t": b64url(&sha1(&self.leaf))});
        if send_chain {
            header["x5c"] = self
                .chain
                .iter()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
                .collect();
        }
        let claims = json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": jti(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        self.key
            .sign(&header, &claims)
            .map_err(|e| ArmError::Credential(format!("the client certificate's key: {e}")))
    }
}

/// A random GUID for `jti`.
fn jti() -> String {
    let mut b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// One DER element: (tag, content, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The `RSAPublicKey` DER of an X.509 certificate's SubjectPublicKeyInfo (None when the key is
/// not RSA or the DER is not a certificate).
fn rsa_public_key(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // version
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = tlv(rest)?.2;
    }
    let (0x30, spki, _) = tlv(rest)? else {
        return None;
    };
    let (0x30, alg, after) = tlv(spki)? else {
        return None;
    };
    let (0x06, oid, _) = tlv(alg)? else {
        return None;
    };
    if oid != RSA_OID {
        return None;
    }
    let (0x03, bits, _) = tlv(after)? else {
        return None;
    };
    bits.split_first().map(|(_, key)| key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(r: Result<ClientCertificate, ArmError>) -> String {
        match r.unwrap_err() {
            ArmError::Invalid { reason, hint, .. } => format!("{reason} | {hint}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pfx_encrypted_and_incomplete_files_are_refused_with_the_fix() {
        let pfx = reason(ClientCertificate::parse("/k/sp.pfx", &[0x30, 0x82, 0x01]));
        assert!(pfx.contains("PKCS#12"), "{pfx}");
        assert!(
            pfx.contains("openssl pkcs12 -in /k/sp.pfx -out /k/sp.pfx.pem -nodes"),
            "{pfx}"
        );
        let binary = reason(ClientCertificate::parse("/k/sp", &[0x30, 0x82, 0x01]));
        assert!(binary.contains("PKCS#12"), "{binary}");
        let enc = reason(ClientCertificate::parse(
            "/k/sp.pem",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        ));
        assert!(enc.contains("encrypted"), "{enc}");
        let nokey = reason(ClientCertificate::parse(
            "/k/sp.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ));
        assert!(nokey.contains("no private key"), "{nokey}");
        let ec = reason(ClientCertificate::parse(
            "/k/sp.pem",
            b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        ));
        assert!(ec.contains("RSA"), "{ec}");
    }

    #[test]
    fn der_lengths() {
        assert_eq!(
            tlv(&[0x30, 0x01, 0x05, 0x09]),
            Some((0x30, &[5u8][..], &[9u8][..]))
        );
        let long = [&[0x04, 0x81, 0x80][..], &[7u8; 128]].concat();
        assert_eq!(tlv(&long).map(|t| t.1.len()), Some(128));
        assert_eq!(tlv(&[0x30, 0x05, 0x00]), None);
        assert_eq!(rsa_public_key(&[0x30, 0x00]), None);
        assert_eq!(jti().len(), 36);
    }
}

//! Per-cluster TLS material: a fresh CA, and distinct certificates for the scheduler, the
//! workers and the client, all signed by it. The CA's private key is dropped after signing and
//! never written anywhere, so nothing outside this cluster can ever be issued a certificate it
//! trusts.
//!
//! Dask verifies peers against the CA but not host names (nodes are reached by IP), so the
//! certificates carry the cluster name as common name and `localhost`/loopback as SANs only for
//! completeness.

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    model::Role,
};

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Serialize, Deserialize)]
pub struct CertPair {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertPair { .. }")
    }
}

/// All TLS material of one cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TlsBundle {
    /// The cluster CA's certificate (trusted by every member).
    pub ca_pem: String,
    /// The scheduler's certificate.
    pub scheduler: CertPair,
    /// The certificate shared by all workers.
    pub worker: CertPair,
    /// The certificate of the user's Dask client.
    pub client: CertPair,
}

/// Where the client-side TLS files of a cluster are on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTlsFiles {
    /// CA certificate.
    pub ca_file: PathBuf,
    /// Client certificate.
    pub cert_file: PathBuf,
    /// Client private key.
    pub key_file: PathBuf,
}

impl ClientTlsFiles {
    /// The Dask configuration, as environment variables, that makes a client use these files.
    pub fn dask_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION".into(),
                "True".into(),
            ),
            (
                "DASK_DISTRIBUTED__COMM__TLS__CA_FILE".into(),
                self.ca_file.display().to_string(),
            ),
            (
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT".into(),
                self.cert_file.display().to_string(),
            ),
            (
                "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY".into(),
                self.key_file.display().to_string(),
            ),
        ]
    }
}

fn tls_err(e: rcgen::Error) -> Error {
    Error::Runtime {
        message: format!("generating TLS certificates failed: {e}"),
        hint: None,
    }
}

impl TlsBundle {
    /// Generate a CA and the three certificates for `cluster`.
    pub fn generate(cluster: &str) -> Result<Self> {
        let ca_key = KeyPair::generate().map_err(tls_err)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_err)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("clusterctl CA {cluster}"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).map_err(tls_err)?;
        let issuer = Issuer::new(ca_params, ca_key);

        // Nodes listen and dial (server and client authentication); the user's client only
        // dials, so its certificate is a client identity of its own: no server use, no names.
        let leaf = |role: &str| -> Result<CertPair> {
            let client_only = role == "client";
            let key = KeyPair::generate().map_err(tls_err)?;
            let names = if client_only {
                Vec::new()
            } else {
                vec!["localhost".to_string(), "127.0.0.1".to_string()]
            };
            let mut params = CertificateParams::new(names).map_err(tls_err)?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("{cluster} {role}"));
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = if client_only {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            } else {
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ]
            };
            let cert = params.signed_by(&key, &issuer).map_err(tls_err)?;
            Ok(CertPair {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            })
        };
        Ok(TlsBundle {
            ca_pem: ca_cert.pem(),
            scheduler: leaf("scheduler")?,
            worker: leaf("worker")?,
            client: leaf("client")?,
        })
    }

    /// The certificate a node of `role` presents.
    pub fn for_role(&self, role: Role) -> &CertPair {
        match role {
            Role::Scheduler => &self.scheduler,
            Role::Worker => &self.worker,
        }
    }

    /// Write every file into `dir` (created 0700, files 0600) and return the client's files.
    pub fn write_dir(&self, dir: &Path) -> Result<ClientTlsFiles> {
        create_private_dir(dir)?;
        let files = [
            ("ca.pem", &self.ca_pem),
            ("scheduler.pem", &self.scheduler.cert_pem),
            ("scheduler-key.pem", &self.scheduler.key_pem),
            ("worker.pem", &self.worker.cert_pem),
            ("worker-key.pem", &self.worker.key_pem),
            ("client.pem", &self.client.cert_pem),
            ("client-key.pem", &self.client.key_pem),
        ];
        for (name, contents) in files {
            write_private(&dir.join(name), contents.as_bytes())?;
        }
        Ok(Self::client_files(dir))
    }

    /// The client files inside a directory written by [`TlsBundle::write_dir`].
    pub fn client_files(dir: &Path) -> ClientTlsFiles {
        ClientTlsFiles {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("client.pem"),
            key_file: dir.join("client-key.pem"),
        }
    }

    /// Read back a bundle written by [`TlsBundle::write_dir`].
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let p = dir.join(name);
            fs::read_to_string(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        let pair = |role: &str| -> Result<CertPair> {
            Ok(CertPair {
                cert_pem: read(&format!("{role}.pem"))?,
                key_pem: read(&format!("{role}-key.pem"))?,
            })
        };
        Ok(TlsBundle {
            ca_pem: read("ca.pem")?,
            scheduler: pair("scheduler")?,
            worker: pair("worker")?,
            client: pair("client")?,
        })
    }
}

/// Create `dir` (and parents) with mode 0700 for the last component.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

/// Write `contents` to `path` with mode 0600, atomically (temporary file, then rename).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let ctx = || format!("writing {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| Error::io(ctx(), e))?;
    tmp.write_all(contents).map_err(|e| Error::io(ctx(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(ctx(), e))?;
    tmp.persist(path).map_err(|e| Error::io(ctx(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_distinct_signed_certs() {
        let b = TlsBundle::generate("t1").unwrap();
        assert!(b.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let certs = [
            &b.scheduler.cert_pem,
            &b.worker.cert_pem,
            &b.client.cert_pem,
        ];
        for c in certs {
            assert!(c.starts_with("-----BEGIN CERTIFICATE-----"));
        }
        assert_ne!(b.scheduler.key_pem, b.worker.key_pem);
        assert_ne!(b.worker.key_pem, b.client.key_pem);
        assert!(b.client.key_pem.contains("PRIVATE KEY"));
        assert!(
            !format!("{:?}", b.client).contains("PRIVATE"),
            "Debug must not show keys"
        );
    }

    #[test]
    fn written_files_are_private_and_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let b = TlsBundle::generate("t2").unwrap();
        let files = b.write_dir(&dir.path().join("tls")).unwrap();
        for p in [&files.ca_file, &files.cert_file, &files.key_file] {
            let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let mode = fs::metadata(dir.path().join("tls"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o700);
        let back = TlsBundle::read_dir(&dir.path().join("tls")).unwrap();
        assert_eq!(back.worker.key_pem, b.worker.key_pem);
    }
}

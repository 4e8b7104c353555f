//! Application Default Credentials, written over core's REST client (see "The GCE provider" in
//! docs/architecture.md for why not `google-cloud-auth`), in google-cloud-auth's order:
//! 1. `GOOGLE_APPLICATION_CREDENTIALS` (a missing file is an error, no fallback);
//! 2. gcloud's `application_default_credentials.json` (`$CLOUDSDK_CONFIG` or `~/.config/gcloud`);
//! 3. the metadata server (`GCE_METADATA_HOST`, else 169.254.169.254), probed with a short
//!    connect timeout.
//!
//! A `service_account` key becomes a self-signed JWT (RS256 with the key, `kid` = its id,
//! `iss` = `sub` = its e-mail, the cloud-platform `scope`), sent as the bearer token, as
//! google-cloud-auth does: no call to a token endpoint. An `authorized_user` (gcloud's user
//! credentials) is refreshed at its token endpoint. An `external_account` (workload identity
//! federation, e.g. from google-github-actions/auth) exchanges its subject token at STS and
//! may impersonate a service account (`federation.rs`). Tokens are cached until five minutes
//! before they expire and never printed.

use std::time::{Duration, Instant, SystemTime};

use clusterctl_core::rest::{RestClient, RestConfig, Secret, parse_base_url};
use reqwest::Method;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::{errors::GcpError, federation::External};

/// The one OAuth scope clusterctl asks for (Secret Manager accepts only it).
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token endpoint for user credentials without a `token_uri`.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime of a self-signed JWT.
const JWT_LIFETIME: u64 = 3600;
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// Where the credential came from (for `--dry-run` and permission errors).
#[derive(Debug, Clone)]
pub enum Source {
    /// A service-account key file.
    ServiceAccount {
        /// The key's e-mail.
        email: String,
        /// The file.
        path: String,
    },
    /// gcloud user credentials (`gcloud auth application-default login`).
    User {
        /// The file.
        path: String,
    },
    /// Workload identity federation (`external_account`).
    External {
        /// The file.
        path: String,
        /// The workload identity pool provider.
        audience: String,
        /// The impersonated service account, if any.
        service_account: Option<String>,
    },
    /// The metadata server of the machine clusterctl runs on.
    Metadata {
        /// Its base URL.
        url: String,
    },
}

impl Source {
    /// One line for people.
    pub fn describe(&self) -> String {
        match self {
            Source::ServiceAccount { email, path } => {
                format!("service account {email} (key {path})")
            }
            Source::User { path } => format!("gcloud user credentials ({path})"),
            Source::External {
                path,
                audience,
                service_account,
            } => match service_account {
                Some(sa) => format!(
                    "service account {sa} impersonated through workload identity federation ({audience}, {path})"
                ),
                None => format!("workload identity federation ({audience}, {path})"),
            },
            Source::Metadata { url } => format!("the metadata server's service account ({url})"),
        }
    }
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    private_key_id: String,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    quota_project_id: Option<String>,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    token_uri: Option<String>,
}

enum Kind {
    Jwt {
        email: String,
        key_id: String,
        key: clusterctl_core::jwt::RsaSigner,
    },
    Refresh {
        client: RestClient,
        token_uri: String,
        client_id: String,
        client_secret: Secret,
        refresh_token: Secret,
    },
    External(Box<External>),
    Metadata {
        client: RestClient,
    },
}

/// A credential and its cached token.
pub struct Credential {
    kind: Kind,
    source: Source,
    project: Option<String>,
    cached: Mutex<Option<(Secret, Instant)>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("source", &self.source)
            .finish()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The DER inside the key's PEM `PRIVATE KEY` block.
fn pem_der(pem: &str) -> Result<Vec<u8>, GcpError> {
    clusterctl_core::jwt::pem_blocks(pem)
        .into_iter()
        .find(|(label, _)| label == "PRIVATE KEY")
        .map(|(_, der)| der)
        .ok_or_else(|| {
            GcpError::Credential(
                "the service-account key's private_key holds no PEM PRIVATE KEY block".into(),
            )
        })
}

impl Credential {
    /// The chain, reading the environment through `env`.
    pub async fn resolve(env: &dyn Fn(&str) -> Option<String>) -> Result<Credential, GcpError> {
        if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS") {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                GcpError::Credential(format!(
                    "GOOGLE_APPLICATION_CREDENTIALS names {path}, which cannot be read: {e}"
                ))
            })?;
            return Self::from_file(&path, &text);
        }
        let gcloud = env("CLOUDSDK_CONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".config/gcloud")));
        if let Some(dir) = gcloud {
            let path = dir.join("application_default_credentials.json");
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Self::from_file(&path.display().to_string(), &text);
            }
        }
        let host = env("GCE_METADATA_HOST").unwrap_or_else(|| "169.254.169.254".into());
        let url = format!("http://{host}");
        let mut config = RestConfig::new("gce-metadata", &url);
        config.connect_timeout = Duration::from_secs(1);
        config.request_timeout = Duration::from_secs(5);
        config.call_deadline = Duration::from_secs(10);
        let no_adc = || {
            GcpError::Credential(
                "no Google Cloud credentials: set GOOGLE_APPLICATION_CREDENTIALS to a key file, run `gcloud auth application-default login`, or run on a machine with a service account".into(),
            )
        };
        parse_base_url(&url).map_err(|_| no_adc())?;
        let client = RestClient::new(config, None).map_err(|_| no_adc())?;
        let cred = Credential {
            kind: Kind::Metadata { client },
            source: Source::Metadata { url },
            project: None,
            cached: Mutex::new(None),
        };
        cred.token().await.map_err(|_| no_adc())?;
        Ok(cred)
    }

    /// A credential from a key file's text.
    pub fn from_file(path: &str, text: &str) -> Result<Credential, GcpError> {
        let key: KeyFile = serde_json::from_str(text)
            .map_err(|e| GcpError::Credential(format!("{path} is not a credentials file: {e}")))?;
        let project = key.project_id.clone().or(key.quota_project_id.clone());
        match key.kind.as_str() {
            "service_account" => {
                let der = pem_der(&key.private_key)?;
                let pair = clusterctl_core::jwt::RsaSigner::from_pkcs8(&der).map_err(|e| {
                    GcpError::Credential(format!(
                        "{path}: the private key is not an RSA PKCS#8 key: {e}"
                    ))
                })?;
                Ok(Credential {
                    source: Source::ServiceAccount {
                        email: key.client_email.clone(),
                        path: path.into(),
                    },
                    kind: Kind::Jwt {
                        email: key.client_email,
                        key_id: key.private_key_id,
                        key: pair,
                    },
                    project,
                    cached: Mutex::new(None),
                })
            }
            "authorized_user" => {
                let token_uri = key.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.into());
                let base = reqwest::Url::parse(&token_uri)
                    .map_err(|e| GcpError::Credential(format!("{path}: token_uri: {e}")))?;
                let client = RestClient::new(
                    RestConfig::new("google-oauth", base.origin().ascii_serialization()),
                    None,
                )?;
                Ok(Credential {
                    source: Source::User { path: path.into() },
                    kind: Kind::Refresh {
                        client,
                        token_uri,
                        client_id: key.client_id,
                        client_secret: Secret::new(key.client_secret),
                        refresh_token: Secret::new(key.refresh_token),
                    },
                    project,
                    cached: Mutex::new(None),
                })
            }
            "external_account" => {
                let ext = External::from_file(path, text)?;
                let summary = ext.summary();
                Ok(Credential {
                    source: Source::External {
                        path: path.into(),
                        audience: summary.audience,
                        service_account: summary.service_account,
                    },
                    kind: Kind::External(Box::new(ext)),
                    project: key.quota_project_id,
                    cached: Mutex::new(None),
                })
            }
            other => Err(GcpError::Credential(format!(
                "{path}: credentials of type `{other}` are not supported (service_account, authorized_user, external_account)"
            ))),
        }
    }

    /// Where it came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The project the credential names (a key's `project_id`), if any.
    pub fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// A token valid for at least five more minutes.
    pub async fn token(&self) -> Result<Secret, GcpError> {
        let mut cached = self.cached.lock().await;
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() + RENEW_BEFORE < *until
        {
            return Ok(t.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    async fn fetch(&self) -> Result<(Secret, Duration), GcpError> {
        match &self.kind {
            Kind::Jwt { email, key_id, key } => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let header = serde_json::json!({"typ": "JWT", "kid": key_id});
                let claims = serde_json::json!({
                    "iss": email, "sub": email, "scope": CLOUD_PLATFORM,
                    "iat": now, "exp": now + JWT_LIFETIME,
                });
                let jwt = key
                    .sign(&header, &claims)
                    .map_err(|_| GcpError::Credential("signing the JWT failed".into()))?;
                Ok((Secret::new(jwt), Duration::from_secs(JWT_LIFETIME)))
            }
            Kind::Refresh {
                client,
                token_uri,
                client_id,
                client_secret,
                refresh_token,
            } => {
                let answer: TokenAnswer = client
                    .request_url(Method::POST, token_uri)
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("client_id", client_id),
                        ("client_secret", client_secret.expose()),
                        ("refresh_token", refresh_token.expose()),
                    ])
                    .repeatable(true)
                    .send_json()
                    .await
                    .map_err(|e| {
                        GcpError::Credential(format!(
                            "refreshing the gcloud user credentials failed: {e}"
                        ))
                    })?;
                Ok((
                    Secret::new(answer.access_token),
                    Duration::from_secs(answer.expires_in.unwrap_or(3600)),
                ))
            }
            Kind::External(ext) => ext.fetch().await,
            Kind::Metadata { client } => {
                let answer: TokenAnswer = client
                    .request(
                        Method::GET,
                        "/computeMetadata/v1/instance/service-accounts/default/token",
                    )
                    .header("Metadata-Flavor", "Google")
                    .send_json()
                    .await
                    .map_err(|e| {
                        GcpError::Credential(format!("the metadata server gave no token: {e}"))
                    })?;
                Ok((
                    Secret::new(answer.access_token),
                    Duration::from_secs(answer.expires_in.unwrap_or(300)),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_and_broken_files_are_refused() {
        let e = Credential::from_file("x.json", r#"{"type":"external_account"}"#).unwrap_err();
        assert!(e.to_string().contains("token_url"), "{e}");
        assert!(Credential::from_file("x.json", "nonsense").is_err());
        let bad_key = r#"{"type":"service_account","client_email":"a@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}"#;
        assert!(Credential::from_file("k.json", bad_key).is_err());
        let user = r#"{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r","quota_project_id":"p1"}"#;
        let c = Credential::from_file("adc.json", user).unwrap();
        assert_eq!(c.project(), Some("p1"));
        assert!(!format!("{c:?}").contains("\"r\""));
    }
}

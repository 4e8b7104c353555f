//! Azure credentials: the standard chain, over core's REST client (no second HTTP/TLS stack).
//! The first source that is configured wins, in this order:
//!
//! 1. a service principal from the environment: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//!    `AZURE_CLIENT_SECRET` (client-credentials grant at Entra ID);
//! 2. workload identity federation: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//!    `AZURE_FEDERATED_TOKEN_FILE` (the file's token as the client assertion; what `azure/login`
//!    with OIDC gives a GitHub Actions job, and AKS workload identity);
//! 3. the managed identity of the Azure VM clusterctl runs on (the instance metadata service,
//!    `AZURE_CLIENT_ID` selecting a user-assigned identity), probed briefly;
//! 4. the Azure CLI's login (`az account get-access-token`).
//!
//! `AZURE_AUTHORITY_HOST` overrides Entra ID's host (sovereign clouds, the tests' simulator).
//! A certificate (`AZURE_CLIENT_CERTIFICATE_PATH`) is refused with an explanation: signing the
//! assertion needs an RSA key from a PEM or PKCS#12 file, not implemented yet.
//! Tokens are cached until five minutes before they expire, held in `Secret`s, never logged.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use clusterctl_core::rest::{RestClient, RestConfig, RestError, Secret, parse_base_url};
use reqwest::Method;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::errors::ArmError;

/// Entra ID's public-cloud authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The instance metadata service.
pub const IMDS_URL: &str = "http://169.254.169.254";
/// Refresh a cached token when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `AZURE_CLIENT_SECRET`.
    ClientSecret {
        /// The tenant.
        tenant: String,
        /// The application (client) id.
        client_id: String,
    },
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    WorkloadIdentity {
        /// The tenant.
        tenant: String,
        /// The application (client) id.
        client_id: String,
        /// The federated token's file.
        file: String,
    },
    /// The instance metadata service.
    ManagedIdentity {
        /// A user-assigned identity's client id.
        client_id: Option<String>,
    },
    /// `az account get-access-token`.
    AzureCli,
}

impl Source {
    /// Pick the first configured source from the environment (`env`), without any call; the
    /// managed identity and the CLI are decided by [`Credential::resolve`].
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Source>, String> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let tenant = get("AZURE_TENANT_ID");
        let client_id = get("AZURE_CLIENT_ID");
        if get("AZURE_CLIENT_SECRET").is_some() {
            return match (tenant, client_id) {
                (Some(tenant), Some(client_id)) => Ok(Some(Source::ClientSecret { tenant, client_id })),
                _ => Err("AZURE_CLIENT_SECRET is set, but AZURE_TENANT_ID and AZURE_CLIENT_ID are not both set".into()),
            };
        }
        if let Some(path) = get("AZURE_CLIENT_CERTIFICATE_PATH") {
            return Err(format!(
                "AZURE_CLIENT_CERTIFICATE_PATH={path}: certificate credentials are not supported by clusterctl yet; use a client secret (AZURE_CLIENT_SECRET), workload identity (AZURE_FEDERATED_TOKEN_FILE), a managed identity or `az login`"
            ));
        }
        if let Some(file) = get("AZURE_FEDERATED_TOKEN_FILE") {
            return match (tenant, client_id) {
                (Some(tenant), Some(client_id)) => Ok(Some(Source::WorkloadIdentity {
                    tenant,
                    client_id,
                    file,
                })),
                _ => Err("AZURE_FEDERATED_TOKEN_FILE is set, but AZURE_TENANT_ID and AZURE_CLIENT_ID are not both set".into()),
            };
        }
        Ok(None)
    }

    /// How `--dry-run` and errors name it.
    pub fn describe(&self) -> String {
        match self {
            Source::ClientSecret { tenant, client_id } => format!(
                "service principal {client_id} in tenant {tenant} (client secret from AZURE_CLIENT_SECRET)"
            ),
            Source::WorkloadIdentity {
                tenant, client_id, ..
            } => format!(
                "service principal {client_id} in tenant {tenant} (workload identity, AZURE_FEDERATED_TOKEN_FILE)"
            ),
            Source::ManagedIdentity { client_id } => match client_id {
                Some(id) => format!("the user-assigned managed identity {id} of this VM"),
                None => "the system-assigned managed identity of this VM".into(),
            },
            Source::AzureCli => "the Azure CLI's login (az account get-access-token)".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// A number from Entra ID, a string from the metadata service.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CliToken {
    access_token: String,
    #[serde(default)]
    expires_on: Option<String>,
    #[serde(default, rename = "expires_on")]
    expires_on_epoch: Option<u64>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    subscription: Option<String>,
}

#[derive(Debug, Deserialize)]
struct EntraError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

/// A token source with its cache.
#[derive(Debug)]
pub struct Credential {
    source: Source,
    /// ARM's audience, e.g. `https://management.azure.com/`.
    audience: String,
    authority: RestClient,
    cache: Mutex<Option<(Secret, Instant)>>,
    /// The CLI's subscription, when the CLI gave the token.
    cli_subscription: std::sync::Mutex<Option<String>>,
}

impl Credential {
    /// The credential of the first configured source, for ARM at `audience`. Without an
    /// environment credential, tries the managed identity (a short probe), then the Azure CLI.
    pub async fn resolve(
        env: &dyn Fn(&str) -> Option<String>,
        audience: &str,
    ) -> Result<Arc<Credential>, ArmError> {
        let authority_url = env("AZURE_AUTHORITY_HOST")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_AUTHORITY.into());
        parse_base_url(&authority_url).map_err(|m| {
            ArmError::Credential(format!("AZURE_AUTHORITY_HOST={authority_url}: {m}"))
        })?;
        let authority = RestClient::new(RestConfig::new("entra", &authority_url), None)?;
        let make = |source| {
            Arc::new(Credential {
                source,
                audience: audience.to_string(),
                authority: authority.clone(),
                cache: Mutex::new(None),
                cli_subscription: std::sync::Mutex::new(None),
            })
        };
        if let Some(source) = Source::from_env(env).map_err(ArmError::Credential)? {
            return Ok(make(source));
        }
        let mi = make(Source::ManagedIdentity {
            client_id: env("AZURE_CLIENT_ID").filter(|v| !v.trim().is_empty()),
        });
        if mi.fetch().await.is_ok() {
            return Ok(mi);
        }
        let cli = make(Source::AzureCli);
        match cli.fetch().await {
            Ok(_) => Ok(cli),
            Err(e) => Err(ArmError::Credential(format!(
                "no Azure credential found: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_FEDERATED_TOKEN_FILE), run on a VM with a managed identity, or `az login` (the Azure CLI said: {e})"
            ))),
        }
    }

    /// Where the token comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The subscription the Azure CLI is set to, when it gave the token.
    pub fn cli_subscription(&self) -> Option<String> {
        self.cli_subscription.lock().ok().and_then(|s| s.clone())
    }

    /// A valid token for ARM (cached).
    pub async fn token(&self) -> Result<Secret, ArmError> {
        let mut cache = self.cache.lock().await;
        if let Some((t, until)) = cache.as_ref()
            && Instant::now() + REFRESH_MARGIN < *until
        {
            return Ok(t.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        *cache = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// Who the token says clusterctl is: the source, plus the object id when the token is a JWT.
    pub async fn identity(&self) -> String {
        let mut text = self.source.describe();
        if let Ok(t) = self.token().await
            && let Some(oid) = jwt_claim(t.expose(), "oid")
        {
            text.push_str(&format!(", object id {oid}"));
        }
        text
    }

    async fn fetch(&self) -> Result<(Secret, Duration), ArmError> {
        let scope = format!("{}/.default", self.audience.trim_end_matches('/'));
        match &self.source {
            Source::ClientSecret { tenant, client_id } => {
                let secret = std::env::var("AZURE_CLIENT_SECRET").unwrap_or_default();
                self.entra(
                    tenant,
                    &[
                        ("client_id", client_id),
                        ("client_secret", &secret),
                        ("grant_type", "client_credentials"),
                        ("scope", &scope),
                    ],
                )
                .await
            }
            Source::WorkloadIdentity {
                tenant,
                client_id,
                file,
            } => {
                let assertion = std::fs::read_to_string(file).map_err(|e| {
                    ArmError::Credential(format!(
                        "cannot read AZURE_FEDERATED_TOKEN_FILE={file}: {e}"
                    ))
                })?;
                self.entra(
                    tenant,
                    &[
                        ("client_id", client_id),
                        ("client_assertion", assertion.trim()),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("grant_type", "client_credentials"),
                        ("scope", &scope),
                    ],
                )
                .await
            }
            Source::ManagedIdentity { client_id } => self.imds(client_id.as_deref()).await,
            Source::AzureCli => self.cli().await,
        }
    }

    async fn entra(
        &self,
        tenant: &str,
        form: &[(&str, &str)],
    ) -> Result<(Secret, Duration), ArmError> {
        let path = format!(
            "/{}/oauth2/v2.0/token",
            clusterctl_core::rest::segment(tenant)
        );
        let answer = self
            .authority
            .request(Method::POST, &path)
            .form(form)
            .repeatable(true)
            .send()
            .await
            .map_err(|e| match &e {
                RestError::Status { body, .. } => match serde_json::from_str::<EntraError>(body) {
                    Ok(err) => ArmError::Credential(format!(
                        "{} could not get a token: {}: {}",
                        self.source.describe(),
                        err.error,
                        err.error_description
                    )),
                    Err(_) => ArmError::Rest(e),
                },
                _ => ArmError::Rest(e),
            })?;
        token_of(&answer.body)
    }

    async fn imds(&self, client_id: Option<&str>) -> Result<(Secret, Duration), ArmError> {
        let mut config = RestConfig::new("imds", IMDS_URL);
        config.connect_timeout = Duration::from_secs(1);
        config.request_timeout = Duration::from_secs(3);
        config.call_deadline = Duration::from_secs(4);
        let client = RestClient::new(config, None)?;
        let mut req = client
            .request(Method::GET, "/metadata/identity/oauth2/token")
            .query("api-version", "2018-02-01")
            .query("resource", &self.audience)
            .header("Metadata", "true");
        if let Some(id) = client_id {
            req = req.query("client_id", id);
        }
        let answer = req.send().await?;
        token_of(&answer.body)
    }

    async fn cli(&self) -> Result<(Secret, Duration), ArmError> {
        let out = tokio::process::Command::new("az")
            .args([
                "account",
                "get-access-token",
                "--output",
                "json",
                "--resource",
            ])
            .arg(&self.audience)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .map_err(|_| {
                ArmError::Credential("`az account get-access-token` took over 30 s".into())
            })?
            .map_err(|e| ArmError::Credential(format!("cannot run `az`: {e}")))?;
        if !out.status.success() {
            return Err(ArmError::Credential(format!(
                "`az account get-access-token` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let t: CliToken = serde_json::from_slice(&out.stdout).map_err(|e| {
            ArmError::Credential(format!(
                "`az account get-access-token` printed no token: {e}"
            ))
        })?;
        if let Ok(mut s) = self.cli_subscription.lock() {
            *s = t.subscription.clone();
        }
        let _ = t.tenant;
        let lifetime = t
            .expires_on_epoch
            .map(|at| at.saturating_sub(clusterctl_core::model::now_epoch()))
            .or_else(|| t.expires_on.as_ref().map(|_| 600))
            .unwrap_or(600);
        Ok((Secret::new(t.access_token), Duration::from_secs(lifetime)))
    }
}

/// A token answer of Entra ID or the metadata service (`expires_in` a number or a string).
fn token_of(body: &str) -> Result<(Secret, Duration), ArmError> {
    let t: TokenAnswer = serde_json::from_str(body)
        .map_err(|e| ArmError::Credential(format!("the token endpoint answered no token: {e}")))?;
    let secs = match &t.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(600);
    Ok((Secret::new(t.access_token), Duration::from_secs(secs)))
}

/// A claim of a JWT's payload, read without verifying it (to name the identity only).
pub fn jwt_claim(token: &str, claim: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get(claim)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_first_configured_source_wins() {
        let all = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]);
        assert_eq!(
            Source::from_env(&all).unwrap(),
            Some(Source::ClientSecret {
                tenant: "t".into(),
                client_id: "c".into()
            })
        );
        let wi = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]);
        assert!(matches!(
            Source::from_env(&wi).unwrap(),
            Some(Source::WorkloadIdentity { .. })
        ));
        assert_eq!(Source::from_env(&env_of(&[])).unwrap(), None);
        let half = env_of(&[("AZURE_CLIENT_SECRET", "s")]);
        assert!(
            Source::from_env(&half)
                .unwrap_err()
                .contains("AZURE_TENANT_ID")
        );
        let cert = env_of(&[("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem")]);
        assert!(
            Source::from_env(&cert)
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn tokens_of_both_shapes_and_claims() {
        let (t, d) =
            token_of(r#"{"access_token":"a","expires_in":3599,"token_type":"Bearer"}"#).unwrap();
        assert_eq!((t.expose(), d.as_secs()), ("a", 3599));
        let (_, d) = token_of(r#"{"access_token":"a","expires_in":"86399"}"#).unwrap();
        assert_eq!(d.as_secs(), 86399);
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"oid":"o-1"}"#);
        assert_eq!(
            jwt_claim(&format!("h.{payload}.s"), "oid").as_deref(),
            Some("o-1")
        );
        assert_eq!(jwt_claim("opaque", "oid"), None);
    }
}

//! Azure credentials: the standard chain, over core's REST client (no second HTTP/TLS stack).
//! The first source that is configured wins, in this order (azure-identity's
//! `DefaultAzureCredential` order, without its developer-tool sources):
//!
//! 1. a service principal from the environment: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//!    `AZURE_CLIENT_SECRET` (client-credentials grant at Entra ID), else
//!    `AZURE_CLIENT_CERTIFICATE_PATH` (a PEM certificate + RSA key signing a client assertion,
//!    `certificate.rs`; `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN=true` adds `x5c`);
//! 2. workload identity federation: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
//!    `AZURE_FEDERATED_TOKEN_FILE` (the file's token as the client assertion; what `azure/login`
//!    with OIDC gives a GitHub Actions job, and AKS workload identity);
//! 3. a managed identity: App Service / Container Apps / Functions when `IDENTITY_ENDPOINT` and
//!    `IDENTITY_HEADER` are set (api-version 2019-08-01, `X-IDENTITY-HEADER`); else the instance
//!    metadata service, at `AZURE_POD_IDENTITY_AUTHORITY_HOST` when set (as MSAL and
//!    azure-identity honour it) or else probed briefly at 169.254.169.254; `AZURE_CLIENT_ID`
//!    selects a user-assigned identity;
//! 4. the Azure CLI's login: `az account get-access-token --output json --resource <ARM>`,
//!    and `az account show --output json` for the signed-in account and its default
//!    subscription.
//!
//! `AZURE_AUTHORITY_HOST` overrides Entra ID's host (sovereign clouds, the tests' simulator).
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

use crate::{azcli::CliAccount, certificate::ClientCertificate, errors::ArmError};

/// Entra ID's public-cloud authority.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The instance metadata service.
pub const IMDS_URL: &str = "http://169.254.169.254";
/// The instance metadata service's host, overridden (MSAL's and azure-identity's name).
pub const IMDS_HOST_ENV: &str = "AZURE_POD_IDENTITY_AUTHORITY_HOST";
/// App Service / Container Apps: the identity endpoint and its header's secret.
pub const IDENTITY_ENDPOINT_ENV: &str = "IDENTITY_ENDPOINT";
/// See [`IDENTITY_ENDPOINT_ENV`].
pub const IDENTITY_HEADER_ENV: &str = "IDENTITY_HEADER";
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
    /// `AZURE_CLIENT_CERTIFICATE_PATH`.
    ClientCertificate {
        /// The tenant.
        tenant: String,
        /// The application (client) id.
        client_id: String,
        /// The PEM file.
        path: String,
        /// `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN`: send `x5c`.
        send_chain: bool,
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
    /// A managed identity.
    ManagedIdentity {
        /// A user-assigned identity's client id.
        client_id: Option<String>,
        /// Where its tokens come from.
        endpoint: MiEndpoint,
    },
    /// `az account get-access-token`.
    AzureCli,
}

/// Where a managed identity's tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MiEndpoint {
    /// The instance metadata service at this base URL (`explicit` when
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST` named it: then it is not probed but used).
    Imds {
        /// Base URL.
        url: String,
        /// Named by the environment.
        explicit: bool,
    },
    /// App Service / Container Apps (`IDENTITY_ENDPOINT`; the header's secret is read from
    /// `IDENTITY_HEADER` when a token is fetched).
    AppService {
        /// The full token URL.
        url: String,
    },
}

fn truthy(v: Option<String>) -> bool {
    v.is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

impl Source {
    /// Pick the first source the environment (`env`) configures, without any call; the VM's
    /// managed identity (probed) and the CLI are decided by [`Credential::resolve`].
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Source>, String> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let tenant = get("AZURE_TENANT_ID");
        let client_id = get("AZURE_CLIENT_ID");
        let both = |what: &str| {
            format!("{what} is set, but AZURE_TENANT_ID and AZURE_CLIENT_ID are not both set")
        };
        if get("AZURE_CLIENT_SECRET").is_some() {
            return match (tenant, client_id) {
                (Some(tenant), Some(client_id)) => {
                    Ok(Some(Source::ClientSecret { tenant, client_id }))
                }
                _ => Err(both("AZURE_CLIENT_SECRET")),
            };
        }
        if let Some(path) = get(crate::certificate::PATH_ENV) {
            return match (tenant, client_id) {
                (Some(tenant), Some(client_id)) => Ok(Some(Source::ClientCertificate {
                    tenant,
                    client_id,
                    path,
                    send_chain: truthy(get("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN")),
                })),
                _ => Err(both(crate::certificate::PATH_ENV)),
            };
        }
        if let Some(file) = get("AZURE_FEDERATED_TOKEN_FILE") {
            return match (tenant, client_id) {
                (Some(tenant), Some(client_id)) => Ok(Some(Source::WorkloadIdentity {
                    tenant,
                    client_id,
                    file,
                })),
                _ => Err(both("AZURE_FEDERATED_TOKEN_FILE")),
            };
        }
        if let Some(url) = get(IDENTITY_ENDPOINT_ENV) {
            if get(IDENTITY_HEADER_ENV).is_none() {
                return Err(format!(
                    "{IDENTITY_ENDPOINT_ENV} is set, but {IDENTITY_HEADER_ENV} is not (App Service and Container Apps set both)"
                ));
            }
            reqwest::Url::parse(&url)
                .map_err(|e| e.to_string())
                .and_then(|u| parse_base_url(&u.origin().ascii_serialization()))
                .map_err(|m| format!("{IDENTITY_ENDPOINT_ENV}={url}: {m}"))?;
            return Ok(Some(Source::ManagedIdentity {
                client_id,
                endpoint: MiEndpoint::AppService { url },
            }));
        }
        if let Some(url) = get(IMDS_HOST_ENV) {
            parse_base_url(&url).map_err(|m| format!("{IMDS_HOST_ENV}={url}: {m}"))?;
            return Ok(Some(Source::ManagedIdentity {
                client_id,
                endpoint: MiEndpoint::Imds {
                    url,
                    explicit: true,
                },
            }));
        }
        Ok(None)
    }

    /// How `--dry-run` and errors name it.
    pub fn describe(&self) -> String {
        match self {
            Source::ClientSecret { tenant, client_id } => format!(
                "service principal {client_id} in tenant {tenant} (client secret from AZURE_CLIENT_SECRET)"
            ),
            Source::ClientCertificate {
                tenant,
                client_id,
                path,
                send_chain,
            } => format!(
                "service principal {client_id} in tenant {tenant} (client certificate from AZURE_CLIENT_CERTIFICATE_PATH={path}{})",
                if *send_chain {
                    ", sending its chain"
                } else {
                    ""
                }
            ),
            Source::WorkloadIdentity {
                tenant, client_id, ..
            } => format!(
                "service principal {client_id} in tenant {tenant} (workload identity, AZURE_FEDERATED_TOKEN_FILE)"
            ),
            Source::ManagedIdentity {
                client_id,
                endpoint,
            } => {
                let who = match client_id {
                    Some(id) => format!("the user-assigned managed identity {id}"),
                    None => "the system-assigned managed identity".into(),
                };
                match endpoint {
                    MiEndpoint::AppService { url } => {
                        format!(
                            "{who} of this App Service / Container App ({IDENTITY_ENDPOINT_ENV}={url})"
                        )
                    }
                    MiEndpoint::Imds {
                        url,
                        explicit: true,
                    } => {
                        format!(
                            "{who} from the instance metadata service at {url} ({IMDS_HOST_ENV})"
                        )
                    }
                    MiEndpoint::Imds { .. } => {
                        format!("{who} of this VM (instance metadata service)")
                    }
                }
            }
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
    /// Epoch seconds (a string) from App Service's identity endpoint.
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
    /// The managed identity's client id (metadata service, App Service).
    #[serde(default)]
    client_id: Option<String>,
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
    pub(crate) audience: String,
    /// Entra ID's base URL.
    authority_url: String,
    authority: RestClient,
    /// The certificate of [`Source::ClientCertificate`], read once.
    certificate: Option<ClientCertificate>,
    cache: Mutex<Option<(Secret, Instant)>>,
    /// The CLI's account (`az account show`), when the CLI gives the tokens.
    pub(crate) cli_account: std::sync::Mutex<Option<CliAccount>>,
    /// The subscription `az account get-access-token` named.
    pub(crate) cli_token_subscription: std::sync::Mutex<Option<String>>,
    /// The client id a managed identity's token answer named.
    mi_client_id: std::sync::Mutex<Option<String>>,
}

impl Credential {
    /// The credential of the first configured source, for ARM at `audience`. Without one in
    /// the environment, tries the VM's managed identity (a short probe), then the Azure CLI.
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
        let make = |source, certificate| {
            Arc::new(Credential {
                source,
                audience: audience.to_string(),
                authority_url: authority_url.trim_end_matches('/').to_string(),
                authority: authority.clone(),
                certificate,
                cache: Mutex::new(None),
                cli_account: std::sync::Mutex::new(None),
                cli_token_subscription: std::sync::Mutex::new(None),
                mi_client_id: std::sync::Mutex::new(None),
            })
        };
        if let Some(source) = Source::from_env(env).map_err(ArmError::Credential)? {
            let certificate = match &source {
                Source::ClientCertificate { path, .. } => Some(ClientCertificate::load(path)?),
                _ => None,
            };
            return Ok(make(source, certificate));
        }
        let mi = make(
            Source::ManagedIdentity {
                client_id: env("AZURE_CLIENT_ID").filter(|v| !v.trim().is_empty()),
                endpoint: MiEndpoint::Imds {
                    url: IMDS_URL.into(),
                    explicit: false,
                },
            },
            None,
        );
        if mi.fetch().await.is_ok() {
            return Ok(mi);
        }
        let cli = make(Source::AzureCli, None);
        let token = cli.fetch().await;
        let account = match &token {
            Ok(_) => cli.account().await,
            Err(_) => Ok(()),
        };
        match token.and(account) {
            Ok(()) => Ok(cli),
            Err(e) => Err(ArmError::Credential(format!(
                "no Azure credential found: set AZURE_TENANT_ID and AZURE_CLIENT_ID with AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE, run where a managed identity is (an Azure VM, App Service or Container App), or `az login` (the Azure CLI said: {e})"
            ))),
        }
    }

    /// Where the token comes from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The Azure CLI's default subscription, when the CLI gives the tokens.
    pub fn cli_subscription(&self) -> Option<String> {
        let shown = self
            .cli_account
            .lock()
            .ok()
            .and_then(|a| a.as_ref().map(|a| a.id.clone()));
        shown.or_else(|| {
            self.cli_token_subscription
                .lock()
                .ok()
                .and_then(|s| s.clone())
        })
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

    /// Who clusterctl acts as: the source, what it named (the CLI's account, a managed
    /// identity's client id, a certificate's thumbprint), and the object id when the token is a
    /// JWT.
    pub async fn identity(&self) -> String {
        let token = self.token().await;
        let mut text = self.source.describe();
        if let Some(c) = &self.certificate {
            text.push_str(&format!(", certificate thumbprint {}", c.thumbprint()));
        }
        if let Some(id) = self.mi_client_id.lock().ok().and_then(|i| i.clone())
            && matches!(
                self.source,
                Source::ManagedIdentity {
                    client_id: None,
                    ..
                }
            )
        {
            text.push_str(&format!(", client id {id}"));
        }
        if let Some(a) = self.cli_account.lock().ok().and_then(|a| a.clone()) {
            if let Some(u) = &a.user {
                text.push_str(&format!(", signed in as {} ({})", u.name, u.kind));
            }
            if let Some(t) = &a.tenant_id {
                text.push_str(&format!(", tenant {t}"));
            }
        }
        if let Ok(t) = token
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
            Source::ClientCertificate {
                tenant,
                client_id,
                send_chain,
                ..
            } => {
                let cert = self.certificate.as_ref().ok_or_else(|| {
                    ArmError::Credential("the client certificate was not read".into())
                })?;
                let assertion = cert.assertion(
                    &self.token_url(tenant),
                    client_id,
                    *send_chain,
                    clusterctl_core::model::now_epoch(),
                )?;
                self.entra(tenant, &assertion_form(client_id, &assertion, &scope))
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
                self.entra(tenant, &assertion_form(client_id, assertion.trim(), &scope))
                    .await
            }
            Source::ManagedIdentity {
                client_id,
                endpoint,
            } => {
                let got = match endpoint {
                    MiEndpoint::Imds { url, explicit } => {
                        self.imds(url, *explicit, client_id.as_deref()).await
                    }
                    MiEndpoint::AppService { url } => {
                        self.app_service(url, client_id.as_deref()).await
                    }
                }?;
                if let Ok(mut id) = self.mi_client_id.lock() {
                    id.clone_from(&got.2);
                }
                Ok((got.0, got.1))
            }
            Source::AzureCli => self.cli().await,
        }
    }

    fn token_url(&self, tenant: &str) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.authority_url,
            clusterctl_core::rest::segment(tenant)
        )
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
        token_of(&answer.body).map(|t| (t.0, t.1))
    }

    async fn imds(
        &self,
        url: &str,
        explicit: bool,
        client_id: Option<&str>,
    ) -> Result<(Secret, Duration, Option<String>), ArmError> {
        let mut config = RestConfig::new("imds", url);
        if !explicit {
            // A probe: off an Azure VM nothing answers, and the chain moves on quickly.
            config.connect_timeout = Duration::from_secs(1);
            config.request_timeout = Duration::from_secs(3);
            config.call_deadline = Duration::from_secs(4);
        }
        let client = RestClient::new(config, None)?;
        let mut req = client
            .request(Method::GET, "/metadata/identity/oauth2/token")
            .query("api-version", "2018-02-01")
            .query("resource", &self.audience)
            .header("Metadata", "true");
        if let Some(id) = client_id {
            req = req.query("client_id", id);
        }
        let answer = req.send().await.map_err(|e| self.mi_error(e))?;
        token_of(&answer.body)
    }

    async fn app_service(
        &self,
        url: &str,
        client_id: Option<&str>,
    ) -> Result<(Secret, Duration, Option<String>), ArmError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ArmError::Credential(format!("{IDENTITY_ENDPOINT_ENV}={url}: {e}")))?;
        let client = RestClient::new(
            RestConfig::new("managed-identity", parsed.origin().ascii_serialization()),
            None,
        )?;
        let header = std::env::var(IDENTITY_HEADER_ENV).unwrap_or_default();
        let mut req = client
            .request(Method::GET, parsed.path())
            .query("api-version", "2019-08-01")
            .query("resource", &self.audience)
            .header("X-IDENTITY-HEADER", header);
        if let Some(id) = client_id {
            req = req.query("client_id", id);
        }
        let answer = req.send().await.map_err(|e| self.mi_error(e))?;
        token_of(&answer.body)
    }

    fn mi_error(&self, e: RestError) -> ArmError {
        match e.body() {
            Some(body) => ArmError::Credential(format!(
                "{} could not get a token: {} {}",
                self.source.describe(),
                e.status().map(|s| s.as_u16()).unwrap_or_default(),
                body.chars().take(300).collect::<String>()
            )),
            None => ArmError::Rest(e),
        }
    }
}

/// The form of a client-assertion grant.
fn assertion_form<'a>(
    client_id: &'a str,
    assertion: &'a str,
    scope: &'a str,
) -> [(&'static str, &'a str); 5] {
    [
        ("client_id", client_id),
        ("client_assertion", assertion),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("grant_type", "client_credentials"),
        ("scope", scope),
    ]
}

/// A token answer of Entra ID, the metadata service or App Service (`expires_in` a number or a
/// string, or only `expires_on` in epoch seconds), with the client id it names.
fn token_of(body: &str) -> Result<(Secret, Duration, Option<String>), ArmError> {
    let t: TokenAnswer = serde_json::from_str(body)
        .map_err(|e| ArmError::Credential(format!("the token endpoint answered no token: {e}")))?;
    let number = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let secs = number(&t.expires_in)
        .or_else(|| {
            number(&t.expires_on).map(|at| at.saturating_sub(clusterctl_core::model::now_epoch()))
        })
        .unwrap_or(600);
    Ok((
        Secret::new(t.access_token),
        Duration::from_secs(secs),
        t.client_id,
    ))
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
        let cert = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem"),
            ("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "True"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
        ]);
        assert_eq!(
            Source::from_env(&cert).unwrap(),
            Some(Source::ClientCertificate {
                tenant: "t".into(),
                client_id: "c".into(),
                path: "/c.pem".into(),
                send_chain: true
            })
        );
        let half_cert = env_of(&[("AZURE_CLIENT_CERTIFICATE_PATH", "/c.pem")]);
        assert!(
            Source::from_env(&half_cert)
                .unwrap_err()
                .contains("AZURE_TENANT_ID")
        );
        let app = env_of(&[
            ("IDENTITY_ENDPOINT", "http://169.254.129.2:8081/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9"),
        ]);
        assert!(matches!(
            Source::from_env(&app).unwrap(),
            Some(Source::ManagedIdentity {
                client_id: None,
                endpoint: MiEndpoint::AppService { .. }
            })
        ));
        let no_header = env_of(&[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token")]);
        assert!(
            Source::from_env(&no_header)
                .unwrap_err()
                .contains("IDENTITY_HEADER")
        );
        let remote = env_of(&[
            ("IDENTITY_ENDPOINT", "http://203.0.113.9/msi/token"),
            ("IDENTITY_HEADER", "h"),
        ]);
        assert!(Source::from_env(&remote).unwrap_err().contains("https"));
        let imds = env_of(&[
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9"),
            ("AZURE_CLIENT_ID", "u"),
        ]);
        let src = Source::from_env(&imds).unwrap().unwrap();
        assert_eq!(
            src,
            Source::ManagedIdentity {
                client_id: Some("u".into()),
                endpoint: MiEndpoint::Imds {
                    url: "http://127.0.0.1:9".into(),
                    explicit: true
                }
            }
        );
        assert!(src.describe().contains("AZURE_POD_IDENTITY_AUTHORITY_HOST"));
    }

    #[test]
    fn tokens_of_both_shapes_and_claims() {
        let (t, d, _) =
            token_of(r#"{"access_token":"a","expires_in":3599,"token_type":"Bearer"}"#).unwrap();
        assert_eq!((t.expose(), d.as_secs()), ("a", 3599));
        let (_, d, id) =
            token_of(r#"{"access_token":"a","expires_in":"86399","client_id":"x"}"#).unwrap();
        assert_eq!((d.as_secs(), id.as_deref()), (86399, Some("x")));
        let at = clusterctl_core::model::now_epoch() + 1000;
        let (_, d, _) =
            token_of(&format!(r#"{{"access_token":"a","expires_on":"{at}"}}"#)).unwrap();
        assert!((998..=1000).contains(&d.as_secs()), "{d:?}");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"oid":"o-1"}"#);
        assert_eq!(
            jwt_claim(&format!("h.{payload}.s"), "oid").as_deref(),
            Some("o-1")
        );
        assert_eq!(jwt_claim("opaque", "oid"), None);
    }
}

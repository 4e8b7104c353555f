//! Workload identity federation: `external_account` ADC files (what
//! google-github-actions/auth writes for a GitHub Actions job). The subject token is read from
//! the file's `credential_source` (a `file`, or a `url` with its `headers`; `format` `text` or
//! `json` with `subject_token_field_name`), exchanged at the file's `token_url` (Security Token
//! Service, RFC 8693 form fields) for a federated access token, and, when the file names a
//! `service_account_impersonation_url`, that token buys the service account's own token
//! (IAM Credentials `generateAccessToken`). Every URL comes from the file itself, which is
//! also how a test points it at a simulator. Executable and AWS sources are refused with an
//! explanation. No token or subject token is ever printed or logged.

use std::time::{Duration, SystemTime};

use clusterctl_core::rest::{RestClient, RestConfig, RestError, Secret};
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use crate::{credential::CLOUD_PLATFORM, errors::GcpError};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Longest lifetime `generateAccessToken` gives without an organization policy.
const MAX_LIFETIME: u64 = 3600;

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    audience: String,
    #[serde(default)]
    subject_token_type: String,
    #[serde(default)]
    token_url: String,
    #[serde(default)]
    service_account_impersonation_url: Option<String>,
    #[serde(default)]
    service_account_impersonation: Option<ImpersonationOptions>,
    #[serde(default)]
    credential_source: Option<Value>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    workforce_pool_user_project: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ImpersonationOptions {
    #[serde(default)]
    token_lifetime_seconds: Option<u64>,
}

/// How the subject token is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The whole content (trimmed).
    Text,
    /// A JSON object; the token is this field.
    Json(String),
}

/// Where the subject token comes from.
#[derive(Debug)]
enum Subject {
    File {
        path: String,
        format: Format,
    },
    Url {
        client: RestClient,
        url: String,
        headers: Vec<(&'static str, Secret)>,
        format: Format,
    },
}

/// An external account: the subject token's source, STS, and the optional impersonation.
#[derive(Debug)]
pub struct External {
    audience: String,
    subject_token_type: String,
    subject: Subject,
    sts: RestClient,
    token_url: String,
    client_auth: Option<Secret>,
    user_project: Option<String>,
    impersonation: Option<(RestClient, String, u64)>,
}

/// What `describe` says about an external account.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The workload identity pool provider (`audience`).
    pub audience: String,
    /// The impersonated service account, if any.
    pub service_account: Option<String>,
}

fn bad(path: &str, what: impl std::fmt::Display) -> GcpError {
    GcpError::Credential(format!(
        "{path} (external_account, workload identity federation): {what}"
    ))
}

/// A client for the origin of `url` (which must be https, or http to this machine).
fn client_for(
    path: &str,
    field: &str,
    url: &str,
    service: &'static str,
) -> Result<RestClient, GcpError> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| bad(path, format!("{field} `{url}`: {e}")))?;
    let origin = parsed.origin().ascii_serialization();
    clusterctl_core::rest::parse_base_url(&origin)
        .map_err(|m| bad(path, format!("{field} `{url}`: {m}")))?;
    RestClient::new(RestConfig::new(service, origin), None).map_err(|e| bad(path, e))
}

fn format_of(path: &str, source: &Value) -> Result<Format, GcpError> {
    let Some(f) = source.get("format") else {
        return Ok(Format::Text);
    };
    match f["type"].as_str().unwrap_or("text") {
        "text" => Ok(Format::Text),
        "json" => match f["subject_token_field_name"].as_str() {
            Some(field) if !field.is_empty() => Ok(Format::Json(field.to_string())),
            _ => Err(bad(
                path,
                "credential_source.format json needs subject_token_field_name",
            )),
        },
        other => Err(bad(
            path,
            format!("credential_source.format.type `{other}` is not text or json"),
        )),
    }
}

/// The header names a credential source may set (RestRequest takes static names).
fn header_name(name: &str) -> Option<&'static str> {
    const KNOWN: [&str; 5] = [
        "authorization",
        "metadata-flavor",
        "metadata",
        "x-goog-user-project",
        "accept",
    ];
    KNOWN.iter().find(|k| k.eq_ignore_ascii_case(name)).copied()
}

/// The subject token in `content`.
pub fn extract(content: &str, format: &Format) -> Result<String, String> {
    let token = match format {
        Format::Text => content.trim().to_string(),
        Format::Json(field) => {
            let v: Value = serde_json::from_str(content)
                .map_err(|e| format!("the subject token source is not JSON: {e}"))?;
            v.get(field)
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string())
                .ok_or_else(|| format!("the subject token source has no string field `{field}`"))?
        }
    };
    if token.is_empty() {
        return Err("the subject token is empty".into());
    }
    Ok(token)
}

/// An OAuth error answer (`{"error", "error_description"}`) or Google's error shape, in words.
fn refusal(e: &RestError) -> String {
    let body: Value = e
        .body()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_default();
    let status = e
        .status()
        .map(|s| s.as_u16().to_string())
        .unwrap_or_default();
    if let Some(code) = body["error"].as_str() {
        let desc = body["error_description"].as_str().unwrap_or_default();
        return format!("{status} {code}: {desc}");
    }
    if let Some(m) = body["error"]["message"].as_str() {
        return format!("{status} {m}");
    }
    e.to_string()
}

fn expires_in(answer_secs: Option<u64>) -> Duration {
    Duration::from_secs(answer_secs.unwrap_or(3600))
}

impl External {
    /// Read an `external_account` file's text.
    pub fn from_file(path: &str, text: &str) -> Result<External, GcpError> {
        let f: File = serde_json::from_str(text).map_err(|e| bad(path, e))?;
        if f.audience.is_empty() || f.subject_token_type.is_empty() || f.token_url.is_empty() {
            return Err(bad(
                path,
                "audience, subject_token_type and token_url are required",
            ));
        }
        let source = f
            .credential_source
            .ok_or_else(|| bad(path, "credential_source is missing"))?;
        let format = format_of(path, &source)?;
        let subject = if let Some(file) = source.get("file").and_then(Value::as_str) {
            Subject::File {
                path: file.to_string(),
                format,
            }
        } else if let Some(url) = source.get("url").and_then(Value::as_str) {
            let mut headers = Vec::new();
            if let Some(h) = source.get("headers").and_then(Value::as_object) {
                for (k, v) in h {
                    let name = header_name(k).ok_or_else(|| {
                        bad(
                            path,
                            format!(
                                "credential_source.headers: `{k}` is not a header clusterctl sends"
                            ),
                        )
                    })?;
                    headers.push((name, Secret::new(v.as_str().unwrap_or_default())));
                }
            }
            Subject::Url {
                client: client_for(path, "credential_source.url", url, "subject-token")?,
                url: url.to_string(),
                headers,
                format,
            }
        } else if source.get("executable").is_some() || source.get("environment_id").is_some() {
            return Err(bad(
                path,
                "executable and AWS credential sources are not supported; use a file or url source (google-github-actions/auth writes a url source)",
            ));
        } else {
            return Err(bad(path, "credential_source has neither file nor url"));
        };
        let client_auth = match (&f.client_id, &f.client_secret) {
            (Some(id), Some(secret)) => {
                use base64::Engine as _;
                Some(Secret::new(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
                )))
            }
            _ => None,
        };
        let impersonation = match &f.service_account_impersonation_url {
            Some(url) => {
                let lifetime = f
                    .service_account_impersonation
                    .and_then(|o| o.token_lifetime_seconds)
                    .unwrap_or(MAX_LIFETIME);
                if !(600..=43_200).contains(&lifetime) {
                    return Err(bad(
                        path,
                        format!(
                            "service_account_impersonation.token_lifetime_seconds {lifetime} is not 600 to 43200"
                        ),
                    ));
                }
                Some((
                    client_for(
                        path,
                        "service_account_impersonation_url",
                        url,
                        "iamcredentials",
                    )?,
                    url.clone(),
                    lifetime,
                ))
            }
            None => None,
        };
        Ok(External {
            audience: f.audience,
            subject_token_type: f.subject_token_type,
            subject,
            sts: client_for(path, "token_url", &f.token_url, "sts")?,
            token_url: f.token_url,
            client_auth,
            user_project: f.workforce_pool_user_project,
            impersonation,
        })
    }

    /// The pool provider and the impersonated account.
    pub fn summary(&self) -> Summary {
        Summary {
            audience: self.audience.clone(),
            service_account: self.impersonation.as_ref().and_then(|(_, url, _)| {
                url.rsplit('/')
                    .next()
                    .and_then(|s| s.split(':').next())
                    .map(str::to_string)
            }),
        }
    }

    async fn subject_token(&self) -> Result<Secret, GcpError> {
        let (content, format, from) = match &self.subject {
            Subject::File { path, format } => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    GcpError::Credential(format!(
                        "the workload identity subject token file {path} cannot be read: {e}"
                    ))
                })?;
                (text, format, path.clone())
            }
            Subject::Url {
                client,
                url,
                headers,
                format,
            } => {
                let mut req = client.request_url(Method::GET, url);
                for (name, value) in headers {
                    req = req.header(name, value.expose());
                }
                let answer = req.send().await.map_err(|e| {
                    GcpError::Credential(format!(
                        "fetching the workload identity subject token failed: {}",
                        refusal(&e)
                    ))
                })?;
                let origin = reqwest::Url::parse(url)
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or_default();
                (answer.body, format, origin)
            }
        };
        extract(&content, format).map(Secret::new).map_err(|m| {
            GcpError::Credential(format!("workload identity subject token from {from}: {m}"))
        })
    }

    /// A fresh Google access token and its lifetime.
    pub async fn fetch(&self) -> Result<(Secret, Duration), GcpError> {
        #[derive(Deserialize)]
        struct Sts {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Generated {
            access_token: String,
            #[serde(default)]
            expire_time: Option<String>,
        }
        let subject = self.subject_token().await?;
        let options = self
            .user_project
            .as_ref()
            .map(|p| serde_json::json!({"userProject": p}).to_string());
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("audience", self.audience.as_str()),
            ("scope", CLOUD_PLATFORM),
            ("requested_token_type", ACCESS_TOKEN),
            ("subject_token", subject.expose()),
            ("subject_token_type", self.subject_token_type.as_str()),
        ];
        if let (Some(o), None) = (&options, &self.client_auth) {
            form.push(("options", o.as_str()));
        }
        let mut req = self
            .sts
            .request_url(Method::POST, &self.token_url)
            .form(&form)
            .repeatable(true);
        if let Some(basic) = &self.client_auth {
            req = req.header("authorization", basic.expose());
        }
        let sts: Sts = req.send_json().await.map_err(|e| {
            GcpError::Credential(format!(
                "the Security Token Service refused the workload identity subject token ({}): {}",
                self.audience,
                refusal(&e)
            ))
        })?;
        let federated = Secret::new(sts.access_token);
        let Some((client, url, lifetime)) = &self.impersonation else {
            return Ok((federated, expires_in(sts.expires_in)));
        };
        let generated: Generated = client
            .request_url(Method::POST, url)
            .bearer(&federated)
            .json(&serde_json::json!({
                "scope": [CLOUD_PLATFORM],
                "lifetime": format!("{lifetime}s"),
            }))
            .repeatable(true)
            .send_json()
            .await
            .map_err(|e| {
                GcpError::Credential(format!(
                    "impersonating {} with the federated token failed (the pool's principal needs roles/iam.workloadIdentityUser on it): {}",
                    self.summary().service_account.unwrap_or_default(),
                    refusal(&e)
                ))
            })?;
        let lifetime = generated
            .expire_time
            .as_deref()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(*lifetime));
        Ok((Secret::new(generated.access_token), lifetime))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_token_formats() {
        assert_eq!(
            extract(" abc.def.ghi\n", &Format::Text).unwrap(),
            "abc.def.ghi"
        );
        let json = Format::Json("value".into());
        assert_eq!(
            extract(r#"{"count":1,"value":"t.o.k"}"#, &json).unwrap(),
            "t.o.k"
        );
        assert!(
            extract(r#"{"id_token":"t"}"#, &json)
                .unwrap_err()
                .contains("`value`")
        );
        assert!(extract("not json", &json).is_err());
        assert!(extract("  ", &Format::Text).is_err());
    }

    #[test]
    fn files_are_checked() {
        let github = r#"{"type":"external_account",
            "audience":"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
            "subject_token_type":"urn:ietf:params:oauth:token-type:jwt",
            "token_url":"https://sts.googleapis.com/v1/token",
            "service_account_impersonation_url":"https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/ci@p.iam.gserviceaccount.com:generateAccessToken",
            "credential_source":{"url":"https://pipelines.example/idtoken?api-version=2.0&audience=x",
              "headers":{"Authorization":"Bearer req"},
              "format":{"type":"json","subject_token_field_name":"value"}}}"#;
        let e = External::from_file("gha.json", github).unwrap();
        let s = e.summary();
        assert_eq!(
            s.service_account.as_deref(),
            Some("ci@p.iam.gserviceaccount.com")
        );
        assert!(
            !format!("{e:?}").contains("Bearer req"),
            "the request token leaks"
        );
        let plain_http = github.replace("https://sts.googleapis.com", "http://sts.example");
        assert!(External::from_file("x.json", &plain_http).is_err());
        let exe = r#"{"audience":"a","subject_token_type":"t","token_url":"https://sts.googleapis.com/v1/token",
            "credential_source":{"executable":{"command":"x"}}}"#;
        let err = External::from_file("x.json", exe).unwrap_err().to_string();
        assert!(err.contains("executable"), "{err}");
        let no_field = r#"{"audience":"a","subject_token_type":"t","token_url":"https://sts.googleapis.com/v1/token",
            "credential_source":{"file":"/x","format":{"type":"json"}}}"#;
        assert!(External::from_file("x.json", no_field).is_err());
        let odd_header = github.replace("Authorization", "X-Other");
        assert!(External::from_file("x.json", &odd_header).is_err());
    }
}

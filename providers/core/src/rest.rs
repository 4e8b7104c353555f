//! The JSON-over-HTTPS client shared by the REST clouds (DigitalOcean, Azure ARM and Entra ID,
//! Google Compute Engine, IAM and Secret Manager): a base URL, bearer auth supplied by the
//! caller, JSON bodies, a timeout per attempt and a deadline per call, retries with jittered
//! exponential backoff ([`crate::retry::RetryConfig`], backon) that honour `Retry-After` and a
//! provider's rate-limit headers, and errors as a typed value ([`RestError`], in
//! `rest_errors.rs` with the retry policy) with the status, headers and body for the provider
//! to map.
//!
//! What is retried:
//! - HTTP 429 always: the platform refused the request before doing anything; and HTTP 503
//!   always, for the same reason (the server says it did not handle the request: overloaded,
//!   or in maintenance).
//! - HTTP 5xx and transport failures after the request may have reached the server only when
//!   the request is *repeatable* (by default: the idempotent methods GET, HEAD, PUT, DELETE,
//!   OPTIONS). A POST that creates something is not repeated blindly after a 502, which might
//!   have created it; a provider marks the POSTs that are safe to repeat with
//!   [`RestRequest::repeatable`].
//! - Connection failures (nothing was sent) always.
//!
//! Trust: the system's roots, plus the PEM bundle named by [`EXTRA_CA_ENV`] when it is set
//! (added, never replacing them): the tests trust their API simulator's CA with it, and behind a
//! corporate TLS-inspecting proxy it names the proxy's CA. There is no way to turn verification
//! off.
//!
//! Benchmarks: with [`crate::api_log::API_LOG_ENV`] set, every attempt appends `<unix ms> <service>:<METHOD>
//! <path> <status>` to that file (status `-` when no response came), the same `<ms> <what>` shape
//! as the AWS providers' SDK interceptor, so the bench scripts count calls the same way.

use std::{fmt, sync::Arc, time::Duration};

use backon::Retryable as _;
use reqwest::{
    Method, StatusCode, Url,
    header::{ACCEPT, CONTENT_TYPE, HeaderMap},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    api_log::ApiLog,
    retry::{RetryClass, RetryConfig},
    wait::Deadline,
};

/// The environment variable naming a PEM bundle of extra trusted roots.
pub const EXTRA_CA_ENV: &str = "CLUSTERCTL_EXTRA_CA_FILE";

/// The clouds' instance metadata service, the one non-loopback address reached over plain HTTP.
pub const METADATA_ADDRESS: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254));

/// A credential (a bearer token): never printed, never serialized.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wrap a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A provider's reading of its rate-limit headers on an HTTP 429 without `Retry-After`: how long
/// to wait before the next attempt (`None`: use the backoff).
pub type RateLimitHook = Arc<dyn Fn(&HeaderMap) -> Option<Duration> + Send + Sync>;

/// How a [`RestClient`] talks to one API.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// The API's name in errors and in the API log, e.g. `digitalocean`.
    pub service: &'static str,
    /// The base URL, e.g. `https://api.digitalocean.com`; paths are appended to its path.
    pub base_url: String,
    /// Longest time one attempt may take (connect, send, read the whole answer).
    pub request_timeout: Duration,
    /// Longest time to connect.
    pub connect_timeout: Duration,
    /// Longest time one call may take, attempts and waits between them included.
    pub call_deadline: Duration,
    /// Backoff between attempts and the attempt budget.
    pub retry: RetryConfig,
}

impl RestConfig {
    /// Defaults for a cloud control plane: 30 s per attempt, 10 s to connect, 3 minutes per
    /// call, and the default [`RetryConfig`].
    pub fn new(service: &'static str, base_url: impl Into<String>) -> Self {
        RestConfig {
            service,
            base_url: base_url.into(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            call_deadline: Duration::from_secs(180),
            retry: RetryConfig::default(),
        }
    }
}

/// `base`'s path followed by `path` (which must start with `/` and hold no query): the URL of
/// an API path. Query and fragment of `base` are dropped.
pub fn join_url(base: &Url, path: &str) -> Result<Url, String> {
    if !path.starts_with('/') {
        return Err(format!("API path `{path}` does not start with `/`"));
    }
    if path.contains(['?', '#']) || path.split('/').any(|s| s == "..") {
        return Err(format!(
            "API path `{path}` holds a query, a fragment or `..`"
        ));
    }
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{path}"));
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Percent-encode one path segment (a tag name, an image slug): everything outside the
/// unreserved characters and `:` and `@` (both allowed in a segment).
pub fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Check a base URL: `https`, or `http` to a loopback address (a local test server: the token
/// never leaves the machine) or a link-local one (a host-local metadata or identity endpoint).
pub fn parse_base_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    // Loopback (a local test server), or a link-local address: the instance metadata service of
    // the clouds (169.254.169.254, reached without TLS from inside a VM, and sent no token) and
    // the host-local identity endpoints of Azure App Service and Container Apps
    // (`IDENTITY_ENDPOINT`, e.g. 169.254.129.2:8081), never routed beyond the link.
    let loopback = match url.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| {
                ip.is_loopback()
                    || ip == METADATA_ADDRESS
                    || matches!(ip, std::net::IpAddr::V4(v4) if v4.is_link_local())
            }),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => {
            return Err(format!(
                "scheme `{other}` is not allowed: the token is only sent over https (or http to this machine or the metadata service)"
            ));
        }
    }
    if url.host().is_none() || url.query().is_some() || url.fragment().is_some() {
        return Err("it must be a base URL with a host and no query or fragment".into());
    }
    Ok(url)
}

/// One line in the API log: `<service>:<METHOD> <path> <status or ->`.
fn log_request(
    log: &ApiLog,
    service: &str,
    method: &Method,
    path: &str,
    status: Option<StatusCode>,
) {
    let status = status.map_or_else(|| "-".to_string(), |s| s.as_u16().to_string());
    log.record(&format!("{service}:{method} {path} {status}"));
}

#[derive(Clone)]
struct Inner {
    service: &'static str,
    base: Url,
    http: reqwest::Client,
    auth: Option<Secret>,
    request_timeout: Duration,
    call_deadline: Duration,
    retry: RetryConfig,
    rate_limit: Option<RateLimitHook>,
    log: Option<ApiLog>,
}

/// A JSON API client (cheap to clone: clones share the connection pool).
#[derive(Clone)]
pub struct RestClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("service", &self.inner.service)
            .field("base", &self.inner.base.as_str())
            .field("auth", &self.inner.auth.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Read the extra trusted roots of [`EXTRA_CA_ENV`], if it is set.
fn extra_roots(service: &'static str) -> Result<Vec<reqwest::Certificate>, RestError> {
    let Some(path) = std::env::var_os(EXTRA_CA_ENV).filter(|p| !p.is_empty()) else {
        return Ok(Vec::new());
    };
    let shown = std::path::Path::new(&path).display().to_string();
    let pem = std::fs::read(&path).map_err(|e| RestError::Config {
        service,
        message: format!("cannot read {EXTRA_CA_ENV}={shown}: {e}"),
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RestError::Config {
        service,
        message: format!("{EXTRA_CA_ENV}={shown} is not a PEM bundle of certificates: {e}"),
    })?;
    if certs.is_empty() {
        return Err(RestError::Config {
            service,
            message: format!("{EXTRA_CA_ENV}={shown} holds no certificate"),
        });
    }
    Ok(certs)
}

impl RestClient {
    /// A client for `config`'s API that sends `auth` as a bearer token (none: no
    /// `Authorization` header). Reads [`EXTRA_CA_ENV`] and [`crate::api_log::API_LOG_ENV`].
    pub fn new(config: RestConfig, auth: Option<Secret>) -> Result<Self, RestError> {
        let service = config.service;
        let base = parse_base_url(&config.base_url).map_err(|m| RestError::Config {
            service,
            message: format!("base URL `{}`: {m}", config.base_url),
        })?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("clusterctl/", env!("CARGO_PKG_VERSION")))
            // A redirect would be followed without the token anyway; an API never needs one.
            .redirect(reqwest::redirect::Policy::none());
        let roots = extra_roots(service)?;
        if !roots.is_empty() {
            builder = builder.tls_certs_merge(roots);
        }
        let http = builder.build().map_err(|e| RestError::Config {
            service,
            message: format!("cannot build the HTTPS client: {}", chain(&e)),
        })?;
        Ok(RestClient {
            inner: Arc::new(Inner {
                service,
                base,
                http,
                auth,
                request_timeout: config.request_timeout,
                call_deadline: config.call_deadline,
                retry: config.retry,
                rate_limit: None,
                log: ApiLog::from_env(),
            }),
        })
    }

    /// Consult `hook` for the wait after an HTTP 429 that carries no `Retry-After`.
    pub fn with_rate_limit_hook(
        mut self,
        hook: impl Fn(&HeaderMap) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.inner).rate_limit = Some(Arc::new(hook));
        self
    }

    /// The API's name.
    pub fn service(&self) -> &'static str {
        self.inner.service
    }

    /// The URL of an API path (see [`join_url`]).
    pub fn url(&self, path: &str) -> Result<Url, RestError> {
        join_url(&self.inner.base, path).map_err(|message| RestError::Config {
            service: self.inner.service,
            message,
        })
    }

    /// A request of `method` to the API path `path` (segments already encoded, see
    /// [`segment`]).
    pub fn request(&self, method: Method, path: &str) -> RestRequest<'_> {
        let repeatable = is_idempotent(&method);
        RestRequest {
            client: self,
            url: self.url(path),
            method,
            body: None,
            repeatable,
            extra: Extra::default(),
        }
    }

    /// `GET path`, decoded.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, RestError> {
        self.request(Method::GET, path).send_json().await
    }

    /// A request of `method` to an absolute `url` that an answer named (an operation to poll):
    /// it must be on this client's origin (scheme, host and port), so that the token never goes
    /// to a host a response names.
    pub fn request_url(&self, method: Method, url: &str) -> RestRequest<'_> {
        let repeatable = is_idempotent(&method);
        let url = Url::parse(url)
            .map_err(|e| e.to_string())
            .and_then(|u| {
                if u.origin() == self.inner.base.origin() {
                    Ok(u)
                } else {
                    Err(format!(
                        "`{u}` is not on {}",
                        self.inner.base.origin().ascii_serialization()
                    ))
                }
            })
            .map_err(|message| RestError::Config {
                service: self.inner.service,
                message,
            });
        RestRequest {
            client: self,
            url,
            method,
            body: None,
            repeatable,
            extra: Extra::default(),
        }
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        extra: &Extra,
        deadline: Deadline,
    ) -> Result<RestResponse, RestError> {
        let inner = &self.inner;
        let path = url.path().to_string();
        let remaining = deadline.remaining();
        if remaining.is_zero() {
            return Err(RestError::Deadline {
                service: inner.service,
                method: method.clone(),
                path,
                after: deadline.total(),
            });
        }
        let mut req = inner
            .http
            .request(method.clone(), url.clone())
            .timeout(inner.request_timeout.min(remaining))
            .header(ACCEPT, "application/json");
        if let Some(token) = extra.bearer.as_ref().or(inner.auth.as_ref()) {
            req = req.bearer_auth(token.expose());
        }
        for (name, value) in &extra.headers {
            req = req.header(*name, value);
        }
        if let Some(b) = body {
            req = req
                .header(
                    CONTENT_TYPE,
                    extra.content_type.unwrap_or("application/json"),
                )
                .body(b.to_vec());
        }
        let transport = |e: reqwest::Error| RestError::Transport {
            service: inner.service,
            method: method.clone(),
            path: path.clone(),
            sent: !e.is_connect(),
            message: chain(&e.without_url()),
        };
        let started = std::time::Instant::now();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                if let Some(log) = &inner.log {
                    log_request(log, inner.service, method, &path, None);
                }
                let err = transport(e);
                tracing::debug!(
                    target: "clusterctl::api",
                    service = inner.service,
                    %method,
                    path = %path,
                    ms = started.elapsed().as_millis() as u64,
                    error = %reason(&err),
                    "request failed"
                );
                return Err(err);
            }
        };
        let status = resp.status();
        if let Some(log) = &inner.log {
            log_request(log, inner.service, method, &path, Some(status));
        }
        tracing::debug!(
            target: "clusterctl::api",
            service = inner.service,
            %method,
            path = %path,
            status = status.as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request"
        );
        let headers = resp.headers().clone();
        let text = resp.text().await.map_err(transport)?;
        if status.is_success() {
            Ok(RestResponse {
                status,
                headers,
                body: text,
            })
        } else {
            Err(RestError::Status {
                service: inner.service,
                method: method.clone(),
                path,
                status,
                headers: Box::new(headers),
                body: text,
            })
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

/// An error with its causes, which reqwest's own Display leaves out.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// One request being built.
pub struct RestRequest<'a> {
    client: &'a RestClient,
    method: Method,
    url: Result<Url, RestError>,
    body: Option<Result<Vec<u8>, RestError>>,
    repeatable: bool,
    extra: Extra,
}

/// What a request adds to the client's defaults.
#[derive(Default)]
struct Extra {
    headers: Vec<(&'static str, String)>,
    content_type: Option<&'static str>,
    bearer: Option<Secret>,
}

impl RestRequest<'_> {
    /// Add a query parameter.
    pub fn query(mut self, key: &str, value: impl fmt::Display) -> Self {
        if let Ok(url) = &mut self.url {
            url.query_pairs_mut().append_pair(key, &value.to_string());
        }
        self
    }

    /// Send `body` as JSON.
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Self {
        let service = self.client.inner.service;
        self.body = Some(serde_json::to_vec(body).map_err(|e| RestError::Config {
            service,
            message: format!("cannot encode the request body: {e}"),
        }));
        self
    }

    /// Add a header (e.g. `If-None-Match: *`, or the metadata service's `Metadata: true`).
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.headers.push((name, value.into()));
        self
    }

    /// Send this bearer token (a short-lived one its caller refreshes) instead of the client's.
    pub fn bearer(mut self, token: &Secret) -> Self {
        self.extra.bearer = Some(token.clone());
        self
    }

    /// Send `pairs` as an `application/x-www-form-urlencoded` body (OAuth token endpoints).
    pub fn form(mut self, pairs: &[(&str, &str)]) -> Self {
        let mut enc = Url::parse("form:").expect("a valid URL");
        enc.query_pairs_mut().extend_pairs(pairs);
        self.body = Some(Ok(enc.query().unwrap_or_default().as_bytes().to_vec()));
        self.extra.content_type = Some("application/x-www-form-urlencoded");
        self
    }

    /// Whether the request may be repeated after it may have reached the server (a 5xx, a
    /// timeout): true by default for idempotent methods; set it for a POST whose repetition is
    /// harmless (creating a tag, or something found by name afterwards).
    pub fn repeatable(mut self, yes: bool) -> Self {
        self.repeatable = yes;
        self
    }

    /// Send with retries; the answer of a success status.
    pub async fn send(self) -> Result<RestResponse, RestError> {
        let RestRequest {
            client,
            method,
            url,
            body,
            repeatable,
            extra,
        } = self;
        let url = url?;
        let body = body.transpose()?;
        let inner = &client.inner;
        let deadline = Deadline::after(inner.call_deadline);
        let hook = inner.rate_limit.clone();
        let attempt = || client.attempt(&method, &url, body.as_deref(), &extra, deadline);
        attempt
            .retry(backoff(&inner.retry))
            .sleep(tokio::time::sleep)
            .when(|e: &RestError| retry_class(e, repeatable) != RetryClass::Fatal)
            .adjust(|e: &RestError, next| {
                next_delay(server_wait(e, hook.as_ref()), next, deadline.remaining())
            })
            .notify(|e: &RestError, wait: Duration| {
                tracing::info!(
                    target: "clusterctl::api",
                    service = inner.service,
                    %method,
                    path = url.path(),
                    class = ?retry_class(e, repeatable),
                    reason = %reason(e),
                    wait_ms = wait.as_millis() as u64,
                    "retrying"
                );
            })
            .await
    }

    /// Send with retries and decode the JSON answer.
    pub async fn send_json<T: DeserializeOwned>(self) -> Result<T, RestError> {
        let method = self.method.clone();
        let path = self
            .url
            .as_ref()
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        let service = self.client.inner.service;
        let resp = self.send().await?;
        resp.json().map_err(|message| RestError::Decode {
            service,
            method,
            path,
            message,
        })
    }
}

/// A success answer.
#[derive(Debug, Clone)]
pub struct RestResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

impl RestResponse {
    /// The body decoded as JSON (an empty body decodes as `null`).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        let text = if self.body.trim().is_empty() {
            "null"
        } else {
            &self.body
        };
        serde_json::from_str(text).map_err(|e| e.to_string())
    }
}

#[path = "rest_errors.rs"]
mod errors;
pub use errors::{RestError, backoff, next_delay, parse_retry_after, retry_class};
use errors::{reason, server_wait};

#[cfg(test)]
#[path = "rest_tests.rs"]
mod tests;

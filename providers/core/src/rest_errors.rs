//! What a REST call's failure is ([`RestError`]: the status, headers and body of an answer, or
//! the transport failure, deadline or bad configuration) and how the client treats it: the retry
//! class of an error, the server's requested wait (`Retry-After`, a provider's rate-limit
//! headers) and the jittered backoff between attempts.

use std::time::{Duration, SystemTime};

use backon::ExponentialBuilder;
use reqwest::{Method, StatusCode, header::HeaderMap};

use super::RateLimitHook;
use crate::retry::{RetryClass, RetryConfig};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// The API answered with a non-success status.
    #[error("{service} {method} {path}: HTTP {status}{}", body_suffix(body))]
    Status {
        /// The API's name.
        service: &'static str,
        /// The request's method.
        method: Method,
        /// The request's path (no query).
        path: String,
        /// The status.
        status: StatusCode,
        /// The response headers (boxed: they are most of the error's size).
        headers: Box<HeaderMap>,
        /// The response body (text; JSON for most APIs).
        body: String,
    },
    /// No (complete) answer: connection refused, TLS failure, timeout, reset.
    #[error("{service} {method} {path}: {message}")]
    Transport {
        /// The API's name.
        service: &'static str,
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// What happened, with its causes.
        message: String,
        /// Whether the request may have reached the server (false: the connection failed).
        sent: bool,
    },
    /// The answer was a success but not the JSON expected.
    #[error("{service} {method} {path}: unexpected answer: {message}")]
    Decode {
        /// The API's name.
        service: &'static str,
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// The decoder's complaint.
        message: String,
    },
    /// The call's deadline passed before an answer came.
    #[error("{service} {method} {path}: no answer within {}", humantime::format_duration(*after))]
    Deadline {
        /// The API's name.
        service: &'static str,
        /// The request's method.
        method: Method,
        /// The request's path.
        path: String,
        /// The deadline.
        after: Duration,
    },
    /// The client cannot be built or the request cannot be formed (bad base URL, CA file).
    #[error("{service}: {message}")]
    Config {
        /// The API's name.
        service: &'static str,
        /// What is wrong.
        message: String,
    },
}

fn body_suffix(body: &str) -> String {
    let b = body.trim();
    if b.is_empty() {
        String::new()
    } else {
        let cut: String = b.chars().take(300).collect();
        format!(": {cut}")
    }
}

impl RestError {
    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RestError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A response header, when the API answered.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            RestError::Status { headers, .. } => headers.get(name)?.to_str().ok(),
            _ => None,
        }
    }

    /// The response body, when the API answered.
    pub fn body(&self) -> Option<&str> {
        match self {
            RestError::Status { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Whether the API answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND)
    }

    /// `METHOD /path` of the failed request.
    pub fn operation(&self) -> String {
        match self {
            RestError::Status { method, path, .. }
            | RestError::Transport { method, path, .. }
            | RestError::Decode { method, path, .. }
            | RestError::Deadline { method, path, .. } => format!("{method} {path}"),
            RestError::Config { .. } => String::new(),
        }
    }
}

/// How [`RestClient`] treats an error of a request that is (or is not) `repeatable`.
pub fn retry_class(err: &RestError, repeatable: bool) -> RetryClass {
    match err {
        RestError::Status { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
            RetryClass::Throttled
        }
        RestError::Status { status, .. }
            if *status == StatusCode::SERVICE_UNAVAILABLE
                || (status.is_server_error() && repeatable) =>
        {
            RetryClass::Transient
        }
        RestError::Transport { sent: false, .. } => RetryClass::Transient,
        RestError::Transport { sent: true, .. } if repeatable => RetryClass::Transient,
        _ => RetryClass::Fatal,
    }
}

/// Parse a `Retry-After` value: delay seconds, or an HTTP date (the wait until then, zero when
/// it has passed). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How long the server asked us to wait before retrying `err`: `Retry-After`, else (on a 429)
/// the provider's reading of its rate-limit headers.
pub(super) fn server_wait(err: &RestError, hook: Option<&RateLimitHook>) -> Option<Duration> {
    let RestError::Status {
        status, headers, ..
    } = err
    else {
        return None;
    };
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    retry_after.or_else(|| {
        if *status == StatusCode::TOO_MANY_REQUESTS {
            hook.and_then(|h| h(headers))
        } else {
            None
        }
    })
}

/// The wait before the next attempt: none once the backoff's budget is spent (`backoff` is
/// `None`); the server's wait when it gave one, else the backoff's; none when that wait would
/// end after the call's deadline (the error is returned now rather than after a pointless
/// sleep).
pub fn next_delay(
    server: Option<Duration>,
    backoff: Option<Duration>,
    remaining: Duration,
) -> Option<Duration> {
    let computed = backoff?;
    let delay = server.unwrap_or(computed);
    (delay < remaining).then_some(delay)
}

/// The backoff of a [`RetryConfig`]: jittered exponential, bounded in attempts and total wait.
pub fn backoff(config: &RetryConfig) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(config.min_delay)
        .with_max_delay(config.max_delay)
        .with_max_times(config.max_retries)
        .with_total_delay(Some(config.max_total_delay))
}

/// Why a request failed, for the diagnostics log: the status or the transport failure, never
/// the answer's body (which may echo what was sent).
pub(super) fn reason(err: &RestError) -> String {
    match err {
        RestError::Status { status, .. } => format!("HTTP {}", status.as_u16()),
        RestError::Transport { message, sent, .. } => {
            format!(
                "transport ({}): {message}",
                if *sent { "sent" } else { "not sent" }
            )
        }
        other => other.to_string(),
    }
}

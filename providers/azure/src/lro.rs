//! ARM's long-running operations, followed the one way ARM documents: the `Azure-AsyncOperation`
//! URL when the answer names one (GET → `{status, error?}` until `Succeeded`, `Failed` or
//! `Canceled`, compared case-insensitively, `Cancelled` too), else the `Location` URL (GET → 202
//! until done, then the final answer). Each poll waits what `Retry-After` asks (else a growing
//! interval), every operation has a deadline, and polled URLs must be on the ARM endpoint's own
//! origin (`RestClient::request_url`), so the token never goes elsewhere.

use std::time::Duration;

use clusterctl_core::{
    rest::{RestClient, RestResponse, Secret, parse_retry_after},
    wait::Deadline,
};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde::Deserialize;

use crate::errors::{ArmError, ErrorDetail};

/// The status body of an `Azure-AsyncOperation` URL.
#[derive(Debug, Deserialize)]
struct OperationStatus {
    status: String,
    #[serde(default)]
    error: Option<ErrorDetail>,
}

/// Where an answer says its operation can be followed, if it is long-running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Follow {
    /// Nothing to follow: the answer is final.
    Done,
    /// An `Azure-AsyncOperation` status URL.
    AsyncOperation(String),
    /// A `Location` URL (202 until done).
    Location(String),
}

impl Follow {
    /// How to follow the answer with these headers and status.
    pub fn of(status: StatusCode, headers: &HeaderMap) -> Follow {
        let header = |n: &str| {
            headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if let Some(url) = header("azure-asyncoperation") {
            return Follow::AsyncOperation(url);
        }
        if status == StatusCode::ACCEPTED
            && let Some(url) = header("location")
        {
            return Follow::Location(url);
        }
        Follow::Done
    }
}

/// How long before the next poll: the server's `Retry-After` (at most a minute), else
/// `fallback`.
fn pause(headers: &HeaderMap, fallback: Duration) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
        .map_or(fallback, |d| d.min(Duration::from_secs(60)))
}

/// Whether an operation status is terminal, and if so whether it succeeded.
pub fn terminal(status: &str) -> Option<bool> {
    match status.to_ascii_lowercase().as_str() {
        "succeeded" => Some(true),
        "failed" | "canceled" | "cancelled" => Some(false),
        _ => None,
    }
}

/// Follow the operation of `first` (the answer to `operation`, e.g. `PUT …/vm`) to its end.
pub async fn wait(
    rest: &RestClient,
    token: &Secret,
    operation: &str,
    first: &RestResponse,
    deadline: Deadline,
) -> Result<(), ArmError> {
    let mut interval = pause(&first.headers, Duration::from_millis(500));
    match Follow::of(first.status, &first.headers) {
        Follow::Done => Ok(()),
        Follow::AsyncOperation(url) => loop {
            sleep_within(interval, deadline, operation).await?;
            let answer = rest
                .request_url(Method::GET, &url)
                .bearer(token)
                .send()
                .await?;
            let status: OperationStatus =
                answer.json().map_err(|message| ArmError::Unexpected {
                    operation: operation.to_string(),
                    message: format!("unreadable operation status: {message}"),
                })?;
            match terminal(&status.status) {
                Some(true) => return Ok(()),
                Some(false) => {
                    let e = status.error.unwrap_or(ErrorDetail {
                        code: status.status.clone(),
                        message: String::new(),
                    });
                    return Err(ArmError::Operation {
                        operation: operation.to_string(),
                        status: status.status,
                        code: e.code,
                        message: e.message,
                    });
                }
                None => interval = pause(&answer.headers, grow(interval)),
            }
        },
        Follow::Location(url) => loop {
            sleep_within(interval, deadline, operation).await?;
            let answer = rest
                .request_url(Method::GET, &url)
                .bearer(token)
                .send()
                .await?;
            if answer.status != StatusCode::ACCEPTED {
                return Ok(());
            }
            interval = pause(&answer.headers, grow(interval));
        },
    }
}

fn grow(d: Duration) -> Duration {
    (d * 3 / 2).clamp(Duration::from_millis(500), Duration::from_secs(10))
}

async fn sleep_within(d: Duration, deadline: Deadline, operation: &str) -> Result<(), ArmError> {
    if deadline.remaining() <= d {
        return Err(ArmError::Deadline {
            operation: operation.to_string(),
            secs: deadline.total().as_secs(),
        });
    }
    tokio::time::sleep(d).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn which_url_is_followed() {
        let mut h = HeaderMap::new();
        assert_eq!(Follow::of(StatusCode::OK, &h), Follow::Done);
        h.insert("location", HeaderValue::from_static("https://a/loc"));
        assert_eq!(Follow::of(StatusCode::OK, &h), Follow::Done);
        assert_eq!(
            Follow::of(StatusCode::ACCEPTED, &h),
            Follow::Location("https://a/loc".into())
        );
        h.insert(
            "azure-asyncoperation",
            HeaderValue::from_static("https://a/op"),
        );
        assert_eq!(
            Follow::of(StatusCode::ACCEPTED, &h),
            Follow::AsyncOperation("https://a/op".into())
        );
    }

    #[test]
    fn statuses_and_pauses() {
        assert_eq!(terminal("Succeeded"), Some(true));
        assert_eq!(terminal("CANCELLED"), Some(false));
        assert_eq!(terminal("Failed"), Some(false));
        assert_eq!(terminal("InProgress"), None);
        let mut h = HeaderMap::new();
        assert_eq!(pause(&h, Duration::from_secs(2)), Duration::from_secs(2));
        h.insert("retry-after", HeaderValue::from_static("10"));
        assert_eq!(pause(&h, Duration::from_secs(2)), Duration::from_secs(10));
        h.insert("retry-after", HeaderValue::from_static("3600"));
        assert_eq!(pause(&h, Duration::from_secs(2)), Duration::from_secs(60));
    }
}

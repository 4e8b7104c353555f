//! Google's errors → typed errors: the provider's own (`GcpError`: a failed call with Google's
//! error body, a Compute operation that ended with errors, a deadline, a credential problem) and
//! the core's (`clusterctl_core::Error`): 401 → not authenticated, 403 → permission denied
//! naming the identity, an operation's `QUOTA_EXCEEDED` (or a 403 `quotaExceeded`) →
//! `QuotaExceeded` with the metric and region, stockouts (`ZONE_RESOURCE_POOL_EXHAUSTED*`,
//! `insufficientCapacity`, `UNSUPPORTED_OPERATION`) → `CapacityUnavailable` (the launch moves
//! on to the next zone or machine type), the rest → `Provider` with Google's reason and message.
//! Throttling (403 `rateLimitExceeded`, 429, 5xx) was retried in `api.rs` before it gets here.

use clusterctl_core::{Error, model::ProviderKind, rest::RestError};
use serde::Deserialize;

const P: ProviderKind = ProviderKind::Gcp;

/// Operation error codes of a stockout: only that zone (or machine type) is out of capacity.
pub const CAPACITY_CODES: [&str; 5] = [
    "ZONE_RESOURCE_POOL_EXHAUSTED",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
    "insufficientCapacity",
    "UNSUPPORTED_OPERATION",
    "RESOURCE_POOL_EXHAUSTED",
];

/// One error of a Compute operation (`error.errors[]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpError {
    /// E.g. `QUOTA_EXCEEDED`.
    #[serde(default)]
    pub code: String,
    /// Google's message.
    #[serde(default)]
    pub message: String,
    /// Details (`quotaInfo` …).
    #[serde(default)]
    pub error_details: Vec<serde_json::Value>,
}

/// Why a Google call failed.
#[derive(Debug, thiserror::Error)]
pub enum GcpError {
    /// The HTTP call failed (after retries).
    #[error(transparent)]
    Rest(#[from] RestError),
    /// A Compute operation ended DONE with errors.
    #[error("{operation}: {}", .errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect::<Vec<_>>().join("; "))]
    Operation {
        /// What was awaited, e.g. `insert instance c-scheduler`.
        operation: String,
        /// The operation's errors.
        errors: Vec<OpError>,
    },
    /// An operation or a wait did not end within its deadline.
    #[error("{operation}: not finished after {secs} s")]
    Deadline {
        /// What was awaited.
        operation: String,
        /// The deadline in seconds.
        secs: u64,
    },
    /// No credential, or one that could not give a token.
    #[error("{0}")]
    Credential(String),
    /// A success answer that is not what Google documents.
    #[error("{operation}: unexpected answer: {message}")]
    Unexpected {
        /// The call.
        operation: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Google's error body: `{"error": {"code", "message", "status", "errors": [{"reason"}]}}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorDetail {
    /// The HTTP code.
    #[serde(default)]
    pub code: u16,
    /// The message.
    #[serde(default)]
    pub message: String,
    /// E.g. `PERMISSION_DENIED`.
    #[serde(default)]
    pub status: String,
    /// Compute's reasons.
    #[serde(default)]
    pub errors: Vec<Reason>,
}

/// One `errors[]` entry of an error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Reason {
    /// E.g. `rateLimitExceeded`, `alreadyExists`.
    #[serde(default)]
    pub reason: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// The error detail of a failed call's body, when it has Google's shape.
pub fn body_of(e: &RestError) -> Option<ErrorDetail> {
    serde_json::from_str::<ErrorBody>(e.body()?)
        .ok()
        .map(|b| b.error)
}

/// Whether a failed call is Compute's rate limiting (403 `rateLimitExceeded` or
/// `userRateLimitExceeded`), which the REST client does not retry by itself.
pub fn is_rate_limited(e: &RestError) -> bool {
    e.status().map(|s| s.as_u16()) == Some(403)
        && body_of(e).is_some_and(|b| {
            b.errors
                .iter()
                .any(|r| r.reason == "rateLimitExceeded" || r.reason == "userRateLimitExceeded")
                || b.status == "RESOURCE_EXHAUSTED"
        })
}

impl GcpError {
    /// Google's reason (`errors[].reason`), else the status (`ALREADY_EXISTS`), else an
    /// operation's first code.
    pub fn reason(&self) -> Option<String> {
        match self {
            GcpError::Operation { errors, .. } => errors.first().map(|e| e.code.clone()),
            GcpError::Rest(e) => body_of(e).map(|b| {
                b.errors
                    .first()
                    .map(|r| r.reason.clone())
                    .filter(|r| !r.is_empty())
                    .unwrap_or(b.status)
            }),
            _ => None,
        }
    }

    /// The HTTP status of a failed call.
    pub fn status(&self) -> Option<u16> {
        match self {
            GcpError::Rest(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// Whether Google answered 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether Google answered 409 (`alreadyExists`; its `status` may be ABORTED, so the code
    /// decides).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// The message of a failed call or operation.
    pub fn message(&self) -> String {
        match self {
            GcpError::Rest(e) => body_of(e).map_or_else(|| e.to_string(), |b| b.message),
            GcpError::Operation { errors, .. } => errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        }
    }

    /// Whether this is a stockout: another zone, machine type or provisioning model may work.
    pub fn is_capacity(&self) -> bool {
        match self {
            GcpError::Operation { errors, .. } => errors
                .iter()
                .any(|e| CAPACITY_CODES.contains(&e.code.as_str())),
            GcpError::Rest(_) => self
                .reason()
                .is_some_and(|r| CAPACITY_CODES.contains(&r.as_str())),
            _ => false,
        }
    }

    /// Whether the `networkIP` asked for is held by another resource (the operation's
    /// `IP_IN_USE_BY_ANOTHER_RESOURCE`, or a call refused with "is already being used").
    pub fn is_ip_taken(&self) -> bool {
        match self {
            GcpError::Operation { errors, .. } => errors
                .iter()
                .any(|e| e.code == "IP_IN_USE_BY_ANOTHER_RESOURCE"),
            GcpError::Rest(_) => {
                self.status() == Some(400)
                    && self
                        .message()
                        .contains("is already being used by another resource")
            }
            _ => false,
        }
    }

    /// Whether a quota refused it.
    pub fn is_quota(&self) -> bool {
        match self {
            GcpError::Operation { errors, .. } => errors.iter().any(|e| e.code == "QUOTA_EXCEEDED"),
            GcpError::Rest(_) => self
                .reason()
                .is_some_and(|r| r == "quotaExceeded" || r == "QUOTA_EXCEEDED"),
            _ => false,
        }
    }

    /// Whether Compute or IAM does not know a service account created moments ago yet
    /// (eventual consistency: 400 "Service account … does not exist", or a 403/404 on it).
    pub fn is_unpropagated_account(&self) -> bool {
        let m = self.message().to_ascii_lowercase();
        matches!(self.status(), Some(400 | 403 | 404))
            && m.contains("service account")
            && (m.contains("does not exist") || m.contains("not found") || m.contains("permission"))
    }
}

/// What the provider knows when it maps an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The zone(s), for capacity and quota errors.
    pub location: Option<&'a str>,
    /// Who clusterctl acts as, for permission errors.
    pub identity: Option<&'a str>,
}

/// The quota named by an operation error (`quotaInfo`: metric, limit, region).
fn quota_text(e: &OpError) -> String {
    let info = e
        .error_details
        .iter()
        .find_map(|d| d.get("quotaInfo"))
        .cloned()
        .unwrap_or_default();
    let metric = info["metricName"].as_str().unwrap_or_default();
    let region = info["dimensions"]["region"].as_str().unwrap_or("global");
    let limit = info["limit"].as_f64();
    match limit {
        Some(l) if !metric.is_empty() => {
            format!("{} (quota {metric}, limit {l} in {region})", e.message)
        }
        _ => e.message.clone(),
    }
}

/// Map a Google error to the core's error.
pub fn map(e: GcpError, ctx: Context<'_>) -> Error {
    let location = ctx.location.unwrap_or("the zone").to_string();
    let identity = ctx
        .identity
        .map(|i| format!(" (acting as {i})"))
        .unwrap_or_default();
    if e.is_quota() {
        let message = match &e {
            GcpError::Operation { errors, .. } => errors
                .iter()
                .filter(|x| x.code == "QUOTA_EXCEEDED")
                .map(quota_text)
                .collect::<Vec<_>>()
                .join("; "),
            other => other.message(),
        };
        return Error::QuotaExceeded {
            provider: P,
            message,
        };
    }
    if e.is_capacity() {
        return Error::CapacityUnavailable {
            provider: P,
            location,
            message: e.to_string(),
        };
    }
    match e {
        GcpError::Credential(message) => Error::Unauthenticated {
            provider: P,
            message,
        },
        GcpError::Unexpected { operation, message } => Error::Provider {
            provider: P,
            operation,
            message,
        },
        GcpError::Deadline { operation, secs } => Error::Provider {
            provider: P,
            operation,
            message: format!("not finished within {secs} s"),
        },
        GcpError::Operation { operation, errors } => Error::Provider {
            provider: P,
            operation,
            message: errors
                .iter()
                .map(|x| format!("{}: {}", x.code, x.message))
                .collect::<Vec<_>>()
                .join("; "),
        },
        GcpError::Rest(rest) => {
            let operation = rest.operation();
            let status = rest.status().map(|s| s.as_u16());
            let detail = body_of(&rest);
            let (reason, message) = detail.map_or_else(
                || (String::new(), rest.to_string()),
                |d| {
                    (
                        d.errors
                            .first()
                            .map(|r| r.reason.clone())
                            .filter(|r| !r.is_empty())
                            .unwrap_or(d.status),
                        d.message,
                    )
                },
            );
            match status {
                Some(401) => Error::Unauthenticated {
                    provider: P,
                    message: format!("{reason}: {message}"),
                },
                Some(403) => Error::PermissionDenied {
                    provider: P,
                    action: operation,
                    message: format!("{reason}: {message}{identity}"),
                },
                _ if reason.is_empty() => Error::Provider {
                    provider: P,
                    operation,
                    message,
                },
                _ => Error::Provider {
                    provider: P,
                    operation,
                    message: format!("{reason}: {message}"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::{Method, StatusCode};

    fn status(code: u16, body: &str) -> GcpError {
        GcpError::Rest(RestError::Status {
            service: "compute",
            method: Method::POST,
            path: "/compute/v1/projects/p/zones/z/instances".into(),
            status: StatusCode::from_u16(code).unwrap(),
            headers: Box::default(),
            body: body.into(),
        })
    }

    #[test]
    fn quota_capacity_and_rate_limits() {
        let quota = GcpError::Operation {
            operation: "insert".into(),
            errors: vec![OpError {
                code: "QUOTA_EXCEEDED".into(),
                message: "Quota 'CPUS' exceeded.  Limit: 24.0 in region us-central1.".into(),
                error_details: vec![serde_json::json!({"quotaInfo": {
                    "metricName": "compute.googleapis.com/cpus", "limit": 24.0,
                    "dimensions": {"region": "us-central1"}}})],
            }],
        };
        match map(quota, Context::default()) {
            Error::QuotaExceeded { message, .. } => {
                assert!(
                    message.contains("compute.googleapis.com/cpus")
                        && message.contains("us-central1"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
        let stockout = GcpError::Operation {
            operation: "insert".into(),
            errors: vec![OpError {
                code: "ZONE_RESOURCE_POOL_EXHAUSTED".into(),
                ..Default::default()
            }],
        };
        assert!(stockout.is_capacity());
        assert!(matches!(
            map(stockout, Context::default()),
            Error::CapacityUnavailable { .. }
        ));
        let limited = r#"{"error":{"code":403,"message":"Rate Limit Exceeded","status":"PERMISSION_DENIED","errors":[{"reason":"rateLimitExceeded","domain":"usageLimits","message":"x"}]}}"#;
        match status(403, limited) {
            GcpError::Rest(r) => assert!(is_rate_limited(&r)),
            _ => unreachable!(),
        }
        let denied = r#"{"error":{"code":403,"message":"Required 'compute.instances.create'","status":"PERMISSION_DENIED","errors":[{"reason":"forbidden"}]}}"#;
        match status(403, denied) {
            GcpError::Rest(r) => assert!(!is_rate_limited(&r)),
            _ => unreachable!(),
        }
        let ctx = Context {
            location: None,
            identity: Some("sa@p.iam.gserviceaccount.com"),
        };
        match map(status(403, denied), ctx) {
            Error::PermissionDenied { message, .. } => {
                assert!(message.contains("sa@p.iam"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(
            status(
                409,
                r#"{"error":{"code":409,"status":"ABORTED","message":"exists"}}"#
            )
            .is_conflict()
        );
        assert!(status(404, "").is_not_found());
        let taken = GcpError::Operation {
            operation: "insert".into(),
            errors: vec![OpError {
                code: "IP_IN_USE_BY_ANOTHER_RESOURCE".into(),
                message: "IP '10.128.0.9' is already being used by another resource.".into(),
                ..Default::default()
            }],
        };
        assert!(taken.is_ip_taken() && !taken.is_capacity());
        assert!(
            status(400, r#"{"error":{"code":400,"message":"Service account x@p.iam.gserviceaccount.com does not exist.","status":"INVALID_ARGUMENT"}}"#)
                .is_unpropagated_account()
        );
    }
}

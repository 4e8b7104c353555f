//! ARM's and Entra ID's errors → typed errors: the provider's own (`ArmError`, what a call or an
//! operation returned) and the core's (`clusterctl_core::Error`, what the user sees): 401 →
//! not authenticated, 403 `AuthorizationFailed` → permission denied naming the identity,
//! `OperationNotAllowed` whose message speaks of a cores quota → `QuotaExceeded` (ARM says which
//! quota only in the message), `SkuNotAvailable` and the allocation failures an operation
//! reports → `CapacityUnavailable` (the launch moves on to the next size), the rest →
//! `Provider` with ARM's code and message.

use clusterctl_core::{Error, model::ProviderKind, rest::RestError};
use serde::Deserialize;

const P: ProviderKind = ProviderKind::Azure;

/// Codes of an operation that ran out of capacity (the VM is left `Failed` and must be
/// deleted).
pub const CAPACITY_CODES: [&str; 3] = [
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
];

/// Why an ARM or token call failed.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    /// The HTTP call failed (after the REST client's retries).
    #[error(transparent)]
    Rest(#[from] RestError),
    /// A long-running operation ended `Failed` or `Canceled`.
    #[error("{operation}: {status}: {code}: {message}")]
    Operation {
        /// `PUT …/virtualMachines/x` or the like.
        operation: String,
        /// `Failed` or `Canceled`.
        status: String,
        /// ARM's error code.
        code: String,
        /// ARM's message.
        message: String,
    },
    /// A long-running operation did not end within its deadline.
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
    /// A credential setting the user must fix (exit 2, nothing called).
    #[error("{what}={value}: {reason}")]
    Invalid {
        /// The environment variable or flag.
        what: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: String,
        /// How to fix it.
        hint: String,
    },
    /// A success answer that is not what ARM documents.
    #[error("{operation}: unexpected answer: {message}")]
    Unexpected {
        /// The call.
        operation: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ArmError {
    /// ARM's error code, from an operation or an error body.
    pub fn code(&self) -> Option<String> {
        match self {
            ArmError::Operation { code, .. } => Some(code.clone()),
            ArmError::Rest(e) => body_of(e).map(|b| b.code),
            _ => None,
        }
    }

    /// Whether ARM answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ArmError::Rest(e) if e.is_not_found())
    }

    /// Whether this is a capacity failure (another size may work).
    pub fn is_capacity(&self) -> bool {
        self.code()
            .is_some_and(|c| CAPACITY_CODES.contains(&c.as_str()) || c == "SkuNotAvailable")
    }
}

/// ARM's error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorDetail {
    /// E.g. `AuthorizationFailed`.
    #[serde(default)]
    pub code: String,
    /// The explanation.
    #[serde(default)]
    pub message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// The error detail of a failed call's body, when it has ARM's shape.
pub fn body_of(e: &RestError) -> Option<ErrorDetail> {
    serde_json::from_str::<ErrorBody>(e.body()?)
        .ok()
        .map(|b| b.error)
}

/// What the provider knows when it maps an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The location, for capacity and quota errors.
    pub location: Option<&'a str>,
    /// Who clusterctl acts as, for permission errors.
    pub identity: Option<&'a str>,
}

/// Whether an `OperationNotAllowed` message is a quota refusal: "Operation could not be
/// completed as it results in exceeding approved standardDSv5Family Cores quota …".
pub fn is_quota_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("quota") && (m.contains("exceeding") || m.contains("current limit"))
}

/// Map an ARM error to the core's error.
pub fn map(e: ArmError, ctx: Context<'_>) -> Error {
    let location = ctx.location.unwrap_or("the location").to_string();
    let identity = ctx
        .identity
        .map(|i| format!(" (acting as {i})"))
        .unwrap_or_default();
    match e {
        ArmError::Credential(message) => Error::Unauthenticated {
            provider: P,
            message,
        },
        ArmError::Invalid {
            what,
            value,
            reason,
            hint,
        } => Error::invalid(what, value, reason, Some(hint)),
        ArmError::Unexpected { operation, message } => Error::Provider {
            provider: P,
            operation,
            message,
        },
        ArmError::Deadline { operation, secs } => Error::Provider {
            provider: P,
            operation,
            message: format!("the operation did not finish within {secs} s"),
        },
        ArmError::Operation {
            operation,
            code,
            message,
            status,
        } => {
            if CAPACITY_CODES.contains(&code.as_str()) {
                Error::CapacityUnavailable {
                    provider: P,
                    location,
                    message: format!("{code}: {message}"),
                }
            } else if code == "OperationNotAllowed" && is_quota_message(&message) {
                Error::QuotaExceeded {
                    provider: P,
                    message: format!("{message} (in {location})"),
                }
            } else {
                Error::Provider {
                    provider: P,
                    operation,
                    message: format!("{status}: {code}: {message}"),
                }
            }
        }
        ArmError::Rest(rest) => {
            let operation = rest.operation();
            let status = rest.status().map(|s| s.as_u16());
            let detail = body_of(&rest);
            let (code, message) = detail
                .map(|d| (d.code, d.message))
                .unwrap_or_else(|| (String::new(), rest.to_string()));
            match (status, code.as_str()) {
                (Some(401), _) => Error::Unauthenticated {
                    provider: P,
                    message: format!("{code}: {message}"),
                },
                (Some(403), _) | (_, "AuthorizationFailed") => Error::PermissionDenied {
                    provider: P,
                    action: operation,
                    message: format!("{code}: {message}{identity}"),
                },
                (_, "OperationNotAllowed") if is_quota_message(&message) => Error::QuotaExceeded {
                    provider: P,
                    message: format!("{message} (in {location})"),
                },
                (_, "SkuNotAvailable") => Error::CapacityUnavailable {
                    provider: P,
                    location,
                    message: format!("{code}: {message}"),
                },
                (_, c) if CAPACITY_CODES.contains(&c) => Error::CapacityUnavailable {
                    provider: P,
                    location,
                    message: format!("{code}: {message}"),
                },
                _ if code.is_empty() => Error::Provider {
                    provider: P,
                    operation,
                    message,
                },
                _ => Error::Provider {
                    provider: P,
                    operation,
                    message: format!("{code}: {message}"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::{Method, StatusCode};

    fn status(code: u16, body: &str) -> ArmError {
        ArmError::Rest(RestError::Status {
            service: "azure",
            method: Method::PUT,
            path: "/subscriptions/s/x".into(),
            status: StatusCode::from_u16(code).unwrap(),
            headers: Box::default(),
            body: body.into(),
        })
    }

    #[test]
    fn quota_is_known_by_its_message() {
        let e = status(
            409,
            r#"{"error":{"code":"OperationNotAllowed","message":"Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota. Additional details - Deployment Model: Resource Manager, Location: eastus, Current Limit: 8, Current Usage: 8, Additional Required: 4"}}"#,
        );
        let ctx = Context {
            location: Some("eastus"),
            identity: None,
        };
        match map(e, ctx) {
            Error::QuotaExceeded { message, .. } => {
                assert!(message.contains("standardDSv5Family") && message.contains("eastus"))
            }
            other => panic!("{other:?}"),
        }
        let other = status(
            409,
            r#"{"error":{"code":"OperationNotAllowed","message":"The VM is being deleted"}}"#,
        );
        assert!(matches!(map(other, ctx), Error::Provider { .. }));
    }

    #[test]
    fn capacity_permission_and_auth() {
        let ctx = Context {
            location: Some("eastus"),
            identity: Some("service principal c in tenant t"),
        };
        let sku = status(
            409,
            r#"{"error":{"code":"SkuNotAvailable","message":"not offered"}}"#,
        );
        assert!(sku.is_capacity());
        assert!(matches!(map(sku, ctx), Error::CapacityUnavailable { .. }));
        let op = ArmError::Operation {
            operation: "PUT vm".into(),
            status: "Failed".into(),
            code: "AllocationFailed".into(),
            message: "no capacity".into(),
        };
        assert!(op.is_capacity());
        assert!(matches!(map(op, ctx), Error::CapacityUnavailable { .. }));
        let denied = status(
            403,
            r#"{"error":{"code":"AuthorizationFailed","message":"no write"}}"#,
        );
        match map(denied, ctx) {
            Error::PermissionDenied { message, .. } => {
                assert!(message.contains("service principal c"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            map(status(401, "{}"), ctx),
            Error::Unauthenticated { .. }
        ));
        assert!(status(404, "").is_not_found());
    }
}

//! Turning the kube client's errors into clusterctl's typed errors: authentication, RBAC,
//! quotas, conflicts and the rest, each with the operation that failed.
//!
//! Throttling (429) and unavailability (503, 504) never reach here on their first occurrences:
//! the kube client retries them with jittered exponential backoff and honours `Retry-After`.

use clusterctl_core::{Error, model::ProviderKind};

const KIND: ProviderKind = ProviderKind::Kubernetes;

/// The API's status code of an error, when it is an API answer.
pub fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether the API said the object does not exist.
pub fn is_not_found(e: &kube::Error) -> bool {
    code(e) == Some(404)
}

/// Whether the API said the object already exists.
pub fn is_conflict(e: &kube::Error) -> bool {
    code(e) == Some(409)
}

/// Map a client error of `operation` (e.g. "create pod demo-scheduler").
pub fn map(operation: &str, e: kube::Error) -> Error {
    match &e {
        kube::Error::Api(s) => {
            let message = if s.message.is_empty() {
                format!("{} ({})", s.reason, s.code)
            } else {
                s.message.clone()
            };
            match s.code {
                401 => Error::Unauthenticated {
                    provider: KIND,
                    message: format!(
                        "{message} (check the kubeconfig's credentials or `--context`)"
                    ),
                },
                403 if message.contains("exceeded quota") => Error::QuotaExceeded {
                    provider: KIND,
                    message,
                },
                403 => Error::PermissionDenied {
                    provider: KIND,
                    action: operation.to_string(),
                    message,
                },
                _ => Error::Provider {
                    provider: KIND,
                    operation: operation.to_string(),
                    message: format!("{message} (HTTP {})", s.code),
                },
            }
        }
        _ => Error::Provider {
            provider: KIND,
            operation: operation.to_string(),
            message: e.to_string(),
        },
    }
}

/// A closure for `map_err` that maps errors of `operation`.
pub fn map_for(operation: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let operation = operation.into();
    move |e| map(&operation, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s = kube::core::Status::failure(message, reason);
        s.code = code;
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn typed_errors() {
        assert!(matches!(
            map("create pod x", api(401, "Unauthorized", "Unauthorized")),
            Error::Unauthenticated { .. }
        ));
        let e = map(
            "create pod x",
            api(
                403,
                "Forbidden",
                "pods \"x\" is forbidden: exceeded quota: q, requested: cpu=4",
            ),
        );
        assert!(matches!(e, Error::QuotaExceeded { .. }), "{e}");
        let e = map(
            "create pod x",
            api(
                403,
                "Forbidden",
                "pods is forbidden: User \"ci\" cannot create resource",
            ),
        );
        assert!(e.to_string().contains("create pod x"), "{e}");
        assert!(is_not_found(&api(404, "NotFound", "pods \"x\" not found")));
        assert!(is_conflict(&api(409, "AlreadyExists", "exists")));
    }
}

//! AWS errors to clusterctl errors: capacity, quota, permission and credential problems become
//! their typed variants (reported, never retried blindly); everything else names the operation.
//! Throttling and transient faults are retried inside the SDK (standard retry mode, see
//! `lib.rs`) before they reach this mapping.

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use clusterctl_core::{Error, model::ProviderKind};

/// EC2 error codes that mean "no capacity for this request here": try another subnet, zone,
/// market or instance type.
pub const CAPACITY_CODES: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "InsufficientFreeAddressesInSubnet",
    "Unsupported",
];

/// Error codes that mean an account limit was reached.
pub const QUOTA_CODES: &[&str] = &[
    "InstanceLimitExceeded",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "ResourceLimitExceeded",
    "SecurityGroupLimitExceeded",
    "RulesPerSecurityGroupLimitExceeded",
    "InsufficientAddressCapacity",
    // ECS, CloudWatch Logs, IAM and SSM account limits.
    "LimitExceededException",
    "LimitExceeded",
    "ParameterLimitExceeded",
];

const PERMISSION_CODES: &[&str] = &[
    "UnauthorizedOperation",
    "AccessDenied",
    "AccessDeniedException",
];
const CREDENTIAL_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
];

/// The error code of an SDK error, if the service sent one.
pub fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Whether the error is a capacity error (see [`CAPACITY_CODES`]).
pub fn is_capacity<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    code(err).is_some_and(|c| CAPACITY_CODES.contains(&c))
}

/// Whether RunInstances failed because EC2 does not know the instance profile yet: right after
/// IAM created it (eventual consistency), "Value (...) for parameter iamInstanceProfile.name is
/// invalid. Invalid IAM Instance Profile name".
pub fn is_profile_propagation<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::ServiceError(e) => {
            e.err().code() == Some("InvalidParameterValue")
                && e.err().message().is_some_and(|m| {
                    m.contains("iamInstanceProfile") || m.contains("IAM Instance Profile")
                })
        }
        _ => false,
    }
}

/// Map an SDK error of `operation` (e.g. "ec2:RunInstances") to a clusterctl error of the
/// `aws` provider.
pub fn map<E, R>(operation: &str, location: &str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    map_for(ProviderKind::Aws, operation, location, err)
}

/// Name the acting identity in a permission error, so the user knows whose policy to change.
pub fn with_identity(err: Error, identity: Option<&str>) -> Error {
    match (err, identity) {
        (
            Error::PermissionDenied {
                provider,
                action,
                message,
            },
            Some(id),
        ) => Error::PermissionDenied {
            provider,
            action,
            message: format!("{message} (acting as {id})"),
        },
        (other, _) => other,
    }
}

/// Map an SDK error of `operation` to a clusterctl error of `provider` (`aws` or `fargate`).
pub fn map_for<E, R>(
    provider: ProviderKind,
    operation: &str,
    location: &str,
    err: SdkError<E, R>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let (code, message) = match &err {
        SdkError::ServiceError(e) => (
            e.err().code().map(str::to_string),
            e.err().message().unwrap_or_default().to_string(),
        ),
        other => (None, describe(other)),
    };
    let message = match &code {
        Some(c) if !message.is_empty() => format!("{c}: {message}"),
        Some(c) => c.clone(),
        None => message,
    };
    match code.as_deref() {
        Some(c) if CAPACITY_CODES.contains(&c) => Error::CapacityUnavailable {
            provider,
            location: location.to_string(),
            message,
        },
        Some(c) if QUOTA_CODES.contains(&c) => Error::QuotaExceeded { provider, message },
        Some(c) if PERMISSION_CODES.contains(&c) => Error::PermissionDenied {
            provider,
            action: operation.to_string(),
            message,
        },
        Some(c) if CREDENTIAL_CODES.contains(&c) => Error::Unauthenticated { provider, message },
        _ => Error::Provider {
            provider,
            operation: operation.to_string(),
            message,
        },
    }
}

/// A readable description of a non-service error (dispatch failure, timeout, …) with its
/// causes, which the SDK's own Display leaves out.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

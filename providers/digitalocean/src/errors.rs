//! DigitalOcean API errors to clusterctl errors: the HTTP status, the error `id` and the message
//! decide. 401 is a token problem (with how to set one), 403 a missing scope, the 422s of a size
//! or region without capacity are capacity (the launch moves to the next size), the 422 of the
//! droplet limit is a quota; everything else names the call. Throttling (429) and server errors
//! were already retried by `clusterctl_core::rest` before they get here.

use clusterctl_core::{Error, model::ProviderKind, rest::RestError};
use serde::Deserialize;

const PROVIDER: ProviderKind = ProviderKind::Digitalocean;

/// How to give clusterctl a token, for every authentication error.
pub const TOKEN_HINT: &str = "create a personal access token at https://cloud.digitalocean.com/account/api/tokens and \
`export DIGITALOCEAN_TOKEN=...` (or DIGITALOCEAN_ACCESS_TOKEN), or run `doctl auth init`; clusterctl never takes a token as a flag";

/// What an error body says: `{id, message}` on most calls, `{error, messages}` on some (a bad
/// tag name).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiErrorBody {
    /// E.g. `unprocessable_entity`.
    #[serde(default)]
    pub id: Option<String>,
    /// E.g. "Size is not available in this region."
    #[serde(default)]
    pub message: Option<String>,
    /// The other shape's summary.
    #[serde(default)]
    pub error: Option<String>,
    /// The other shape's details.
    #[serde(default)]
    pub messages: Option<Vec<String>>,
}

impl ApiErrorBody {
    /// Parse a body (anything unparsable becomes its text as the message).
    pub fn parse(body: &str) -> Self {
        serde_json::from_str(body).unwrap_or_else(|_| ApiErrorBody {
            message: Some(body.trim().chars().take(300).collect()),
            ..Default::default()
        })
    }

    /// The message to show.
    pub fn text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if let Some(m) = self.message.as_ref().filter(|m| !m.is_empty()) {
            parts.push(m.clone());
        }
        if let Some(e) = self.error.as_ref().filter(|m| !m.is_empty()) {
            parts.push(e.clone());
        }
        if let Some(ms) = &self.messages {
            parts.extend(ms.iter().filter(|m| !m.is_empty()).cloned());
        }
        parts.join("; ")
    }
}

/// Facts that make an error message actionable.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// The region of the call, for capacity errors.
    pub region: Option<&'a str>,
    /// The account's droplet limit, when known, for quota errors.
    pub droplet_limit: Option<u32>,
    /// The identity the token acts as, for permission errors.
    pub identity: Option<&'a str>,
}

/// Whether a 422 message means "no capacity for this size/region here: try another size".
pub fn is_capacity_message(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    (m.contains("size") && m.contains("not available"))
        || (m.contains("region") && (m.contains("not available") || m.contains("unavailable")))
        || m.contains("insufficient capacity")
}

/// Whether a 422 message is the account's droplet limit.
pub fn is_droplet_limit_message(message: &str) -> bool {
    message.to_ascii_lowercase().contains("droplet limit")
}

/// The token scope a call needs, from its method and path (`GET /v2/droplets` → `droplet:read`).
pub fn scope_of(operation: &str) -> Option<String> {
    let (method, path) = operation.split_once(' ')?;
    let mut segments = path.trim_start_matches('/').split('/').skip(1);
    let resource = match (segments.next()?, segments.next()) {
        ("account", Some("keys")) => "ssh_key",
        ("account", _) => "account",
        ("droplets", _) => "droplet",
        ("tags", _) => "tag",
        ("firewalls", _) => "firewall",
        ("images", _) => "image",
        ("vpcs", _) => "vpc",
        ("sizes", _) => "sizes",
        ("regions", _) => "regions",
        ("actions", _) => "actions",
        _ => return None,
    };
    let verb = match method {
        "GET" | "HEAD" => "read",
        "POST" => "create",
        "PUT" | "PATCH" => "update",
        "DELETE" => "delete",
        _ => return None,
    };
    Some(format!("{resource}:{verb}"))
}

/// Map an error of `operation` (`METHOD /path`, from [`RestError::operation`]).
pub fn map(err: RestError, ctx: Context<'_>) -> Error {
    let operation = err.operation();
    let RestError::Status { status, body, .. } = &err else {
        let message = match &err {
            RestError::Config { message, .. } => message.clone(),
            other => other.to_string(),
        };
        return Error::Provider {
            provider: PROVIDER,
            operation: if operation.is_empty() {
                "API client".into()
            } else {
                operation
            },
            message,
        };
    };
    let parsed = ApiErrorBody::parse(body);
    let text = parsed.text();
    let id = parsed.id.clone().unwrap_or_default();
    let described = if id.is_empty() {
        format!("HTTP {}: {text}", status.as_u16())
    } else {
        format!("HTTP {} {id}: {text}", status.as_u16())
    };
    match status.as_u16() {
        401 => Error::Unauthenticated {
            provider: PROVIDER,
            message: format!("{text} ({operation}); {TOKEN_HINT}"),
        },
        403 => Error::PermissionDenied {
            provider: PROVIDER,
            action: operation.clone(),
            message: format!(
                "{text}{}{}",
                scope_of(&operation)
                    .map(|s| format!(" (a custom-scoped token needs `{s}`)"))
                    .unwrap_or_default(),
                ctx.identity
                    .map(|i| format!(" (acting as {i})"))
                    .unwrap_or_default()
            ),
        },
        422 if is_droplet_limit_message(&text) => Error::QuotaExceeded {
            provider: PROVIDER,
            message: format!(
                "{text}{}; delete droplets you no longer need, use fewer workers, or ask DigitalOcean for a higher limit \
                 (https://cloud.digitalocean.com/account/team/droplet_limit_increase)",
                ctx.droplet_limit
                    .map(|l| format!(" (the account's droplet limit is {l})"))
                    .unwrap_or_default()
            ),
        },
        422 if is_capacity_message(&text) => Error::CapacityUnavailable {
            provider: PROVIDER,
            location: ctx.region.unwrap_or("the region").to_string(),
            message: text,
        },
        429 => Error::Provider {
            provider: PROVIDER,
            operation,
            message: format!(
                "rate limited by DigitalOcean (5,000 requests an hour and 250 a minute per token){}: {text}",
                err.header("retry-after")
                    .map(|r| format!("; retry after {r} s"))
                    .or_else(|| err
                        .header("ratelimit-reset")
                        .map(|r| format!("; the limit resets at epoch {r}")))
                    .unwrap_or_default()
            ),
        },
        _ => Error::Provider {
            provider: PROVIDER,
            operation,
            message: described,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::{Method, StatusCode};

    fn status(method: Method, path: &str, code: u16, body: &str) -> RestError {
        RestError::Status {
            service: "digitalocean",
            method,
            path: path.into(),
            status: StatusCode::from_u16(code).unwrap(),
            headers: Box::default(),
            body: body.into(),
        }
    }

    #[test]
    fn unauthenticated_says_how_to_set_the_token() {
        let e = map(
            status(
                Method::GET,
                "/v2/account",
                401,
                r#"{"id":"unauthorized","message":"Unable to authenticate you."}"#,
            ),
            Context::default(),
        );
        assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("Unable to authenticate you."), "{text}");
        assert!(text.contains("DIGITALOCEAN_TOKEN"), "{text}");
    }

    #[test]
    fn forbidden_names_the_scope_and_identity() {
        let e = map(
            status(
                Method::POST,
                "/v2/firewalls",
                403,
                r#"{"id":"forbidden","message":"You are not authorized to perform this operation"}"#,
            ),
            Context {
                identity: Some("me@example.com (uuid u)"),
                ..Default::default()
            },
        );
        let Error::PermissionDenied {
            action, message, ..
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(action, "POST /v2/firewalls");
        assert!(message.contains("`firewall:create`"), "{message}");
        assert!(message.contains("me@example.com"), "{message}");
    }

    #[test]
    fn capacity_and_quota() {
        let e = map(
            status(
                Method::POST,
                "/v2/droplets",
                422,
                r#"{"id":"unprocessable_entity","message":"Size is not available in this region."}"#,
            ),
            Context {
                region: Some("nyc3"),
                ..Default::default()
            },
        );
        assert!(
            matches!(&e, Error::CapacityUnavailable { location, .. } if location == "nyc3"),
            "{e:?}"
        );
        let e = map(
            status(
                Method::POST,
                "/v2/droplets",
                422,
                r#"{"id":"unprocessable_entity","message":"creating this/these droplet(s) will exceed your droplet limit"}"#,
            ),
            Context {
                droplet_limit: Some(25),
                ..Default::default()
            },
        );
        assert!(matches!(e, Error::QuotaExceeded { .. }), "{e:?}");
        assert!(e.to_string().contains("droplet limit is 25"), "{e}");
        let e = map(
            status(
                Method::POST,
                "/v2/droplets",
                422,
                r#"{"id":"unprocessable_entity","message":"You specified an invalid image for Droplet creation."}"#,
            ),
            Context::default(),
        );
        assert!(matches!(e, Error::Provider { .. }), "{e:?}");
        assert!(e.to_string().contains("unprocessable_entity"), "{e}");
    }

    #[test]
    fn other_shapes_and_statuses() {
        let e = map(
            status(
                Method::POST,
                "/v2/tags",
                400,
                r#"{"error":"bad request","messages":["name is invalid"],"root_causes":[]}"#,
            ),
            Context::default(),
        );
        assert!(
            e.to_string().contains("bad request; name is invalid"),
            "{e}"
        );
        let e = map(
            status(Method::GET, "/v2/sizes", 500, "<html>oops</html>"),
            Context::default(),
        );
        assert!(e.to_string().contains("oops"), "{e}");
        let e = map(
            status(
                Method::GET,
                "/v2/droplets",
                429,
                r#"{"id":"too_many_requests","message":"API Rate limit exceeded."}"#,
            ),
            Context::default(),
        );
        assert!(e.to_string().contains("rate limited"), "{e}");
    }

    #[test]
    fn scopes() {
        assert_eq!(
            scope_of("GET /v2/droplets").as_deref(),
            Some("droplet:read")
        );
        assert_eq!(
            scope_of("DELETE /v2/account/keys/12").as_deref(),
            Some("ssh_key:delete")
        );
        assert_eq!(scope_of("POST /v2/tags").as_deref(), Some("tag:create"));
        assert_eq!(scope_of("GET /v2/whatever"), None);
    }
}

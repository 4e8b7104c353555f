//! `clusterctl doctor`: checks of what `up` would need, each a line with its outcome and a
//! hint, made without creating anything. Providers add their own (permissions through the
//! platform's dry-run or access-review APIs) on top of [`plan_check`], which every provider
//! has: the plan's read-only calls are credentials, location, sizes, quotas and the name.

use serde::Serialize;

use crate::{
    Error,
    provider::{ClusterProvider, LaunchContext, Plan},
};

/// One check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked, e.g. `credentials and plan`.
    pub name: String,
    /// Whether `up` would get past it.
    pub ok: bool,
    /// What was found (the identity, the error).
    pub detail: String,
    /// What to do about a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Check {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            hint: None,
        }
    }

    /// A failed check.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>, hint: Option<String>) -> Self {
        Check {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            hint,
        }
    }

    /// A failed check from the error `up` would have stopped with.
    pub fn from_error(name: impl Into<String>, err: &Error) -> Self {
        let hints = err.hints();
        Check::fail(
            name,
            err.to_string(),
            (!hints.is_empty()).then(|| hints.join("; ")),
        )
    }
}

/// The plan's check: what `up --dry-run` verifies, as one line, with the plan when it passed
/// (for checks that build on what it resolved).
pub async fn plan_check<P: ClusterProvider + ?Sized>(
    provider: &P,
    ctx: &LaunchContext<'_>,
) -> (Check, Option<Plan>) {
    let name = "credentials, location, sizes, quotas and name";
    match provider.plan(ctx).await {
        Ok(plan) => {
            let who = plan.identity.clone().map_or_else(
                || "no identity needed".to_string(),
                |i| format!("acting as {i}"),
            );
            (
                Check::pass(
                    name,
                    format!("{who}; {} resource(s) to create", plan.resources.len()),
                ),
                Some(plan),
            )
        }
        Err(e) => (Check::from_error(name, &e), None),
    }
}

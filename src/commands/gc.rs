//! `gc`: every clusterctl cluster past its TTL on the providers and places given (or
//! configured), half-made ones included (found through the resource that claims a cluster's
//! name, see `ClusterProvider::list_clusters`), listed; with `--yes`, each removed with
//! `down`'s own code. Made for a scheduled CI job: idempotent, bounded (each teardown by
//! `--timeout`), and safe beside other `up`/`down` (a cluster is re-checked as expired right
//! before it is touched, under the same per-name lock `down` takes).

use std::sync::Arc;

use anyhow::Result;
use clusterctl_core::{
    ClusterProvider, Error,
    model::{ClusterName, ClusterSummary, ProviderKind, now_epoch},
};
use serde::Serialize;
use serde_json::json;

use super::{Ctx, down::down_one, down::teardown_timeout, providers_to_ask};
use crate::{cli::GcArgs, providers::ProviderOptions, settings, signals::Signals};

/// One expired cluster as `gc` reports it.
#[derive(Debug, Clone, Serialize)]
struct Expired {
    name: String,
    provider: String,
    location: String,
    expires_at: Option<u64>,
    /// Nodes not terminated yet (0: only supporting resources are left).
    nodes_alive: usize,
    nodes: usize,
}

/// One cluster `gc` removed.
#[derive(Debug, Serialize)]
struct Removed {
    name: String,
    provider: String,
    location: String,
    nodes_terminated: Vec<String>,
}

/// One cluster `gc` could not remove.
#[derive(Debug, Serialize)]
struct Failed {
    name: String,
    provider: String,
    location: String,
    error: String,
}

pub async fn gc(ctx: &Ctx<'_>, args: &GcArgs) -> Result<u8> {
    let timeout = teardown_timeout(args.timeout.as_deref())?;
    let kinds = if args.providers.is_empty() {
        providers_to_ask(ctx, None)?
    } else {
        let mut kinds = Vec::new();
        for p in &args.providers {
            let k = settings::resolve_provider(Some(p), ctx.file.as_ref())?;
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        kinds
    };
    let now = now_epoch();
    let mut scopes: Vec<Arc<dyn ClusterProvider>> = Vec::new();
    let mut expired: Vec<(Expired, usize)> = Vec::new();
    for kind in kinds {
        for region in regions_of(kind, &args.regions) {
            let provider = build(ctx, args, kind, region.as_deref()).await?;
            let location = provider.location();
            // Providers listing one scope for every region given (a subscription, a project)
            // are asked once.
            if scopes
                .iter()
                .any(|p| p.kind() == kind && p.location() == location)
            {
                continue;
            }
            ctx.printer.info(&format!(
                "looking for expired clusters: {kind} in {location}"
            ));
            for summary in provider.list_clusters().await? {
                if summary.is_expired(now) && summary.holds_anything() {
                    expired.push((expired_of(&summary, kind, &location), scopes.len()));
                }
            }
            scopes.push(provider);
        }
    }
    let listed: Vec<Expired> = expired.iter().map(|(e, _)| e.clone()).collect();
    if !args.yes {
        ctx.printer.result(
            || {
                if listed.is_empty() {
                    return "no expired clusters".to_string();
                }
                listed.iter().map(describe).collect::<Vec<_>>().join("\n")
            },
            &json!({ "expired": listed, "removed": [] }),
        );
        if !listed.is_empty() {
            ctx.printer.hint(&format!(
                "`clusterctl gc --yes` with the same flags removes {}",
                if listed.len() == 1 { "it" } else { "them" }
            ));
        }
        return Ok(0);
    }

    let mut signals = Signals::install()?;
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for (e, scope) in &expired {
        let provider = scopes[*scope].clone();
        let Ok(name) = ClusterName::new(&e.name) else {
            continue;
        };
        // Another `up` may have taken the name over since the listing: look again.
        let still = match provider.list_clusters().await {
            Ok(now_listed) => now_listed
                .iter()
                .any(|s| s.name == e.name && s.is_expired(now_epoch()) && s.holds_anything()),
            Err(err) => {
                failed.push(failure(e, &err.to_string()));
                continue;
            }
        };
        if !still {
            ctx.printer.info(&format!(
                "`{}` is no longer expired (taken over or removed meanwhile): left alone",
                e.name
            ));
            continue;
        }
        ctx.printer.info(&format!(
            "removing `{}` ({} in {})",
            e.name, e.provider, e.location
        ));
        let mut abandoned = false;
        match down_one(
            ctx,
            &name,
            provider.as_ref(),
            timeout,
            &mut signals,
            &mut abandoned,
        )
        .await
        {
            Ok(nodes) => removed.push(Removed {
                name: e.name.clone(),
                provider: e.provider.clone(),
                location: e.location.clone(),
                nodes_terminated: nodes,
            }),
            Err(err) => {
                eprintln!("error: {err:#}");
                failed.push(failure(e, &format!("{err:#}")));
                if abandoned {
                    return Err(Error::Interrupted.into());
                }
            }
        }
    }
    crate::github::removed(
        &removed
            .iter()
            .map(|r| {
                format!(
                    "gc removed expired `{}` ({}, {} node(s) terminated)",
                    r.name,
                    r.provider,
                    r.nodes_terminated.len()
                )
            })
            .collect::<Vec<_>>(),
    );
    let code = if failed.is_empty() { 0 } else { 1 };
    ctx.printer.result(
        || {
            let mut lines: Vec<String> = removed
                .iter()
                .map(|r| {
                    format!(
                        "removed {} ({} in {}, {} node(s) terminated)",
                        r.name,
                        r.provider,
                        r.location,
                        r.nodes_terminated.len()
                    )
                })
                .collect();
            lines.extend(
                failed
                    .iter()
                    .map(|f| format!("not removed {} ({}): {}", f.name, f.provider, f.error)),
            );
            if lines.is_empty() {
                lines.push("no expired clusters".into());
            }
            lines.join("\n")
        },
        &json!({ "expired": listed, "removed": removed, "failed": failed }),
    );
    Ok(code)
}

/// The regions to search for `kind`: each one given for the AWS providers, whose listings are
/// per region; one scope for the others, whose listings cover the account, subscription,
/// project or namespace whatever the location (the first region given, if any, builds it).
fn regions_of(kind: ProviderKind, given: &[String]) -> Vec<Option<String>> {
    match kind {
        ProviderKind::Aws | ProviderKind::Fargate if !given.is_empty() => {
            given.iter().cloned().map(Some).collect()
        }
        ProviderKind::Local | ProviderKind::Kubernetes => vec![None],
        _ => vec![given.first().cloned()],
    }
}

async fn build(
    ctx: &Ctx<'_>,
    args: &GcArgs,
    kind: ProviderKind,
    region: Option<&str>,
) -> clusterctl_core::Result<Arc<dyn ClusterProvider>> {
    let opts = ProviderOptions {
        region: region
            .map(str::to_string)
            .or_else(|| ctx.file.as_ref().and_then(|f| f.config.region.clone())),
        extra: settings::scope_options(
            kind,
            &args.kube,
            &args.azure,
            args.project.as_deref(),
            false,
            ctx.file.as_ref(),
        )?,
        ..Default::default()
    };
    crate::providers::build(kind, &opts, &ctx.paths).await
}

fn expired_of(s: &ClusterSummary, kind: ProviderKind, location: &str) -> Expired {
    Expired {
        name: s.name.clone(),
        provider: kind.to_string(),
        location: location.to_string(),
        expires_at: s.expires_at,
        nodes_alive: s.nodes.iter().filter(|n| n.state.is_alive()).count(),
        nodes: s
            .nodes
            .iter()
            .filter(|n| n.state != clusterctl_core::NodeState::Terminated)
            .count(),
    }
}

fn describe(e: &Expired) -> String {
    let ago = e
        .expires_at
        .map(|t| {
            let secs = now_epoch().saturating_sub(t);
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        })
        .unwrap_or_else(|| "?".into());
    let what = if e.nodes == 0 {
        "no nodes: supporting resources only (a half-made or half-removed cluster)".to_string()
    } else {
        format!("{} node(s), {} alive", e.nodes, e.nodes_alive)
    };
    format!(
        "expired {} ({} in {}, {ago} ago): {what}",
        e.name, e.provider, e.location
    )
}

fn failure(e: &Expired, error: &str) -> Failed {
    Failed {
        name: e.name.clone(),
        provider: e.provider.clone(),
        location: e.location.clone(),
        error: error.to_string(),
    }
}

//! `down`: tear clusters down from the provider's tags, verify nothing is left, forget their
//! records. Idempotent: a cluster that is already gone is success. `--timeout` bounds each
//! cluster's whole teardown; what cannot be removed in time is named, and its record kept.

use std::time::Duration;

use anyhow::Result;
use clusterctl_core::{
    ClusterProvider, Error,
    lifecycle::{self, Tracker},
    model::{ClusterName, MAX_TIMEOUT},
};
use serde::Serialize;
use serde_json::json;

use super::{Ctx, providers_to_ask};
use crate::{cli::DownArgs, providers::ProviderOptions, settings, signals::Signals};

#[derive(Serialize)]
struct Removed {
    name: String,
    provider: String,
    nodes_terminated: Vec<String>,
}

/// `--timeout` of a teardown: each cluster's, 10 minutes by default.
pub(super) fn teardown_timeout(given: Option<&str>) -> clusterctl_core::Result<Duration> {
    Ok(match given {
        Some(t) => {
            let d = settings::parse_duration("--timeout", t)?;
            clusterctl_core::model::check_duration_max("--timeout", t, d, MAX_TIMEOUT)?;
            d
        }
        None => lifecycle::TEARDOWN_TIMEOUT,
    })
}

pub async fn down(ctx: &Ctx<'_>, args: &DownArgs) -> Result<u8> {
    let timeout = teardown_timeout(args.timeout.as_deref())?;
    let mut targets: Vec<(ClusterName, std::sync::Arc<dyn ClusterProvider>)> = Vec::new();
    if args.all || args.expired {
        // With --expired, only clusters whose expiry (from their tags, else the record) passed;
        // half-made clusters (no node left) are found through their claims.
        let now = clusterctl_core::model::now_epoch();
        let wanted =
            |expires_at: Option<u64>| !args.expired || expires_at.is_some_and(|t| t <= now);
        for kind in providers_to_ask(ctx, args.at.provider.as_deref())? {
            let opts = ProviderOptions {
                region: args.at.region.clone(),
                extra: settings::scope_options(
                    kind,
                    &args.at.kube,
                    &args.at.azure,
                    args.at.project.as_deref(),
                    false,
                    ctx.file.as_ref(),
                )?,
                ..Default::default()
            };
            let provider = crate::providers::build(kind, &opts, &ctx.paths).await?;
            for summary in provider.list_clusters().await? {
                if !summary.holds_anything() || (args.expired && !summary.is_expired(now)) {
                    continue;
                }
                if let Ok(name) = ClusterName::new(&summary.name) {
                    targets.push((name, provider.clone()));
                }
            }
        }
        for record in ctx.store.list()? {
            if wanted(Some(record.spec.expires_at()))
                && !targets.iter().any(|(n, _)| n == record.name())
            {
                targets.push((record.name().clone(), ctx.provider_of(&record).await?));
            }
        }
    } else {
        let name = ctx.pick_name(args.name.as_deref())?;
        let (provider, _) = ctx.locate(&name, &args.at).await?;
        targets.push((name, provider));
    }
    let mut signals = Signals::install()?;
    let mut removed = Vec::new();
    let mut first_error = None;
    let several = targets.len() > 1;
    for (name, provider) in targets {
        let mut abandoned = false;
        let outcome = down_one(
            ctx,
            &name,
            provider.as_ref(),
            timeout,
            &mut signals,
            &mut abandoned,
        );
        match outcome.await {
            Ok(nodes) => removed.push(Removed {
                name: name.to_string(),
                provider: provider.kind().to_string(),
                nodes_terminated: nodes,
            }),
            Err(e) => {
                if several {
                    eprintln!("error: {e:#}");
                }
                first_error.get_or_insert(e);
                if abandoned {
                    break;
                }
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    crate::github::removed(
        &removed
            .iter()
            .map(|r| {
                format!(
                    "removed `{}` ({}, {} node(s) terminated)",
                    r.name,
                    r.provider,
                    r.nodes_terminated.len()
                )
            })
            .collect::<Vec<_>>(),
    );
    ctx.printer.result(
        || {
            if removed.is_empty() {
                return "no clusters to remove".to_string();
            }
            removed
                .iter()
                .map(|r| {
                    format!(
                        "removed {} ({}, {} node(s) terminated)",
                        r.name,
                        r.provider,
                        r.nodes_terminated.len()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        },
        &json!({ "removed": removed }),
    );
    Ok(0)
}

pub(super) async fn down_one(
    ctx: &Ctx<'_>,
    name: &ClusterName,
    provider: &dyn ClusterProvider,
    timeout: Duration,
    signals: &mut Signals,
    abandoned: &mut bool,
) -> Result<Vec<String>> {
    let _lock = ctx.store.lock(name)?;
    // A young cluster's empty listing is confirmed (clouds list new nodes late).
    let created_at = ctx.store.load(name)?.map(|r| r.spec.created_at);
    let tracker = Tracker::new(created_at);
    let progress = ctx.printer.progress();
    let teardown = super::guarded_down(provider, name, &tracker, timeout, signals, &progress).await;
    match teardown {
        Ok(t) => {
            ctx.store.remove(name)?;
            Ok(t.nodes_terminated)
        }
        Err(failure) => {
            *abandoned = matches!(failure, Error::Interrupted);
            Err(tracker.left_behind(provider, name, None, failure).into())
        }
    }
}

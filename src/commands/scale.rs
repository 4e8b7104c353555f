//! `scale`: change the number of workers of a running cluster.

use std::time::Duration;

use anyhow::Result;
use clusterctl_core::{
    Error, lifecycle,
    model::{ClusterName, MAX_TIMEOUT},
    provider::LaunchContext,
    tls::TlsBundle,
};
use serde_json::json;

use super::Ctx;
use crate::{cli::ScaleArgs, settings};

pub async fn scale(ctx: &Ctx<'_>, args: &ScaleArgs) -> Result<u8> {
    let name = ClusterName::new(&args.name)?;
    let target = settings::parse_workers("--workers", &args.workers)?;
    let timeout = match &args.timeout {
        Some(t) => {
            let d = settings::parse_duration("--timeout", t)?;
            clusterctl_core::model::check_duration_max("--timeout", t, d, MAX_TIMEOUT)?;
            d
        }
        None => Duration::from_secs(600),
    };
    let _lock = ctx.store.lock(&name)?;
    let mut record = ctx.record(&name)?;
    let provider = ctx.provider_of(&record).await?;
    let endpoints = record.endpoints.clone().ok_or_else(|| Error::Scheduler {
        operation: "scale".into(),
        message: format!("cluster `{name}` has no endpoints recorded; wait for it first"),
    })?;
    let tls = match &record.tls {
        Some(files) => Some(TlsBundle::read_dir(
            files.ca_file.parent().expect("tls dir"),
        )?),
        None => None,
    };
    let reach = super::reach_of(provider.as_ref(), &name, &endpoints).await?;
    let progress = ctx.printer.progress();
    let lctx = LaunchContext {
        spec: &record.spec,
        tls: tls.as_ref(),
        progress: &progress,
    };
    let scaled = lifecycle::scale(
        provider.as_ref(),
        &lctx,
        &reach.endpoints,
        target,
        timeout,
        &progress,
    )
    .await?;
    progress.finish();
    record.spec.workers = target;
    record.wait_workers = record.wait_workers.min(target);
    ctx.store.save(&record)?;
    ctx.printer.result(
        || format!("cluster `{name}` scaled from {} to {} worker(s)", scaled.from, scaled.to),
        &json!({ "name": name, "from": scaled.from, "to": scaled.to, "added": scaled.added, "removed": scaled.removed }),
    );
    Ok(0)
}

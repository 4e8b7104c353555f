//! `wait`: wait for the readiness of a cluster created with `up --no-wait`. If it never becomes
//! ready within its deadline, or the wait is interrupted (a cancelled CI job), it is torn down,
//! as `up` would have done. It holds the cluster's lock, like `scale` and `down`.

use std::time::Duration;

use anyhow::Result;
use clusterctl_core::{
    Error,
    lifecycle::{self, Progress as _, Tracker},
    record::RecordState,
    wait::Deadline,
};

use super::{Ctx, up::print_ready};
use crate::signals::Signals;

pub async fn wait(ctx: &Ctx<'_>, name: Option<&str>) -> Result<u8> {
    let name = ctx.pick_name(name)?;
    let _lock = ctx.store.lock(&name)?;
    let mut record = ctx.record(&name)?;
    let provider = ctx.provider_of(&record).await?;
    let endpoints = record.endpoints.clone().ok_or_else(|| Error::Scheduler {
        operation: "wait".into(),
        message: format!("cluster `{name}` has no endpoints recorded yet; is `up` still running?"),
    })?;
    let reach = super::reach_of(provider.as_ref(), &name, &endpoints).await?;
    let mut signals = Signals::install()?;
    let progress = ctx.printer.progress();
    let deadline = Deadline::after(Duration::from_secs(record.timeout_secs.max(1)));
    let result = tokio::select! {
        r = lifecycle::wait_ready(provider.as_ref(), &name, &record.spec.launch, &reach.endpoints, record.wait_workers as usize, deadline, &progress) => r,
        _ = signals.interrupted() => Err(Error::Interrupted),
    };
    match result {
        Ok(view) => {
            progress.finish();
            record.state = RecordState::Ready;
            ctx.store.save(&record)?;
            print_ready(
                ctx,
                &record,
                &endpoints,
                Some(&view),
                progress.elapsed(),
                reach.is_tunnel(),
            );
            Ok(0)
        }
        Err(e) => {
            let why = match &e {
                Error::Interrupted => "interrupted".to_string(),
                other => format!("did not become ready ({other})"),
            };
            progress.note(&format!("cluster `{name}` {why}; tearing it down"));
            drop(reach);
            let tracker = Tracker::new(Some(record.spec.created_at));
            let teardown = super::guarded_down(
                provider.as_ref(),
                &name,
                &tracker,
                lifecycle::TEARDOWN_TIMEOUT,
                &mut signals,
                &progress,
            )
            .await;
            match teardown {
                Ok(_) => {
                    ctx.store.remove(&name)?;
                    Err(e.into())
                }
                Err(failure) => Err(tracker
                    .left_behind(provider.as_ref(), &name, Some(e), failure)
                    .into()),
            }
        }
    }
}

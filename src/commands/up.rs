//! `up`: validate, plan, record, create with rollback, wait for readiness, print the endpoints.
//! [`launch`] is shared with `run`.

use std::{sync::Arc, time::Duration};

use anyhow::Result;
use clap::ArgMatches;
use clusterctl_core::{
    ClusterProvider, Error,
    health::SchedulerView,
    lifecycle::{self, Cancel, Launched, ReadyWait, Tracker},
    model::Endpoints,
    provider::{LaunchContext, Plan},
    record::{ClusterRecord, ProviderConfig, RECORD_VERSION, RecordState},
    tls::TlsBundle,
};
use serde_json::json;

use super::{Ctx, versions};
use crate::{
    cli::UpArgs,
    output::Reporter,
    providers::{self, ProviderOptions},
    settings::{self, UpSettings},
    signals::{OnSignal, Signals},
};

/// What [`launch`] produced.
pub enum Launch {
    /// `--dry-run`: the plan, nothing created.
    DryRun(Arc<dyn ClusterProvider>, Plan),
    /// A cluster exists (ready unless `--no-wait`).
    Up {
        record: Box<ClusterRecord>,
        launched: Launched,
        provider: Arc<dyn ClusterProvider>,
        elapsed: Duration,
    },
}

/// Create the cluster described by `settings`. On any failure or interruption after something
/// was created, everything is torn down and the record removed before this returns; when that
/// teardown cannot finish, the record is kept and the error is [`Error::LeftBehind`].
///
/// Signals: the first stops `up` (a launch call in flight may return first) and tears down; a
/// second says the teardown is in progress and what a third would leave; a third returns at
/// once with what is left.
pub async fn launch(
    ctx: &Ctx<'_>,
    settings: &UpSettings,
    progress: &Reporter,
    signals: &mut Signals,
) -> Result<Launch> {
    let spec = &settings.spec;
    // Before anything exists: a client on another Dask release than the cluster's.
    let python = versions::client_python(settings.python.as_deref());
    versions::check(
        ctx.printer,
        &python,
        versions::client_version(&python).as_deref(),
        &spec.dask_version,
        ctx.strict_versions,
    )?;
    let opts = ProviderOptions {
        region: settings.region.clone(),
        python: settings.python.clone(),
        dask_version: Some(spec.dask_version.clone()),
        extra: settings.provider_options.clone(),
    };
    let provider = providers::build(settings.provider, &opts, &ctx.paths).await?;
    let name = &spec.name;
    let _lock = ctx.store.lock(name)?;
    if let Some(old) = ctx.store.load(name)? {
        let old_provider = ctx.provider_of(&old).await?;
        if old_provider
            .list_nodes(Some(name))
            .await?
            .iter()
            .any(|n| n.state.is_alive())
        {
            return Err(Error::AlreadyExists {
                name: name.to_string(),
                provider: old.provider,
            }
            .into());
        }
        // A record of a cluster that ended by itself (TTL, idle): forget it.
        ctx.store.remove(name)?;
    }
    let tls = if spec.tls {
        Some(TlsBundle::generate(name.as_str())?)
    } else {
        None
    };
    let lctx = LaunchContext {
        spec,
        tls: tls.as_ref(),
        progress,
    };
    let plan = provider.plan(&lctx).await?;
    if settings.dry_run {
        return Ok(Launch::DryRun(provider, plan));
    }
    let wanted = settings.wait_workers.resolve(spec.workers);
    let tls_files = match &tls {
        Some(t) => Some(t.write_dir(&ctx.store.cluster_dir(name).join("tls"))?),
        None => None,
    };
    let mut record = ClusterRecord {
        version: RECORD_VERSION,
        provider: provider.kind(),
        location: provider.location(),
        provider_config: ProviderConfig {
            region: settings.region.clone(),
            python: settings.python.clone(),
            options: provider.pinned_options(&settings.provider_options),
        },
        spec: spec.clone(),
        wait_workers: wanted,
        timeout_secs: settings.timeout.as_secs(),
        endpoints: None,
        tls: tls_files,
        state: RecordState::Created,
    };
    ctx.store.save(&record)?;
    let wait = (!settings.no_wait).then_some(ReadyWait {
        workers: wanted,
        timeout: settings.timeout,
    });
    let cancel = Cancel::default();
    let tracker = Tracker::default();
    let work = lifecycle::up(provider.as_ref(), &lctx, wait, progress, &cancel, &tracker);
    let guarded = signals
        .guard(work, |sig, n| match n {
            1 => {
                progress.warn(&format!("{sig} received: tearing down what was created"));
                cancel.cancel();
                OnSignal::Continue
            }
            2 => {
                progress.warn(&super::teardown_in_progress(sig, name, &tracker));
                OnSignal::Continue
            }
            _ => OnSignal::Abandon,
        })
        .await;
    let outcome = guarded.unwrap_or_else(|| {
        Err(tracker.left_behind(
            provider.as_ref(),
            name,
            Some(Error::Interrupted),
            Error::Interrupted,
        ))
    });
    match outcome {
        Ok(launched) => {
            record.endpoints = Some(launched.endpoints.clone());
            record.state = if launched.ready.is_some() {
                RecordState::Ready
            } else {
                RecordState::Created
            };
            ctx.store.save(&record)?;
            Ok(Launch::Up {
                record: Box::new(record),
                launched,
                provider,
                elapsed: progress.elapsed(),
            })
        }
        // The record (with where the cluster is) stays for `down` to finish the job.
        Err(e @ Error::LeftBehind { .. }) => Err(e.into()),
        Err(e) => {
            ctx.store.remove(name)?;
            Err(e.into())
        }
    }
}

pub async fn up(ctx: &Ctx<'_>, args: &UpArgs, matches: Option<&ArgMatches>) -> Result<u8> {
    let settings = settings::resolve_up(args, matches, ctx.file.as_ref())?;
    let mut signals = Signals::install()?;
    let progress = ctx.printer.progress();
    let launch = launch(ctx, &settings, &progress, &mut signals).await?;
    progress.finish();
    match launch {
        Launch::DryRun(provider, plan) => print_plan(ctx, &settings, provider.as_ref(), &plan),
        Launch::Up {
            record,
            launched,
            elapsed,
            ..
        } => print_ready(
            ctx,
            &record,
            &launched.endpoints,
            launched.ready.as_ref(),
            elapsed,
            launched.reach.is_tunnel(),
        ),
    }
    Ok(0)
}

fn print_plan(ctx: &Ctx<'_>, settings: &UpSettings, provider: &dyn ClusterProvider, plan: &Plan) {
    let spec = &settings.spec;
    ctx.printer.result(
        || {
            let mut t = format!(
                "dry run: cluster `{}` on {} ({}) would get {} worker(s); nothing was created.\n",
                spec.name,
                provider.kind(),
                provider.location(),
                spec.workers
            );
            if let Some(id) = &plan.identity {
                t.push_str(&format!("identity: {id}\n"));
            }
            t.push_str("would create:\n");
            for r in &plan.resources {
                t.push_str(&format!("  - {r}\n"));
            }
            for n in &plan.notes {
                t.push_str(&format!("note: {n}\n"));
            }
            for b in &plan.bootstraps {
                t.push_str(&format!(
                    "--- {} bootstrap ({}) ---\n{}\n",
                    b.role,
                    b.format,
                    b.text.trim_end()
                ));
            }
            t
        },
        &json!({
            "dry_run": true,
            "name": spec.name,
            "provider": provider.kind(),
            "location": provider.location(),
            "workers": spec.workers,
            "tls": spec.tls,
            "ttl_seconds": spec.ttl.as_secs(),
            "plan": plan,
        }),
    );
}

/// Print the endpoints of a cluster that is up (shared by `up`, `wait` and `run`'s JSON).
pub fn print_ready(
    ctx: &Ctx<'_>,
    record: &ClusterRecord,
    endpoints: &Endpoints,
    ready: Option<&SchedulerView>,
    elapsed: Duration,
    tunnel: bool,
) {
    let name = record.name();
    let joined = ready.map(|v| v.workers.len());
    let json = ready_json(record, endpoints, joined, elapsed);
    ctx.printer.result(
        || {
            format!(
                "scheduler  {}\ndashboard  {}",
                endpoints.scheduler_address, endpoints.dashboard_url
            )
        },
        &json,
    );
    crate::github::ready(&json, record.spec.expires_at(), elapsed);
    match joined {
        Some(j) => ctx.printer.info(&format!(
            "clusterctl: cluster `{name}` is ready in {:.1}s: {j} of {} worker(s) joined ({}, {})",
            elapsed.as_secs_f64(),
            record.spec.workers,
            record.provider,
            record.location
        )),
        None => ctx.printer.info(&format!(
            "clusterctl: cluster `{name}` created; `clusterctl wait {name}` waits for readiness"
        )),
    }
    if tunnel {
        ctx.printer.hint(&format!(
            "these addresses are inside the cluster's network; from this machine, `clusterctl dashboard {name}` holds a port-forward open and prints local ones (`clusterctl run` uses one by itself)"
        ));
    }
    if record.tls.is_some() {
        ctx.printer.hint(&format!(
            "TLS is on: `eval \"$(clusterctl env {name})\"` configures Dask clients"
        ));
    }
    ctx.printer.hint(&format!(
        "`clusterctl down {name}` removes it (it ends by itself at its TTL)"
    ));
}

pub fn ready_json(
    record: &ClusterRecord,
    endpoints: &Endpoints,
    joined: Option<usize>,
    elapsed: Duration,
) -> serde_json::Value {
    json!({
        "name": record.name(),
        "provider": record.provider,
        "location": record.location,
        "ready": joined.is_some(),
        "scheduler_address": endpoints.scheduler_address,
        "dashboard_url": endpoints.dashboard_url,
        "workers": { "requested": record.spec.workers, "awaited": record.wait_workers, "joined": joined },
        "tls": record.tls,
        "expires_at": record.spec.expires_at(),
        "elapsed_seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

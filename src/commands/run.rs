//! `run`: `up`, then the command with the cluster's environment, then always `down` (after the
//! command exits, fails, or is interrupted). Exits with the command's status, 130 when
//! interrupted, or 1 when the command succeeded but teardown did not. It never returns without
//! either tearing the cluster down or saying what is left (and keeping its record).

use std::time::Duration;

use anyhow::Result;
use clap::ArgMatches;
use clusterctl_core::{
    Error,
    lifecycle::{self, Tracker},
    model::{ClusterName, ProviderKind},
    record::{ClusterLock, ClusterRecord, RecordStore},
    wait::Deadline,
};
use clusterctl_local::runtime::{self, Resolution, RuntimeSource};
use serde_json::json;

use super::{
    Ctx,
    env::client_env,
    up::{Launch, launch},
};
use crate::{cli::RunArgs, output::Reporter, settings, signals::Signals};

/// How long the command gets to exit after it was forwarded a signal.
const GRACE: Duration = Duration::from_secs(30);

/// How long teardown waits for another clusterctl process (a `scale` the command started) to
/// release the cluster.
const LOCK_WAIT: Duration = Duration::from_secs(60);

pub async fn run(ctx: &Ctx<'_>, args: &RunArgs, matches: Option<&ArgMatches>) -> Result<u8> {
    let mut settings = settings::resolve_up(&args.up, matches, ctx.file.as_ref())?;
    settings.no_wait = false;
    if settings.dry_run {
        return Err(Error::invalid(
            "--dry-run",
            "",
            "`run` cannot run a command against a cluster it does not create",
            Some("use `clusterctl up --dry-run`".into()),
        )
        .into());
    }
    let mut signals = Signals::install()?;
    let progress = ctx.printer.progress();
    let Launch::Up {
        record,
        launched,
        provider,
        ..
    } = launch(ctx, &settings, &progress, &mut signals).await?
    else {
        unreachable!("not a dry run")
    };
    // Where the cluster is only reachable through a tunnel (a Kubernetes port-forward), the
    // command gets the tunnel's address; the tunnel stays open until the command ends.
    let reach = launched.reach;
    progress.finish();
    let name = record.name().clone();
    ctx.printer.info(&format!(
        "clusterctl: cluster `{name}` is ready; running `{}`",
        args.command.join(" ")
    ));

    let mut child = tokio::process::Command::new(&args.command[0]);
    child.args(&args.command[1..]).kill_on_drop(true);
    // An error from here on must not skip the teardown below.
    let env = client_env(&record);
    if let Ok(vars) = &env {
        child.envs(vars.iter().map(|(k, v)| (k, v)));
    }
    if reach.is_tunnel() {
        child.env("DASK_SCHEDULER_ADDRESS", &reach.endpoints.scheduler_address);
        child.env("CLUSTERCTL_DASHBOARD_URL", &reach.endpoints.dashboard_url);
    }
    if let Some(path) = local_runtime_path(ctx, &record).await {
        child.env("PATH", path);
    }
    let (status, interrupted) = match env.map(|_| child.spawn()) {
        Err(e) => {
            ctx.printer
                .info(&format!("error: the cluster's client environment: {e}"));
            (Some(1), false)
        }
        Ok(Err(e)) => {
            ctx.printer.info(&format!(
                "error: could not start `{}`: {e}",
                args.command[0]
            ));
            (Some(127), false)
        }
        Ok(Ok(mut child)) => {
            tokio::select! {
                s = child.wait() => (s.ok().map(exit_code), false),
                sig = signals.interrupted() => {
                    ctx.printer.info(&format!("clusterctl: {sig:?} received; stopping the command, then tearing down"));
                    if let Some(pid) = child.id() {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig.as_nix());
                    }
                    match tokio::time::timeout(GRACE, child.wait()).await {
                        Ok(s) => (s.ok().map(exit_code), true),
                        Err(_) => {
                            let _ = child.kill().await;
                            (None, true)
                        }
                    }
                }
            }
        }
    };

    drop(reach);
    let progress = ctx.printer.progress();
    // The provider `up` used (not rebuilt: that could fail), the nodes it launched, and the
    // cluster's lock, waited for when another command (a `scale` of the job's) holds it.
    let tracker = Tracker::with_nodes(Some(record.spec.created_at), &launched.nodes);
    let work = async {
        let _lock = lock_when_free(&ctx.store, &name, LOCK_WAIT, &progress).await?;
        lifecycle::down(
            provider.as_ref(),
            &name,
            &tracker,
            lifecycle::TEARDOWN_TIMEOUT,
            &progress,
        )
        .await
    };
    let teardown = super::guard_teardown(&mut signals, &progress, &name, &tracker, work)
        .await
        .map_err(|failure| tracker.left_behind(provider.as_ref(), &name, None, failure));
    progress.finish();
    if teardown.is_ok() {
        ctx.store.remove(&name)?;
    }
    let code = if interrupted {
        130
    } else {
        status.unwrap_or(1)
    };
    match teardown {
        // Exit 1 with what is left (the one JSON object is then the error).
        Err(e) if code == 0 || interrupted => Err(e.into()),
        Err(e) => {
            // The command's status stays the exit code; what is left is said all the same.
            ctx.printer.result(String::new, &json!({ "name": name, "exit_code": code, "teardown": "failed", "left_behind": e.left_behind() }));
            crate::diagnostics::print_error(&e);
            Ok(code)
        }
        Ok(_) => {
            ctx.printer.result(
                String::new,
                &json!({ "name": name, "exit_code": code, "teardown": "ok", "left_behind": [] }),
            );
            Ok(code)
        }
    }
}

/// The lock of `name`, waiting up to `within` while another clusterctl process holds it.
async fn lock_when_free(
    store: &RecordStore,
    name: &ClusterName,
    within: Duration,
    progress: &Reporter,
) -> clusterctl_core::Result<ClusterLock> {
    let deadline = Deadline::after(within);
    let mut said = false;
    loop {
        match store.lock(name) {
            Err(Error::Busy(_)) if !deadline.expired() => {
                if !said {
                    progress.warn(&format!(
                        "another clusterctl process holds cluster `{name}`; waiting up to {}s for it before tearing down",
                        within.as_secs()
                    ));
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            other => return other,
        }
    }
}

/// For a local cluster: PATH with the cluster's Dask runtime first, so `python job.py` in the
/// command uses the same Dask as the cluster (the managed runtime is not on PATH otherwise).
async fn local_runtime_path(ctx: &Ctx<'_>, record: &ClusterRecord) -> Option<std::ffi::OsString> {
    if record.provider != ProviderKind::Local {
        return None;
    }
    let source = record
        .provider_config
        .python
        .clone()
        .map_or(RuntimeSource::Auto, RuntimeSource::Python);
    let Ok(Resolution::Ready(runtime)) =
        runtime::inspect(&source, &record.spec.dask_version, &ctx.paths.cache_dir).await
    else {
        return None;
    };
    let mut dirs = vec![runtime.bin_dir()?];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).ok()
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

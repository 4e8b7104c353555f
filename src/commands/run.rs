//! `run`: `up`, then the command with the cluster's environment, then always `down` (after the
//! command exits, fails, or is interrupted). Exits with the command's status, 130 when
//! interrupted, or 1 when the command succeeded but teardown did not.

use std::time::Duration;

use anyhow::Result;
use clap::ArgMatches;
use clusterctl_core::{Error, lifecycle, model::ProviderKind, record::ClusterRecord};
use clusterctl_local::runtime::{self, Resolution, RuntimeSource};
use serde_json::json;

use super::{
    Ctx,
    env::client_env,
    up::{Launch, launch},
};
use crate::{cli::RunArgs, settings, signals::Signals};

/// How long the command gets to exit after it was forwarded a signal.
const GRACE: Duration = Duration::from_secs(30);

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
        record, launched, ..
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
    child
        .args(&args.command[1..])
        .envs(client_env(&record)?)
        .kill_on_drop(true);
    if reach.is_tunnel() {
        child.env("DASK_SCHEDULER_ADDRESS", &reach.endpoints.scheduler_address);
        child.env("CLUSTERCTL_DASHBOARD_URL", &reach.endpoints.dashboard_url);
    }
    if let Some(path) = local_runtime_path(ctx, &record).await {
        child.env("PATH", path);
    }
    let (status, interrupted) = match child.spawn() {
        Err(e) => {
            ctx.printer.info(&format!(
                "error: could not start `{}`: {e}",
                args.command[0]
            ));
            (Some(127), false)
        }
        Ok(mut child) => {
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
    let _lock = ctx.store.lock(&name)?;
    let teardown = lifecycle::down(
        ctx.provider_of(&record).await?.as_ref(),
        &name,
        &lifecycle::Tracker::default(),
        lifecycle::TEARDOWN_TIMEOUT,
        &progress,
    )
    .await;
    progress.finish();
    if teardown.is_ok() {
        ctx.store.remove(&name)?;
    }
    let code = if interrupted {
        130
    } else {
        status.unwrap_or(1)
    };
    ctx.printer.result(String::new, &json!({ "name": name, "exit_code": code, "teardown": teardown.as_ref().map(|_| "ok").unwrap_or("failed") }));
    match teardown {
        Err(e) if code == 0 || interrupted => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(code)
        }
        Ok(_) => Ok(code),
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

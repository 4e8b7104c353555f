//! `doctor`: what `up` with the same flags would need, checked without creating anything, one
//! line per check (✓/✗ with a hint), exit 0 when all pass and 1 otherwise.

use anyhow::Result;
use clap::ArgMatches;
use clusterctl_core::{doctor::Check, lifecycle::Silent, provider::LaunchContext, tls::TlsBundle};
use serde_json::json;

use super::{Ctx, versions};
use crate::{
    cli::UpArgs,
    providers::{self, ProviderOptions},
    settings,
};

/// The client Python's Dask against the cluster's release.
fn client_check(python: &std::path::Path, cluster: &str) -> Check {
    let name = "client Python's Dask";
    match versions::client_version(python) {
        Some(v) if versions::same_release(&v, cluster) => Check::pass(
            name,
            format!(
                "{} has distributed {v}, as the cluster will",
                python.display()
            ),
        ),
        Some(v) => Check::fail(
            name,
            format!(
                "{} has distributed {v}; the cluster will run {cluster}",
                python.display()
            ),
            Some(format!(
                "start the cluster with `--dask-version {v}`, or `pip install \"distributed=={cluster}\"` for the client"
            )),
        ),
        None => Check::fail(
            name,
            format!("{} cannot import distributed", python.display()),
            Some(format!(
                "install it for the job's Python (`pip install \"distributed=={cluster}\"`), or name that Python with --python"
            )),
        ),
    }
}

/// Run the checks and print them.
pub async fn doctor(ctx: &Ctx<'_>, args: &UpArgs, matches: Option<&ArgMatches>) -> Result<u8> {
    // Flags that cannot be read are a usage error, as they are for `up` (exit 2).
    let settings = settings::resolve_up(args, matches, ctx.file.as_ref())?;
    let spec = &settings.spec;
    let mut checks = vec![Check::pass(
        "settings",
        format!(
            "provider {}{}, {} worker(s), Dask {}",
            settings.provider,
            settings
                .region
                .as_deref()
                .map(|r| format!(" in {r}"))
                .unwrap_or_default(),
            spec.workers,
            spec.dask_version
        ),
    )];
    let opts = ProviderOptions {
        region: settings.region.clone(),
        python: settings.python.clone(),
        dask_version: Some(spec.dask_version.clone()),
        extra: settings.provider_options.clone(),
    };
    match providers::build(settings.provider, &opts, &ctx.paths).await {
        Ok(provider) => {
            let tls = if spec.tls {
                Some(TlsBundle::generate(spec.name.as_str())?)
            } else {
                None
            };
            let lctx = LaunchContext {
                spec,
                tls: tls.as_ref(),
                progress: &Silent,
            };
            checks.extend(provider.doctor(&lctx).await);
        }
        Err(e) => checks.push(Check::from_error("provider client", &e)),
    }
    let python = versions::client_python(settings.python.as_deref());
    checks.push(client_check(&python, &spec.dask_version));

    let ok = checks.iter().all(|c| c.ok);
    ctx.printer.result(
        || {
            let mut text = String::new();
            for c in &checks {
                let mark = if c.ok { "✓" } else { "✗" };
                text.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
                if let Some(h) = &c.hint {
                    text.push_str(&format!("  hint: {h}\n"));
                }
            }
            text.push_str(if ok {
                "all checks passed\n"
            } else {
                "some checks failed\n"
            });
            text
        },
        &json!({
            "ok": ok,
            "provider": settings.provider.as_str(),
            "checks": checks,
        }),
    );
    Ok(if ok { 0 } else { 1 })
}

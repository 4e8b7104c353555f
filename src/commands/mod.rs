//! One module per command; this one dispatches and holds what commands share: the context
//! (printer, paths, records, config file) and how a cluster name and its provider are found.

mod config_show;
mod dashboard;
mod doctor;
mod down;
mod env;
mod gc;
mod help;
mod logs;
mod run;
mod scale;
mod status;
mod up;
mod versions;
mod wait;

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Result;
use clap::ArgMatches;
use clusterctl_core::{
    ClusterProvider, Error,
    lifecycle::{self, Teardown, Tracker},
    model::{ClusterName, ProviderKind},
    record::{ClusterRecord, RecordStore},
};

use crate::{
    cli::{Cli, Command, ConfigCommand},
    config::{self, LoadedConfig},
    output::{Printer, Reporter},
    providers::{self, Paths, ProviderOptions},
    settings,
    signals::{Interrupt, OnSignal, Signals},
};

/// What every command gets.
pub struct Ctx<'a> {
    pub printer: &'a Printer,
    pub paths: Paths,
    pub store: RecordStore,
    pub file: Option<LoadedConfig>,
    /// `--strict-versions`: a client on another Dask release is an error, not a warning.
    pub strict_versions: bool,
}

impl Ctx<'_> {
    /// The provider a record was made with.
    pub async fn provider_of(
        &self,
        record: &ClusterRecord,
    ) -> clusterctl_core::Result<Arc<dyn ClusterProvider>> {
        let region = record.provider_config.region.clone().or_else(|| {
            // Kubernetes records locate by context and namespace, kept in the options.
            (!matches!(
                record.provider,
                ProviderKind::Local | ProviderKind::Kubernetes
            ))
            .then(|| record.location.clone())
        });
        let opts = ProviderOptions {
            region,
            python: record.provider_config.python.clone(),
            dask_version: Some(record.spec.dask_version.clone()),
            extra: record.provider_config.options.clone(),
        };
        providers::build(record.provider, &opts, &self.paths).await
    }

    /// The provider named by flag/env/file (default local), for clusters without a record.
    pub async fn provider_from(
        &self,
        flag: Option<&str>,
        region: Option<&str>,
        at: &crate::cli::Locate,
    ) -> clusterctl_core::Result<Arc<dyn ClusterProvider>> {
        let kind = settings::resolve_provider(flag, self.file.as_ref())?;
        let opts = ProviderOptions {
            region: region
                .map(str::to_string)
                .or_else(|| self.file.as_ref().and_then(|f| f.config.region.clone())),
            python: self
                .file
                .as_ref()
                .and_then(|f| f.config.local.as_ref())
                .and_then(|l| l.python.clone()),
            dask_version: None,
            extra: settings::scope_options(
                kind,
                &at.kube,
                &at.azure,
                at.project.as_deref(),
                false,
                self.file.as_ref(),
            )?,
        };
        providers::build(kind, &opts, &self.paths).await
    }

    /// The named cluster, or the only one this machine has a record of.
    pub fn pick_name(&self, name: Option<&str>) -> clusterctl_core::Result<ClusterName> {
        if let Some(n) = name {
            return ClusterName::new(n);
        }
        let records = self.store.list()?;
        match records.as_slice() {
            [one] => Ok(one.name().clone()),
            [] => Err(Error::invalid(
                "cluster name",
                "",
                "no cluster is recorded on this machine, so a NAME is needed",
                Some(
                    "pass the cluster's name; `clusterctl list` shows what the provider has".into(),
                ),
            )),
            many => Err(Error::invalid(
                "cluster name",
                "",
                format!(
                    "several clusters are recorded here: {}",
                    many.iter()
                        .map(|r| r.name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Some("pass one of these names".into()),
            )),
        }
    }

    /// The record of `name` and its provider, or the provider from flags when there is none.
    pub async fn locate(
        &self,
        name: &ClusterName,
        at: &crate::cli::Locate,
    ) -> clusterctl_core::Result<(Arc<dyn ClusterProvider>, Option<ClusterRecord>)> {
        match self.store.load(name)? {
            Some(r) => Ok((self.provider_of(&r).await?, Some(r))),
            None => Ok((
                self.provider_from(at.provider.as_deref(), at.region.as_deref(), at)
                    .await?,
                None,
            )),
        }
    }

    /// The record of `name`, required (for commands that need its spec or TLS files).
    pub fn record(&self, name: &ClusterName) -> clusterctl_core::Result<ClusterRecord> {
        self.store.load(name)?.ok_or_else(|| Error::NotFound {
            name: name.to_string(),
            where_: " in this machine's records".into(),
        })
    }
}

/// How this process reaches the scheduler of `name`, whose published endpoints are
/// `published`: through the provider's tunnel where it needs one, else directly.
pub async fn reach_of(
    provider: &dyn ClusterProvider,
    name: &ClusterName,
    published: &clusterctl_core::model::Endpoints,
) -> clusterctl_core::Result<clusterctl_core::provider::Reach> {
    let nodes = provider.list_nodes(Some(name)).await?;
    match nodes.iter().find(|n| {
        n.role == clusterctl_core::Role::Scheduler
            && n.state != clusterctl_core::NodeState::Terminated
    }) {
        Some(s) => provider.reach(s, published, Default::default()).await,
        None => Ok(clusterctl_core::provider::Reach::direct(published.clone())),
    }
}

/// Remove `name` (bounded by `timeout`) while signals are watched, as [`guard_teardown`] does.
/// A failure is the caller's to turn into [`Tracker::left_behind`].
pub async fn guarded_down(
    provider: &dyn ClusterProvider,
    name: &ClusterName,
    tracker: &Tracker,
    timeout: Duration,
    signals: &mut Signals,
    progress: &Reporter,
) -> clusterctl_core::Result<Teardown> {
    let work = lifecycle::down(provider, name, tracker, timeout, progress);
    guard_teardown(signals, progress, name, tracker, work).await
}

/// Run `work`, a teardown of `name`, while signals are watched: the first says that teardown is
/// in progress and what another signal would leave; the next abandons it at once
/// ([`Error::Interrupted`]).
pub async fn guard_teardown<T>(
    signals: &mut Signals,
    progress: &Reporter,
    name: &ClusterName,
    tracker: &Tracker,
    work: impl Future<Output = clusterctl_core::Result<T>>,
) -> clusterctl_core::Result<T> {
    let out = signals
        .guard(work, |sig, n| {
            if n == 1 {
                progress.warn(&teardown_in_progress(sig, name, tracker));
                OnSignal::Continue
            } else {
                OnSignal::Abandon
            }
        })
        .await;
    out.unwrap_or(Err(Error::Interrupted))
}

/// What a signal during a teardown is answered with.
pub fn teardown_in_progress(sig: Interrupt, name: &ClusterName, tracker: &Tracker) -> String {
    format!(
        "{sig} received: the teardown of `{name}` is in progress; another signal stops it at once and leaves behind: {}",
        tracker.unremoved(name).join(", ")
    )
}

/// Providers to ask when listing: the configured one plus those that have records here.
pub fn providers_to_ask(
    ctx: &Ctx<'_>,
    flag: Option<&str>,
) -> clusterctl_core::Result<Vec<ProviderKind>> {
    let mut kinds = vec![settings::resolve_provider(flag, ctx.file.as_ref())?];
    if flag.is_none() {
        for r in ctx.store.list()? {
            if !kinds.contains(&r.provider) {
                kinds.push(r.provider);
            }
        }
    }
    Ok(kinds)
}

/// Run the command; `Ok` carries the exit code.
pub async fn dispatch(cli: Cli, matches: &ArgMatches, printer: &Printer) -> Result<u8> {
    // Generated from the flags alone: no config file, state directory or provider involved.
    match cli.command {
        Command::Completions { shell } => return help::completions(shell),
        Command::Man { command } => return help::man(command.as_deref()),
        _ => {}
    }
    let file = config::load(cli.global.config.as_deref())?;
    let paths = Paths::from_env();
    let store = RecordStore::new(paths.state_dir.clone()).owned_by(nix::unistd::geteuid().as_raw());
    let ctx = Ctx {
        printer,
        paths,
        store,
        file,
        strict_versions: cli.global.strict_versions,
    };
    let sub = |name: &str| matches.subcommand_matches(name);
    match cli.command {
        Command::Up(args) => up::up(&ctx, &args, sub("up")).await,
        Command::Doctor(args) => doctor::doctor(&ctx, &args, sub("doctor")).await,
        Command::Wait(args) => wait::wait(&ctx, args.name.as_deref()).await,
        Command::Down(args) => down::down(&ctx, &args).await,
        Command::Gc(args) => gc::gc(&ctx, &args).await,
        Command::Status(args) => status::status(&ctx, &args).await,
        Command::List(args) => status::list(&ctx, &args).await,
        Command::Scale(args) => scale::scale(&ctx, &args).await,
        Command::Logs(args) => logs::logs(&ctx, &args).await,
        Command::Env(args) => env::env(&ctx, args.name.as_deref()),
        Command::Run(args) => run::run(&ctx, &args, sub("run")).await,
        Command::Dashboard(args) => dashboard::dashboard(&ctx, &args).await,
        Command::Completions { .. } | Command::Man { .. } => unreachable!("answered above"),
        Command::Config(ConfigCommand::Show(args)) => {
            config_show::show(
                &ctx,
                &args,
                sub("config").and_then(|m| m.subcommand_matches("show")),
            )
            .await
        }
    }
}

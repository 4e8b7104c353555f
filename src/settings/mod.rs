//! Settings resolution: flags > `CLUSTERCTL_*` environment > config file > defaults, with the
//! source of every value kept for `config show`. Pure apart from reading the clock and the user
//! name; every value is validated here, before anything is created.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::{ArgMatches, parser::ValueSource};
use clusterctl_core::{
    Error, Result,
    model::{self, ClusterName, ClusterSpec, NodeSize, ProviderKind, WaitWorkers, now_epoch},
};
use serde::Serialize;

use crate::{
    cli::UpArgs,
    config::{LoadedConfig, Scalar},
};

mod aws;
mod azure;
mod digitalocean;
mod gcp;
mod kubernetes;
mod pip;
#[cfg(test)]
mod tests;
mod values;

use values::{owner, parse_cpus, validate_env, validate_tag};
pub use values::{parse_duration, parse_env, parse_memory, parse_tags, parse_workers};

/// Where a value came from.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub key: &'static str,
    pub value: String,
    pub source: String,
}

/// Everything `up` needs, validated.
#[derive(Debug, Clone)]
pub struct UpSettings {
    pub provider: ProviderKind,
    pub region: Option<String>,
    pub python: Option<PathBuf>,
    /// Provider-specific options as JSON (the AWS options), stored in the record too.
    pub provider_options: serde_json::Value,
    pub spec: ClusterSpec,
    pub wait_workers: WaitWorkers,
    pub timeout: Duration,
    pub no_wait: bool,
    pub dry_run: bool,
    pub shown: Vec<Shown>,
}

/// Default lifetime of a cluster.
pub const DEFAULT_TTL: Duration = Duration::from_secs(2 * 3600);
/// Default idle timeout of the scheduler.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default readiness deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long workers keep trying to reach a scheduler before they exit.
pub const DEATH_TIMEOUT: Duration = Duration::from_secs(120);
/// Most workers one cluster may have.
pub const MAX_WORKERS: u32 = 10_000;

struct Resolver<'a> {
    matches: Option<&'a ArgMatches>,
    file: Option<&'a LoadedConfig>,
    shown: Vec<Shown>,
}

impl Resolver<'_> {
    fn source_of(&self, id: &str) -> Option<String> {
        let m = self.matches?;
        match m.try_get_raw(id).ok().flatten().and(m.value_source(id)) {
            Some(ValueSource::CommandLine) => Some(format!("flag --{}", id.replace('_', "-"))),
            Some(ValueSource::EnvVariable) => {
                Some(format!("env CLUSTERCTL_{}", id.to_ascii_uppercase()))
            }
            _ => None,
        }
    }

    /// Pick flag/env, else file, else default; record where it came from.
    fn pick(
        &mut self,
        key: &'static str,
        id: &str,
        flag: Option<String>,
        file: Option<String>,
        default: Option<String>,
    ) -> Option<String> {
        let (value, source) = if let Some(v) = flag {
            (
                Some(v),
                self.source_of(id)
                    .unwrap_or_else(|| format!("flag --{}", id.replace('_', "-"))),
            )
        } else if let Some(v) = file {
            (
                Some(v),
                format!(
                    "file {}",
                    self.file
                        .map(|f| f.path.display().to_string())
                        .unwrap_or_default()
                ),
            )
        } else {
            (default, "default".to_string())
        };
        self.shown.push(Shown {
            key,
            value: value.clone().unwrap_or_else(|| "(none)".into()),
            source,
        });
        value
    }
}

/// A list flag beats the file's list; flags replace, they do not append.
fn list(flag: &[String], file: Vec<String>) -> Vec<String> {
    if flag.is_empty() { file } else { flag.to_vec() }
}

fn scalar(s: &Option<Scalar>) -> Option<String> {
    s.as_ref().map(|v| v.to_string())
}

/// Resolve the provider kind from flag/env, file and default.
pub fn resolve_provider(flag: Option<&str>, file: Option<&LoadedConfig>) -> Result<ProviderKind> {
    let value = flag
        .map(str::to_string)
        .or_else(|| file.and_then(|f| f.config.provider.clone()));
    let kind = value
        .as_deref()
        .map(str::parse)
        .transpose()?
        .unwrap_or(ProviderKind::Local);
    let built = crate::providers::available();
    if !built.contains(&kind) {
        return Err(Error::ProviderUnavailable { kind, built });
    }
    Ok(kind)
}

/// The options of `provider` beyond the common spec, from its flags and file section (JSON in the
/// shape of the provider crate's options struct; `null` for providers without options).
fn provider_options(
    provider: ProviderKind,
    args: &UpArgs,
    fc: &crate::config::FileConfig,
    region: Option<&str>,
    private: bool,
) -> Result<serde_json::Value> {
    Ok(match provider {
        ProviderKind::Aws => aws::ec2_options(args, fc.aws.as_ref(), region),
        ProviderKind::Fargate => aws::fargate_options(args, fc.fargate.as_ref(), region),
        ProviderKind::Kubernetes => {
            kubernetes::kubernetes_options(args, fc.kubernetes.as_ref(), private)?
        }
        ProviderKind::Digitalocean => {
            digitalocean::digitalocean_options(args, fc.digitalocean.as_ref(), region, private)
        }
        ProviderKind::Azure => azure::azure_options(args, fc.azure.as_ref(), region, private),
        ProviderKind::Gcp => gcp::gcp_options(args, fc.gcp.as_ref(), region, private),
        ProviderKind::Local => serde_json::Value::Null,
    })
}

/// The size of one role's nodes (`scheduler` or `worker`) from its flags and file section.
fn resolve_size(
    r: &mut Resolver,
    role: &'static str,
    cpus: &Option<String>,
    memory: &Option<String>,
    file: &Option<crate::config::SizeConfig>,
) -> Result<NodeSize> {
    let ((cpu_key, cpu_id, cpu_flag), (mem_key, mem_id, mem_flag)) = if role == "scheduler" {
        (
            ("scheduler.cpus", "scheduler_cpus", "--scheduler-cpus"),
            ("scheduler.memory", "scheduler_memory", "--scheduler-memory"),
        )
    } else {
        (
            ("worker.cpus", "worker_cpus", "--worker-cpus"),
            ("worker.memory", "worker_memory", "--worker-memory"),
        )
    };
    let file = file.clone().unwrap_or_default();
    let c = r.pick(cpu_key, cpu_id, cpus.clone(), scalar(&file.cpus), None);
    let m = r.pick(mem_key, mem_id, memory.clone(), scalar(&file.memory), None);
    Ok(NodeSize {
        cpus: c.map(|c| parse_cpus(cpu_flag, &c)).transpose()?,
        memory_mib: m.map(|m| parse_memory(mem_flag, &m)).transpose()?,
    })
}

/// Resolve everything `up` takes.
pub fn resolve_up(
    args: &UpArgs,
    matches: Option<&ArgMatches>,
    file: Option<&LoadedConfig>,
) -> Result<UpSettings> {
    let fc = file.map(|f| f.config.clone()).unwrap_or_default();
    let mut r = Resolver {
        matches,
        file,
        shown: Vec::new(),
    };

    let provider_text = r.pick(
        "provider",
        "provider",
        args.provider.clone(),
        fc.provider.clone(),
        Some("local".into()),
    );
    let provider = resolve_provider(provider_text.as_deref(), None)?;
    let workers_text = r
        .pick(
            "workers",
            "workers",
            args.workers.clone(),
            scalar(&fc.workers),
            Some("2".into()),
        )
        .unwrap_or_default();
    let workers = parse_workers("--workers", &workers_text)?;
    let name = match r.pick("name", "name", args.name.clone(), None, None) {
        Some(n) => ClusterName::new(&n)?,
        None => ClusterName::generate(),
    };
    let region = r.pick(
        "region",
        "region",
        args.region.clone(),
        fc.region.clone(),
        None,
    );
    let dask_version = r
        .pick(
            "dask_version",
            "dask_version",
            args.dask_version.clone(),
            fc.dask_version.clone(),
            Some(clusterctl_core::DASK_VERSION.into()),
        )
        .unwrap_or_default();
    // A release number (`2026.8.0`, `2025.1.0rc1`): it names the image's tag, so a word such
    // as `latest` or `banana` would only fail once the nodes pull it, after creating them.
    if !dask_version.starts_with(|c: char| c.is_ascii_digit())
        || !dask_version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.')
    {
        return Err(Error::invalid(
            "--dask-version",
            dask_version,
            "not a release number",
            Some(format!("e.g. `{}`", clusterctl_core::DASK_VERSION)),
        ));
    }
    let image = r
        .pick(
            "image",
            "image",
            args.image.clone(),
            fc.image.clone(),
            Some(clusterctl_core::default_image(&dask_version)),
        )
        .unwrap_or_default();
    let scheduler_size = resolve_size(
        &mut r,
        "scheduler",
        &args.scheduler_cpus,
        &args.scheduler_memory,
        &fc.scheduler,
    )?;
    let worker_size = resolve_size(
        &mut r,
        "worker",
        &args.worker_cpus,
        &args.worker_memory,
        &fc.worker,
    )?;

    let mut env = BTreeMap::new();
    if let Some(file_env) = &fc.env {
        for (k, v) in file_env {
            validate_env(k, v)?;
            env.insert(k.clone(), v.clone());
        }
    }
    env.extend(parse_env(&args.env)?);
    let mut user_tags = BTreeMap::new();
    if let Some(file_tags) = &fc.tags {
        for (k, v) in file_tags {
            validate_tag(k, v)?;
            user_tags.insert(k.clone(), v.clone());
        }
    }
    user_tags.extend(parse_tags(&args.tag)?);
    r.shown.push(Shown {
        key: "env",
        value: env.keys().cloned().collect::<Vec<_>>().join(","),
        source: "flags --env and file".into(),
    });
    r.shown.push(Shown {
        key: "tags",
        value: user_tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        source: "flags --tag and file".into(),
    });

    let ttl_text = r
        .pick(
            "ttl",
            "ttl",
            args.ttl.clone(),
            scalar(&fc.ttl),
            Some(humantime::format_duration(DEFAULT_TTL).to_string()),
        )
        .unwrap_or_default();
    let ttl = parse_duration("--ttl", &ttl_text)?;
    model::check_duration_max("--ttl", &ttl_text, ttl, model::MAX_TTL)?;
    if ttl < Duration::from_secs(60) {
        return Err(Error::invalid(
            "--ttl",
            ttl_text,
            "shorter than one minute",
            Some("a cluster needs time to start; use e.g. `30m`".into()),
        ));
    }
    let idle_text = r
        .pick(
            "idle_timeout",
            "idle_timeout",
            args.idle_timeout.clone(),
            scalar(&fc.idle_timeout),
            Some(humantime::format_duration(DEFAULT_IDLE_TIMEOUT).to_string()),
        )
        .unwrap_or_default();
    let idle_timeout = parse_duration("--idle-timeout", &idle_text)?;
    model::check_duration_max(
        "--idle-timeout",
        &idle_text,
        idle_timeout,
        model::MAX_IDLE_TIMEOUT,
    )?;
    let timeout_text = r
        .pick(
            "timeout",
            "timeout",
            args.timeout.clone(),
            scalar(&fc.timeout),
            Some(humantime::format_duration(DEFAULT_TIMEOUT).to_string()),
        )
        .unwrap_or_default();
    let timeout = parse_duration("--timeout", &timeout_text)?;
    model::check_duration_max("--timeout", &timeout_text, timeout, model::MAX_TIMEOUT)?;
    if timeout.is_zero() {
        return Err(Error::invalid(
            "--timeout",
            timeout_text,
            "a readiness deadline of zero can never be met",
            Some("use e.g. `10m`".into()),
        ));
    }
    let wait_text = r
        .pick(
            "wait_workers",
            "wait_workers",
            args.wait_workers.clone(),
            scalar(&fc.wait_workers),
            Some("all".into()),
        )
        .unwrap_or_default();
    let wait_workers: WaitWorkers = wait_text.parse()?;
    if let WaitWorkers::Count(n) = wait_workers
        && n > workers
    {
        return Err(Error::invalid(
            "--wait-workers",
            wait_text,
            format!("more than the {workers} workers requested"),
            Some("use at most --workers, or `all`".into()),
        ));
    }

    let tls_flag = if args.tls {
        Some("true".to_string())
    } else if args.no_tls {
        Some("false".to_string())
    } else {
        None
    };
    let tls_source_id = if args.tls { "tls" } else { "no_tls" };
    let tls = r.pick(
        "tls",
        tls_source_id,
        tls_flag,
        fc.tls.map(|b| b.to_string()),
        Some(provider.is_remote().to_string()),
    ) == Some("true".into());
    let private = r.pick(
        "private",
        "private",
        args.private.then(|| "true".into()),
        fc.private.map(|b| b.to_string()),
        Some("false".into()),
    ) == Some("true".into());
    let python = r
        .pick(
            "local.python",
            "python",
            args.python.as_ref().map(|p| p.display().to_string()),
            fc.local
                .as_ref()
                .and_then(|l| l.python.as_ref())
                .map(|p| p.display().to_string()),
            None,
        )
        .map(PathBuf::from);

    let provider_options = provider_options(provider, args, &fc, region.as_deref(), private)?;
    if !provider_options.is_null() {
        r.shown.push(Shown {
            key: provider.as_str(),
            value: provider_options.to_string(),
            source: format!("flags and file section `{provider}`"),
        });
    }

    let pip = pip::resolve(
        provider,
        fc.pip.as_deref().unwrap_or_default(),
        &args.pip,
        args.pip_file.as_deref(),
    )?;
    if !pip.is_empty() {
        r.shown.push(Shown {
            key: "pip",
            value: pip.join(" "),
            source: "installed on every node before Dask starts (counts in time to ready)".into(),
        });
    }

    let created_at = now_epoch();
    let spec = ClusterSpec {
        name,
        workers,
        dask_version,
        image,
        scheduler_size,
        worker_size,
        env,
        tags: user_tags,
        owner: owner(),
        created_at,
        ttl,
        idle_timeout,
        death_timeout: DEATH_TIMEOUT,
        tls,
        private,
        launch: clusterctl_core::model::new_launch_id(created_at),
        pip,
    };
    Ok(UpSettings {
        provider,
        region,
        python,
        provider_options,
        spec,
        wait_workers,
        timeout,
        no_wait: args.no_wait,
        dry_run: args.dry_run,
        shown: r.shown,
    })
}

/// Provider options for commands that find clusters without a record (`down`, `status`,
/// `list`, `logs`, `dashboard`): the Kubernetes context and namespace, or the Azure subscription
/// and resource group, from flags or the file. Such a flag given for another provider is refused.
pub fn scope_options(
    kind: ProviderKind,
    kube: &crate::cli::KubeScope,
    azure: &crate::cli::AzureScope,
    project: Option<&str>,
    all_namespaces: bool,
    file: Option<&LoadedConfig>,
) -> Result<serde_json::Value> {
    let misplaced = match kind {
        ProviderKind::Azure if project.is_some() => Some(("--project", "gcp")),
        ProviderKind::Azure => None,
        ProviderKind::Gcp if azure.subscription.is_some() => Some(("--subscription", "azure")),
        ProviderKind::Gcp if azure.resource_group.is_some() => Some(("--resource-group", "azure")),
        ProviderKind::Gcp => None,
        _ if azure.subscription.is_some() => Some(("--subscription", "azure")),
        _ if azure.resource_group.is_some() => Some(("--resource-group", "azure")),
        _ if project.is_some() => Some(("--project", "gcp")),
        _ => None,
    };
    if let Some((flag, of)) = misplaced {
        return Err(Error::invalid(
            flag,
            "",
            format!("{flag} is an option of `{of}`, and the provider is {kind}"),
            Some(format!("pass `--provider {of}`, or drop the flag")),
        ));
    }
    Ok(match kind {
        ProviderKind::Kubernetes => kubernetes::scope_options(kube, all_namespaces, file),
        ProviderKind::Azure => {
            azure::scope_options(azure, file.and_then(|f| f.config.azure.as_ref()))
        }
        ProviderKind::Gcp => {
            let f = file.and_then(|f| f.config.gcp.clone()).unwrap_or_default();
            match project.map(str::to_string).or(f.project) {
                Some(p) => serde_json::json!({ "project": p }),
                None => serde_json::Value::Null,
            }
        }
        _ => serde_json::Value::Null,
    })
}

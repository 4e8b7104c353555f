//! Settings resolution: flags > `CLUSTERCTL_*` environment > config file > defaults, with the
//! source of every value kept for `config show`. Pure apart from reading the clock and the user
//! name; every value is validated here, before anything is created.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use clap::{ArgMatches, parser::ValueSource};
use clusterctl_core::{
    Error, Result,
    model::{self, ClusterName, ClusterSpec, NodeSize, ProviderKind, WaitWorkers, now_epoch},
    tags,
};
use serde::Serialize;

use crate::{
    cli::UpArgs,
    config::{LoadedConfig, Scalar},
};

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

/// Parse a duration like `90s`, `15m`, `2h`, `1h30m`; `0` is zero.
pub fn parse_duration(what: &'static str, s: &str) -> Result<Duration> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|e| {
        Error::invalid(
            what,
            s,
            e.to_string(),
            Some("use a duration like `90s`, `15m`, `2h` or `1h30m`".into()),
        )
    })
}

/// Parse a worker count: a whole number from 0 to [`MAX_WORKERS`].
pub fn parse_workers(what: &'static str, s: &str) -> Result<u32> {
    let n: i64 = s.trim().parse().map_err(|_| {
        Error::invalid(
            what,
            s,
            "not a whole number",
            Some(format!("use a number of workers from 0 to {MAX_WORKERS}")),
        )
    })?;
    if n < 0 {
        return Err(Error::invalid(
            what,
            s,
            "the number of workers cannot be negative",
            Some(format!("use a number from 0 to {MAX_WORKERS}")),
        ));
    }
    if n > i64::from(MAX_WORKERS) {
        return Err(Error::invalid(
            what,
            s,
            format!("more than {MAX_WORKERS} workers"),
            Some("split the work over several clusters".into()),
        ));
    }
    Ok(n as u32)
}

/// Parse a vCPU count (1 to 512).
fn parse_cpus(what: &'static str, s: &str) -> Result<u32> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=512).contains(&n) => Ok(n),
        _ => Err(Error::invalid(
            what,
            s,
            "not a whole number of vCPUs from 1 to 512",
            Some("e.g. `2`".into()),
        )),
    }
}

/// Parse a memory size (`4GiB`, `512MiB`, `8G`, `4096M`; a bare number is MiB) into MiB.
pub fn parse_memory(what: &'static str, s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let refuse = || {
        Error::invalid(
            what,
            s,
            "not a memory size",
            Some("use e.g. `4GiB`, `512MiB` or `8G`".into()),
        )
    };
    let n: u64 = num.parse().map_err(|_| refuse())?;
    let mib = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mi" | "mib" | "mb" => n,
        "g" | "gi" | "gib" | "gb" => n.saturating_mul(1024),
        "t" | "ti" | "tib" | "tb" => n.saturating_mul(1024 * 1024),
        _ => return Err(refuse()),
    };
    if mib < 128 {
        return Err(Error::invalid(
            what,
            s,
            "less than 128MiB",
            Some("Dask needs at least a few hundred MiB per process".into()),
        ));
    }
    model::check_memory_max(what, s, mib)?;
    Ok(mib)
}

/// Names of environment variables that hold credentials; they would end up in the nodes'
/// bootstrap (user-data, task definitions), readable by anyone who can describe the resources.
fn looks_like_credential(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "CREDENTIAL",
        "PRIVATE_KEY",
        "ACCESS_KEY",
        "API_KEY",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Parse `K=V` pairs for `--env`.
pub fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::invalid(
                "--env",
                pair.clone(),
                "not of the form K=V",
                Some("e.g. `--env OMP_NUM_THREADS=1`".into()),
            )
        })?;
        validate_env(k, v)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn validate_env(k: &str, v: &str) -> Result<()> {
    let valid_name = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(Error::invalid(
            "environment variable name",
            k,
            "use letters, digits and '_', not starting with a digit",
            None,
        ));
    }
    if k.starts_with("CLUSTERCTL_") {
        return Err(Error::invalid(
            "environment variable name",
            k,
            "CLUSTERCTL_* variables are set by clusterctl itself",
            None,
        ));
    }
    if v.contains(['\n', '\r', '\0']) {
        return Err(Error::invalid(
            "environment variable",
            k,
            "its value contains a line break",
            Some("pass single-line values".into()),
        ));
    }
    if looks_like_credential(k) {
        return Err(Error::invalid(
            "environment variable",
            k,
            "it looks like a credential, and the environment is written into the nodes' bootstrap, readable by anyone who can inspect the resources",
            Some("give the nodes access through the platform's identity (instance profile, task role, workload identity) instead".into()),
        ));
    }
    Ok(())
}

/// Parse `K=V` pairs for `--tag`.
pub fn parse_tags(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::invalid(
                "--tag",
                pair.clone(),
                "not of the form K=V",
                Some("e.g. `--tag team=data`".into()),
            )
        })?;
        validate_tag(k, v)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn validate_tag(k: &str, v: &str) -> Result<()> {
    let ok = |s: &str, max: usize| {
        s.len() <= max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if k.is_empty() || !ok(k, 63) || !k.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(
            "tag key",
            k,
            "use up to 63 letters, digits, '-', '_' or '.', starting with a letter or digit (every provider accepts these)",
            None,
        ));
    }
    if tags::is_reserved(k) {
        return Err(Error::invalid(
            "tag key",
            k,
            "keys starting with `clusterctl-` are reserved",
            None,
        ));
    }
    if !ok(v, 63) {
        return Err(Error::invalid(
            "tag value",
            v,
            "use up to 63 letters, digits, '-', '_' or '.'",
            None,
        ));
    }
    Ok(())
}

/// The user name for the owner tag, reduced to characters every platform accepts.
fn owner() -> String {
    let raw = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".into());
    let cleaned: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
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

/// The AWS options: flags beat the file's `aws:` section. The keys are those of
/// `clusterctl_aws::Ec2Options`.
fn aws_options(
    args: &crate::cli::AwsArgs,
    file: Option<&crate::config::AwsSection>,
    region: Option<&str>,
) -> serde_json::Value {
    let f = file.cloned().unwrap_or_default();
    let list =
        |flag: &Vec<String>, file: Vec<String>| if flag.is_empty() { file } else { flag.clone() };
    serde_json::json!({
        "region": region,
        "vpc": args.vpc.clone().or(f.vpc),
        "subnets": list(&args.subnets, f.subnets),
        "allow_cidrs": list(&args.allow_cidrs, f.allow_cidrs),
        "ami": args.ami.clone().or(f.ami),
        "scheduler_instance_type": args.scheduler_instance_type.clone().or(f.scheduler_instance_type),
        "worker_instance_types": list(&args.worker_instance_types, f.worker_instance_types),
        "root_volume_gib": args.root_volume_gib.or(f.root_volume_size),
        "spot": args.spot || f.spot.unwrap_or(false),
        "instance_profile": args.instance_profile.clone().or(f.instance_profile),
        "key_name": args.key_name.clone().or(f.key_name),
    })
}

/// The Fargate options: flags beat the file's `fargate:` section. The keys are those of
/// `clusterctl_aws::FargateOptions`; network and market flags are shared with `aws`.
fn fargate_options(
    args: &UpArgs,
    file: Option<&crate::config::FargateSection>,
    region: Option<&str>,
) -> serde_json::Value {
    let f = file.cloned().unwrap_or_default();
    let (a, g) = (&args.aws, &args.fargate);
    let list =
        |flag: &Vec<String>, file: Vec<String>| if flag.is_empty() { file } else { flag.clone() };
    serde_json::json!({
        "region": region,
        "vpc": a.vpc.clone().or(f.vpc),
        "subnets": list(&a.subnets, f.subnets),
        "allow_cidrs": list(&a.allow_cidrs, f.allow_cidrs),
        "spot": a.spot || f.spot.unwrap_or(false),
        "ecs_cluster": g.ecs_cluster.clone().or(f.ecs_cluster),
        "execution_role_arn": g.execution_role_arn.clone().or(f.execution_role_arn),
        "task_role_arn": g.task_role_arn.clone().or(f.task_role_arn),
        "task_role_policies": list(&g.task_role_policies, f.task_role_policies),
        "log_group": g.log_group.clone().or(f.log_group),
        "log_retention_days": g.log_retention_days.or(f.log_retention_days),
        "keep_logs": g.keep_logs || f.keep_logs.unwrap_or(false),
        "architecture": g.cpu_architecture.clone().or(f.cpu_architecture),
    })
}

/// The Kubernetes options: flags beat the file's `kubernetes:` section. The keys are those of
/// `clusterctl_kubernetes::KubernetesOptions`; `--allow-cidr` and `--private` are shared.
fn kubernetes_options(
    args: &UpArgs,
    file: Option<&crate::config::KubernetesSection>,
    private: bool,
) -> Result<serde_json::Value> {
    let f = file.cloned().unwrap_or_default();
    let k = &args.kube;
    let service_type = match k.service_type.clone().or(f.service_type) {
        Some(t) => kube_service_type(&t)?,
        None => "ClusterIP",
    };
    let cidrs = if args.aws.allow_cidrs.is_empty() {
        f.allow_cidrs
    } else {
        args.aws.allow_cidrs.clone()
    };
    Ok(serde_json::json!({
        "context": k.scope.context.clone().or(f.context),
        "namespace": k.scope.namespace.clone().or(f.namespace),
        "create_namespace": k.create_namespace || f.create_namespace.unwrap_or(false),
        "service_type": service_type,
        "allow_cidrs": cidrs,
        "operator": k.k8s_operator || f.k8s_operator.unwrap_or(false),
        "private": private,
    }))
}

/// The Service type as `clusterctl_kubernetes::ServiceType` spells it.
fn kube_service_type(t: &str) -> Result<&'static str> {
    match t.to_ascii_lowercase().as_str() {
        "clusterip" => Ok("ClusterIP"),
        "nodeport" => Ok("NodePort"),
        "loadbalancer" => Ok("LoadBalancer"),
        _ => Err(Error::invalid(
            "--service-type",
            t,
            "not a Service type clusterctl can expose the scheduler with",
            Some("use ClusterIP (the default), NodePort or LoadBalancer".into()),
        )),
    }
}

/// Provider options for commands that find clusters without a record (`down`, `status`,
/// `list`, `dashboard`): for Kubernetes, the context and namespace from flags or the file.
pub fn scope_options(
    kind: ProviderKind,
    scope: &crate::cli::KubeScope,
    all_namespaces: bool,
    file: Option<&LoadedConfig>,
) -> serde_json::Value {
    if kind != ProviderKind::Kubernetes {
        return serde_json::Value::Null;
    }
    let f = file
        .and_then(|f| f.config.kubernetes.clone())
        .unwrap_or_default();
    serde_json::json!({
        "context": scope.context.clone().or(f.context),
        "namespace": scope.namespace.clone().or(f.namespace),
        "all_namespaces": all_namespaces,
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
    if dask_version.is_empty()
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
    let size = |r: &mut Resolver,
                role: &'static str,
                cpus: &Option<String>,
                mem: &Option<String>,
                fcs: &Option<crate::config::SizeConfig>|
     -> Result<NodeSize> {
        let (cpu_key, mem_key, cpu_id, mem_id) = if role == "scheduler" {
            (
                "scheduler.cpus",
                "scheduler.memory",
                "scheduler_cpus",
                "scheduler_memory",
            )
        } else {
            (
                "worker.cpus",
                "worker.memory",
                "worker_cpus",
                "worker_memory",
            )
        };
        let fcs = fcs.clone().unwrap_or_default();
        let c = r.pick(cpu_key, cpu_id, cpus.clone(), scalar(&fcs.cpus), None);
        let m = r.pick(mem_key, mem_id, mem.clone(), scalar(&fcs.memory), None);
        Ok(NodeSize {
            cpus: c
                .map(|c| {
                    parse_cpus(
                        if role == "scheduler" {
                            "--scheduler-cpus"
                        } else {
                            "--worker-cpus"
                        },
                        &c,
                    )
                })
                .transpose()?,
            memory_mib: m
                .map(|m| {
                    parse_memory(
                        if role == "scheduler" {
                            "--scheduler-memory"
                        } else {
                            "--worker-memory"
                        },
                        &m,
                    )
                })
                .transpose()?,
        })
    };
    let scheduler_size = size(
        &mut r,
        "scheduler",
        &args.scheduler_cpus,
        &args.scheduler_memory,
        &fc.scheduler,
    )?;
    let worker_size = size(
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

    let provider_options = match provider {
        ProviderKind::Fargate => fargate_options(args, fc.fargate.as_ref(), region.as_deref()),
        ProviderKind::Kubernetes => kubernetes_options(args, fc.kubernetes.as_ref(), private)?,
        _ => aws_options(&args.aws, fc.aws.as_ref(), region.as_deref()),
    };
    match provider {
        ProviderKind::Aws => r.shown.push(Shown {
            key: "aws",
            value: provider_options.to_string(),
            source: "flags and file section `aws`".into(),
        }),
        ProviderKind::Fargate => r.shown.push(Shown {
            key: "fargate",
            value: provider_options.to_string(),
            source: "flags and file section `fargate`".into(),
        }),
        ProviderKind::Kubernetes => r.shown.push(Shown {
            key: "kubernetes",
            value: provider_options.to_string(),
            source: "flags and file section `kubernetes`".into(),
        }),
        _ => {}
    }

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
        created_at: now_epoch(),
        ttl,
        idle_timeout,
        death_timeout: DEATH_TIMEOUT,
        tls,
        private,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    fn file(text: &str) -> LoadedConfig {
        LoadedConfig {
            path: PathBuf::from("c.yaml"),
            config: parse(Path::new("c.yaml"), text).unwrap(),
        }
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let f = file("workers: 5\nttl: 30m\n");
        let args = UpArgs {
            workers: Some("3".into()),
            ..Default::default()
        };
        let s = resolve_up(&args, None, Some(&f)).unwrap();
        assert_eq!(s.spec.workers, 3);
        assert_eq!(s.spec.ttl, Duration::from_secs(1800));
        assert_eq!(s.spec.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(s.provider, ProviderKind::Local);
        assert!(!s.spec.tls, "local defaults to plain TCP on loopback");
        let src = |k: &str| s.shown.iter().find(|x| x.key == k).unwrap().source.clone();
        assert_eq!(src("workers"), "flag --workers");
        assert_eq!(src("ttl"), "file c.yaml");
        assert_eq!(src("idle_timeout"), "default");
    }

    #[test]
    fn refusals_name_value_and_fix() {
        let bad = |args: UpArgs, needle: &str| {
            let e = resolve_up(&args, None, None).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            let msg = format!("{e} {}", e.hints().join(" "));
            assert!(msg.contains(needle), "{msg}");
        };
        bad(
            UpArgs {
                workers: Some("-1".into()),
                ..Default::default()
            },
            "cannot be negative",
        );
        bad(
            UpArgs {
                workers: Some("many".into()),
                ..Default::default()
            },
            "`many`",
        );
        bad(
            UpArgs {
                provider: Some("nimbus".into()),
                ..Default::default()
            },
            "kubernetes",
        );
        bad(
            UpArgs {
                provider: Some("gcp".into()),
                ..Default::default()
            },
            "not available in this build",
        );
        bad(
            UpArgs {
                name: Some("Bad_Name".into()),
                ..Default::default()
            },
            "`Bad_Name`",
        );
        bad(
            UpArgs {
                ttl: Some("forever".into()),
                ..Default::default()
            },
            "`forever`",
        );
        bad(
            UpArgs {
                env: vec!["AWS_SECRET_ACCESS_KEY=x".into()],
                ..Default::default()
            },
            "credential",
        );
        bad(
            UpArgs {
                env: vec!["NOEQUALS".into()],
                ..Default::default()
            },
            "K=V",
        );
        bad(
            UpArgs {
                tag: vec!["clusterctl-cluster=x".into()],
                ..Default::default()
            },
            "reserved",
        );
        bad(
            UpArgs {
                worker_memory: Some("lots".into()),
                ..Default::default()
            },
            "memory size",
        );
        bad(
            UpArgs {
                workers: Some("2".into()),
                wait_workers: Some("3".into()),
                ..Default::default()
            },
            "more than the 2",
        );
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("m", "4GiB").unwrap(), 4096);
        assert_eq!(parse_memory("m", "512MiB").unwrap(), 512);
        assert_eq!(parse_memory("m", "8G").unwrap(), 8192);
        assert_eq!(parse_memory("m", "1024").unwrap(), 1024);
        assert!(parse_memory("m", "64MiB").is_err());
        assert!(parse_memory("m", "4 parsecs").is_err());
        assert!(parse_memory("m", "25TiB").is_err());
        assert!(
            parse_memory("m", "18446744073709551615T").is_err(),
            "no overflow"
        );
    }

    #[test]
    fn tls_flags() {
        let on = resolve_up(
            &UpArgs {
                tls: true,
                ..Default::default()
            },
            None,
            None,
        )
        .unwrap();
        assert!(on.spec.tls);
        let f = file("tls: true\n");
        let off = resolve_up(
            &UpArgs {
                no_tls: true,
                ..Default::default()
            },
            None,
            Some(&f),
        )
        .unwrap();
        assert!(!off.spec.tls);
    }
}

//! The one place that turns a provider kind into a provider: each platform's crate is built in
//! behind its Cargo feature and constructed here from resolved settings.

use std::{path::PathBuf, sync::Arc};

use clusterctl_core::{ClusterProvider, Error, Result, model::ProviderKind};
use clusterctl_local::{LocalProvider, runtime::RuntimeSource};

/// Directories clusterctl uses on this machine.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Records, locks, and the local provider's node files (`CLUSTERCTL_STATE_DIR`).
    pub state_dir: PathBuf,
    /// The managed Dask runtime (`CLUSTERCTL_CACHE_DIR`).
    pub cache_dir: PathBuf,
}

impl Paths {
    pub fn from_env() -> Self {
        let home = dirs::home_dir().unwrap_or_else(|| PathBuf::from("."));
        let state_dir = std::env::var_os("CLUSTERCTL_STATE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::state_dir().map(|d| d.join("clusterctl")))
            .unwrap_or_else(|| home.join(".local/state/clusterctl"));
        let cache_dir = std::env::var_os("CLUSTERCTL_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| dirs::cache_dir().map(|d| d.join("clusterctl")))
            .unwrap_or_else(|| home.join(".cache/clusterctl"));
        // The state directory scopes local clusters; make it absolute so every process agrees.
        let absolute = |p: PathBuf| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map(|c| c.join(&p)).unwrap_or(p)
            }
        };
        Paths {
            state_dir: absolute(state_dir),
            cache_dir: absolute(cache_dir),
        }
    }
}

/// What a provider is built from.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    pub region: Option<String>,
    pub python: Option<PathBuf>,
    pub dask_version: Option<String>,
    /// Provider-specific options (JSON), e.g. `clusterctl_aws::Ec2Options`.
    pub extra: serde_json::Value,
}

/// The providers compiled into this build.
pub fn available() -> Vec<ProviderKind> {
    let mut kinds = vec![ProviderKind::Local];
    if cfg!(feature = "aws") {
        kinds.push(ProviderKind::Aws);
    }
    if cfg!(feature = "fargate") {
        kinds.push(ProviderKind::Fargate);
    }
    if cfg!(feature = "kubernetes") {
        kinds.push(ProviderKind::Kubernetes);
    }
    if cfg!(feature = "digitalocean") {
        kinds.push(ProviderKind::Digitalocean);
    }
    if cfg!(feature = "azure") {
        kinds.push(ProviderKind::Azure);
    }
    if cfg!(feature = "gcp") {
        kinds.push(ProviderKind::Gcp);
    }
    kinds
}

/// A provider's options from their JSON form (defaults when there are none).
#[allow(dead_code)] // unused in builds without any provider that has options
fn options<T: serde::de::DeserializeOwned + Default>(
    extra: &serde_json::Value,
    what: &'static str,
) -> Result<T> {
    if extra.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(extra.clone())
        .map_err(|e| Error::invalid(what, extra.to_string(), e.to_string(), None))
}

/// Build the provider of `kind`.
pub async fn build(
    kind: ProviderKind,
    opts: &ProviderOptions,
    paths: &Paths,
) -> Result<Arc<dyn ClusterProvider>> {
    match kind {
        ProviderKind::Local => {
            if let Some(region) = opts.region.as_deref().filter(|r| *r != "localhost") {
                return Err(Error::invalid(
                    "--region",
                    region,
                    "the local provider runs on this machine and has no regions",
                    Some("drop `--region`, or choose a cloud `--provider`".into()),
                ));
            }
            let source = opts
                .python
                .clone()
                .map_or(RuntimeSource::Auto, RuntimeSource::Python);
            let version = opts
                .dask_version
                .clone()
                .unwrap_or_else(|| clusterctl_core::DASK_VERSION.into());
            Ok(Arc::new(LocalProvider::new(
                paths.state_dir.clone(),
                paths.cache_dir.clone(),
                source,
                version,
            )))
        }
        #[cfg(feature = "aws")]
        ProviderKind::Aws => {
            let mut o: clusterctl_aws::Ec2Options = options(&opts.extra, "AWS options")?;
            if opts.region.is_some() {
                o.region = opts.region.clone();
            }
            Ok(Arc::new(clusterctl_aws::Ec2Provider::from_env(o).await?))
        }
        #[cfg(feature = "fargate")]
        ProviderKind::Fargate => {
            let mut o: clusterctl_aws::FargateOptions = options(&opts.extra, "Fargate options")?;
            if opts.region.is_some() {
                o.region = opts.region.clone();
            }
            Ok(Arc::new(
                clusterctl_aws::FargateProvider::from_env(o).await?,
            ))
        }
        #[cfg(feature = "kubernetes")]
        ProviderKind::Kubernetes => {
            if let Some(region) = &opts.region {
                return Err(Error::invalid(
                    "--region",
                    region,
                    "Kubernetes clusters live in a kube context and namespace, not a region",
                    Some("use `--context` and `--namespace`".into()),
                ));
            }
            let o: clusterctl_kubernetes::KubernetesOptions =
                options(&opts.extra, "Kubernetes options")?;
            Ok(Arc::new(
                clusterctl_kubernetes::KubernetesProvider::from_env(o).await?,
            ))
        }
        #[cfg(feature = "digitalocean")]
        ProviderKind::Digitalocean => {
            let mut o: clusterctl_digitalocean::DigitalOceanOptions =
                options(&opts.extra, "DigitalOcean options")?;
            if opts.region.is_some() {
                o.region = opts.region.clone();
            }
            Ok(Arc::new(
                clusterctl_digitalocean::DigitalOceanProvider::from_env(o)?,
            ))
        }
        #[cfg(feature = "azure")]
        ProviderKind::Azure => {
            let mut o: clusterctl_azure::AzureOptions = options(&opts.extra, "Azure options")?;
            if opts.region.is_some() {
                o.location = opts.region.clone();
            }
            Ok(Arc::new(
                clusterctl_azure::AzureProvider::from_env(o).await?,
            ))
        }
        #[cfg(feature = "gcp")]
        ProviderKind::Gcp => {
            let mut o: clusterctl_gcp::GcpOptions = options(&opts.extra, "GCP options")?;
            if let Some(zone) = &opts.region
                && !o.zones.contains(zone)
            {
                o.zones = vec![zone.clone()];
            }
            Ok(Arc::new(clusterctl_gcp::GcpProvider::from_env(o).await?))
        }
        #[allow(unreachable_patterns)] // every kind is built in with the default features
        other => Err(Error::ProviderUnavailable {
            kind: other,
            built: available(),
        }),
    }
}

//! The YAML config file: where it is looked for, what it may contain (unknown keys are errors),
//! and the error that names the file and line of a problem.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("config file {}: {message}", path.display())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong, with the line when known.
    pub message: String,
}

/// A number or a string in YAML (`workers: 3`, `wait_workers: 80%`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// A whole number.
    Int(i64),
    /// Anything else, as written.
    Str(String),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Str(s) => f.write_str(s),
        }
    }
}

/// Node size in the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeConfig {
    /// vCPUs.
    pub cpus: Option<Scalar>,
    /// Memory, e.g. `8GiB`.
    pub memory: Option<Scalar>,
}

/// Settings of the local provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSection {
    /// Python interpreter with Dask installed.
    pub python: Option<PathBuf>,
}

/// Settings of the AWS provider (the same names as the flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSection {
    pub vpc: Option<String>,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    pub ami: Option<String>,
    pub scheduler_instance_type: Option<String>,
    #[serde(default)]
    pub worker_instance_types: Vec<String>,
    pub root_volume_size: Option<u32>,
    pub spot: Option<bool>,
    pub instance_profile: Option<String>,
    pub key_name: Option<String>,
}

/// Settings of the Fargate provider (the same names as the flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FargateSection {
    pub vpc: Option<String>,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    pub spot: Option<bool>,
    pub ecs_cluster: Option<String>,
    pub execution_role_arn: Option<String>,
    pub task_role_arn: Option<String>,
    #[serde(default)]
    pub task_role_policies: Vec<String>,
    pub log_group: Option<String>,
    pub log_retention_days: Option<i32>,
    pub keep_logs: Option<bool>,
    pub cpu_architecture: Option<String>,
}

/// Settings of the Kubernetes provider (the same names as the flags).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSection {
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub create_namespace: Option<bool>,
    pub service_type: Option<String>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    pub k8s_operator: Option<bool>,
}

/// Settings of the DigitalOcean provider (the same names as the flags; no token: it comes
/// from the environment or doctl's configuration only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigitalOceanSection {
    pub api_url: Option<String>,
    pub vpc: Option<String>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    pub droplet_image: Option<String>,
    pub scheduler_size: Option<String>,
    #[serde(default)]
    pub worker_sizes: Vec<String>,
    #[serde(default)]
    pub ssh_keys: Vec<String>,
    pub monitoring: Option<bool>,
}

/// Settings of the Azure provider (the same names as the flags; no credential: those come from
/// the environment, a managed identity or the Azure CLI only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSection {
    pub location: Option<String>,
    pub subscription: Option<String>,
    pub endpoint: Option<String>,
    pub resource_group: Option<String>,
    pub subnet: Option<String>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    pub image: Option<String>,
    pub scheduler_vm_size: Option<String>,
    #[serde(default)]
    pub worker_vm_sizes: Vec<String>,
    pub os_disk_gib: Option<u32>,
    pub spot: Option<bool>,
    pub ssh_public_key: Option<String>,
    pub ttl_mode: Option<String>,
}

/// Settings of the Google Compute Engine provider (the same names as the flags; no credential:
/// those come from Application Default Credentials only).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpSection {
    pub project: Option<String>,
    #[serde(default)]
    pub zones: Vec<String>,
    pub endpoint: Option<String>,
    pub network: Option<String>,
    pub subnetwork: Option<String>,
    #[serde(default)]
    pub allow_cidrs: Vec<String>,
    pub image: Option<String>,
    pub scheduler_machine_type: Option<String>,
    #[serde(default)]
    pub worker_machine_types: Vec<String>,
    pub boot_disk_gb: Option<u32>,
    pub spot: Option<bool>,
    pub service_account: Option<String>,
    pub gpu: Option<String>,
}

/// The whole file. Top-level keys apply to every provider; a provider's section holds what only
/// that provider understands.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub provider: Option<String>,
    pub workers: Option<Scalar>,
    pub region: Option<String>,
    pub dask_version: Option<String>,
    pub image: Option<String>,
    pub scheduler: Option<SizeConfig>,
    pub worker: Option<SizeConfig>,
    pub env: Option<BTreeMap<String, String>>,
    pub tags: Option<BTreeMap<String, String>>,
    /// Packages installed on every node (`--pip`), before those of the flags.
    pub pip: Option<Vec<String>>,
    pub ttl: Option<Scalar>,
    pub idle_timeout: Option<Scalar>,
    pub wait_workers: Option<Scalar>,
    pub timeout: Option<Scalar>,
    pub tls: Option<bool>,
    pub private: Option<bool>,
    pub local: Option<LocalSection>,
    pub aws: Option<AwsSection>,
    pub fargate: Option<FargateSection>,
    pub kubernetes: Option<KubernetesSection>,
    pub digitalocean: Option<DigitalOceanSection>,
    pub azure: Option<AzureSection>,
    pub gcp: Option<GcpSection>,
}

/// A config file and its contents.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub path: PathBuf,
    pub config: FileConfig,
}

/// Parse a config file's text.
pub fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_saphyr::from_str::<Option<FileConfig>>(text)
        .map(Option::unwrap_or_default)
        .map_err(|e| ConfigError {
            path: path.to_path_buf(),
            message: without_excerpt(&e.to_string()),
        })
}

/// The parser's message without the excerpt of the file it appends (` --> <input>:2:3` and the
/// lines around): the message already names the line and column, and an excerpt would print
/// whatever that line holds (a token pasted into the wrong place) into CI logs.
fn without_excerpt(message: &str) -> String {
    let cut = message.find("\n -->").unwrap_or(message.len());
    message[..cut].trim_end().to_string()
}

/// Find and read the config file: `explicit` (which must exist), else `./clusterctl.yaml`,
/// else `<user config dir>/clusterctl/config.yaml`; `None` when there is none.
pub fn load(explicit: Option<&Path>) -> Result<Option<LoadedConfig>, ConfigError> {
    let candidates: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => {
            let mut c = vec![PathBuf::from("clusterctl.yaml")];
            if let Some(dir) = dirs::config_dir() {
                c.push(dir.join("clusterctl").join("config.yaml"));
            }
            c
        }
    };
    for path in candidates {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                return parse(&path, &text).map(|config| Some(LoadedConfig { path, config }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
            Err(e) => {
                return Err(ConfigError {
                    path,
                    message: format!("cannot be read: {e}"),
                });
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../examples/clusterctl.yaml");
        let c = parse(Path::new("examples/clusterctl.yaml"), text).unwrap();
        let f = c.fargate.unwrap();
        assert_eq!(f.spot, Some(true));
        assert_eq!(f.log_retention_days, Some(14));
        assert_eq!(f.allow_cidrs, vec!["203.0.113.7/32".to_string()]);
        let k = c.kubernetes.unwrap();
        assert_eq!(k.namespace.as_deref(), Some("dask-ci"));
        assert_eq!(k.create_namespace, Some(true));
    }

    #[test]
    fn parses_a_full_file() {
        let text = "provider: local\nworkers: 3\nwait_workers: 80%\nttl: 2h\nworker:\n  cpus: 2\n  memory: 4GiB\nenv:\n  A: b\nlocal:\n  python: /usr/bin/python3\n";
        let c = parse(Path::new("c.yaml"), text).unwrap();
        assert_eq!(c.provider.as_deref(), Some("local"));
        assert_eq!(c.workers.unwrap().to_string(), "3");
        assert_eq!(c.wait_workers.unwrap().to_string(), "80%");
        assert_eq!(c.worker.unwrap().memory.unwrap().to_string(), "4GiB");
        assert_eq!(
            c.local.unwrap().python.unwrap(),
            PathBuf::from("/usr/bin/python3")
        );
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = parse(Path::new("c.yaml"), "provider: local\nwrokers: 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml") && err.contains("wrokers"), "{err}");
        assert!(
            err.contains("line 2") || err.contains(":2:") || err.contains("2:1"),
            "{err}"
        );
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let err = parse(Path::new("c.yaml"), "provider: local\nworkers: [1, 2\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("c.yaml"), "{err}");
        assert!(err.contains("line") || err.contains(':'), "{err}");
    }

    #[test]
    fn empty_file_is_empty_config() {
        assert!(
            parse(Path::new("c.yaml"), "# nothing\n")
                .unwrap()
                .provider
                .is_none()
        );
        assert!(parse(Path::new("c.yaml"), "").unwrap().provider.is_none());
    }
}

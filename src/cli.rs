//! Command-line definitions (clap derive). No logic here: doc comments are the help text, and
//! values are only parsed; [`crate::settings`] merges them with the environment and the config
//! file.

use std::path::PathBuf;

use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    the cluster or the provider failed (timeout, capacity, quota, auth), or something
       is left behind (the error lists it, with the `down` command that removes it)
  2    usage or configuration error (nothing was created)
  130  interrupted; everything created was torn down first
  `run` exits with the command's own status.";

/// Launch an ephemeral Dask cluster, wait until it is really ready, tear it down afterwards.
#[derive(Debug, Parser)]
#[command(name = "clusterctl", version, after_help = EXIT_CODES, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Output format of results on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per command.
    Json,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Output format: results go to stdout, progress and errors to stderr.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text, env = "CLUSTERCTL_OUTPUT")]
    pub output: OutputFormat,
    /// No progress on stderr (errors are still shown).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Config file (default: ./clusterctl.yaml, else the user config directory's clusterctl/config.yaml).
    #[arg(long, global = true, env = "CLUSTERCTL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Refuse (exit 2) instead of warning when the client Python's `distributed` (--python, else
    /// python3 on PATH) is another minor release than the cluster's (`up`, `run`, `env`).
    #[arg(long, global = true, env = "CLUSTERCTL_STRICT_VERSIONS")]
    pub strict_versions: bool,
    /// Diagnostics on stderr: `-v` every platform request (status, duration, retries), every
    /// wait and its polls, every rollback and teardown step; `-vv` adds the libraries' events.
    /// `CLUSTERCTL_LOG` takes filter directives instead (e.g. `clusterctl::api=debug`).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a cluster and wait until it is ready; prints the scheduler address and dashboard link.
    Up(UpArgs),
    /// Wait until a cluster started with `up --no-wait` is ready (tears it down if it never is).
    Wait(NameArg),
    /// Tear a cluster down and verify nothing is left (works from the provider's tags alone).
    Down(DownArgs),
    /// Find every clusterctl cluster past its TTL (half-made ones too) on the providers and
    /// places given, and remove them with `down` (`--yes`; without it, only list them).
    Gc(GcArgs),
    /// Live state of a cluster: nodes, addresses, workers joined.
    Status(StatusArgs),
    /// Clusters found on the providers, and those recorded on this machine.
    List(ListArgs),
    /// Change the number of workers (surplus workers are retired gracefully first).
    Scale(ScaleArgs),
    /// Show scheduler or worker logs.
    Logs(LogsArgs),
    /// Print shell exports for a cluster: `eval "$(clusterctl env)"`.
    Env(NameArg),
    /// Check what `up` with the same flags would need (credentials, location, permissions,
    /// quotas, the Dask runtime, the client's Dask), creating nothing; exit 1 if a check fails.
    Doctor(UpArgs),
    /// Bring a cluster up, run a command against it, and always tear it down.
    Run(RunArgs),
    /// Print the dashboard link (and scheduler address) reachable from this machine; for a
    /// Kubernetes ClusterIP scheduler, holds a port-forward open until interrupted.
    Dashboard(DashboardArgs),
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script: `source <(clusterctl completions bash)`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff): `clusterctl man | man -l -`; `clusterctl man up` for
    /// clusterctl-up(1) with every flag of `up`.
    Man {
        /// The subcommand whose page to print (default: the main page).
        command: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The effective settings for `up` and where each one came from.
    Show(UpArgs),
}

/// Options of `up` (also taken by `run` and `config show`).
#[derive(Debug, Args, Clone, Default)]
pub struct UpArgs {
    /// Where to run: local, aws, fargate, azure, gcp, digitalocean, kubernetes.
    #[arg(long, env = "CLUSTERCTL_PROVIDER")]
    pub provider: Option<String>,
    /// Number of workers.
    #[arg(
        long,
        short = 'w',
        env = "CLUSTERCTL_WORKERS",
        allow_negative_numbers = true,
        value_name = "N"
    )]
    pub workers: Option<String>,
    /// Cluster name (lowercase letters, digits, '-'); generated when omitted.
    #[arg(long, env = "CLUSTERCTL_NAME")]
    pub name: Option<String>,
    /// Region, zone or location of the provider (`--location` for Azure).
    #[arg(long, visible_alias = "location", env = "CLUSTERCTL_REGION")]
    pub region: Option<String>,
    /// Dask release to run.
    #[arg(long, env = "CLUSTERCTL_DASK_VERSION", value_name = "VERSION")]
    pub dask_version: Option<String>,
    /// Container image for providers that run containers (default: the Dask image of --dask-version).
    #[arg(long, env = "CLUSTERCTL_IMAGE")]
    pub image: Option<String>,
    /// vCPUs of the scheduler.
    #[arg(long, value_name = "N")]
    pub scheduler_cpus: Option<String>,
    /// Memory of the scheduler, e.g. 4GiB.
    #[arg(long, value_name = "SIZE")]
    pub scheduler_memory: Option<String>,
    /// vCPUs (Dask threads) of each worker.
    #[arg(long, value_name = "N")]
    pub worker_cpus: Option<String>,
    /// Memory of each worker, e.g. 8GiB.
    #[arg(long, value_name = "SIZE")]
    pub worker_memory: Option<String>,
    /// Environment variable for scheduler and workers (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Extra tag on every resource (repeatable).
    #[arg(long = "tag", value_name = "K=V")]
    pub tag: Vec<String>,
    /// Python package installed on every node before Dask starts, as pip takes it (repeatable):
    /// `--pip 'xarray>=2024' --pip zarr`. On `local`, a wheel path works too.
    #[arg(long = "pip", value_name = "REQUIREMENT")]
    pub pip: Vec<String>,
    /// A requirements file: one requirement per line, `#` comments (pip options are refused).
    #[arg(long, value_name = "FILE")]
    pub pip_file: Option<PathBuf>,
    /// Hard maximum lifetime; the cluster ends itself then, even if clusterctl is gone.
    #[arg(long, env = "CLUSTERCTL_TTL", value_name = "DURATION")]
    pub ttl: Option<String>,
    /// The scheduler shuts down after this long without work (0 disables).
    #[arg(long, env = "CLUSTERCTL_IDLE_TIMEOUT", value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Workers that must join before the cluster counts as ready: all, N, or P%.
    #[arg(long, env = "CLUSTERCTL_WAIT_WORKERS", value_name = "N|P%")]
    pub wait_workers: Option<String>,
    /// Readiness deadline; on expiry everything is torn down.
    #[arg(long, env = "CLUSTERCTL_TIMEOUT", value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Return once the resources exist (use `clusterctl wait` later).
    #[arg(long)]
    pub no_wait: bool,
    /// Print what would be created, with the rendered bootstrap; create nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// TLS between scheduler, workers and client (default: on, except for local).
    #[arg(long, overrides_with = "no_tls")]
    pub tls: bool,
    /// Plain TCP between scheduler, workers and client.
    #[arg(long, overrides_with = "tls")]
    pub no_tls: bool,
    /// Reach the scheduler on its private address (the client runs in the same network).
    #[arg(long)]
    pub private: bool,
    /// Python interpreter with Dask, for the local provider.
    #[arg(long, env = "CLUSTERCTL_PYTHON", value_name = "PATH")]
    pub python: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetworkArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub fargate: FargateArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    #[command(flatten)]
    pub digitalocean: DigitalOceanArgs,
    #[command(flatten)]
    pub azure: AzureArgs,
    #[command(flatten)]
    pub gcp: GcpArgs,
}

/// Where Kubernetes clusters live: the kube context and namespace.
#[derive(Debug, Args, Clone, Default)]
pub struct KubeScope {
    /// Kubernetes: the kubeconfig context (default: the current context, or the in-cluster
    /// configuration when clusterctl runs in a pod).
    #[arg(long, env = "CLUSTERCTL_KUBE_CONTEXT", value_name = "NAME")]
    pub context: Option<String>,
    /// Kubernetes: the namespace (default: the context's, else `default`).
    #[arg(long, short = 'n', env = "CLUSTERCTL_NAMESPACE", value_name = "NAME")]
    pub namespace: Option<String>,
}

/// Options of the Kubernetes provider (it also takes --allow-cidr and --private).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Kubernetes options")]
pub struct KubeArgs {
    #[command(flatten)]
    pub scope: KubeScope,
    /// Create the namespace if it does not exist (and delete it on `down`).
    #[arg(long)]
    pub create_namespace: bool,
    /// How the scheduler's Service is exposed: ClusterIP (default; reached through a
    /// port-forward from outside the cluster), NodePort, or LoadBalancer (limited to --allow-cidr).
    #[arg(long, value_name = "TYPE")]
    pub service_type: Option<String>,
    /// Create a `DaskCluster` of the Dask Kubernetes operator instead of plain pods.
    #[arg(long)]
    pub k8s_operator: bool,
}

/// Options of the Fargate provider (it also takes --vpc, --subnet, --allow-cidr and --spot).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Fargate options")]
pub struct FargateArgs {
    /// Run the tasks in this existing ECS cluster (default: one is created for the cluster).
    #[arg(long, value_name = "NAME")]
    pub ecs_cluster: Option<String>,
    /// Existing task execution role (default: one is created, with
    /// AmazonECSTaskExecutionRolePolicy and read access to the cluster's TLS keys in SSM).
    #[arg(long, value_name = "ARN")]
    pub execution_role_arn: Option<String>,
    /// Existing task role: the AWS identity of the Dask code.
    #[arg(long, value_name = "ARN")]
    pub task_role_arn: Option<String>,
    /// Policy ARN for a task role created for the cluster (repeatable).
    #[arg(long = "task-role-policy", value_name = "ARN", value_delimiter = ',')]
    pub task_role_policies: Vec<String>,
    /// Existing CloudWatch log group (default: /clusterctl/<name> is created).
    #[arg(long, value_name = "NAME")]
    pub log_group: Option<String>,
    /// Retention of the created log group, in days.
    #[arg(long, value_name = "DAYS")]
    pub log_retention_days: Option<i32>,
    /// Keep the created log group when the cluster is torn down.
    #[arg(long)]
    pub keep_logs: bool,
    /// CPU architecture of the tasks: x86_64 or arm64.
    #[arg(long, value_name = "ARCH")]
    pub cpu_architecture: Option<String>,
}

/// Network options shared by the cloud providers.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Network options (cloud providers)")]
pub struct NetworkArgs {
    /// CIDR allowed to reach the scheduler and dashboard ports (repeatable). Nothing is open to
    /// the world unless you pass 0.0.0.0/0 yourself. Required unless --private.
    #[arg(long = "allow-cidr", value_name = "CIDR", value_delimiter = ',')]
    pub allow_cidrs: Vec<String>,
    /// VPC to launch into. AWS: a VPC id (default: the subnets' VPC, else the default VPC);
    /// DigitalOcean: a VPC uuid (default: the region's default VPC).
    #[arg(long, value_name = "ID")]
    pub vpc: Option<String>,
}

/// Options of the DigitalOcean provider (it also takes --region, --vpc, --allow-cidr and
/// --private). The API token comes from DIGITALOCEAN_TOKEN, DIGITALOCEAN_ACCESS_TOKEN or doctl's
/// configuration, never from a flag.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "DigitalOcean options")]
pub struct DigitalOceanArgs {
    /// Droplet image slug or id (default: ubuntu-24-04-x64; Docker is installed at boot).
    #[arg(long, value_name = "SLUG")]
    pub droplet_image: Option<String>,
    /// Scheduler droplet size (default: the provider's, or the smallest fitting
    /// --scheduler-cpus/-memory).
    #[arg(long, value_name = "SLUG")]
    pub scheduler_size: Option<String>,
    /// Worker droplet size(s), in order of preference (default: the provider's, or the smallest
    /// fitting --worker-cpus/-memory).
    #[arg(long = "worker-size", value_name = "SLUG", value_delimiter = ',')]
    pub worker_sizes: Vec<String>,
    /// Your SSH key(s) (id or fingerprint) for the droplets (default: a throwaway key per
    /// cluster, whose private half is discarded, so no root password is e-mailed).
    #[arg(long = "ssh-key", value_name = "ID|FINGERPRINT", value_delimiter = ',')]
    pub ssh_keys: Vec<String>,
    /// Turn on DigitalOcean's monitoring agent on the droplets.
    #[arg(long)]
    pub monitoring: bool,
    /// API base URL (default: DIGITALOCEAN_API_URL, else https://api.digitalocean.com).
    #[arg(long, value_name = "URL")]
    pub digitalocean_api_url: Option<String>,
}

/// Options of the Azure provider (it also takes --location/--region, --subnet, --spot,
/// --allow-cidr and --private). Credentials come from the standard chain (environment service
/// principal, workload identity, managed identity, Azure CLI), never from a flag.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Azure options")]
pub struct AzureArgs {
    /// Subscription id (default: AZURE_SUBSCRIPTION_ID, else the Azure CLI's).
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Existing resource group to use (default: `clusterctl-NAME`, made and deleted per cluster).
    #[arg(long, value_name = "NAME")]
    pub resource_group: Option<String>,
    /// Image URN publisher:offer:sku:version (default: Canonical:ubuntu-24_04-lts:server:latest).
    #[arg(long, value_name = "URN")]
    pub azure_image: Option<String>,
    /// Scheduler VM size (default: Standard_D2s_v5).
    #[arg(long, value_name = "SIZE")]
    pub scheduler_vm_size: Option<String>,
    /// Worker VM size(s), in order of preference (default: Standard_D4s_v5).
    #[arg(long = "worker-vm-size", value_name = "SIZE", value_delimiter = ',')]
    pub worker_vm_sizes: Vec<String>,
    /// OS disk size in GiB (default: 64).
    #[arg(long = "os-disk-size", value_name = "GIB")]
    pub os_disk_gib: Option<u32>,
    /// Your SSH public key (an OpenSSH line or a .pub file) for the VMs' admin user (default: a
    /// throwaway key whose private half is discarded; never a password).
    #[arg(long, value_name = "KEY|FILE")]
    pub ssh_public_key: Option<String>,
    /// ARM endpoint (default: AZURE_RESOURCE_MANAGER_ENDPOINT, else https://management.azure.com).
    #[arg(long, value_name = "URL")]
    pub azure_endpoint: Option<String>,
    /// At the TTL: `delete-group` (default; the cluster deletes its own resource group, which
    /// needs Microsoft.Authorization/roleAssignments/write) or `power-off` (VMs stop but stay
    /// allocated: Azure bills them until `down`).
    #[arg(long, value_name = "MODE")]
    pub azure_ttl_mode: Option<String>,
}

/// Options of the Google Compute Engine provider (it also takes --region as a zone, --spot,
/// --allow-cidr and --private). Credentials come from Application Default Credentials
/// (GOOGLE_APPLICATION_CREDENTIALS, gcloud's, the metadata server), never from a flag.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Google Compute Engine options")]
pub struct GcpArgs {
    /// Project id (default: GOOGLE_CLOUD_PROJECT or CLOUDSDK_CORE_PROJECT, else the
    /// credentials' project).
    #[arg(long, value_name = "ID")]
    pub project: Option<String>,
    /// Zone(s) in order of preference, e.g. us-central1-a (default: --region); a stockout
    /// moves on to the next.
    #[arg(long = "zone", value_name = "ZONE", value_delimiter = ',')]
    pub zones: Vec<String>,
    /// VPC network (default: default).
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// Subnetwork of the zone's region (required on custom-mode VPCs).
    #[arg(long, value_name = "NAME")]
    pub subnetwork: Option<String>,
    /// Boot image (default: projects/cos-cloud/global/images/family/cos-stable).
    #[arg(long, value_name = "PATH")]
    pub gcp_image: Option<String>,
    /// Scheduler machine type (default: e2-standard-2).
    #[arg(long, value_name = "TYPE")]
    pub scheduler_machine_type: Option<String>,
    /// Worker machine type(s), in order of preference (default: e2-standard-4).
    #[arg(
        long = "worker-machine-type",
        value_name = "TYPE",
        value_delimiter = ','
    )]
    pub worker_machine_types: Vec<String>,
    /// Boot disk size in GB (default: 50).
    #[arg(long = "boot-disk-size", value_name = "GB")]
    pub boot_disk_gb: Option<u32>,
    /// Service account for the instances, with the cloud-platform scope (what the workers may
    /// reach is its roles); it is also granted read access to the cluster's key secrets
    /// (default: a per-cluster account that can only read those).
    #[arg(long, value_name = "EMAIL")]
    pub service_account: Option<String>,
    /// GPUs per worker, e.g. nvidia-l4 or nvidia-tesla-t4:2 (needs --gcp-image with the NVIDIA
    /// driver and container toolkit).
    #[arg(long, value_name = "TYPE[:COUNT]")]
    pub gpu: Option<String>,
    /// API endpoint for Compute, IAM and Secret Manager (default: CLUSTERCTL_GCP_ENDPOINT, else
    /// Google's).
    #[arg(long, value_name = "URL")]
    pub gcp_endpoint: Option<String>,
}

/// Options of the AWS provider.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "AWS options")]
pub struct AwsArgs {
    /// Subnet(s), in order of preference; workers spread over them on capacity errors.
    #[arg(long = "subnet", value_name = "SUBNET_ID", value_delimiter = ',')]
    pub subnets: Vec<String>,
    /// AMI (default: the ECS-optimized Amazon Linux 2023 image, from its public SSM parameter).
    #[arg(long, value_name = "AMI_ID")]
    pub ami: Option<String>,
    /// Scheduler instance type (default: m7i.large, or the smallest fitting --scheduler-cpus/-memory).
    #[arg(long, value_name = "TYPE")]
    pub scheduler_instance_type: Option<String>,
    /// Worker instance type(s), in order of preference (default: m7i.xlarge, or the smallest
    /// fitting --worker-cpus/-memory).
    #[arg(
        long = "worker-instance-type",
        value_name = "TYPE",
        value_delimiter = ','
    )]
    pub worker_instance_types: Vec<String>,
    /// Root volume size in GiB.
    #[arg(long = "root-volume-size", value_name = "GIB")]
    pub root_volume_gib: Option<u32>,
    /// Run workers on spot capacity (falling back to on-demand).
    #[arg(long)]
    pub spot: bool,
    /// Instance profile (IAM role) for the nodes.
    #[arg(long, value_name = "NAME")]
    pub instance_profile: Option<String>,
    /// Key pair for SSH access to the nodes.
    #[arg(long, value_name = "NAME")]
    pub key_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Cluster name (default: the only cluster this machine knows).
    pub name: Option<String>,
}

/// Where Azure clusters live, for commands that find them without a record.
#[derive(Debug, Args, Clone, Default)]
pub struct AzureScope {
    /// Azure: the subscription id (default: AZURE_SUBSCRIPTION_ID, else the Azure CLI's).
    #[arg(long, value_name = "ID")]
    pub subscription: Option<String>,
    /// Azure: the existing resource group `up` was given (default: the cluster's own).
    #[arg(long, value_name = "NAME")]
    pub resource_group: Option<String>,
}

/// Where to look for a cluster this machine has no record of.
#[derive(Debug, Args, Clone, Default)]
pub struct Locate {
    /// Provider to search when there is no local record.
    #[arg(long, env = "CLUSTERCTL_PROVIDER")]
    pub provider: Option<String>,
    /// Region to search when there is no local record.
    #[arg(long, env = "CLUSTERCTL_REGION")]
    pub region: Option<String>,
    /// GCP: the project to search when there is no local record (default:
    /// GOOGLE_CLOUD_PROJECT, else the credentials' project).
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    #[command(flatten)]
    pub kube: KubeScope,
    #[command(flatten)]
    pub azure: AzureScope,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Cluster name (default: the only cluster this machine knows).
    pub name: Option<String>,
    /// Every clusterctl cluster found on the provider(s) and in the records.
    #[arg(long, conflicts_with = "name")]
    pub all: bool,
    /// Every clusterctl cluster past its TTL, found on the provider(s) and in the records. A
    /// node that powered itself off at the TTL may still be billed (DigitalOcean bills
    /// powered-off droplets); this removes them.
    #[arg(long, conflicts_with_all = ["name", "all"])]
    pub expired: bool,
    /// How long the whole teardown (cleanup included) may take before reporting what is left
    /// (default 10m).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    #[command(flatten)]
    pub at: Locate,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Remove what is found; without it, `gc` only lists the expired clusters (exit 0).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Provider to search (repeatable; default: the configured one and those with records here).
    #[arg(long = "provider", value_name = "PROVIDER")]
    pub providers: Vec<String>,
    /// Region, zone or location to search (repeatable; default: the configured one).
    #[arg(long = "region", visible_alias = "location", value_name = "REGION")]
    pub regions: Vec<String>,
    /// GCP: the project to search (default: GOOGLE_CLOUD_PROJECT, else the credentials').
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    #[command(flatten)]
    pub kube: KubeScope,
    #[command(flatten)]
    pub azure: AzureScope,
    /// How long each cluster's teardown may take before reporting what is left (default 10m).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Cluster name (default: the only cluster this machine knows).
    pub name: Option<String>,
    #[command(flatten)]
    pub at: Locate,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this provider (default: the configured one and those with records here).
    #[arg(long, env = "CLUSTERCTL_PROVIDER")]
    pub provider: Option<String>,
    /// Region to search.
    #[arg(long, env = "CLUSTERCTL_REGION")]
    pub region: Option<String>,
    /// GCP: the project to search (default: GOOGLE_CLOUD_PROJECT, else the credentials').
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    #[command(flatten)]
    pub kube: KubeScope,
    #[command(flatten)]
    pub azure: AzureScope,
    /// Kubernetes: look in every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Cluster name (default: the only cluster this machine knows).
    pub name: Option<String>,
    /// Local port of the dashboard (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Local port of the scheduler (default: any free port).
    #[arg(long, default_value_t = 0)]
    pub scheduler_port: u16,
    #[command(flatten)]
    pub at: Locate,
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// Cluster name.
    pub name: String,
    /// The number of workers wanted.
    #[arg(long, short = 'w', allow_negative_numbers = true, value_name = "N")]
    pub workers: String,
    /// Deadline for new workers to join or old ones to retire.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

/// Which nodes' logs.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Scheduler,
    Worker,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Cluster name (default: the only cluster this machine knows).
    pub name: Option<String>,
    /// Only the scheduler or only the workers.
    #[arg(long, value_enum)]
    pub role: Option<RoleArg>,
    /// Lines per node.
    #[arg(long, default_value_t = 100)]
    pub tail: usize,
    #[command(flatten)]
    pub at: Locate,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub up: UpArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// Parse the process arguments; clap exits with code 2 on usage errors.
pub fn parse() -> (Cli, ArgMatches) {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    (cli, matches)
}

//! The cluster model: validated names, the spec that goes into `up`, and the nodes and
//! endpoints that come back from a provider.

use std::{collections::BTreeMap, fmt, str::FromStr, time::Duration, time::SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The platforms clusterctl knows. Not every kind is compiled into every build:
/// [`crate::error::Error::ProviderUnavailable`] says which ones a build has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Real Dask processes on this machine (the default; needs no account).
    Local,
    /// AWS EC2 virtual machines.
    Aws,
    /// AWS Fargate tasks on ECS.
    Fargate,
    /// Azure virtual machines.
    Azure,
    /// Google Compute Engine virtual machines.
    Gcp,
    /// DigitalOcean droplets.
    Digitalocean,
    /// Pods on a Kubernetes cluster.
    Kubernetes,
}

impl ProviderKind {
    /// Every provider clusterctl knows, in the order help texts list them.
    pub const ALL: [ProviderKind; 7] = [
        ProviderKind::Local,
        ProviderKind::Aws,
        ProviderKind::Fargate,
        ProviderKind::Azure,
        ProviderKind::Gcp,
        ProviderKind::Digitalocean,
        ProviderKind::Kubernetes,
    ];

    /// The name used on the command line, in config files and in records.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Aws => "aws",
            ProviderKind::Fargate => "fargate",
            ProviderKind::Azure => "azure",
            ProviderKind::Gcp => "gcp",
            ProviderKind::Digitalocean => "digitalocean",
            ProviderKind::Kubernetes => "kubernetes",
        }
    }

    /// Whether nodes of this provider run somewhere other than this machine, so that TLS is on
    /// by default.
    pub fn is_remote(self) -> bool {
        self != ProviderKind::Local
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let alias = match lower.as_str() {
            "ec2" => "aws",
            "ecs" => "fargate",
            "gce" | "google" => "gcp",
            "do" => "digitalocean",
            "k8s" => "kubernetes",
            other => other,
        };
        ProviderKind::ALL
            .into_iter()
            .find(|k| k.as_str() == alias)
            .ok_or_else(|| {
                Error::invalid(
                    "provider",
                    s,
                    "not a known provider",
                    Some(format!(
                        "known providers: {}",
                        ProviderKind::ALL.map(|k| k.as_str()).join(", ")
                    )),
                )
            })
    }
}

/// A cluster name: it goes into cloud resource names, tags, labels and DNS names, so it is a
/// DNS label of at most [`ClusterName::MAX_LEN`] characters: lowercase letters, digits and `-`,
/// starting with a letter and not ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClusterName(String);

impl ClusterName {
    /// Longest accepted name: leaves room for prefixes and suffixes in 63-character cloud names.
    pub const MAX_LEN: usize = 32;

    /// Validate a name.
    pub fn new(name: &str) -> Result<Self> {
        let refuse = |reason: &str| {
            Error::invalid(
                "cluster name",
                name,
                reason,
                Some(format!(
                    "use 1 to {} lowercase letters, digits or '-', starting with a letter, e.g. `ci-run-42`",
                    Self::MAX_LEN
                )),
            )
        };
        if name.is_empty() {
            return Err(refuse("it is empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(refuse(&format!(
                "it is longer than {} characters",
                Self::MAX_LEN
            )));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(refuse("it must start with a lowercase letter"));
        }
        if name.ends_with('-') {
            return Err(refuse("it must not end with '-'"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(refuse(&format!("character {bad:?} is not allowed")));
        }
        Ok(ClusterName(name.to_owned()))
    }

    /// A fresh name of the form `dask-<8 hex digits>`.
    pub fn generate() -> Self {
        ClusterName(format!("dask-{:08x}", rand_u32()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn rand_u32() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (nanos.subsec_nanos() ^ std::process::id().rotate_left(16)) ^ (nanos.as_secs() as u32)
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ClusterName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        ClusterName::new(&s)
    }
}

impl From<ClusterName> for String {
    fn from(n: ClusterName) -> String {
        n.0
    }
}

/// What a node does in the Dask cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The Dask scheduler (one per cluster).
    Scheduler,
    /// A Dask worker.
    Worker,
}

impl Role {
    /// The role as used in tags and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Scheduler => "scheduler",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "scheduler" => Ok(Role::Scheduler),
            "worker" => Ok(Role::Worker),
            _ => Err(Error::invalid(
                "role",
                s,
                "not a role",
                Some("use scheduler or worker".into()),
            )),
        }
    }
}

/// Size of a node. Each provider maps it to what it sells (an instance type, a Fargate cpu and
/// memory pair, pod requests, Dask threads and memory limit locally); `None` means the provider's
/// default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeSize {
    /// Virtual CPUs (Dask threads per worker).
    pub cpus: Option<u32>,
    /// Memory in MiB.
    pub memory_mib: Option<u64>,
}

/// How many workers must have joined for the cluster to count as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitWorkers {
    /// Every requested worker.
    All,
    /// At least this many.
    Count(u32),
    /// At least this percentage of the requested workers (rounded up).
    Percent(u32),
}

impl WaitWorkers {
    /// The number of workers to wait for, out of `requested`.
    pub fn resolve(self, requested: u32) -> u32 {
        match self {
            WaitWorkers::All => requested,
            WaitWorkers::Count(n) => n.min(requested),
            WaitWorkers::Percent(p) => (u64::from(requested) * u64::from(p)).div_ceil(100) as u32,
        }
    }
}

impl FromStr for WaitWorkers {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let refuse = |reason: &str| {
            Error::invalid(
                "--wait-workers",
                s,
                reason,
                Some("use `all`, a count like `3`, or a percentage like `80%`".into()),
            )
        };
        let t = s.trim();
        if t == "all" {
            return Ok(WaitWorkers::All);
        }
        if let Some(p) = t.strip_suffix('%') {
            let p: u32 = p.trim().parse().map_err(|_| refuse("not a percentage"))?;
            if p > 100 {
                return Err(refuse("a percentage above 100"));
            }
            return Ok(WaitWorkers::Percent(p));
        }
        t.parse()
            .map(WaitWorkers::Count)
            .map_err(|_| refuse("not a whole number"))
    }
}

impl fmt::Display for WaitWorkers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitWorkers::All => f.write_str("all"),
            WaitWorkers::Count(n) => write!(f, "{n}"),
            WaitWorkers::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Everything a provider needs to create a cluster. Built by the CLI from flags, environment
/// and config file; validated there, so providers may trust it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The cluster's name.
    pub name: ClusterName,
    /// Number of workers to start.
    pub workers: u32,
    /// The pinned Dask release (local runtime, and the default image tag).
    pub dask_version: String,
    /// Container image for providers that run containers.
    pub image: String,
    /// Scheduler size.
    pub scheduler_size: NodeSize,
    /// Worker size.
    pub worker_size: NodeSize,
    /// Extra environment for scheduler and workers (`--env`).
    pub env: BTreeMap<String, String>,
    /// Extra tags for every resource (`--tag`).
    pub tags: BTreeMap<String, String>,
    /// Who started the cluster (user name), recorded in the owner tag.
    pub owner: String,
    /// When `up` started, in seconds since the Unix epoch.
    pub created_at: u64,
    /// Hard maximum lifetime: the cluster ends itself after this.
    #[serde(with = "secs")]
    pub ttl: Duration,
    /// The scheduler shuts down after this long without work (zero: never).
    #[serde(with = "secs")]
    pub idle_timeout: Duration,
    /// Workers exit after this long without a scheduler.
    #[serde(with = "secs")]
    pub death_timeout: Duration,
    /// TLS between scheduler, workers and clients.
    pub tls: bool,
    /// The client reaches the scheduler on private addresses (same network).
    pub private: bool,
    /// This `up`'s own id (`<created_at>-<random>`, tag `clusterctl-launch`): which launch
    /// holds the cluster's name, so that a second `up` of the name never takes or removes
    /// what another made (see [`crate::provider::ClusterProvider::bootstrap`]).
    #[serde(default)]
    pub launch: String,
    /// Python requirements installed on every node before Dask starts (`--pip`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pip: Vec<String>,
}

impl ClusterSpec {
    /// The moment the cluster must be gone, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.created_at + self.ttl.as_secs()
    }
}

/// A new launch id for an `up` started at `created_at`: the start time, then 32 random bits.
pub fn new_launch_id(created_at: u64) -> String {
    format!("{created_at}-{:08x}", fastrand::u32(..))
}

/// When a launch started, from its id (`None` for an id clusterctl did not make).
pub fn launch_started(launch: &str) -> Option<u64> {
    let (secs, rest) = launch.split_once('-')?;
    (rest.len() == 8 && rest.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| secs.parse().ok())
        .flatten()
}

/// How long a launch holds its cluster's name before it has a node: an `up` creates its
/// scheduler seconds after claiming the name (two minutes at most while a new cloud identity
/// propagates), so a claim older than this with no node alive was left by an `up` that died.
pub const CLAIM_GRACE: Duration = Duration::from_secs(600);

/// Whether a name claimed by `holder` (its launch id, if any) is still held: its cluster has a
/// node alive, or its `up` started within [`CLAIM_GRACE`]. A claim that is not held is a
/// leftover that a new `up` of the name may take over.
pub fn claim_held(holder: Option<&str>, nodes_alive: bool, now: u64) -> bool {
    nodes_alive
        || holder
            .and_then(launch_started)
            .is_some_and(|t| now.saturating_sub(t) < CLAIM_GRACE.as_secs())
}

/// Longest `--ttl`: a week. The TTL is the promise that a forgotten cluster ends by itself; a
/// longer one is as good as none.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest `--timeout` of `up`, `wait`, `run`, `scale` and `down`: a day.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest `--idle-timeout`: the longest TTL (the cluster ends then anyway).
pub const MAX_IDLE_TIMEOUT: Duration = MAX_TTL;
/// Largest memory of one node, in MiB: 24 TiB, the largest machine a cloud sells.
pub const MAX_MEMORY_MIB: u64 = 24 * 1024 * 1024;

/// Refuse a duration `value` (given as `given` for `what`) longer than `max`, naming the value,
/// the maximum and the fix.
pub fn check_duration_max(
    what: &'static str,
    given: &str,
    value: Duration,
    max: Duration,
) -> Result<()> {
    if value <= max {
        return Ok(());
    }
    let max_text = humantime::format_duration(max).to_string();
    let why = if what == "--ttl" {
        ": a cluster that may live longer has no self-destruct guarantee worth the name"
    } else {
        ""
    };
    Err(Error::invalid(
        what,
        given,
        format!("longer than the maximum of {max_text}{why}"),
        Some(format!("use at most `{what} {max_text}`")),
    ))
}

/// Refuse a memory size of `mib` MiB (given as `given` for `what`) above [`MAX_MEMORY_MIB`].
pub fn check_memory_max(what: &'static str, given: &str, mib: u64) -> Result<()> {
    if mib <= MAX_MEMORY_MIB {
        return Ok(());
    }
    Err(Error::invalid(
        what,
        given,
        format!(
            "more than the maximum of {}TiB per node",
            MAX_MEMORY_MIB / (1024 * 1024)
        ),
        Some("use a size like `8GiB`; no machine has more than 24TiB".into()),
    ))
}

/// Serde helper: a [`Duration`] as whole seconds.
pub mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Serialize as seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    /// Deserialize from seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Lifecycle state of one node, mapped from the platform's own states by each provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum NodeState {
    /// Requested, not running yet.
    Pending,
    /// Running (the Dask process may still be starting).
    Running,
    /// Being stopped or deleted.
    Stopping,
    /// Gone, or about to be.
    Terminated,
    /// Failed to start or crashed; the reason as the platform tells it.
    Failed(String),
    /// Cannot start for want of capacity: the platform has nowhere to put it (a pod that no node
    /// can take, with no autoscaler adding one); the reason as the platform tells it.
    #[serde(rename = "no_capacity")]
    NoCapacity(String),
}

impl NodeState {
    /// Running or on its way there.
    pub fn is_alive(&self) -> bool {
        matches!(self, NodeState::Pending | NodeState::Running)
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeState::Pending => f.pad("pending"),
            NodeState::Running => f.pad("running"),
            NodeState::Stopping => f.pad("stopping"),
            NodeState::Terminated => f.pad("terminated"),
            NodeState::Failed(r) => f.pad(&format!("failed ({r})")),
            NodeState::NoCapacity(r) => f.pad(&format!("no capacity ({r})")),
        }
    }
}

/// One machine, task, pod or process of a cluster, as the provider reports it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The platform's id (instance id, task ARN, pod name, process id).
    pub id: String,
    /// The Dask name of the node (worker `--name`), unique in the cluster.
    pub name: String,
    /// Scheduler or worker.
    pub role: Role,
    /// Current state.
    #[serde(flatten)]
    pub state: NodeState,
    /// Address inside the cluster's network, once known.
    pub private_ip: Option<String>,
    /// Address reachable from the internet, if any.
    pub public_ip: Option<String>,
    /// Creation time (seconds since the Unix epoch), if the platform tells.
    pub created_at: Option<u64>,
    /// The tags or labels found on the node.
    pub tags: BTreeMap<String, String>,
}

/// How a client reaches a ready cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// The scheduler address for Dask clients, e.g. `tls://203.0.113.7:8786`.
    pub scheduler_address: String,
    /// The dashboard link, e.g. `http://203.0.113.7:8787/status`.
    pub dashboard_url: String,
}

impl Endpoints {
    /// The endpoints of a scheduler reached at `host` on the default ports, speaking
    /// `protocol` (`tls` or `tcp`).
    pub fn on_host(protocol: &str, host: &str) -> Self {
        Endpoints {
            scheduler_address: crate::bootstrap::scheduler_address(protocol, host),
            dashboard_url: format!("http://{host}:{}/status", crate::bootstrap::DASHBOARD_PORT),
        }
    }

    /// The dashboard's base URL (without `/status`), where `/health` and `/json/*` live.
    pub fn dashboard_base(&self) -> &str {
        self.dashboard_url
            .strip_suffix("/status")
            .unwrap_or(&self.dashboard_url)
    }
}

/// A cluster as found on a provider by its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// The cluster's name.
    pub name: String,
    /// Nodes found, in any state.
    pub nodes: Vec<Node>,
    /// Expiry from the tags (seconds since the Unix epoch), if present.
    pub expires_at: Option<u64>,
    /// Owner from the tags, if present.
    pub owner: Option<String>,
    /// The newest launch id found on its resources ([`ClusterSpec::launch`]), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<String>,
    /// Whether the resource claiming its name was found (see
    /// [`crate::provider::ClusterProvider::list_clusters`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claimed: bool,
}

impl ClusterSummary {
    /// Whether the cluster is past its expiry at `now` and may be removed by `gc`: its
    /// resources' newest expiry passed, and it was not taken over lately (a launch that started
    /// after that expiry, within [`CLAIM_GRACE`]: an `up` that took over an expired leftover,
    /// whose own expiry is not on the leftover's tags yet). A cluster without an expiry tag is
    /// never judged expired.
    pub fn is_expired(&self, now: u64) -> bool {
        let Some(expires) = self.expires_at else {
            return false;
        };
        let taken_over_lately = self
            .launch
            .as_deref()
            .and_then(launch_started)
            .is_some_and(|t| t >= expires && now.saturating_sub(t) < CLAIM_GRACE.as_secs());
        expires <= now && !taken_over_lately
    }

    /// Whether anything of it is still there: its claim, or a node not terminated. A cluster
    /// known only from terminated nodes the platform still lists (EC2 for an hour, ECS's stopped
    /// tasks) is gone.
    pub fn holds_anything(&self) -> bool {
        self.claimed || self.nodes.iter().any(|n| n.state != NodeState::Terminated)
    }

    /// Fold the tags of one of its resources into the summary: the newest expiry and launch
    /// win (a leftover taken over by a later `up` keeps older resources beside newer ones).
    fn absorb(&mut self, tags: &BTreeMap<String, String>) {
        if let Some(t) = tags.get(crate::tags::EXPIRES).and_then(|v| v.parse().ok()) {
            self.expires_at = Some(self.expires_at.map_or(t, |e: u64| e.max(t)));
        }
        if self.owner.is_none() {
            self.owner = tags.get(crate::tags::OWNER).cloned();
        }
        if let Some(l) = tags.get(crate::tags::LAUNCH) {
            let newer = self.launch.as_deref().is_none_or(|cur| {
                launch_started(l).unwrap_or(0) > launch_started(cur).unwrap_or(0)
            });
            if newer {
                self.launch = Some(l.clone());
            }
        }
    }

    /// Live workers.
    pub fn workers_alive(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Worker && n.state.is_alive())
            .count()
    }

    /// The live scheduler node, if any.
    pub fn scheduler(&self) -> Option<&Node> {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Scheduler && n.state.is_alive())
    }
}

/// Group nodes by their cluster tag into summaries, sorted by name.
pub fn summarize(nodes: Vec<Node>) -> Vec<ClusterSummary> {
    summarize_with_claims(nodes, Vec::new())
}

/// The clusters of `nodes` and of `claims`: the tags of supporting resources that hold a
/// cluster's name (a security group, a root ConfigMap, a resource group, a firewall rule), so
/// that a cluster with no node left (an `up` that died before its first node, a teardown cut
/// off after its nodes were gone) is found too, with no nodes. Resources without a
/// [`crate::tags::CLUSTER`] tag are skipped.
pub fn summarize_with_claims(
    nodes: Vec<Node>,
    claims: Vec<BTreeMap<String, String>>,
) -> Vec<ClusterSummary> {
    fn entry<'a>(
        by_name: &'a mut BTreeMap<String, ClusterSummary>,
        name: &str,
    ) -> &'a mut ClusterSummary {
        by_name
            .entry(name.to_string())
            .or_insert_with(|| ClusterSummary {
                name: name.to_string(),
                nodes: Vec::new(),
                expires_at: None,
                owner: None,
                launch: None,
                claimed: false,
            })
    }
    let mut by_name: BTreeMap<String, ClusterSummary> = BTreeMap::new();
    for node in nodes {
        let Some(name) = node.tags.get(crate::tags::CLUSTER).cloned() else {
            continue;
        };
        let e = entry(&mut by_name, &name);
        e.absorb(&node.tags);
        e.nodes.push(node);
    }
    for tags in claims {
        if let Some(name) = tags.get(crate::tags::CLUSTER) {
            let e = entry(&mut by_name, name);
            e.absorb(&tags);
            e.claimed = true;
        }
    }
    by_name.into_values().collect()
}

/// Validate a CIDR like `203.0.113.7/32`.
pub fn validate_cidr(cidr: &str) -> Result<()> {
    let refuse = |why: &str| {
        Error::invalid(
            "--allow-cidr",
            cidr,
            why,
            Some("use an IPv4 CIDR like `203.0.113.7/32`".into()),
        )
    };
    let (ip, bits) = cidr
        .split_once('/')
        .ok_or_else(|| refuse("it has no prefix length"))?;
    ip.parse::<std::net::Ipv4Addr>()
        .map_err(|_| refuse("not an IPv4 address"))?;
    let bits: u8 = bits.parse().map_err(|_| refuse("not a prefix length"))?;
    if bits > 32 {
        return Err(refuse("prefix longer than 32"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;

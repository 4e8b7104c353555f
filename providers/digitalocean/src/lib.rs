//! The `digitalocean` provider: a Dask cluster on DigitalOcean droplets, through API v2.
//!
//! Each node is a droplet (plain Ubuntu; Docker installed at boot) that runs the rendered
//! cloud-init (`clusterctl_core::bootstrap`): the pinned Dask image with host networking, TLS
//! material, a TTL power-off, and power-off when Dask exits. DigitalOcean has no
//! terminate-on-shutdown: a powered-off droplet is still billed until it is deleted, which
//! `down` (or `down --expired`) does. Every droplet carries the cluster's tags (`tags.rs`), a
//! per-cluster cloud firewall applies by the cluster tag, and everything is found by tags; the
//! name's claim, which `gc` finds a half-made cluster by, is a throwaway SSH key (`claim.rs`).
//!
//! Calls go through `clusterctl_core::rest` (retries of 429 with `Retry-After` or the
//! `ratelimit-*` headers, of 5xx on repeatable calls, with jittered backoff and a deadline);
//! every wait is bounded (`clusterctl_core::wait`).

mod api;
mod claim;
mod droplets;
pub mod errors;
mod firewall;
mod keys;
mod launch;
pub mod options;
mod plan;
pub mod tags;
mod teardown;
#[cfg(test)]
mod tests;
pub mod token;

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use clusterctl_core::{
    Error, Result,
    bootstrap::{KeyDelivery, VmOptions},
    health::Dashboard,
    model::{
        ClusterName, ClusterSpec, ClusterSummary, Endpoints, Node, NodeState, ProviderKind, Role,
        summarize_with_claims,
    },
    provider::{ClusterProvider, LaunchContext, NodeLog, Plan, SchedulerLaunch, WorkerBatch},
    rest::{RestClient, RestConfig, RestError},
    tags as core_tags,
};
use futures_util::{StreamExt as _, stream};
pub use options::DigitalOceanOptions;
use tokio::sync::{Mutex, OnceCell};

use crate::{
    api::{Api, Ref},
    droplets::{address, nodes_of},
    plan::Resolved,
};

/// Create requests in flight at once (each names up to ten droplets).
const CREATES_IN_FLIGHT: usize = 3;
/// Deletes by id in flight at once.
const DELETES_IN_FLIGHT: usize = 5;
/// How long a droplet may take to show the address asked for.
const ADDRESS_TIMEOUT: Duration = Duration::from_secs(300);

/// The DigitalOcean provider.
#[derive(Debug)]
pub struct DigitalOceanProvider {
    api: Api,
    api_url: String,
    options: DigitalOceanOptions,
    resolved: OnceCell<Resolved>,
    /// What `plan` learnt of the account: identity and droplet limit.
    account: std::sync::OnceLock<plan::AccountFacts>,
    /// The throwaway SSH key's id, once created or found.
    key: Mutex<Option<u64>>,
    /// The firewall this launch created (not one another launch of the name made).
    created_firewall: std::sync::Mutex<Option<String>>,
    /// Tags seen on droplets of a cluster in this process (listed or created), so that `cleanup`
    /// can also remove the user's `--tag`s once nothing uses them (best effort: a `down` that
    /// finds no droplet any more leaves them).
    seen_tags: std::sync::Mutex<BTreeSet<String>>,
}

impl DigitalOceanProvider {
    /// Build from the environment: the token (`DIGITALOCEAN_TOKEN`,
    /// `DIGITALOCEAN_ACCESS_TOKEN`, or doctl's config), the API URL (`options.api_url`, else
    /// `DIGITALOCEAN_API_URL`, else the real API), `CLUSTERCTL_EXTRA_CA_FILE` and
    /// `CLUSTERCTL_API_LOG`. Checks the options' formats; what `up` needs besides is checked
    /// by `plan`.
    pub fn from_env(options: DigitalOceanOptions) -> Result<Self> {
        Self::from_env_with(options, |k| std::env::var(k).ok())
    }

    /// [`Self::from_env`] reading variables through `env` (tests).
    pub fn from_env_with(
        options: DigitalOceanOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        options.validate_formats()?;
        let token = token::find(&env)?;
        let api_url = match &options.api_url {
            Some(u) => u.clone(),
            None => match env(options::API_URL_ENV).filter(|u| !u.trim().is_empty()) {
                Some(u) => {
                    clusterctl_core::rest::parse_base_url(&u).map_err(|reason| {
                        Error::invalid(
                            options::API_URL_ENV,
                            u.clone(),
                            reason,
                            Some(format!(
                                "use an https URL like {}",
                                options::DEFAULT_API_URL
                            )),
                        )
                    })?;
                    u
                }
                None => options::DEFAULT_API_URL.to_string(),
            },
        };
        let rest = RestClient::new(RestConfig::new("digitalocean", &api_url), Some(token))
            .map_err(|e| match e {
                RestError::Config { message, .. } => Error::invalid(
                    "HTTPS client setting",
                    api_url.clone(),
                    message,
                    Some(format!(
                        "{} must name a readable PEM bundle of CA certificates (added to the system's)",
                        clusterctl_core::rest::EXTRA_CA_ENV
                    )),
                ),
                other => errors::map(other, errors::Context::default()),
            })?
            .with_rate_limit_hook(|h| api::rate_limit_wait(h, SystemTime::now()));
        Ok(DigitalOceanProvider {
            api: Api::new(rest),
            api_url,
            options,
            resolved: OnceCell::new(),
            account: std::sync::OnceLock::new(),
            key: Mutex::new(None),
            created_firewall: std::sync::Mutex::new(None),
            seen_tags: std::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// The launches other than this one whose droplets of the cluster are alive (`None`: a
    /// droplet without a launch tag, made before launches were tagged).
    async fn other_launches(&self, spec: &ClusterSpec) -> Result<BTreeSet<Option<String>>> {
        let droplets = self
            .api
            .droplets_by_tag(&tags::cluster_tag(&spec.name))
            .await
            .map_err(|e| self.err(e))?;
        Ok(droplets
            .iter()
            .filter(|d| droplets::map_status(&d.status).is_alive())
            .map(|d| tags::decode_all(&d.tags).get(core_tags::LAUNCH).cloned())
            .filter(|l| l.as_deref() != Some(spec.launch.as_str()))
            .collect())
    }

    fn name_taken(spec: &ClusterSpec, holder: Option<&str>) -> Error {
        Error::NameTaken {
            name: spec.name.to_string(),
            provider: ProviderKind::Digitalocean,
            holder: match holder {
                Some(l) => format!(
                    "droplets tagged {} of launch {l} are running",
                    tags::cluster_tag(&spec.name)
                ),
                None => format!(
                    "another launch holds its firewall {} (or runs droplets tagged {})",
                    firewall::firewall_name(&spec.name),
                    tags::cluster_tag(&spec.name)
                ),
            },
        }
    }

    /// DigitalOcean has no resource whose name only one `up` can create, so two `up`s of one
    /// name settle it once each has its scheduler droplet (by then, concurrent creations show
    /// in listings): the launch that started first holds the name. The other removes what it
    /// made itself (its droplet, throwaway key and firewall) and fails with `NameTaken`.
    async fn settle_claim(&self, spec: &ClusterSpec, own_droplet: u64) -> Result<()> {
        let others = self.other_launches(spec).await?;
        // Launch ids start with the `up`'s start time (fixed width), so they order by it; an
        // untagged droplet is older than any launch.
        let Some(first) = others
            .into_iter()
            .filter(|l| l.as_deref().is_none_or(|l| l < spec.launch.as_str()))
            .min()
        else {
            return Ok(());
        };
        let mut left = Vec::new();
        if let Err(e) = self.api.delete_droplet(own_droplet).await {
            left.push(format!(
                "droplet {own_droplet} ({e}; `doctl compute droplet delete {own_droplet}`)"
            ));
        }
        left.extend(self.release_claim().await);
        Err(Self::with_left(
            Self::name_taken(spec, first.as_deref()),
            &left,
        ))
    }

    /// Remove what this launch made of the name's supporting resources after losing the name
    /// to another launch: its firewall, then its claim key (last, like every cleanup). Returns
    /// what could not be removed.
    async fn release_claim(&self) -> Vec<String> {
        let mut left = Vec::new();
        let firewall = self
            .created_firewall
            .lock()
            .map(|mut f| f.take())
            .unwrap_or_default();
        if let Some(id) = firewall
            && let Err(e) = self.api.delete_firewall(&id).await
        {
            left.push(format!("firewall {id} ({e})"));
        }
        if let Some(id) = self.key.lock().await.take()
            && let Err(e) = self.api.delete_key(id).await
        {
            left.push(format!("SSH key {id} ({e})"));
        }
        left
    }

    /// `err` (a `NameTaken`) with what this launch made and could not remove: never hidden
    /// (it is this launch's, not the winner's).
    fn with_left(mut err: Error, left: &[String]) -> Error {
        if let Error::NameTaken { holder, .. } = &mut err
            && !left.is_empty()
        {
            holder.push_str(&format!(
                "; this launch's own resources could not all be removed: {}",
                left.join(", ")
            ));
        }
        err
    }

    /// The cluster's tag, then its firewall `clusterctl-NAME` (firewalls may only name existing
    /// tags; droplet creation makes its own). Firewall names are unique, so this also settles two
    /// launches that both passed the claim's check at once: a firewall of the name younger than
    /// the grace, or a 409 on its creation, is another launch's (`NameTaken`). An old one (a
    /// leftover) is reused.
    async fn tag_and_firewall(&self, spec: &ClusterSpec) -> Result<()> {
        let cluster_tag = tags::cluster_tag(&spec.name);
        self.api
            .create_tag(&cluster_tag)
            .await
            .map_err(|e| self.err(e))?;
        let name = firewall::firewall_name(&spec.name);
        let existing = self
            .api
            .firewalls()
            .await
            .map_err(|e| self.err(e))?
            .into_iter()
            .find(|f| f.name == name && f.tags.iter().flatten().any(|t| *t == cluster_tag));
        if let Some(f) = &existing {
            // Firewalls carry no tags of their own: its `created_at` tells a leftover from
            // another launch's, whose droplets a listing may not show yet.
            let age = f
                .created_at
                .as_deref()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            if age.is_none_or(|a| a < clusterctl_core::model::CLAIM_GRACE) {
                return Err(Self::name_taken(spec, None));
            }
            return Ok(());
        }
        let allowed = self.allowed_sources().await?;
        let body = firewall::rules(&spec.name, &cluster_tag, &allowed);
        // Of two launches that both found none a moment ago, the second gets 409 and stops
        // here, having made nothing but its claim (which the caller removes).
        let created = match self.api.create_firewall(&body).await {
            Ok(f) => f,
            Err(RestError::Status { status, .. }) if status.as_u16() == 409 => {
                let holder = self.other_launches(spec).await?.into_iter().next();
                return Err(Self::name_taken(spec, holder.flatten().as_deref()));
            }
            Err(e) => return Err(self.err(e)),
        };
        if let Ok(mut f) = self.created_firewall.lock() {
            *f = Some(created.id);
        }
        Ok(())
    }

    /// The options it was built with.
    pub fn options(&self) -> &DigitalOceanOptions {
        &self.options
    }

    /// Map an API error with what this provider knows (region, droplet limit, identity).
    fn err(&self, e: RestError) -> Error {
        let account = self.account.get();
        errors::map(
            e,
            errors::Context {
                region: self.options.region.as_deref(),
                droplet_limit: account.and_then(|a| a.droplet_limit),
                identity: account.and_then(|a| a.identity.as_deref()),
            },
        )
    }

    fn vm_options(spec: &ClusterSpec) -> VmOptions {
        // Ubuntu has no Docker; the run script installs it when `docker` is missing, so an
        // image that has it (a custom one) starts at once.
        VmOptions {
            image: spec.image.clone(),
            install_docker: true,
            gpu: false,
            // DigitalOcean's API never returns `user_data`: the keys may travel inside it.
            keys: KeyDelivery::InUserData,
        }
    }

    /// The droplet tags of a node of `role`. Workers are created ten to a request, which gives
    /// them one tag set: no node tag (their names come from their droplet names).
    fn droplet_tags(spec: &ClusterSpec, role: Role) -> Result<Vec<String>> {
        let pairs = match role {
            Role::Scheduler => core_tags::node_tags(spec, role, role.as_str()),
            Role::Worker => {
                let mut t = core_tags::cluster_tags(spec);
                t.insert(core_tags::ROLE.into(), role.as_str().into());
                t
            }
        };
        tags::encode_all(&pairs)
    }

    /// The SSH keys for a droplet: the user's, else the cluster's claim key (found, or
    /// created when missing, e.g. by a `scale` after someone deleted it).
    async fn ssh_keys(&self, spec: &ClusterSpec) -> Result<Vec<Ref>> {
        if !self.options.ssh_keys.is_empty() {
            return Ok(self
                .options
                .ssh_keys
                .iter()
                .map(|k| Ref::parse(k))
                .collect());
        }
        let mut cached = self.key.lock().await;
        if let Some(id) = *cached {
            return Ok(vec![Ref::Id(id)]);
        }
        let keys = self.api.keys().await.map_err(|e| self.err(e))?;
        let found = match claim::judge(&keys, spec, clusterctl_core::model::now_epoch()) {
            claim::Found::Mine(id) => Some(id),
            _ => keys
                .iter()
                .find(|k| claim::is_cluster_key(k, &spec.name))
                .map(|k| k.id),
        };
        let id = match found {
            Some(id) => id,
            None => self.create_key(spec).await?,
        };
        *cached = Some(id);
        Ok(vec![Ref::Id(id)])
    }

    fn region(&self) -> Result<&str> {
        self.options.region.as_deref().ok_or_else(|| {
            Error::invalid(
                "--region",
                "",
                "DigitalOcean needs a region to create droplets in",
                Some("pass `--region nyc3`".into()),
            )
        })
    }

    fn image(&self) -> &str {
        self.options
            .image
            .as_deref()
            .unwrap_or(options::DEFAULT_IMAGE)
    }

    /// Remember tags put on or seen on a cluster's droplets.
    fn saw_tags<'a>(&self, tags: impl IntoIterator<Item = &'a String>) {
        if let Ok(mut seen) = self.seen_tags.lock() {
            seen.extend(tags.into_iter().cloned());
        }
    }
}

#[async_trait]
impl ClusterProvider for DigitalOceanProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Digitalocean
    }

    fn location(&self) -> String {
        self.options
            .region
            .clone()
            .unwrap_or_else(|| "all regions".into())
    }

    fn pinned_options(&self, given: &serde_json::Value) -> serde_json::Value {
        // Later commands talk to the API `up` talked to, whatever DIGITALOCEAN_API_URL says
        // then.
        let mut pinned = given.clone();
        if pinned.is_null() {
            pinned = serde_json::json!({});
        }
        if let Some(o) = pinned.as_object_mut() {
            o.insert("api_url".into(), self.api_url.clone().into());
        }
        pinned
    }

    async fn plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        self.make_plan(ctx).await
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        let spec = ctx.spec;
        // The claim first (`claim.rs`): the resource `gc` finds a half-made cluster by.
        self.claim(spec).await?;
        match self.tag_and_firewall(spec).await {
            // Another launch holds the name: remove this launch's claim (it created nothing
            // else), touch nothing of the other's.
            Err(e @ Error::NameTaken { .. }) => {
                let left = self.release_claim().await;
                Err(Self::with_left(e, &left))
            }
            other => other,
        }
    }

    async fn launch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        self.start_scheduler(ctx).await
    }

    async fn launch_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        self.start_workers(ctx, scheduler_address, batch).await
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterSummary>> {
        // A cluster's claim key lives from the first request of `up` until the last of `down`.
        let (nodes, claims) = tokio::try_join!(self.list_nodes(None), self.claims())?;
        Ok(summarize_with_claims(nodes, claims))
    }

    async fn list_nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        let tag = cluster.map_or_else(tags::managed_tag, tags::cluster_tag);
        let droplets = self
            .api
            .droplets_by_tag(&tag)
            .await
            .map_err(|e| self.err(e))?;
        if cluster.is_some() {
            self.saw_tags(droplets.iter().flat_map(|d| &d.tags));
        }
        Ok(nodes_of(&droplets))
    }

    async fn endpoints(&self, scheduler: &Node, private: bool) -> Result<Endpoints> {
        let kind = if private { "private" } else { "public" };
        let known = if private {
            scheduler.private_ip.clone()
        } else {
            scheduler.public_ip.clone()
        };
        let host = match known {
            Some(h) => h,
            None => {
                let id: u64 = scheduler.id.parse().map_err(|_| Error::Provider {
                    provider: ProviderKind::Digitalocean,
                    operation: "endpoints".into(),
                    message: format!("`{}` is not a droplet id", scheduler.id),
                })?;
                // `active` can come before the addresses appear: wait for the one needed.
                self.wait_for_droplet(
                    &format!("waiting for the scheduler droplet's {kind} address"),
                    id,
                    |d| address(d, kind),
                )
                .await?
            }
        };
        Ok(Endpoints::on_host(
            core_tags::protocol(&scheduler.tags),
            &host,
        ))
    }

    async fn terminate_nodes(&self, cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        if nodes.iter().any(|n| n.role == Role::Scheduler) {
            // The whole cluster: one server-side delete by tag, which also catches droplets a
            // listing has not shown yet.
            return self
                .api
                .delete_droplets_by_tag(&tags::cluster_tag(cluster))
                .await
                .map_err(|e| self.err(e));
        }
        let ids: Vec<u64> = nodes
            .iter()
            .map(|n| {
                n.id.parse().map_err(|_| Error::Provider {
                    provider: ProviderKind::Digitalocean,
                    operation: "terminate".into(),
                    message: format!("`{}` is not a droplet id", n.id),
                })
            })
            .collect::<Result<_>>()?;
        clusterctl_core::concurrent::each(ids, DELETES_IN_FLIGHT, |id| async move {
            self.api.delete_droplet(id).await.map_err(|e| self.err(e))
        })
        .await
    }

    async fn cleanup(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        self.teardown(cluster).await
    }

    async fn logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>> {
        let max_nodes = max_nodes.unwrap_or(usize::MAX);
        let nodes = self.list_nodes(Some(cluster)).await?;
        let scheduler = nodes
            .iter()
            .find(|n| n.role == Role::Scheduler && n.state == NodeState::Running);
        let host = scheduler.and_then(|s| {
            if self.options.private {
                s.private_ip.clone()
            } else {
                s.public_ip.clone().or_else(|| s.private_ip.clone())
            }
        });
        let Some(host) = host else {
            let why = match nodes.iter().find(|n| n.role == Role::Scheduler) {
                Some(s) => match &s.state {
                    NodeState::Failed(reason) => format!("its scheduler droplet is {reason}"),
                    other => format!("its scheduler droplet is {other}"),
                },
                None => "it has no scheduler droplet".into(),
            };
            return Err(Error::Unsupported {
                provider: ProviderKind::Digitalocean,
                what: format!(
                    "reading the logs of cluster `{cluster}` now: {why}, and DigitalOcean keeps no console output of droplets"
                ),
                hint: Some(
                    "clusterctl reads logs from the running scheduler's dashboard; with your own `--ssh-key` on the droplets, \
                     `ssh root@<droplet address> cat /var/log/clusterctl-dask.log` shows a node's log"
                        .into(),
                ),
            });
        };
        let endpoints = Endpoints::on_host("tcp", &host);
        let dash = Dashboard::new(endpoints.dashboard_base(), Duration::from_secs(5));
        let mut logs = Vec::new();
        if role != Some(Role::Worker) && max_nodes > 0 {
            let lines = dash.scheduler_log().await?;
            logs.push(NodeLog {
                node: "scheduler".into(),
                role: Role::Scheduler,
                lines: tail_of(lines, tail),
            });
        }
        if role != Some(Role::Scheduler) {
            let view = dash.view().await?;
            let wanted = max_nodes.saturating_sub(logs.len());
            let fetched: Vec<(String, Result<Vec<String>>)> =
                stream::iter(view.workers.into_iter().take(wanted))
                    .map(|w| {
                        let dash = &dash;
                        let nodes = &nodes;
                        async move {
                            let name = nodes
                                .iter()
                                .find(|n| {
                                    n.role == Role::Worker
                                        && n.private_ip.as_deref() == Some(w.host())
                                })
                                .map_or_else(|| w.name.clone(), |n| n.name.clone());
                            (name, dash.worker_log(&w.address).await)
                        }
                    })
                    .buffer_unordered(8)
                    .collect()
                    .await;
            let mut fetched: Vec<(String, Vec<String>)> = fetched
                .into_iter()
                .filter_map(|(n, r)| r.ok().map(|l| (n, l)))
                .collect();
            fetched.sort_by_key(|(n, _)| {
                (
                    clusterctl_core::lifecycle::worker_index(n).unwrap_or(u32::MAX),
                    n.clone(),
                )
            });
            logs.extend(fetched.into_iter().map(|(node, lines)| NodeLog {
                node,
                role: Role::Worker,
                lines: tail_of(lines, tail),
            }));
        }
        Ok(logs)
    }
}

fn tail_of(mut lines: Vec<String>, n: usize) -> Vec<String> {
    let cut = lines.len().saturating_sub(n);
    lines.drain(..cut);
    lines
}

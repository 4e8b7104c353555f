//! The `gcp` provider: a Dask cluster on Google Compute Engine instances, through a small typed
//! Compute/IAM/Secret Manager client over core's REST client.
//!
//! Each node is an instance (Container-Optimized OS: Docker ready, cloud-init reads the
//! metadata `user-data`, which is the core's cloud-init: the pinned Dask image with host
//! networking, a TTL power-off, power-off when Dask exits). Metadata is readable by any Compute
//! Viewer, so the nodes' TLS keys are not in it: they are Secret Manager secrets readable only
//! by the cluster's own service account (or the user's `--service-account`), attached to its
//! instances, and fetched at boot (`access.rs`). Compute Engine itself deletes every instance at the cluster's TTL
//! (`scheduling.maxRunDuration` + `instanceTerminationAction: DELETE`). The name is claimed by
//! inserting the firewall rule `clusterctl-NAME` (`claim.rs`); every other resource carries the
//! cluster's tags as labels (`labels.rs`), and everything is found by labels.
//!
//! The scheduler's internal address is chosen before it exists (a free-looking address of the
//! subnet as `networkIP`), so the workers' single `bulkInsert` (`minCount` = count, all or
//! nothing) starts at once while the scheduler's insert is awaited in the background; if
//! another resource took that address, the scheduler moves and the workers are replaced
//! (`launch.rs`). Stockouts move on to the next zone, machine type, or from Spot to standard;
//! quota refusals are `QuotaExceeded`.

mod access;
mod api;
mod claim;
pub mod credential;
pub mod errors;
mod federation;
mod instances;
pub mod labels;
mod launch;
pub mod options;
mod plan;
mod teardown;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use clusterctl_core::{
    Error, Result,
    bootstrap::{
        self, BootFile, BootLayout, KeyDelivery, SecretStore, VmOptions, scheduler_intent,
        secret_files, worker_intent,
    },
    model::{
        ClusterName, ClusterSpec, ClusterSummary, Endpoints, Node, NodeState, ProviderKind, Role,
        now_epoch, summarize_with_claims,
    },
    provider::{
        ClusterProvider, LaunchContext, NodeLog, Plan, SchedulerLaunch, WorkerBatch, last_lines,
    },
    rest::{RestClient, RestConfig},
    tags as core_tags,
};
use futures_util::{StreamExt as _, stream};
pub use options::GcpOptions;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::{sync::Mutex, task::JoinHandle};

pub use launch::pick_address;

use crate::{
    api::{Api, Google, Instance, request_id},
    credential::Credential,
    errors::GcpError,
    launch::{MapOkUnit as _, insert_instance},
};

/// Addresses tried for the scheduler after the first was taken by another resource.
const SCHEDULER_IP_ATTEMPTS: usize = 4;
/// Instance deletions (each with its operation wait) in flight at once.
const DELETES_IN_FLIGHT: usize = 16;
/// How long a node keeps trying to read its keys at boot.
const KEY_FETCH_DEADLINE: u64 = 600;

/// The Compute Engine provider.
#[derive(Debug)]
pub struct GcpProvider {
    google: Google,
    secrets_url: String,
    options: GcpOptions,
    /// The scheduler's insert and its operation, awaited by `launch_workers`.
    scheduler_op: Mutex<Option<JoinHandle<std::result::Result<(), GcpError>>>>,
    /// The scheduler's internal address when a collision moved it from the one first chosen.
    moved_scheduler: Mutex<Option<String>>,
}

fn client(service: &'static str, url: &str) -> Result<RestClient> {
    RestClient::new(RestConfig::new(service, url), None).map_err(|e| {
        Error::invalid(
            "HTTPS client setting",
            url.to_string(),
            e.to_string(),
            Some(format!(
                "{} must name a readable PEM bundle of CA certificates (added to the system's)",
                clusterctl_core::rest::EXTRA_CA_ENV
            )),
        )
    })
}

impl GcpProvider {
    /// Build from the environment: Application Default Credentials, the project (`options`,
    /// `GOOGLE_CLOUD_PROJECT`/`CLOUDSDK_CORE_PROJECT`/`GCLOUD_PROJECT`, gcloud's active
    /// configuration, the credentials' project), the endpoint
    /// (`options`, `CLUSTERCTL_GCP_ENDPOINT`, or Google's), `CLUSTERCTL_EXTRA_CA_FILE`,
    /// `CLUSTERCTL_API_LOG`. Checks the options' formats first.
    pub async fn from_env(options: GcpOptions) -> Result<Self> {
        options.validate_formats()?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let endpoint = match (&options.endpoint, env(options::ENDPOINT_ENV)) {
            (Some(e), _) => Some(e.clone()),
            (None, Some(e)) => {
                clusterctl_core::rest::parse_base_url(&e).map_err(|m| {
                    Error::invalid(
                        options::ENDPOINT_ENV,
                        e.clone(),
                        m,
                        Some(format!("e.g. {}", options::COMPUTE_ENDPOINT)),
                    )
                })?;
                Some(e)
            }
            (None, None) => None,
        };
        let map = |e: GcpError| errors::map(e, errors::Context::default());
        let cred = Credential::resolve(&env).await.map_err(map)?;
        let project = options
            .project
            .clone()
            .or_else(|| options::PROJECT_ENVS.iter().find_map(|k| env(k)))
            .or_else(|| options::gcloud_project(&env))
            .or_else(|| cred.project().map(str::to_string))
            .ok_or_else(|| {
                Error::invalid(
                    "--project",
                    "",
                    "no Google Cloud project given",
                    Some("pass `--project <id>`, set GOOGLE_CLOUD_PROJECT, or `gcloud config set project <id>`".into()),
                )
            })?;
        options::validate_project(&project)?;
        let (compute, iam, secrets) = match &endpoint {
            Some(e) => (e.clone(), e.clone(), e.clone()),
            None => (
                options::COMPUTE_ENDPOINT.to_string(),
                options::IAM_ENDPOINT.to_string(),
                options::SECRETS_ENDPOINT.to_string(),
            ),
        };
        Ok(GcpProvider {
            google: Google {
                compute: client("compute", &compute)?,
                iam: client("iam", &iam)?,
                secrets: client("secretmanager", &secrets)?,
                cred: Arc::new(cred),
                project,
                op_deadline: Duration::from_secs(600),
            },
            secrets_url: secrets,
            options,
            scheduler_op: Mutex::new(None),
            moved_scheduler: Mutex::new(None),
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &GcpOptions {
        &self.options
    }

    /// The project.
    pub fn project(&self) -> &str {
        &self.google.project
    }

    fn err(&self, e: GcpError) -> Error {
        errors::map(
            e,
            errors::Context {
                location: self.options.zone(),
                identity: Some(&self.google.cred.source().describe()),
            },
        )
    }

    fn zone(&self) -> Result<&str> {
        self.options.zone().ok_or_else(|| {
            Error::invalid(
                "--zone",
                "",
                "Compute Engine needs a zone",
                Some("pass `--zone us-central1-a` (or `--region us-central1-a`)".into()),
            )
        })
    }

    fn vm_options(&self, spec: &ClusterSpec, gpu: bool) -> VmOptions {
        VmOptions {
            image: spec.image.clone(),
            // COS has Docker; another image may not.
            install_docker: self.options.image.is_some(),
            gpu,
            keys: KeyDelivery::SecretStore(SecretStore {
                kind: "gcp-secret-manager".into(),
                region: self.google.project.clone(),
                endpoint: self.secrets_url.clone(),
                prefix: format!(
                    "projects/{}/secrets/{}",
                    self.google.project,
                    instances::secret_prefix(&spec.name)
                ),
                deadline_secs: KEY_FETCH_DEADLINE,
            }),
        }
    }

    /// The key files of both roles (what goes to Secret Manager).
    fn key_files(ctx: &LaunchContext<'_>) -> Vec<BootFile> {
        let layout = BootLayout::vm();
        let s = scheduler_intent(ctx.spec, &layout, ctx.tls);
        let w = worker_intent(ctx.spec, &layout, ctx.tls, "tls://0.0.0.0:8786", None);
        let mut out: Vec<BootFile> = Vec::new();
        for f in secret_files(&s).into_iter().chain(secret_files(&w)) {
            if !out.iter().any(|o| o.file_name() == f.file_name()) {
                out.push(f.clone());
            }
        }
        out
    }

    /// Nodes by label (`None`: every clusterctl cluster's).
    pub(crate) async fn nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        let filter = match cluster {
            Some(c) => labels::filter(core_tags::CLUSTER, c.as_str()),
            None => labels::filter(core_tags::MANAGED, core_tags::MANAGED_VALUE),
        };
        let found: Vec<Instance> = self
            .google
            .instances(&filter)
            .await
            .map_err(|e| self.err(e))?;
        Ok(instances::nodes_of(&found))
    }
}

#[async_trait]
impl ClusterProvider for GcpProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Gcp
    }

    fn location(&self) -> String {
        self.options.zone().unwrap_or_default().to_string()
    }

    fn pinned_options(&self, given: &Value) -> Value {
        let mut pinned = given.clone();
        if let Some(o) = pinned.as_object_mut() {
            o.insert("project".into(), json!(self.google.project));
        }
        pinned
    }

    fn locate_flags(&self) -> Vec<String> {
        let mut flags = vec!["--provider".to_string(), "gcp".to_string()];
        if let Some(z) = self.options.zone() {
            flags.extend(["--region".to_string(), z.to_string()]);
        }
        flags.extend(["--project".to_string(), self.google.project.clone()]);
        flags
    }

    async fn plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        self.make_plan(ctx).await
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        let spec = ctx.spec;
        self.claim(spec).await?;
        let files = Self::key_files(ctx);
        let keys = async {
            let email = match &self.options.service_account {
                // The user's account reads the keys instead of a per-cluster one.
                Some(sa) => sa.clone(),
                None => self.ensure_account(spec).await?,
            };
            if !files.is_empty() {
                self.store_keys(spec, &files, &email).await?;
            }
            Ok::<_, Error>(())
        };
        let (rule, keys) = futures_util::future::join(self.internal_rule(spec), keys).await;
        rule?;
        keys
    }

    async fn launch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        let spec = ctx.spec;
        let zone = self.zone()?.to_string();
        let ip = self.scheduler_ip(&zone).await?;
        let name = instances::instance_name(&spec.name, "scheduler");
        let attempts = self.scheduler_attempts(ctx, &ip)?;
        let job = tokio::spawn(
            insert_instance(self.google.clone(), name.clone(), attempts).map_ok_unit(),
        );
        *self.scheduler_op.lock().await = Some(job);
        Ok(SchedulerLaunch {
            node: Node {
                id: format!("zones/{zone}/instances/{name}"),
                name: "scheduler".into(),
                role: Role::Scheduler,
                state: NodeState::Pending,
                private_ip: Some(ip.clone()),
                public_ip: None,
                created_at: Some(now_epoch()),
                tags: core_tags::node_tags(spec, Role::Scheduler, "scheduler"),
            },
            address: Some(bootstrap::scheduler_address(bootstrap::scheme(spec), &ip)),
        })
    }

    async fn launch_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let spec = ctx.spec;
        let result = if batch.count == 0 {
            Ok(Vec::new())
        } else {
            self.bulk_workers(ctx, scheduler_address, batch).await
        };
        let scheduler = self.scheduler_op.lock().await.take();
        let Some(job) = scheduler else {
            return result;
        };
        let inserted = job.await.map_err(|e| Error::Provider {
            provider: ProviderKind::Gcp,
            operation: "creating the scheduler instance".into(),
            message: e.to_string(),
        })?;
        match inserted {
            Ok(()) => result,
            Err(e) if e.is_ip_taken() => {
                // Another resource took the address between the choice and the insert: the
                // scheduler goes to another one, and the workers, which dial the first, are
                // replaced by workers that dial the new one.
                ctx.progress.note(&format!(
                    "the scheduler's internal address was taken by another resource ({}); choosing another",
                    e.message()
                ));
                let address = self.relaunch_scheduler(ctx).await?;
                if let Ok(stale) = &result
                    && !stale.is_empty()
                {
                    self.terminate_nodes(&spec.name, stale).await?;
                }
                if batch.count == 0 {
                    Ok(Vec::new())
                } else {
                    self.bulk_workers(ctx, &address, batch).await
                }
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn list_nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        self.nodes(cluster).await
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterSummary>> {
        let (nodes, claims) = tokio::try_join!(self.nodes(None), self.claims())?;
        Ok(summarize_with_claims(nodes, claims))
    }

    async fn endpoints(&self, scheduler: &Node, private: bool) -> Result<Endpoints> {
        let moved = self.moved_scheduler.lock().await.clone();
        let known = if private {
            moved.or_else(|| scheduler.private_ip.clone())
        } else {
            scheduler.public_ip.clone()
        };
        let host = match known {
            Some(h) => h,
            None => {
                let cluster = scheduler
                    .tags
                    .get(core_tags::CLUSTER)
                    .and_then(|c| ClusterName::new(c).ok());
                let deadline = clusterctl_core::wait::Deadline::after(Duration::from_secs(60));
                loop {
                    let listed = match &cluster {
                        Some(c) => self.nodes(Some(c)).await?,
                        None => Vec::new(),
                    };
                    let found = listed
                        .into_iter()
                        .find(|n| n.role == Role::Scheduler)
                        .and_then(|n| if private { n.private_ip } else { n.public_ip });
                    if let Some(h) = found {
                        break h;
                    }
                    if deadline.expired() {
                        return Err(Error::Provider {
                            provider: ProviderKind::Gcp,
                            operation: "endpoints".into(),
                            message: format!(
                                "the scheduler instance has no {} address",
                                if private { "internal" } else { "external" }
                            ),
                        });
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        Ok(Endpoints::on_host(
            core_tags::protocol(&scheduler.tags),
            &host,
        ))
    }

    async fn terminate_nodes(&self, _cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        let g = &self.google;
        let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
        // Every deletion is tried even when another fails; each one's operation is awaited
        // (the instance is gone when it is DONE), up to DELETES_IN_FLIGHT at once.
        clusterctl_core::concurrent::each(ids, DELETES_IN_FLIGHT, |id| async move {
            let deleted = match g
                .mutate(
                    Method::DELETE,
                    &g.cp(&format!("/{id}")),
                    None,
                    &request_id(),
                )
                .await
            {
                Ok(op) => g.wait(&format!("delete {id}"), op).await.map(|_| ()),
                Err(e) => Err(e),
            };
            match deleted {
                Ok(()) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(self.err(e)),
            }
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
        let nodes: Vec<Node> = self
            .nodes(Some(cluster))
            .await?
            .into_iter()
            .filter(|n| role.is_none_or(|r| n.role == r))
            .take(max_nodes.unwrap_or(usize::MAX))
            .collect();
        let g = &self.google;
        let fetched: Vec<Result<NodeLog>> = stream::iter(nodes)
            .map(|n| async move {
                let out: Option<Value> = g
                    .get(
                        Api::Compute,
                        &g.cp(&format!("/{}/serialPort", n.id)),
                        &[("port", "1")],
                    )
                    .await
                    .map_err(|e| self.err(e))?;
                let text = out
                    .as_ref()
                    .and_then(|o| o["contents"].as_str())
                    .unwrap_or_default()
                    .to_string();
                Ok(NodeLog {
                    node: n.name.clone(),
                    role: n.role,
                    lines: last_lines(&text, tail),
                })
            })
            .buffered(4)
            .collect()
            .await;
        fetched.into_iter().collect()
    }
}

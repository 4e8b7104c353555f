//! The `azure` provider: a Dask cluster on Azure VMs, through ARM's REST API.
//!
//! Each node is a VM (Canonical Ubuntu LTS; Docker installed at boot) whose `customData` is the
//! core's cloud-init: the pinned Dask image with host networking, the TLS material (ARM never
//! returns `customData`, so the keys may travel in it; never in `userData`), a TTL power-off, and
//! power-off when Dask exits. A cluster lives in its own resource group `clusterctl-NAME`
//! (created first, which claims the name, and deleted by `down`), unless `--resource-group`
//! names an existing one. Every resource carries the cluster's tags from its creation, and
//! everything is found by tags.
//!
//! Calls go through a small typed ARM client (`api.rs`) over `clusterctl_core::rest` (429/5xx
//! retried with jittered backoff and `Retry-After`), long-running operations are followed to
//! their end under a deadline (`lro.rs`), and tokens come from the standard credential chain
//! (`credential.rs`).

mod api;
mod azcli;
pub mod certificate;
mod claim;
pub mod credential;
pub mod errors;
mod launch;
mod lro;
mod network;
pub mod options;
mod plan;
mod teardown;
mod ttl;
mod vms;

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use clusterctl_core::{
    Error, Result,
    bootstrap::{self, BootLayout, KeyDelivery, VmOptions, render_cloud_init, worker_intent},
    model::{
        ClusterName, ClusterSpec, ClusterSummary, Endpoints, Node, NodeState, ProviderKind, Role,
        summarize_with_claims,
    },
    provider::{
        ClusterProvider, LaunchContext, NodeLog, Plan, SchedulerLaunch, WorkerBatch, last_lines,
    },
    rest::{RestClient, RestConfig},
    tags as core_tags,
};
use futures_util::{StreamExt as _, stream};
pub use options::AzureOptions;
use serde_json::{Value, json};
use tokio::{sync::Mutex, task::JoinHandle};

use crate::{
    api::{Arm, COMPUTE_API, NETWORK_API, Nic, PublicIp, RESOURCES_API, ResourceGroup},
    credential::Credential,
    errors::ArmError,
    launch::VmJob,
};

/// Node creations (NIC, then VM, then its operation) in flight at once.
const CREATES_IN_FLIGHT: usize = 8;
/// VM deletions in flight at once.
const DELETES_IN_FLIGHT: usize = 8;
/// The VMs' admin user (not one of Azure's reserved names); it has only an SSH key.
pub const ADMIN_USER: &str = "clusterctl";

/// The Azure provider.
#[derive(Debug)]
pub struct AzureProvider {
    arm: Arm,
    endpoint: String,
    options: AzureOptions,
    /// Who clusterctl acts as (for `--dry-run` and permission errors), once known.
    identity: std::sync::OnceLock<String>,
    /// The throwaway SSH public key of this process's VMs (the private half never existed
    /// outside `clusterctl_core::sshkey`).
    ssh_key: tokio::sync::OnceCell<String>,
    /// The scheduler VM's creation, awaited by `launch_workers` (the workers do not wait for it).
    scheduler_vm: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl AzureProvider {
    /// The resource groups clusterctl made for clusters (tagged as managed).
    async fn cluster_groups(&self) -> Result<Vec<ResourceGroup>> {
        self.arm
            .list::<ResourceGroup>(
                &format!("{}/resourcegroups", self.arm.sub()),
                RESOURCES_API,
                &[(
                    "$filter",
                    &format!(
                        "tagName eq '{}' and tagValue eq '{}'",
                        core_tags::MANAGED,
                        core_tags::MANAGED_VALUE
                    ),
                )],
            )
            .await
            .map_err(|e| self.err(e))
    }

    /// The nodes of every cluster in `groups` (clusters' own groups) and in the group named
    /// with `--resource-group`, each group listed once.
    async fn nodes_in_groups(&self, groups: &[ResourceGroup]) -> Result<Vec<Node>> {
        let mut names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        if let Some(g) = &self.options.resource_group
            && !names.iter().any(|n| n.eq_ignore_ascii_case(g))
        {
            names.push(g);
        }
        let mut nodes = Vec::new();
        for g in names {
            nodes.extend(self.nodes_in(g, None).await?);
        }
        Ok(nodes)
    }

    /// Build from the environment: the credential chain, the subscription (`options`,
    /// `AZURE_SUBSCRIPTION_ID`, or the Azure CLI's), the ARM endpoint (`options`,
    /// `AZURE_RESOURCE_MANAGER_ENDPOINT`, or the public cloud's), `CLUSTERCTL_EXTRA_CA_FILE`,
    /// `CLUSTERCTL_API_LOG`. Checks the options' formats first.
    pub async fn from_env(options: AzureOptions) -> Result<Self> {
        options.validate_formats()?;
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let endpoint = match (&options.endpoint, env(options::ENDPOINT_ENV)) {
            (Some(e), _) => e.clone(),
            (None, Some(e)) => {
                clusterctl_core::rest::parse_base_url(&e).map_err(|m| {
                    Error::invalid(
                        options::ENDPOINT_ENV,
                        e.clone(),
                        m,
                        Some(format!("e.g. {}", options::DEFAULT_ENDPOINT)),
                    )
                })?;
                e
            }
            (None, None) => options::DEFAULT_ENDPOINT.to_string(),
        };
        let map = |e: ArmError| errors::map(e, errors::Context::default());
        let cred = Credential::resolve(&env, &audience(&endpoint))
            .await
            .map_err(map)?;
        let subscription = options
            .subscription
            .clone()
            .or_else(|| env(options::SUBSCRIPTION_ENV))
            .or_else(|| cred.cli_subscription())
            .ok_or_else(|| {
                Error::invalid(
                    "--subscription",
                    "",
                    "no Azure subscription given",
                    Some(format!(
                        "pass `--subscription <id>`, set {}, or `az account set --subscription <id>`",
                        options::SUBSCRIPTION_ENV
                    )),
                )
            })?;
        let rest = RestClient::new(RestConfig::new("azure", &endpoint), None).map_err(|e| {
            Error::invalid(
                "HTTPS client setting",
                endpoint.clone(),
                e.to_string(),
                Some(format!(
                    "{} must name a readable PEM bundle of CA certificates (added to the system's)",
                    clusterctl_core::rest::EXTRA_CA_ENV
                )),
            )
        })?;
        Ok(AzureProvider {
            arm: Arm::new(rest, cred, subscription),
            endpoint,
            options,
            identity: std::sync::OnceLock::new(),
            ssh_key: tokio::sync::OnceCell::new(),
            scheduler_vm: Mutex::new(None),
        })
    }

    /// The options it was built with.
    pub fn options(&self) -> &AzureOptions {
        &self.options
    }

    fn err(&self, e: ArmError) -> Error {
        errors::map(
            e,
            errors::Context {
                location: self.options.location.as_deref(),
                identity: Some(
                    self.identity
                        .get()
                        .map_or_else(|| self.arm.credential().source().describe(), Clone::clone)
                        .as_str(),
                ),
            },
        )
    }

    fn location(&self) -> Result<&str> {
        self.options.location.as_deref().ok_or_else(|| {
            Error::invalid(
                "--location",
                "",
                "Azure needs a location to create VMs in",
                Some("pass `--location eastus`".into()),
            )
        })
    }

    /// The cluster's resource group: `--resource-group`, else its own.
    fn group(&self, cluster: &ClusterName) -> String {
        self.options
            .resource_group
            .clone()
            .unwrap_or_else(|| vms::group_name(cluster))
    }

    /// Whether the group is the cluster's own (made by `up`, deleted by `down`).
    fn own_group(&self) -> bool {
        self.options.resource_group.is_none()
    }

    fn subnet_id(&self, cluster: &ClusterName) -> String {
        self.options.subnet.clone().unwrap_or_else(|| {
            format!(
                "{}/subnets/{}",
                self.arm.resource(
                    &self.group(cluster),
                    "Microsoft.Network/virtualNetworks",
                    &vms::vnet_name(cluster)
                ),
                network::SUBNET_NAME
            )
        })
    }

    fn vm_options(spec: &ClusterSpec) -> VmOptions {
        VmOptions {
            image: spec.image.clone(),
            install_docker: true,
            gpu: false,
            // ARM never returns customData (VM GET/List, IMDS): the keys may travel inside it.
            keys: KeyDelivery::InUserData,
        }
    }

    async fn ssh_public_key(&self, cluster: &ClusterName) -> Result<String> {
        if let Some(k) = &self.options.ssh_public_key {
            let text = if k.trim_start().starts_with("ssh-") {
                k.clone()
            } else {
                std::fs::read_to_string(k)
                    .map_err(|e| Error::io(format!("reading the SSH public key {k}"), e))?
            };
            return Ok(text.trim().to_string());
        }
        self.ssh_key
            .get_or_try_init(|| async {
                clusterctl_core::sshkey::throwaway_public_key(
                    ProviderKind::Azure,
                    &format!("clusterctl-{cluster}"),
                )
            })
            .await
            .cloned()
    }

    /// The VM's request body (its size and priority are set per attempt).
    fn vm_body(
        &self,
        spec: &ClusterSpec,
        role: Role,
        node: &str,
        nic: &str,
        custom_data: &str,
        key: &str,
    ) -> Result<Value> {
        let image = self.options.image()?;
        let name = vms::vm_name(&spec.name, node);
        Ok(json!({
            "location": self.location()?,
            "tags": core_tags::node_tags(spec, role, node),
            "properties": {
                "hardwareProfile": {"vmSize": ""},
                "storageProfile": {
                    "imageReference": {"publisher": image.publisher, "offer": image.offer, "sku": image.sku, "version": image.version},
                    "osDisk": {"createOption": "FromImage", "deleteOption": "Delete", "diskSizeGB": self.options.os_disk(),
                               "managedDisk": {"storageAccountType": "StandardSSD_LRS"}},
                },
                "osProfile": {
                    "computerName": name,
                    "adminUsername": ADMIN_USER,
                    "customData": base64::engine::general_purpose::STANDARD.encode(custom_data),
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": true,
                        "ssh": {"publicKeys": [{"path": format!("/home/{ADMIN_USER}/.ssh/authorized_keys"), "keyData": key}]},
                    },
                },
                // The NIC stays when the VM is deleted (`Detach`): a VM that failed for capacity
                // is deleted and created again in another size on the same NIC, whose private
                // IP the workers may already have. `scale` deletes the NICs after their VMs.
                "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": true, "deleteOption": "Detach"}}]},
                "diagnosticsProfile": {"bootDiagnostics": {"enabled": true}},
            },
        }))
    }

    /// Create a node's NIC (with `public_ip`, if any); its private IP.
    async fn create_nic(
        &self,
        spec: &ClusterSpec,
        role: Role,
        node: &str,
        public_ip: Option<&str>,
    ) -> Result<(String, String)> {
        let cluster = &spec.name;
        let path = self.arm.resource(
            &self.group(cluster),
            "Microsoft.Network/networkInterfaces",
            &vms::nic_name(cluster, node),
        );
        let nsg = self.arm.resource(
            &self.group(cluster),
            "Microsoft.Network/networkSecurityGroups",
            &vms::nsg_name(cluster),
        );
        let body = network::nic_body(
            self.location()?,
            &core_tags::node_tags(spec, role, node),
            &self.subnet_id(cluster),
            &nsg,
            public_ip,
        );
        let put: api::Put<Nic> = self
            .arm
            .put(&path, NETWORK_API, &body, false)
            .await
            .map_err(|e| self.err(e))?;
        let ip = match put.value.private_ip() {
            Some(ip) => ip,
            None => {
                // Not in the answer (ARM documents it there): wait for the NIC and read it.
                let nic: Nic = self
                    .arm
                    .put_and_wait(&path, NETWORK_API, &body)
                    .await
                    .map_err(|e| self.err(e))?;
                nic.private_ip().ok_or_else(|| Error::Provider {
                    provider: ProviderKind::Azure,
                    operation: format!("PUT {path}"),
                    message: "the NIC has no private IP".into(),
                })?
            }
        };
        Ok((put.value.id, ip))
    }

    fn attempts(&self, role: Role) -> Vec<(String, bool)> {
        let sizes = match role {
            Role::Scheduler => vec![self.options.scheduler_size()],
            Role::Worker => self.options.worker_sizes(),
        };
        let mut out = Vec::new();
        if self.options.spot && role == Role::Worker {
            out.extend(sizes.iter().map(|s| (s.clone(), true)));
        }
        out.extend(sizes.into_iter().map(|s| (s, false)));
        out
    }

    fn vm_job(&self, path: String, body: Value, role: Role) -> VmJob {
        VmJob {
            arm: self.arm.clone(),
            path,
            body,
            attempts: self.attempts(role),
            location: self.options.location.clone().unwrap_or_default(),
            identity: self.identity.get().cloned(),
        }
    }

    async fn put_wait(&self, path: &str, body: &Value) -> Result<Value> {
        self.arm
            .put_and_wait(path, NETWORK_API, body)
            .await
            .map_err(|e| self.err(e))
    }
}

/// ARM's token audience for an endpoint: the sovereign clouds' own, else the public cloud's
/// (also for a simulator or proxy standing in for it).
pub fn audience(endpoint: &str) -> String {
    let host = reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    if host.ends_with("chinacloudapi.cn") {
        "https://management.core.chinacloudapi.cn/".into()
    } else if host.ends_with("usgovcloudapi.net") {
        "https://management.core.usgovcloudapi.net/".into()
    } else {
        "https://management.azure.com/".into()
    }
}

#[async_trait]
impl ClusterProvider for AzureProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Azure
    }

    fn location(&self) -> String {
        self.options
            .location
            .clone()
            .unwrap_or_else(|| "all locations".into())
    }

    fn pinned_options(&self, given: &Value) -> Value {
        // Later commands talk to the endpoint and subscription `up` used.
        let mut pinned = if given.is_null() {
            json!({})
        } else {
            given.clone()
        };
        if let Some(o) = pinned.as_object_mut() {
            o.insert("endpoint".into(), self.endpoint.clone().into());
            o.insert("subscription".into(), self.arm.subscription.clone().into());
        }
        pinned
    }

    fn locate_flags(&self) -> Vec<String> {
        let mut flags = vec![
            "--provider".into(),
            "azure".into(),
            "--subscription".into(),
            self.arm.subscription.clone(),
        ];
        if let Some(g) = &self.options.resource_group {
            flags.extend(["--resource-group".into(), g.clone()]);
        }
        flags
    }

    async fn plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        self.make_plan(ctx).await
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        let spec = ctx.spec;
        let cluster = &spec.name;
        if self.own_group() {
            self.claim_group(spec).await?;
        }
        let rg = self.group(cluster);
        let location = self.location()?;
        let tags = core_tags::cluster_tags(spec);
        let nsg_path = self.arm.resource(
            &rg,
            "Microsoft.Network/networkSecurityGroups",
            &vms::nsg_name(cluster),
        );
        let nsg_body = network::nsg_body(location, &tags, &self.options.allow_cidrs);
        // In a named group, the NSG claims the name before anything else is made there.
        let claim = if self.own_group() {
            None
        } else {
            Some(self.claim_nsg(spec, &nsg_path, &nsg_body).await?)
        };
        let nsg = async {
            match claim {
                None => self.put_wait(&nsg_path, &nsg_body).await.map(drop),
                Some(claim::NsgClaim::Created) => self.keep_nsg(spec, &nsg_path, &nsg_body).await,
                Some(claim::NsgClaim::Held) => Ok(()),
            }
        };
        let vnet = async {
            if self.options.subnet.is_none() {
                self.put_wait(
                    &self.arm.resource(
                        &rg,
                        "Microsoft.Network/virtualNetworks",
                        &vms::vnet_name(cluster),
                    ),
                    &network::vnet_body(location, &tags),
                )
                .await?;
            }
            Ok::<_, Error>(())
        };
        let ip = async {
            if !self.options.private {
                let mut t = tags.clone();
                t.insert(core_tags::ROLE.into(), Role::Scheduler.as_str().into());
                self.put_wait(
                    &self.arm.resource(
                        &rg,
                        "Microsoft.Network/publicIPAddresses",
                        &vms::public_ip_name(cluster),
                    ),
                    &network::public_ip_body(location, &t),
                )
                .await?;
            }
            Ok::<_, Error>(())
        };
        let (a, b, c) = futures_util::future::join3(nsg, vnet, ip).await;
        a?;
        b?;
        c?;
        Ok(())
    }

    async fn launch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        let spec = ctx.spec;
        let cluster = &spec.name;
        let node = Role::Scheduler.as_str();
        let rg = self.group(cluster);
        let (ip_id, public_ip) = if self.options.private {
            (None, None)
        } else {
            let id = self.arm.resource(
                &rg,
                "Microsoft.Network/publicIPAddresses",
                &vms::public_ip_name(cluster),
            );
            let ip: Option<PublicIp> = self
                .arm
                .get(&id, NETWORK_API, &[])
                .await
                .map_err(|e| self.err(e))?;
            (Some(id), ip.and_then(|p| p.properties.ip_address))
        };
        // The NIC first: its private IP is the workers' scheduler address, known at once.
        let (nic, private_ip) = self
            .create_nic(spec, Role::Scheduler, node, ip_id.as_deref())
            .await?;
        let layout = BootLayout::vm();
        let custom = render_cloud_init(
            spec,
            &self.scheduler_boot(spec, &layout, ctx.tls),
            &layout,
            &Self::vm_options(spec),
        )?;
        let key = self.ssh_public_key(cluster).await?;
        let path = self.arm.resource(
            &rg,
            "Microsoft.Compute/virtualMachines",
            &vms::vm_name(cluster, node),
        );
        let mut body = self.vm_body(spec, Role::Scheduler, node, &nic, &custom, &key)?;
        let grant = self.grant(cluster);
        if grant.is_some() {
            // The identity that deletes the cluster's group at its TTL (ttl.rs).
            body["identity"] = json!({"type": "SystemAssigned"});
        }
        let job = self.vm_job(path.clone(), body, Role::Scheduler);
        *self.scheduler_vm.lock().await = Some(tokio::spawn(async move {
            let principal = job.run().await?;
            match (grant, principal) {
                (Some(g), Some(p)) => g.assign(&p).await,
                (Some(_), None) => Err(Error::Provider {
                    provider: ProviderKind::Azure,
                    operation: "creating the scheduler VM".into(),
                    message: "ARM's answer names no identity (identity.principalId) for the VM: its TTL could not delete the cluster's group".into(),
                }),
                (None, _) => Ok(()),
            }
        }));
        let address = bootstrap::scheduler_address(bootstrap::scheme(spec), &private_ip);
        Ok(SchedulerLaunch {
            node: Node {
                id: path,
                name: node.into(),
                role: Role::Scheduler,
                state: NodeState::Pending,
                private_ip: Some(private_ip),
                public_ip,
                created_at: Some(clusterctl_core::model::now_epoch()),
                tags: core_tags::node_tags(spec, Role::Scheduler, node),
            },
            address: Some(address),
        })
    }

    async fn launch_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let spec = ctx.spec;
        let cluster = &spec.name;
        let rg = self.group(cluster);
        let layout = BootLayout::vm();
        let key = self.ssh_public_key(cluster).await?;
        let results: Vec<Result<Node>> = stream::iter(batch.names())
            .map(|node| {
                let (rg, key, layout) = (&rg, &key, &layout);
                async move {
                    let intent =
                        worker_intent(spec, layout, ctx.tls, scheduler_address, Some(&node));
                    let custom = render_cloud_init(spec, &intent, layout, &Self::vm_options(spec))?;
                    let (nic, private_ip) =
                        self.create_nic(spec, Role::Worker, &node, None).await?;
                    let path = self.arm.resource(
                        rg,
                        "Microsoft.Compute/virtualMachines",
                        &vms::vm_name(cluster, &node),
                    );
                    let body = self.vm_body(spec, Role::Worker, &node, &nic, &custom, key)?;
                    self.vm_job(path.clone(), body, Role::Worker).run().await?;
                    Ok(Node {
                        id: path,
                        name: node.clone(),
                        role: Role::Worker,
                        state: NodeState::Running,
                        private_ip: Some(private_ip),
                        public_ip: None,
                        created_at: Some(clusterctl_core::model::now_epoch()),
                        tags: core_tags::node_tags(spec, Role::Worker, &node),
                    })
                }
            })
            .buffer_unordered(CREATES_IN_FLIGHT)
            .collect()
            .await;
        let scheduler = self.scheduler_vm.lock().await.take();
        if let Some(job) = scheduler {
            job.await.map_err(|e| Error::Provider {
                provider: ProviderKind::Azure,
                operation: "creating the scheduler VM".into(),
                message: e.to_string(),
            })??;
        }
        let mut nodes = Vec::new();
        for r in results {
            // Whatever was created carries the cluster's tags: a rollback or `down` finds it.
            nodes.push(r?);
        }
        Ok(nodes)
    }

    async fn list_nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        if let Some(c) = cluster {
            return self.nodes_in(&self.group(c), Some(c)).await;
        }
        let groups = self.cluster_groups().await?;
        self.nodes_in_groups(&groups).await
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterSummary>> {
        // A cluster's own group claims its name from the first request of `up` until `down`
        // deletes it with everything in it. In a group named with `--resource-group`, the
        // cluster's tagged resources do: the first is created before any VM, the last deleted
        // after every VM.
        let (groups, named) = tokio::try_join!(self.cluster_groups(), self.named_group_claims())?;
        let nodes = self.nodes_in_groups(&groups).await?;
        let mut claims: Vec<_> = groups.into_iter().map(|g| g.tags).collect();
        claims.extend(named);
        Ok(summarize_with_claims(nodes, claims))
    }

    async fn endpoints(&self, scheduler: &Node, private: bool) -> Result<Endpoints> {
        let known = if private {
            scheduler.private_ip.clone()
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
                let listed = match &cluster {
                    Some(c) => self.list_nodes(Some(c)).await?,
                    None => Vec::new(),
                };
                listed
                    .into_iter()
                    .find(|n| n.role == Role::Scheduler)
                    .and_then(|n| if private { n.private_ip } else { n.public_ip })
                    .ok_or_else(|| Error::Provider {
                        provider: ProviderKind::Azure,
                        operation: "endpoints".into(),
                        message: format!(
                            "the scheduler VM has no {} address",
                            if private { "private" } else { "public" }
                        ),
                    })?
            }
        };
        Ok(Endpoints::on_host(
            core_tags::protocol(&scheduler.tags),
            &host,
        ))
    }

    async fn terminate_nodes(&self, cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        if self.own_group() && nodes.iter().any(|n| n.role == Role::Scheduler) {
            // The whole cluster: its group, with everything in it (also what no listing showed).
            return self.delete_group(cluster).await;
        }
        let rg = self.group(cluster);
        // (VM, its NIC): the NIC is detached, not deleted with the VM (see `vm_body`).
        let targets: Vec<(String, String)> = nodes
            .iter()
            .map(|n| {
                let nic = self.arm.resource(
                    &rg,
                    "Microsoft.Network/networkInterfaces",
                    &vms::nic_name(cluster, &n.name),
                );
                (n.id.clone(), nic)
            })
            .collect();
        clusterctl_core::concurrent::each(targets, DELETES_IN_FLIGHT, |(vm, nic)| async move {
            self.arm
                .delete(&vm, COMPUTE_API, &[])
                .await
                .map_err(|e| self.err(e))?;
            self.arm
                .delete(&nic, NETWORK_API, &[])
                .await
                .map_err(|e| self.err(e))
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
            .list_nodes(Some(cluster))
            .await?
            .into_iter()
            .filter(|n| role.is_none_or(|r| n.role == r))
            .take(max_nodes.unwrap_or(usize::MAX))
            .collect();
        let fetched: Vec<Result<NodeLog>> = stream::iter(nodes)
            .map(|n| async move {
                let diag: api::BootDiagnostics = self
                    .arm
                    .post(
                        &format!("{}/retrieveBootDiagnosticsData", n.id),
                        COMPUTE_API,
                        &[("sasUriExpirationTimeInMinutes", "5")],
                    )
                    .await
                    .map_err(|e| self.err(e))?;
                let text = match diag.serial_console_log_blob_uri {
                    Some(url) => self.arm.blob_text(&url).await.map_err(|e| self.err(e))?,
                    None => String::new(),
                };
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

/// How long `down` waits for a group's deletion (ARM does not document its duration).
pub const GROUP_DELETE_TIMEOUT: Duration = Duration::from_secs(900);

//! The checks before anything exists, and what `--dry-run` shows: options and labels (no call
//! before they pass), the project, the zones, the machine types offered there, the image, the
//! region's CPU quota against what the cluster needs, and the rendered cloud-init of each kind
//! of node (keys are never in it: they go to Secret Manager).

use clusterctl_core::{
    Error, Result,
    bootstrap::{BootLayout, render_cloud_init, scheduler_intent, worker_intent},
    model::Role,
    provider::{LaunchContext, Plan, RenderedBootstrap},
    tags as core_tags,
};
use serde_json::Value;

use crate::{
    GcpProvider,
    api::{Api, MachineType, Region},
    instances, labels,
    options::region_of,
};

/// Most bytes of instance metadata values together (Compute allows < 512 KB).
const MAX_METADATA: usize = 500 * 1024;

impl GcpProvider {
    /// The machine type `name` in the first of the zones that offers it.
    async fn machine_type(&self, flag: &'static str, name: &str) -> Result<MachineType> {
        for z in &self.options.zones {
            let path = self.google.cp(&format!("/zones/{z}/machineTypes/{name}"));
            match self
                .google
                .get::<MachineType>(Api::Compute, &path, &[])
                .await
            {
                Ok(Some(t)) => return Ok(t),
                Ok(None) => {}
                Err(e) if e.status() == Some(400) => {}
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(Error::invalid(
            flag,
            name,
            format!("not offered in {}", self.options.zones.join(", ")),
            Some(format!(
                "`gcloud compute machine-types list --zones {}` lists what is",
                self.options.zones.join(",")
            )),
        ))
    }

    /// The network exists, and so does the subnetwork the instances go to in the zones'
    /// region: `--subnetwork`, or on an auto-mode network the subnet named like it.
    async fn check_network(&self) -> Result<()> {
        let g = &self.google;
        let name = self.options.network();
        let net: Option<Value> = g
            .get(
                Api::Compute,
                &g.cp(&format!("/global/networks/{name}")),
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        let Some(net) = net else {
            return Err(Error::invalid(
                "--network",
                name,
                format!("no such VPC network in project {}", g.project),
                Some("`gcloud compute networks list` lists them".into()),
            ));
        };
        let auto = net["autoCreateSubnetworks"].as_bool().unwrap_or(false);
        let region = region_of(self.options.zone().unwrap_or_default());
        let sub = match (&self.options.subnetwork, auto) {
            (Some(s), _) => s.clone(),
            (None, true) => name.to_string(),
            (None, false) => {
                return Err(Error::invalid(
                    "--subnetwork",
                    "",
                    format!(
                        "{name} is a custom-mode VPC network: the instances need one of its subnetworks in {region}"
                    ),
                    Some(format!(
                        "`gcloud compute networks subnets list --network {name} --regions {region}` lists them"
                    )),
                ));
            }
        };
        let found: Option<Value> = g
            .get(
                Api::Compute,
                &g.cp(&format!("/regions/{region}/subnetworks/{sub}")),
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        let belongs = found.as_ref().is_some_and(|s| {
            s["network"]
                .as_str()
                .is_some_and(|n| n.rsplit('/').next() == Some(name))
        });
        if !belongs {
            return Err(Error::invalid(
                "--subnetwork",
                sub,
                format!("no subnetwork of that name of network {name} in {region}"),
                Some(format!(
                    "`gcloud compute networks subnets list --network {name} --regions {region}` lists them"
                )),
            ));
        }
        Ok(())
    }

    /// The user's service account exists, and the GPU type is offered in every zone.
    async fn check_account_and_gpus(&self) -> Result<()> {
        let g = &self.google;
        if let Some(sa) = &self.options.service_account {
            let found = g
                .get::<Value>(Api::Iam, &g.v1(&format!("/serviceAccounts/{sa}")), &[])
                .await;
            let missing = match found {
                Ok(found) => found.is_none(),
                // IAM answers 403 for an account it does not show this identity.
                Err(e) if e.status() == Some(403) => true,
                Err(e) => return Err(self.err(e)),
            };
            if missing {
                return Err(Error::invalid(
                    "--service-account",
                    sa.clone(),
                    format!(
                        "no such service account in project {} (or clusterctl's identity may not see it)",
                        g.project
                    ),
                    Some("`gcloud iam service-accounts list` lists them; clusterctl needs iam.serviceAccounts.get and actAs on it".into()),
                ));
            }
        }
        if let Some(gpu) = self.options.gpus() {
            for z in &self.options.zones {
                let path = g.cp(&format!("/zones/{z}/acceleratorTypes/{}", gpu.kind));
                let found: Option<Value> = g
                    .get(Api::Compute, &path, &[])
                    .await
                    .map_err(|e| self.err(e))?;
                if found.is_none() {
                    return Err(Error::invalid(
                        "--gpu",
                        gpu.kind.clone(),
                        format!("accelerator type not offered in {z}"),
                        Some(format!(
                            "`gcloud compute accelerator-types list --filter=zone:{z}` lists what is"
                        )),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn make_plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        let spec = ctx.spec;
        self.options.validate_for_up()?;
        labels::encode_all(&core_tags::node_tags(spec, Role::Scheduler, "scheduler"))?;
        let g = &self.google;
        let project: Option<Value> = g
            .get(Api::Compute, &g.cp(""), &[])
            .await
            .map_err(|e| self.err(e))?;
        if project.is_none() {
            return Err(Error::invalid(
                "--project",
                g.project.clone(),
                "no such project (or Compute Engine is not enabled in it)",
                Some("check `gcloud projects list` and `gcloud services enable compute.googleapis.com`".into()),
            ));
        }
        for z in &self.options.zones {
            let zone: Option<Value> = g
                .get(Api::Compute, &g.cp(&format!("/zones/{z}")), &[])
                .await
                .map_err(|e| self.err(e))?;
            if zone.is_none() {
                return Err(Error::invalid(
                    "--zone",
                    z.clone(),
                    "no such zone in this project",
                    Some("`gcloud compute zones list` lists them".into()),
                ));
            }
        }
        let sched = self
            .machine_type("--scheduler-machine-type", &self.options.scheduler_type())
            .await?;
        let mut worker = None;
        for t in self.options.worker_types() {
            let m = self.machine_type("--worker-machine-type", &t).await?;
            worker.get_or_insert(m);
        }
        let worker = worker.unwrap_or_default();
        let image = self.options.image().to_string();
        let image_found: Option<Value> = g
            .get(Api::Compute, &format!("/compute/v1/{image}"), &[])
            .await
            .map_err(|e| self.err(e))?;
        if image_found.is_none() {
            return Err(Error::invalid(
                "--gcp-image",
                image.clone(),
                "no such image or image family",
                Some(format!("e.g. `{}`", crate::options::DEFAULT_IMAGE)),
            ));
        }
        let zone = self.options.zone().unwrap_or_default();
        let region = region_of(zone);
        let needed =
            u64::from(sched.guest_cpus) + u64::from(spec.workers) * u64::from(worker.guest_cpus);
        if let Some(r) = g
            .get::<Region>(Api::Compute, &g.cp(&format!("/regions/{region}")), &[])
            .await
            .map_err(|e| self.err(e))?
        {
            let metric = if self.options.spot {
                "PREEMPTIBLE_CPUS"
            } else {
                "CPUS"
            };
            if let Some(q) = r.quotas.iter().find(|q| q.metric == metric)
                && q.limit > 0.0
                && q.usage + needed as f64 > q.limit
            {
                return Err(Error::QuotaExceeded {
                    provider: clusterctl_core::model::ProviderKind::Gcp,
                    message: format!(
                        "the cluster needs {needed} vCPUs ({metric}); {region} has {} of {} left",
                        q.limit - q.usage,
                        q.limit
                    ),
                });
            }
        }
        self.check_network().await?;
        self.check_account_and_gpus().await?;
        let layout = BootLayout::vm();
        let s = render_cloud_init(
            spec,
            &scheduler_intent(spec, &layout, ctx.tls),
            &layout,
            &self.vm_options(spec, false),
        )?;
        let w = render_cloud_init(
            spec,
            &worker_intent(
                spec,
                &layout,
                ctx.tls,
                "tls://SCHEDULER:8786",
                Some("worker-0"),
            ),
            &layout,
            &self.vm_options(spec, self.options.gpu.is_some()),
        )?;
        if s.len() > MAX_METADATA || w.len() > MAX_METADATA {
            return Err(Error::invalid(
                "--env",
                format!("{} bytes of user-data", s.len().max(w.len())),
                "the instance metadata would exceed Compute Engine's 512 KB",
                Some("pass fewer or shorter --env values".into()),
            ));
        }
        let c = &spec.name;
        let mut resources = vec![
            format!(
                "firewall rule {} (tcp 8786-8787 from {})",
                instances::ports_rule(c),
                if self.options.allow_cidrs.is_empty() {
                    crate::claim::AUTO_MODE_RANGE.to_string()
                } else {
                    self.options.allow_cidrs.join(", ")
                }
            ),
            format!(
                "firewall rule {} (all traffic between the cluster's instances)",
                instances::internal_rule(c)
            ),
            match &self.options.service_account {
                Some(sa) => format!(
                    "no service account: the instances run as {sa} (cloud-platform scope), which is granted read access to the key secrets"
                ),
                None => format!("service account {}", self.account_email(c)),
            },
            format!(
                "Secret Manager secrets {}* (the nodes' TLS keys, readable only by {})",
                instances::secret_prefix(c),
                self.node_account(c)
            ),
            format!(
                "instance {} ({}, {}{})",
                instances::instance_name(c, "scheduler"),
                sched.name,
                zone,
                if self.options.private {
                    ", no external IP"
                } else {
                    ", ephemeral external IP"
                }
            ),
        ];
        if spec.workers > 0 {
            resources.push(format!(
                "{} worker instance(s) in one bulkInsert ({}{}{}, no external IP)",
                spec.workers,
                self.options.worker_types().join(" or "),
                self.options
                    .gpus()
                    .map(|g| format!(", {} × {}", g.count, g.kind))
                    .unwrap_or_default(),
                if self.options.spot {
                    ", Spot first"
                } else {
                    ""
                }
            ));
        }
        Ok(Plan {
            identity: Some(format!(
                "{} in project {}",
                self.google.cred.source().describe(),
                g.project
            )),
            resources,
            bootstraps: vec![
                RenderedBootstrap {
                    role: Role::Scheduler,
                    format: "cloud-init (metadata user-data)".into(),
                    text: s,
                },
                RenderedBootstrap {
                    role: Role::Worker,
                    format: "cloud-init (metadata user-data)".into(),
                    text: w,
                },
            ],
            notes: vec![format!(
                "Compute Engine deletes every instance at the TTL, up to 30 s ahead of it (scheduling.maxRunDuration with instanceTerminationAction DELETE), whether or not clusterctl runs; image {image}"
            )],
        })
    }
}

//! Creating the instances: the scheduler's internal address (chosen at random in the subnet
//! before the scheduler exists, so the workers can dial it at once), its `instances.insert`
//! tried zone by zone on stockouts and moved to another address when another resource took
//! the first, and the workers' single `bulkInsert` (all or nothing) tried over zones × machine
//! types × (Spot, standard).

use std::net::Ipv4Addr;

use clusterctl_core::{
    Error, Result,
    bootstrap::{self, BootLayout, render_cloud_init, scheduler_intent, worker_intent},
    model::{Node, NodeState, ProviderKind, Role, now_epoch},
    provider::{LaunchContext, WorkerBatch},
    retry::retry_while,
    tags as core_tags,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    GcpProvider, SCHEDULER_IP_ATTEMPTS, access,
    api::{Api, Google, Subnetwork, request_id},
    errors::GcpError,
    instances::{self, Shape},
    labels, options,
};

impl GcpProvider {
    /// An address for the scheduler in the subnet of `zone`'s region, chosen at random among
    /// those Compute does not reserve (network, gateway, the last two).
    pub(crate) async fn scheduler_ip(&self, zone: &str) -> Result<String> {
        let region = options::region_of(zone);
        let sub = self
            .options
            .subnetwork
            .clone()
            .unwrap_or_else(|| self.options.network().to_string());
        let path = self
            .google
            .cp(&format!("/regions/{region}/subnetworks/{sub}"));
        let s: Subnetwork = self
            .google
            .get(Api::Compute, &path, &[])
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| {
                Error::invalid(
                    "--subnetwork",
                    sub.clone(),
                    format!("no such subnetwork in {region}"),
                    Some("name the subnetwork of a custom-mode VPC with --subnetwork".into()),
                )
            })?;
        pick_address(&s.ip_cidr_range).ok_or_else(|| Error::Provider {
            provider: ProviderKind::Gcp,
            operation: format!("GET {path}"),
            message: format!("cannot choose an address in {}", s.ip_cidr_range),
        })
    }

    /// The scheduler's insert bodies at `ip`, one per zone in order.
    pub(crate) fn scheduler_attempts(
        &self,
        ctx: &LaunchContext<'_>,
        ip: &str,
    ) -> Result<Vec<(String, Value)>> {
        let spec = ctx.spec;
        let layout = BootLayout::vm();
        let user_data = render_cloud_init(
            spec,
            &scheduler_intent(spec, &layout, ctx.tls),
            &layout,
            &self.vm_options(spec, false),
        )?;
        let labels = labels::encode_all(&core_tags::node_tags(spec, Role::Scheduler, "scheduler"))?;
        let name = instances::instance_name(&spec.name, "scheduler");
        let email = self.node_account(&spec.name);
        let machine_type = self.options.scheduler_type();
        let now = now_epoch();
        Ok(self
            .options
            .zones
            .iter()
            .map(|z| {
                let shape = Shape {
                    machine_type: &machine_type,
                    zone: z,
                    spot: false,
                    network_ip: Some(ip),
                    external: !self.options.private,
                    bulk: false,
                    gpu: None,
                };
                (
                    z.clone(),
                    instances::body(
                        spec,
                        &self.options,
                        &shape,
                        Some(&name),
                        &labels,
                        &user_data,
                        &email,
                        now,
                    ),
                )
            })
            .collect())
    }

    /// Insert the scheduler again at other addresses after its first was taken; the address
    /// workers dial.
    pub(crate) async fn relaunch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<String> {
        let zone = self.zone()?.to_string();
        let name = instances::instance_name(&ctx.spec.name, "scheduler");
        let mut last = None;
        for _ in 0..SCHEDULER_IP_ATTEMPTS {
            let ip = self.scheduler_ip(&zone).await?;
            let attempts = self.scheduler_attempts(ctx, &ip)?;
            match insert_instance(self.google.clone(), name.clone(), attempts).await {
                Ok(_) => {
                    *self.moved_scheduler.lock().await = Some(ip.clone());
                    return Ok(bootstrap::scheduler_address(
                        bootstrap::scheme(ctx.spec),
                        &ip,
                    ));
                }
                Err(e) if e.is_ip_taken() => last = Some(e),
                Err(e) => return Err(self.err(e)),
            }
        }
        Err(self.err(last.unwrap_or_else(|| GcpError::Unexpected {
            operation: format!("insert instance {name}"),
            message: "no address to try".into(),
        })))
    }
}

/// A random usable address of an IPv4 CIDR (not the network, the gateway, or the last two).
pub fn pick_address(cidr: &str) -> Option<String> {
    let (base, bits) = cidr.split_once('/')?;
    let base: Ipv4Addr = base.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    if !(8..=29).contains(&bits) {
        return None;
    }
    let size = 1u32 << (32 - bits);
    let offset = fastrand::u32(2..size - 2);
    Some(Ipv4Addr::from(u32::from(base) + offset).to_string())
}

/// Insert one instance, trying `attempts` (zone, body) in order while they end in a stockout;
/// each attempt has its own `requestId` (a retried call never creates twice), and a refusal
/// naming a service account that has not propagated yet is retried. The zone that worked.
pub(crate) async fn insert_instance(
    g: Google,
    name: String,
    attempts: Vec<(String, Value)>,
) -> std::result::Result<String, GcpError> {
    let mut last = None;
    for (zone, body) in attempts {
        let rid = request_id();
        let path = g.cp(&format!("/zones/{zone}/instances"));
        let op = retry_while(
            &access::propagation_retry(),
            || g.mutate(Method::POST, &path, Some(&body), &rid),
            GcpError::is_unpropagated_account,
        )
        .await?;
        match g
            .wait(&format!("insert instance {name} in {zone}"), op)
            .await
        {
            Ok(_) => return Ok(zone),
            Err(e) if e.is_capacity() => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| GcpError::Unexpected {
        operation: format!("insert instance {name}"),
        message: "no zone to try".into(),
    }))
}

impl GcpProvider {
    /// All workers of a batch in one `bulkInsert` (named `NAME-worker-<i>`, all or nothing),
    /// trying each zone × machine type × (Spot, standard) while they end in a stockout.
    pub(crate) async fn bulk_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let spec = ctx.spec;
        let layout = BootLayout::vm();
        let user_data = render_cloud_init(
            spec,
            &worker_intent(spec, &layout, ctx.tls, scheduler_address, None),
            &layout,
            &self.vm_options(spec, self.options.gpu.is_some()),
        )?;
        let mut worker_tags = core_tags::cluster_tags(spec);
        worker_tags.insert(core_tags::ROLE.into(), Role::Worker.as_str().into());
        let labels = labels::encode_all(&worker_tags)?;
        let email = self.node_account(&spec.name);
        let names: Vec<String> = batch
            .names()
            .iter()
            .map(|n| instances::instance_name(&spec.name, n))
            .collect();
        let per: serde_json::Map<String, Value> =
            names.iter().map(|n| (n.clone(), json!({}))).collect();
        let gpus = self.options.gpus();
        let models: Vec<bool> = if self.options.spot {
            vec![true, false]
        } else {
            vec![false]
        };
        let now = now_epoch();
        let g = &self.google;
        let mut last: Option<GcpError> = None;
        for zone in &self.options.zones {
            for machine_type in self.options.worker_types() {
                for &spot in &models {
                    let shape = Shape {
                        machine_type: &machine_type,
                        zone,
                        spot,
                        network_ip: None,
                        external: false,
                        bulk: true,
                        gpu: gpus.as_ref(),
                    };
                    let props = instances::body(
                        spec,
                        &self.options,
                        &shape,
                        None,
                        &labels,
                        &user_data,
                        &email,
                        now,
                    );
                    let body = json!({
                        "count": batch.count.to_string(),
                        "minCount": batch.count.to_string(),
                        "perInstanceProperties": per,
                        "instanceProperties": props,
                    });
                    let rid = request_id();
                    let path = g.cp(&format!("/zones/{zone}/instances/bulkInsert"));
                    let op = retry_while(
                        &access::propagation_retry(),
                        || g.mutate(Method::POST, &path, Some(&body), &rid),
                        GcpError::is_unpropagated_account,
                    )
                    .await;
                    let outcome = match op {
                        Ok(op) => g
                            .wait(
                                &format!("bulkInsert of {} workers in {zone}", batch.count),
                                op,
                            )
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    };
                    match outcome {
                        Ok(()) => {
                            return Ok(batch
                                .names()
                                .into_iter()
                                .zip(&names)
                                .map(|(node, name)| Node {
                                    id: format!("zones/{zone}/instances/{name}"),
                                    name: node,
                                    role: Role::Worker,
                                    state: NodeState::Pending,
                                    private_ip: None,
                                    public_ip: None,
                                    created_at: Some(now),
                                    tags: worker_tags.clone(),
                                })
                                .collect());
                        }
                        Err(e) if e.is_capacity() => {
                            ctx.progress.note(&format!(
                                "no capacity for {machine_type}{} in {zone}; trying the next choice",
                                if spot { " (Spot)" } else { "" }
                            ));
                            last = Some(e);
                        }
                        Err(e) => return Err(self.err(e)),
                    }
                }
            }
        }
        Err(self.err(last.unwrap_or_else(|| GcpError::Unexpected {
            operation: "bulkInsert".into(),
            message: "no zone to try".into(),
        })))
    }
}

pub(crate) trait MapOkUnit {
    type Out;
    fn map_ok_unit(self) -> Self::Out;
}

impl<F> MapOkUnit for F
where
    F: std::future::Future<Output = std::result::Result<String, GcpError>> + Send + 'static,
{
    type Out = std::pin::Pin<
        Box<dyn std::future::Future<Output = std::result::Result<(), GcpError>> + Send>,
    >;
    fn map_ok_unit(self) -> Self::Out {
        Box::pin(async move { self.await.map(|_| ()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_addresses_stay_in_the_subnet() {
        for _ in 0..200 {
            let ip: Ipv4Addr = pick_address("10.128.0.0/20").unwrap().parse().unwrap();
            let o = ip.octets();
            assert_eq!((o[0], o[1]), (10, 128));
            assert!(o[2] < 16);
            let n = u32::from(ip) - u32::from(Ipv4Addr::new(10, 128, 0, 0));
            assert!((2..4094).contains(&n), "{ip}");
        }
        assert!(pick_address("10.0.0.0/30").is_none());
        assert!(pick_address("nonsense").is_none());
    }
}

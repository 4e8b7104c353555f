//! Creating the droplets: the scheduler's (awaited until it has its private address, then the
//! name settled against a racing launch), and the workers' in batched create requests with the
//! fallback along the worker sizes when DigitalOcean has no capacity for one.

use clusterctl_core::{
    Error, Result,
    bootstrap::{self, BootLayout, render_cloud_init, scheduler_intent, worker_intent},
    model::{Node, NodeState, ProviderKind, Role},
    provider::{LaunchContext, SchedulerLaunch, WorkerBatch},
    wait::{Deadline, Interval, Poll, poll_until},
};
use futures_util::{StreamExt as _, stream};

use crate::{
    ADDRESS_TIMEOUT, CREATES_IN_FLIGHT, DigitalOceanProvider,
    api::{self, Droplet, DropletCreate, Ref},
    droplets::{self, address, droplet_name, node_of, nodes_of},
};

impl DigitalOceanProvider {
    /// The scheduler's droplet, awaited until it has its private address; then the name is
    /// settled against a launch that raced this one (`settle_claim`).
    pub(crate) async fn start_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        let spec = ctx.spec;
        let r = self.resolve(spec, None).await?;
        let layout = BootLayout::vm();
        let user_data = render_cloud_init(
            spec,
            &scheduler_intent(spec, &layout, ctx.tls),
            &layout,
            &Self::vm_options(spec),
        )?;
        let body = DropletCreate {
            name: Some(droplet_name(spec.name.as_str(), "scheduler")),
            names: None,
            region: self.region()?.to_string(),
            size: r.scheduler_size.clone(),
            image: Ref::parse(self.image()),
            ssh_keys: self.ssh_keys(spec).await?,
            tags: Self::droplet_tags(spec, Role::Scheduler)?,
            user_data,
            vpc_uuid: self.options.vpc.clone(),
            monitoring: self.options.monitoring,
            ipv6: false,
            with_droplet_agent: false,
        };
        self.saw_tags(&body.tags);
        let created = self
            .api
            .create_droplets(&body)
            .await
            .map_err(|e| self.err(e))?;
        let id = created
            .first()
            .map(|d| d.id)
            .ok_or_else(|| Error::Provider {
                provider: ProviderKind::Digitalocean,
                operation: "POST /v2/droplets".into(),
                message: "no droplet in the answer".into(),
            })?;
        // Only the private address is awaited, not `active`: the workers are created while
        // the scheduler boots, and they retry until it listens.
        let node = self
            .wait_for_droplet(
                "waiting for the scheduler droplet's private address",
                id,
                |d| address(d, "private").and_then(|_| node_of(d)),
            )
            .await?;
        self.settle_claim(spec, id).await?;
        let address = node
            .private_ip
            .as_deref()
            .map(|ip| bootstrap::scheduler_address(bootstrap::scheme(spec), ip));
        Ok(SchedulerLaunch { node, address })
    }

    /// A batch of workers: create requests of up to `api::MAX_NAMES_PER_CREATE` droplets,
    /// `CREATES_IN_FLIGHT` at once, each falling back along the worker sizes on capacity errors.
    pub(crate) async fn start_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let spec = ctx.spec;
        let r = self.resolve(spec, None).await?;
        let layout = BootLayout::vm();
        let user_data = render_cloud_init(
            spec,
            &worker_intent(spec, &layout, ctx.tls, scheduler_address, None),
            &layout,
            &Self::vm_options(spec),
        )?;
        let tags = Self::droplet_tags(spec, Role::Worker)?;
        self.saw_tags(&tags);
        let ssh_keys = self.ssh_keys(spec).await?;
        let names: Vec<String> = batch
            .names()
            .iter()
            .map(|n| droplet_name(spec.name.as_str(), n))
            .collect();
        let first = std::sync::atomic::AtomicUsize::new(0);
        let chunks: Vec<Vec<String>> = names
            .chunks(api::MAX_NAMES_PER_CREATE)
            .map(<[String]>::to_vec)
            .collect();
        let results: Vec<Result<Vec<Droplet>>> = stream::iter(chunks)
            .map(|chunk| {
                self.create_with_fallback(
                    ctx,
                    chunk,
                    &r.worker_sizes,
                    &first,
                    &tags,
                    &ssh_keys,
                    &user_data,
                )
            })
            .buffer_unordered(CREATES_IN_FLIGHT)
            .collect()
            .await;
        let mut nodes = Vec::new();
        let mut first_error = None;
        for r in results {
            match r {
                Ok(d) => nodes.extend(nodes_of(&d)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Whatever was created carries the cluster tag: a rollback or `down` finds it.
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(nodes)
    }

    /// Poll droplet `id` until `ready` finds what it needs in it, failing when the droplet
    /// stops or disappears after having been seen.
    pub(crate) async fn wait_for_droplet<T>(
        &self,
        phase: &str,
        id: u64,
        ready: impl Fn(&Droplet) -> Option<T>,
    ) -> Result<T> {
        let seen = std::sync::atomic::AtomicBool::new(false);
        poll_until(
            phase,
            Deadline::after(ADDRESS_TIMEOUT),
            Interval::CLOUD,
            || async {
                let Some(d) = self.api.droplet(id).await.map_err(|e| self.err(e))? else {
                    // Just created droplets may take a moment to be readable.
                    if seen.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(Error::NodeFailed {
                            role: Role::Scheduler,
                            node: id.to_string(),
                            reason: "the droplet was deleted".into(),
                            log_tail: String::new(),
                        });
                    }
                    return Ok(Poll::Pending(format!("droplet {id} not visible yet")));
                };
                seen.store(true, std::sync::atomic::Ordering::Relaxed);
                if let Some(v) = ready(&d) {
                    return Ok(Poll::Ready(v));
                }
                if let NodeState::Failed(reason) = droplets::map_status(&d.status) {
                    return Err(Error::NodeFailed {
                        role: node_of(&d).map_or(Role::Scheduler, |n| n.role),
                        node: d.name.clone(),
                        reason,
                        log_tail: String::new(),
                    });
                }
                if d.status == "archive" {
                    return Err(Error::NodeFailed {
                        role: node_of(&d).map_or(Role::Scheduler, |n| n.role),
                        node: d.name.clone(),
                        reason: "the droplet was destroyed".into(),
                        log_tail: String::new(),
                    });
                }
                Ok(Poll::Pending(format!("droplet {} is {}", d.name, d.status)))
            },
        )
        .await
    }

    /// One create request for `names` with the first size of `sizes` DigitalOcean has
    /// capacity for, from `*first` on (raised for the other requests when a size runs out).
    #[allow(clippy::too_many_arguments)]
    async fn create_with_fallback(
        &self,
        ctx: &LaunchContext<'_>,
        names: Vec<String>,
        sizes: &[String],
        first: &std::sync::atomic::AtomicUsize,
        tags: &[String],
        ssh_keys: &[Ref],
        user_data: &str,
    ) -> Result<Vec<Droplet>> {
        use std::sync::atomic::Ordering;
        let region = self.region()?;
        let mut last = None;
        let mut i = first.load(Ordering::SeqCst);
        while let Some(size) = sizes.get(i) {
            let body = DropletCreate {
                name: None,
                names: Some(names.clone()),
                region: region.to_string(),
                size: size.clone(),
                image: Ref::parse(self.image()),
                ssh_keys: ssh_keys.to_vec(),
                tags: tags.to_vec(),
                user_data: user_data.to_string(),
                vpc_uuid: self.options.vpc.clone(),
                monitoring: self.options.monitoring,
                ipv6: false,
                with_droplet_agent: false,
            };
            match self
                .api
                .create_droplets(&body)
                .await
                .map_err(|e| self.err(e))
            {
                Ok(d) => return Ok(d),
                Err(e @ Error::CapacityUnavailable { .. }) => {
                    ctx.progress.note(&format!(
                        "no capacity for {size} in {region}; trying the next worker size"
                    ));
                    first.fetch_max(i + 1, Ordering::SeqCst);
                    last = Some(e);
                    i = first.load(Ordering::SeqCst).max(i + 1);
                }
                Err(e) => return Err(e),
            }
        }
        Err(match last {
            Some(Error::CapacityUnavailable { message, .. }) => Error::CapacityUnavailable {
                provider: ProviderKind::Digitalocean,
                location: region.to_string(),
                message: format!("{message} (tried {})", sizes.join(", ")),
            },
            Some(other) => other,
            None => Error::CapacityUnavailable {
                provider: ProviderKind::Digitalocean,
                location: region.to_string(),
                message: format!("every worker size ran out ({})", sizes.join(", ")),
            },
        })
    }
}

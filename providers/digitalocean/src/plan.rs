//! The checks before anything exists, and what `--dry-run` shows: options (no API call before
//! they pass), the account (identity, status, droplet limit), the region, the sizes offered
//! there, the image, the VPC, a live cluster of the same name, the tags' lengths, and the
//! rendered cloud-init of each kind of node (private keys elided).

use std::time::Duration;

use clusterctl_core::{
    Error, Result,
    bootstrap::{self, redact_keys, render_cloud_init, scheduler_intent, worker_intent},
    model::{ClusterSpec, NodeSize, NodeState, ProviderKind, Role},
    provider::{LaunchContext, Plan, RenderedBootstrap},
};

use crate::{
    DigitalOceanProvider,
    api::Size,
    claim,
    droplets::{droplet_name, nodes_of},
    firewall,
    options::{self, DEFAULT_SCHEDULER_SIZE, DEFAULT_WORKER_SIZE, offered, pick_sizes},
    tags,
};

/// Most bytes of user-data DigitalOcean accepts.
const MAX_USER_DATA: usize = 64 * 1024;

/// What `plan` learnt of the account.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccountFacts {
    /// "EMAIL (uuid …)".
    pub identity: Option<String>,
    /// Most droplets the team may have.
    pub droplet_limit: Option<u32>,
}

/// The sizes chosen for a cluster.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// The scheduler's size.
    pub scheduler_size: String,
    /// Worker sizes in order of preference.
    pub worker_sizes: Vec<String>,
}

fn wants_pick(size: &NodeSize) -> bool {
    size.cpus.is_some() || size.memory_mib.is_some()
}

impl DigitalOceanProvider {
    /// The sizes for `spec` (cached): the options' slugs, else the smallest fitting the spec's
    /// cpus and memory among the region's (listing sizes only then, or with `sizes` given),
    /// else the defaults.
    pub(crate) async fn resolve(
        &self,
        spec: &ClusterSpec,
        sizes: Option<&[Size]>,
    ) -> Result<&Resolved> {
        self.resolved
            .get_or_try_init(|| async {
                let region = self.region()?;
                let needs_list = (self.options.scheduler_size.is_none()
                    && wants_pick(&spec.scheduler_size))
                    || (self.options.worker_sizes.is_empty() && wants_pick(&spec.worker_size));
                let listed;
                let sizes = match sizes {
                    Some(s) => s,
                    None if needs_list => {
                        listed = self.api.sizes().await.map_err(|e| self.err(e))?;
                        &listed[..]
                    }
                    None => &[][..],
                };
                let scheduler_size = match &self.options.scheduler_size {
                    Some(s) => s.clone(),
                    None if wants_pick(&spec.scheduler_size) => {
                        pick_sizes(sizes, region, &spec.scheduler_size)?.remove(0)
                    }
                    None => DEFAULT_SCHEDULER_SIZE.to_string(),
                };
                let worker_sizes = if !self.options.worker_sizes.is_empty() {
                    self.options.worker_sizes.clone()
                } else if wants_pick(&spec.worker_size) {
                    pick_sizes(sizes, region, &spec.worker_size)?
                } else {
                    vec![DEFAULT_WORKER_SIZE.to_string()]
                };
                Ok(Resolved {
                    scheduler_size,
                    worker_sizes,
                })
            })
            .await
    }

    /// The CIDRs allowed to reach the scheduler and dashboard ports: `--allow-cidr`, else (with
    /// `--private`) the VPC's range.
    pub(crate) async fn allowed_sources(&self) -> Result<Vec<String>> {
        if !self.options.allow_cidrs.is_empty() {
            return Ok(self.options.allow_cidrs.clone());
        }
        let region = self.region()?;
        let given = self.options.vpc.as_deref();
        let (one, all) = match given {
            Some(id) => (self.api.vpc(id).await.map_err(|e| self.err(e))?, Vec::new()),
            None => (None, self.api.vpcs().await.map_err(|e| self.err(e))?),
        };
        Ok(vec![firewall::vpc_range(
            one.as_ref(),
            given,
            &all,
            region,
        )?])
    }

    pub(crate) async fn make_plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        let spec = ctx.spec;
        self.options.validate(spec.private)?;
        let region = self.region()?.to_string();
        let scheduler_tags = Self::droplet_tags(spec, Role::Scheduler)?;
        Self::droplet_tags(spec, Role::Worker)?;
        let mut notes = Vec::new();

        let account = self.api.account().await.map_err(|e| self.err(e))?;
        let facts = AccountFacts {
            identity: account.as_ref().map(|a| {
                format!(
                    "{} (uuid {})",
                    a.email.as_deref().unwrap_or("?"),
                    a.uuid.as_deref().unwrap_or("?")
                )
            }),
            droplet_limit: account.as_ref().and_then(|a| a.droplet_limit),
        };
        let _ = self.account.set(facts.clone());
        if let Some(a) = &account {
            match a.status.as_deref() {
                Some("locked") => {
                    return Err(Error::PermissionDenied {
                        provider: ProviderKind::Digitalocean,
                        action: "creating droplets".into(),
                        message: format!(
                            "the account is locked{}",
                            a.status_message
                                .as_deref()
                                .map(|m| format!(": {m}"))
                                .unwrap_or_default()
                        ),
                    });
                }
                Some("active") | None => {}
                Some(other) => notes.push(format!(
                    "the account's status is `{other}`{}",
                    a.status_message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                )),
            }
        }

        let regions = self.api.regions().await.map_err(|e| self.err(e))?;
        match regions.iter().find(|r| r.slug == region) {
            Some(r) if r.available => {}
            found => {
                let mut open: Vec<&str> = regions
                    .iter()
                    .filter(|r| r.available)
                    .map(|r| r.slug.as_str())
                    .collect();
                open.sort();
                return Err(Error::invalid(
                    "--region",
                    region.clone(),
                    if found.is_some() {
                        "DigitalOcean does not accept new droplets there now"
                    } else {
                        "DigitalOcean has no such region"
                    },
                    Some(format!("available regions: {}", open.join(", "))),
                ));
            }
        }

        let sizes = self.api.sizes().await.map_err(|e| self.err(e))?;
        let r = self.resolve(spec, Some(&sizes)).await?;
        for size in std::iter::once(&r.scheduler_size).chain(&r.worker_sizes) {
            if !sizes.iter().any(|s| s.slug == *size && offered(s, &region)) {
                return Err(Error::invalid(
                    "droplet size",
                    size.clone(),
                    format!("DigitalOcean does not offer it in {region} now"),
                    Some(format!(
                        "sizes offered in {region} include: {}",
                        examples(&sizes, &region).join(", ")
                    )),
                ));
            }
        }

        let image_ref = self.image();
        let image = self
            .api
            .image(image_ref)
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| {
                Error::invalid(
                    "--droplet-image",
                    image_ref,
                    "DigitalOcean has no such image",
                    Some(format!(
                        "leave it unset for `{}`, or see `doctl compute image list-distribution`",
                        options::DEFAULT_IMAGE
                    )),
                )
            })?;
        if !image.regions.is_empty() && !image.regions.contains(&region) {
            return Err(Error::invalid(
                "--droplet-image",
                image_ref,
                format!("the image is not available in {region}"),
                Some(format!("it is in: {}", image.regions.join(", "))),
            ));
        }

        let allowed = self.allowed_sources().await?;

        let cluster_tag = tags::cluster_tag(&spec.name);
        let existing = nodes_of(
            &self
                .api
                .droplets_by_tag(&cluster_tag)
                .await
                .map_err(|e| self.err(e))?,
        );
        if existing.iter().any(|n| n.state != NodeState::Terminated) {
            return Err(Error::AlreadyExists {
                name: spec.name.to_string(),
                provider: ProviderKind::Digitalocean,
            });
        }
        if let Some(limit) = facts.droplet_limit {
            let have = self.api.droplet_count().await.map_err(|e| self.err(e))?;
            let want = 1 + u64::from(spec.workers);
            if have + want > u64::from(limit) {
                return Err(Error::QuotaExceeded {
                    provider: ProviderKind::Digitalocean,
                    message: format!(
                        "the cluster needs {want} droplets, the account has {have}, and its droplet limit is {limit}; \
                         use fewer workers, delete droplets, or ask DigitalOcean for a higher limit \
                         (https://cloud.digitalocean.com/account/team/droplet_limit_increase)"
                    ),
                });
            }
        }

        let layout = clusterctl_core::bootstrap::BootLayout::vm();
        let vm = Self::vm_options(spec);
        let s = scheduler_intent(spec, &layout, ctx.tls);
        let address =
            bootstrap::scheduler_address(bootstrap::scheme(spec), "<scheduler private IP>");
        let w = worker_intent(spec, &layout, ctx.tls, &address, None);
        let mut bootstraps = Vec::new();
        for (role, intent) in [(Role::Scheduler, &s), (Role::Worker, &w)] {
            let text = render_cloud_init(spec, intent, &layout, &vm)?;
            if text.len() > MAX_USER_DATA {
                return Err(Error::invalid(
                    "environment",
                    format!("{} bytes of {role} user-data", text.len()),
                    "DigitalOcean accepts at most 64 KiB of user-data",
                    Some("pass fewer or shorter `--env` values".into()),
                ));
            }
            bootstraps.push(RenderedBootstrap {
                role,
                format: "cloud-init".into(),
                text: redact_keys(&text),
            });
        }

        let name = &spec.name;
        let vpc = self.options.vpc.as_deref().map_or_else(
            || format!("the default VPC of {region}"),
            |v| format!("VPC {v}"),
        );
        let mut resources = vec![
            format!(
                "SSH key `{}` (made first: it claims the name and carries the expiry `gc` reads; \
                 ed25519 made in memory, its private key thrown away{})",
                claim::key_name(spec),
                if self.options.ssh_keys.is_empty() {
                    ""
                } else {
                    "; the droplets get your `--ssh-key`s instead"
                }
            ),
            format!("tag {cluster_tag} (the cluster's droplets; the firewall applies to it)"),
        ];
        resources.push(format!(
            "cloud firewall {} on tag {cluster_tag}: tcp {}-{} from {}; tcp, udp and icmp between members; all outbound",
            firewall::firewall_name(name),
            bootstrap::SCHEDULER_PORT,
            bootstrap::DASHBOARD_PORT,
            allowed.join(", ")
        ));
        resources.push(format!(
            "1 scheduler droplet {} ({}) in {region}, {vpc}, tags {}",
            droplet_name(name.as_str(), "scheduler"),
            r.scheduler_size,
            scheduler_tags.join(" ")
        ));
        if spec.workers > 0 {
            resources.push(format!(
                "{} worker droplet(s) {}..{} ({}) in {region}, created up to ten per request",
                spec.workers,
                droplet_name(name.as_str(), "worker-0"),
                droplet_name(name.as_str(), &format!("worker-{}", spec.workers - 1)),
                r.worker_sizes.join(", then ")
            ));
        }
        notes.push(format!(
            "a powered-off droplet is still billed: at the TTL ({}) the nodes power off, but billing continues until \
             `clusterctl down {name}` (or `clusterctl down --expired`) deletes them",
            humantime::format_duration(Duration::from_secs(spec.ttl.as_secs()))
        ));
        notes.push(
            "user_data holds the nodes' TLS keys: DigitalOcean never returns user_data through its API \
             (processes on the droplets can read it from the metadata service)"
                .into(),
        );
        notes.push(format!(
            "image {image_ref}{}; Docker is installed at boot; containers run {}",
            match (&image.distribution, &image.name) {
                (Some(d), Some(n)) => format!(" ({d} {n})"),
                (None, Some(n)) => format!(" ({n})"),
                _ => String::new(),
            },
            spec.image
        ));
        if self.options.ssh_keys.is_empty() {
            notes.push(
                "no `--ssh-key`: the throwaway key only stops DigitalOcean e-mailing root passwords; nobody can log in"
                    .into(),
            );
        }
        if !spec.private {
            notes.push("the scheduler's public address is published; clients connect to it".into());
        }
        Ok(Plan {
            identity: facts.identity,
            resources,
            bootstraps,
            notes,
        })
    }
}

/// A few sizes offered in `region`, cheapest first, for error hints.
fn examples(sizes: &[Size], region: &str) -> Vec<String> {
    let mut offered: Vec<&Size> = sizes
        .iter()
        .filter(|s| offered(s, region) && s.gpu_info.is_none())
        .collect();
    offered.sort_by(|a, b| a.price_hourly.total_cmp(&b.price_hourly));
    let mut shown: Vec<String> = offered.iter().take(8).map(|s| s.slug.clone()).collect();
    if shown.is_empty() {
        shown.push("none".into());
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_list_cheap_offered_sizes() {
        let s = |slug: &str, price: f64, region: &str| Size {
            slug: slug.into(),
            vcpus: 2,
            memory: 4096,
            price_hourly: price,
            regions: vec![region.into()],
            available: true,
            gpu_info: None,
        };
        let sizes = [
            s("b", 2.0, "nyc3"),
            s("a", 1.0, "nyc3"),
            s("c", 0.5, "sfo3"),
        ];
        assert_eq!(examples(&sizes, "nyc3"), ["a", "b"]);
        assert_eq!(examples(&sizes, "ams3"), ["none"]);
    }
}

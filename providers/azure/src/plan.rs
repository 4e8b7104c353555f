//! The checks before anything exists, and what `--dry-run` shows: options (no call before they
//! pass), the identity and subscription, the location, the VM sizes offered there to this
//! subscription, the image, the vCPU quotas (family, regional, Spot) against what the cluster
//! needs, an existing `--resource-group`, and the rendered cloud-init of each kind of node
//! (private keys elided).

use clusterctl_core::{
    Error, Result,
    bootstrap::{self, BootLayout, redact_keys, render_cloud_init, worker_intent},
    model::{ProviderKind, Role},
    provider::{LaunchContext, Plan, RenderedBootstrap},
};

use crate::{
    AzureProvider,
    api::{
        COMPUTE_API, Location, RESOURCES_API, ResourceGroup, SKUS_API, SUBSCRIPTIONS_API, Sku,
        Subscription, Usage,
    },
    network, vms,
};

/// Most base64 characters of `customData` ARM accepts (65,535 bytes decoded).
const MAX_CUSTOM_DATA: usize = 87_380;

impl AzureProvider {
    pub(crate) async fn make_plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        let spec = ctx.spec;
        self.options.validate_for_up()?;
        let location = self.location()?;
        let mut identity = self.arm.credential().identity().await;
        let sub: Subscription = self
            .arm
            .get(&self.arm.sub(), SUBSCRIPTIONS_API, &[])
            .await
            .map_err(|e| self.err(e))?
            .ok_or_else(|| {
                Error::invalid(
                    "--subscription",
                    self.arm.subscription.clone(),
                    "no such subscription",
                    Some("check `az account list`".into()),
                )
            })?;
        identity.push_str(&format!(
            ", subscription {}{}",
            sub.subscription_id,
            sub.display_name
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ));
        let _ = self.identity.set(identity.clone());
        if let Some(state) = sub
            .state
            .as_deref()
            .filter(|s| !s.eq_ignore_ascii_case("Enabled"))
        {
            return Err(Error::PermissionDenied {
                provider: ProviderKind::Azure,
                action: "creating resources".into(),
                message: format!("the subscription is {state} (acting as {identity})"),
            });
        }

        // Before anything else exists: the self-deleting TTL's role assignment is allowed.
        self.check_grant_permission(&spec.name).await?;

        let locations: Vec<Location> = self
            .arm
            .list(
                &format!("{}/locations", self.arm.sub()),
                SUBSCRIPTIONS_API,
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        if !locations.iter().any(|l| l.name == location) {
            let mut names: Vec<&str> = locations.iter().map(|l| l.name.as_str()).collect();
            names.sort();
            return Err(Error::invalid(
                "--location",
                location,
                "not a location of this subscription",
                Some(format!("one of: {}", names.join(", "))),
            ));
        }

        let skus: Vec<Sku> = self
            .arm
            .list(
                &format!("{}/providers/Microsoft.Compute/skus", self.arm.sub()),
                SKUS_API,
                &[("$filter", &format!("location eq '{location}'"))],
            )
            .await
            .map_err(|e| self.err(e))?;
        let offered = |name: &str| {
            skus.iter().find(|s| {
                s.resource_type == "virtualMachines"
                    && s.name.eq_ignore_ascii_case(name)
                    && s.locations.iter().any(|l| l.eq_ignore_ascii_case(location))
                    && !s.restrictions.iter().any(|r| r.kind == "Location")
            })
        };
        let scheduler_size = self.options.scheduler_size();
        let worker_sizes = self.options.worker_sizes();
        let mut examples: Vec<&str> = skus
            .iter()
            .filter(|s| s.resource_type == "virtualMachines" && s.restrictions.is_empty())
            .map(|s| s.name.as_str())
            .take(8)
            .collect();
        examples.sort();
        for (flag, size) in std::iter::once(("--scheduler-vm-size", &scheduler_size))
            .chain(worker_sizes.iter().map(|s| ("--worker-vm-size", s)))
        {
            if offered(size).is_none() {
                return Err(Error::invalid(
                    flag,
                    size.clone(),
                    format!("not offered in {location} to this subscription"),
                    Some(format!(
                        "sizes offered there include: {}",
                        examples.join(", ")
                    )),
                ));
            }
        }

        let image = self.options.image()?;
        let versions: Vec<serde_json::Value> = self
            .arm
            .get(
                &format!(
                    "{}/providers/Microsoft.Compute/locations/{location}/publishers/{}/artifacttypes/vmimage/offers/{}/skus/{}/versions",
                    self.arm.sub(),
                    image.publisher,
                    image.offer,
                    image.sku
                ),
                COMPUTE_API,
                &[],
            )
            .await
            .map_err(|e| self.err(e))?
            .unwrap_or_default();
        if versions.is_empty() {
            return Err(Error::invalid(
                "--azure-image",
                self.options.image.clone().unwrap_or_default(),
                format!("no such image in {location}"),
                Some(format!("e.g. `{}`", crate::options::DEFAULT_IMAGE)),
            ));
        }

        self.check_quota(
            location,
            offered(&scheduler_size),
            offered(&worker_sizes[0]),
            spec.workers,
        )
        .await?;

        if let Some(g) = &self.options.resource_group {
            let found: Option<ResourceGroup> = self
                .arm
                .get(&self.arm.group(g), RESOURCES_API, &[])
                .await
                .map_err(|e| self.err(e))?;
            if found.is_none() {
                return Err(Error::invalid(
                    "--resource-group",
                    g.clone(),
                    "no such resource group in this subscription",
                    Some(
                        "create it first, or drop --resource-group to have one made per cluster"
                            .into(),
                    ),
                ));
            }
        }

        let layout = BootLayout::vm();
        let vm = Self::vm_options(spec);
        let s = self.scheduler_boot(spec, &layout, ctx.tls);
        let address =
            bootstrap::scheduler_address(bootstrap::scheme(spec), "<scheduler private IP>");
        let w = worker_intent(spec, &layout, ctx.tls, &address, None);
        let mut bootstraps = Vec::new();
        for (role, intent) in [(Role::Scheduler, &s), (Role::Worker, &w)] {
            let text = render_cloud_init(spec, intent, &layout, &vm)?;
            if text.len().div_ceil(3) * 4 > MAX_CUSTOM_DATA {
                return Err(Error::invalid(
                    "environment",
                    format!("{} bytes of {role} cloud-init", text.len()),
                    "Azure accepts at most 64 KiB of customData",
                    Some("pass fewer or shorter `--env` values".into()),
                ));
            }
            bootstraps.push(RenderedBootstrap {
                role,
                format: "cloud-init (VM customData, base64)".into(),
                text: redact_keys(&text),
            });
        }

        let name = &spec.name;
        let rg = self.group(name);
        let mut resources = Vec::new();
        if self.own_group() {
            resources.push(format!("resource group {rg} in {location} (made first: it claims the name; `down` deletes it with everything in it)"));
        } else {
            resources.push(format!(
                "in the existing resource group {rg} (kept by `down`)"
            ));
        }
        match &self.options.subnet {
            Some(s) => resources.push(format!("in the existing subnet {s}")),
            None => resources.push(format!(
                "virtual network {} {} with subnet {} {}",
                vms::vnet_name(name),
                crate::options::VNET_PREFIX,
                network::SUBNET_NAME,
                crate::options::SUBNET_PREFIX
            )),
        }
        resources.push(format!(
            "network security group {}: tcp {}-{} from {}; members of the VNet reach each other (Azure's default rules)",
            vms::nsg_name(name),
            bootstrap::SCHEDULER_PORT,
            bootstrap::DASHBOARD_PORT,
            if self.options.allow_cidrs.is_empty() { "nowhere outside the VNet".into() } else { self.options.allow_cidrs.join(", ") }
        ));
        if !self.options.private {
            resources.push(format!(
                "public IP {} (Standard, static) for the scheduler only",
                vms::public_ip_name(name)
            ));
        }
        resources.push(format!(
            "VM {} ({scheduler_size}) and its NIC; the NIC first, so the workers get its private IP at once{}",
            vms::vm_name(name, "scheduler"),
            if self.own_group() { "; a system-assigned managed identity with role Contributor on the group only (its TTL deletes the group)" } else { "" }
        ));
        resources.push(format!(
            "{} worker VMs {} ({}{}) with their NICs, no public IP",
            spec.workers,
            vms::vm_name(name, "worker-<i>"),
            worker_sizes.join(" → "),
            if self.options.spot {
                ", Spot first, then regular"
            } else {
                ""
            }
        ));
        let notes = vec![
            format!("image {}:{}:{}:{}; Docker is installed at boot", image.publisher, image.offer, image.sku, image.version),
            format!(
                "admin user {} with {}; no password",
                crate::ADMIN_USER,
                if self.options.ssh_public_key.is_some() { "your SSH public key" } else { "a throwaway SSH key whose private half is discarded" }
            ),
            "node TLS keys travel in customData, which ARM never returns (VM GET/List, instance metadata); nothing is put in userData".into(),
            self.ttl_note(name),
        ];
        Ok(Plan {
            identity: Some(identity),
            resources,
            bootstraps,
            notes,
        })
    }

    /// Refuse before anything exists when the cluster's vCPUs exceed a quota (family, regional,
    /// or Spot): `QuotaExceeded` naming the quota, its numbers and the location.
    async fn check_quota(
        &self,
        location: &str,
        scheduler: Option<&Sku>,
        worker: Option<&Sku>,
        workers: u32,
    ) -> Result<()> {
        let usages: Vec<Usage> = self
            .arm
            .list(
                &format!(
                    "{}/providers/Microsoft.Compute/locations/{location}/usages",
                    self.arm.sub()
                ),
                COMPUTE_API,
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        let mut need: Vec<(String, i64)> = Vec::new();
        let mut add = |key: String, n: i64| match need.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v += n,
            None => need.push((key, n)),
        };
        if let Some(s) = scheduler {
            add(s.family.clone().unwrap_or_default(), s.vcpus().into());
            add("cores".into(), s.vcpus().into());
        }
        if let Some(w) = worker {
            let n = i64::from(w.vcpus()) * i64::from(workers);
            if self.options.spot {
                add("lowPriorityCores".into(), n);
            } else {
                add(w.family.clone().unwrap_or_default(), n);
                add("cores".into(), n);
            }
        }
        for (key, n) in need {
            if let Some(u) = usages
                .iter()
                .find(|u| u.name.value.eq_ignore_ascii_case(&key))
                && u.current_value + n > u.limit
            {
                let what = u
                    .name
                    .localized_value
                    .clone()
                    .unwrap_or_else(|| key.clone());
                return Err(Error::QuotaExceeded {
                    provider: ProviderKind::Azure,
                    message: format!(
                        "{what} in {location}: the cluster needs {n}, {} of {} are in use",
                        u.current_value, u.limit
                    ),
                });
            }
        }
        Ok(())
    }
}

//! What a user can choose for Azure (location, subscription, ARM endpoint, resource group,
//! subnet, allowed CIDRs, image, VM sizes, OS disk, Spot, SSH key), validated before any call,
//! and the defaults.

use clusterctl_core::{Error, Result, model::validate_cidr};
use serde::{Deserialize, Serialize};

/// ARM in Azure's public cloud.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";
/// The environment variable naming another ARM endpoint (sovereign clouds, a simulator).
pub const ENDPOINT_ENV: &str = "AZURE_RESOURCE_MANAGER_ENDPOINT";
/// The environment variable naming the subscription.
pub const SUBSCRIPTION_ENV: &str = "AZURE_SUBSCRIPTION_ID";
/// The default image: Canonical's Ubuntu 24.04 LTS (Gen2, x64). Docker is installed at boot
/// (`docker.io` from Ubuntu's archive; see docs/architecture.md for what it costs).
pub const DEFAULT_IMAGE: &str = "Canonical:ubuntu-24_04-lts:server:latest";
/// The default scheduler size: general purpose Dsv5, 2 vCPUs and 8 GiB (not burstable B-series:
/// the scheduler is one latency-sensitive event loop).
pub const DEFAULT_SCHEDULER_SIZE: &str = "Standard_D2s_v5";
/// The default worker size: Dsv5, 4 vCPUs and 16 GiB, 4 GiB per Dask thread.
pub const DEFAULT_WORKER_SIZE: &str = "Standard_D4s_v5";
/// The default OS disk size in GiB (Ubuntu, Docker and the Dask image fit with room to spill).
pub const DEFAULT_OS_DISK_GIB: u32 = 64;
/// The VNet's address space when clusterctl creates the network, and the nodes' subnet.
pub const VNET_PREFIX: &str = "10.42.0.0/16";
/// The nodes' subnet in [`VNET_PREFIX`].
pub const SUBNET_PREFIX: &str = "10.42.0.0/20";

/// Azure settings beyond the common cluster spec (flags, or the config file's `azure:`
/// section). Serialized into the local record so that `scale` and `down` act like `up` did.
/// Credentials are never options (see [`crate::credential`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AzureOptions {
    /// The location, e.g. `eastus` (required to create a cluster).
    pub location: Option<String>,
    /// The subscription id (else `AZURE_SUBSCRIPTION_ID`, else the Azure CLI's default).
    pub subscription: Option<String>,
    /// The ARM endpoint (else `AZURE_RESOURCE_MANAGER_ENDPOINT`, else [`DEFAULT_ENDPOINT`]).
    pub endpoint: Option<String>,
    /// An existing resource group to create the cluster in (default: `clusterctl-NAME`,
    /// created, and deleted by `down`).
    pub resource_group: Option<String>,
    /// An existing subnet's ARM id (default: a VNet and subnet in the cluster's group).
    pub subnet: Option<String>,
    /// CIDRs allowed to reach the scheduler and dashboard ports (required unless `private`).
    pub allow_cidrs: Vec<String>,
    /// The client reaches the scheduler on its private address (needs `subnet`).
    pub private: bool,
    /// The image URN `publisher:offer:sku:version` (default [`DEFAULT_IMAGE`]).
    pub image: Option<String>,
    /// The scheduler's VM size (default [`DEFAULT_SCHEDULER_SIZE`]).
    pub scheduler_vm_size: Option<String>,
    /// The workers' VM sizes in order of preference; the next is tried when Azure has no
    /// capacity for one (default [`DEFAULT_WORKER_SIZE`]).
    pub worker_vm_sizes: Vec<String>,
    /// OS disk size in GiB (default [`DEFAULT_OS_DISK_GIB`]).
    pub os_disk_gib: Option<u32>,
    /// Workers on Spot (eviction Delete, max price -1), falling back to regular VMs.
    pub spot: bool,
    /// The user's SSH public key (an OpenSSH line, or a file holding one) for the admin user;
    /// default: a throwaway key whose private half is discarded.
    pub ssh_public_key: Option<String>,
    /// What ends the cluster at its TTL when nobody runs `down`: [`TTL_DELETE_GROUP`] (default:
    /// the scheduler's managed identity deletes the cluster's own group; `up` needs
    /// `Microsoft.Authorization/roleAssignments/write`) or [`TTL_POWER_OFF`] (the VMs power off
    /// and stay allocated: Azure bills them until `down`).
    pub ttl_mode: Option<String>,
}

/// `--azure-ttl-mode delete-group`.
pub const TTL_DELETE_GROUP: &str = "delete-group";
/// `--azure-ttl-mode power-off`.
pub const TTL_POWER_OFF: &str = "power-off";

/// A parsed image URN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUrn {
    /// E.g. `Canonical`.
    pub publisher: String,
    /// E.g. `ubuntu-24_04-lts`.
    pub offer: String,
    /// E.g. `server`.
    pub sku: String,
    /// E.g. `latest`.
    pub version: String,
}

/// Parse `publisher:offer:sku:version`.
pub fn parse_image(urn: &str) -> Result<ImageUrn> {
    let parts: Vec<&str> = urn.split(':').collect();
    let ok = parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    if !ok {
        return Err(Error::invalid(
            "--azure-image",
            urn,
            "not an image URN publisher:offer:sku:version",
            Some(format!("e.g. `{DEFAULT_IMAGE}`")),
        ));
    }
    Ok(ImageUrn {
        publisher: parts[0].into(),
        offer: parts[1].into(),
        sku: parts[2].into(),
        version: parts[3].into(),
    })
}

/// Validate a location name like `eastus` (not the display name "East US").
pub fn validate_location(location: &str) -> Result<()> {
    let ok = !location.is_empty()
        && location.len() <= 40
        && location
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        let suggestion: String = location
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Err(Error::invalid(
            "--location",
            location,
            "not an Azure location name (lowercase letters and digits)",
            Some(format!(
                "use the name, not the display name: e.g. `{}` (`az account list-locations -o table`)",
                if suggestion.is_empty() {
                    "eastus".into()
                } else {
                    suggestion
                }
            )),
        ))
    }
}

/// Validate a resource group name: 1–90 of letters, digits, `-_.()`, not ending in `.`.
pub fn validate_group(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 90
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "-_.()".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--resource-group",
            name,
            "not a valid resource group name (1-90 letters, digits, '-', '_', '.', '(', ')'; no trailing '.')",
            Some(
                "name an existing group, or drop --resource-group to have one made per cluster"
                    .into(),
            ),
        ))
    }
}

/// Validate a VM size name like `Standard_D4s_v5`.
pub fn validate_size(flag: &'static str, size: &str) -> Result<()> {
    let ok = size.len() <= 64
        && (size.starts_with("Standard_") || size.starts_with("Basic_"))
        && size
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            flag,
            size,
            "not an Azure VM size name",
            Some(format!(
                "e.g. `{DEFAULT_WORKER_SIZE}` (`az vm list-sizes --location <location>`)"
            )),
        ))
    }
}

/// Validate a subnet's ARM id.
pub fn validate_subnet(id: &str) -> Result<()> {
    let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
    let ok = parts.len() == 10
        && parts[0].eq_ignore_ascii_case("subscriptions")
        && parts[2].eq_ignore_ascii_case("resourceGroups")
        && parts[4].eq_ignore_ascii_case("providers")
        && parts[5].eq_ignore_ascii_case("Microsoft.Network")
        && parts[6].eq_ignore_ascii_case("virtualNetworks")
        && parts[8].eq_ignore_ascii_case("subnets");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--subnet",
            id,
            "not a subnet's ARM id",
            Some("/subscriptions/<s>/resourceGroups/<g>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>".into()),
        ))
    }
}

impl AzureOptions {
    /// Check every option's format (no call). Creating a cluster needs more: see
    /// [`Self::validate_for_up`].
    pub fn validate_formats(&self) -> Result<()> {
        if let Some(l) = &self.location {
            validate_location(l)?;
        }
        if let Some(g) = &self.resource_group {
            validate_group(g)?;
        }
        if let Some(s) = &self.subnet {
            validate_subnet(s)?;
        }
        if let Some(i) = &self.image {
            parse_image(i)?;
        }
        if let Some(s) = &self.scheduler_vm_size {
            validate_size("--scheduler-vm-size", s)?;
        }
        for s in &self.worker_vm_sizes {
            validate_size("--worker-vm-size", s)?;
        }
        if let Some(g) = self.os_disk_gib
            && !(30..=4095).contains(&g)
        {
            return Err(Error::invalid(
                "--os-disk-size",
                g.to_string(),
                "an OS disk is 30 to 4095 GiB",
                Some(format!("the default is {DEFAULT_OS_DISK_GIB}")),
            ));
        }
        for c in &self.allow_cidrs {
            validate_cidr(c)?;
        }
        if let Some(m) = &self.ttl_mode
            && m != TTL_DELETE_GROUP
            && m != TTL_POWER_OFF
        {
            return Err(Error::invalid(
                "--azure-ttl-mode",
                m.clone(),
                "not a TTL mode",
                Some(format!(
                    "`{TTL_DELETE_GROUP}` (default: the cluster deletes its own resource group at the TTL) or `{TTL_POWER_OFF}` (the VMs only power off, and Azure keeps billing them until `down`)"
                )),
            ));
        }
        if let Some(e) = &self.endpoint {
            clusterctl_core::rest::parse_base_url(e).map_err(|m| {
                Error::invalid(
                    "--azure-endpoint",
                    e.clone(),
                    m,
                    Some(format!("e.g. `{DEFAULT_ENDPOINT}`")),
                )
            })?;
        }
        Ok(())
    }

    /// What `up` needs besides formats: a location, and either allowed CIDRs or `--private`
    /// with a subnet clusterctl's machine is in.
    pub fn validate_for_up(&self) -> Result<()> {
        self.validate_formats()?;
        if self.location.is_none() {
            return Err(Error::invalid(
                "--location",
                "",
                "Azure needs a location to create the cluster in",
                Some("pass `--location eastus` (or `--region`)".into()),
            ));
        }
        if self.private {
            if self.subnet.is_none() {
                return Err(Error::invalid(
                    "--private",
                    "true",
                    "a private cluster is reached on its private address, so it must be in a subnet this machine can reach; a VNet made for the cluster is not",
                    Some("pass `--subnet <the subnet's ARM id>` of a VNet this machine is in, or drop --private and pass --allow-cidr".into()),
                ));
            }
        } else if self.allow_cidrs.is_empty() {
            return Err(Error::invalid(
                "--allow-cidr",
                "",
                "nothing may reach the scheduler: the cluster's security group opens the scheduler and dashboard ports only to --allow-cidr",
                Some("pass `--allow-cidr <your public address>/32` (never 0.0.0.0/0 unless you mean it), or --private with --subnet".into()),
            ));
        }
        Ok(())
    }

    /// The image.
    pub fn image(&self) -> Result<ImageUrn> {
        parse_image(self.image.as_deref().unwrap_or(DEFAULT_IMAGE))
    }

    /// The scheduler's size.
    pub fn scheduler_size(&self) -> String {
        self.scheduler_vm_size
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEDULER_SIZE.into())
    }

    /// The workers' sizes in order.
    pub fn worker_sizes(&self) -> Vec<String> {
        if self.worker_vm_sizes.is_empty() {
            vec![DEFAULT_WORKER_SIZE.into()]
        } else {
            self.worker_vm_sizes.clone()
        }
    }

    /// The OS disk size in GiB.
    pub fn os_disk(&self) -> u32 {
        self.os_disk_gib.unwrap_or(DEFAULT_OS_DISK_GIB)
    }

    /// Whether the TTL only powers the VMs off (`--azure-ttl-mode power-off`).
    pub fn ttl_power_off(&self) -> bool {
        self.ttl_mode.as_deref() == Some(TTL_POWER_OFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(validate_location("eastus").is_ok());
        assert!(validate_location("East US").is_err());
        assert!(validate_group("clusterctl-a_b.(c)").is_ok());
        for bad in ["", "a.", "bad name!", &"x".repeat(91)] {
            assert!(validate_group(bad).is_err(), "{bad}");
        }
        assert!(validate_size("--worker-vm-size", "Standard_D4s_v5").is_ok());
        assert!(validate_size("--worker-vm-size", "d4s").is_err());
        assert_eq!(
            parse_image(DEFAULT_IMAGE).unwrap().offer,
            "ubuntu-24_04-lts"
        );
        assert!(parse_image("Canonical:ubuntu").is_err());
        assert!(validate_subnet("/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/n").is_ok());
        assert!(validate_subnet("subnet-1").is_err());
        let mut o = AzureOptions::default();
        for (mode, ok) in [("power-off", true), ("delete-group", true), ("off", false)] {
            o.ttl_mode = Some(mode.into());
            assert_eq!(o.validate_formats().is_ok(), ok, "{mode}");
        }
        assert!(!o.ttl_power_off());
    }

    #[test]
    fn up_needs_a_location_and_a_way_in() {
        let mut o = AzureOptions {
            location: Some("eastus".into()),
            ..Default::default()
        };
        assert!(o.validate_for_up().is_err(), "no --allow-cidr");
        o.allow_cidrs = vec!["203.0.113.7/32".into()];
        assert!(o.validate_for_up().is_ok());
        o.private = true;
        assert!(o.validate_for_up().is_err(), "--private without a subnet");
        o.subnet = Some("/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v/subnets/n".into());
        assert!(o.validate_for_up().is_ok());
        o.location = None;
        assert!(o.validate_for_up().is_err());
    }
}

//! The Azure provider's options: flags beat the file's `azure:` section. The keys are those of
//! `clusterctl_azure::AzureOptions`; `--location`/`--region`, `--subnet` (the first given),
//! `--spot`, `--allow-cidr` and `--private` are shared with the other clouds. Credentials are
//! never settings: the provider reads them from its environment.

use crate::cli::UpArgs;

use super::list;

/// The Azure options.
pub(super) fn azure_options(
    args: &UpArgs,
    file: Option<&crate::config::AzureSection>,
    region: Option<&str>,
    private: bool,
) -> serde_json::Value {
    let f = file.cloned().unwrap_or_default();
    let a = &args.azure;
    serde_json::json!({
        "location": region.map(str::to_string).or(f.location),
        "subscription": a.subscription.clone().or(f.subscription),
        "endpoint": a.azure_endpoint.clone().or(f.endpoint),
        "resource_group": a.resource_group.clone().or(f.resource_group),
        "subnet": args.aws.subnets.first().cloned().or(f.subnet),
        "allow_cidrs": list(&args.net.allow_cidrs, f.allow_cidrs),
        "private": private,
        "image": a.azure_image.clone().or(f.image),
        "scheduler_vm_size": a.scheduler_vm_size.clone().or(f.scheduler_vm_size),
        "worker_vm_sizes": list(&a.worker_vm_sizes, f.worker_vm_sizes),
        "os_disk_gib": a.os_disk_gib.or(f.os_disk_gib),
        "spot": args.aws.spot || f.spot.unwrap_or(false),
        "ssh_public_key": a.ssh_public_key.clone().or(f.ssh_public_key),
        "ttl_mode": a.azure_ttl_mode.clone().or(f.ttl_mode),
    })
}

/// The Azure part of [`super::scope_options`]: the subscription, resource group and ARM endpoint
/// from flags or the file's `azure:` section.
pub(super) fn scope_options(
    scope: &crate::cli::AzureScope,
    file: Option<&crate::config::AzureSection>,
) -> serde_json::Value {
    let f = file.cloned().unwrap_or_default();
    serde_json::json!({
        "subscription": scope.subscription.clone().or(f.subscription),
        "resource_group": scope.resource_group.clone().or(f.resource_group),
        "endpoint": f.endpoint,
    })
}

//! The Google Compute Engine provider's options: flags beat the file's `gcp:` section. The keys
//! are those of `clusterctl_gcp::GcpOptions`; `--region` (as the zone when no `--zone` is
//! given), `--spot`, `--allow-cidr` and `--private` are shared with the other clouds.
//! Credentials are never settings: the provider reads Application Default Credentials.

use crate::cli::UpArgs;

use super::list;

/// The GCP options.
pub(super) fn gcp_options(
    args: &UpArgs,
    file: Option<&crate::config::GcpSection>,
    region: Option<&str>,
    private: bool,
) -> serde_json::Value {
    let f = file.cloned().unwrap_or_default();
    let g = &args.gcp;
    let zones = if !g.zones.is_empty() {
        g.zones.clone()
    } else if let Some(r) = region {
        vec![r.to_string()]
    } else {
        f.zones
    };
    serde_json::json!({
        "project": g.project.clone().or(f.project),
        "zones": zones,
        "endpoint": g.gcp_endpoint.clone().or(f.endpoint),
        "network": g.network.clone().or(f.network),
        "subnetwork": g.subnetwork.clone().or(f.subnetwork),
        "allow_cidrs": list(&args.net.allow_cidrs, f.allow_cidrs),
        "private": private,
        "image": g.gcp_image.clone().or(f.image),
        "scheduler_machine_type": g.scheduler_machine_type.clone().or(f.scheduler_machine_type),
        "worker_machine_types": list(&g.worker_machine_types, f.worker_machine_types),
        "boot_disk_gb": g.boot_disk_gb.or(f.boot_disk_gb),
        "spot": args.aws.spot || f.spot.unwrap_or(false),
        "service_account": g.service_account.clone().or(f.service_account),
        "gpu": g.gpu.clone().or(f.gpu),
    })
}

//! The DigitalOcean provider's options: flags beat the file's `digitalocean:` section. The keys
//! are those of `clusterctl_digitalocean::DigitalOceanOptions`; `--region`, `--vpc`,
//! `--allow-cidr` and `--private` are shared with the other clouds. The API token is never a
//! setting: the provider reads it from its environment.

use crate::cli::UpArgs;

use super::list;

/// The DigitalOcean options.
pub(super) fn digitalocean_options(
    args: &UpArgs,
    file: Option<&crate::config::DigitalOceanSection>,
    region: Option<&str>,
    private: bool,
) -> serde_json::Value {
    let f = file.cloned().unwrap_or_default();
    let d = &args.digitalocean;
    serde_json::json!({
        "region": region,
        "api_url": d.digitalocean_api_url.clone().or(f.api_url),
        "vpc": args.net.vpc.clone().or(f.vpc),
        "allow_cidrs": list(&args.net.allow_cidrs, f.allow_cidrs),
        "private": private,
        "image": d.droplet_image.clone().or(f.droplet_image),
        "scheduler_size": d.scheduler_size.clone().or(f.scheduler_size),
        "worker_sizes": list(&d.worker_sizes, f.worker_sizes),
        "ssh_keys": list(&d.ssh_keys, f.ssh_keys),
        "monitoring": d.monitoring || f.monitoring.unwrap_or(false),
    })
}

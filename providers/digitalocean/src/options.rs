//! What a user can choose for DigitalOcean (region, API URL, VPC, allowed CIDRs, image, sizes,
//! SSH keys, monitoring), validated before any API call, the defaults, and the choice of a size
//! from `--worker-cpus`/`--worker-memory` among those the region offers.

use clusterctl_core::{Error, Result, model::NodeSize};
use serde::{Deserialize, Serialize};

use crate::api::Size;

/// The API every call goes to unless `api_url` or `DIGITALOCEAN_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com";
/// The environment variable naming another API base URL (a simulator, a proxy).
pub const API_URL_ENV: &str = "DIGITALOCEAN_API_URL";

/// The default image: plain Ubuntu 24.04 LTS. The run script installs Docker at boot
/// (`VmOptions::install_docker`; `docker.io` from Ubuntu, a few seconds on a fresh droplet).
///
/// Not the Docker 1-Click image: its slug is not confirmed (the API has listed `docker-20-04`
/// named "Docker on Ubuntu 22.04"; `docker-24-04` appears only in third-party configs), and it
/// turns UFW on with only SSH and Docker's daemon ports open, which blocks Dask's scheduler,
/// dashboard and worker ports on the host network the run script uses.
pub const DEFAULT_IMAGE: &str = "ubuntu-24-04-x64";

/// The default scheduler size: General Purpose, 2 dedicated vCPUs and 8 GB, the counterpart of
/// EC2's `m7i.large`. Dedicated vCPUs because the scheduler is one latency-sensitive event loop
/// that a shared (Basic) droplet's CPU steal would slow for the whole cluster; 8 GB for large
/// task graphs.
pub const DEFAULT_SCHEDULER_SIZE: &str = "g-2vcpu-8gb";
/// The default worker size: General Purpose, 4 dedicated vCPUs and 16 GB (EC2's `m7i.xlarge`),
/// 4 GB per Dask thread like Dask's own default ratio.
pub const DEFAULT_WORKER_SIZE: &str = "g-4vcpu-16gb";
/// Sizes tried, in order, when a size is picked from cpus and memory.
const PICKED_FALLBACKS: usize = 3;

/// DigitalOcean settings beyond the common cluster spec (flags, or the config file's
/// `digitalocean:` section). Serialized into the local record so that `scale` and `down` act
/// like `up` did. The API token is never an option (see [`crate::token`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DigitalOceanOptions {
    /// Region slug, e.g. `nyc3` (required to create a cluster; listing and teardown work
    /// account-wide).
    pub region: Option<String>,
    /// API base URL (else `DIGITALOCEAN_API_URL`, else [`DEFAULT_API_URL`]).
    pub api_url: Option<String>,
    /// VPC uuid (else the region's default VPC).
    pub vpc: Option<String>,
    /// CIDRs allowed to reach the scheduler and dashboard ports (required unless `private`).
    pub allow_cidrs: Vec<String>,
    /// The client reaches the scheduler on its private address, inside the VPC.
    pub private: bool,
    /// Droplet image slug or id (default [`DEFAULT_IMAGE`]).
    pub image: Option<String>,
    /// Scheduler size slug (default [`DEFAULT_SCHEDULER_SIZE`], or the smallest that fits the
    /// scheduler's cpus and memory).
    pub scheduler_size: Option<String>,
    /// Worker size slugs in order of preference; the next is tried when DigitalOcean has no
    /// capacity for one (default [`DEFAULT_WORKER_SIZE`], or the smallest that fit the
    /// workers' cpus and memory).
    pub worker_sizes: Vec<String>,
    /// The user's SSH key ids or fingerprints, put on every droplet. Without any, a throwaway
    /// key is created for the cluster (DigitalOcean e-mails a root password otherwise).
    pub ssh_keys: Vec<String>,
    /// Install DigitalOcean's monitoring agent.
    pub monitoring: bool,
}

fn is_slug(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// Validate a region slug like `nyc3`.
pub fn validate_region(region: &str) -> Result<()> {
    let b = region.as_bytes();
    let ok = b.len() == 4 && b[..3].iter().all(u8::is_ascii_lowercase) && b[3].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--region",
            region,
            "not a DigitalOcean region slug (three lowercase letters and a digit)",
            Some(
                "use a slug like `nyc3`, `sfo3`, `ams3` or `fra1` (`doctl compute region list`)"
                    .into(),
            ),
        ))
    }
}

fn is_uuid(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether an SSH key reference is a numeric id (sent as a number) rather than a fingerprint.
pub fn is_key_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 18 && v.chars().all(|c| c.is_ascii_digit())
}

fn is_fingerprint(v: &str) -> bool {
    let pairs: Vec<&str> = v.split(':').collect();
    pairs.len() == 16
        && pairs
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Check the API base URL.
pub fn validate_api_url(url: &str) -> Result<()> {
    clusterctl_core::rest::parse_base_url(url)
        .map(|_| ())
        .map_err(|reason| {
            Error::invalid(
                "--digitalocean-api-url",
                url,
                reason,
                Some(format!("use an https URL like {DEFAULT_API_URL}")),
            )
        })
}

impl DigitalOceanOptions {
    /// Check what can be checked without the API and regardless of the command: formats only.
    pub fn validate_formats(&self) -> Result<()> {
        if let Some(r) = &self.region {
            validate_region(r)?;
        }
        if let Some(u) = &self.api_url {
            validate_api_url(u)?;
        }
        Ok(())
    }

    /// Check everything `up` needs, before any API call. `private` is the spec's.
    pub fn validate(&self, private: bool) -> Result<()> {
        self.validate_formats()?;
        if self.region.is_none() {
            return Err(Error::invalid(
                "--region",
                "",
                "DigitalOcean needs a region to create droplets in",
                Some("pass `--region nyc3` (or set `region:` in the config file); `doctl compute region list` lists them".into()),
            ));
        }
        for c in &self.allow_cidrs {
            clusterctl_core::model::validate_cidr(c)?;
        }
        if self.allow_cidrs.is_empty() && !(private || self.private) {
            return Err(Error::invalid(
                "--allow-cidr",
                "",
                "no address may reach the scheduler: its ports are never opened to the world by default",
                Some("pass your address, e.g. `--allow-cidr $(curl -s https://checkip.amazonaws.com)/32`, or `--private` when the client runs in the VPC".into()),
            ));
        }
        if let Some(v) = &self.vpc
            && !is_uuid(v)
        {
            return Err(Error::invalid(
                "--vpc",
                v,
                "not a VPC uuid",
                Some(
                    "`doctl vpcs list` shows the ids, e.g. `5a4981aa-9653-4bd1-bef5-d6bff52042e4`"
                        .into(),
                ),
            ));
        }
        if let Some(i) = &self.image
            && !(is_slug(i) || is_key_id(i))
        {
            return Err(Error::invalid(
                "--droplet-image",
                i,
                "not an image slug or id",
                Some(format!(
                    "use a slug like `{DEFAULT_IMAGE}` or a numeric image id (`doctl compute image list-distribution`)"
                )),
            ));
        }
        for s in self.scheduler_size.iter().chain(&self.worker_sizes) {
            if !is_slug(s) {
                return Err(Error::invalid(
                    "droplet size",
                    s,
                    "not a size slug",
                    Some(format!(
                        "use slugs like `{DEFAULT_WORKER_SIZE}` (`doctl compute size list`)"
                    )),
                ));
            }
        }
        for k in &self.ssh_keys {
            if !(is_key_id(k) || is_fingerprint(k)) {
                return Err(Error::invalid(
                    "--ssh-key",
                    k,
                    "not an SSH key id or MD5 fingerprint",
                    Some("`doctl compute ssh-key list` shows ids and fingerprints like `3b:16:…:fa:45`".into()),
                ));
            }
        }
        Ok(())
    }
}

/// Whether a size fits `wanted` (cpus and MiB; DigitalOcean counts memory in MiB too).
fn fits(size: &Size, wanted: &NodeSize) -> bool {
    wanted.cpus.is_none_or(|c| size.vcpus >= c)
        && wanted.memory_mib.is_none_or(|m| size.memory >= m)
}

/// Whether a size can be created in `region` now.
pub fn offered(size: &Size, region: &str) -> bool {
    size.available && size.regions.iter().any(|r| r == region)
}

/// The cheapest sizes (at most three, cheapest first) offered in `region` that fit `wanted`,
/// leaving out GPU sizes.
pub fn pick_sizes(sizes: &[Size], region: &str, wanted: &NodeSize) -> Result<Vec<String>> {
    let mut fitting: Vec<&Size> = sizes
        .iter()
        .filter(|s| offered(s, region) && s.gpu_info.is_none() && fits(s, wanted))
        .collect();
    fitting.sort_by(|a, b| {
        a.price_hourly
            .total_cmp(&b.price_hourly)
            .then(a.vcpus.cmp(&b.vcpus))
            .then(a.memory.cmp(&b.memory))
            .then(a.slug.cmp(&b.slug))
    });
    if fitting.is_empty() {
        return Err(Error::invalid(
            "node size",
            format!(
                "{} vCPUs, {} MiB",
                wanted.cpus.map_or("any".into(), |c| c.to_string()),
                wanted.memory_mib.map_or("any".into(), |m| m.to_string())
            ),
            format!("no droplet size offered in {region} is that large"),
            Some(
                "name sizes with `--worker-size`/`--scheduler-size`, or choose another region"
                    .into(),
            ),
        ));
    }
    Ok(fitting
        .into_iter()
        .take(PICKED_FALLBACKS)
        .map(|s| s.slug.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> DigitalOceanOptions {
        DigitalOceanOptions {
            region: Some("nyc3".into()),
            allow_cidrs: vec!["203.0.113.7/32".into()],
            ..Default::default()
        }
    }

    #[test]
    fn defaults_deserialize_from_nothing_and_from_nulls() {
        let o: DigitalOceanOptions = serde_json::from_str("{}").unwrap();
        assert_eq!(o, DigitalOceanOptions::default());
        let o: DigitalOceanOptions = serde_json::from_value(serde_json::json!({
            "region": "ams3", "api_url": null, "vpc": null, "allow_cidrs": [], "private": true,
            "image": null, "scheduler_size": null, "worker_sizes": ["c-4"], "ssh_keys": [],
            "monitoring": false,
        }))
        .unwrap();
        assert_eq!(o.region.as_deref(), Some("ams3"));
        assert_eq!(o.worker_sizes, ["c-4"]);
        assert!(o.private);
    }

    #[test]
    fn valid_options_pass() {
        ok().validate(false).unwrap();
        DigitalOceanOptions {
            allow_cidrs: vec![],
            ..ok()
        }
        .validate(true)
        .unwrap();
        DigitalOceanOptions {
            vpc: Some("5a4981aa-9653-4bd1-bef5-d6bff52042e4".into()),
            image: Some("12345".into()),
            scheduler_size: Some("s-2vcpu-4gb".into()),
            worker_sizes: vec!["c-4".into(), "g-4vcpu-16gb".into()],
            ssh_keys: vec![
                "289794".into(),
                "3b:16:e4:bf:8b:00:8b:b8:59:8c:a9:d3:f0:19:fa:45".into(),
            ],
            ..ok()
        }
        .validate(false)
        .unwrap();
    }

    #[test]
    fn each_bad_value_is_named_with_exit_code_2() {
        let cases = [
            DigitalOceanOptions {
                region: Some("NYC3".into()),
                ..ok()
            },
            DigitalOceanOptions {
                region: Some("nyc".into()),
                ..ok()
            },
            DigitalOceanOptions {
                region: None,
                ..ok()
            },
            DigitalOceanOptions {
                allow_cidrs: vec![],
                ..ok()
            },
            DigitalOceanOptions {
                allow_cidrs: vec!["203.0.113.7".into()],
                ..ok()
            },
            DigitalOceanOptions {
                vpc: Some("vpc-123".into()),
                ..ok()
            },
            DigitalOceanOptions {
                image: Some("Ubuntu 24.04".into()),
                ..ok()
            },
            DigitalOceanOptions {
                worker_sizes: vec!["G-4VCPU".into()],
                ..ok()
            },
            DigitalOceanOptions {
                ssh_keys: vec!["my-laptop".into()],
                ..ok()
            },
            DigitalOceanOptions {
                api_url: Some("http://api.digitalocean.com".into()),
                ..ok()
            },
        ];
        for o in cases {
            let err = o.validate(false).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
            assert!(!err.hints().is_empty(), "{err}");
        }
    }

    fn size(slug: &str, vcpus: u32, memory: u64, price: f64, regions: &[&str]) -> Size {
        Size {
            slug: slug.into(),
            vcpus,
            memory,
            price_hourly: price,
            regions: regions.iter().map(|r| r.to_string()).collect(),
            available: true,
            gpu_info: None,
        }
    }

    #[test]
    fn sizes_are_picked_cheapest_first_among_those_offered() {
        let sizes = vec![
            size("s-2vcpu-4gb", 2, 4096, 0.03571, &["nyc3"]),
            size("c-2", 2, 4096, 0.0625, &["nyc3"]),
            size("g-2vcpu-8gb", 2, 8192, 0.09375, &["nyc3", "sfo3"]),
            size("s-4vcpu-8gb", 4, 8192, 0.07143, &["sfo3"]),
            size("g-4vcpu-16gb", 4, 16384, 0.1875, &["nyc3"]),
            Size {
                available: false,
                ..size("m-2vcpu-16gb", 2, 16384, 0.125, &["nyc3"])
            },
        ];
        let want = |cpus, mib| NodeSize {
            cpus,
            memory_mib: mib,
        };
        assert_eq!(
            pick_sizes(&sizes, "nyc3", &want(Some(2), Some(8000))).unwrap(),
            ["g-2vcpu-8gb", "g-4vcpu-16gb"]
        );
        assert_eq!(
            pick_sizes(&sizes, "nyc3", &want(Some(2), None)).unwrap(),
            ["s-2vcpu-4gb", "c-2", "g-2vcpu-8gb"]
        );
        assert_eq!(
            pick_sizes(&sizes, "sfo3", &want(Some(4), None)).unwrap(),
            ["s-4vcpu-8gb"]
        );
        let err = pick_sizes(&sizes, "nyc3", &want(Some(64), None)).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}

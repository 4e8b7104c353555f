//! What a user can choose for Compute Engine (project, zones, endpoint, network, subnetwork,
//! allowed CIDRs, image, machine types, boot disk, Spot), validated before any call, and the
//! defaults.

use clusterctl_core::{Error, Result, model::validate_cidr};
use serde::{Deserialize, Serialize};

/// The environment variable naming another API endpoint for Compute, IAM and Secret Manager
/// (a simulator, a proxy): all three are then served under that one base URL.
pub const ENDPOINT_ENV: &str = "CLUSTERCTL_GCP_ENDPOINT";
/// The environment variables naming the project, in order.
pub const PROJECT_ENVS: [&str; 3] = [
    "GOOGLE_CLOUD_PROJECT",
    "CLOUDSDK_CORE_PROJECT",
    "GCLOUD_PROJECT",
];
/// Compute Engine's public endpoint.
pub const COMPUTE_ENDPOINT: &str = "https://compute.googleapis.com";
/// IAM's public endpoint.
pub const IAM_ENDPOINT: &str = "https://iam.googleapis.com";
/// Secret Manager's public endpoint.
pub const SECRETS_ENDPOINT: &str = "https://secretmanager.googleapis.com";
/// The default image: Container-Optimized OS, stable channel. Docker is on it (no install at
/// boot), cloud-init reads `user-data`, the root filesystem is read-only and verified, and
/// `/etc` (where the node's files go) is a tmpfs.
pub const DEFAULT_IMAGE: &str = "projects/cos-cloud/global/images/family/cos-stable";
/// The default scheduler machine type: E2, 2 vCPUs and 8 GB.
pub const DEFAULT_SCHEDULER_TYPE: &str = "e2-standard-2";
/// The default worker machine type: E2, 4 vCPUs and 16 GB (4 GB per Dask thread).
pub const DEFAULT_WORKER_TYPE: &str = "e2-standard-4";
/// The default boot disk size in GB (COS, the Dask image and room to spill).
pub const DEFAULT_BOOT_DISK_GB: u32 = 50;

/// Compute Engine settings beyond the common cluster spec (flags, or the config file's `gcp:`
/// section). Serialized into the local record so that `scale` and `down` act like `up` did.
/// Credentials are never options (see [`crate::credential`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GcpOptions {
    /// The project id (else `GOOGLE_CLOUD_PROJECT`/`CLOUDSDK_CORE_PROJECT`, else the
    /// credentials' project).
    pub project: Option<String>,
    /// Zones in order of preference, e.g. `us-central1-a`; a stockout moves on to the next.
    pub zones: Vec<String>,
    /// API endpoint for Compute, IAM and Secret Manager (else [`ENDPOINT_ENV`], else Google's).
    pub endpoint: Option<String>,
    /// The VPC network (default `default`).
    pub network: Option<String>,
    /// The subnetwork (required on custom-mode VPCs; default: the network's auto-mode subnet
    /// of the region, named like the network).
    pub subnetwork: Option<String>,
    /// CIDRs allowed to reach the scheduler and dashboard ports (required unless `private`).
    pub allow_cidrs: Vec<String>,
    /// The client reaches the scheduler on its internal address.
    pub private: bool,
    /// The boot image (`projects/P/global/images/family/F` or `…/images/NAME`).
    pub image: Option<String>,
    /// The scheduler's machine type (default [`DEFAULT_SCHEDULER_TYPE`]).
    pub scheduler_machine_type: Option<String>,
    /// The workers' machine types in order of preference (default [`DEFAULT_WORKER_TYPE`]).
    pub worker_machine_types: Vec<String>,
    /// Boot disk size in GB (default [`DEFAULT_BOOT_DISK_GB`]).
    pub boot_disk_gb: Option<u32>,
    /// Workers on Spot VMs (terminate = DELETE), falling back to standard.
    pub spot: bool,
    /// The service account attached to the instances instead of the per-cluster one (which
    /// only reads the cluster's keys); it is granted read access to the keys' secrets.
    pub service_account: Option<String>,
    /// GPUs per worker: `TYPE[:COUNT]`, e.g. `nvidia-l4`, `nvidia-tesla-t4:2`.
    pub gpu: Option<String>,
}

/// The GPUs of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// The accelerator type, e.g. `nvidia-l4`.
    pub kind: String,
    /// How many.
    pub count: u32,
}

/// Parse `TYPE[:COUNT]`.
pub fn parse_gpu(value: &str) -> Result<Gpu> {
    let (kind, count) = value.split_once(':').unwrap_or((value, "1"));
    let count: Option<u32> = count.parse().ok().filter(|c| [1, 2, 4, 8, 16].contains(c));
    let kind_ok = !kind.is_empty()
        && kind.len() <= 63
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    match count {
        Some(count) if kind_ok => Ok(Gpu {
            kind: kind.to_string(),
            count,
        }),
        _ => Err(Error::invalid(
            "--gpu",
            value,
            "not an accelerator type with an optional count of 1, 2, 4, 8 or 16",
            Some("e.g. `--gpu nvidia-l4` or `--gpu nvidia-tesla-t4:2` (`gcloud compute accelerator-types list`)".into()),
        )),
    }
}

/// Validate a service account e-mail.
pub fn validate_service_account(email: &str) -> Result<()> {
    let ok = email.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && domain.contains('.')
            && email
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--service-account",
            email,
            "not a service account e-mail",
            Some("e.g. `dask-nodes@PROJECT.iam.gserviceaccount.com` (`gcloud iam service-accounts list`)".into()),
        ))
    }
}

/// Validate a zone name like `us-central1-a`.
pub fn validate_zone(zone: &str) -> Result<()> {
    let parts: Vec<&str> = zone.split('-').collect();
    let ok = parts.len() == 3
        && parts[0].len() >= 2
        && parts[0].chars().all(|c| c.is_ascii_lowercase())
        && parts[1]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase())
        && parts[1].chars().last().is_some_and(|c| c.is_ascii_digit())
        && parts[1]
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && parts[2].len() == 1
        && parts[2].chars().all(|c| c.is_ascii_lowercase());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--zone",
            zone,
            "not a Compute Engine zone (REGION-LETTER, e.g. us-central1-a)",
            Some(
                "`gcloud compute zones list` lists them; a region like us-central1 is not a zone"
                    .into(),
            ),
        ))
    }
}

/// Validate a project id: 6–30 lowercase letters, digits and `-`, starting with a letter, not
/// ending with `-`.
pub fn validate_project(project: &str) -> Result<()> {
    let ok = (6..=30).contains(&project.len())
        && project.starts_with(|c: char| c.is_ascii_lowercase())
        && !project.ends_with('-')
        && project
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--project",
            project,
            "not a Google Cloud project id (6-30 lowercase letters, digits or '-', starting with a letter)",
            Some("use the project's id, not its name or number (`gcloud projects list`)".into()),
        ))
    }
}

/// Validate a machine type name like `e2-standard-4`.
pub fn validate_machine_type(flag: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            flag,
            name,
            "not a Compute Engine machine type name",
            Some(format!(
                "e.g. `{DEFAULT_WORKER_TYPE}` (`gcloud compute machine-types list --zones ZONE`)"
            )),
        ))
    }
}

/// Validate an image path.
pub fn validate_image(image: &str) -> Result<()> {
    let parts: Vec<&str> = image.split('/').collect();
    let ok = (parts.len() == 5 || parts.len() == 6)
        && parts[0] == "projects"
        && parts[2] == "global"
        && parts[3] == "images"
        && (parts.len() == 5 || parts[4] == "family")
        && parts.iter().all(|p| !p.is_empty());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "--gcp-image",
            image,
            "not an image path",
            Some(format!(
                "e.g. `{DEFAULT_IMAGE}` or `projects/P/global/images/NAME`"
            )),
        ))
    }
}

fn validate_resource_name(flag: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            flag,
            name,
            "not a Compute Engine resource name",
            None,
        ))
    }
}

impl GcpOptions {
    /// Check every option's format (no call).
    pub fn validate_formats(&self) -> Result<()> {
        if let Some(p) = &self.project {
            validate_project(p)?;
        }
        for z in &self.zones {
            validate_zone(z)?;
        }
        let regions: std::collections::BTreeSet<&str> =
            self.zones.iter().map(|z| region_of(z)).collect();
        if regions.len() > 1 {
            return Err(Error::invalid(
                "--zone",
                self.zones.join(","),
                "the zones are in different regions; a cluster's nodes share one region's subnet",
                Some("list zones of one region, e.g. `--zone us-central1-a,us-central1-b`".into()),
            ));
        }
        if let Some(i) = &self.image {
            validate_image(i)?;
        }
        if let Some(t) = &self.scheduler_machine_type {
            validate_machine_type("--scheduler-machine-type", t)?;
        }
        for t in &self.worker_machine_types {
            validate_machine_type("--worker-machine-type", t)?;
        }
        if let Some(n) = &self.network {
            validate_resource_name("--network", n)?;
        }
        if let Some(n) = &self.subnetwork {
            validate_resource_name("--subnetwork", n)?;
        }
        if let Some(g) = self.boot_disk_gb
            && !(10..=65_536).contains(&g)
        {
            return Err(Error::invalid(
                "--boot-disk-size",
                g.to_string(),
                "a boot disk is 10 to 65536 GB",
                Some(format!("the default is {DEFAULT_BOOT_DISK_GB}")),
            ));
        }
        for c in &self.allow_cidrs {
            validate_cidr(c)?;
        }
        if let Some(sa) = &self.service_account {
            validate_service_account(sa)?;
        }
        if let Some(g) = &self.gpu {
            parse_gpu(g)?;
            if self.image.is_none() {
                return Err(Error::invalid(
                    "--gpu",
                    g.clone(),
                    "the default image, Container-Optimized OS, has no NVIDIA container toolkit, so Docker cannot pass GPUs to the Dask container",
                    Some("pass --gcp-image with an image that has the NVIDIA driver and container toolkit (see the README's GCE section)".into()),
                ));
            }
        }
        if let Some(e) = &self.endpoint {
            clusterctl_core::rest::parse_base_url(e).map_err(|m| {
                Error::invalid(
                    "--gcp-endpoint",
                    e.clone(),
                    m,
                    Some(format!("e.g. `{COMPUTE_ENDPOINT}`")),
                )
            })?;
        }
        Ok(())
    }

    /// What `up` needs besides formats: a zone, and allowed CIDRs unless `--private`.
    pub fn validate_for_up(&self) -> Result<()> {
        self.validate_formats()?;
        if self.zones.is_empty() {
            return Err(Error::invalid(
                "--zone",
                "",
                "Compute Engine needs a zone to create the cluster in",
                Some("pass `--zone us-central1-a` (or `--region us-central1-a`)".into()),
            ));
        }
        if self.private && self.allow_cidrs.is_empty() && self.network() != "default" {
            return Err(Error::invalid(
                "--allow-cidr",
                "",
                "with --private on a network other than `default`, clusterctl does not know the range your client comes from",
                Some("pass `--allow-cidr` with your client's range inside the VPC".into()),
            ));
        }
        if !self.private && self.allow_cidrs.is_empty() {
            return Err(Error::invalid(
                "--allow-cidr",
                "",
                "nothing may reach the scheduler: the cluster's firewall rule opens the scheduler and dashboard ports only to --allow-cidr",
                Some("pass `--allow-cidr <your public address>/32` (never 0.0.0.0/0 unless you mean it), or --private".into()),
            ));
        }
        Ok(())
    }

    /// The first zone.
    pub fn zone(&self) -> Option<&str> {
        self.zones.first().map(String::as_str)
    }

    /// The image.
    pub fn image(&self) -> &str {
        self.image.as_deref().unwrap_or(DEFAULT_IMAGE)
    }

    /// The network's name.
    pub fn network(&self) -> &str {
        self.network.as_deref().unwrap_or("default")
    }

    /// The scheduler's machine type.
    pub fn scheduler_type(&self) -> String {
        self.scheduler_machine_type
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEDULER_TYPE.into())
    }

    /// The workers' machine types in order.
    pub fn worker_types(&self) -> Vec<String> {
        if self.worker_machine_types.is_empty() {
            vec![DEFAULT_WORKER_TYPE.into()]
        } else {
            self.worker_machine_types.clone()
        }
    }

    /// The workers' GPUs.
    pub fn gpus(&self) -> Option<Gpu> {
        self.gpu.as_deref().and_then(|g| parse_gpu(g).ok())
    }

    /// The boot disk size in GB.
    pub fn boot_disk(&self) -> u32 {
        self.boot_disk_gb.unwrap_or(DEFAULT_BOOT_DISK_GB)
    }
}

/// The project of gcloud's active configuration, as `gcloud config set project` writes it: the
/// configuration directory `$CLOUDSDK_CONFIG` (else `$HOME/.config/gcloud`), the configuration
/// named by `CLOUDSDK_ACTIVE_CONFIG_NAME`, else by the file `active_config`, else `default`,
/// and in its file `configurations/config_NAME` the `[core]` section's `project`.
pub fn gcloud_project(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let dir = env("CLOUDSDK_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| env("HOME").map(|h| std::path::Path::new(&h).join(".config/gcloud")))?;
    let name = env("CLOUDSDK_ACTIVE_CONFIG_NAME")
        .or_else(|| {
            std::fs::read_to_string(dir.join("active_config"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "default".into());
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return None;
    }
    let text =
        std::fs::read_to_string(dir.join("configurations").join(format!("config_{name}"))).ok()?;
    ini_value(&text, "core", "project")
}

/// `key` of `[section]` in an INI text (gcloud's properties files).
fn ini_value(text: &str, section: &str, key: &str) -> Option<String> {
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = s.trim().to_string();
            continue;
        }
        if current == section
            && let Some((k, v)) = line.split_once(['=', ':'])
            && k.trim() == key
        {
            let v = v.trim();
            return (!v.is_empty()).then(|| v.to_string());
        }
    }
    None
}

/// The region of a zone: `us-central1-a` → `us-central1`.
pub fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map_or(zone, |(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(validate_zone("us-central1-a").is_ok());
        for bad in [
            "us-central1",
            "US-central1-a",
            "uscentral1a",
            "us-central-a",
            "europe-west4-ab",
        ] {
            assert!(validate_zone(bad).is_err(), "{bad}");
        }
        assert!(validate_project("clusterctl-sim").is_ok());
        for bad in ["Proj", "abc", "1project", "project-", "my_project"] {
            assert!(validate_project(bad).is_err(), "{bad}");
        }
        assert!(validate_machine_type("--worker-machine-type", "e2-standard-4").is_ok());
        assert!(validate_machine_type("--worker-machine-type", "zones/z/machineTypes/e2").is_err());
        assert!(validate_image(DEFAULT_IMAGE).is_ok());
        assert!(validate_image("projects/p/global/images/img-1").is_ok());
        assert!(validate_image("cos-stable").is_err());
        assert_eq!(region_of("us-central1-a"), "us-central1");
        assert_eq!(
            parse_gpu("nvidia-tesla-t4:2").unwrap(),
            Gpu {
                kind: "nvidia-tesla-t4".into(),
                count: 2
            }
        );
        assert_eq!(parse_gpu("nvidia-l4").unwrap().count, 1);
        for bad in ["nvidia-l4:3", "nvidia-l4:0", "NVIDIA", ":1", "nvidia-l4:x"] {
            assert!(parse_gpu(bad).is_err(), "{bad}");
        }
        assert!(validate_service_account("dask@p-1.iam.gserviceaccount.com").is_ok());
        for bad in ["dask", "@p.iam", "a@b", "a b@c.d"] {
            assert!(validate_service_account(bad).is_err(), "{bad}");
        }
        let gpu_on_cos = GcpOptions {
            gpu: Some("nvidia-l4".into()),
            ..Default::default()
        };
        assert!(gpu_on_cos.validate_formats().is_err());
    }

    #[test]
    fn project_from_the_gcloud_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap().to_string();
        let env_with = |extra: Option<(&'static str, &'static str)>| {
            let root = root.clone();
            move |k: &str| match k {
                "CLOUDSDK_CONFIG" => Some(root.clone()),
                _ => extra.filter(|(n, _)| *n == k).map(|(_, v)| v.to_string()),
            }
        };
        assert_eq!(
            gcloud_project(&env_with(None)),
            None,
            "no configuration yet"
        );
        std::fs::create_dir_all(dir.path().join("configurations")).unwrap();
        std::fs::write(
            dir.path().join("configurations/config_default"),
            "[compute]\nzone = us-central1-a\nproject = not-this\n\n[core]\naccount = me@example.com\nproject = proj-default\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("configurations/config_work"),
            "[core]\n# a comment\nproject = proj-work\n",
        )
        .unwrap();
        assert_eq!(
            gcloud_project(&env_with(None)).as_deref(),
            Some("proj-default")
        );
        std::fs::write(dir.path().join("active_config"), "work\n").unwrap();
        assert_eq!(
            gcloud_project(&env_with(None)).as_deref(),
            Some("proj-work")
        );
        let named = env_with(Some(("CLOUDSDK_ACTIVE_CONFIG_NAME", "default")));
        assert_eq!(gcloud_project(&named).as_deref(), Some("proj-default"));
        let escape = env_with(Some(("CLOUDSDK_ACTIVE_CONFIG_NAME", "../x")));
        assert_eq!(gcloud_project(&escape), None);
        let home = tempfile::tempdir().unwrap();
        let gcloud = home.path().join(".config/gcloud/configurations");
        std::fs::create_dir_all(&gcloud).unwrap();
        std::fs::write(gcloud.join("config_default"), "[core]\nproject=from-home\n").unwrap();
        let h = home.path().to_str().unwrap().to_string();
        let by_home = move |k: &str| (k == "HOME").then(|| h.clone());
        assert_eq!(gcloud_project(&by_home).as_deref(), Some("from-home"));
    }

    #[test]
    fn up_needs_a_zone_and_a_way_in() {
        let mut o = GcpOptions {
            zones: vec!["us-central1-a".into()],
            ..Default::default()
        };
        assert!(o.validate_for_up().is_err());
        o.allow_cidrs = vec!["203.0.113.7/32".into()];
        assert!(o.validate_for_up().is_ok());
        o.zones.push("us-east1-b".into());
        assert!(o.validate_for_up().is_err(), "zones of two regions");
        o.zones = vec![];
        assert!(o.validate_for_up().is_err());
        o.zones = vec!["us-central1-a".into()];
        o.allow_cidrs.clear();
        o.private = true;
        assert!(o.validate_for_up().is_ok());
        o.network = Some("dask-vpc".into());
        let e = o.validate_for_up().unwrap_err();
        assert!(e.to_string().contains("--allow-cidr"), "{e}");
        o.allow_cidrs = vec!["10.64.0.0/24".into()];
        assert!(o.validate_for_up().is_ok());
    }
}

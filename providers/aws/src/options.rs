//! What a user can choose for EC2 (network, image, instance types, market), validated before
//! anything is created, and the defaults when they choose nothing.

use clusterctl_core::{Error, Result, model::NodeSize};
use serde::{Deserialize, Serialize};

/// EC2 settings beyond the common cluster spec. Serialized into the local record so that
/// `scale` launches workers like the first ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ec2Options {
    /// Region (else the AWS configuration's).
    pub region: Option<String>,
    /// VPC to use (else the subnets' VPC, else the default VPC).
    pub vpc: Option<String>,
    /// Subnets, in order of preference; workers fall back to the next on capacity errors.
    pub subnets: Vec<String>,
    /// CIDRs allowed to reach the scheduler and dashboard ports.
    pub allow_cidrs: Vec<String>,
    /// AMI (else the SSM parameter of the ECS-optimized Amazon Linux 2023 image).
    pub ami: Option<String>,
    /// Scheduler instance type.
    pub scheduler_instance_type: Option<String>,
    /// Worker instance types, in order of preference (fallback on capacity errors).
    pub worker_instance_types: Vec<String>,
    /// Root volume size in GiB.
    pub root_volume_gib: Option<u32>,
    /// Workers on spot capacity (falling back to on-demand).
    pub spot: bool,
    /// Instance profile name for the nodes.
    pub instance_profile: Option<String>,
    /// Key pair for SSH access.
    pub key_name: Option<String>,
}

/// Default scheduler type: 2 vCPU, 8 GiB, current generation.
pub const DEFAULT_SCHEDULER_TYPE: &str = "m7i.large";
/// Default worker type: 4 vCPU, 16 GiB.
pub const DEFAULT_WORKER_TYPE: &str = "m7i.xlarge";
/// Default root volume: room for the Dask image and spilled data.
pub const DEFAULT_ROOT_GIB: u32 = 40;

/// Current general-purpose (m7i), compute (c7i) and memory (r7i) types, smallest first within
/// each family: (name, vCPUs, MiB). Used to pick a type from `--worker-cpus/--worker-memory`.
const SIZES: &[(&str, u32, u64)] = &[
    ("m7i.large", 2, 8192),
    ("c7i.xlarge", 4, 8192),
    ("m7i.xlarge", 4, 16384),
    ("r7i.xlarge", 4, 32768),
    ("c7i.2xlarge", 8, 16384),
    ("m7i.2xlarge", 8, 32768),
    ("r7i.2xlarge", 8, 65536),
    ("c7i.4xlarge", 16, 32768),
    ("m7i.4xlarge", 16, 65536),
    ("r7i.4xlarge", 16, 131072),
    ("m7i.8xlarge", 32, 131072),
    ("r7i.8xlarge", 32, 262144),
    ("m7i.16xlarge", 64, 262144),
    ("r7i.16xlarge", 64, 524288),
];

/// Whether clusterctl's own table lists `name` (x86_64, no GPU).
pub fn is_listed_type(name: &str) -> bool {
    SIZES.iter().any(|(n, _, _)| *n == name)
}

/// The cheapest listed type with at least the requested vCPUs and memory.
pub fn type_for(size: &NodeSize, default: &str) -> Result<String> {
    if size.cpus.is_none() && size.memory_mib.is_none() {
        return Ok(default.to_string());
    }
    let cpus = size.cpus.unwrap_or(1);
    let mib = size.memory_mib.unwrap_or(0);
    // The table is ordered by size within a price band; the first fit is the smallest.
    SIZES
        .iter()
        .filter(|(_, c, m)| *c >= cpus && *m >= mib)
        .min_by_key(|(_, c, m)| (*c, *m))
        .map(|(n, _, _)| n.to_string())
        .ok_or_else(|| {
            Error::invalid(
                "node size",
                format!("{cpus} vCPUs, {mib} MiB"),
                "no listed EC2 instance type is that large",
                Some("name a type with `--worker-instance-type`".into()),
            )
        })
}

/// The SSM parameter that names the default AMI: the ECS-optimized Amazon Linux 2023 image,
/// which has Docker installed (nodes start Dask without installing anything), is patched by AWS,
/// and has GPU and arm64 variants with the NVIDIA container runtime or Graviton support.
pub fn ami_parameter(gpu: bool, arm64: bool) -> &'static str {
    match (gpu, arm64) {
        (true, _) => "/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id",
        (false, true) => {
            "/aws/service/ecs/optimized-ami/amazon-linux-2023/arm64/recommended/image_id"
        }
        (false, false) => "/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id",
    }
}

pub use clusterctl_core::model::validate_cidr;

/// Refuse a region name no AWS partition can have (`mars-1`, `us_east_1`, `US-EAST-1`) before
/// any request: the SDK would send it to an endpoint that does not exist and retry. Region names
/// are lowercase words joined by `-` ending in a number (`us-east-1`, `us-gov-west-1`,
/// `cn-north-1`, `eusc-de-east-1`); which regions exist is left to the API (new ones open).
pub fn validate_region(region: &str, what: &'static str) -> Result<()> {
    let parts: Vec<&str> = region.split('-').collect();
    let shaped = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1]
            .parse::<u8>()
            .is_ok_and(|n| parts[parts.len() - 1] == n.to_string());
    if shaped {
        return Ok(());
    }
    Err(Error::invalid(
        what,
        region,
        "not an AWS region name (they look like `us-east-1` or `eu-west-2`)",
        Some("pass an existing region, e.g. `--region us-east-1`; `aws ec2 describe-regions` lists them".into()),
    ))
}

/// Validate an AWS resource id like `subnet-0abc123` (`prefix` is `subnet-`).
pub fn validate_id(what: &'static str, v: &str, prefix: &str) -> Result<()> {
    if v.starts_with(prefix)
        && v.len() > prefix.len()
        && v[prefix.len()..].chars().all(|c| c.is_ascii_hexdigit())
    {
        Ok(())
    } else {
        Err(Error::invalid(
            what,
            v,
            format!("not an id of the form {prefix}<hex>"),
            None,
        ))
    }
}

/// Check the network settings both AWS providers share: the CIDRs that may reach the scheduler
/// (required unless `private`: nothing is open to the world by default) and the VPC and subnet
/// ids.
pub fn validate_network(
    allow_cidrs: &[String],
    private: bool,
    vpc: Option<&str>,
    subnets: &[String],
) -> Result<()> {
    for c in allow_cidrs {
        validate_cidr(c)?;
    }
    if allow_cidrs.is_empty() && !private {
        return Err(Error::invalid(
            "--allow-cidr",
            "",
            "no address may reach the scheduler: its ports are never opened to the world by default",
            Some("pass your address, e.g. `--allow-cidr $(curl -s https://checkip.amazonaws.com)/32`, or `--private` when the client runs in the VPC".into()),
        ));
    }
    for s in subnets {
        validate_id("--subnet", s, "subnet-")?;
    }
    if let Some(v) = vpc {
        validate_id("--vpc", v, "vpc-")?;
    }
    Ok(())
}

impl Ec2Options {
    /// Check the values that can be checked without AWS.
    pub fn validate(&self, private: bool) -> Result<()> {
        validate_network(
            &self.allow_cidrs,
            private,
            self.vpc.as_deref(),
            &self.subnets,
        )?;
        let id = validate_id;
        if let Some(a) = &self.ami {
            id("--ami", a, "ami-")?;
        }
        if let Some(g) = self.root_volume_gib
            && !(8..=16384).contains(&g)
        {
            return Err(Error::invalid(
                "--root-volume-size",
                g.to_string(),
                "outside 8 to 16384 GiB",
                None,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_names() {
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "cn-north-1",
            "eusc-de-east-1",
            "ap-southeast-10",
        ] {
            validate_region(ok, "--region").unwrap();
        }
        for bad in [
            "mars-1",
            "us_east_1",
            "US-EAST-1",
            "us-east-",
            "us-east-01",
            "us--1",
            "",
            "us-east-1a",
        ] {
            let e = validate_region(bad, "--region").unwrap_err().to_string();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
    }

    #[test]
    fn types_from_sizes() {
        let t = |cpus, mib| {
            type_for(
                &NodeSize {
                    cpus,
                    memory_mib: mib,
                },
                DEFAULT_WORKER_TYPE,
            )
            .unwrap()
        };
        assert_eq!(t(None, None), DEFAULT_WORKER_TYPE);
        assert_eq!(t(Some(2), None), "m7i.large");
        assert_eq!(t(Some(4), Some(8192)), "c7i.xlarge");
        assert_eq!(t(Some(4), Some(16384)), "m7i.xlarge");
        assert_eq!(t(None, Some(60_000)), "r7i.2xlarge");
        assert!(
            type_for(
                &NodeSize {
                    cpus: Some(500),
                    memory_mib: None
                },
                "x"
            )
            .is_err()
        );
    }

    #[test]
    fn world_is_never_open_by_default() {
        let err = Ec2Options::default().validate(false).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.hints()[0].contains("--allow-cidr"));
        Ec2Options::default().validate(true).unwrap();
        let o = Ec2Options {
            allow_cidrs: vec!["203.0.113.7/32".into()],
            ..Default::default()
        };
        o.validate(false).unwrap();
        let o = Ec2Options {
            allow_cidrs: vec!["203.0.113.7".into()],
            ..Default::default()
        };
        assert!(o.validate(false).is_err());
        let o = Ec2Options {
            subnets: vec!["sub-1".into()],
            ..Default::default()
        };
        assert!(o.validate(true).is_err());
    }
}

//! What the EC2 provider resolves once per process before launching: the network, the instance
//! types (and whether they have GPUs), and the AMI with its root device.

use aws_sdk_ec2::types::InstanceType;
use clusterctl_core::{Error, Result, model::ClusterSpec};

use crate::{Ec2Provider, errors, network, network::Network, options};

/// What `plan` and `bootstrap` resolve once per process: network, image, instance types.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub network: Network,
    pub ami: String,
    pub ami_source: String,
    pub root_device: String,
    pub scheduler_type: String,
    pub worker_types: Vec<String>,
    pub gpu: bool,
}

impl Ec2Provider {
    pub(crate) async fn resolve(&self, spec: &ClusterSpec) -> Result<&Resolved> {
        self.resolved
            .get_or_try_init(|| self.resolve_uncached(spec))
            .await
    }

    async fn resolve_uncached(&self, spec: &ClusterSpec) -> Result<Resolved> {
        let network = network::resolve(
            &self.ec2,
            &self.region,
            self.options.vpc.as_deref(),
            &self.options.subnets,
            self.options.allow_cidrs.is_empty(),
        )
        .await?;
        let scheduler_type = match &self.options.scheduler_instance_type {
            Some(t) => t.clone(),
            None => options::type_for(&spec.scheduler_size, options::DEFAULT_SCHEDULER_TYPE)?,
        };
        let worker_types = if self.options.worker_instance_types.is_empty() {
            vec![options::type_for(
                &spec.worker_size,
                options::DEFAULT_WORKER_TYPE,
            )?]
        } else {
            self.options.worker_instance_types.clone()
        };
        let mut all_types = worker_types.clone();
        all_types.push(scheduler_type.clone());
        all_types.sort();
        all_types.dedup();
        // Types clusterctl picked itself from its table are x86_64 without GPUs: nothing to
        // look up. A type the user named is checked (it exists here; GPU; architecture).
        let (gpu, arm64) = if all_types.iter().all(|t| options::is_listed_type(t)) {
            (false, false)
        } else {
            self.describe_types(&all_types, &worker_types).await?
        };
        let (ami, ami_source) = match &self.options.ami {
            Some(a) => (a.clone(), "--ami".to_string()),
            None => {
                let param = options::ami_parameter(gpu, arm64);
                let out = self
                    .ssm
                    .get_parameter()
                    .name(param)
                    .send()
                    .await
                    .map_err(|e| errors::map("ssm:GetParameter", &self.region, e))?;
                let id = out
                    .parameter()
                    .and_then(|p| p.value())
                    .unwrap_or_default()
                    .to_string();
                (id, format!("SSM parameter {param}"))
            }
        };
        // The ECS-optimized Amazon Linux images of AWS's own parameter root at /dev/xvda;
        // an image given with `--ami` is looked up (it exists here, and its root device).
        let root_device = if self.options.ami.is_some() {
            let images = self
                .ec2
                .describe_images()
                .image_ids(&ami)
                .send()
                .await
                .map_err(|e| match errors::code(&e) {
                    Some(c) if c.starts_with("InvalidAMIID") => Error::invalid(
                        "--ami",
                        ami.clone(),
                        "EC2 has no such image in this region",
                        None,
                    ),
                    _ => self.map("ec2:DescribeImages", e),
                })?;
            let image = images.images().first().ok_or_else(|| {
                Error::invalid(
                    "--ami",
                    ami.clone(),
                    "EC2 has no such image in this region",
                    None,
                )
            })?;
            image.root_device_name().unwrap_or("/dev/xvda").to_string()
        } else {
            "/dev/xvda".to_string()
        };
        Ok(Resolved {
            network,
            ami,
            ami_source,
            root_device,
            scheduler_type,
            worker_types,
            gpu,
        })
    }

    /// GPU and architecture of the named types, and that EC2 offers them here.
    async fn describe_types(
        &self,
        all_types: &[String],
        worker_types: &[String],
    ) -> Result<(bool, bool)> {
        let out = self
            .ec2
            .describe_instance_types()
            .set_instance_types(Some(all_types.iter().map(|t| InstanceType::from(t.as_str())).collect()))
            .send()
            .await
            .map_err(|e| match errors::code(&e) {
                Some("InvalidInstanceType") => Error::invalid(
                    "instance type",
                    all_types.join(","),
                    "EC2 does not offer it in this region",
                    Some("see `aws ec2 describe-instance-types`; the defaults are m7i.large and m7i.xlarge".into()),
                ),
                _ => self.map("ec2:DescribeInstanceTypes", e),
            })?;
        let info = out.instance_types();
        let gpu = info
            .iter()
            .filter(|t| {
                t.instance_type()
                    .is_some_and(|n| worker_types.iter().any(|w| w == n.as_str()))
            })
            .any(|t| t.gpu_info().is_some());
        let arm64 = info
            .first()
            .and_then(|t| t.processor_info())
            .is_some_and(|p| {
                p.supported_architectures()
                    .iter()
                    .all(|a| a.as_str() == "arm64")
            });
        Ok((gpu, arm64))
    }
}

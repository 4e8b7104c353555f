//! Launching instances: one RunInstances request (tags at creation, IMDSv2 only, encrypted
//! root volume, terminate on shutdown, the nodes' instance profile, an idempotency token), and
//! the fallbacks on capacity errors over subnets, instance types and markets.

use std::time::Duration;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, InstanceInterruptionBehavior,
    InstanceMarketOptionsRequest, InstanceMetadataOptionsRequest,
    InstanceNetworkInterfaceSpecification, InstanceType, MarketType, ResourceType,
    ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification, VolumeType,
};
use base64::Engine as _;
use clusterctl_core::{
    Error, Result,
    bootstrap::{self, BootLayout, render_cloud_init, scheduler_intent, worker_intent},
    model::{ClusterSpec, Node, ProviderKind, Role},
    provider::{LaunchContext, SchedulerLaunch, WorkerBatch},
    retry::{self, RetryConfig},
    tags,
};

use crate::{
    Ec2Provider, PROFILE_PROPAGATION_TIMEOUT, errors, instances::node_of, options,
    resolve::Resolved,
};

impl Ec2Provider {
    /// The scheduler: one instance, in the first subnet with capacity.
    pub(crate) async fn start_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        let spec = ctx.spec;
        let r = self.resolve(spec).await?;
        let group = self.group_id(&spec.name).await?;
        let layout = BootLayout::vm();
        let user_data = render_cloud_init(
            spec,
            &scheduler_intent(spec, &layout, ctx.tls),
            &layout,
            &self.vm_options(spec, r),
        )?;
        let mut last = None;
        for (attempt, subnet) in r.network.subnets.iter().enumerate() {
            // One token per distinct request: a retry of the same request (by the SDK) reuses
            // it, so EC2 never launches twice; a different subnet is a different request.
            let token = Self::token(spec, &format!("s{attempt}"));
            match self
                .run(
                    spec,
                    r,
                    Role::Scheduler,
                    &user_data,
                    &r.scheduler_type,
                    subnet,
                    &group,
                    1,
                    false,
                    &token,
                )
                .await
            {
                Ok(nodes) => {
                    let node = nodes.into_iter().next().ok_or_else(|| Error::Provider {
                        provider: ProviderKind::Aws,
                        operation: "ec2:RunInstances".into(),
                        message: "no instance in the response".into(),
                    })?;
                    let address = node
                        .private_ip
                        .as_ref()
                        .map(|ip| bootstrap::scheduler_address(bootstrap::scheme(spec), ip));
                    return Ok(SchedulerLaunch { node, address });
                }
                Err(e) if errors::is_capacity(&e) => {
                    ctx.progress.note(&format!(
                        "no capacity for the scheduler ({}) in {subnet}; trying the next subnet",
                        r.scheduler_type
                    ));
                    last = Some(self.map("ec2:RunInstances", e));
                }
                Err(e) => return Err(self.map("ec2:RunInstances", e)),
            }
        }
        Err(last
            .unwrap_or_else(|| Error::invalid("--subnet", "", "no subnet to launch into", None)))
    }

    /// A batch of workers, all in one request where capacity allows; on a capacity error the
    /// rest moves on to the next subnet, then instance type, then (after Spot) on-demand.
    pub(crate) async fn start_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let spec = ctx.spec;
        let r = self.resolve(spec).await?;
        let group = self.group_id(&spec.name).await?;
        let layout = BootLayout::vm();
        let intent = worker_intent(spec, &layout, ctx.tls, scheduler_address, None);
        let user_data = render_cloud_init(spec, &intent, &layout, &self.vm_options(spec, r))?;
        let markets: &[bool] = if self.options.spot {
            &[true, false]
        } else {
            &[false]
        };
        let mut launched: Vec<Node> = Vec::new();
        let mut last = None;
        let mut attempt = 0;
        'outer: for &spot in markets {
            for itype in &r.worker_types {
                for subnet in &r.network.subnets {
                    let remaining = batch.count - launched.len() as u32;
                    if remaining == 0 {
                        break 'outer;
                    }
                    attempt += 1;
                    let token = Self::token(spec, &format!("w{attempt}"));
                    match self
                        .run(
                            spec,
                            r,
                            Role::Worker,
                            &user_data,
                            itype,
                            subnet,
                            &group,
                            remaining,
                            spot,
                            &token,
                        )
                        .await
                    {
                        Ok(nodes) => launched.extend(nodes),
                        Err(e) if errors::is_capacity(&e) => {
                            ctx.progress.note(&format!(
                                "no {} capacity for {itype} in {subnet}; trying the next option",
                                if spot { "spot" } else { "on-demand" }
                            ));
                            last = Some(self.map("ec2:RunInstances", e));
                        }
                        Err(e) => return Err(self.map("ec2:RunInstances", e)),
                    }
                }
            }
        }
        if (launched.len() as u32) < batch.count {
            return Err(last.unwrap_or_else(|| Error::CapacityUnavailable {
                provider: ProviderKind::Aws,
                location: self.region.clone(),
                message: format!("launched {} of {} workers", launched.len(), batch.count),
            }));
        }
        Ok(launched)
    }

    /// One RunInstances call. Returns the launched nodes.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        spec: &ClusterSpec,
        resolved: &Resolved,
        role: Role,
        user_data: &str,
        instance_type: &str,
        subnet: &str,
        group: &str,
        count: u32,
        spot: bool,
        token: &str,
    ) -> std::result::Result<
        Vec<Node>,
        aws_sdk_ec2::error::SdkError<
            aws_sdk_ec2::operation::run_instances::RunInstancesError,
            aws_sdk_ec2::config::http::HttpResponse,
        >,
    > {
        let node_tags = tags::node_tags(spec, role, role.as_str());
        let tag_list: Vec<Tag> = node_tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let spec_for = |t: ResourceType| {
            TagSpecification::builder()
                .resource_type(t)
                .set_tags(Some(tag_list.clone()))
                .build()
        };
        let mut req = self
            .ec2
            .run_instances()
            .image_id(&resolved.ami)
            .instance_type(InstanceType::from(instance_type))
            // All or nothing: a partial launch would leave the rest to a fallback anyway, and
            // EC2 reports a capacity error that moves on to the next subnet, type or market.
            .min_count(count as i32)
            .max_count(count as i32)
            .client_token(token)
            .user_data(base64::engine::general_purpose::STANDARD.encode(user_data))
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(subnet)
                    .groups(group)
                    .associate_public_ip_address(!spec.private)
                    .delete_on_termination(true)
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&resolved.root_device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(
                                self.options
                                    .root_volume_gib
                                    .unwrap_or(options::DEFAULT_ROOT_GIB)
                                    as i32,
                            )
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .tag_specifications(spec_for(ResourceType::Instance))
            .tag_specifications(spec_for(ResourceType::Volume));
        if spot {
            req = req.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        req = req.iam_instance_profile(
            aws_sdk_ec2::types::IamInstanceProfileSpecification::builder()
                .name(self.instance_profile(&spec.name))
                .build(),
        );
        if let Some(k) = &self.options.key_name {
            req = req.key_name(k);
        }
        // A profile created moments ago may not be known to EC2 yet (IAM is eventually
        // consistent): the same request (same client token) again, with backoff, bounded.
        let propagation = RetryConfig {
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retries: 40,
            max_total_delay: PROFILE_PROPAGATION_TIMEOUT,
        };
        let out = retry::retry_while(
            &propagation,
            || req.clone().send(),
            errors::is_profile_propagation,
        )
        .await?;
        Ok(out.instances().iter().filter_map(node_of).collect())
    }

    fn token(spec: &ClusterSpec, what: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut t = format!("cc-{}-{}-{what}-{nanos:x}", spec.name, spec.created_at);
        t.truncate(64);
        t
    }
}

//! `clusterctl doctor` on EC2: the plan's checks, then EC2's own dry runs of the two calls that
//! need permissions a read-only identity lacks (CreateSecurityGroup, RunInstances with the
//! resolved image, type and subnet). A dry run answers `DryRunOperation` when the call would
//! have been allowed, `UnauthorizedOperation` when not, and creates nothing.

use clusterctl_core::{
    doctor::{Check, plan_check},
    provider::LaunchContext,
};

use crate::{Ec2Provider, errors, network};

/// What a dry run's answer means: allowed, refused, or another failure.
fn verdict<E, R>(
    name: &str,
    action: &str,
    result: Result<impl Sized, aws_sdk_ec2::error::SdkError<E, R>>,
) -> Check
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Err(e) if errors::code(&e) == Some("DryRunOperation") => {
            Check::pass(name, format!("{action} would be allowed (dry run)"))
        }
        Err(e) if errors::code(&e) == Some("UnauthorizedOperation") => Check::fail(
            name,
            format!("{action} is not allowed for this identity"),
            Some(format!(
                "grant `{action}` (see the IAM policy in the README's AWS section)"
            )),
        ),
        Err(e) => {
            let err = errors::map(action, "", e);
            Check::from_error(name, &err)
        }
        // A platform that ignored DryRun: say so rather than report a permission it proved.
        Ok(_) => Check::fail(
            name,
            format!("{action} with DryRun returned success: the endpoint ignores dry runs"),
            Some("check that AWS_ENDPOINT_URL points at EC2 itself".into()),
        ),
    }
}

impl Ec2Provider {
    /// The checks of `doctor` (see the module's documentation).
    pub(crate) async fn doctor_checks(&self, ctx: &LaunchContext<'_>) -> Vec<Check> {
        let (plan, planned) = plan_check(self, ctx).await;
        let mut checks = vec![plan];
        if planned.is_none() {
            return checks;
        }
        let Ok(r) = self.resolve(ctx.spec).await else {
            return checks;
        };
        let sg = self
            .ec2
            .create_security_group()
            .dry_run(true)
            .group_name(network::group_name(&ctx.spec.name))
            .description("clusterctl doctor (dry run)")
            .vpc_id(&r.network.vpc_id)
            .send()
            .await;
        checks.push(verdict(
            "permission to create the security group",
            "ec2:CreateSecurityGroup",
            sg,
        ));
        let mut run = self
            .ec2
            .run_instances()
            .dry_run(true)
            .image_id(&r.ami)
            .instance_type(r.scheduler_type.as_str().into())
            .min_count(1)
            .max_count(1);
        if let Some(subnet) = r.network.subnets.first() {
            run = run.subnet_id(subnet);
        }
        checks.push(verdict(
            "permission to launch instances",
            "ec2:RunInstances",
            run.send().await,
        ));
        checks
    }
}

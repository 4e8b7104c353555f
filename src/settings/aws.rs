//! The AWS providers' options (`aws`, `fargate`): flags beat the file's section, which beats the
//! provider's defaults. The keys are those of `clusterctl_aws::Ec2Options` and `FargateOptions`.

use crate::cli::UpArgs;

use super::list;

/// The EC2 options: flags beat the file's `aws:` section.
pub(super) fn ec2_options(
    up: &UpArgs,
    file: Option<&crate::config::AwsSection>,
    region: Option<&str>,
) -> serde_json::Value {
    let f = file.cloned().unwrap_or_default();
    let args = &up.aws;
    serde_json::json!({
        "region": region,
        "vpc": up.net.vpc.clone().or(f.vpc),
        "subnets": list(&args.subnets, f.subnets),
        "allow_cidrs": list(&up.net.allow_cidrs, f.allow_cidrs),
        "ami": args.ami.clone().or(f.ami),
        "scheduler_instance_type": args.scheduler_instance_type.clone().or(f.scheduler_instance_type),
        "worker_instance_types": list(&args.worker_instance_types, f.worker_instance_types),
        "root_volume_gib": args.root_volume_gib.or(f.root_volume_size),
        "spot": args.spot || f.spot.unwrap_or(false),
        "instance_profile": args.instance_profile.clone().or(f.instance_profile),
        "key_name": args.key_name.clone().or(f.key_name),
    })
}

/// The Fargate options: flags beat the file's `fargate:` section; the market flag is shared
/// with `aws`.
pub(super) fn fargate_options(
    args: &UpArgs,
    file: Option<&crate::config::FargateSection>,
    region: Option<&str>,
) -> serde_json::Value {
    let f = file.cloned().unwrap_or_default();
    let (a, g) = (&args.aws, &args.fargate);
    serde_json::json!({
        "region": region,
        "vpc": args.net.vpc.clone().or(f.vpc),
        "subnets": list(&a.subnets, f.subnets),
        "allow_cidrs": list(&args.net.allow_cidrs, f.allow_cidrs),
        "spot": a.spot || f.spot.unwrap_or(false),
        "ecs_cluster": g.ecs_cluster.clone().or(f.ecs_cluster),
        "execution_role_arn": g.execution_role_arn.clone().or(f.execution_role_arn),
        "task_role_arn": g.task_role_arn.clone().or(f.task_role_arn),
        "task_role_policies": list(&g.task_role_policies, f.task_role_policies),
        "log_group": g.log_group.clone().or(f.log_group),
        "log_retention_days": g.log_retention_days.or(f.log_retention_days),
        "keep_logs": g.keep_logs || f.keep_logs.unwrap_or(false),
        "architecture": g.cpu_architecture.clone().or(f.cpu_architecture),
    })
}

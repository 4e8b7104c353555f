//! Error paths moto cannot produce, against the SDK's own mocks: capacity fallback across
//! markets and subnets, quota errors reported without fallback, throttling retried, pagination,
//! and DependencyViolation retried while interfaces detach.

use aws_sdk_ec2::{
    Client,
    error::ErrorMetadata,
    operation::{
        delete_security_group::{DeleteSecurityGroupError, DeleteSecurityGroupOutput},
        describe_images::DescribeImagesOutput,
        describe_instance_types::DescribeInstanceTypesOutput,
        describe_instances::{DescribeInstancesError, DescribeInstancesOutput},
        describe_security_groups::DescribeSecurityGroupsOutput,
        describe_subnets::DescribeSubnetsOutput,
        describe_vpcs::DescribeVpcsOutput,
        run_instances::{RunInstancesError, RunInstancesOutput},
    },
    types::{
        Image, Instance, InstanceState, InstanceStateName, InstanceTypeInfo, MarketType,
        Reservation, SecurityGroup, Subnet, Tag, Vpc,
    },
};
use aws_smithy_mocks::{Rule, RuleMode, mock};
use clusterctl_core::{
    Error,
    model::{ClusterName, Role},
    provider::ClusterProvider,
};

use crate::{Ec2Options, Ec2Provider};

/// Rules for the read-only calls `resolve` and `group_id` make, with subnets a and b.
fn network_rules() -> Vec<Rule> {
    vec![
        mock!(Client::describe_subnets).then_output(|| {
            DescribeSubnetsOutput::builder()
                .subnets(
                    Subnet::builder()
                        .subnet_id("subnet-a")
                        .vpc_id("vpc-1")
                        .availability_zone("us-east-1a")
                        .build(),
                )
                .subnets(
                    Subnet::builder()
                        .subnet_id("subnet-b")
                        .vpc_id("vpc-1")
                        .availability_zone("us-east-1b")
                        .build(),
                )
                .build()
        }),
        mock!(Client::describe_vpcs).then_output(|| {
            DescribeVpcsOutput::builder()
                .vpcs(
                    Vpc::builder()
                        .vpc_id("vpc-1")
                        .cidr_block("10.0.0.0/16")
                        .build(),
                )
                .build()
        }),
        mock!(Client::describe_instance_types).then_output(|| {
            DescribeInstanceTypesOutput::builder()
                .instance_types(
                    InstanceTypeInfo::builder()
                        .instance_type("m7i.xlarge".into())
                        .build(),
                )
                .build()
        }),
        mock!(Client::describe_images).then_output(|| {
            DescribeImagesOutput::builder()
                .images(
                    Image::builder()
                        .image_id("ami-1")
                        .root_device_name("/dev/xvda")
                        .build(),
                )
                .build()
        }),
        mock!(Client::describe_security_groups).then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .security_groups(
                    SecurityGroup::builder()
                        .group_id("sg-1")
                        .group_name("clusterctl-m")
                        .build(),
                )
                .build()
        }),
    ]
}

fn provider(ec2: Client, options: Ec2Options) -> Ec2Provider {
    // No key parameters, role or instance profile exist (what cleanup looks for).
    let no_entity = || {
        aws_sdk_iam::error::ErrorMetadata::builder()
            .code("NoSuchEntity")
            .build()
    };
    let iam_rules = [
        mock!(aws_sdk_iam::Client::get_role).then_error(move || {
            aws_sdk_iam::operation::get_role::GetRoleError::generic(no_entity())
        }),
        mock!(aws_sdk_iam::Client::get_instance_profile).then_error(move || {
            aws_sdk_iam::operation::get_instance_profile::GetInstanceProfileError::generic(
                no_entity(),
            )
        }),
    ];
    let ssm_rules = [
        mock!(aws_sdk_ssm::Client::get_parameters_by_path).then_output(|| {
            aws_sdk_ssm::operation::get_parameters_by_path::GetParametersByPathOutput::builder()
                .build()
        }),
    ];
    let iam = mocked!(aws_sdk_iam, RuleMode::MatchAny, &iam_rules);
    let ssm = mocked!(aws_sdk_ssm, RuleMode::MatchAny, &ssm_rules);
    let sts = mocked!(aws_sdk_sts, RuleMode::MatchAny, Vec::<&Rule>::new());
    Ec2Provider::from_clients(ec2, iam, ssm, sts, "us-east-1".into(), options)
}

fn options(spot: bool) -> Ec2Options {
    Ec2Options {
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        ami: Some("ami-1".into()),
        spot,
        ..Default::default()
    }
}

/// Launch 3 workers (spot preferred, subnets a then b) against `rules`.
async fn launch_three(rules: &[Rule]) -> clusterctl_core::Result<Vec<clusterctl_core::Node>> {
    let ec2 = mocked!(aws_sdk_ec2, RuleMode::MatchAny, rules);
    let p = provider(ec2, options(true));
    crate::test_support::launch_workers(&p, 3).await
}

fn worker(id: &str) -> Instance {
    Instance::builder()
        .instance_id(id)
        .private_ip_address("10.0.0.9")
        .state(
            InstanceState::builder()
                .name(InstanceStateName::Pending)
                .build(),
        )
        .tags(
            Tag::builder()
                .key("clusterctl-role")
                .value("worker")
                .build(),
        )
        .tags(Tag::builder().key("clusterctl-cluster").value("m").build())
        .build()
}

fn capacity() -> RunInstancesError {
    RunInstancesError::generic(
        ErrorMetadata::builder()
            .code("InsufficientInstanceCapacity")
            .message("none left")
            .build(),
    )
}

#[tokio::test]
async fn capacity_errors_fall_back_across_subnets_then_to_on_demand() {
    // Spot in a: none; spot in b: one of three; on-demand in a: the other two.
    let run = mock!(Client::run_instances)
        .sequence()
        .error(capacity)
        .output(|| {
            RunInstancesOutput::builder()
                .instances(worker("i-1"))
                .build()
        })
        .output(|| {
            RunInstancesOutput::builder()
                .instances(worker("i-2"))
                .instances(worker("i-3"))
                .build()
        })
        .build();
    let mut rules = network_rules();
    rules.push(run.clone());
    let nodes = launch_three(&rules).await.unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["i-1", "i-2", "i-3"]);
    assert!(nodes.iter().all(|n| n.role == Role::Worker));
    assert_eq!(
        run.num_calls(),
        3,
        "one call per (market, subnet) tried, no blind retries"
    );
}

#[tokio::test]
async fn spot_and_subnet_are_what_each_attempt_asks_for() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let run = mock!(Client::run_instances)
        .match_requests(move |r| {
            let spot = r.instance_market_options().and_then(|m| m.market_type())
                == Some(&MarketType::Spot);
            let subnet = r
                .network_interfaces()
                .first()
                .and_then(|n| n.subnet_id())
                .unwrap_or_default()
                .to_string();
            log.lock().unwrap().push((spot, subnet, r.max_count()));
            true
        })
        .sequence()
        .error(capacity)
        .times(2)
        .output(|| {
            RunInstancesOutput::builder()
                .instances(worker("i-1"))
                .instances(worker("i-2"))
                .instances(worker("i-3"))
                .build()
        })
        .build();
    let mut rules = network_rules();
    rules.push(run);
    let ec2 = mocked!(aws_sdk_ec2, RuleMode::MatchAny, &rules);
    let p = provider(ec2, options(true));
    crate::test_support::launch_workers(&p, 3).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (true, "subnet-a".into(), Some(3)),
            (true, "subnet-b".into(), Some(3)),
            (false, "subnet-a".into(), Some(3))
        ]
    );
}

#[tokio::test]
async fn quota_errors_are_reported_without_fallback() {
    let run = mock!(Client::run_instances).then_error(|| {
        RunInstancesError::generic(
            ErrorMetadata::builder()
                .code("VcpuLimitExceeded")
                .message("limit 32")
                .build(),
        )
    });
    let mut rules = network_rules();
    rules.push(run.clone());
    let err = launch_three(&rules).await.unwrap_err();
    assert!(matches!(err, Error::QuotaExceeded { .. }), "{err}");
    assert!(err.to_string().contains("VcpuLimitExceeded"), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert_eq!(run.num_calls(), 1);
}

fn running(id: &str) -> Instance {
    Instance::builder()
        .instance_id(id)
        .state(
            InstanceState::builder()
                .name(InstanceStateName::Running)
                .build(),
        )
        .tags(
            Tag::builder()
                .key("clusterctl-role")
                .value("worker")
                .build(),
        )
        .build()
}

#[tokio::test]
async fn throttling_is_retried_and_pages_are_followed() {
    let throttled = || {
        DescribeInstancesError::generic(
            ErrorMetadata::builder()
                .code("RequestLimitExceeded")
                .message("slow down")
                .build(),
        )
    };
    let describe = mock!(Client::describe_instances)
        .sequence()
        .error(throttled)
        .times(2)
        .output(|| {
            DescribeInstancesOutput::builder()
                .reservations(Reservation::builder().instances(running("i-1")).build())
                .next_token("page-2")
                .build()
        })
        .output(|| {
            DescribeInstancesOutput::builder()
                .reservations(Reservation::builder().instances(running("i-2")).build())
                .build()
        })
        .build();
    let ec2 = mocked!(aws_sdk_ec2, RuleMode::Sequential, [&describe]);
    let p = provider(ec2, options(false));
    let nodes = p
        .list_nodes(Some(&ClusterName::new("m").unwrap()))
        .await
        .unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(),
        ["i-1", "i-2"]
    );
    assert_eq!(
        describe.num_calls(),
        4,
        "two throttled attempts, then two pages"
    );
}

#[tokio::test]
async fn security_group_deletion_waits_out_dependency_violations() {
    let groups = mock!(Client::describe_security_groups)
        .sequence()
        .output(|| {
            DescribeSecurityGroupsOutput::builder()
                .security_groups(
                    SecurityGroup::builder()
                        .group_id("sg-1")
                        .group_name("clusterctl-m")
                        .build(),
                )
                .build()
        })
        .output(|| DescribeSecurityGroupsOutput::builder().build())
        .build();
    let delete = mock!(Client::delete_security_group)
        .sequence()
        .error(|| {
            DeleteSecurityGroupError::generic(
                ErrorMetadata::builder()
                    .code("DependencyViolation")
                    .message("resource sg-1 has a dependent object")
                    .build(),
            )
        })
        .output(|| DeleteSecurityGroupOutput::builder().build())
        .build();
    let describe = mock!(Client::describe_instances)
        .then_output(|| DescribeInstancesOutput::builder().build());
    let ec2 = mocked!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        [&groups, &delete, &describe]
    );
    let p = provider(ec2, options(false));
    let left = p.cleanup(&ClusterName::new("m").unwrap()).await.unwrap();
    assert_eq!(left, Vec::<String>::new());
    assert_eq!(delete.num_calls(), 2);
}

fn profile_not_yet_known() -> RunInstancesError {
    RunInstancesError::generic(
        ErrorMetadata::builder()
            .code("InvalidParameterValue")
            .message(
                "Value (clusterctl-m-node) for parameter iamInstanceProfile.name is invalid. \
                 Invalid IAM Instance Profile name",
            )
            .build(),
    )
}

#[tokio::test]
async fn a_just_created_instance_profile_is_waited_for_with_the_same_request() {
    // IAM is eventually consistent: EC2 refuses a profile made moments ago. The same request
    // (same client token, same profile) goes again until EC2 knows it; the market and subnet
    // do not move on, and nothing launches twice.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let run = mock!(Client::run_instances)
        .match_requests(move |r| {
            log.lock().unwrap().push((
                r.client_token().unwrap_or_default().to_string(),
                r.iam_instance_profile()
                    .and_then(|p| p.name())
                    .unwrap_or_default()
                    .to_string(),
                r.network_interfaces()
                    .first()
                    .and_then(|n| n.subnet_id())
                    .unwrap_or_default()
                    .to_string(),
            ));
            true
        })
        .sequence()
        .error(profile_not_yet_known)
        .times(2)
        .output(|| {
            RunInstancesOutput::builder()
                .instances(worker("i-1"))
                .instances(worker("i-2"))
                .instances(worker("i-3"))
                .build()
        })
        .build();
    let mut rules = network_rules();
    rules.push(run.clone());
    let nodes = launch_three(&rules).await.unwrap();
    assert_eq!(nodes.len(), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter().all(|s| s == &seen[0]),
        "one request repeated: {seen:?}"
    );
    assert_eq!(seen[0].1, "clusterctl-m-node", "the cluster's own profile");
    assert_eq!(seen[0].2, "subnet-a");
}

#[test]
fn only_the_unknown_profile_error_counts_as_propagation() {
    use aws_smithy_runtime_api::client::{orchestrator::HttpResponse, result::SdkError};
    let raw = || {
        HttpResponse::new(
            400.try_into().unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        )
    };
    let e: SdkError<RunInstancesError, HttpResponse> =
        SdkError::service_error(profile_not_yet_known(), raw());
    assert!(crate::errors::is_profile_propagation(&e));
    let other = RunInstancesError::generic(
        ErrorMetadata::builder()
            .code("InvalidParameterValue")
            .message("Value (x) for parameter instanceType is invalid")
            .build(),
    );
    let e: SdkError<RunInstancesError, HttpResponse> = SdkError::service_error(other, raw());
    assert!(!crate::errors::is_profile_propagation(&e));
    let e: SdkError<RunInstancesError, HttpResponse> = SdkError::service_error(capacity(), raw());
    assert!(!crate::errors::is_profile_propagation(&e));
}

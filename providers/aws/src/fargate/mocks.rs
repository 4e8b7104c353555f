//! Fargate paths moto cannot produce, against the SDK's own mocks: RunTask in batches of ten,
//! Fargate Spot capacity falling back to on-demand, account limits reported as quota errors,
//! RunTask retried while a new execution role propagates, and which tasks `down` lists.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use aws_sdk_ecs::{
    Client,
    error::ErrorMetadata,
    operation::{
        describe_task_definition::DescribeTaskDefinitionError,
        register_task_definition::RegisterTaskDefinitionOutput,
        run_task::{RunTaskError, RunTaskOutput},
    },
    types::{Attachment, Failure, KeyValuePair, Tag, Task, TaskDefinition},
};
use aws_smithy_mocks::{Rule, RuleMode, mock};
use clusterctl_core::{Error, provider::ClusterProvider};

use super::{FargateClients, FargateOptions, FargateProvider};
use crate::test_support::spec;

/// A clusterctl task of cluster `m` as ECS describes it, with its ENI details.
fn task(arn: &str, role: &str, last_status: &str, ip: &str) -> Task {
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let detail = |k: &str, v: &str| KeyValuePair::builder().name(k).value(v).build();
    Task::builder()
        .task_arn(arn)
        .last_status(last_status)
        .desired_status("RUNNING")
        .tags(tag("clusterctl-managed", "true"))
        .tags(tag("clusterctl-cluster", "m"))
        .tags(tag("clusterctl-role", role))
        .tags(tag("clusterctl-protocol", "tls"))
        .attachments(
            Attachment::builder()
                .r#type("ElasticNetworkInterface")
                .details(detail("privateIPv4Address", ip))
                .details(detail("networkInterfaceId", "eni-1"))
                .build(),
        )
        .build()
}

fn worker_task(n: u32) -> Task {
    task(
        &format!("arn:aws:ecs:us-east-1:123456789012:task/clusterctl-m/t{n}"),
        "worker",
        "PROVISIONING",
        &format!("10.0.0.{n}"),
    )
}

/// ECS rules every worker launch needs besides RunTask: no task definition yet, then one
/// registered.
fn task_definition_rules() -> Vec<Rule> {
    vec![
        mock!(Client::describe_task_definition).then_error(|| {
            DescribeTaskDefinitionError::generic(
                ErrorMetadata::builder()
                    .code("ClientException")
                    .message("Unable to describe task definition.")
                    .build(),
            )
        }),
        mock!(Client::register_task_definition).then_output(|| {
            RegisterTaskDefinitionOutput::builder()
                .task_definition(
                    TaskDefinition::builder()
                        .task_definition_arn(
                            "arn:aws:ecs:us-east-1:123456789012:task-definition/clusterctl-m-worker:1",
                        )
                        .build(),
                )
                .build()
        }),
    ]
}

fn provider(ecs_rules: &[Rule], spot: bool) -> FargateProvider {
    let options = FargateOptions {
        subnets: vec!["subnet-a".into()],
        spot,
        ..Default::default()
    };
    provider_with(ecs_rules, options)
}

fn provider_with(ecs_rules: &[Rule], options: FargateOptions) -> FargateProvider {
    use aws_sdk_ec2::{
        Client as Ec2,
        operation::{
            describe_network_interfaces::DescribeNetworkInterfacesOutput,
            describe_security_groups::DescribeSecurityGroupsOutput,
            describe_subnets::DescribeSubnetsOutput, describe_vpcs::DescribeVpcsOutput,
        },
        types::{NetworkInterface, NetworkInterfaceAssociation, SecurityGroup, Subnet, Vpc},
    };
    let ec2_rules = [
        mock!(Ec2::describe_subnets).then_output(|| {
            DescribeSubnetsOutput::builder()
                .subnets(
                    Subnet::builder()
                        .subnet_id("subnet-a")
                        .vpc_id("vpc-1")
                        .build(),
                )
                .build()
        }),
        mock!(Ec2::describe_vpcs).then_output(|| {
            DescribeVpcsOutput::builder()
                .vpcs(
                    Vpc::builder()
                        .vpc_id("vpc-1")
                        .cidr_block("10.0.0.0/16")
                        .build(),
                )
                .build()
        }),
        mock!(Ec2::describe_network_interfaces).then_output(|| {
            DescribeNetworkInterfacesOutput::builder()
                .network_interfaces(
                    NetworkInterface::builder()
                        .network_interface_id("eni-1")
                        .association(
                            NetworkInterfaceAssociation::builder()
                                .public_ip("203.0.113.9")
                                .build(),
                        )
                        .build(),
                )
                .build()
        }),
        mock!(Ec2::describe_security_groups).then_output(|| {
            DescribeSecurityGroupsOutput::builder()
                .security_groups(
                    SecurityGroup::builder()
                        .group_id("sg-1")
                        .group_name("clusterctl-m")
                        .build(),
                )
                .build()
        }),
    ];
    let sts_rules = [
        mock!(aws_sdk_sts::Client::get_caller_identity).then_output(|| {
            aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput::builder()
                .arn("arn:aws:iam::123456789012:user/t")
                .account("123456789012")
                .build()
        }),
    ];
    let none = Vec::<&Rule>::new();
    let clients = FargateClients {
        ec2: mocked!(aws_sdk_ec2, RuleMode::MatchAny, &ec2_rules),
        ecs: mocked!(aws_sdk_ecs, RuleMode::MatchAny, ecs_rules),
        iam: mocked!(aws_sdk_iam, RuleMode::MatchAny, none.clone()),
        logs: mocked!(aws_sdk_cloudwatchlogs, RuleMode::MatchAny, none.clone()),
        ssm: mocked!(aws_sdk_ssm, RuleMode::MatchAny, none),
        sts: mocked!(aws_sdk_sts, RuleMode::MatchAny, &sts_rules),
    };
    FargateProvider::from_clients(clients, "us-east-1".into(), options)
}

async fn launch(
    p: &FargateProvider,
    count: u32,
) -> clusterctl_core::Result<Vec<clusterctl_core::Node>> {
    crate::test_support::launch_workers(p, count).await
}

#[tokio::test]
async fn workers_start_in_run_task_batches_of_ten() {
    let next = Arc::new(AtomicU32::new(0));
    let counts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (n, c) = (next.clone(), counts.clone());
    let run = mock!(Client::run_task).then_compute_output(move |req| {
        let count = req.count().unwrap_or(1) as u32;
        c.lock().unwrap().push(count);
        let mut out = RunTaskOutput::builder();
        for _ in 0..count {
            out = out.tasks(worker_task(n.fetch_add(1, Ordering::SeqCst)));
        }
        out.build()
    });
    let mut rules = task_definition_rules();
    rules.push(run);
    let p = provider(&rules, false);
    let nodes = launch(&p, 25).await.unwrap();
    assert_eq!(nodes.len(), 25);
    let mut counts = counts.lock().unwrap().clone();
    counts.sort();
    assert_eq!(counts, vec![5, 10, 10], "three RunTask calls");
    let mut ids: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 25, "every worker is its own task");
}

#[tokio::test]
async fn spot_capacity_falls_back_to_on_demand() {
    let spot = mock!(Client::run_task)
        .match_requests(|r| !r.capacity_provider_strategy().is_empty())
        .then_output(|| {
            RunTaskOutput::builder()
                .tasks(worker_task(1))
                .tasks(worker_task(2))
                .failures(
                    Failure::builder()
                        .reason("Capacity is unavailable at this time. Please try again later or in a different availability zone")
                        .build(),
                )
                .build()
        });
    let on_demand = mock!(Client::run_task)
        .match_requests(|r| {
            r.launch_type() == Some(&aws_sdk_ecs::types::LaunchType::Fargate)
                && r.count() == Some(1)
        })
        .then_output(|| RunTaskOutput::builder().tasks(worker_task(3)).build());
    let mut rules = task_definition_rules();
    rules.extend([spot, on_demand]);
    let p = provider(&rules, true);
    let nodes = launch(&p, 3).await.unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(rules[2].num_calls(), 1, "one spot call");
    assert_eq!(
        rules[3].num_calls(),
        1,
        "one on-demand call for the missing worker"
    );
}

#[tokio::test]
async fn account_limits_are_quota_errors_and_capacity_is_reported() {
    let quota = mock!(Client::run_task).then_output(|| {
        RunTaskOutput::builder()
            .tasks(worker_task(1))
            .failures(
                Failure::builder()
                    .reason(
                        "You've reached the limit on the number of vCPUs you can run concurrently",
                    )
                    .build(),
            )
            .build()
    });
    let mut rules = task_definition_rules();
    rules.push(quota);
    let err = launch(&provider(&rules, false), 2).await.unwrap_err();
    assert!(matches!(err, Error::QuotaExceeded { .. }), "{err:?}");
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string()
            .contains("1 of 2 worker task(s) did not start"),
        "{err}"
    );

    let capacity = mock!(Client::run_task).then_output(|| {
        RunTaskOutput::builder()
            .failures(
                Failure::builder()
                    .reason("Capacity is unavailable at this time.")
                    .build(),
            )
            .build()
    });
    let mut rules = task_definition_rules();
    rules.push(capacity);
    let err = launch(&provider(&rules, false), 1).await.unwrap_err();
    assert!(matches!(err, Error::CapacityUnavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn run_task_waits_for_a_new_role_to_propagate() {
    let run = mock!(Client::run_task)
        .sequence()
        .error(|| {
            RunTaskError::generic(
                ErrorMetadata::builder()
                    .code("InvalidParameterException")
                    .message("ECS was unable to assume the role 'arn:aws:iam::123456789012:role/clusterctl/clusterctl-m-exec'")
                    .build(),
            )
        })
        .output(|| RunTaskOutput::builder().tasks(worker_task(1)).build())
        .build();
    let mut rules = task_definition_rules();
    rules.push(run);
    let nodes = launch(&provider(&rules, false), 1).await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(rules[2].num_calls(), 2);

    // Other parameter errors are reported at once.
    let bad = mock!(Client::run_task).then_error(|| {
        RunTaskError::generic(
            ErrorMetadata::builder()
                .code("InvalidParameterException")
                .message("subnet not found")
                .build(),
        )
    });
    let mut rules = task_definition_rules();
    rules.push(bad);
    let err = launch(&provider(&rules, false), 1).await.unwrap_err();
    assert!(err.to_string().contains("subnet not found"), "{err}");
    assert_eq!(rules[2].num_calls(), 1);
}

#[tokio::test]
async fn the_client_reaches_the_scheduler_at_its_public_address() {
    use aws_sdk_ecs::{
        operation::{
            describe_clusters::DescribeClustersOutput, describe_tasks::DescribeTasksOutput,
            list_tasks::ListTasksOutput,
        },
        types::Cluster,
    };
    const ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/clusterctl-m/s1";
    let scheduler = || task(ARN, "scheduler", "RUNNING", "10.0.0.5");
    let rules = [
        mock!(Client::describe_clusters).then_output(|| {
            DescribeClustersOutput::builder()
                .clusters(
                    Cluster::builder()
                        .cluster_name("clusterctl-m")
                        .status("ACTIVE")
                        .build(),
                )
                .build()
        }),
        mock!(Client::list_tasks).then_output(|| ListTasksOutput::builder().task_arns(ARN).build()),
        mock!(Client::describe_tasks)
            .then_output(move || DescribeTasksOutput::builder().tasks(scheduler()).build()),
    ];
    let p = provider(&rules, false);
    let node = p.list_nodes(Some(&spec().name)).await.unwrap().remove(0);
    assert_eq!(node.name, "scheduler");
    let public = p.endpoints(&node, false).await.unwrap();
    assert_eq!(public.scheduler_address, "tls://203.0.113.9:8786");
    assert_eq!(public.dashboard_url, "http://203.0.113.9:8787/status");
    let private = p.endpoints(&node, true).await.unwrap();
    assert_eq!(private.scheduler_address, "tls://10.0.0.5:8786");
}

/// What `down` lists in an ECS cluster holding a running task and one stopping by itself, the
/// cluster's own tagged `owner` (`None`: the given `--ecs-cluster`): the ListTasks desired
/// statuses asked by `list_nodes_to_stop`, and the tasks it returned.
async fn listed_to_stop(owner: Option<&'static str>) -> (Vec<String>, Vec<String>) {
    use aws_sdk_ecs::{
        operation::{
            describe_clusters::DescribeClustersOutput, describe_tasks::DescribeTasksOutput,
            list_tasks::ListTasksOutput,
        },
        types::{Cluster, DesiredStatus},
    };
    const RUNNING: &str = "arn:aws:ecs:us-east-1:123456789012:task/clusterctl-m/r1";
    const STOPPING: &str = "arn:aws:ecs:us-east-1:123456789012:task/clusterctl-m/s1";
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = asked.clone();
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let rules = [
        mock!(Client::describe_clusters).then_output(move || {
            DescribeClustersOutput::builder()
                .clusters(
                    Cluster::builder()
                        .cluster_name("clusterctl-m")
                        .cluster_arn("arn:aws:ecs:us-east-1:123456789012:cluster/clusterctl-m")
                        .status("ACTIVE")
                        .tags(tag("clusterctl-managed", "true"))
                        .tags(tag("clusterctl-cluster", owner.unwrap_or("m")))
                        .build(),
                )
                .build()
        }),
        mock!(Client::list_tasks).then_compute_output(move |req| {
            let status = req
                .desired_status()
                .cloned()
                .unwrap_or(DesiredStatus::Running);
            a.lock().unwrap().push(status.as_str().to_string());
            let arn = if status == DesiredStatus::Running {
                RUNNING
            } else {
                STOPPING
            };
            ListTasksOutput::builder().task_arns(arn).build()
        }),
        mock!(Client::describe_tasks).then_compute_output(|req| {
            let mut out = DescribeTasksOutput::builder();
            for arn in req.tasks() {
                let state = if arn == RUNNING {
                    "RUNNING"
                } else {
                    "DEACTIVATING"
                };
                out = out.tasks(task(arn, "worker", state, "10.0.0.7"));
            }
            out.build()
        }),
    ];
    let options = FargateOptions {
        subnets: vec!["subnet-a".into()],
        ecs_cluster: owner.is_none().then(|| "shared".to_string()),
        ..Default::default()
    };
    let p = provider_with(&rules, options);
    let nodes = p.list_nodes_to_stop(&spec().name).await.unwrap();
    let asked = asked.lock().unwrap().clone();
    (asked, nodes.into_iter().map(|n| n.id).collect())
}

#[tokio::test]
async fn down_lists_only_tasks_desired_running_where_delete_cluster_waits_for_the_rest() {
    // The own ECS cluster, tagged for this cluster: DeleteCluster waits while tasks drain, so
    // the task stopping by itself need not be listed (one ListTasks).
    let (asked, listed) = listed_to_stop(Some("m")).await;
    assert_eq!(asked, ["RUNNING"]);
    assert_eq!(
        listed,
        ["arn:aws:ecs:us-east-1:123456789012:task/clusterctl-m/r1"]
    );
    // An ECS cluster of that name not made for this cluster (not deleted), or `--ecs-cluster`
    // (never deleted): both halves, the stopping task is listed and waited for.
    for owner in [Some("other"), None] {
        let (asked, listed) = listed_to_stop(owner).await;
        assert_eq!(asked, ["RUNNING", "STOPPED"], "{owner:?}");
        assert_eq!(listed.len(), 2, "{owner:?}: {listed:?}");
    }
}

#[tokio::test]
async fn a_task_of_another_cluster_is_described_once() {
    use aws_sdk_ecs::{
        operation::{describe_tasks::DescribeTasksOutput, list_tasks::ListTasksOutput},
        types::DesiredStatus,
    };
    const MINE: &str = "arn:aws:ecs:us-east-1:123456789012:task/shared/m1";
    const THEIRS: &str = "arn:aws:ecs:us-east-1:123456789012:task/shared/o1";
    let described = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let d = described.clone();
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let rules = [
        mock!(Client::list_tasks).then_compute_output(|req| {
            let mut out = ListTasksOutput::builder();
            if req.desired_status() != Some(&DesiredStatus::Stopped) {
                out = out.task_arns(MINE).task_arns(THEIRS);
            }
            out.build()
        }),
        mock!(Client::describe_tasks).then_compute_output(move |req| {
            let mut out = DescribeTasksOutput::builder();
            for arn in req.tasks() {
                d.lock().unwrap().push(arn.clone());
                out = out.tasks(if arn == MINE {
                    task(arn, "worker", "RUNNING", "10.0.0.8")
                } else {
                    Task::builder()
                        .task_arn(arn)
                        .last_status("RUNNING")
                        .tags(tag("clusterctl-managed", "true"))
                        .tags(tag("clusterctl-cluster", "other"))
                        .tags(tag("clusterctl-role", "worker"))
                        .build()
                });
            }
            out.build()
        }),
    ];
    let options = FargateOptions {
        subnets: vec!["subnet-a".into()],
        ecs_cluster: Some("shared".into()),
        ..Default::default()
    };
    let p = provider_with(&rules, options);
    for _ in 0..2 {
        let nodes = p.list_nodes(Some(&spec().name)).await.unwrap();
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, [MINE]);
    }
    assert_eq!(*described.lock().unwrap(), [MINE, THEIRS, MINE]);
    // Every clusterctl cluster's tasks (`list`): the other cluster's task is shown.
    assert_eq!(p.list_nodes(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_up_registers_task_definitions_without_looking_and_scale_looks_first() {
    let one_task = || {
        mock!(Client::run_task)
            .then_compute_output(|_| RunTaskOutput::builder().tasks(worker_task(0)).build())
    };
    // `up` (bootstrap ran in this process): the name was just claimed, nothing to reuse.
    let mut rules = task_definition_rules();
    rules.push(one_task());
    let p = provider(&rules, false);
    p.launching.store(true, Ordering::SeqCst);
    launch(&p, 1).await.unwrap();
    assert_eq!(rules[0].num_calls(), 0, "DescribeTaskDefinition in an up");
    assert_eq!(rules[1].num_calls(), 1, "RegisterTaskDefinition");
    // `scale` (another process): the latest revision is looked at first.
    let mut rules = task_definition_rules();
    rules.push(one_task());
    let p = provider(&rules, false);
    launch(&p, 1).await.unwrap();
    assert_eq!(rules[0].num_calls(), 1, "DescribeTaskDefinition in a scale");
    assert_eq!(rules[1].num_calls(), 1, "RegisterTaskDefinition");
}

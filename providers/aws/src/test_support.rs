//! Test support: SDK clients answered by aws-smithy-mocks rules, for the providers' unit tests.

/// A client of `$sdk` answered by mock `rules`. Built by hand rather than with
/// `mock_client!`, which needs the SDK crates' `test-util` feature: that feature would make
/// Cargo build the (large) EC2 crate twice, once with it for tests and once without for the
/// binary.
macro_rules! mocked {
    ($sdk:ident, $mode:expr, $rules:expr) => {{
        let mut interceptor = aws_smithy_mocks::MockResponseInterceptor::new().rule_mode($mode);
        for rule in $rules {
            interceptor = interceptor.with_rule(rule);
        }
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version($sdk::config::BehaviorVersion::latest())
                .region($sdk::config::Region::new("us-east-1"))
                .credentials_provider($sdk::config::Credentials::new("a", "b", None, None, "test"))
                .http_client(aws_smithy_mocks::create_mock_http_client())
                .interceptor(interceptor)
                .retry_config(
                    aws_config::retry::RetryConfig::standard()
                        .with_max_attempts(4)
                        .with_initial_backoff(std::time::Duration::from_millis(1)),
                )
                .build(),
        )
    }};
}

/// A small spec: cluster `m`, 3 workers, plain TCP, private.
pub(crate) fn spec() -> clusterctl_core::model::ClusterSpec {
    clusterctl_core::model::ClusterSpec {
        name: clusterctl_core::model::ClusterName::new("m").unwrap(),
        workers: 3,
        dask_version: clusterctl_core::DASK_VERSION.into(),
        image: clusterctl_core::default_image(clusterctl_core::DASK_VERSION),
        scheduler_size: clusterctl_core::model::NodeSize::default(),
        worker_size: clusterctl_core::model::NodeSize::default(),
        env: Default::default(),
        tags: Default::default(),
        owner: "me".into(),
        created_at: 1,
        ttl: std::time::Duration::from_secs(3600),
        idle_timeout: std::time::Duration::ZERO,
        death_timeout: std::time::Duration::from_secs(60),
        tls: false,
        private: true,
        launch: "1-0000abcd".into(),
        pip: Vec::new(),
    }
}

/// Launch `count` workers of [`spec`] on `p`, dialling a scheduler at 10.0.0.5.
pub(crate) async fn launch_workers(
    p: &dyn clusterctl_core::ClusterProvider,
    count: u32,
) -> clusterctl_core::Result<Vec<clusterctl_core::Node>> {
    let s = spec();
    let ctx = clusterctl_core::provider::LaunchContext {
        spec: &s,
        tls: None,
        progress: &clusterctl_core::lifecycle::Silent,
    };
    let batch = clusterctl_core::provider::WorkerBatch {
        count,
        first_index: 0,
    };
    p.launch_workers(&ctx, "tcp://10.0.0.5:8786", batch).await
}

//! An SDK interceptor that appends one line per API call attempt (`<unix ms> <service>:<operation>`)
//! to the file named by `CLUSTERCTL_API_LOG`, so benchmarks can count the calls of each command.

use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        interceptors::{Intercept, context::BeforeTransmitInterceptorContextRef},
        orchestrator::Metadata,
        runtime_components::RuntimeComponents,
    },
};
use aws_smithy_types::config_bag::ConfigBag;

/// Writes the API log (shared by the clients of one process): core's log, as an SDK interceptor.
#[derive(Debug, Clone)]
pub struct ApiLog(clusterctl_core::api_log::ApiLog);

impl ApiLog {
    /// The log named by `CLUSTERCTL_API_LOG`, if set and writable.
    pub fn from_env() -> Option<Self> {
        clusterctl_core::api_log::ApiLog::from_env().map(ApiLog)
    }
}

impl Intercept for ApiLog {
    fn name(&self) -> &'static str {
        "clusterctl-api-log"
    }

    fn read_before_transmit(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            self.0
                .record(&format!("{}:{}", meta.service(), meta.name()));
        }
        Ok(())
    }
}

//! An SDK interceptor on every AWS client: one diagnostics event per API call attempt (service,
//! operation, status, duration, attempt number; `-v`/`CLUSTERCTL_LOG`), and with
//! `CLUSTERCTL_API_LOG` one line per attempt (`<unix ms> <service>:<operation>`) in that file, so
//! benchmarks can count the calls of each command. Neither ever holds a request or answer body.

use std::time::Instant;

use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        interceptors::Intercept,
        interceptors::context::{
            BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
        },
        orchestrator::Metadata,
        retries::RequestAttempts,
        runtime_components::RuntimeComponents,
    },
};
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// The interceptor (shared by the clients of one process): core's API log when the file is
/// set, and the diagnostics events always (free when no subscriber listens).
#[derive(Debug, Clone)]
pub struct ApiLog(Option<clusterctl_core::api_log::ApiLog>);

impl ApiLog {
    /// The interceptor, writing the file named by `CLUSTERCTL_API_LOG` if set and writable.
    pub fn from_env() -> Self {
        ApiLog(clusterctl_core::api_log::ApiLog::from_env())
    }
}

/// When the current attempt was handed to the transport.
#[derive(Debug, Clone, Copy)]
struct AttemptStart(Instant);

impl Storable for AttemptStart {
    type Storer = StoreReplace<Self>;
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
        cfg.interceptor_state()
            .store_put(AttemptStart(Instant::now()));
        if let (Some(log), Some(meta)) = (&self.0, cfg.load::<Metadata>()) {
            log.record(&format!("{}:{}", meta.service(), meta.name()));
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        ctx: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !tracing::enabled!(target: "clusterctl::api", tracing::Level::DEBUG) {
            return Ok(());
        }
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_default();
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |a| a.attempts());
        let ms = cfg
            .load::<AttemptStart>()
            .map_or(0, |s| s.0.elapsed().as_millis() as u64);
        match ctx.response() {
            Some(resp) => tracing::debug!(
                target: "clusterctl::api",
                service,
                operation,
                status = resp.status().as_u16(),
                attempt,
                ms,
                "request"
            ),
            None => tracing::debug!(
                target: "clusterctl::api",
                service,
                operation,
                attempt,
                ms,
                "request failed before an answer (connection, timeout)"
            ),
        }
        Ok(())
    }
}

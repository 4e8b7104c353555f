//! An SDK interceptor that appends one line per API call attempt (`<unix ms> <service>:<operation>`)
//! to the file named by `CLUSTERCTL_API_LOG`, so benchmarks can count the calls of each command.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        interceptors::{Intercept, context::BeforeTransmitInterceptorContextRef},
        orchestrator::Metadata,
        runtime_components::RuntimeComponents,
    },
};
use aws_smithy_types::config_bag::ConfigBag;

/// Writes the API log (shared by the clients of one process).
#[derive(Debug, Clone)]
pub struct ApiLog {
    file: Arc<Mutex<std::fs::File>>,
}

impl ApiLog {
    /// The log named by `CLUSTERCTL_API_LOG`, if set and writable.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("CLUSTERCTL_API_LOG")?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()?;
        Some(ApiLog {
            file: Arc::new(Mutex::new(file)),
        })
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
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0);
            if let Ok(mut f) = self.file.lock() {
                let _ = writeln!(f, "{ms} {}:{}", meta.service(), meta.name());
            }
        }
        Ok(())
    }
}

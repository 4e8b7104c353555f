//! The API request log for benchmarks: with `CLUSTERCTL_API_LOG=FILE`, every platform client
//! (the AWS SDK's interceptor, the REST clouds' client) appends one line per request attempt,
//! `<unix ms> <service>:<operation>[ <detail>]`, so a benchmark counts the calls of a command.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::SystemTime,
};

/// The environment variable naming the log file.
pub const API_LOG_ENV: &str = "CLUSTERCTL_API_LOG";

/// An open API log, shared by the clients of one process.
#[derive(Debug, Clone)]
pub struct ApiLog {
    file: Arc<Mutex<std::fs::File>>,
}

impl ApiLog {
    /// The log named by [`API_LOG_ENV`], if set and writable.
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os(API_LOG_ENV)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok()?;
        Some(ApiLog {
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Append `<unix ms> <call>`.
    pub fn record(&self, call: &str) {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        if let Ok(mut f) = self.file.lock() {
            let _ = writeln!(f, "{ms} {call}");
        }
    }
}

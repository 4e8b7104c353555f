//! Readiness in Dask terms, asked of the scheduler's dashboard HTTP server: `/health` answers
//! `ok`, and the scheduler API's `/api/v1/get_workers` lists the workers that joined (the
//! bootstrap enables that route). `/json/identity.json` is not used: in distributed 2026.8.0 it
//! answers 500 once tasks have run (worker metrics with tuple keys fail JSON encoding). Also the
//! API call that retires workers before `scale` removes their nodes.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One worker as the scheduler knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedWorker {
    /// The worker's address, e.g. `tls://10.0.1.7:40123`.
    pub address: String,
    /// Its Dask name (clusterctl passes the node name, or Dask uses the address).
    pub name: String,
}

impl JoinedWorker {
    /// The host part of the worker's address.
    pub fn host(&self) -> &str {
        let rest = self
            .address
            .split_once("://")
            .map_or(self.address.as_str(), |(_, r)| r);
        rest.rsplit_once(':')
            .map_or(rest, |(h, _)| h)
            .trim_matches(['[', ']'])
    }
}

/// What the scheduler reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerView {
    /// Workers registered now.
    pub workers: Vec<JoinedWorker>,
}

#[derive(Deserialize)]
struct GetWorkersJson {
    #[serde(default)]
    workers: Vec<WorkerJson>,
}

#[derive(Deserialize)]
struct WorkerJson {
    address: String,
    #[serde(default)]
    name: serde_json::Value,
}

/// Talks to one scheduler's dashboard.
#[derive(Debug, Clone)]
pub struct Dashboard {
    base: String,
    http: reqwest::Client,
}

impl Dashboard {
    /// A client for the dashboard at `base` (e.g. `http://127.0.0.1:8787`). Each request gives up
    /// after `request_timeout`, so a dead address never stalls a wait loop.
    pub fn new(base: &str, request_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .no_proxy()
            .build()
            .expect("an HTTP client without TLS always builds");
        Dashboard {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether `/health` answers `ok` now.
    pub async fn healthy(&self) -> bool {
        match self.http.get(format!("{}/health", self.base)).send().await {
            Ok(r) if r.status().is_success() => {
                r.text().await.map(|t| t.trim() == "ok").unwrap_or(false)
            }
            _ => false,
        }
    }

    /// The workers registered with the scheduler, from `/api/v1/get_workers`.
    pub async fn view(&self) -> Result<SchedulerView> {
        let url = format!("{}/api/v1/get_workers", self.base);
        let body: GetWorkersJson = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| http_err(&url, e))?
            .json()
            .await
            .map_err(|e| http_err(&url, e))?;
        let workers = body
            .workers
            .into_iter()
            .map(|w| JoinedWorker {
                name: match w.name {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => w.address.clone(),
                    other => other.to_string(),
                },
                address: w.address,
            })
            .collect();
        Ok(SchedulerView { workers })
    }

    /// Ask the scheduler to retire `addresses` (move their data to other workers, then close
    /// them) and wait for it to finish.
    pub async fn retire_workers(&self, addresses: &[String]) -> Result<()> {
        if addresses.is_empty() {
            return Ok(());
        }
        let url = format!("{}/api/v1/retire_workers", self.base);
        self.http
            .post(&url)
            .json(&serde_json::json!({ "workers": addresses }))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| http_err(&url, e))?;
        Ok(())
    }
}

fn http_err(url: &str, e: reqwest::Error) -> Error {
    Error::Scheduler {
        operation: url.to_string(),
        message: e.without_url().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_host() {
        let w = |a: &str| JoinedWorker {
            address: a.into(),
            name: String::new(),
        };
        assert_eq!(w("tls://10.0.1.7:40123").host(), "10.0.1.7");
        assert_eq!(w("tcp://[::1]:5").host(), "::1");
        assert_eq!(w("127.0.0.1:9").host(), "127.0.0.1");
    }
}

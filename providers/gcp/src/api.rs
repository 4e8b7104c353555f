//! Compute Engine, IAM and Secret Manager as clusterctl uses them: typed models of only the
//! fields read, the calls through core's REST client with a fresh token from the credential,
//! Compute's rate limiting (403 `rateLimitExceeded`, which the REST client does not retry)
//! retried with jittered backoff, inserts carrying a `requestId` marked repeatable (a retried
//! POST never creates twice), and one operation poller (`zoneOperations.wait` /
//! `globalOperations.wait`, looped, under a deadline; a DONE operation's errors become
//! `GcpError::Operation`).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use clusterctl_core::{rest::RestClient, wait::Deadline};
use reqwest::Method;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    credential::Credential,
    errors::{GcpError, OpError, is_rate_limited},
};

/// Attempts of a call that Compute rate-limits with 403 `rateLimitExceeded`.
const RATE_LIMIT_ATTEMPTS: u32 = 8;
/// Most pages read from one listing.
const MAX_PAGES: usize = 200;

/// A Compute operation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// PENDING, RUNNING, DONE.
    #[serde(default)]
    pub status: String,
    /// The zone's URL (zonal operations).
    #[serde(default)]
    pub zone: Option<String>,
    /// The errors of a DONE operation.
    #[serde(default)]
    pub error: Option<OpErrors>,
}

/// `error` of an operation.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OpErrors {
    /// The errors.
    #[serde(default)]
    pub errors: Vec<OpError>,
}

/// An instance (the fields read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    /// Its name.
    pub name: String,
    /// PROVISIONING, STAGING, RUNNING, STOPPING, TERMINATED, …
    #[serde(default)]
    pub status: String,
    /// The zone's URL.
    #[serde(default)]
    pub zone: String,
    /// Its labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    /// Its NICs.
    #[serde(default)]
    pub network_interfaces: Vec<Nic>,
    /// Why it stopped, when Compute says.
    #[serde(default)]
    pub status_message: Option<String>,
}

/// A NIC of an instance.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nic {
    /// The internal address.
    #[serde(default, rename = "networkIP")]
    pub network_ip: Option<String>,
    /// External addresses.
    #[serde(default)]
    pub access_configs: Vec<AccessConfig>,
}

/// An external address of a NIC.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessConfig {
    /// The address.
    #[serde(default, rename = "natIP")]
    pub nat_ip: Option<String>,
}

/// A firewall rule (the fields read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Firewall {
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// Its description (holds the launch that created it).
    #[serde(default)]
    pub description: String,
}

/// A machine type.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineType {
    /// Its name.
    pub name: String,
    /// vCPUs.
    #[serde(default)]
    pub guest_cpus: u32,
}

/// A region with its quotas.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Region {
    /// Its quotas.
    #[serde(default)]
    pub quotas: Vec<Quota>,
}

/// One quota of a region.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Quota {
    /// E.g. `CPUS`.
    pub metric: String,
    /// The limit.
    #[serde(default)]
    pub limit: f64,
    /// In use.
    #[serde(default)]
    pub usage: f64,
}

/// A subnetwork.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subnetwork {
    /// Its primary range.
    pub ip_cidr_range: String,
}

/// A service account (only its existence is read).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceAccount {}

/// A secret.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecretRes {
    /// `projects/N/secrets/ID`.
    pub name: String,
}

/// The three APIs of one project.
#[derive(Debug, Clone)]
pub struct Google {
    /// Compute Engine (`/compute/v1/…`).
    pub compute: RestClient,
    /// IAM (`/v1/projects/…/serviceAccounts`).
    pub iam: RestClient,
    /// Secret Manager (`/v1/projects/…/secrets`).
    pub secrets: RestClient,
    /// Tokens.
    pub cred: Arc<Credential>,
    /// The project id.
    pub project: String,
    /// Deadline of one operation.
    pub op_deadline: Duration,
}

/// Which API a call goes to.
#[derive(Debug, Clone, Copy)]
pub enum Api {
    /// Compute Engine.
    Compute,
    /// IAM.
    Iam,
    /// Secret Manager.
    Secrets,
}

/// A new `requestId`: a random version-4 UUID.
pub fn request_id() -> String {
    let mut b = [0u8; 16];
    for x in &mut b {
        *x = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Google {
    fn client(&self, api: Api) -> &RestClient {
        match api {
            Api::Compute => &self.compute,
            Api::Iam => &self.iam,
            Api::Secrets => &self.secrets,
        }
    }

    /// `/compute/v1/projects/{p}` followed by `rest`.
    pub fn cp(&self, rest: &str) -> String {
        format!("/compute/v1/projects/{}{rest}", self.project)
    }

    /// `/v1/projects/{p}` followed by `rest` (IAM, Secret Manager).
    pub fn v1(&self, rest: &str) -> String {
        format!("/v1/projects/{}{rest}", self.project)
    }

    /// One call: a fresh token per attempt, Compute's 403 rate limiting retried with jittered
    /// backoff (the REST client retries 429, 5xx of repeatable requests, and connection
    /// failures).
    pub async fn call<T: DeserializeOwned>(
        &self,
        api: Api,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        repeatable: bool,
    ) -> Result<T, GcpError> {
        let mut delay = Duration::from_millis(500);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self.cred.token().await?;
            let mut req = self
                .client(api)
                .request(method.clone(), path)
                .bearer(&token)
                .repeatable(repeatable);
            for (k, v) in query {
                req = req.query(k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send_json::<T>().await {
                Err(e) if is_rate_limited(&e) && attempt < RATE_LIMIT_ATTEMPTS => {
                    let jitter = delay.mul_f64(0.5 + fastrand::f64() / 2.0);
                    tokio::time::sleep(jitter).await;
                    delay = (delay * 2).min(Duration::from_secs(20));
                }
                Err(e) => return Err(e.into()),
                Ok(v) => return Ok(v),
            }
        }
    }

    /// `GET`, `None` on 404.
    pub async fn get<T: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Option<T>, GcpError> {
        match self.call(api, Method::GET, path, query, None, true).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A Compute mutation (`POST`/`DELETE` with a `requestId`, so retries are safe): its
    /// operation, not awaited.
    pub async fn mutate(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        request_id: &str,
    ) -> Result<Operation, GcpError> {
        self.call(
            Api::Compute,
            method,
            path,
            &[("requestId", request_id)],
            body,
            true,
        )
        .await
    }

    /// Wait for `op` to be DONE (`…/operations/{name}/wait`, looped under the deadline); its
    /// errors as `GcpError::Operation`.
    pub async fn wait(&self, what: &str, op: Operation) -> Result<Operation, GcpError> {
        let deadline = Deadline::after(self.op_deadline);
        let mut op = op;
        loop {
            if op.status == "DONE" {
                return match op.error.as_ref().filter(|e| !e.errors.is_empty()) {
                    Some(e) => Err(GcpError::Operation {
                        operation: what.to_string(),
                        errors: e.errors.clone(),
                    }),
                    None => Ok(op),
                };
            }
            if deadline.expired() {
                return Err(GcpError::Deadline {
                    operation: what.to_string(),
                    secs: deadline.total().as_secs(),
                });
            }
            if op.name.is_empty() {
                return Err(GcpError::Unexpected {
                    operation: what.to_string(),
                    message: "an operation without a name".into(),
                });
            }
            let path = match op.zone.as_deref().and_then(|z| z.rsplit('/').next()) {
                Some(zone) => self.cp(&format!("/zones/{zone}/operations/{}/wait", op.name)),
                None => self.cp(&format!("/global/operations/{}/wait", op.name)),
            };
            // `wait` returns at DONE or after about two minutes (best effort: maybe at once).
            let next: Operation = self
                .call(Api::Compute, Method::POST, &path, &[], None, true)
                .await?;
            if next.status != "DONE" {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            op = next;
        }
    }

    /// Every instance of the project whose labels match `filter`, across zones
    /// (`aggregatedList`).
    pub async fn instances(&self, filter: &str) -> Result<Vec<Instance>, GcpError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Scoped {
            #[serde(default)]
            instances: Vec<Instance>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            items: BTreeMap<String, Scoped>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let path = self.cp("/aggregated/instances");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("filter", filter)];
            if let Some(t) = &token {
                query.push(("pageToken", t));
            }
            let page: Page = self
                .call(Api::Compute, Method::GET, &path, &query, None, true)
                .await?;
            out.extend(page.items.into_values().flat_map(|s| s.instances));
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Every item (under `key`) of a plain listing with an optional filter.
    pub async fn list<T: DeserializeOwned>(
        &self,
        api: Api,
        path: &str,
        key: &str,
        filter: Option<&str>,
    ) -> Result<Vec<T>, GcpError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = Vec::new();
            if let Some(f) = filter {
                query.push(("filter", f));
            }
            if let Some(t) = &token {
                query.push(("pageToken", t.as_str()));
            }
            let page: Value = self
                .call(api, Method::GET, path, &query, None, true)
                .await?;
            if let Some(items) = page.get(key) {
                let items: Vec<T> =
                    serde_json::from_value(items.clone()).map_err(|e| GcpError::Unexpected {
                        operation: format!("GET {path}"),
                        message: e.to_string(),
                    })?;
                out.extend(items);
            }
            token = page["nextPageToken"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_v4_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]));
        assert_ne!(id, request_id());
    }
}

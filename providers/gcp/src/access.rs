//! The nodes' key access: a per-cluster service account attached to the cluster's instances,
//! and the nodes' TLS keys as Secret Manager secrets (one version each, labelled like every
//! resource of the cluster) whose IAM policy lets only that account read them. Nothing secret
//! goes into instance metadata, which any Compute Viewer can read; the node's
//! `templates/fetch_secrets.py` (`gcp-secret-manager`) reads its keys at boot with the
//! account's token from the metadata server.
//!
//! New service accounts are eventually consistent: a GET right after the create can be 403 or
//! 404, and naming the account in a policy or on an instance can fail with "does not exist"
//! for a while. Creation waits for three good GETs in a row (Terraform's rule), and the calls
//! that name the account retry that refusal with backoff, bounded by [`PROPAGATION`].

use std::time::Duration;

use base64::Engine as _;
use clusterctl_core::{
    Result,
    bootstrap::BootFile,
    model::{ClusterName, ClusterSpec},
    retry::{RetryConfig, retry_while},
    tags as core_tags,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    GcpProvider,
    api::{Api, SecretRes, ServiceAccount},
    errors::GcpError,
    instances, labels,
};

/// Longest wait for a new service account to be usable everywhere.
pub const PROPAGATION: Duration = Duration::from_secs(180);

/// The retries of a call refused while a new account propagates.
pub fn propagation_retry() -> RetryConfig {
    RetryConfig {
        min_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(8),
        max_retries: 60,
        max_total_delay: PROPAGATION,
    }
}

impl GcpProvider {
    /// The per-cluster service account's e-mail.
    pub(crate) fn account_email(&self, cluster: &ClusterName) -> String {
        format!(
            "{}@{}.iam.gserviceaccount.com",
            instances::account_id(cluster),
            self.google.project
        )
    }

    /// The account attached to the cluster's instances and allowed to read its keys: the
    /// user's `--service-account`, else the per-cluster one.
    pub(crate) fn node_account(&self, cluster: &ClusterName) -> String {
        self.options
            .service_account
            .clone()
            .unwrap_or_else(|| self.account_email(cluster))
    }

    /// Create the cluster's service account (an existing one of the cluster is reused) and
    /// wait until IAM shows it three times in a row.
    pub(crate) async fn ensure_account(&self, spec: &ClusterSpec) -> Result<String> {
        let email = self.account_email(&spec.name);
        let body = json!({
            "accountId": instances::account_id(&spec.name),
            "serviceAccount": {
                "displayName": format!("clusterctl {}", spec.name),
                "description": format!("clusterctl cluster {} (launch {}): reads the nodes' keys", spec.name, spec.launch),
            },
        });
        match self
            .google
            .call::<Value>(
                Api::Iam,
                Method::POST,
                &self.google.v1("/serviceAccounts"),
                &[],
                Some(&body),
                // Its id is the cluster's: a repeated create that finds it made is a 409.
                true,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(self.err(e)),
        }
        let path = self.google.v1(&format!("/serviceAccounts/{email}"));
        let deadline = clusterctl_core::wait::Deadline::after(PROPAGATION);
        let mut good = 0;
        while good < 3 {
            match self
                .google
                .get::<ServiceAccount>(Api::Iam, &path, &[])
                .await
            {
                Ok(Some(_)) => good += 1,
                Ok(None) => good = 0,
                Err(e) if matches!(e.status(), Some(403)) => good = 0,
                Err(e) => return Err(self.err(e)),
            }
            if deadline.expired() {
                return Err(self.err(GcpError::Deadline {
                    operation: format!("service account {email} to propagate"),
                    secs: PROPAGATION.as_secs(),
                }));
            }
            tokio::time::sleep(Duration::from_millis(if good == 0 { 1000 } else { 300 })).await;
        }
        Ok(email)
    }

    /// Store each key file as a secret readable only by `email`.
    pub(crate) async fn store_keys(
        &self,
        spec: &ClusterSpec,
        files: &[BootFile],
        email: &str,
    ) -> Result<()> {
        let labels = labels::encode_all(&core_tags::cluster_tags(spec))?;
        let labels = &labels;
        let jobs = files.iter().map(|f| async move {
            let id = instances::secret_id(&format!(
                "{}{}",
                instances::secret_prefix(&spec.name),
                f.file_name()
            ));
            self.store_one(&id, &f.contents, labels, email).await
        });
        for r in futures_util::future::join_all(jobs).await {
            r?;
        }
        Ok(())
    }

    async fn store_one(
        &self,
        id: &str,
        contents: &str,
        labels: &std::collections::BTreeMap<String, String>,
        email: &str,
    ) -> Result<()> {
        let g = &self.google;
        let create = json!({"replication": {"automatic": {}}, "labels": labels});
        let made = g
            .call::<SecretRes>(
                Api::Secrets,
                Method::POST,
                &g.v1("/secrets"),
                &[("secretId", id)],
                Some(&create),
                false,
            )
            .await;
        match made {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {
                // A leftover of an `up` that died: start again so that version 1 is this key.
                g.call::<Value>(
                    Api::Secrets,
                    Method::DELETE,
                    &g.v1(&format!("/secrets/{id}")),
                    &[],
                    None,
                    true,
                )
                .await
                .map_err(|e| self.err(e))?;
                g.call::<SecretRes>(
                    Api::Secrets,
                    Method::POST,
                    &g.v1("/secrets"),
                    &[("secretId", id)],
                    Some(&create),
                    false,
                )
                .await
                .map_err(|e| self.err(e))?;
            }
            Err(e) => return Err(self.err(e)),
        }
        let data = base64::engine::general_purpose::STANDARD.encode(contents.as_bytes());
        let version: Value = g
            .call(
                Api::Secrets,
                Method::POST,
                &g.v1(&format!("/secrets/{id}:addVersion")),
                &[],
                Some(&json!({"payload": {"data": data}})),
                false,
            )
            .await
            .map_err(|e| self.err(e))?;
        let vname = version["name"].as_str().unwrap_or_default();
        if !vname.ends_with("/versions/1") {
            return Err(self.err(GcpError::Unexpected {
                operation: format!("addVersion {id}"),
                message: format!("the key's version is {vname}, not 1 (the node reads version 1)"),
            }));
        }
        let policy_path = g.v1(&format!("/secrets/{id}:setIamPolicy"));
        let get_path = g.v1(&format!("/secrets/{id}:getIamPolicy"));
        retry_while(
            &propagation_retry(),
            || async {
                let current: Value = g
                    .call(Api::Secrets, Method::GET, &get_path, &[], None, true)
                    .await?;
                let mut policy = json!({"bindings": [{
                    "role": "roles/secretmanager.secretAccessor",
                    "members": [format!("serviceAccount:{email}")],
                }]});
                if let Some(etag) = current.get("etag") {
                    policy["etag"] = etag.clone();
                }
                g.call::<Value>(
                    Api::Secrets,
                    Method::POST,
                    &policy_path,
                    &[],
                    Some(&json!({"policy": policy})),
                    true,
                )
                .await
            },
            |e: &GcpError| e.is_unpropagated_account() || e.is_conflict(),
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Delete the cluster's secrets (by label) and its service account; gone is fine.
    pub(crate) async fn delete_access(&self, cluster: &ClusterName) -> Result<()> {
        let g = &self.google;
        let ids: Vec<String> = self
            .secrets_of(cluster)
            .await?
            .iter()
            .map(|s| s.name.rsplit('/').next().unwrap_or_default().to_string())
            .collect();
        clusterctl_core::concurrent::each(ids, 8, |id| async move {
            match g
                .call::<Value>(
                    Api::Secrets,
                    Method::DELETE,
                    &g.v1(&format!("/secrets/{id}")),
                    &[],
                    None,
                    true,
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(self.err(e)),
            }
        })
        .await?;
        let email = self.account_email(cluster);
        match g
            .call::<Value>(
                Api::Iam,
                Method::DELETE,
                &g.v1(&format!("/serviceAccounts/{email}")),
                &[],
                None,
                true,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The cluster's secrets, by label.
    pub(crate) async fn secrets_of(&self, cluster: &ClusterName) -> Result<Vec<SecretRes>> {
        let filter = format!(
            "labels.{}={}",
            labels::escape(core_tags::CLUSTER),
            labels::escape(cluster.as_str())
        );
        self.google
            .list(
                Api::Secrets,
                &self.google.v1("/secrets"),
                "secrets",
                Some(&filter),
            )
            .await
            .map_err(|e| self.err(e))
    }

    /// Whether the cluster's service account still exists.
    pub(crate) async fn account_exists(&self, cluster: &ClusterName) -> Result<bool> {
        let path = self
            .google
            .v1(&format!("/serviceAccounts/{}", self.account_email(cluster)));
        match self
            .google
            .get::<ServiceAccount>(Api::Iam, &path, &[])
            .await
        {
            Ok(v) => Ok(v.is_some()),
            Err(e) if e.status() == Some(403) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }
}

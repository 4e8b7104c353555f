//! The Azure CLI as a credential source: `az account get-access-token --output json --resource
//! <ARM>` for tokens (what azure-identity's AzureCliCredential runs; the CLI refreshes its own
//! login), and `az account show --output json` for the signed-in account and the default
//! subscription. Each call runs under a 30 s deadline; stderr is quoted on failure.

use std::time::Duration;

use clusterctl_core::rest::Secret;
use serde::Deserialize;

use crate::{credential::Credential, errors::ArmError};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CliToken {
    access_token: String,
    #[serde(default)]
    expires_on: Option<String>,
    #[serde(default, rename = "expires_on")]
    expires_on_epoch: Option<u64>,
    #[serde(default)]
    subscription: Option<String>,
}

/// What `az account show --output json` prints (the fields used).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CliAccount {
    /// The default subscription.
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) tenant_id: Option<String>,
    #[serde(default)]
    pub(crate) user: Option<CliUser>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CliUser {
    #[serde(default)]
    pub(crate) name: String,
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
}

impl Credential {
    async fn az(&self, args: &[&str]) -> Result<Vec<u8>, ArmError> {
        let shown = format!("az {}", args.join(" "));
        let out = tokio::process::Command::new("az")
            .args(args)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .map_err(|_| ArmError::Credential(format!("`{shown}` took over 30 s")))?
            .map_err(|e| ArmError::Credential(format!("cannot run `az`: {e}")))?;
        if !out.status.success() {
            return Err(ArmError::Credential(format!(
                "`{shown}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(out.stdout)
    }

    pub(crate) async fn cli(&self) -> Result<(Secret, Duration), ArmError> {
        let stdout = self
            .az(&[
                "account",
                "get-access-token",
                "--output",
                "json",
                "--resource",
                &self.audience,
            ])
            .await?;
        let t: CliToken = serde_json::from_slice(&stdout).map_err(|e| {
            ArmError::Credential(format!(
                "`az account get-access-token` printed no token: {e}"
            ))
        })?;
        if let Ok(mut s) = self.cli_token_subscription.lock() {
            s.clone_from(&t.subscription);
        }
        let lifetime = t
            .expires_on_epoch
            .map(|at| at.saturating_sub(clusterctl_core::model::now_epoch()))
            .or_else(|| t.expires_on.as_ref().map(|_| 600))
            .unwrap_or(600);
        Ok((Secret::new(t.access_token), Duration::from_secs(lifetime)))
    }

    /// The CLI's signed-in account and default subscription (`az account show`).
    pub(crate) async fn account(&self) -> Result<(), ArmError> {
        let stdout = self.az(&["account", "show", "--output", "json"]).await?;
        let account: CliAccount = serde_json::from_slice(&stdout).map_err(|e| {
            ArmError::Credential(format!("`az account show` printed no account: {e}"))
        })?;
        if let Ok(mut a) = self.cli_account.lock() {
            *a = Some(account);
        }
        Ok(())
    }
}

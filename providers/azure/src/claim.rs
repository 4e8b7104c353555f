//! The cluster's resource group `clusterctl-NAME`: creating it claims the cluster's name for
//! this launch (see "One name, one cluster" in docs/architecture.md).

use std::time::Duration;

use clusterctl_core::{
    Error, Result,
    model::{ClusterSpec, ProviderKind, claim_held, now_epoch},
    tags as core_tags,
};
use serde_json::{Value, json};

use crate::{
    AzureProvider,
    api::{RESOURCES_API, ResourceGroup},
    errors::ArmError,
};

/// How long a launch that took over a leftover group waits before it reads the group's launch
/// tag back: of two launches taking it over at once, the last writer holds it.
const TAKEOVER_SETTLE: Duration = Duration::from_secs(2);

impl AzureProvider {
    /// Claim the cluster's name: create its own resource group, which only one `up` can do
    /// (`If-None-Match: *`, and ARM's 201-vs-200 tells who created it). An existing group of
    /// the cluster held by another launch (`model::claim_held`: a node alive, or its `up`
    /// younger than the claim's grace, or the group being deleted) is `Error::NameTaken`; one
    /// not held is a leftover of an `up` that died, taken over (its launch tag rewritten and
    /// read back after a settle time, as on EC2).
    pub(crate) async fn claim_group(&self, spec: &ClusterSpec) -> Result<()> {
        let rg = self.group(&spec.name);
        let path = self.arm.group(&rg);
        let body = json!({"location": self.location()?, "tags": core_tags::cluster_tags(spec)});
        let existing: Option<ResourceGroup> = self
            .arm
            .get(&path, RESOURCES_API, &[])
            .await
            .map_err(|e| self.err(e))?;
        let taken = |holder: Option<&str>, why: &str| Error::NameTaken {
            name: spec.name.to_string(),
            provider: ProviderKind::Azure,
            holder: format!(
                "its resource group {rg} belongs to launch {}{why}",
                holder.unwrap_or("(unknown)")
            ),
        };
        match existing {
            None => match self
                .arm
                .put::<_, ResourceGroup>(&path, RESOURCES_API, &body, true)
                .await
            {
                Ok(put) if put.status == reqwest::StatusCode::CREATED => Ok(()),
                // Another `up` created it between our read and our create.
                Ok(_) => Err(taken(None, ", created a moment ago")),
                Err(e) if matches!(&e, ArmError::Rest(r) if r.status() == Some(reqwest::StatusCode::PRECONDITION_FAILED)) => {
                    Err(taken(None, ", created a moment ago"))
                }
                Err(e) => Err(self.err(e)),
            },
            Some(g) => {
                if g.tags.get(core_tags::CLUSTER).map(String::as_str) != Some(spec.name.as_str()) {
                    return Err(Error::invalid(
                        "--name",
                        spec.name.to_string(),
                        format!("the resource group {rg} exists and is not this cluster's"),
                        Some(
                            "choose another `--name`, or pass `--resource-group` to use that group"
                                .into(),
                        ),
                    ));
                }
                let holder = g.tags.get(core_tags::LAUNCH).cloned();
                if holder.as_deref() == Some(spec.launch.as_str()) {
                    return Ok(());
                }
                let state = g
                    .properties
                    .and_then(|p| p.provisioning_state)
                    .unwrap_or_default();
                let alive = self
                    .nodes_in(&rg, Some(&spec.name))
                    .await?
                    .iter()
                    .any(|n| n.state.is_alive());
                if state.eq_ignore_ascii_case("Deleting") {
                    return Err(taken(holder.as_deref(), ", being deleted"));
                }
                if claim_held(holder.as_deref(), alive, now_epoch()) {
                    return Err(taken(
                        holder.as_deref(),
                        if alive {
                            ", whose VMs are running"
                        } else {
                            ", whose `up` is still creating it"
                        },
                    ));
                }
                self.arm
                    .put::<_, Value>(&path, RESOURCES_API, &body, false)
                    .await
                    .map_err(|e| self.err(e))?;
                tokio::time::sleep(TAKEOVER_SETTLE).await;
                let now: Option<ResourceGroup> = self
                    .arm
                    .get(&path, RESOURCES_API, &[])
                    .await
                    .map_err(|e| self.err(e))?;
                let holder = now.and_then(|g| g.tags.get(core_tags::LAUNCH).cloned());
                if holder.as_deref() != Some(spec.launch.as_str()) {
                    return Err(taken(
                        holder.as_deref(),
                        ", which took the leftover over first",
                    ));
                }
                Ok(())
            }
        }
    }
}

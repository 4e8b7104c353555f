//! The claim of a cluster's name (see "One name, one cluster" in docs/architecture.md): the
//! cluster's resource group `clusterctl-NAME`, whose creation only one launch wins. In a group
//! the user named (`--resource-group`), the cluster's NSG `NAME-nsg` claims the name instead
//! (ARM answers its creation 201 to one launch only), and the cluster's tagged resources there
//! are what `gc` finds.

use std::{collections::BTreeMap, time::Duration};

use clusterctl_core::{
    Error, Result,
    model::{ClusterSpec, ProviderKind, claim_held, now_epoch},
    tags as core_tags,
};
use serde_json::{Value, json};

use crate::{
    AzureProvider,
    api::{GenericResource, NETWORK_API, Put, RESOURCES_API, ResourceGroup},
    errors::ArmError,
    vms,
};

/// How this launch holds the name in a named group (`AzureProvider::claim_nsg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NsgClaim {
    /// It created the cluster's NSG: a launch that raced it may still overwrite it once
    /// (`AzureProvider::keep_nsg` puts this launch's rules and tags back).
    Created,
    /// The NSG was already this launch's, or a leftover it took over and read back.
    Held,
}

/// How long a launch that took over a leftover group waits before it reads the group's launch
/// tag back: of two launches taking it over at once, the last writer holds it.
const TAKEOVER_SETTLE: Duration = Duration::from_secs(2);

/// The tags of the resources clusterctl made: those carrying its managed tag and a cluster's
/// name (the user's own resources in the group are not claims).
fn managed_tags(resources: Vec<GenericResource>) -> Vec<BTreeMap<String, String>> {
    resources
        .into_iter()
        .map(|r| r.tags)
        .filter(|t| {
            t.get(core_tags::MANAGED).map(String::as_str) == Some(core_tags::MANAGED_VALUE)
                && t.contains_key(core_tags::CLUSTER)
        })
        .collect()
}

impl AzureProvider {
    /// The claims of the clusters `up` put in the group named with `--resource-group`, which
    /// has no group of its own to claim the name: every resource there carrying clusterctl's
    /// managed tag (the NSG, VNet, public IP and NICs `up` creates, in that order, before any
    /// VM, and `down` deletes last), with its tags (the cluster's name and expiry). One
    /// listing of the group (`Resources_ListByResourceGroup`, paged through `nextLink`),
    /// without a tag filter, since a tag-filtered listing omits the tags. No request without
    /// the option; nothing for a group that does not exist.
    pub(crate) async fn named_group_claims(&self) -> Result<Vec<BTreeMap<String, String>>> {
        let Some(rg) = &self.options.resource_group else {
            return Ok(Vec::new());
        };
        let path = format!("{}/resources", self.arm.group(rg));
        match self
            .arm
            .list::<GenericResource>(&path, RESOURCES_API, &[])
            .await
        {
            Ok(listed) => Ok(managed_tags(listed)),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(self.err(e)),
        }
    }

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
                if state.eq_ignore_ascii_case("Deleting") {
                    return Err(taken(holder.as_deref(), ", being deleted"));
                }
                if let Some(why) = self.held_by(spec, &rg, holder.as_deref()).await? {
                    return Err(taken(holder.as_deref(), why));
                }
                self.take_over(spec, &path, RESOURCES_API, &body, taken)
                    .await
            }
        }
    }
}

impl AzureProvider {
    /// Claim the cluster's name in the group named with `--resource-group`, which has no group
    /// of the cluster's own: by creating the cluster's NSG `NAME-nsg` (`body` at `path`), the
    /// first resource `up` makes there. ARM answers a PUT that creates a resource 201 and one
    /// that updates it 200, so of two launches that both found no NSG, one gets 201 and holds
    /// the name; the other (200) fails with `Error::NameTaken` and creates nothing more (its
    /// write replaced the NSG's rules and tags, which the holder puts back: `keep_nsg`). An NSG
    /// of the cluster held by another launch (`model::claim_held`) is `NameTaken` before any
    /// write; one not held (a leftover of an `up` that died) is taken over and read back after
    /// the settle time, as the cluster's own group is. An NSG of that name that clusterctl did
    /// not make for this cluster is refused.
    pub(crate) async fn claim_nsg(
        &self,
        spec: &ClusterSpec,
        path: &str,
        body: &Value,
    ) -> Result<NsgClaim> {
        let rg = self.group(&spec.name);
        let nsg = vms::nsg_name(&spec.name);
        let taken = |holder: Option<&str>, why: &str| Error::NameTaken {
            name: spec.name.to_string(),
            provider: ProviderKind::Azure,
            holder: format!(
                "its network security group {nsg} in resource group {rg} belongs to launch {}{why}",
                holder.unwrap_or("(unknown)")
            ),
        };
        let existing: Option<GenericResource> = self
            .arm
            .get(path, NETWORK_API, &[])
            .await
            .map_err(|e| self.err(e))?;
        let Some(found) = existing else {
            let put: Put<Value> = self
                .arm
                .put(path, NETWORK_API, body, false)
                .await
                .map_err(|e| self.err(e))?;
            if put.status != reqwest::StatusCode::CREATED {
                // Another `up` created it between our read and our write.
                return Err(taken(None, ", created a moment ago"));
            }
            self.arm
                .wait(&format!("PUT {path}"), &put.raw)
                .await
                .map_err(|e| self.err(e))?;
            return Ok(NsgClaim::Created);
        };
        let ours = found.tags.get(core_tags::MANAGED).map(String::as_str)
            == Some(core_tags::MANAGED_VALUE)
            && found.tags.get(core_tags::CLUSTER).map(String::as_str) == Some(spec.name.as_str());
        if !ours {
            return Err(Error::invalid(
                "--name",
                spec.name.to_string(),
                format!(
                    "the network security group {nsg} in resource group {rg} exists and is not this cluster's"
                ),
                Some("choose another `--name`".into()),
            ));
        }
        let holder = found.tags.get(core_tags::LAUNCH).cloned();
        if holder.as_deref() == Some(spec.launch.as_str()) {
            return Ok(NsgClaim::Held);
        }
        if let Some(why) = self.held_by(spec, &rg, holder.as_deref()).await? {
            return Err(taken(holder.as_deref(), why));
        }
        self.take_over(spec, path, NETWORK_API, body, taken).await?;
        Ok(NsgClaim::Held)
    }

    /// After this launch created the cluster's NSG (`NsgClaim::Created`): a launch that raced
    /// it wrote the NSG between its read and its write at most once, right away (it got 200
    /// and gave the name up). Once the settle time has passed, this launch's rules and tags are
    /// put back if they were replaced.
    pub(crate) async fn keep_nsg(
        &self,
        spec: &ClusterSpec,
        path: &str,
        body: &Value,
    ) -> Result<()> {
        tokio::time::sleep(TAKEOVER_SETTLE).await;
        if self.launch_of(path, NETWORK_API).await?.as_deref() != Some(spec.launch.as_str()) {
            self.arm
                .put_and_wait::<_, Value>(path, NETWORK_API, body)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Why another launch (`holder`) still holds the cluster's name, whose resources are in
    /// `rg` (`model::claim_held`: a VM alive, or that `up` younger than the grace), or `None`
    /// when it does not (a leftover of an `up` that died).
    async fn held_by(
        &self,
        spec: &ClusterSpec,
        rg: &str,
        holder: Option<&str>,
    ) -> Result<Option<&'static str>> {
        let alive = self
            .nodes_in(rg, Some(&spec.name))
            .await?
            .iter()
            .any(|n| n.state.is_alive());
        Ok(claim_held(holder, alive, now_epoch()).then_some(if alive {
            ", whose VMs are running"
        } else {
            ", whose `up` is still creating it"
        }))
    }

    /// Take a leftover claim (the resource at `path`, of `api`) over: write `body`, which
    /// carries this launch's tags, and read the launch tag back after the settle time; of two
    /// launches taking it over at once, the last writer holds it, and the other gets
    /// `taken(holder, why)`.
    async fn take_over(
        &self,
        spec: &ClusterSpec,
        path: &str,
        api: &str,
        body: &Value,
        taken: impl Fn(Option<&str>, &str) -> Error,
    ) -> Result<()> {
        let put: Put<Value> = self
            .arm
            .put(path, api, body, false)
            .await
            .map_err(|e| self.err(e))?;
        self.arm
            .wait(&format!("PUT {path}"), &put.raw)
            .await
            .map_err(|e| self.err(e))?;
        tokio::time::sleep(TAKEOVER_SETTLE).await;
        let holder = self.launch_of(path, api).await?;
        if holder.as_deref() != Some(spec.launch.as_str()) {
            return Err(taken(
                holder.as_deref(),
                ", which took the leftover over first",
            ));
        }
        Ok(())
    }

    /// The launch tag of the resource at `path` (of `api`), if it exists and has one.
    async fn launch_of(&self, path: &str, api: &str) -> Result<Option<String>> {
        #[derive(serde::Deserialize)]
        struct Tagged {
            #[serde(default)]
            tags: BTreeMap<String, String>,
        }
        let now: Option<Tagged> = self
            .arm
            .get(path, api, &[])
            .await
            .map_err(|e| self.err(e))?;
        Ok(now.and_then(|r| r.tags.get(core_tags::LAUNCH).cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, tags: &[(&str, &str)]) -> GenericResource {
        GenericResource {
            id: format!(
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkSecurityGroups/{name}"
            ),
            kind: "Microsoft.Network/networkSecurityGroups".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn only_clusterctls_tagged_resources_are_claims() {
        let ours = resource(
            "c1-nsg",
            &[
                (core_tags::MANAGED, core_tags::MANAGED_VALUE),
                (core_tags::CLUSTER, "c1"),
                (core_tags::EXPIRES, "1700000000"),
            ],
        );
        let listed = vec![
            resource("users-own", &[("team", "data")]),
            resource("untagged", &[]),
            // A cluster tag without the managed tag is not clusterctl's.
            resource("lookalike", &[(core_tags::CLUSTER, "c1")]),
            resource(
                "not-managed",
                &[(core_tags::MANAGED, "false"), (core_tags::CLUSTER, "c2")],
            ),
            ours.clone(),
        ];
        let claims = managed_tags(listed);
        assert_eq!(claims, vec![ours.tags]);
    }

    #[test]
    fn a_listing_without_a_tag_filter_carries_the_tags() {
        let page = serde_json::json!({
            "id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/c1-vnet",
            "name": "c1-vnet",
            "type": "Microsoft.Network/virtualNetworks",
            "location": "eastus",
            "tags": {"clusterctl-managed": "true", "clusterctl-cluster": "c1"}
        });
        let r: GenericResource = serde_json::from_value(page).unwrap();
        assert_eq!(managed_tags(vec![r]).len(), 1);
        // A tag-filtered listing omits the tags: nothing to claim with.
        let filtered = serde_json::json!({"id": "/x", "type": "Microsoft.Network/virtualNetworks"});
        let r: GenericResource = serde_json::from_value(filtered).unwrap();
        assert!(managed_tags(vec![r]).is_empty());
    }
}

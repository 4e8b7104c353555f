//! `down` on Azure: the cluster's own resource group is deleted with everything in it (ARM
//! orders the deletions and retries them itself), after checking that its tags name the cluster;
//! in a group clusterctl did not make, the cluster's tagged resources are deleted in dependency
//! order (VMs already gone with their NICs, disks and IPs: NICs left by a failed creation, the
//! public IP, the NSG, the VNet). There the tagged resources are the cluster's claim
//! (`claim::named_group_claims`): the VNet (the NSG with `--subnet`) goes last, so a `down` cut
//! short still leaves one for `gc` to find. Then a tag query over the subscription shows what is
//! left.

use clusterctl_core::{
    Error, Result,
    model::{ClusterName, ProviderKind},
    tags as core_tags,
};

use crate::{
    AzureProvider,
    api::{GenericResource, NETWORK_API, RESOURCES_API, ResourceGroup},
    vms,
};

impl AzureProvider {
    /// Delete the cluster's own group (already gone: fine), and wait until ARM says it is gone.
    pub(crate) async fn delete_group(&self, cluster: &ClusterName) -> Result<()> {
        let rg = vms::group_name(cluster);
        let path = self.arm.group(&rg);
        let Some(group) = self
            .arm
            .get::<ResourceGroup>(&path, RESOURCES_API, &[])
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        if group.tags.get(core_tags::CLUSTER).map(String::as_str) != Some(cluster.as_str()) {
            return Err(Error::Provider {
                provider: ProviderKind::Azure,
                operation: format!("DELETE {path}"),
                message: format!(
                    "the resource group {rg} is not tagged {}={cluster}: clusterctl did not make it, and leaves it",
                    core_tags::CLUSTER
                ),
            });
        }
        self.arm
            .delete(&path, RESOURCES_API, &[])
            .await
            .map_err(|e| self.err(e))
    }

    /// Delete what the nodes needed, then list what is still tagged for the cluster.
    pub(crate) async fn teardown(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        if self.own_group() {
            self.delete_group(cluster).await?;
        } else {
            let rg = self.group(cluster);
            let tagged = self.tagged(cluster, Some(&rg)).await?;
            // One at a time, in this order: whatever is cut short, a tagged resource (the
            // VNet, or the NSG with `--subnet`) is left until the end, and `gc` finds it.
            let mut order: Vec<(String, &str)> = Vec::new();
            for kind in [
                "Microsoft.Network/networkInterfaces",
                "Microsoft.Network/publicIPAddresses",
                "Microsoft.Network/networkSecurityGroups",
                "Microsoft.Network/virtualNetworks",
            ] {
                for r in &tagged {
                    if r.kind.eq_ignore_ascii_case(kind) {
                        order.push((r.id.clone(), NETWORK_API));
                    }
                }
            }
            for (id, api) in order {
                self.arm
                    .delete(&id, api, &[])
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        let mut left: Vec<String> = self
            .tagged(cluster, None)
            .await?
            .into_iter()
            .map(|r| format!("{} {}", r.kind, r.id))
            .collect();
        if self.own_group() {
            let path = self.arm.group(&vms::group_name(cluster));
            if let Some(g) = self
                .arm
                .get::<ResourceGroup>(&path, RESOURCES_API, &[])
                .await
                .map_err(|e| self.err(e))?
            {
                left.push(format!("resource group {}", g.name));
            }
        }
        Ok(left)
    }

    /// Resources tagged for the cluster, in the subscription or in `group`.
    async fn tagged(
        &self,
        cluster: &ClusterName,
        group: Option<&str>,
    ) -> Result<Vec<GenericResource>> {
        let path = match group {
            Some(g) => format!("{}/resources", self.arm.group(g)),
            None => format!("{}/resources", self.arm.sub()),
        };
        let filter = format!(
            "tagName eq '{}' and tagValue eq '{}'",
            core_tags::CLUSTER,
            cluster
        );
        match self
            .arm
            .list::<GenericResource>(&path, RESOURCES_API, &[("$filter", &filter)])
            .await
        {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(self.err(e)),
        }
    }
}

//! `down`'s provider part: instances are deleted by the lifecycle (`terminate_nodes`, by id);
//! then the firewall rules, and at the same time the secrets and the service account; then
//! what is still there for the cluster (instances by label across zones, the rules, secrets by
//! label, the account) is reported as left.

use clusterctl_core::{Result, model::ClusterName, tags as core_tags};

use crate::{GcpProvider, labels};

impl GcpProvider {
    pub(crate) async fn teardown(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        // The rules and the keys' secrets and account are independent: both at once.
        let (rules, access) =
            futures_util::future::join(self.delete_rules(cluster), self.delete_access(cluster))
                .await;
        rules?;
        access?;
        let mut left = Vec::new();
        let filter = labels::filter(core_tags::CLUSTER, cluster.as_str());
        for i in self
            .google
            .instances(&filter)
            .await
            .map_err(|e| self.err(e))?
        {
            left.push(format!("instance {} ({})", i.name, i.status));
        }
        left.extend(self.rules_left(cluster).await?);
        for s in self.secrets_of(cluster).await? {
            left.push(format!("secret {}", s.name));
        }
        if self.account_exists(cluster).await? {
            left.push(format!("service account {}", self.account_email(cluster)));
        }
        Ok(left)
    }
}

//! `down`'s provider part: instances are deleted by the lifecycle (`terminate_nodes`, by id);
//! then the internal firewall rule, and at the same time the secrets and the service account;
//! then the ports rule (the name's claim, last); then
//! what is still there for the cluster (instances by label across zones, the rules, secrets by
//! label, the account) is reported as left.

use clusterctl_core::{Result, model::ClusterName, tags as core_tags};

use crate::{
    GcpProvider,
    instances::{internal_rule, ports_rule},
    labels,
};

impl GcpProvider {
    pub(crate) async fn teardown(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        // The internal rule and the keys' secrets and account are independent: at once. The
        // ports rule claims the name: removed last, so that a teardown cut off on the way
        // leaves it, and `gc` finds what is left through it.
        let (rule, access) = futures_util::future::join(
            self.delete_rule(&internal_rule(cluster)),
            self.delete_access(cluster),
        )
        .await;
        rule?;
        access?;
        self.delete_rule(&ports_rule(cluster)).await?;
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

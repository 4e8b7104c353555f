//! What `down` does after the nodes: delete the cluster's droplets once more by tag, server-side
//! (a listing may omit droplets created seconds ago, so an empty listing after a create is
//! never taken as final), wait a bounded time until the tag lists none, delete the firewall,
//! then the tags no resource uses any more (this cluster's own tag, clusterctl's shared ones,
//! and the user's `--tag`s this process saw on the cluster's droplets unless a firewall names
//! them; never another cluster's tag, never a tag a droplet still carries), describe whatever
//! is still there, and delete the claim key last (`claim.rs`).

use std::{collections::BTreeSet, time::Duration};

use clusterctl_core::{
    Error, Result,
    model::ClusterName,
    wait::{Deadline, Interval, Poll, poll_until},
};

use crate::{DigitalOceanProvider, api::Droplet, claim, firewall, tags};

/// How long deleted droplets may keep being listed.
const GONE_TIMEOUT: Duration = Duration::from_secs(120);

fn describe(d: &Droplet) -> String {
    format!("droplet {} ({}, {})", d.id, d.name, d.status)
}

impl DigitalOceanProvider {
    pub(crate) async fn teardown(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        let cluster_tag = tags::cluster_tag(cluster);
        self.api
            .delete_droplets_by_tag(&cluster_tag)
            .await
            .map_err(|e| self.err(e))?;
        let waited = poll_until(
            "waiting for the cluster's droplets to be deleted",
            Deadline::after(GONE_TIMEOUT),
            Interval::CLOUD,
            || async {
                let left: Vec<Droplet> = self
                    .api
                    .droplets_by_tag(&cluster_tag)
                    .await
                    .map_err(|e| self.err(e))?
                    .into_iter()
                    .filter(|d| d.status != "archive")
                    .collect();
                Ok(if left.is_empty() {
                    Poll::Ready(Vec::new())
                } else {
                    Poll::Pending(format!("{} droplet(s) still listed", left.len()))
                })
            },
        )
        .await;
        let mut leftovers: Vec<String> = match waited {
            Ok(none) => none,
            Err(Error::Timeout { .. }) => self
                .api
                .droplets_by_tag(&cluster_tag)
                .await
                .map_err(|e| self.err(e))?
                .iter()
                .filter(|d| d.status != "archive")
                .map(describe)
                .collect(),
            Err(e) => return Err(e),
        };

        // The firewall: by its name, applied to this cluster's tag (or to no tag any more).
        let name = firewall::firewall_name(cluster);
        let ours = |f: &crate::api::Firewall| {
            f.name == name
                && f.tags
                    .as_ref()
                    .is_none_or(|t| t.is_empty() || t.contains(&cluster_tag))
        };
        for f in self
            .api
            .firewalls()
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .filter(|f| ours(f))
        {
            self.api
                .delete_firewall(&f.id)
                .await
                .map_err(|e| self.err(e))?;
        }

        // Tags nothing carries any more. The cluster's own tag only once no droplet has it, so
        // droplets that outlived the wait stay findable. The user's `--tag`s seen on this
        // cluster's droplets too, unless a firewall names them.
        let seen: BTreeSet<String> = self.seen_tags.lock().map(|s| s.clone()).unwrap_or_default();
        let firewalls = self.api.firewalls().await.map_err(|e| self.err(e))?;
        let unused = |t: &crate::api::Tag| {
            t.count() == Some(0)
                && (tags::is_collectable(&t.name, cluster)
                    || (seen.contains(&t.name)
                        && tags::decode(&t.name).is_some()
                        && !firewalls.iter().any(|f| f.names_tag(&t.name))))
        };
        for t in self
            .api
            .tags()
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .filter(|t| unused(t))
        {
            self.api
                .delete_tag(&t.name)
                .await
                .map_err(|e| self.err(e))?;
        }

        leftovers.extend(
            self.api
                .firewalls()
                .await
                .map_err(|e| self.err(e))?
                .iter()
                .filter(|f| ours(f))
                .map(|f| format!("firewall {} ({})", f.id, f.name)),
        );
        // The claim key last (`claim.rs`), and only once nothing else is left: whatever came
        // before failed or was cut off, `gc` still finds the cluster by it. One listing (that
        // route allows 10 requests a minute).
        let keys = self.api.keys().await.map_err(|e| self.err(e))?;
        for k in keys.iter().filter(|k| claim::is_cluster_key(k, cluster)) {
            if leftovers.is_empty() {
                self.api.delete_key(k.id).await.map_err(|e| self.err(e))?;
            } else {
                leftovers.push(format!(
                    "SSH key {} (the name's claim, removed once nothing else is left)",
                    k.id
                ));
            }
        }
        if leftovers.is_empty() {
            *self.key.lock().await = None;
        }
        Ok(leftovers)
    }
}

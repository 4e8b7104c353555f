//! The name's claim: the cluster's throwaway SSH key, whose name carries the cluster, the launch
//! and the expiry as `clusterctl cluster NAME launch L expires E` (`core::tags::claim_text`,
//! the words GCE puts into its rule's description). `up` creates it before anything else and
//! every cleanup deletes it last (`teardown.rs`), so a cluster cut off half-made or
//! half-removed still has it, and `gc` finds it through `list_clusters` (see "One name, one
//! cluster" and "Data flow of `gc`" in docs/architecture.md).
//!
//! Why the key and not the firewall or a tag: an SSH key's `name` is free text in API v2 (the
//! spec gives it no pattern and no length, its example has spaces), and a key refers to nothing,
//! so it can come first. A firewall's name allows only `[a-zA-Z0-9.-]`, its `tags` are the tags
//! it applies to (an expiry tag there would put it on every droplet with that expiry, at most 5),
//! and it may only name tags that already exist, so it cannot come before the cluster's tag;
//! tags are bare strings of `[a-zA-Z0-9_:-]` with no other field. The claim text is at most 89
//! characters (a 32-character name, a 19-character launch id, 10 digits of expiry).
//!
//! Key names are not unique, so the key does not settle two launches racing: the firewall
//! `clusterctl-NAME`, whose name is unique, still does (409), and then `settle_claim` once both
//! have a scheduler droplet. The key does settle a second `up` of a name like the other
//! providers' claims: a key of another launch that still holds the name (`model::claim_held`)
//! is `NameTaken`; a leftover of an `up` that died is taken over (renamed, read back after 2 s).

use std::{collections::BTreeMap, time::Duration};

use clusterctl_core::{
    Error, Result,
    model::{ClusterName, ClusterSpec, ProviderKind, claim_held, now_epoch},
    tags as core_tags,
};

use crate::{DigitalOceanProvider, api::SshKey, firewall, keys};

/// How long a launch that took over a leftover key waits before it reads it back.
const TAKEOVER_SETTLE: Duration = Duration::from_secs(2);

/// The name of the key that claims `spec`'s cluster for its launch.
pub fn key_name(spec: &ClusterSpec) -> String {
    core_tags::claim_text(spec)
}

/// The cluster tags (cluster, launch, expiry) a key's name carries, when it is a claim.
pub fn claim_of(key: &SshKey) -> Option<BTreeMap<String, String>> {
    core_tags::claim_text_tags(&key.name)
}

/// Whether `key` is `cluster`'s: its claim, or the key named `clusterctl-NAME` that earlier
/// releases made (no launch, no expiry; removed by `down` all the same).
pub fn is_cluster_key(key: &SshKey, cluster: &ClusterName) -> bool {
    claim_of(key)
        .is_some_and(|t| t.get(core_tags::CLUSTER).map(String::as_str) == Some(cluster.as_str()))
        || key.name == firewall::firewall_name(cluster)
}

/// What a launch finds of its cluster's claim among the account's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No claim of the cluster: create one.
    Nothing,
    /// This launch's own key (a repeated call).
    Mine(u64),
    /// Another launch's key, still held (that launch is younger than the grace).
    Held {
        /// The key.
        id: u64,
        /// The launch it names.
        launch: Option<String>,
    },
    /// A leftover of an `up` that died (no droplet of it is alive, checked before): the oldest
    /// such key, to take over.
    Leftover(u64),
}

/// Judge the keys of the account for `spec`'s launch at `now`, once no droplet of another
/// launch was found alive.
pub fn judge(keys: &[SshKey], spec: &ClusterSpec, now: u64) -> Found {
    let mut claims: Vec<(u64, Option<String>)> = keys
        .iter()
        .filter_map(|k| {
            let tags = claim_of(k)?;
            (tags.get(core_tags::CLUSTER).map(String::as_str) == Some(spec.name.as_str()))
                .then(|| (k.id, tags.get(core_tags::LAUNCH).cloned()))
        })
        .collect();
    claims.sort();
    if let Some((id, _)) = claims
        .iter()
        .find(|(_, l)| l.as_deref() == Some(spec.launch.as_str()))
    {
        return Found::Mine(*id);
    }
    if let Some((id, launch)) = claims
        .iter()
        .find(|(_, l)| claim_held(l.as_deref(), false, now))
    {
        return Found::Held {
            id: *id,
            launch: launch.clone(),
        };
    }
    claims
        .first()
        .map_or(Found::Nothing, |(id, _)| Found::Leftover(*id))
}

impl DigitalOceanProvider {
    /// Claim the cluster's name for this launch: the first thing `up` creates (or takes over).
    /// Another launch's live droplets or young key are `NameTaken`, with nothing created.
    pub(crate) async fn claim(&self, spec: &ClusterSpec) -> Result<()> {
        if let Some(holder) = self.other_launches(spec).await?.into_iter().next() {
            return Err(Self::name_taken(spec, holder.as_deref()));
        }
        let keys = self.api.keys().await.map_err(|e| self.err(e))?;
        let id = match judge(&keys, spec, now_epoch()) {
            Found::Mine(id) => id,
            Found::Nothing => self.create_key(spec).await?,
            Found::Held { id, launch } => {
                return Err(Error::NameTaken {
                    name: spec.name.to_string(),
                    provider: ProviderKind::Digitalocean,
                    holder: format!(
                        "its SSH key {id} belongs to launch {}, whose `up` is still creating it",
                        launch.as_deref().unwrap_or("(unknown)")
                    ),
                });
            }
            Found::Leftover(id) => self.take_over(spec, id).await?,
        };
        *self.key.lock().await = Some(id);
        Ok(())
    }

    /// Rename a leftover claim key for this launch, then read it back: of two launches taking
    /// it over at once, the last writer holds it and the other gets `NameTaken`.
    async fn take_over(&self, spec: &ClusterSpec, id: u64) -> Result<u64> {
        let name = key_name(spec);
        if self
            .api
            .rename_key(id, &name)
            .await
            .map_err(|e| self.err(e))?
            .is_none()
        {
            // Deleted meanwhile (a `down` of the leftover): make a fresh claim.
            return self.create_key(spec).await;
        }
        tokio::time::sleep(TAKEOVER_SETTLE).await;
        match self.api.key(id).await.map_err(|e| self.err(e))? {
            Some(k) if k.name == name => Ok(id),
            Some(k) => Err(Error::NameTaken {
                name: spec.name.to_string(),
                provider: ProviderKind::Digitalocean,
                holder: format!(
                    "its SSH key {id} belongs to launch {}, which took the leftover over first",
                    core_tags::claim_text_launch(&k.name).unwrap_or("(unknown)")
                ),
            }),
            None => self.create_key(spec).await,
        }
    }

    /// Register a new claim key for `spec`'s launch.
    pub(crate) async fn create_key(&self, spec: &ClusterSpec) -> Result<u64> {
        let public = keys::throwaway_public_key(&firewall::firewall_name(&spec.name))?;
        Ok(self
            .api
            .create_key(&key_name(spec), &public)
            .await
            .map_err(|e| self.err(e))?
            .id)
    }

    /// The tags of every cluster's claim in the account, for `gc` (one listing of the keys).
    pub(crate) async fn claims(&self) -> Result<Vec<BTreeMap<String, String>>> {
        Ok(self
            .api
            .keys()
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .filter_map(claim_of)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(launch: &str) -> ClusterSpec {
        ClusterSpec {
            name: ClusterName::new("c1").unwrap(),
            workers: 1,
            dask_version: clusterctl_core::DASK_VERSION.into(),
            image: clusterctl_core::default_image(clusterctl_core::DASK_VERSION),
            scheduler_size: Default::default(),
            worker_size: Default::default(),
            env: Default::default(),
            tags: Default::default(),
            owner: "me".into(),
            created_at: 1_700_000_000,
            ttl: Duration::from_secs(3600),
            idle_timeout: Duration::ZERO,
            death_timeout: Duration::from_secs(60),
            tls: true,
            private: false,
            launch: launch.into(),
            pip: Vec::new(),
        }
    }

    fn key(id: u64, name: &str) -> SshKey {
        SshKey {
            id,
            name: name.into(),
        }
    }

    #[test]
    fn the_key_name_carries_cluster_launch_and_expiry() {
        let s = spec("1700000000-abcd1234");
        let name = key_name(&s);
        assert_eq!(
            name,
            "clusterctl cluster c1 launch 1700000000-abcd1234 expires 1700003600"
        );
        let tags = claim_of(&key(1, &name)).unwrap();
        assert_eq!(tags[core_tags::CLUSTER], "c1");
        assert_eq!(tags[core_tags::LAUNCH], "1700000000-abcd1234");
        assert_eq!(tags[core_tags::EXPIRES], "1700003600");
        let c1 = ClusterName::new("c1").unwrap();
        assert!(is_cluster_key(&key(1, &name), &c1));
        assert!(
            is_cluster_key(&key(2, "clusterctl-c1"), &c1),
            "an older release's key"
        );
        assert!(!is_cluster_key(&key(3, "clusterctl-c10"), &c1));
        assert!(!is_cluster_key(
            &key(
                4,
                "clusterctl cluster c10 launch 1700000000-abcd1234 expires 1"
            ),
            &c1
        ));
        assert!(claim_of(&key(5, "laptop")).is_none());
    }

    #[test]
    fn a_young_claim_is_held_an_old_one_taken_over_and_ones_own_kept() {
        let me = spec("1700001000-00000001");
        let young = "clusterctl cluster c1 launch 1700000900-0000000a expires 1700004500";
        let old = "clusterctl cluster c1 launch 1699990000-0000000b expires 1699993600";
        let other_cluster = "clusterctl cluster c2 launch 1700000900-0000000c expires 1";
        let now = 1_700_001_000;
        assert_eq!(judge(&[], &me, now), Found::Nothing);
        assert_eq!(
            judge(&[key(1, other_cluster), key(2, "clusterctl-c1")], &me, now),
            Found::Nothing,
            "another cluster's claim, an older release's key: no claim of c1"
        );
        assert_eq!(
            judge(&[key(3, old), key(4, young)], &me, now),
            Found::Held {
                id: 4,
                launch: Some("1700000900-0000000a".into())
            }
        );
        assert_eq!(
            judge(&[key(5, old), key(3, old)], &me, now),
            Found::Leftover(3)
        );
        assert_eq!(
            judge(&[key(4, young), key(6, &key_name(&me))], &me, now),
            Found::Mine(6)
        );
        // The young claim stops holding once the grace has passed.
        let later = 1_700_000_900 + clusterctl_core::model::CLAIM_GRACE.as_secs();
        assert_eq!(judge(&[key(4, young)], &me, later), Found::Leftover(4));
    }
}

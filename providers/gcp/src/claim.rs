//! The cluster's firewall rules, and the name's claim: inserting the rule `clusterctl-NAME`
//! (tcp 8786–8787 from `--allow-cidr`, to the instances carrying the cluster's network tag)
//! is atomic — a second insert of the name gets 409 `alreadyExists` — so it claims the
//! cluster's name for this launch (see "One name, one cluster" in docs/architecture.md).
//! Firewall rules have no labels; the rule's description names the cluster and the launch.
//! The second rule, `clusterctl-NAME-internal`, lets the cluster's instances reach each other
//! on every port (source and target: the network tag).

use std::time::Duration;

use std::collections::BTreeMap;

use clusterctl_core::{
    Error, Result,
    model::{ClusterName, ClusterSpec, ProviderKind, claim_held, now_epoch},
    tags as core_tags,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    GcpProvider,
    api::{Api, Firewall, request_id},
    errors::GcpError,
    instances::{internal_rule, network_tag, ports_rule},
};

/// The auto-mode range of the `default` network: the source of `--private` clients when no
/// `--allow-cidr` is given.
pub const AUTO_MODE_RANGE: &str = "10.128.0.0/9";
/// How long a launch that took over a leftover rule waits before it reads it back.
const TAKEOVER_SETTLE: Duration = Duration::from_secs(2);

/// The description of the cluster's rules: it names the cluster, the launch and the expiry
/// (firewall rules have no labels; `gc` reads a cluster with no instance left from it).
pub fn description(spec: &ClusterSpec) -> String {
    core_tags::claim_text(spec)
}

/// The cluster tags a rule's description carries (cluster, launch, expiry), when the rule is
/// a cluster's ports rule (the claim of its name).
pub fn claim_tags(rule: &Firewall) -> Option<BTreeMap<String, String>> {
    let tags = core_tags::claim_text_tags(&rule.description)?;
    let cluster = ClusterName::new(tags.get(core_tags::CLUSTER)?).ok()?;
    (rule.name == ports_rule(&cluster)).then_some(tags)
}

/// The launch a rule's description names.
pub fn launch_of(description: &str) -> Option<&str> {
    core_tags::claim_text_launch(description)
}

impl GcpProvider {
    fn ports_body(&self, spec: &ClusterSpec) -> Value {
        let sources = if self.options.allow_cidrs.is_empty() {
            vec![AUTO_MODE_RANGE.to_string()]
        } else {
            self.options.allow_cidrs.clone()
        };
        json!({
            "name": ports_rule(&spec.name),
            "description": description(spec),
            "network": format!("global/networks/{}", self.options.network()),
            "direction": "INGRESS",
            "priority": 1000,
            "sourceRanges": sources,
            "targetTags": [network_tag(&spec.name)],
            "allowed": [{"IPProtocol": "tcp", "ports": ["8786-8787"]}],
        })
    }

    /// Insert the ports rule, which claims the name; a rule of another launch still held is
    /// `NameTaken`, one not held (an `up` that died) is taken over.
    pub(crate) async fn claim(&self, spec: &ClusterSpec) -> Result<()> {
        let g = &self.google;
        let name = ports_rule(&spec.name);
        let body = self.ports_body(spec);
        let inserted = match g
            .mutate(
                Method::POST,
                &g.cp("/global/firewalls"),
                Some(&body),
                &request_id(),
            )
            .await
        {
            Ok(op) => match g.wait(&format!("insert firewall {name}"), op).await {
                Ok(_) => return Ok(()),
                Err(e) if matches!(&e, GcpError::Operation { errors, .. } if errors.iter().any(|x| x.code.contains("ALREADY_EXISTS") || x.code == "alreadyExists")) => {
                    false
                }
                Err(e) => return Err(self.err(e)),
            },
            Err(e) if e.is_conflict() => false,
            Err(e) => return Err(self.err(e)),
        };
        debug_assert!(!inserted);
        let path = g.cp(&format!("/global/firewalls/{name}"));
        let existing: Option<Firewall> = g
            .get(Api::Compute, &path, &[])
            .await
            .map_err(|e| self.err(e))?;
        let holder = existing
            .as_ref()
            .and_then(|f| launch_of(&f.description).map(str::to_string));
        let taken = |holder: Option<&str>, why: &str| Error::NameTaken {
            name: spec.name.to_string(),
            provider: ProviderKind::Gcp,
            holder: format!(
                "its firewall rule {name} belongs to launch {}{why}",
                holder.unwrap_or("(unknown)")
            ),
        };
        if holder.as_deref() == Some(spec.launch.as_str()) {
            return Ok(());
        }
        let alive = self
            .nodes(Some(&spec.name))
            .await?
            .iter()
            .any(|n| n.state.is_alive());
        if claim_held(holder.as_deref(), alive, now_epoch()) {
            return Err(taken(
                holder.as_deref(),
                if alive {
                    ", whose instances are running"
                } else {
                    ", whose `up` is still creating it"
                },
            ));
        }
        // A leftover of an `up` that died: take it over, then read it back.
        let op = g
            .mutate(Method::PATCH, &path, Some(&body), &request_id())
            .await
            .map_err(|e| self.err(e))?;
        g.wait(&format!("patch firewall {name}"), op)
            .await
            .map_err(|e| self.err(e))?;
        tokio::time::sleep(TAKEOVER_SETTLE).await;
        let now: Option<Firewall> = g
            .get(Api::Compute, &path, &[])
            .await
            .map_err(|e| self.err(e))?;
        let holder = now.and_then(|f| launch_of(&f.description).map(str::to_string));
        if holder.as_deref() != Some(spec.launch.as_str()) {
            return Err(taken(
                holder.as_deref(),
                ", which took the leftover over first",
            ));
        }
        Ok(())
    }

    /// The rule letting the cluster's instances reach each other (an existing one is kept).
    pub(crate) async fn internal_rule(&self, spec: &ClusterSpec) -> Result<()> {
        let g = &self.google;
        let name = internal_rule(&spec.name);
        let body = json!({
            "name": name,
            "description": description(spec),
            "network": format!("global/networks/{}", self.options.network()),
            "direction": "INGRESS",
            "priority": 1000,
            "sourceTags": [network_tag(&spec.name)],
            "targetTags": [network_tag(&spec.name)],
            "allowed": [{"IPProtocol": "all"}],
        });
        match g
            .mutate(
                Method::POST,
                &g.cp("/global/firewalls"),
                Some(&body),
                &request_id(),
            )
            .await
        {
            Ok(op) => match g.wait(&format!("insert firewall {name}"), op).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_conflict() => Ok(()),
                Err(e) => Err(self.err(e)),
            },
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Delete the rule `name` (gone is fine) and wait for its operation.
    pub(crate) async fn delete_rule(&self, name: &str) -> Result<()> {
        let g = &self.google;
        let path = g.cp(&format!("/global/firewalls/{name}"));
        match g.mutate(Method::DELETE, &path, None, &request_id()).await {
            Ok(op) => match g.wait(&format!("delete firewall {name}"), op).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_not_found() => Ok(()),
                Err(e) => Err(self.err(e)),
            },
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// The tags of every cluster's claim (its ports rule) in the project, for `gc`.
    pub(crate) async fn claims(&self) -> Result<Vec<BTreeMap<String, String>>> {
        let rules: Vec<Firewall> = self
            .google
            .list(
                Api::Compute,
                &self.google.cp("/global/firewalls"),
                "items",
                None,
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rules.iter().filter_map(claim_tags).collect())
    }

    /// The cluster's rules that still exist.
    pub(crate) async fn rules_left(
        &self,
        cluster: &clusterctl_core::model::ClusterName,
    ) -> Result<Vec<String>> {
        let mut left = Vec::new();
        for name in [ports_rule(cluster), internal_rule(cluster)] {
            let found: Option<Value> = self
                .google
                .get(
                    Api::Compute,
                    &self.google.cp(&format!("/global/firewalls/{name}")),
                    &[],
                )
                .await
                .map_err(|e| self.err(e))?;
            if found.is_some() {
                left.push(format!("firewall rule {name}"));
            }
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launch_is_read_back_from_the_description() {
        assert_eq!(
            launch_of("clusterctl cluster c1 launch 1700000000-abcd1234 expires 1700003600"),
            Some("1700000000-abcd1234")
        );
        assert_eq!(
            launch_of("clusterctl cluster c1 launch 1700000000-abcd1234"),
            Some("1700000000-abcd1234")
        );
        assert_eq!(launch_of("made by hand"), None);
    }

    #[test]
    fn the_claim_is_read_back_from_the_ports_rule_only() {
        let rule = |name: &str, description: &str| Firewall {
            name: name.into(),
            description: description.into(),
        };
        let d = "clusterctl cluster c1 launch 1700000000-abcd1234 expires 1700003600";
        let tags = claim_tags(&rule("clusterctl-c1", d)).unwrap();
        assert_eq!(tags[core_tags::CLUSTER], "c1");
        assert_eq!(tags[core_tags::LAUNCH], "1700000000-abcd1234");
        assert_eq!(tags[core_tags::EXPIRES], "1700003600");
        // The internal rule carries the same description; a rule named otherwise is not it.
        assert!(claim_tags(&rule("clusterctl-c1-internal", d)).is_none());
        assert!(claim_tags(&rule("default-allow-ssh", "Allow SSH")).is_none());
    }
}

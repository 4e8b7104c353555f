//! The tag set every resource of a cluster carries. `down`, `status` and `list` find a cluster
//! from these alone, so they work without the local record and from another machine.
//!
//! Keys use only lowercase letters and `-` so that every platform accepts them as they are
//! (AWS tags, Azure tags, GCE and Kubernetes labels, DigitalOcean tags as `key:value`). Values
//! are plain: the expiry is epoch seconds, not a timestamp with `:`.

use std::collections::BTreeMap;

use crate::model::{ClusterSpec, Role};

/// Marks a resource as made by clusterctl; its value is always [`MANAGED_VALUE`].
pub const MANAGED: &str = "clusterctl-managed";
/// Value of [`MANAGED`].
pub const MANAGED_VALUE: &str = "true";
/// The cluster's name.
pub const CLUSTER: &str = "clusterctl-cluster";
/// `scheduler` or `worker`; supporting resources (networks, roles) have no role tag.
pub const ROLE: &str = "clusterctl-role";
/// The node's Dask name.
pub const NODE: &str = "clusterctl-node";
/// Who started the cluster.
pub const OWNER: &str = "clusterctl-owner";
/// When the cluster must be gone, in seconds since the Unix epoch.
pub const EXPIRES: &str = "clusterctl-expires";
/// The scheduler's protocol, `tls` or `tcp`, so its address can be rebuilt from tags alone.
pub const PROTOCOL: &str = "clusterctl-protocol";
/// The `up` that made the resource ([`crate::model::ClusterSpec::launch`]).
pub const LAUNCH: &str = "clusterctl-launch";

/// Tags for a supporting resource of the cluster (no role): user tags first, so ours win.
pub fn cluster_tags(spec: &ClusterSpec) -> BTreeMap<String, String> {
    let mut tags = spec.tags.clone();
    tags.insert(MANAGED.into(), MANAGED_VALUE.into());
    tags.insert(CLUSTER.into(), spec.name.to_string());
    tags.insert(OWNER.into(), spec.owner.clone());
    tags.insert(EXPIRES.into(), spec.expires_at().to_string());
    tags.insert(PROTOCOL.into(), crate::bootstrap::scheme(spec).into());
    if !spec.launch.is_empty() {
        tags.insert(LAUNCH.into(), spec.launch.clone());
    }
    tags
}

/// The protocol of a node from its tags (`tcp` when absent).
pub fn protocol(tags: &BTreeMap<String, String>) -> &str {
    tags.get(PROTOCOL).map_or("tcp", String::as_str)
}

/// Tags for a node of the cluster.
pub fn node_tags(spec: &ClusterSpec, role: Role, node_name: &str) -> BTreeMap<String, String> {
    let mut tags = cluster_tags(spec);
    tags.insert(ROLE.into(), role.as_str().into());
    tags.insert(NODE.into(), node_name.into());
    tags
}

/// Write `text` for a platform whose tags or labels allow only a few characters: every byte
/// outside `[a-z0-9-]` becomes `_HH` (two lowercase hex digits), `_` itself included, so
/// [`unescape`] reads it back exactly and two texts never map to one. What clusterctl sets
/// itself (its keys, cluster names, epoch seconds, launch ids) reads as it is. Used for
/// DigitalOcean's flat tags and Compute Engine's labels.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// Read back what [`escape`] wrote; `None` for text it cannot have written.
pub fn unescape(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = text.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|h| h.is_ascii_digit() || (b'a'..=b'f').contains(&h))
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// How [`claim_text`] starts.
const CLAIM_PREFIX: &str = "clusterctl cluster ";

/// The claim of a cluster's name written as words, for a claiming resource that has no tags of
/// its own, only free text (a GCE firewall rule's description, a DigitalOcean SSH key's name):
/// `clusterctl cluster NAME launch L expires E`. [`claim_text_tags`] reads it back.
pub fn claim_text(spec: &ClusterSpec) -> String {
    format!(
        "{CLAIM_PREFIX}{} launch {} expires {}",
        spec.name,
        spec.launch,
        spec.expires_at()
    )
}

/// The launch id that [`claim_text`] wrote into `text`, if any.
pub fn claim_text_launch(text: &str) -> Option<&str> {
    let words: Vec<&str> = text
        .strip_prefix(CLAIM_PREFIX)?
        .split_whitespace()
        .collect();
    words.get(1..)?.chunks(2).find_map(|pair| match pair {
        ["launch", l] => Some(*l),
        _ => None,
    })
}

/// The cluster tags (managed, cluster, launch, expiry) that [`claim_text`] wrote into `text`;
/// `None` for any other text, or one whose cluster is not a valid name.
pub fn claim_text_tags(text: &str) -> Option<BTreeMap<String, String>> {
    let words: Vec<&str> = text
        .strip_prefix(CLAIM_PREFIX)?
        .split_whitespace()
        .collect();
    let cluster = crate::model::ClusterName::new(words.first()?).ok()?;
    let mut tags = BTreeMap::from([
        (MANAGED.to_string(), MANAGED_VALUE.to_string()),
        (CLUSTER.to_string(), cluster.to_string()),
    ]);
    for pair in words[1..].chunks(2) {
        match pair {
            ["launch", l] => tags.insert(LAUNCH.to_string(), l.to_string()),
            ["expires", e] => tags.insert(EXPIRES.to_string(), e.to_string()),
            _ => None,
        };
    }
    Some(tags)
}

/// Whether `key` is reserved for clusterctl (user `--tag` may not set it).
pub fn is_reserved(key: &str) -> bool {
    key.starts_with("clusterctl-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_written_as_words_reads_back_as_its_tags() {
        let text = "clusterctl cluster c1 launch 1700000000-abcd1234 expires 1700003600";
        let tags = claim_text_tags(text).unwrap();
        assert_eq!(tags[MANAGED], MANAGED_VALUE);
        assert_eq!(tags[CLUSTER], "c1");
        assert_eq!(tags[LAUNCH], "1700000000-abcd1234");
        assert_eq!(tags[EXPIRES], "1700003600");
        assert_eq!(claim_text_launch(text), Some("1700000000-abcd1234"));
        // Without an expiry (an older description): the cluster and launch only.
        let older = claim_text_tags("clusterctl cluster c1 launch 1700000000-abcd1234").unwrap();
        assert!(!older.contains_key(EXPIRES));
        // Other text, or a cluster name clusterctl cannot have made, is no claim.
        assert_eq!(claim_text_tags("My SSH Public Key"), None);
        assert_eq!(claim_text_tags("clusterctl-c1"), None);
        assert_eq!(
            claim_text_tags("clusterctl cluster Not_A_Name launch x"),
            None
        );
        assert_eq!(claim_text_launch("made by hand"), None);
        assert_eq!(claim_text_launch("clusterctl cluster c1"), None);
    }
}

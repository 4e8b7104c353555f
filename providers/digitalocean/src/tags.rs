//! clusterctl's key/value tags as DigitalOcean tags, which are flat strings matching
//! `^[a-zA-Z0-9_\-:]+$`, at most 255 characters, and unique without regard to case (the first
//! capitalization ever created wins, and URLs must use it).
//!
//! Each pair becomes `key:value`, with every byte of key and value outside `[a-z0-9-]` written
//! as `_HH` (two lowercase hex digits): `:` and `_` themselves (`_3a`, `_5f`), uppercase letters
//! (so no two tags differ only in case), and any other character byte by byte (UTF-8). The only
//! `:` left is the separator and every `_` starts an escape, so decoding is exact. Keys and
//! values clusterctl sets itself (`clusterctl-cluster`, a cluster name, epoch seconds) need no
//! escape and read as they are: `clusterctl-cluster:ci-run-42`.

use std::collections::BTreeMap;

use clusterctl_core::{Error, Result, model::ClusterName, tags};

/// Longest tag DigitalOcean accepts.
pub const MAX_LEN: usize = 255;

fn escape(text: &str, out: &mut String) {
    out.push_str(&tags::escape(text));
}

fn unescape(text: &str) -> Option<String> {
    tags::unescape(text)
}

/// The DigitalOcean tag of one key/value pair.
pub fn encode(key: &str, value: &str) -> String {
    let mut out = String::with_capacity(key.len() + value.len() + 1);
    escape(key, &mut out);
    out.push(':');
    escape(value, &mut out);
    out
}

/// The key/value pair of a tag written by [`encode`]; `None` for any other tag (a user's own
/// `web` or `env:prod` on the same droplet).
pub fn decode(tag: &str) -> Option<(String, String)> {
    let (k, v) = tag.split_once(':')?;
    Some((unescape(k)?, unescape(v)?))
}

/// Encode a tag set, refusing (exit code 2, before anything is created) a tag longer than
/// DigitalOcean allows.
pub fn encode_all(pairs: &BTreeMap<String, String>) -> Result<Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| {
            let tag = encode(k, v);
            if tag.len() > MAX_LEN {
                return Err(Error::invalid(
                    "tag",
                    format!("{k}={v}"),
                    format!(
                        "as a DigitalOcean tag it is {} characters (`{}…`), more than the {MAX_LEN} allowed; \
                         characters outside a-z, 0-9 and '-' take 3 characters each",
                        tag.len(),
                        &tag[..40.min(tag.len())]
                    ),
                    Some("shorten the `--tag` key or value".into()),
                ));
            }
            Ok(tag)
        })
        .collect()
}

/// The key/value pairs among a droplet's tags (others ignored).
pub fn decode_all(tags: &[String]) -> BTreeMap<String, String> {
    tags.iter().filter_map(|t| decode(t)).collect()
}

/// The tag every resource of `cluster` carries; the firewall applies to it and `down` deletes
/// droplets by it.
pub fn cluster_tag(cluster: &ClusterName) -> String {
    encode(tags::CLUSTER, cluster.as_str())
}

/// The tag every clusterctl droplet carries, for listing all clusters.
pub fn managed_tag() -> String {
    encode(tags::MANAGED, tags::MANAGED_VALUE)
}

/// Whether a tag left without resources may be deleted by the cleanup of `cluster`: the
/// cluster's own tag, and tags of clusterctl's other keys (role, node, owner, expiry, protocol,
/// managed), which droplet creation brings back whenever they are needed. Never another
/// cluster's tag (its firewall may name it before its droplets exist), never a user's tag.
pub fn is_collectable(tag: &str, cluster: &ClusterName) -> bool {
    match decode(tag) {
        Some((k, v)) if k == tags::CLUSTER => v == cluster.as_str(),
        Some((k, _)) => tags::is_reserved(&k),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clusterctl_tags_read_as_they_are() {
        assert_eq!(
            encode("clusterctl-cluster", "ci-run-42"),
            "clusterctl-cluster:ci-run-42"
        );
        assert_eq!(
            encode("clusterctl-expires", "1700003600"),
            "clusterctl-expires:1700003600"
        );
        assert_eq!(managed_tag(), "clusterctl-managed:true");
    }

    #[test]
    fn round_trips() {
        for (k, v) in [
            ("team", "data_eng"),
            ("Owner", "Alice.Smith@example.com"),
            ("a:b", "c:d"),
            ("_", "__"),
            ("émoji", "🚀 x"),
            ("k", ""),
            ("UPPER", "MiXeD-42"),
        ] {
            let tag = encode(k, v);
            assert!(
                tag.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-:".contains(&b)),
                "{tag}"
            );
            assert_eq!(tag.matches(':').count(), 1, "{tag}");
            assert_eq!(decode(&tag), Some((k.to_string(), v.to_string())), "{tag}");
        }
        assert_eq!(encode("team", "data_eng"), "team:data_5feng");
        assert_eq!(encode("Owner", "A"), "_4fwner:_41");
    }

    #[test]
    fn case_never_distinguishes_two_tags() {
        // `Owner:x` and `owner:x` would be one tag on DigitalOcean; encoded they differ in more
        // than case.
        let a = encode("Owner", "x");
        let b = encode("owner", "x");
        assert_ne!(a.to_ascii_lowercase(), b.to_ascii_lowercase());
    }

    #[test]
    fn foreign_tags_are_ignored() {
        assert_eq!(decode("web"), None);
        assert_eq!(decode("env:Prod"), None);
        assert_eq!(decode("a:b_zz"), None);
        assert_eq!(decode("a:b_4"), None);
        let all = decode_all(&[
            "web".into(),
            "clusterctl-role:worker".into(),
            "team:data_5feng".into(),
        ]);
        assert_eq!(all.len(), 2);
        assert_eq!(all["team"], "data_eng");
    }

    #[test]
    fn tags_over_255_characters_are_refused() {
        let ok = BTreeMap::from([("k".to_string(), "v".repeat(253))]);
        assert_eq!(encode_all(&ok).unwrap()[0].len(), 255);
        let long = BTreeMap::from([("k".to_string(), "v".repeat(254))]);
        let err = encode_all(&long).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("256 characters"), "{err}");
        // Escapes count: 100 uppercase letters take 300 characters.
        let upper = BTreeMap::from([("k".to_string(), "V".repeat(100))]);
        assert!(encode_all(&upper).is_err());
    }

    #[test]
    fn only_this_clusters_and_clusterctls_tags_are_collected() {
        let me = ClusterName::new("a").unwrap();
        assert!(is_collectable("clusterctl-cluster:a", &me));
        assert!(!is_collectable("clusterctl-cluster:b", &me));
        assert!(is_collectable("clusterctl-node:worker-3", &me));
        assert!(is_collectable("clusterctl-managed:true", &me));
        assert!(!is_collectable("team:x", &me));
        assert!(!is_collectable("web", &me));
    }
}

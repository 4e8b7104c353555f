//! clusterctl's key/value tags as Compute Engine labels, which allow only lowercase letters,
//! digits, `_` and `-` in keys and values, at most 63 characters each, keys starting with a
//! lowercase letter, at most 64 labels.
//!
//! Each key and value is written with every byte outside `[a-z0-9-]` as `_HH` (two lowercase
//! hex digits): `_` itself (`_5f`), uppercase letters (`A` → `_41`), `@`, `.`, and any other
//! character byte by byte (UTF-8). Every `_` starts an escape, so decoding is exact and two
//! tags never map to one label. What clusterctl sets itself (`clusterctl-cluster`, a cluster
//! name, epoch seconds, a launch id) needs no escape and reads as it is. A tag whose encoded
//! key or value is longer than 63 characters, or whose key does not start with a lowercase
//! letter, cannot be represented: `up` refuses it with exit code 2 before anything exists.

use std::collections::BTreeMap;

use clusterctl_core::{Error, Result, tags};

/// Longest label key or value.
pub const MAX_LEN: usize = 63;
/// Most labels on one resource.
pub const MAX_LABELS: usize = 64;

/// Encode one key or value (`tags::escape`, shared with DigitalOcean's tags).
pub fn escape(text: &str) -> String {
    tags::escape(text)
}

/// Decode what [`escape`] wrote; `None` for text it cannot have written.
pub fn unescape(text: &str) -> Option<String> {
    tags::unescape(text)
}

/// The labels of a tag set, refusing (exit code 2) what labels cannot hold.
pub fn encode_all(tags: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if tags.len() > MAX_LABELS {
        return Err(Error::invalid(
            "--tag",
            format!("{} tags", tags.len()),
            format!(
                "Compute Engine allows at most {MAX_LABELS} labels per resource, clusterctl's own included"
            ),
            Some("pass fewer --tag".into()),
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in tags {
        let (key, value) = (escape(k), escape(v));
        if !k.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Error::invalid(
                "--tag",
                format!("{k}={v}"),
                "a Compute Engine label key must start with a lowercase letter",
                Some("start the tag's key with a lowercase letter, e.g. `team=data`".into()),
            ));
        }
        if key.len() > MAX_LEN || value.len() > MAX_LEN {
            return Err(Error::invalid(
                "--tag",
                format!("{k}={v}"),
                format!(
                    "as a Compute Engine label it is longer than {MAX_LEN} characters (characters other than a-z, 0-9 and '-' take three each)"
                ),
                Some("shorten the tag, or use lowercase letters, digits and '-'".into()),
            ));
        }
        out.insert(key, value);
    }
    Ok(out)
}

/// The tags of a label set (labels clusterctl did not write are skipped).
pub fn decode_all(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter_map(|(k, v)| Some((unescape(k)?, unescape(v)?)))
        .collect()
}

/// A list filter matching one tag: `labels.KEY = "VALUE"`.
pub fn filter(key: &str, value: &str) -> String {
    format!("labels.{} = \"{}\"", escape(key), escape(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        let mut tags = BTreeMap::new();
        tags.insert("clusterctl-cluster".to_string(), "ci-run-42".to_string());
        tags.insert("clusterctl-owner".to_string(), "Ana.B@host".to_string());
        tags.insert("team".to_string(), "Data_Eng".to_string());
        let labels = encode_all(&tags).unwrap();
        assert_eq!(labels["clusterctl-cluster"], "ci-run-42");
        assert_eq!(labels["clusterctl-owner"], "_41na_2e_42_40host");
        for (k, v) in &labels {
            assert!(k.len() <= MAX_LEN && v.len() <= MAX_LEN);
            assert!(
                k.chars()
                    .chain(v.chars())
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_".contains(c))
            );
        }
        assert_eq!(decode_all(&labels), tags);
        assert_eq!(unescape("a_zz"), None);
        tags.insert("Team".into(), "x".into());
        assert!(encode_all(&tags).is_err());
        tags.remove("Team");
        tags.insert("long".into(), "X".repeat(30));
        assert!(encode_all(&tags).is_err());
        assert_eq!(
            filter("clusterctl-cluster", "c1"),
            "labels.clusterctl-cluster = \"c1\""
        );
    }
}

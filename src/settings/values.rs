//! Parsing and validation of the values every provider shares: durations, worker counts, sizes,
//! `--env` and `--tag` pairs, and the owner tag. Each error names the value and the fix.

use std::{collections::BTreeMap, time::Duration};

use clusterctl_core::{Error, Result, model, tags};

use super::MAX_WORKERS;

/// Parse a duration like `90s`, `15m`, `2h`, `1h30m`; `0` is zero.
pub fn parse_duration(what: &'static str, s: &str) -> Result<Duration> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t).map_err(|e| {
        Error::invalid(
            what,
            s,
            e.to_string(),
            Some("use a duration like `90s`, `15m`, `2h` or `1h30m`".into()),
        )
    })
}

/// Parse a worker count: a whole number from 0 to [`MAX_WORKERS`].
pub fn parse_workers(what: &'static str, s: &str) -> Result<u32> {
    let n: i64 = s.trim().parse().map_err(|_| {
        Error::invalid(
            what,
            s,
            "not a whole number",
            Some(format!("use a number of workers from 0 to {MAX_WORKERS}")),
        )
    })?;
    if n < 0 {
        return Err(Error::invalid(
            what,
            s,
            "the number of workers cannot be negative",
            Some(format!("use a number from 0 to {MAX_WORKERS}")),
        ));
    }
    if n > i64::from(MAX_WORKERS) {
        return Err(Error::invalid(
            what,
            s,
            format!("more than {MAX_WORKERS} workers"),
            Some("split the work over several clusters".into()),
        ));
    }
    Ok(n as u32)
}

/// Parse a vCPU count (1 to 512).
pub(super) fn parse_cpus(what: &'static str, s: &str) -> Result<u32> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=512).contains(&n) => Ok(n),
        _ => Err(Error::invalid(
            what,
            s,
            "not a whole number of vCPUs from 1 to 512",
            Some("e.g. `2`".into()),
        )),
    }
}

/// Parse a memory size (`4GiB`, `512MiB`, `8G`, `4096M`; a bare number is MiB) into MiB.
pub fn parse_memory(what: &'static str, s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let refuse = || {
        Error::invalid(
            what,
            s,
            "not a memory size",
            Some("use e.g. `4GiB`, `512MiB` or `8G`".into()),
        )
    };
    let n: u64 = num.parse().map_err(|_| refuse())?;
    let mib = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "m" | "mi" | "mib" | "mb" => n,
        "g" | "gi" | "gib" | "gb" => n.saturating_mul(1024),
        "t" | "ti" | "tib" | "tb" => n.saturating_mul(1024 * 1024),
        _ => return Err(refuse()),
    };
    if mib < 128 {
        return Err(Error::invalid(
            what,
            s,
            "less than 128MiB",
            Some("Dask needs at least a few hundred MiB per process".into()),
        ));
    }
    model::check_memory_max(what, s, mib)?;
    Ok(mib)
}

/// Names of environment variables that hold credentials; they would end up in the nodes'
/// bootstrap (user-data, task definitions), readable by anyone who can describe the resources.
fn looks_like_credential(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    [
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "TOKEN",
        "CREDENTIAL",
        "PRIVATE_KEY",
        "ACCESS_KEY",
        "API_KEY",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Parse `K=V` pairs for `--env`.
pub fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::invalid(
                "--env",
                pair.clone(),
                "not of the form K=V",
                Some("e.g. `--env OMP_NUM_THREADS=1`".into()),
            )
        })?;
        validate_env(k, v)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub(super) fn validate_env(k: &str, v: &str) -> Result<()> {
    let valid_name = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_name {
        return Err(Error::invalid(
            "environment variable name",
            k,
            "use letters, digits and '_', not starting with a digit",
            None,
        ));
    }
    if k.starts_with("CLUSTERCTL_") {
        return Err(Error::invalid(
            "environment variable name",
            k,
            "CLUSTERCTL_* variables are set by clusterctl itself",
            None,
        ));
    }
    if v.contains(['\n', '\r', '\0']) {
        return Err(Error::invalid(
            "environment variable",
            k,
            "its value contains a line break",
            Some("pass single-line values".into()),
        ));
    }
    if looks_like_credential(k) {
        return Err(Error::invalid(
            "environment variable",
            k,
            "it looks like a credential, and the environment is written into the nodes' bootstrap, readable by anyone who can inspect the resources",
            Some("give the nodes access through the platform's identity (instance profile, task role, workload identity) instead".into()),
        ));
    }
    Ok(())
}

/// Parse `K=V` pairs for `--tag`.
pub fn parse_tags(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::invalid(
                "--tag",
                pair.clone(),
                "not of the form K=V",
                Some("e.g. `--tag team=data`".into()),
            )
        })?;
        validate_tag(k, v)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

pub(super) fn validate_tag(k: &str, v: &str) -> Result<()> {
    let ok = |s: &str, max: usize| {
        s.len() <= max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if k.is_empty() || !ok(k, 63) || !k.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Error::invalid(
            "tag key",
            k,
            "not a key every provider accepts",
            Some(
                "use up to 63 letters, digits, '-', '_' or '.', starting with a letter or digit, e.g. `--tag team=data`"
                    .into(),
            ),
        ));
    }
    if tags::is_reserved(k) {
        return Err(Error::invalid(
            "tag key",
            k,
            "keys starting with `clusterctl-` are reserved",
            Some("choose another key, e.g. `--tag team=data`".into()),
        ));
    }
    if !ok(v, 63) {
        return Err(Error::invalid(
            "tag value",
            v,
            "not a value every provider accepts",
            Some("use up to 63 letters, digits, '-', '_' or '.'".into()),
        ));
    }
    Ok(())
}

/// The user name for the owner tag, reduced to characters every platform accepts.
pub(super) fn owner() -> String {
    let raw = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|u| u.name)
        })
        .unwrap_or_else(|| "unknown".into());
    let cleaned: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if cleaned.is_empty() {
        "unknown".into()
    } else {
        cleaned
    }
}

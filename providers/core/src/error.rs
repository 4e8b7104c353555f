//! Typed errors of the core and the providers, with their exit codes and `hint:` lines.
//!
//! Messages name the value that is wrong; hints say what to do. The binary maps an error to an
//! exit code with [`Error::exit_code`]: 2 for input the user can fix before anything is created,
//! 1 for failures of the cluster or the platform, 130 for an interruption.

use std::time::Duration;

use crate::model::{ProviderKind, Role};

/// Result alias used across clusterctl.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Boxed error kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong, typed so the CLI can choose the exit code and the hint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given by the user (flag, env var, config key) is not acceptable.
    #[error("invalid {what} `{value}`: {reason}")]
    InvalidInput {
        /// What the value is, e.g. "cluster name".
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it is refused.
        reason: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// The provider cannot do what the spec asks (checked before anything is created).
    #[error("{provider} does not support {what}")]
    Unsupported {
        /// The provider.
        provider: ProviderKind,
        /// What was asked.
        what: String,
        /// How to get it anyway.
        hint: Option<String>,
    },
    /// The provider is not compiled into this build.
    #[error("provider `{kind}` is not available in this build of clusterctl")]
    ProviderUnavailable {
        /// The provider asked for.
        kind: ProviderKind,
        /// The providers this build has.
        built: Vec<ProviderKind>,
    },
    /// The Dask runtime a provider needs to start nodes is missing or broken.
    #[error("Dask runtime: {message}")]
    Runtime {
        /// What is wrong.
        message: String,
        /// How to fix it.
        hint: Option<String>,
    },
    /// No cluster of that name is known locally or found on the provider.
    #[error("no cluster named `{name}` was found{where_}")]
    NotFound {
        /// The cluster name.
        name: String,
        /// " on <provider> (<location>)" or empty.
        where_: String,
    },
    /// Another clusterctl process holds the cluster.
    #[error("cluster `{0}` is being changed by another clusterctl process")]
    Busy(String),
    /// A cluster of that name already exists.
    #[error("a cluster named `{name}` already exists on {provider}")]
    AlreadyExists {
        /// The cluster name.
        name: String,
        /// Where it lives.
        provider: ProviderKind,
    },
    /// Another `up` holds the cluster's name on the platform (it claimed it first, and it is
    /// running or its cluster is alive). Nothing was created by this `up`.
    #[error("the name `{name}` is taken on {provider}: {holder}")]
    NameTaken {
        /// The cluster name.
        name: String,
        /// Where.
        provider: ProviderKind,
        /// Who holds it: the other launch, and what shows it is alive.
        holder: String,
    },
    /// The platform rejected our credentials.
    #[error("{provider}: not authenticated: {message}")]
    Unauthenticated {
        /// The provider.
        provider: ProviderKind,
        /// The platform's message.
        message: String,
    },
    /// The identity lacks a permission.
    #[error("{provider}: permission denied for {action}: {message}")]
    PermissionDenied {
        /// The provider.
        provider: ProviderKind,
        /// The API action refused.
        action: String,
        /// The platform's message.
        message: String,
    },
    /// An account or project quota would be exceeded.
    #[error("{provider}: quota exceeded: {message}")]
    QuotaExceeded {
        /// The provider.
        provider: ProviderKind,
        /// The platform's message.
        message: String,
    },
    /// The platform has no capacity for what was asked in that place.
    #[error("{provider}: no capacity in {location}: {message}")]
    CapacityUnavailable {
        /// The provider.
        provider: ProviderKind,
        /// Region, zone or subnet.
        location: String,
        /// The platform's message.
        message: String,
    },
    /// A platform call failed for another reason (after retries, if it was retryable).
    #[error("{provider}: {operation} failed: {message}")]
    Provider {
        /// The provider.
        provider: ProviderKind,
        /// The operation that failed.
        operation: String,
        /// What the platform said.
        message: String,
    },
    /// The Dask scheduler did not answer as expected.
    #[error("scheduler: {operation}: {message}")]
    Scheduler {
        /// What was asked of it.
        operation: String,
        /// What went wrong.
        message: String,
    },
    /// A node stopped or failed before the cluster was ready.
    #[error("{role} node `{node}` failed: {reason}")]
    NodeFailed {
        /// Scheduler or worker.
        role: Role,
        /// Node id or name.
        node: String,
        /// Why it failed, as far as the platform tells.
        reason: String,
        /// The tail of its log, if any could be read.
        log_tail: String,
    },
    /// A wait ran past its deadline.
    #[error("timed out after {} while {phase}{}", humantime::format_duration(*after), detail_suffix(detail))]
    Timeout {
        /// What was being waited for.
        phase: String,
        /// The deadline that expired.
        after: Duration,
        /// What was seen last (e.g. "1 of 4 workers joined").
        detail: String,
        /// Log tails of the nodes, to show the user.
        log_tail: String,
    },
    /// Resources tagged for the cluster were still there after `down`.
    #[error("cluster `{name}` still has {} resource(s) after teardown: {}", resources.len(), resources.join(", "))]
    Leftovers {
        /// The cluster name.
        name: String,
        /// Descriptions of what is left.
        resources: Vec<String>,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The user interrupted the operation (Ctrl-C, SIGTERM).
    #[error("interrupted")]
    Interrupted,
    /// Removing a cluster did not finish (a rollback after `up` failed, `run`'s or `down`'s
    /// teardown): what is left, and the failure that led to the removal, if any. The local record
    /// is kept, so that `down` can finish the job.
    #[error(
        "{}cluster `{name}` was not removed completely ({why}); left behind: {}",
        original.as_ref().map(|o| format!("{o}; then ")).unwrap_or_default(),
        left.join(", ")
    )]
    LeftBehind {
        /// The cluster name.
        name: String,
        /// The flags that make `clusterctl down NAME` find it: `--provider P [--region R]`.
        locate: Vec<String>,
        /// The failure that started the removal (`up`'s error), if any.
        original: Option<Box<Error>>,
        /// Why the removal stopped.
        why: String,
        /// What is (or may be) left, one entry each.
        left: Vec<String>,
    },
    /// The state directory (records, locks, client keys) is not safe to trust.
    #[error(
        "{path} is {problem}; clusterctl will not trust the cluster records and keys kept there"
    )]
    UntrustedState {
        /// The directory.
        path: String,
        /// What is wrong with it.
        problem: String,
        /// The command that fixes it.
        fix: String,
    },
}

/// `word` as one shell word (quoted when it holds anything but plain characters).
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(
        what: &'static str,
        value: impl Into<String>,
        reason: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) -> Self {
        Error::InvalidInput {
            what,
            value: value.into(),
            reason: reason.into(),
            hint: hint.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A stable name for the kind of failure (`error.kind` in JSON output), so that a script
    /// can tell "no capacity" or "quota exceeded" from the rest without parsing the message.
    /// A removal that did not finish is `left_behind` whatever led to it (`original_kind`
    /// names that).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidInput { .. } => "invalid_input",
            Error::Unsupported { .. } => "unsupported",
            Error::ProviderUnavailable { .. } => "provider_unavailable",
            Error::Runtime { .. } => "runtime",
            Error::NotFound { .. } => "not_found",
            Error::Busy(_) => "busy",
            Error::AlreadyExists { .. } => "already_exists",
            Error::NameTaken { .. } => "name_taken",
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::PermissionDenied { .. } => "permission_denied",
            Error::QuotaExceeded { .. } => "quota_exceeded",
            Error::CapacityUnavailable { .. } => "capacity_unavailable",
            Error::Provider { .. } => "provider",
            Error::Scheduler { .. } => "scheduler",
            Error::NodeFailed { .. } => "node_failed",
            Error::Timeout { .. } => "timeout",
            Error::Leftovers { .. } => "leftovers",
            Error::Io { .. } => "io",
            Error::Interrupted => "interrupted",
            Error::LeftBehind { .. } => "left_behind",
            Error::UntrustedState { .. } => "untrusted_state",
        }
    }

    /// The kind of the failure that started an unfinished removal (`LeftBehind`), else
    /// [`Error::kind`].
    pub fn original_kind(&self) -> &'static str {
        match self {
            Error::LeftBehind {
                original: Some(o), ..
            } => o.original_kind(),
            e => e.kind(),
        }
    }

    /// True when the user can fix the cause before anything is created (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::InvalidInput { .. }
                | Error::Unsupported { .. }
                | Error::ProviderUnavailable { .. }
                | Error::AlreadyExists { .. }
                | Error::UntrustedState { .. }
        )
    }

    /// The process exit code for this error: 2 usage, 130 interrupted (with everything removed),
    /// 1 otherwise, including whenever something is left behind.
    pub fn exit_code(&self) -> u8 {
        match self {
            e if e.is_usage() => 2,
            Error::Interrupted => 130,
            _ => 1,
        }
    }

    /// `hint:` lines: what the user can do about it.
    pub fn hints(&self) -> Vec<String> {
        match self {
            Error::InvalidInput { hint, .. }
            | Error::Unsupported { hint, .. }
            | Error::Runtime { hint, .. } => hint.iter().cloned().collect(),
            Error::ProviderUnavailable { kind, built } => vec![format!(
                "providers in this build: {}; `{kind}` is not implemented yet or was left out (Cargo feature `{kind}`)",
                built
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            Error::NotFound { .. } => {
                vec!["`clusterctl list` shows the clusters clusterctl knows and finds".into()]
            }
            Error::Busy(name) => vec![format!(
                "wait for the other command to finish, or run `clusterctl status {name}`"
            )],
            Error::AlreadyExists { name, .. } => vec![format!(
                "choose another `--name`, or remove the old one with `clusterctl down {name}`"
            )],
            Error::NameTaken { name, .. } => vec![
                "nothing of the other cluster was touched, and this `up` created nothing".into(),
                format!(
                    "another `up` of `{name}` (a re-run or parallel CI job?) is running or made it: choose another `--name`, or `clusterctl down {name}` to remove that cluster"
                ),
            ],
            Error::Unauthenticated { provider, .. } => {
                vec![format!(
                    "check the credentials {provider} uses (see `clusterctl config show`)"
                )]
            }
            Error::PermissionDenied { action, .. } => {
                vec![format!("grant `{action}` to the identity clusterctl uses")]
            }
            Error::QuotaExceeded { .. } => {
                vec!["ask for a quota increase, or use fewer or smaller workers".into()]
            }
            Error::CapacityUnavailable { .. } => {
                vec!["try another region, zone or instance size".into()]
            }
            Error::Timeout { .. } => vec![
                "raise `--timeout`, or lower `--wait-workers` to accept a partial cluster".into(),
            ],
            Error::Leftovers { name, .. } => {
                vec![format!(
                    "run `clusterctl down {name}` again; it is safe to repeat"
                )]
            }
            Error::LeftBehind {
                name,
                locate,
                original,
                ..
            } => {
                let mut command = vec!["clusterctl".to_string(), "down".into(), name.clone()];
                command.extend(locate.iter().map(|f| shell_word(f)));
                let mut hints = vec![format!(
                    "`{}` finishes removing it (safe to repeat; `--timeout` gives it longer)",
                    command.join(" ")
                )];
                hints.extend(original.iter().flat_map(|o| o.hints()));
                hints
            }
            Error::UntrustedState { fix, .. } => vec![fix.clone()],
            _ => Vec::new(),
        }
    }

    /// What is known to be left of a cluster after this error (empty when nothing is).
    pub fn left_behind(&self) -> &[String] {
        match self {
            Error::LeftBehind { left, .. } => left,
            Error::Leftovers { resources, .. } => resources,
            _ => &[],
        }
    }

    /// Log tails carried by the error, to print after it.
    pub fn log_tail(&self) -> Option<&str> {
        match self {
            Error::LeftBehind {
                original: Some(o), ..
            } => o.log_tail(),
            Error::Timeout { log_tail, .. } | Error::NodeFailed { log_tail, .. }
                if !log_tail.trim().is_empty() =>
            {
                Some(log_tail)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable_and_an_unfinished_removal_names_its_cause() {
        let quota = Error::QuotaExceeded {
            provider: ProviderKind::Aws,
            message: "VcpuLimitExceeded".into(),
        };
        assert_eq!(quota.kind(), "quota_exceeded");
        let capacity = Error::CapacityUnavailable {
            provider: ProviderKind::Gcp,
            location: "us-central1-a".into(),
            message: "ZONE_RESOURCE_POOL_EXHAUSTED".into(),
        };
        assert_eq!(capacity.kind(), "capacity_unavailable");
        assert_eq!(capacity.original_kind(), "capacity_unavailable");
        let left = Error::LeftBehind {
            name: "c".into(),
            locate: vec![],
            original: Some(Box::new(capacity)),
            why: "a delete failed".into(),
            left: vec!["instance i-1".into()],
        };
        assert_eq!(left.kind(), "left_behind");
        assert_eq!(left.original_kind(), "capacity_unavailable");
        assert_eq!(Error::Interrupted.original_kind(), "interrupted");
    }
}

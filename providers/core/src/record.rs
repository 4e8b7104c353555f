//! Local records: one JSON file per cluster under the state directory, written atomically with
//! mode 0600, and a lock per cluster name so two concurrent `up --name X` cannot both proceed.
//!
//! A record is a convenience (endpoints, TLS paths, the spec for `scale`), never the source of
//! truth: `down`, `status` and `list` ask the provider, by tags.
//!
//! Layout: `<state>/clusters/<name>/record.json`, `<state>/clusters/<name>/tls/`,
//! `<state>/locks/<name>.lock` (lock files stay, so a lock is never deleted while held).

use std::{
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    error::{Error, Result},
    model::{ClusterName, ClusterSpec, Endpoints, ProviderKind},
    tls::{ClientTlsFiles, create_private_dir, write_private},
};

/// Version of the record format.
pub const RECORD_VERSION: u32 = 1;

/// Where a cluster is in its life, as far as this machine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// `up` is creating it, or returned with `--no-wait`.
    Created,
    /// It was ready when last checked.
    Ready,
}

/// The provider options a cluster was created with, so later commands build the same provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderConfig {
    /// Region, zone or location, when given.
    pub region: Option<String>,
    /// The Python interpreter of the local provider, when given.
    pub python: Option<PathBuf>,
    /// Provider-specific options (network, image, instance types…), as the provider defines
    /// them.
    #[serde(default)]
    pub options: serde_json::Value,
}

/// What this machine remembers about a cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// Format version.
    pub version: u32,
    /// The provider.
    pub provider: ProviderKind,
    /// The provider's location (region, context, scope).
    pub location: String,
    /// The options the provider was built with.
    #[serde(default)]
    pub provider_config: ProviderConfig,
    /// The spec it was created with.
    pub spec: ClusterSpec,
    /// Workers that must join for readiness (from `--wait-workers`).
    pub wait_workers: u32,
    /// Readiness deadline in seconds (for `wait`).
    pub timeout_secs: u64,
    /// How to reach it, once known.
    pub endpoints: Option<Endpoints>,
    /// Client TLS files, when TLS is on.
    pub tls: Option<ClientTlsFiles>,
    /// Last known state.
    pub state: RecordState,
}

impl ClusterRecord {
    /// The cluster's name.
    pub fn name(&self) -> &ClusterName {
        &self.spec.name
    }
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct RecordStore {
    root: PathBuf,
}

/// A held lock on a cluster name; released on drop.
#[derive(Debug)]
pub struct ClusterLock {
    _file: fs::File,
}

impl RecordStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RecordStore { root: root.into() }
    }

    /// The state directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of one cluster's record and client files.
    pub fn cluster_dir(&self, name: &ClusterName) -> PathBuf {
        self.root.join("clusters").join(name.as_str())
    }

    fn record_path(&self, name: &ClusterName) -> PathBuf {
        self.cluster_dir(name).join("record.json")
    }

    /// Take the lock of `name`, or fail with [`Error::Busy`] if another process holds it.
    pub fn lock(&self, name: &ClusterName) -> Result<ClusterLock> {
        let dir = self.root.join("locks");
        create_private_dir(&dir)?;
        let path = dir.join(format!("{name}.lock"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(ClusterLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Busy(name.to_string())),
            Err(fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
    }

    /// The record of `name`, if this machine has one.
    pub fn load(&self, name: &ClusterName) -> Result<Option<ClusterRecord>> {
        let path = self.record_path(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::io(
                    format!("reading {}", path.display()),
                    std::io::Error::other(e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// Write `record` atomically with mode 0600.
    pub fn save(&self, record: &ClusterRecord) -> Result<()> {
        let dir = self.cluster_dir(record.name());
        create_private_dir(&dir)?;
        let json = serde_json::to_vec_pretty(record).expect("records serialize");
        write_private(&self.record_path(record.name()), &json)
    }

    /// Every record on this machine, sorted by name. Unreadable records are skipped.
    pub fn list(&self) -> Result<Vec<ClusterRecord>> {
        let dir = self.root.join("clusters");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| ClusterName::new(n).ok())
            else {
                continue;
            };
            if let Ok(Some(r)) = self.load(&name) {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.name().cmp(b.name()));
        Ok(out)
    }

    /// Forget `name`: remove its record and client files.
    pub fn remove(&self, name: &ClusterName) -> Result<()> {
        let dir = self.cluster_dir(name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record(name: &str) -> ClusterRecord {
        let mut spec = crate::bootstrap::tests::spec();
        spec.name = ClusterName::new(name).unwrap();
        ClusterRecord {
            version: RECORD_VERSION,
            provider: ProviderKind::Local,
            location: "here".into(),
            provider_config: ProviderConfig::default(),
            spec,
            wait_workers: 2,
            timeout_secs: 60,
            endpoints: None,
            tls: None,
            state: RecordState::Created,
        }
    }

    #[test]
    fn save_load_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path());
        store.save(&record("b")).unwrap();
        store.save(&record("a")).unwrap();
        let path = store
            .cluster_dir(&ClusterName::new("a").unwrap())
            .join("record.json");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<String> = store
            .list()
            .unwrap()
            .iter()
            .map(|r| r.name().to_string())
            .collect();
        assert_eq!(names, ["a", "b"]);
        store.remove(&ClusterName::new("a").unwrap()).unwrap();
        store.remove(&ClusterName::new("a").unwrap()).unwrap();
        assert!(
            store
                .load(&ClusterName::new("a").unwrap())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::new(dir.path());
        let name = ClusterName::new("x").unwrap();
        let held = store.lock(&name).unwrap();
        assert!(matches!(store.lock(&name), Err(Error::Busy(_))));
        drop(held);
        store.lock(&name).unwrap();
    }
}

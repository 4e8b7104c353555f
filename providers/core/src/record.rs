//! Local records: one JSON file per cluster under the state directory, written atomically with
//! mode 0600, and a lock per cluster name so two concurrent `up --name X` cannot both proceed.
//!
//! A record is a convenience (endpoints, TLS paths, the spec for `scale`), never the source of
//! truth: `down`, `status` and `list` ask the provider, by tags.
//!
//! Layout: `<state>/clusters/<name>/record.json`, `<state>/clusters/<name>/tls/`,
//! `<state>/locks/<name>.lock` (lock files stay, so a lock is never deleted while held).
//!
//! A record decides where `down` acts and which keys a client uses, so the directories are
//! checked before they are read: owned by the user, writable by nobody else
//! ([`check_trusted_dir`]).

use std::{
    fs,
    os::unix::fs::MetadataExt,
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
    /// The user whose directories are trusted, when checked.
    owner: Option<u32>,
}

/// Refuse `dir` (when it exists) unless user `uid` owns it and neither its group nor others
/// may write to it: whoever can write there can make `down` act on another cluster or hand a
/// client other keys.
pub fn check_trusted_dir(dir: &Path, uid: u32) -> Result<()> {
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("inspecting {}", dir.display()), e)),
    };
    let shown = dir.display().to_string();
    if meta.uid() != uid {
        return Err(Error::UntrustedState {
            problem: format!("owned by uid {}, not by you (uid {uid})", meta.uid()),
            fix: format!(
                "`chown -R {uid} {shown}` (as root), or point CLUSTERCTL_STATE_DIR at a directory of your own"
            ),
            path: shown,
        });
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "its group and everyone",
            (true, false) => "its group",
            _ => "everyone",
        };
        return Err(Error::UntrustedState {
            problem: format!("writable by {who} (mode {mode:o})"),
            fix: format!("`chmod go-w {shown}`"),
            path: shown,
        });
    }
    Ok(())
}

/// A held lock on a cluster name; released on drop.
#[derive(Debug)]
pub struct ClusterLock {
    _file: fs::File,
}

impl RecordStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RecordStore {
            root: root.into(),
            owner: None,
        }
    }

    /// Check, before anything is read or written, that the state directory and the cluster
    /// directories belong to user `uid` and that nobody else may write to them.
    pub fn owned_by(mut self, uid: u32) -> Self {
        self.owner = Some(uid);
        self
    }

    /// The trust check of the state directory, of `sub` in it, and of the directory of `name`.
    fn check(&self, sub: &str, name: Option<&ClusterName>) -> Result<()> {
        let Some(uid) = self.owner else {
            return Ok(());
        };
        check_trusted_dir(&self.root, uid)?;
        check_trusted_dir(&self.root.join(sub), uid)?;
        match name {
            Some(n) => check_trusted_dir(&self.cluster_dir(n), uid),
            None => Ok(()),
        }
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
        self.check("locks", None)?;
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
        self.check("clusters", Some(name))?;
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
        self.check("clusters", Some(record.name()))?;
        let dir = self.cluster_dir(record.name());
        create_private_dir(&dir)?;
        let json = serde_json::to_vec_pretty(record).expect("records serialize");
        write_private(&self.record_path(record.name()), &json)
    }

    /// Every record on this machine, sorted by name. Unreadable records are skipped; an
    /// untrusted directory is an error.
    pub fn list(&self) -> Result<Vec<ClusterRecord>> {
        self.check("clusters", None)?;
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
            match self.load(&name) {
                Ok(Some(r)) => out.push(r),
                Err(e @ Error::UntrustedState { .. }) => return Err(e),
                _ => {}
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
    fn untrusted_directories_are_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let uid = fs::metadata(dir.path()).unwrap().uid();
        let root = dir.path().join("state");
        let store = RecordStore::new(&root).owned_by(uid);
        store.save(&record("a")).unwrap();
        let a = ClusterName::new("a").unwrap();
        assert!(store.load(&a).unwrap().is_some());

        // A cluster directory others may write to.
        let cluster = store.cluster_dir(&a);
        fs::set_permissions(&cluster, fs::Permissions::from_mode(0o777)).unwrap();
        for e in [store.load(&a).unwrap_err(), store.list().unwrap_err()] {
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(
                e.to_string().contains(&cluster.display().to_string()),
                "{e}"
            );
            assert!(e.to_string().contains("writable by its group and everyone"));
            assert_eq!(e.hints(), [format!("`chmod go-w {}`", cluster.display())]);
        }
        fs::set_permissions(&cluster, fs::Permissions::from_mode(0o700)).unwrap();

        // The state directory writable by its group.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o770)).unwrap();
        let e = store.lock(&a).unwrap_err();
        assert!(
            e.to_string().contains("writable by its group (mode 770)"),
            "{e}"
        );
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
        store.lock(&a).unwrap();

        // Owned by someone else (seen from another uid).
        let e = RecordStore::new(&root)
            .owned_by(uid + 1)
            .load(&a)
            .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().contains(&format!("owned by uid {uid}")),
            "{e}"
        );
        assert!(e.hints()[0].contains(&format!("chown -R {}", uid + 1)));
        // Without the check (the default), nothing is refused.
        fs::set_permissions(&root, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(RecordStore::new(&root).load(&a).unwrap().is_some());
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

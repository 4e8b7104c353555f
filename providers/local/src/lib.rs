//! The `local` provider: a real Dask cluster as processes on this machine, bound to loopback.
//!
//! Each node is a `dask scheduler` or `dask worker` process in a process group of its own,
//! detached from the terminal, so `up` returns while the cluster runs and `down` (from any
//! shell) stops it. Nodes are forked by a [`launcher`] that imported Dask once (exec of `dask`
//! per node when that is not possible). Nodes are found again by the tags in their environment (see [`process`]),
//! scoped to the state directory, so `down` works without the record. Files of a cluster (boot
//! files with TLS keys, logs) live in `<state>/local/<cluster>/` and are removed by `down`.

pub mod launcher;
pub mod pip;
pub mod process;
pub mod runtime;

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use clusterctl_core::{
    Error, Result,
    bootstrap::{BootIntent, BootLayout, scheduler_intent, worker_intent},
    model::{
        ClusterName, ClusterSummary, Endpoints, Node, NodeState, ProviderKind, Role,
        summarize_with_claims,
    },
    provider::{
        ClusterProvider, LaunchContext, NodeLog, Plan, RenderedBootstrap, SchedulerLaunch,
        WorkerBatch,
    },
    tags,
    tls::{create_private_dir, write_private},
    wait::Interval,
};
use launcher::{ForkRequest, Launcher};
use nix::sys::signal::Signal;
use process::{SCOPE_ENV, TAGS_ENV, TaggedProcess};
use runtime::{Resolution, Runtime, RuntimeSource};

/// In a cluster's directory: its tags, the claim `gc` finds it by.
const CLAIM_FILE: &str = "cluster.json";

/// Nodes still running this long after SIGTERM get SIGKILL.
const KILL_AFTER: Duration = Duration::from_secs(10);

/// Tag holding the scheduler address (on the scheduler node).
const TAG_ADDRESS: &str = "scheduler-address";
/// Tag holding the dashboard base URL (on the scheduler node).
const TAG_DASHBOARD: &str = "dashboard-url";

/// Runs clusters as local processes.
#[derive(Debug)]
pub struct LocalProvider {
    state_dir: PathBuf,
    cache_dir: PathBuf,
    source: RuntimeSource,
    dask_version: String,
    runtime: tokio::sync::OnceCell<Runtime>,
    /// First SIGTERM per pid, to escalate to SIGKILL.
    terminating: Mutex<HashMap<i32, Instant>>,
    /// Children spawned by this process, reaped so they do not linger as zombies.
    children: Mutex<Vec<std::process::Child>>,
    /// The launcher forking this process's nodes: `Some(None)` once it failed (exec from then).
    launcher: tokio::sync::Mutex<Option<Option<Launcher>>>,
    /// `CLUSTERCTL_API_LOG`: the local platform's "API" is the process table, so each scan of
    /// it is logged (`proc:scan`), as the cloud providers log their requests, for benchmarks.
    api_log: Option<clusterctl_core::api_log::ApiLog>,
}

impl LocalProvider {
    /// A provider scoped to `state_dir`, caching the managed runtime under `cache_dir`.
    pub fn new(
        state_dir: PathBuf,
        cache_dir: PathBuf,
        source: RuntimeSource,
        dask_version: String,
    ) -> Self {
        LocalProvider {
            state_dir,
            cache_dir,
            source,
            dask_version,
            runtime: tokio::sync::OnceCell::new(),
            terminating: Mutex::new(HashMap::new()),
            children: Mutex::new(Vec::new()),
            launcher: tokio::sync::Mutex::new(None),
            api_log: clusterctl_core::api_log::ApiLog::from_env(),
        }
    }

    fn scope(&self) -> String {
        self.state_dir.display().to_string()
    }

    fn cluster_dir(&self, cluster: &ClusterName) -> PathBuf {
        self.state_dir.join("local").join(cluster.as_str())
    }

    async fn runtime(
        &self,
        progress: &dyn clusterctl_core::lifecycle::Progress,
    ) -> Result<&Runtime> {
        self.runtime
            .get_or_try_init(|| {
                runtime::resolve(&self.source, &self.dask_version, &self.cache_dir, progress)
            })
            .await
    }

    fn layout(
        &self,
        runtime: &Runtime,
        files_root: PathBuf,
        scheduler_port: u16,
        dashboard_port: u16,
    ) -> BootLayout {
        BootLayout {
            dask: runtime.dask.clone(),
            files_root: files_root.display().to_string(),
            bind_host: "127.0.0.1".into(),
            scheduler_port,
            dashboard_port,
            // One process per worker: boot on a small machine is CPU-bound, and a nanny would
            // double the interpreters that start (see docs/benchmarks.md).
            nanny: false,
        }
    }

    /// Start the launcher for `ctx`'s cluster unless one runs (or failed) already: it imports
    /// Dask while the CLI does the rest of its work.
    async fn start_launcher(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        let mut slot = self.launcher.lock().await;
        if slot.is_some() {
            return Ok(());
        }
        let runtime = self.runtime(ctx.progress).await?;
        let dir = self.cluster_dir(&ctx.spec.name);
        create_private_dir(&dir)?;
        let started = match runtime.python() {
            Some(python) => Launcher::spawn(
                &python,
                &self.scope(),
                &tags::cluster_tags(ctx.spec),
                &dir.join("launcher.log"),
                // The cluster's own packages (`--pip`), on the path of every node it forks.
                (!ctx.spec.pip.is_empty())
                    .then(|| pip::site_dir(&dir))
                    .as_deref(),
            )
            .map_err(|e| e.to_string()),
            None => Err(format!(
                "no Python interpreter known for `{}`",
                runtime.dask.join(" ")
            )),
        };
        *slot = Some(match started {
            Ok(l) => Some(l),
            Err(why) => {
                ctx.progress
                    .note(&format!("starting each node with exec: {why}"));
                None
            }
        });
        Ok(())
    }

    /// Start a node by forking it from the launcher; `None` when the launcher cannot (then it is
    /// stopped, and every later node is started with exec).
    async fn fork(
        &self,
        ctx: &LaunchContext<'_>,
        runtime: &Runtime,
        intent: &BootIntent,
        env: &BTreeMap<String, String>,
        log: &std::path::Path,
        tags: &str,
    ) -> Result<Option<i32>> {
        let Some(args) = intent
            .argv
            .strip_prefix(runtime.dask.as_slice())
            .and_then(|rest| rest.split_first())
            .filter(|(command, _)| command.as_str() == intent.role.as_str())
            .map(|(_, args)| args)
        else {
            return Ok(None);
        };
        // Dask reads its `DASK_*` settings again in the child, and `CLUSTERCTL_*` are read at
        // run time; anything else (a user's `--env PYTHONPATH=…`, a library's variable read
        // when it loads) might have been read by the launcher's imports already: exec.
        if !env
            .keys()
            .all(|k| k.starts_with("DASK_") || k.starts_with("CLUSTERCTL_"))
        {
            return Ok(None);
        }
        self.start_launcher(ctx).await?;
        let mut slot = self.launcher.lock().await;
        let Some(Some(launcher)) = slot.as_mut() else {
            return Ok(None);
        };
        let request = ForkRequest {
            role: intent.role,
            args,
            env,
            log,
            tags,
        };
        match launcher.fork(&request).await {
            Ok(pid) => Ok(Some(pid)),
            Err(e) => {
                if let Some(Some(l)) = slot.replace(None) {
                    l.kill();
                }
                ctx.progress
                    .note(&format!("starting each node with exec from now on: {e}"));
                Ok(None)
            }
        }
    }

    /// Write the intent's files and start it as a node.
    async fn start(
        &self,
        runtime: &Runtime,
        ctx: &LaunchContext<'_>,
        intent: &BootIntent,
        name: &str,
        extra_tags: &[(&str, String)],
    ) -> Result<Node> {
        let cluster_dir = self.cluster_dir(&ctx.spec.name);
        let logs = cluster_dir.join("logs");
        create_private_dir(&logs)?;
        for file in &intent.files {
            let path = PathBuf::from(&file.path);
            if let Some(parent) = path.parent() {
                create_private_dir(parent)?;
            }
            write_private(&path, file.contents.as_bytes())?;
        }
        let mut node_tags = tags::node_tags(ctx.spec, intent.role, name);
        for (k, v) in extra_tags {
            node_tags.insert((*k).into(), v.clone());
        }
        let mut env = intent.env.clone();
        // The image's installer is not here: the packages `bootstrap` installed for this
        // cluster come first on the path, without touching the shared runtime.
        env.remove(clusterctl_core::bootstrap::PIP_ENV);
        if !ctx.spec.pip.is_empty() {
            let site = pip::site_dir(&cluster_dir).display().to_string();
            let path = match env.get("PYTHONPATH") {
                Some(p) if !p.is_empty() => format!("{site}:{p}"),
                _ => site,
            };
            env.insert("PYTHONPATH".into(), path);
        }
        env.insert(SCOPE_ENV.into(), self.scope());
        env.insert(
            TAGS_ENV.into(),
            serde_json::to_string(&node_tags).expect("tags serialize"),
        );
        let log = logs.join(format!("{name}.log"));
        let tags_json = serde_json::to_string(&node_tags).expect("tags serialize");
        // The launcher was started with the cluster's packages on its path already.
        let mut fork_env = intent.env.clone();
        fork_env.remove(clusterctl_core::bootstrap::PIP_ENV);
        let pid = match self
            .fork(ctx, runtime, intent, &fork_env, &log, &tags_json)
            .await?
        {
            Some(pid) => pid,
            None => {
                let child = process::spawn_node(&intent.argv, &env, &log)?;
                let pid = child.id() as i32;
                self.children.lock().expect("children lock").push(child);
                pid
            }
        };
        Ok(Node {
            id: pid.to_string(),
            name: name.into(),
            role: intent.role,
            state: NodeState::Running,
            private_ip: Some("127.0.0.1".into()),
            public_ip: None,
            created_at: Some(clusterctl_core::model::now_epoch()),
            tags: node_tags,
        })
    }

    /// Refuse to create a cluster whose nodes are running already.
    fn ensure_absent(&self, cluster: &ClusterName) -> Result<()> {
        if self.processes(Some(cluster)).iter().any(|p| p.leader) {
            return Err(Error::AlreadyExists {
                name: cluster.to_string(),
                provider: ProviderKind::Local,
            });
        }
        Ok(())
    }

    fn reap(&self) {
        self.children
            .lock()
            .expect("children lock")
            .retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }

    fn processes(&self, cluster: Option<&ClusterName>) -> Vec<TaggedProcess> {
        self.reap();
        if let Some(log) = &self.api_log {
            log.record("proc:scan");
        }
        process::scan(&self.scope())
            .into_iter()
            .filter(|p| !p.zombie)
            .filter(|p| {
                cluster.is_none_or(|c| {
                    p.tags.get(tags::CLUSTER).map(String::as_str) == Some(c.as_str())
                })
            })
            .collect()
    }
}

fn node_of(p: &TaggedProcess) -> Option<Node> {
    Some(Node {
        id: p.pid.to_string(),
        name: p.tags.get(tags::NODE)?.clone(),
        role: p.tags.get(tags::ROLE)?.parse().ok()?,
        state: NodeState::Running,
        private_ip: Some("127.0.0.1".into()),
        public_ip: None,
        created_at: None,
        tags: p.tags.clone(),
    })
}

fn render_command(intent: &BootIntent) -> String {
    let mut text = String::new();
    for (k, v) in &intent.env {
        text.push_str(&format!("{k}={v:?} \\\n"));
    }
    text.push_str(&intent.argv.join(" "));
    for (path, shown) in intent.redacted_files() {
        text.push_str(&format!("\n# file {path}: {shown}"));
    }
    text
}

#[async_trait]
impl ClusterProvider for LocalProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Local
    }

    fn location(&self) -> String {
        "localhost".into()
    }

    /// The process table is local and cheap to read: poll it quickly.
    fn poll_interval(&self) -> Interval {
        Interval::FAST
    }

    /// The process table lists a node from its fork until it exits: a missing node is dead.
    /// (Not authoritative for `down`: nothing removes a node a racing launch forks later.)
    fn listing_is_consistent(&self) -> bool {
        true
    }

    async fn plan(&self, ctx: &LaunchContext<'_>) -> Result<Plan> {
        let mut plan = Plan::default();
        let runtime =
            match runtime::inspect(&self.source, &self.dask_version, &self.cache_dir).await? {
                Resolution::Ready(r) => r,
                Resolution::Install(dir) => {
                    plan.notes.push(format!(
                        "dask {} will be installed into {} first (once)",
                        self.dask_version,
                        dir.display()
                    ));
                    Runtime {
                        dask: vec![dir.join("bin/dask").display().to_string()],
                        description: String::new(),
                    }
                }
            };
        if !runtime.description.is_empty() {
            plan.notes
                .push(format!("Dask runtime: {}", runtime.description));
        }
        self.ensure_absent(&ctx.spec.name)?;
        let dir = self.cluster_dir(&ctx.spec.name);
        plan.resources
            .push(format!("directory {} (boot files and logs)", dir.display()));
        plan.resources
            .push("process: dask scheduler on 127.0.0.1".into());
        plan.resources.push(format!(
            "processes: {} dask worker(s) on 127.0.0.1",
            ctx.spec.workers
        ));
        let layout = self.layout(&runtime, dir.join("scheduler"), 8786, 8787);
        let s = scheduler_intent(ctx.spec, &layout, ctx.tls);
        plan.bootstraps.push(RenderedBootstrap {
            role: Role::Scheduler,
            format: "command".into(),
            text: render_command(&s),
        });
        let layout = self.layout(&runtime, dir.join("worker-0"), 8786, 8787);
        let address = format!(
            "{}://127.0.0.1:<port>",
            clusterctl_core::bootstrap::scheme(ctx.spec)
        );
        let w = worker_intent(ctx.spec, &layout, ctx.tls, &address, Some("worker-0"));
        plan.bootstraps.push(RenderedBootstrap {
            role: Role::Worker,
            format: "command".into(),
            text: render_command(&w),
        });
        plan.notes
            .push("ports are chosen free on 127.0.0.1 at launch".into());
        if !ctx.spec.pip.is_empty() {
            plan.notes.push(format!(
                "pip installs {} into {} (on the nodes' PYTHONPATH; dependencies pinned to the runtime's versions)",
                ctx.spec.pip.join(" "),
                pip::site_dir(&dir).display()
            ));
        }
        Ok(plan)
    }

    async fn doctor(&self, ctx: &LaunchContext<'_>) -> Vec<clusterctl_core::doctor::Check> {
        use clusterctl_core::doctor::{Check, plan_check};
        let name = "Dask runtime";
        let runtime =
            match runtime::inspect(&self.source, &self.dask_version, &self.cache_dir).await {
                Ok(Resolution::Ready(r)) => Check::pass(name, r.description),
                Ok(Resolution::Install(dir)) => Check::pass(
                    name,
                    format!(
                        "none yet: the first `up` installs dask {} into {}",
                        self.dask_version,
                        dir.display()
                    ),
                ),
                // The plan would stop at the same place: one line says it.
                Err(e) => return vec![Check::from_error(name, &e)],
            };
        let (plan, _) = plan_check(self, ctx).await;
        vec![runtime, plan]
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        self.ensure_absent(&ctx.spec.name)?;
        let runtime = self.runtime(ctx.progress).await?;
        let dir = self.cluster_dir(&ctx.spec.name);
        create_private_dir(&dir)?;
        // The directory is the cluster's claim here: its tags (expiry included) let `gc` find
        // it once its processes ended at the TTL; `cleanup` removes it last.
        let tags = serde_json::to_vec_pretty(&clusterctl_core::tags::cluster_tags(ctx.spec))
            .expect("tags serialize");
        write_private(&dir.join(CLAIM_FILE), &tags)?;
        if !ctx.spec.pip.is_empty() {
            ctx.progress.note(&format!(
                "installing {} for the cluster's nodes",
                ctx.spec.pip.join(" ")
            ));
            pip::install(runtime, &dir, &ctx.spec.pip).await?;
        }
        // Dask's import in the launcher overlaps the rest of `up`'s preparation.
        self.start_launcher(ctx).await
    }

    async fn launch_scheduler(&self, ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        let runtime = self.runtime(ctx.progress).await?.clone();
        let (port, dport) = (process::free_port()?, process::free_port()?);
        let layout = self.layout(
            &runtime,
            self.cluster_dir(&ctx.spec.name).join("scheduler"),
            port,
            dport,
        );
        let intent = scheduler_intent(ctx.spec, &layout, ctx.tls);
        let address = format!(
            "{}://127.0.0.1:{port}",
            clusterctl_core::bootstrap::scheme(ctx.spec)
        );
        let dashboard = format!("http://127.0.0.1:{dport}");
        let node = self
            .start(
                &runtime,
                ctx,
                &intent,
                "scheduler",
                &[(TAG_ADDRESS, address.clone()), (TAG_DASHBOARD, dashboard)],
            )
            .await?;
        Ok(SchedulerLaunch {
            node,
            address: Some(address),
        })
    }

    async fn worker_facing_address(
        &self,
        _ctx: &LaunchContext<'_>,
        scheduler: &Node,
    ) -> Result<Option<String>> {
        Ok(scheduler.tags.get(TAG_ADDRESS).cloned())
    }

    async fn launch_workers(
        &self,
        ctx: &LaunchContext<'_>,
        scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let runtime = self.runtime(ctx.progress).await?.clone();
        let mut nodes = Vec::new();
        for name in batch.names() {
            let layout = self.layout(&runtime, self.cluster_dir(&ctx.spec.name).join(&name), 0, 0);
            let intent = worker_intent(ctx.spec, &layout, ctx.tls, scheduler_address, Some(&name));
            nodes.push(self.start(&runtime, ctx, &intent, &name, &[]).await?);
        }
        Ok(nodes)
    }

    async fn list_clusters(&self) -> Result<Vec<ClusterSummary>> {
        let nodes = self.list_nodes(None).await?;
        let mut claims = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.state_dir.join("local")) {
            for e in entries.flatten() {
                let tags = std::fs::read(e.path().join(CLAIM_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<BTreeMap<String, String>>(&b).ok());
                claims.extend(tags);
            }
        }
        Ok(summarize_with_claims(nodes, claims))
    }

    async fn list_nodes(&self, cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        Ok(self
            .processes(cluster)
            .iter()
            .filter(|p| p.leader)
            .filter_map(node_of)
            .collect())
    }

    async fn endpoints(&self, scheduler: &Node, _private: bool) -> Result<Endpoints> {
        let get = |k: &str| {
            scheduler
                .tags
                .get(k)
                .cloned()
                .ok_or_else(|| Error::Scheduler {
                    operation: "endpoints".into(),
                    message: format!("scheduler process {} has no `{k}` tag", scheduler.id),
                })
        };
        Ok(Endpoints {
            scheduler_address: get(TAG_ADDRESS)?,
            dashboard_url: format!("{}/status", get(TAG_DASHBOARD)?),
        })
    }

    async fn terminate_nodes(&self, cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        // Only groups that are nodes of this cluster now: a node known from its launch may have
        // exited since, and its pid been given to another process.
        let alive: Vec<i32> = self
            .processes(Some(cluster))
            .iter()
            .filter(|p| p.leader)
            .map(|p| p.pid)
            .collect();
        let mut terminating = self.terminating.lock().expect("terminating lock");
        for node in nodes {
            let Ok(pid) = node.id.parse::<i32>() else {
                continue;
            };
            if !alive.contains(&pid) {
                continue;
            }
            let first = *terminating.entry(pid).or_insert_with(Instant::now);
            let signal = if first.elapsed() >= KILL_AFTER {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            process::signal_group(pid, signal)?;
        }
        Ok(())
    }

    async fn cleanup(&self, cluster: &ClusterName) -> Result<Vec<String>> {
        // Children whose group leader is gone (a worker process after its nanny died).
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut stragglers = self.processes(Some(cluster));
        while !stragglers.is_empty() && Instant::now() < deadline {
            for p in &stragglers {
                process::signal_process(p.pid, Signal::SIGKILL)?;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            stragglers = self.processes(Some(cluster));
        }
        let mut left: Vec<String> = stragglers
            .iter()
            .map(|p| format!("process {}", p.pid))
            .collect();
        let dir = self.cluster_dir(cluster);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => left.push(format!("directory {} ({e})", dir.display())),
        }
        Ok(left)
    }

    async fn logs(
        &self,
        cluster: &ClusterName,
        role: Option<Role>,
        tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>> {
        let dir = self.cluster_dir(cluster).join("logs");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut logs: BTreeMap<(Role, u32, String), NodeLog> = BTreeMap::new();
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().to_string();
            let Some(node) = file.strip_suffix(".log") else {
                continue;
            };
            let node_role = if node == "scheduler" {
                Role::Scheduler
            } else {
                Role::Worker
            };
            if role.is_some_and(|r| r != node_role) {
                continue;
            }
            let index = clusterctl_core::lifecycle::worker_index(node).unwrap_or(0);
            logs.insert(
                (node_role, index, node.to_string()),
                NodeLog {
                    node: node.to_string(),
                    role: node_role,
                    lines: process::tail(&entry.path(), tail),
                },
            );
        }
        Ok(logs
            .into_values()
            .take(max_nodes.unwrap_or(usize::MAX))
            .collect())
    }
}

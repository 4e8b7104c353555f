//! An in-memory [`ClusterProvider`] for the lifecycle's unit tests: nodes exist on the "platform"
//! as soon as a launch call starts, but its listing shows them only after a lag (as an
//! eventually consistent cloud API does), and it can be declared authoritative; terminated nodes
//! stay `Stopping` for a while (left out of `list_nodes_to_stop`); calls can be slowed, made to
//! fail, or hang.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::{
    error::{Error, Result},
    model::{ClusterName, Endpoints, Node, NodeState, ProviderKind, Role},
    provider::{ClusterProvider, LaunchContext, NodeLog, Plan, SchedulerLaunch, WorkerBatch},
    wait::Interval,
};

/// A node on the fake platform.
#[derive(Debug, Clone)]
pub(crate) struct FakeNode {
    pub node: Node,
    /// When listings start to show it.
    pub visible_at: Instant,
    /// When it was terminated.
    pub terminated_at: Option<Instant>,
    /// Terminate calls it has had.
    pub asked: u32,
}

/// The fake platform's state and behaviour.
#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub nodes: Vec<FakeNode>,
    /// How long a new node stays out of listings.
    pub lag: Duration,
    /// How long `launch_workers` takes to return (its nodes exist from the start).
    pub launch_delay: Duration,
    /// `launch_workers` fails.
    pub fail_workers: bool,
    /// `bootstrap` finds the name held by another launch (`Error::NameTaken`).
    pub name_taken: bool,
    /// A node ignores the first terminate call (a process that outlives SIGTERM).
    pub stubborn: bool,
    /// How long a terminated node is listed as stopping.
    pub stop_after: Duration,
    /// `cleanup` never returns.
    pub cleanup_hangs: bool,
    /// What `cleanup` reports as left.
    pub leftovers: Vec<String>,
    /// `logs` never returns.
    pub logs_hang: bool,
    /// The listing is authoritative (and so consistent): a missing node is gone.
    pub authoritative: bool,
    /// Calls of `list_nodes`.
    pub lists: usize,
    /// Calls of `list_nodes_to_stop` (which leaves out stopping nodes, as Fargate's listing of
    /// tasks desired RUNNING does).
    pub stop_lists: usize,
    /// `node_states` looks nodes up by id (else it answers `None`, as most platforms do).
    pub by_id: bool,
    /// Calls of `node_states` that looked nodes up.
    pub lookups: usize,
    /// Calls of `logs`: role and node limit.
    pub log_calls: Vec<(Option<Role>, Option<usize>)>,
}

/// The in-memory provider.
#[derive(Debug)]
pub(crate) struct Fake {
    pub state: Mutex<FakeState>,
    interval: Interval,
}

/// A quick interval for tests.
pub(crate) const QUICK: Interval = Interval {
    first: Duration::from_millis(10),
    max: Duration::from_millis(50),
};

impl Fake {
    pub fn new(interval: Interval) -> Self {
        Fake {
            state: Mutex::new(FakeState::default()),
            interval,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.state.lock().unwrap());
    }

    pub fn get<T>(&self, f: impl FnOnce(&FakeState) -> T) -> T {
        f(&self.state.lock().unwrap())
    }

    /// Ids of the nodes the platform still runs (whatever its listing shows).
    pub fn running(&self) -> Vec<String> {
        self.get(|s| {
            s.nodes
                .iter()
                .filter(|n| n.terminated_at.is_none())
                .map(|n| n.node.id.clone())
                .collect()
        })
    }

    /// Start a node on the platform.
    pub fn add(&self, role: Role, name: &str) -> Node {
        let mut s = self.state.lock().unwrap();
        let node = Node {
            id: format!("id-{}", s.nodes.len()),
            name: name.into(),
            role,
            state: NodeState::Running,
            private_ip: Some("127.0.0.1".into()),
            public_ip: None,
            created_at: Some(crate::model::now_epoch()),
            tags: Default::default(),
        };
        let visible_at = Instant::now() + s.lag;
        s.nodes.push(FakeNode {
            node: node.clone(),
            visible_at,
            terminated_at: None,
            asked: 0,
        });
        node
    }
}

#[async_trait]
impl ClusterProvider for Fake {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Aws
    }

    fn location(&self) -> String {
        "eu-west-1".into()
    }

    fn poll_interval(&self) -> Interval {
        self.interval
    }

    fn listing_is_authoritative(&self) -> bool {
        self.get(|s| s.authoritative)
    }

    async fn plan(&self, _ctx: &LaunchContext<'_>) -> Result<Plan> {
        Ok(Plan::default())
    }

    async fn bootstrap(&self, ctx: &LaunchContext<'_>) -> Result<()> {
        if self.get(|s| s.name_taken) {
            return Err(Error::NameTaken {
                name: ctx.spec.name.to_string(),
                provider: ProviderKind::Aws,
                holder: "launch 1-00000000".into(),
            });
        }
        Ok(())
    }

    async fn launch_scheduler(&self, _ctx: &LaunchContext<'_>) -> Result<SchedulerLaunch> {
        Ok(SchedulerLaunch {
            node: self.add(Role::Scheduler, "scheduler"),
            address: Some("tcp://127.0.0.1:9".into()),
        })
    }

    async fn launch_workers(
        &self,
        _ctx: &LaunchContext<'_>,
        _scheduler_address: &str,
        batch: WorkerBatch,
    ) -> Result<Vec<Node>> {
        let (fail, delay) = self.get(|s| (s.fail_workers, s.launch_delay));
        if fail {
            return Err(Error::QuotaExceeded {
                provider: ProviderKind::Aws,
                message: "no more instances".into(),
            });
        }
        let nodes: Vec<Node> = batch
            .names()
            .iter()
            .map(|n| self.add(Role::Worker, n))
            .collect();
        tokio::time::sleep(delay).await;
        Ok(nodes)
    }

    async fn list_nodes(&self, _cluster: Option<&ClusterName>) -> Result<Vec<Node>> {
        let mut s = self.state.lock().unwrap();
        s.lists += 1;
        let now = Instant::now();
        let stop_after = s.stop_after;
        Ok(s.nodes
            .iter()
            .filter(|n| n.visible_at <= now)
            .filter_map(|n| match n.terminated_at {
                None => Some(n.node.clone()),
                Some(t) if now.duration_since(t) < stop_after => Some(Node {
                    state: NodeState::Stopping,
                    ..n.node.clone()
                }),
                Some(_) => None,
            })
            .collect())
    }

    async fn list_nodes_to_stop(&self, _cluster: &ClusterName) -> Result<Vec<Node>> {
        let mut s = self.state.lock().unwrap();
        s.stop_lists += 1;
        let now = Instant::now();
        Ok(s.nodes
            .iter()
            .filter(|n| n.visible_at <= now && n.terminated_at.is_none())
            .map(|n| n.node.clone())
            .collect())
    }

    async fn node_states(
        &self,
        _cluster: &ClusterName,
        nodes: &[Node],
    ) -> Result<Option<Vec<Node>>> {
        let mut s = self.state.lock().unwrap();
        if !s.by_id {
            return Ok(None);
        }
        s.lookups += 1;
        let now = Instant::now();
        let stop_after = s.stop_after;
        Ok(Some(
            s.nodes
                .iter()
                .filter(|n| n.visible_at <= now && nodes.iter().any(|k| k.id == n.node.id))
                .map(|n| Node {
                    state: match n.terminated_at {
                        None => n.node.state.clone(),
                        Some(t) if now.duration_since(t) < stop_after => NodeState::Stopping,
                        Some(_) => NodeState::Terminated,
                    },
                    ..n.node.clone()
                })
                .collect(),
        ))
    }

    async fn endpoints(&self, _scheduler: &Node, _private: bool) -> Result<Endpoints> {
        // Nothing listens on the discard port: readiness never comes.
        Ok(Endpoints {
            scheduler_address: "tcp://127.0.0.1:9".into(),
            dashboard_url: "http://127.0.0.1:9/status".into(),
        })
    }

    async fn terminate_nodes(&self, _cluster: &ClusterName, nodes: &[Node]) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let stubborn = s.stubborn;
        for n in s.nodes.iter_mut() {
            if n.terminated_at.is_none() && nodes.iter().any(|t| t.id == n.node.id) {
                n.asked += 1;
                if !stubborn || n.asked > 1 {
                    n.terminated_at = Some(Instant::now());
                }
            }
        }
        Ok(())
    }

    async fn cleanup(&self, _cluster: &ClusterName) -> Result<Vec<String>> {
        if self.get(|s| s.cleanup_hangs) {
            std::future::pending::<()>().await;
        }
        Ok(self.get(|s| s.leftovers.clone()))
    }

    async fn logs(
        &self,
        _cluster: &ClusterName,
        role: Option<Role>,
        _tail: usize,
        max_nodes: Option<usize>,
    ) -> Result<Vec<NodeLog>> {
        let hang = self.get(|s| s.logs_hang);
        self.set(|s| s.log_calls.push((role, max_nodes)));
        if hang {
            std::future::pending::<()>().await;
        }
        Ok(self.get(|s| {
            s.nodes
                .iter()
                .filter(|n| role.is_none_or(|r| r == n.node.role))
                .take(max_nodes.unwrap_or(usize::MAX))
                .map(|n| NodeLog {
                    node: n.node.name.clone(),
                    role: n.node.role,
                    lines: vec![format!("log of {}", n.node.name)],
                })
                .collect()
        }))
    }
}

//! `status` and `list`: live state asked of the provider (nodes by tags) and of the scheduler
//! (workers joined), with the local record only filling in what the platform cannot tell.

use std::time::Duration;

use anyhow::Result;
use clusterctl_core::{
    Error,
    health::Dashboard,
    model::{ClusterSummary, Node, NodeState, Role, now_epoch, summarize},
};
use serde::Serialize;
use serde_json::json;

use super::{Ctx, providers_to_ask};
use crate::{
    cli::{ListArgs, StatusArgs},
    providers::ProviderOptions,
};

#[derive(Serialize)]
struct ListedCluster {
    name: String,
    provider: String,
    location: String,
    state: &'static str,
    workers_running: usize,
    scheduler_running: bool,
    expires_at: Option<u64>,
    recorded_here: bool,
}

/// The state `list` shows for a cluster found on the platform.
fn listed_state(s: &ClusterSummary, now: u64) -> &'static str {
    if s.is_expired(now) {
        // Past the TTL but still there: powered-off nodes may still be billed.
        "expired"
    } else if s.scheduler().is_some() {
        "running"
    } else if s.nodes.iter().any(|n| n.state != NodeState::Terminated) {
        "degraded"
    } else {
        "partial"
    }
}

fn expires_in(at: Option<u64>) -> String {
    match at {
        Some(t) if t > now_epoch() => {
            humantime::format_duration(Duration::from_secs(t - now_epoch())).to_string()
        }
        Some(_) => "expired".into(),
        None => "-".into(),
    }
}

pub async fn status(ctx: &Ctx<'_>, args: &StatusArgs) -> Result<u8> {
    let name = ctx.pick_name(args.name.as_deref())?;
    let (provider, record) = ctx.locate(&name, &args.at).await?;
    let nodes: Vec<Node> = provider.list_nodes(Some(&name)).await?;
    let summary = summarize(nodes.clone()).into_iter().next();
    let scheduler = summary
        .as_ref()
        .and_then(ClusterSummary::scheduler)
        .cloned();
    let endpoints = match &scheduler {
        Some(s) => provider
            .endpoints(s, record.as_ref().is_some_and(|r| r.spec.private))
            .await
            .ok(),
        None => None,
    };
    // The scheduler is asked through whatever reaches it from here (a port-forward on
    // Kubernetes); the published endpoints are what is shown.
    let reach = match (&scheduler, &endpoints) {
        (Some(s), Some(e)) => provider.reach(s, e, Default::default()).await.ok(),
        _ => None,
    };
    let (healthy, joined) = match &reach {
        Some(r) => {
            let dash = Dashboard::new(r.endpoints.dashboard_base(), Duration::from_secs(3));
            (
                dash.healthy().await,
                dash.view().await.ok().map(|v| v.workers.len()),
            )
        }
        None => (false, None),
    };
    let running_workers = nodes
        .iter()
        .filter(|n| n.role == Role::Worker && n.state.is_alive())
        .count();
    let awaited = record.as_ref().map(|r| r.wait_workers as usize);
    let state = match (&scheduler, healthy, joined) {
        (None, _, _) if running_workers == 0 => "gone",
        (None, _, _) => "degraded",
        (Some(_), true, Some(j)) if awaited.is_none_or(|a| j >= a) => "ready",
        _ => "starting",
    };
    // No node running: the cluster may still hold its name's claim and supporting resources
    // (its nodes ended at the TTL, or its `up` died before its rollback). Asked only then, so
    // a live cluster's `status` stays one listing.
    let claimed = if state == "gone" {
        provider
            .list_clusters()
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|s| s.name == name.as_str() && s.holds_anything())
    } else {
        None
    };
    if state == "gone" && record.is_none() && claimed.is_none() {
        return Err(Error::NotFound {
            name: name.to_string(),
            where_: format!(" on {} ({})", provider.kind(), provider.location()),
        }
        .into());
    }
    let expires_at = summary
        .as_ref()
        .or(claimed.as_ref())
        .and_then(|s| s.expires_at)
        .or(record.as_ref().map(|r| r.spec.expires_at()));
    if claimed.is_some() {
        ctx.printer.hint(&format!(
            "no node of `{name}` runs, but its supporting resources are still there (its nodes ended, or its `up` is still creating them or died before its rollback); `clusterctl down {name}` removes them"
        ));
    }
    // The cluster's Dask (from the record) and the client's (python3 on PATH).
    let cluster_dask = record.as_ref().map(|r| r.spec.dask_version.clone());
    let client_dask = super::versions::client_version(&super::versions::client_python(None));
    ctx.printer.result(
        || {
            let mut t = format!("cluster    {name}\nprovider   {} ({})\nstate      {state}\n", provider.kind(), provider.location());
            if let Some(e) = &endpoints {
                t.push_str(&format!("scheduler  {}\ndashboard  {}\n", e.scheduler_address, e.dashboard_url));
            }
            t.push_str(&format!(
                "workers    {running_workers} running, {} joined{}\nexpires in {}\n",
                joined.map_or("?".into(), |j| j.to_string()),
                awaited.map_or(String::new(), |a| format!(", {a} awaited")),
                expires_in(expires_at)
            ));
            t.push_str(&format!(
                "dask       cluster {}, client (python3) {}\n",
                cluster_dask.as_deref().unwrap_or("?"),
                client_dask.as_deref().unwrap_or("not found")
            ));
            if !nodes.is_empty() {
                t.push_str("\nNODE         ROLE       STATE       ID          ADDRESS\n");
                for n in &nodes {
                    t.push_str(&format!(
                        "{:<12} {:<10} {:<11} {:<11} {}\n",
                        n.name,
                        n.role,
                        n.state.to_string(),
                        n.id,
                        n.public_ip.as_deref().or(n.private_ip.as_deref()).unwrap_or("-")
                    ));
                }
            }
            if state == "gone" {
                t.push_str("\nthe cluster is gone (TTL, idle timeout, or removed elsewhere); `clusterctl down` forgets its record\n");
            }
            t
        },
        &json!({
            "name": name,
            "provider": provider.kind(),
            "location": provider.location(),
            "state": state,
            "scheduler_address": endpoints.as_ref().map(|e| &e.scheduler_address),
            "dashboard_url": endpoints.as_ref().map(|e| &e.dashboard_url),
            "workers": { "running": running_workers, "joined": joined, "awaited": awaited, "requested": record.as_ref().map(|r| r.spec.workers) },
            "expires_at": expires_at,
            "dask_versions": { "cluster": cluster_dask, "client": client_dask },
            "recorded_here": record.is_some(),
            "resources_left": claimed.is_some(),
            "nodes": nodes,
        }),
    );
    Ok(if state == "gone" { 1 } else { 0 })
}

pub async fn list(ctx: &Ctx<'_>, args: &ListArgs) -> Result<u8> {
    let records = ctx.store.list()?;
    let mut rows: Vec<ListedCluster> = Vec::new();
    for kind in providers_to_ask(ctx, args.provider.as_deref())? {
        let opts = ProviderOptions {
            region: args.region.clone(),
            extra: crate::settings::scope_options(
                kind,
                &args.kube,
                &args.azure,
                args.project.as_deref(),
                args.all_namespaces,
                ctx.file.as_ref(),
            )?,
            ..Default::default()
        };
        let provider = crate::providers::build(kind, &opts, &ctx.paths).await?;
        let now = now_epoch();
        // Every cluster that still holds something, half-made ones (only their claim and
        // supporting resources left) included; terminated nodes the platform still lists
        // for a while do not count.
        for s in provider.list_clusters().await? {
            if !s.holds_anything() {
                continue;
            }
            rows.push(ListedCluster {
                recorded_here: records
                    .iter()
                    .any(|r| r.name().as_str() == s.name && r.provider == kind),
                state: listed_state(&s, now),
                workers_running: s.workers_alive(),
                scheduler_running: s.scheduler().is_some(),
                expires_at: s.expires_at,
                name: s.name,
                provider: kind.to_string(),
                location: provider.location(),
            });
        }
        for r in records.iter().filter(|r| r.provider == kind) {
            if !rows
                .iter()
                .any(|row| row.name == r.name().as_str() && row.provider == kind.as_str())
            {
                rows.push(ListedCluster {
                    name: r.name().to_string(),
                    provider: kind.to_string(),
                    location: r.location.clone(),
                    state: "gone",
                    workers_running: 0,
                    scheduler_running: false,
                    expires_at: Some(r.spec.expires_at()),
                    recorded_here: true,
                });
            }
        }
    }
    rows.sort_by(|a, b| (&a.provider, &a.name).cmp(&(&b.provider, &b.name)));
    if rows.iter().any(|r| r.state == "partial") {
        ctx.printer.hint(
            "partial clusters hold supporting resources but no running node (their nodes ended, or an `up` is still creating them or died before its rollback); `clusterctl down NAME` removes them",
        );
    }
    if rows.iter().any(|r| r.state == "expired") {
        ctx.printer.hint(
            "expired clusters are past their TTL but still exist, and may still be billed (a powered-off droplet is); remove them with `clusterctl down --expired`",
        );
    }
    ctx.printer.result(
        || {
            if rows.is_empty() {
                return "no clusters".into();
            }
            let mut t = format!(
                "{:<24} {:<12} {:<10} {:>7}  {:<14} {}\n",
                "NAME", "PROVIDER", "STATE", "WORKERS", "EXPIRES IN", "RECORD"
            );
            for r in &rows {
                t.push_str(&format!(
                    "{:<24} {:<12} {:<10} {:>7}  {:<14} {}\n",
                    r.name,
                    r.provider,
                    r.state,
                    r.workers_running,
                    expires_in(r.expires_at),
                    if r.recorded_here { "here" } else { "-" }
                ));
            }
            t
        },
        &json!({ "clusters": rows }),
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn node(role: Role, state: NodeState) -> Node {
        Node {
            id: "n".into(),
            name: "n".into(),
            role,
            state,
            private_ip: None,
            public_ip: None,
            created_at: None,
            tags: BTreeMap::new(),
        }
    }

    fn summary(nodes: Vec<Node>, expires_at: u64) -> ClusterSummary {
        ClusterSummary {
            name: "c".into(),
            nodes,
            expires_at: Some(expires_at),
            owner: None,
            launch: None,
            claimed: true,
        }
    }

    #[test]
    fn a_cluster_is_listed_by_what_it_still_holds() {
        let now = 1_000_000;
        let later = now + 3600;
        let running = summary(
            vec![
                node(Role::Scheduler, NodeState::Running),
                node(Role::Worker, NodeState::Pending),
            ],
            later,
        );
        assert_eq!(listed_state(&running, now), "running");
        let no_scheduler = summary(vec![node(Role::Worker, NodeState::Running)], later);
        assert_eq!(listed_state(&no_scheduler, now), "degraded");
        // Only its claim, or nodes the platform still lists as terminated: half-made.
        assert_eq!(listed_state(&summary(vec![], later), now), "partial");
        let ended = summary(vec![node(Role::Scheduler, NodeState::Terminated)], later);
        assert_eq!(listed_state(&ended, now), "partial");
        // Past its TTL, whatever it holds.
        assert_eq!(listed_state(&summary(vec![], now - 1), now), "expired");
        assert_eq!(listed_state(&summary(running.nodes, now), now), "expired");
    }
}

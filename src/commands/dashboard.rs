//! `dashboard`: the dashboard link and scheduler address that work from this machine. Where the
//! provider reaches the scheduler through a tunnel (a Kubernetes ClusterIP Service, through the
//! API server's port-forward), the tunnel stays open until Ctrl-C/SIGTERM or the cluster ends.

use std::time::Duration;

use anyhow::Result;
use clusterctl_core::{Error, NodeState, Role, provider::LocalPorts};
use serde_json::json;

use super::Ctx;
use crate::{cli::DashboardArgs, signals::Signals};

/// How often the held tunnel checks that the scheduler still exists.
const CHECK_EVERY: Duration = Duration::from_secs(10);

pub async fn dashboard(ctx: &Ctx<'_>, args: &DashboardArgs) -> Result<u8> {
    let name = ctx.pick_name(args.name.as_deref())?;
    let (provider, record) = ctx.locate(&name, &args.at).await?;
    let scheduler = provider
        .list_nodes(Some(&name))
        .await?
        .into_iter()
        .find(|n| n.role == Role::Scheduler && n.state.is_alive())
        .ok_or_else(|| Error::NotFound {
            name: name.to_string(),
            where_: format!(
                " on {} ({}) with a running scheduler",
                provider.kind(),
                provider.location()
            ),
        })?;
    let private = record.as_ref().is_some_and(|r| r.spec.private);
    let published = provider.endpoints(&scheduler, private).await?;
    let local = LocalPorts {
        scheduler: args.scheduler_port,
        dashboard: args.port,
    };
    let reach = provider.reach(&scheduler, &published, local).await?;
    let e = &reach.endpoints;
    ctx.printer.result(
        || {
            format!(
                "dashboard  {}\nscheduler  {}",
                e.dashboard_url, e.scheduler_address
            )
        },
        &json!({
            "name": name,
            "dashboard_url": e.dashboard_url,
            "scheduler_address": e.scheduler_address,
            "via": reach.via,
            "published": published,
        }),
    );
    if !reach.is_tunnel() {
        return Ok(0);
    }
    ctx.printer.info(&format!(
        "clusterctl: forwarding to `{name}` through {}; Ctrl-C stops",
        reach.via.as_deref().unwrap_or("a tunnel")
    ));
    let mut signals = Signals::install()?;
    loop {
        tokio::select! {
            _ = signals.interrupted() => return Ok(0),
            _ = tokio::time::sleep(CHECK_EVERY) => {
                let alive = provider
                    .list_nodes(Some(&name))
                    .await
                    .map(|nodes| nodes.iter().any(|n| n.role == Role::Scheduler && n.state == NodeState::Running))
                    .unwrap_or(true);
                if !alive {
                    ctx.printer.info(&format!("clusterctl: the scheduler of `{name}` is gone; closing the forward"));
                    return Ok(1);
                }
            }
        }
    }
}

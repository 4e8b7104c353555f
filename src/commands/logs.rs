//! `logs`: the last lines of the scheduler's and workers' logs, as the provider keeps them.

use anyhow::Result;
use clusterctl_core::model::Role;
use serde_json::json;

use super::Ctx;
use crate::cli::{LogsArgs, RoleArg};

pub async fn logs(ctx: &Ctx<'_>, args: &LogsArgs) -> Result<u8> {
    let name = ctx.pick_name(args.name.as_deref())?;
    let (provider, _) = ctx.locate(&name, &args.at).await?;
    let role = args.role.map(|r| match r {
        RoleArg::Scheduler => Role::Scheduler,
        RoleArg::Worker => Role::Worker,
    });
    let logs = provider.logs(&name, role, args.tail, None).await?;
    if logs.is_empty() {
        ctx.printer
            .info(&format!("clusterctl: no logs found for cluster `{name}`"));
    }
    ctx.printer.result(
        || {
            let mut t = String::new();
            for log in &logs {
                t.push_str(&format!("==> {} ({}) <==\n", log.node, log.role));
                for line in &log.lines {
                    t.push_str(line);
                    t.push('\n');
                }
            }
            t
        },
        &json!({ "name": name, "logs": logs }),
    );
    Ok(0)
}

//! `env`: shell exports that point Dask clients at a cluster (address and, with TLS, the
//! client's certificate files), for `eval "$(clusterctl env)"`.

use anyhow::Result;
use clusterctl_core::{Error, record::ClusterRecord};
use serde_json::json;

use super::Ctx;
use crate::output::shell_quote;

/// The variables for a client of `record`'s cluster.
pub fn client_env(record: &ClusterRecord) -> Result<Vec<(String, String)>, Error> {
    let endpoints = record.endpoints.as_ref().ok_or_else(|| Error::Scheduler {
        operation: "env".into(),
        message: format!("cluster `{}` has no endpoints recorded yet", record.name()),
    })?;
    let mut vars = vec![
        (
            "DASK_SCHEDULER_ADDRESS".to_string(),
            endpoints.scheduler_address.clone(),
        ),
        ("CLUSTERCTL_CLUSTER".to_string(), record.name().to_string()),
        (
            "CLUSTERCTL_DASHBOARD_URL".to_string(),
            endpoints.dashboard_url.clone(),
        ),
    ];
    if let Some(tls) = &record.tls {
        vars.extend(tls.dask_env());
    }
    Ok(vars)
}

pub fn env(ctx: &Ctx<'_>, name: Option<&str>) -> Result<u8> {
    let name = ctx.pick_name(name)?;
    let record = ctx.record(&name)?;
    let python = super::versions::client_python(None);
    super::versions::check(
        ctx.printer,
        &python,
        super::versions::client_version(&python).as_deref(),
        &record.spec.dask_version,
        ctx.strict_versions,
    )?;
    let vars = client_env(&record)?;
    ctx.printer.result(
        || vars.iter().map(|(k, v)| format!("export {k}={}", shell_quote(v))).collect::<Vec<_>>().join("\n"),
        &json!({ "name": name, "env": vars.iter().cloned().collect::<std::collections::BTreeMap<_, _>>() }),
    );
    Ok(0)
}

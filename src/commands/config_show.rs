//! `config show`: the effective settings of `up` and where each came from.

use anyhow::Result;
use clap::ArgMatches;
use serde_json::json;

use super::Ctx;
use crate::{cli::UpArgs, settings};

pub async fn show(ctx: &Ctx<'_>, args: &UpArgs, matches: Option<&ArgMatches>) -> Result<u8> {
    let s = settings::resolve_up(args, matches, ctx.file.as_ref())?;
    let config_file = ctx.file.as_ref().map(|f| f.path.display().to_string());
    ctx.printer.result(
        || {
            let mut t = format!(
                "config file  {}\nstate dir    {}\ncache dir    {}\n\n{:<18} {:<40} {}\n",
                config_file.as_deref().unwrap_or("(none)"),
                ctx.paths.state_dir.display(),
                ctx.paths.cache_dir.display(),
                "SETTING",
                "VALUE",
                "SOURCE"
            );
            for x in &s.shown {
                t.push_str(&format!("{:<18} {:<40} {}\n", x.key, x.value, x.source));
            }
            t
        },
        &json!({
            "config_file": config_file,
            "state_dir": ctx.paths.state_dir,
            "cache_dir": ctx.paths.cache_dir,
            "settings": s.shown,
        }),
    );
    Ok(0)
}

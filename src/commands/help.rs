//! `completions` and `man`: the shell completion scripts and the man page, generated from the
//! same clap definitions as `--help`, so they never drift from the real flags.

use std::io::Write as _;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use crate::cli::Cli;

/// Print the completion script of `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "clusterctl", &mut out);
    write_stdout(&out)
}

/// Print the man page (roff) of clusterctl, or of one subcommand (`clusterctl-up(1)`), on
/// stdout.
pub fn man(subcommand: Option<&str>) -> Result<u8> {
    let cmd = Cli::command();
    let page = match subcommand {
        None => cmd,
        Some(name) => {
            let names: Vec<String> = cmd
                .get_subcommands()
                .map(|s| s.get_name().to_string())
                .collect();
            let sub = cmd.find_subcommand(name).ok_or_else(|| {
                clusterctl_core::Error::invalid(
                    "man page",
                    name,
                    "there is no such subcommand",
                    Some(format!("the man pages are: {}", names.join(", "))),
                )
            })?;
            sub.clone()
                .name(format!("clusterctl-{name}"))
                .version(cmd.get_version().unwrap_or_default().to_string())
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .context("rendering the man page")?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    Ok(0)
}

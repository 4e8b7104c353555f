//! The `clusterctl` binary: parse the command line, run the command, map the outcome to an
//! exit code. Everything else lives in the modules below and in `clusterctl-core`.

mod cli;
mod commands;
mod config;
mod diagnostics;
mod github;
mod logging;
mod output;
mod providers;
mod settings;
mod signals;

use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, matches) = cli::parse();
    let printer = output::Printer::new(&cli.global);
    if let Err(e) = logging::init(cli.global.verbose) {
        return diagnostics::finish(Err(e.into()), &printer);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(commands::dispatch(cli, &matches, &printer));
    diagnostics::finish(outcome, &printer)
}

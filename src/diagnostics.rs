//! The end of every command: print the error chain with its `hint:` lines and log tails on
//! stderr (and as a JSON object on stdout with `--output json`), and choose the exit code.
//! Errors are printed even with `--quiet`: what is left behind is never hidden.

use std::process::ExitCode;

use serde_json::json;

use crate::{config::ConfigError, output::Printer};

/// Exit code and printing for a command's outcome (`Ok(code)` is the command's own code).
pub fn finish(outcome: anyhow::Result<u8>, printer: &Printer) -> ExitCode {
    let err = match outcome {
        Ok(code) => return ExitCode::from(code),
        Err(e) => e,
    };
    let core = err
        .chain()
        .find_map(|e| e.downcast_ref::<clusterctl_core::Error>());
    let config = err.chain().find_map(|e| e.downcast_ref::<ConfigError>());
    let code = match (core, config) {
        (Some(e), _) => e.exit_code(),
        (None, Some(_)) => 2,
        _ => 1,
    };
    let hints: Vec<String> = match (core, config) {
        (Some(e), _) => e.hints(),
        (None, Some(_)) => vec!["fix the file, or point `--config` at another one".into()],
        _ => Vec::new(),
    };
    let message = format!("{err:#}");
    eprintln!("error: {message}");
    crate::github::error(&message, &hints);
    if let Some(tail) = core.and_then(|e| e.log_tail()) {
        eprintln!("{}", tail.trim_end());
    }
    for h in &hints {
        eprintln!("hint: {h}");
    }
    if printer.json() {
        let body = json!({
            "error": {
                "message": message,
                "exit_code": code,
                "kind": match (core, config) {
                    (Some(e), _) => e.kind(),
                    (None, Some(_)) => "config",
                    _ => "other",
                },
                "cause_kind": match (core, config) {
                    (Some(e), _) => e.original_kind(),
                    (None, Some(_)) => "config",
                    _ => "other",
                },
                "hints": hints,
                "log_tail": core.and_then(|e| e.log_tail()),
                "left_behind": core.map(|e| e.left_behind()).unwrap_or_default(),
            }
        });
        printer.result(String::new, &body);
    }
    ExitCode::from(code)
}

/// Print `err` on stderr as [`finish`] does, for a command that exits with another code (`run`
/// with its command's status).
pub fn print_error(err: &clusterctl_core::Error) {
    eprintln!("error: {err}");
    if let Some(tail) = err.log_tail() {
        eprintln!("{}", tail.trim_end());
    }
    for h in err.hints() {
        eprintln!("hint: {h}");
    }
}

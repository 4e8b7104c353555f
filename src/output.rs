//! Output discipline: results (text or one JSON object) on stdout, progress and remarks on
//! stderr. Progress is a spinner on a terminal, hidden otherwise and with `--quiet`.

use std::{
    io::{IsTerminal, Write},
    sync::Mutex,
    time::{Duration, Instant},
};

use clusterctl_core::lifecycle::{Phase, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::cli::{GlobalArgs, OutputFormat};

/// Where and how to print.
#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
    stderr_tty: bool,
}

impl Printer {
    pub fn new(global: &GlobalArgs) -> Self {
        Printer {
            format: global.output,
            quiet: global.quiet,
            stderr_tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Print a command's result: `text` in text mode, `json` as one object in JSON mode.
    pub fn result<T: Serialize>(&self, text: impl FnOnce() -> String, json: &T) {
        let mut out = std::io::stdout().lock();
        let body = if self.json() {
            serde_json::to_string_pretty(json).expect("results serialize")
        } else {
            text()
        };
        if !body.is_empty() {
            let _ = writeln!(out, "{}", body.trim_end_matches('\n'));
        }
        let _ = out.flush();
    }

    /// A remark on stderr (hidden with `--quiet`).
    pub fn info(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// A `hint:` line on stderr (hidden with `--quiet`).
    pub fn hint(&self, message: &str) {
        if !self.quiet {
            eprintln!("hint: {message}");
        }
    }

    /// A progress reporter for one command.
    pub fn progress(&self) -> Reporter {
        let bar = (self.stderr_tty && !self.quiet).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Reporter {
            bar,
            quiet: self.quiet,
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }
}

#[derive(Default)]
struct State {
    phase: Option<Phase>,
    workers: Option<(usize, usize)>,
}

/// Draws lifecycle progress on stderr.
pub struct Reporter {
    bar: Option<ProgressBar>,
    quiet: bool,
    started: Instant,
    state: Mutex<State>,
}

impl Reporter {
    /// Update the spinner. Phases are progress, not results: without a terminal (or with
    /// `--quiet`) they are not shown; notes and the final summary are.
    fn line(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    /// Seconds since the command started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A remark that is shown even with `--quiet`: the answer to a signal, or what is left.
    pub fn warn(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("clusterctl: {message}")),
            None => eprintln!("clusterctl: {message}"),
        }
    }

    /// Remove the spinner.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress for Reporter {
    fn phase(&self, phase: Phase) {
        let mut st = self.state.lock().expect("progress lock");
        if st.phase != Some(phase) {
            st.phase = Some(phase);
            st.workers = None;
            drop(st);
            mark_api_log(phase);
            self.line(phase.describe());
        }
    }

    fn workers(&self, joined: usize, wanted: usize) {
        let mut st = self.state.lock().expect("progress lock");
        if st.workers != Some((joined, wanted)) {
            st.workers = Some((joined, wanted));
            drop(st);
            self.line(&format!("workers {joined}/{wanted} joined"));
        }
    }

    fn note(&self, message: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(format!("clusterctl: {message}")),
            None => eprintln!("clusterctl: {message}"),
        }
    }
}

/// Quote a value for a POSIX shell.
pub fn shell_quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Append `<unix ms> phase:<phase>` to the API call log of `CLUSTERCTL_API_LOG` (written by the
/// AWS providers), so that benchmarks can split a command's calls and time by lifecycle phase.
fn mark_api_log(phase: Phase) {
    use std::io::Write as _;
    let Some(path) = std::env::var_os("CLUSTERCTL_API_LOG") else {
        return;
    };
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{ms} phase:{}", phase.describe().replace(' ', "-"));
    }
}

//! Interruption: Ctrl-C (SIGINT) and SIGTERM (CI cancelling a job) both resolve
//! [`interrupted`], so the command can tear down what it created before exiting with 130.

use tokio::signal::unix::{SignalKind, signal};

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Int,
    Term,
}

impl Interrupt {
    pub fn as_nix(self) -> nix::sys::signal::Signal {
        match self {
            Interrupt::Int => nix::sys::signal::Signal::SIGINT,
            Interrupt::Term => nix::sys::signal::Signal::SIGTERM,
        }
    }
}

/// Listens for SIGINT and SIGTERM from the moment it is created.
pub struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Install the handlers (the default actions are replaced while this lives and after).
    pub fn install() -> std::io::Result<Self> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when either signal arrives.
    pub async fn interrupted(&mut self) -> Interrupt {
        tokio::select! {
            _ = self.int.recv() => Interrupt::Int,
            _ = self.term.recv() => Interrupt::Term,
        }
    }
}

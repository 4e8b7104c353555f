//! Interruption: Ctrl-C (SIGINT) and SIGTERM (CI cancelling a job) both resolve
//! [`Signals::interrupted`], so the command can tear down what it created before exiting with
//! 130; [`Signals::guard`] counts the signals that arrive while work (a teardown) runs, so that
//! a repeated one is answered, and can abandon that work at once.

use std::future::Future;

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

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_nix().as_str())
    }
}

/// What to do about a signal that arrived while guarded work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSignal {
    /// Keep going.
    Continue,
    /// Drop the work and return at once.
    Abandon,
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

    /// Run `work` to its end while `on_signal(signal, n)` answers the n-th signal (from 1) that
    /// arrives meanwhile; `None` when it answered [`OnSignal::Abandon`] (the work is dropped).
    pub async fn guard<F: Future>(
        &mut self,
        work: F,
        mut on_signal: impl FnMut(Interrupt, u32) -> OnSignal,
    ) -> Option<F::Output> {
        tokio::pin!(work);
        let mut n = 0;
        loop {
            tokio::select! {
                out = &mut work => return Some(out),
                sig = self.interrupted() => {
                    n += 1;
                    if on_signal(sig, n) == OnSignal::Abandon {
                        return None;
                    }
                }
            }
        }
    }
}

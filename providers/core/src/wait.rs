//! Bounded waiting. Every wait in clusterctl goes through [`poll_until`] with a [`Deadline`]:
//! there is no wait without one, and running out of time is the typed [`Error::Timeout`] that
//! says what was awaited and what was seen last.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use crate::error::{Error, Result};

/// A point in time a wait must not pass.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    total: Duration,
}

impl Deadline {
    /// A deadline `total` from now. An absurd length (`--timeout 1000000y`) saturates at a
    /// century instead of overflowing the clock.
    pub fn after(total: Duration) -> Self {
        const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
        let now = Instant::now();
        let at = now
            .checked_add(total)
            .or_else(|| now.checked_add(CENTURY))
            .unwrap_or(now);
        Deadline { at, total }
    }

    /// The full length it was created with.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Whether it has passed.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.at
    }
}

/// The answer of one probe.
#[derive(Debug)]
pub enum Poll<T> {
    /// Done, with the value.
    Ready(T),
    /// Not yet; what was seen (e.g. "2 of 4 workers joined").
    Pending(String),
}

/// How often to probe: starts at `first`, grows by half each time, never above `max`.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    /// First delay.
    pub first: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Interval {
    /// Quick polling for local processes and loopback probes.
    pub const FAST: Interval = Interval {
        first: Duration::from_millis(25),
        max: Duration::from_millis(100),
    };
    /// Polling suited to cloud control planes.
    pub const CLOUD: Interval = Interval {
        first: Duration::from_millis(500),
        max: Duration::from_secs(5),
    };
}

/// Probe until it answers [`Poll::Ready`], fails, or `deadline` passes. A probe error ends the
/// wait at once (probes decide themselves what is fatal).
pub async fn poll_until<T, F, Fut>(
    phase: &str,
    deadline: Deadline,
    interval: Interval,
    mut probe: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>>>,
{
    let mut delay = interval.first;
    let mut last = String::new();
    let started = std::time::Instant::now();
    tracing::debug!(
        target: "clusterctl::wait",
        phase,
        deadline_s = deadline.remaining().as_secs(),
        "waiting"
    );
    let mut polls = 0u32;
    loop {
        let remaining = deadline.remaining();
        polls += 1;
        match tokio::time::timeout(remaining, probe()).await {
            Ok(Ok(Poll::Ready(v))) => {
                tracing::debug!(
                    target: "clusterctl::wait",
                    phase,
                    polls,
                    ms = started.elapsed().as_millis() as u64,
                    "done"
                );
                return Ok(v);
            }
            Ok(Ok(Poll::Pending(seen))) => {
                tracing::debug!(target: "clusterctl::wait", phase, poll = polls, seen = %seen, "pending");
                last = seen;
            }
            Ok(Err(e)) => {
                tracing::debug!(target: "clusterctl::wait", phase, poll = polls, error = %e, "probe failed");
                return Err(e);
            }
            Err(_) => {
                tracing::debug!(target: "clusterctl::wait", phase, poll = polls, "probe outlived the deadline");
            }
        }
        if deadline.expired() {
            tracing::debug!(target: "clusterctl::wait", phase, polls, last = %last, "deadline passed");
            return Err(Error::Timeout {
                phase: phase.to_string(),
                after: deadline.total(),
                detail: last,
                log_tail: String::new(),
            });
        }
        tokio::time::sleep(delay.min(deadline.remaining())).await;
        delay = (delay * 3 / 2).min(interval.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_after_a_few_polls() {
        let mut n = 0;
        let v = poll_until(
            "counting",
            Deadline::after(Duration::from_secs(5)),
            Interval::FAST,
            || {
                n += 1;
                let n = n;
                async move {
                    Ok(if n >= 3 {
                        Poll::Ready(n)
                    } else {
                        Poll::Pending(format!("{n}"))
                    })
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn times_out_with_last_detail() {
        let started = Instant::now();
        let err = poll_until::<(), _, _>(
            "waiting for nothing",
            Deadline::after(Duration::from_millis(300)),
            Interval::FAST,
            || async { Ok(Poll::Pending("still nothing".into())) },
        )
        .await
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        let msg = err.to_string();
        assert!(
            msg.contains("waiting for nothing") && msg.contains("still nothing"),
            "{msg}"
        );
    }

    #[test]
    fn an_absurd_deadline_saturates() {
        let d = Deadline::after(Duration::MAX);
        assert!(!d.expired());
        assert!(d.remaining() > Duration::from_secs(50 * 365 * 24 * 3600));
        assert_eq!(d.total(), Duration::MAX);
    }

    #[tokio::test]
    async fn a_hanging_probe_cannot_outlive_the_deadline() {
        let err = poll_until::<(), _, _>(
            "hanging",
            Deadline::after(Duration::from_millis(200)),
            Interval::FAST,
            || async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(Poll::Pending(String::new()))
            },
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }));
    }
}

//! Retries with jittered exponential backoff for platform calls that can be throttled or fail
//! transiently. Providers classify their errors with [`Retryable`]; only throttling and
//! transient failures are retried, and capacity, quota and permission errors surface at once so
//! the caller can choose another zone or report them.

use std::{future::Future, time::Duration};

use backon::{ExponentialBuilder, Retryable as _};

/// How an error should be treated by [`with_retry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// The platform asked us to slow down (HTTP 429, `RequestLimitExceeded`, …).
    Throttled,
    /// A server-side or network hiccup (5xx, connection reset, timeout).
    Transient,
    /// Retrying cannot help (validation, permissions, quota, capacity, not found).
    Fatal,
}

/// Errors that know whether retrying them can help.
pub trait Retryable {
    /// The class of this error.
    fn retry_class(&self) -> RetryClass;
}

impl Retryable for crate::Error {
    fn retry_class(&self) -> RetryClass {
        RetryClass::Fatal
    }
}

/// The retry budget of one call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryConfig {
    /// First delay.
    pub min_delay: Duration,
    /// Largest delay between two attempts.
    pub max_delay: Duration,
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// Total time spent sleeping across retries, at most.
    pub max_total_delay: Duration,
}

impl Default for RetryConfig {
    /// 200 ms doubling to 20 s, 8 retries, 2 minutes of waiting in all: enough to ride out the
    /// throttling windows of the cloud APIs, short enough that credentials do not expire.
    fn default() -> Self {
        RetryConfig {
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_retries: 8,
            max_total_delay: Duration::from_secs(120),
        }
    }
}

impl RetryConfig {
    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_total_delay(Some(self.max_total_delay))
    }
}

/// Run `op` until it succeeds, fails with a [`RetryClass::Fatal`] error, or the budget is spent.
/// `on_retry` is told about each retried error and the delay before the next attempt.
pub async fn with_retry<T, E, F, Fut>(
    config: &RetryConfig,
    op: F,
    mut on_retry: impl FnMut(&E, Duration),
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Retryable,
{
    op.retry(config.backoff())
        .sleep(tokio::time::sleep)
        .when(|e: &E| e.retry_class() != RetryClass::Fatal)
        .notify(|e: &E, d| {
            tracing::info!(
                target: "clusterctl::retry",
                class = ?e.retry_class(),
                wait_ms = d.as_millis() as u64,
                "retrying"
            );
            on_retry(e, d)
        })
        .await
}

/// Run `op` again (same backoff as [`with_retry`]) while `when` says its error may pass, e.g. a
/// resource created moments ago that an eventually consistent API does not know yet.
pub async fn retry_while<T, E, F, Fut>(
    config: &RetryConfig,
    op: F,
    when: impl FnMut(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    op.retry(config.backoff())
        .sleep(tokio::time::sleep)
        .when(when)
        .notify(|_: &E, d| {
            tracing::info!(
                target: "clusterctl::retry",
                wait_ms = d.as_millis() as u64,
                "not there yet (eventual consistency); trying again"
            )
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, PartialEq)]
    struct E(RetryClass);
    impl Retryable for E {
        fn retry_class(&self) -> RetryClass {
            self.0
        }
    }

    fn fast() -> RetryConfig {
        RetryConfig {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            max_retries: 5,
            max_total_delay: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn retries_throttling_until_success() {
        let calls = AtomicUsize::new(0);
        let mut retried = 0;
        let r = with_retry(
            &fast(),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                if n < 3 {
                    Err(E(RetryClass::Throttled))
                } else {
                    Ok(n)
                }
            },
            |_, _| retried += 1,
        )
        .await;
        assert_eq!(r, Ok(3));
        assert_eq!(retried, 3);
    }

    #[tokio::test]
    async fn fatal_errors_are_not_retried() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), E> = with_retry(
            &fast(),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(RetryClass::Fatal))
            },
            |_, _| {},
        )
        .await;
        assert_eq!(r, Err(E(RetryClass::Fatal)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn budget_is_bounded() {
        let calls = AtomicUsize::new(0);
        let r: Result<(), E> = with_retry(
            &fast(),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(E(RetryClass::Transient))
            },
            |_, _| {},
        )
        .await;
        assert!(r.is_err());
        assert_eq!(
            calls.load(Ordering::SeqCst),
            6,
            "one attempt plus max_retries"
        );
    }
}

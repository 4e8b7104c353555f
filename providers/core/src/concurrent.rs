//! Bounded concurrency for calls on many resources at once (deleting nodes one request each).

use std::future::Future;

use futures_util::{StreamExt as _, stream};

/// Run `call` on every item, at most `limit` at once, every one of them even when some fail;
/// then the first error, if any. For teardown, where one failed deletion must not stop the
/// others.
pub async fn each<T, E, F, Fut>(items: Vec<T>, limit: usize, call: F) -> Result<(), E>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let results: Vec<Result<(), E>> = stream::iter(items)
        .map(call)
        .buffer_unordered(limit.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn every_item_runs_within_the_limit_and_the_first_error_is_returned() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let r = super::each((0..20).collect(), 3, |i: u32| {
            let (running, most, done) = (&running, &most, &done);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                done.fetch_add(1, Ordering::SeqCst);
                if i % 7 == 3 { Err(i) } else { Ok(()) }
            }
        })
        .await;
        assert!(matches!(r, Err(3) | Err(10) | Err(17)), "{r:?}");
        assert_eq!(done.load(Ordering::SeqCst), 20, "a failure stops nothing");
        assert!(most.load(Ordering::SeqCst) <= 3);
    }
}

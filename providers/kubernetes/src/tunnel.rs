//! A port-forward tunnel to the scheduler pod through the API server: local listeners on
//! loopback whose every accepted connection gets its own port-forward stream (the `portforward`
//! subresource over WebSocket), so HTTP clients and Dask's several comms work at once.
//!
//! Every stream is a request to the API server. While nothing listens in the pod yet (the
//! scheduler is starting and readiness probes its dashboard every 100 ms), a listener opens no
//! stream for a while after one was refused: it closes the connection at once instead, waiting
//! 200 ms after the first refusal, half as long again after each further one, up to the
//! provider's poll interval (5 s; reached after about 15 s of refusals). A stream that connects
//! ends the pause, so a working tunnel is never held back.
//!
//! The tunnel lives as long as the returned [`Tunnel`]: dropping it aborts the listeners.

use clusterctl_core::{
    Error, Result,
    bootstrap::{DASHBOARD_PORT, SCHEDULER_PORT},
    model::Endpoints,
    provider::LocalPorts,
};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{io::AsyncWriteExt, net::TcpListener, task::JoinHandle};

/// The listener tasks; aborted on drop.
#[derive(Debug)]
pub struct Tunnel {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Open a tunnel to `pod` (in the namespace of `pods`) and return the endpoints it serves on
/// 127.0.0.1, speaking `protocol`.
pub async fn open(
    pods: Api<Pod>,
    pod: &str,
    protocol: &str,
    local: LocalPorts,
) -> Result<(Endpoints, Tunnel)> {
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    for (remote, local) in [
        (SCHEDULER_PORT, local.scheduler),
        (DASHBOARD_PORT, local.dashboard),
    ] {
        let listener = TcpListener::bind(("127.0.0.1", local)).await.map_err(|e| {
            Error::io(
                format!("listening on 127.0.0.1:{local} for a port-forward"),
                e,
            )
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("the port-forward listener's address", e))?
            .port();
        bound.push(port);
        tasks.push(tokio::spawn(serve(
            listener,
            pods.clone(),
            pod.to_string(),
            remote,
        )));
    }
    let endpoints = Endpoints {
        scheduler_address: format!("{protocol}://127.0.0.1:{}", bound[0]),
        dashboard_url: format!("http://127.0.0.1:{}/status", bound[1]),
    };
    Ok((endpoints, Tunnel { tasks }))
}

async fn serve(listener: TcpListener, pods: Api<Pod>, pod: String, remote: u16) {
    let pace = Arc::new(Mutex::new(Pace::default()));
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        if !lock(&pace).admits(Instant::now()) {
            // Refused a moment ago: no request to the API server now.
            drop(conn);
            continue;
        }
        let pods = pods.clone();
        let pod = pod.clone();
        let pace = pace.clone();
        tokio::spawn(async move {
            let Ok(mut pf) = pods.portforward(&pod, &[remote]).await else {
                lock(&pace).record(true, Instant::now());
                let _ = conn.shutdown().await;
                return;
            };
            let error = pf.take_error(remote);
            let Some(mut upstream) = pf.take_stream(remote) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
            drop(upstream);
            let _ = pf.join().await;
            // The kubelet reports a port nothing listens on on the stream's error channel.
            let refused = match error {
                Some(e) => e.await.is_some(),
                None => false,
            };
            lock(&pace).record(refused, Instant::now());
        });
    }
}

fn lock(pace: &Mutex<Pace>) -> std::sync::MutexGuard<'_, Pace> {
    pace.lock().unwrap_or_else(|p| p.into_inner())
}

/// The first pause after a refused stream.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest pause: the provider's poll interval.
const LONGEST_PAUSE: Duration = Duration::from_secs(5);

/// When a listener may open the next stream.
#[derive(Debug, Default)]
struct Pace {
    /// Streams refused in a row.
    refused: u32,
    /// No stream before this.
    not_before: Option<Instant>,
}

impl Pace {
    fn admits(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    fn record(&mut self, refused: bool, now: Instant) {
        if refused {
            self.refused = self.refused.saturating_add(1);
            // ×1.5 per refusal: a scheduler that starts within seconds waits well under a
            // second more for its first probe; one that takes a minute costs ~20 streams.
            let pause = FIRST_PAUSE
                .mul_f64(1.5f64.powi((self.refused - 1).min(16) as i32))
                .min(LONGEST_PAUSE);
            self.not_before = Some(now + pause);
        } else {
            *self = Pace::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_pause_new_streams_up_to_the_poll_interval_and_a_connection_ends_the_pause() {
        let t = Instant::now();
        let mut pace = Pace::default();
        assert!(pace.admits(t));
        let mut pauses = Vec::new();
        for _ in 0..10 {
            pace.record(true, t);
            let until = pace.not_before.unwrap();
            assert!(!pace.admits(t));
            assert!(pace.admits(until));
            pauses.push((until - t).as_millis());
        }
        assert_eq!(
            pauses,
            [200, 300, 450, 675, 1012, 1518, 2278, 3417, 5000, 5000]
        );
        // One stream that reached the port: the next opens at once.
        pace.record(false, t);
        assert!(pace.admits(t));
        pace.record(true, t);
        assert_eq!(pace.not_before.unwrap() - t, FIRST_PAUSE);
    }
}

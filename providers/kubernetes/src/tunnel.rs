//! A port-forward tunnel to the scheduler pod through the API server: local listeners on
//! loopback whose every accepted connection gets its own port-forward stream (the `portforward`
//! subresource over WebSocket), so HTTP clients and Dask's several comms work at once.
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
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let pods = pods.clone();
        let pod = pod.clone();
        tokio::spawn(async move {
            let Ok(mut pf) = pods.portforward(&pod, &[remote]).await else {
                let _ = conn.shutdown().await;
                return;
            };
            let Some(mut upstream) = pf.take_stream(remote) else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
            drop(upstream);
            let _ = pf.join().await;
        });
    }
}

//! The API client over a real (loopback) HTTP server with scripted answers: what the shared REST
//! client retries and what it does not, DigitalOcean's rate-limit headers, pagination by page
//! number, 404 as "already gone", the bearer token on every request.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use clusterctl_core::{
    rest::{RestClient, RestConfig, RestError, Secret},
    retry::RetryConfig,
};
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::{Api, DropletCreate, Ref};

/// What the server saw: each request's head (request line and headers).
type Seen = Arc<Mutex<Vec<String>>>;

/// An API over a loopback server that answers each request with the next scripted
/// `(status line, extra headers, body)`.
async fn scripted(answers: &[(&str, &str, &str)]) -> (Api, Seen, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = RestConfig::new("digitalocean", &url);
    config.retry = RetryConfig {
        min_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        max_retries: 4,
        max_total_delay: Duration::from_secs(5),
    };
    let seen: Seen = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let answers: Vec<String> = answers
        .iter()
        .map(|(status, headers, body)| {
            let extra: String = headers
                .split(';')
                .filter(|h| !h.trim().is_empty())
                .map(|h| format!("{}\r\n", h.trim()))
                .collect();
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
                body.len()
            )
        })
        .collect();
    let (s, c) = (seen.clone(), count.clone());
    tokio::spawn(async move {
        for answer in answers {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
            // The head, then the body by Content-Length.
            while let Ok(n @ 1..) = sock.read(&mut chunk).await {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let len = text[..end]
                    .to_ascii_lowercase()
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:")?.trim().parse().ok())
                    .unwrap_or(0usize);
                if buf.len() >= end + 4 + len {
                    s.lock().unwrap().push(text[..end].to_string());
                    break;
                }
            }
            c.fetch_add(1, Ordering::SeqCst);
            let _ = sock.write_all(answer.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    let rest = RestClient::new(config, Some(Secret::new("dop_v1_test")))
        .unwrap()
        .with_rate_limit_hook(|h| crate::api::rate_limit_wait(h, std::time::SystemTime::now()));
    (Api::new(rest), seen, count)
}

fn droplet_json(id: u64) -> String {
    format!(
        r#"{{"id":{id},"name":"c-worker-{id}","status":"active","tags":["clusterctl-cluster:c","clusterctl-role:worker"],"networks":{{"v4":[]}}}}"#
    )
}

#[tokio::test]
async fn listings_follow_next_by_page_on_this_host_with_the_token() {
    let page1 = format!(
        r#"{{"droplets":[{}],"links":{{"pages":{{"next":"https://elsewhere.example.com/v2/droplets?page=2&per_page=200&tag_name=clusterctl-cluster%3Ac"}}}},"meta":{{"total":2}}}}"#,
        droplet_json(1)
    );
    let page2 = format!(
        r#"{{"droplets":[{}],"links":{{}},"meta":{{"total":2}}}}"#,
        droplet_json(2)
    );
    let (api, seen, _) = scripted(&[("200 OK", "", &page1), ("200 OK", "", &page2)]).await;
    let droplets = api.droplets_by_tag("clusterctl-cluster:c").await.unwrap();
    assert_eq!(droplets.iter().map(|d| d.id).collect::<Vec<_>>(), [1, 2]);
    let seen = seen.lock().unwrap();
    assert!(
        seen[0]
            .starts_with("GET /v2/droplets?per_page=200&tag_name=clusterctl-cluster%3Ac HTTP/1.1"),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].starts_with("GET /v2/droplets?per_page=200&page=2&tag_name="),
        "the next page is asked of this host: {}",
        seen[1]
    );
    for head in seen.iter() {
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer dop_v1_test"),
            "{head}"
        );
    }
}

#[tokio::test]
async fn throttling_waits_for_retry_after_or_the_ratelimit_headers() {
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let hourly = format!("ratelimit-remaining: 0; ratelimit-reset: {reset}");
    let (api, _, count) = scripted(&[
        (
            "429 Too Many Requests",
            "retry-after: 0",
            r#"{"id":"too_many_requests","message":"API Rate limit exceeded."}"#,
        ),
        ("429 Too Many Requests", &hourly, "{}"),
        (
            "200 OK",
            "",
            r#"{"sizes":[],"links":{},"meta":{"total":0}}"#,
        ),
    ])
    .await;
    let started = std::time::Instant::now();
    assert!(api.sizes().await.unwrap().is_empty());
    assert_eq!(count.load(Ordering::SeqCst), 3);
    // The hourly limit's reset has passed: at least a second, not the backoff's milliseconds.
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn droplet_creation_is_not_repeated_after_a_server_error() {
    let body = DropletCreate {
        name: None,
        names: Some(vec!["c-worker-0".into()]),
        region: "nyc3".into(),
        size: "g-4vcpu-16gb".into(),
        image: Ref::parse("ubuntu-24-04-x64"),
        ssh_keys: vec![Ref::Id(1)],
        tags: vec!["clusterctl-cluster:c".into()],
        user_data: "#cloud-config\n".into(),
        vpc_uuid: None,
        monitoring: false,
        ipv6: false,
        with_droplet_agent: false,
    };
    let (api, seen, count) = scripted(&[
        (
            "502 Bad Gateway",
            "",
            r#"{"id":"server_error","message":"x"}"#,
        ),
        ("202 Accepted", "", "{}"),
    ])
    .await;
    let err = api.create_droplets(&body).await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
    assert_eq!(err.operation(), "POST /v2/droplets");
    assert_eq!(count.load(Ordering::SeqCst), 1, "it may have created them");
    assert!(seen.lock().unwrap()[0].contains("content-type: application/json"));
}

#[tokio::test]
async fn deletes_are_retried_and_gone_is_fine() {
    let (api, _, count) = scripted(&[
        ("503 Service Unavailable", "", "{}"),
        ("204 No Content", "", ""),
        (
            "404 Not Found",
            "",
            r#"{"id":"not_found","message":"The resource you were accessing could not be found."}"#,
        ),
    ])
    .await;
    api.delete_droplets_by_tag("clusterctl-cluster:c")
        .await
        .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 2);
    api.delete_droplet(7).await.unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn attempts_are_bounded_and_a_long_wait_ends_the_call_at_once() {
    let (api, _, count) = scripted(&[("500 Internal Server Error", "", "{}"); 10]).await;
    let err = api.regions().await.unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
    assert_eq!(
        count.load(Ordering::SeqCst),
        5,
        "one attempt plus max_retries"
    );
    let (api, _, count) = scripted(&[
        ("429 Too Many Requests", "retry-after: 3600", "{}"),
        ("200 OK", "", "{}"),
    ])
    .await;
    let started = std::time::Instant::now();
    let err = api.regions().await.unwrap_err();
    assert_eq!(err.header("retry-after"), Some("3600"));
    assert_eq!(count.load(Ordering::SeqCst), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
    let mapped = crate::errors::map(err, Default::default());
    assert!(
        mapped.to_string().contains("retry after 3600 s"),
        "{mapped}"
    );
}

#[tokio::test]
async fn an_unreachable_api_is_a_transport_error_never_sent() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut config = RestConfig::new("digitalocean", url);
    config.retry.min_delay = Duration::from_millis(1);
    config.retry.max_delay = Duration::from_millis(2);
    let api = Api::new(RestClient::new(config, None).unwrap());
    let err = api.create_key("k", "ssh-ed25519 AAAA").await.unwrap_err();
    assert!(
        matches!(err, RestError::Transport { sent: false, .. }),
        "{err:?}"
    );
}

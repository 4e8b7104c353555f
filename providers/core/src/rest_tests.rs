//! Tests of rest.rs: Retry-After parsing, backoff bounds, retry classes, URL joining and
//! origin checks, and that secrets never print.

use std::time::SystemTime;

use super::*;

#[test]
fn retry_after_seconds_and_dates() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    let later = httpdate::fmt_http_date(now + Duration::from_secs(42));
    assert_eq!(
        parse_retry_after(&later, now),
        Some(Duration::from_secs(42))
    );
    let past = httpdate::fmt_http_date(now - Duration::from_secs(42));
    assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-3", now), None);
}

#[test]
fn backoff_stays_within_its_bounds() {
    let config = RetryConfig {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        max_retries: 6,
        max_total_delay: Duration::from_secs(60),
    };
    for _ in 0..50 {
        let delays: Vec<Duration> = backon::BackoffBuilder::build(backoff(&config)).collect();
        assert!(delays.len() <= 6, "{delays:?}");
        assert!(!delays.is_empty());
        for d in &delays {
            // Jitter adds up to the delay itself on top of it.
            assert!(*d >= config.min_delay && *d < config.max_delay * 2, "{d:?}");
        }
        assert!(delays.iter().sum::<Duration>() <= config.max_total_delay);
    }
}

#[test]
fn next_delay_honours_server_budget_and_deadline() {
    let s = Duration::from_secs;
    // The server's wait replaces the backoff's.
    assert_eq!(next_delay(Some(s(5)), Some(s(1)), s(60)), Some(s(5)));
    assert_eq!(next_delay(None, Some(s(1)), s(60)), Some(s(1)));
    // The attempt budget is spent: no more attempts whatever the server says.
    assert_eq!(next_delay(Some(s(1)), None, s(60)), None);
    // Waiting past the deadline is pointless: give up now.
    assert_eq!(next_delay(Some(s(3600)), Some(s(1)), s(60)), None);
    assert_eq!(next_delay(None, Some(s(2)), s(1)), None);
}

#[test]
fn urls_join_under_the_base_path() {
    let base = Url::parse("https://api.example.com").unwrap();
    assert_eq!(
        join_url(&base, "/v2/droplets").unwrap().as_str(),
        "https://api.example.com/v2/droplets"
    );
    let prefixed = Url::parse("https://proxy.example.com/do/?x=1").unwrap();
    assert_eq!(
        join_url(&prefixed, "/v2/tags/a:b").unwrap().as_str(),
        "https://proxy.example.com/do/v2/tags/a:b"
    );
    assert!(join_url(&base, "v2/droplets").is_err());
    assert!(join_url(&base, "/v2/../admin").is_err());
    assert!(join_url(&base, "/v2/droplets?tag_name=x").is_err());
    assert_eq!(
        segment("clusterctl-cluster:a_5f"),
        "clusterctl-cluster:a_5f"
    );
    assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
}

#[test]
fn base_urls_are_https_or_loopback() {
    assert!(parse_base_url("https://api.digitalocean.com").is_ok());
    assert!(parse_base_url("https://127.0.0.1:8443").is_ok());
    assert!(parse_base_url("http://127.0.0.1:8080").is_ok());
    assert!(parse_base_url("http://localhost:8080").is_ok());
    assert!(parse_base_url("http://api.digitalocean.com").is_err());
    assert!(parse_base_url("http://169.254.169.254").is_ok());
    // Link-local: host-local identity endpoints (App Service's IDENTITY_ENDPOINT).
    assert!(parse_base_url("http://169.254.129.2:8081").is_ok());
    assert!(parse_base_url("http://10.0.0.1").is_err());
    assert!(parse_base_url("http://169.255.0.1").is_err());
    assert!(parse_base_url("ftp://x").is_err());
    assert!(parse_base_url("not a url").is_err());
}

#[test]
fn classes() {
    let status = |code: u16| RestError::Status {
        service: "t",
        method: Method::POST,
        path: "/".into(),
        status: StatusCode::from_u16(code).unwrap(),
        headers: Box::default(),
        body: String::new(),
    };
    assert_eq!(retry_class(&status(429), false), RetryClass::Throttled);
    assert_eq!(retry_class(&status(502), true), RetryClass::Transient);
    assert_eq!(retry_class(&status(502), false), RetryClass::Fatal);
    assert_eq!(retry_class(&status(500), false), RetryClass::Fatal);
    // 503: the server did not handle it, so even a POST that creates is sent again.
    assert_eq!(retry_class(&status(503), false), RetryClass::Transient);
    assert_eq!(retry_class(&status(422), true), RetryClass::Fatal);
    let transport = |sent| RestError::Transport {
        service: "t",
        method: Method::POST,
        path: "/".into(),
        message: String::new(),
        sent,
    };
    assert_eq!(retry_class(&transport(false), false), RetryClass::Transient);
    assert_eq!(retry_class(&transport(true), false), RetryClass::Fatal);
    assert_eq!(retry_class(&transport(true), true), RetryClass::Transient);
}

#[test]
fn absolute_urls_stay_on_the_clients_origin() {
    let client = RestClient::new(RestConfig::new("t", "https://arm.example.com"), None).unwrap();
    let ok = client.request_url(
        Method::GET,
        "https://arm.example.com/subscriptions/s/operations/1?api-version=x",
    );
    assert_eq!(ok.url.unwrap().query(), Some("api-version=x"));
    for bad in [
        "https://evil.example.com/x",
        "http://arm.example.com/x",
        "https://arm.example.com:444/x",
        "nonsense",
    ] {
        assert!(client.request_url(Method::GET, bad).url.is_err(), "{bad}");
    }
    let form = client
        .request(Method::POST, "/t")
        .form(&[("scope", "https://m/.default"), ("a", "b c")]);
    assert_eq!(
        form.body.unwrap().unwrap(),
        b"scope=https%3A%2F%2Fm%2F.default&a=b+c"
    );
}

#[test]
fn secrets_never_print() {
    let s = Secret::new("dop_v1_abcdef");
    assert!(!format!("{s:?}").contains("abcdef"));
    let client = RestClient::new(RestConfig::new("t", "https://api.example.com"), Some(s)).unwrap();
    assert!(!format!("{client:?}").contains("abcdef"));
}

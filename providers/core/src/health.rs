//! Readiness in Dask terms, asked of the scheduler's dashboard HTTP server: `/health` answers
//! `ok`, and the scheduler API's `/api/v1/get_workers` lists the workers that joined (the
//! bootstrap enables that route). `/json/identity.json` is not used: in distributed 2026.8.0 it
//! answers 500 once tasks have run (worker metrics with tuple keys fail JSON encoding). Also the
//! API call that retires workers before `scale` removes their nodes, and the recent log lines the
//! scheduler and its workers keep in memory (`/info/main/logs.html`, `/info/logs/<worker>.html`):
//! logs for platforms that keep no console output of their machines (DigitalOcean).

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One worker as the scheduler knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedWorker {
    /// The worker's address, e.g. `tls://10.0.1.7:40123`.
    pub address: String,
    /// Its Dask name (clusterctl passes the node name, or Dask uses the address).
    pub name: String,
}

impl JoinedWorker {
    /// The host part of the worker's address.
    pub fn host(&self) -> &str {
        let rest = self
            .address
            .split_once("://")
            .map_or(self.address.as_str(), |(_, r)| r);
        rest.rsplit_once(':')
            .map_or(rest, |(h, _)| h)
            .trim_matches(['[', ']'])
    }
}

/// What the scheduler reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerView {
    /// Workers registered now.
    pub workers: Vec<JoinedWorker>,
}

#[derive(Deserialize)]
struct GetWorkersJson {
    #[serde(default)]
    workers: Vec<WorkerJson>,
}

#[derive(Deserialize)]
struct WorkerJson {
    address: String,
    #[serde(default)]
    name: serde_json::Value,
}

/// Talks to one scheduler's dashboard.
#[derive(Debug, Clone)]
pub struct Dashboard {
    base: String,
    http: reqwest::Client,
}

impl Dashboard {
    /// A client for the dashboard at `base` (e.g. `http://127.0.0.1:8787`). Each request gives up
    /// after `request_timeout`, so a dead address never stalls a wait loop.
    pub fn new(base: &str, request_timeout: Duration) -> Self {
        let builder = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .no_proxy();
        // The dashboard is plain HTTP. When the `rest` feature brings TLS into reqwest, an empty
        // root store keeps this client from loading (and depending on) the system's roots.
        #[cfg(feature = "rest")]
        let builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
        let http = builder
            .build()
            .expect("an HTTP client without TLS roots always builds");
        Dashboard {
            base: base.trim_end_matches('/').to_string(),
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether `/health` answers `ok` now.
    pub async fn healthy(&self) -> bool {
        match self.http.get(format!("{}/health", self.base)).send().await {
            Ok(r) if r.status().is_success() => {
                r.text().await.map(|t| t.trim() == "ok").unwrap_or(false)
            }
            _ => false,
        }
    }

    /// The workers registered with the scheduler, from `/api/v1/get_workers`.
    pub async fn view(&self) -> Result<SchedulerView> {
        let url = format!("{}/api/v1/get_workers", self.base);
        let body: GetWorkersJson = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| http_err(&url, e))?
            .json()
            .await
            .map_err(|e| http_err(&url, e))?;
        let workers = body
            .workers
            .into_iter()
            .map(|w| JoinedWorker {
                name: match w.name {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => w.address.clone(),
                    other => other.to_string(),
                },
                address: w.address,
            })
            .collect();
        Ok(SchedulerView { workers })
    }

    /// Ask the scheduler to retire `addresses` (move their data to other workers, then close
    /// them) and wait for it to finish.
    pub async fn retire_workers(&self, addresses: &[String]) -> Result<()> {
        if addresses.is_empty() {
            return Ok(());
        }
        let url = format!("{}/api/v1/retire_workers", self.base);
        self.http
            .post(&url)
            .json(&serde_json::json!({ "workers": addresses }))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| http_err(&url, e))?;
        Ok(())
    }
}

impl Dashboard {
    /// The scheduler's recent log lines, oldest first, from `/info/main/logs.html` (the
    /// `distributed.http.scheduler.info` route the bootstrap enables). Dask keeps the last
    /// `distributed.admin.log-length` records (10,000 by default) in memory.
    pub async fn scheduler_log(&self) -> Result<Vec<String>> {
        self.logs_page(&format!("{}/info/main/logs.html", self.base))
            .await
    }

    /// The recent log lines of the worker at `address` (e.g. `tls://10.0.1.7:40123`), oldest
    /// first, which the scheduler fetches from the worker for `/info/logs/<address>.html`.
    pub async fn worker_log(&self, address: &str) -> Result<Vec<String>> {
        self.logs_page(&format!(
            "{}/info/logs/{}.html",
            self.base,
            percent_encode(address)
        ))
        .await
    }

    /// The recent log lines of every worker the scheduler knows, one after the other.
    pub async fn worker_logs(&self) -> Result<Vec<(JoinedWorker, Vec<String>)>> {
        let view = self.view().await?;
        let mut out = Vec::with_capacity(view.workers.len());
        for w in view.workers {
            let lines = self.worker_log(&w.address).await?;
            out.push((w, lines));
        }
        Ok(out)
    }

    async fn logs_page(&self, url: &str) -> Result<Vec<String>> {
        let html = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| http_err(url, e))?
            .text()
            .await
            .map_err(|e| http_err(url, e))?;
        Ok(parse_logs_html(&html))
    }
}

/// Percent-encode all but the unreserved characters (a worker address in a URL path).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The log lines of a Dask `logs.html` page, oldest first. The template writes one
/// `<p> {{ record }} </p>` per record, newest first, with the record HTML-escaped (so a record
/// cannot contain `</p>`) and a multi-line record (a traceback) keeping its newlines.
pub fn parse_logs_html(html: &str) -> Vec<String> {
    let body = html.find("<body").map_or(html, |i| &html[i..]);
    let mut records = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("<p>") {
        let after = &rest[start + 3..];
        let Some(end) = after.find("</p>") else {
            break;
        };
        let raw = &after[..end];
        let raw = raw.strip_prefix(' ').unwrap_or(raw);
        let raw = raw.strip_suffix(' ').unwrap_or(raw);
        records.push(html_unescape(raw));
        rest = &after[end + 4..];
    }
    records
        .iter()
        .rev()
        .flat_map(|r| r.lines().map(str::to_string).collect::<Vec<_>>())
        .collect()
}

/// Undo HTML escaping: the five named entities Tornado writes, and numeric ones.
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let Some(semi) = tail.bytes().take(12).position(|b| b == b';') else {
            out.push('&');
            rest = &tail[1..];
            continue;
        };
        let entity = &tail[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &tail[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn http_err(url: &str, e: reqwest::Error) -> Error {
    Error::Scheduler {
        operation: url.to_string(),
        message: e.without_url().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_host() {
        let w = |a: &str| JoinedWorker {
            address: a.into(),
            name: String::new(),
        };
        assert_eq!(w("tls://10.0.1.7:40123").host(), "10.0.1.7");
        assert_eq!(w("tcp://[::1]:5").host(), "::1");
        assert_eq!(w("127.0.0.1:9").host(), "127.0.0.1");
    }

    /// The shape distributed 2026.8.0 serves (`templates/logs.html` extending `main.html`),
    /// with an escaped multi-line record added.
    const LOGS_HTML: &str = "<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n</meta>\n\
<title> Logs: tcp://127.0.0.1:42213 </title>\n\
<link rel=\"stylesheet\" href=\"../../../statics/css/sortable.min.css\" />\n</head>\n<body>\n\n\n\
<p> 2026-12-03 08:02:39,001 - distributed.worker - ERROR - failed &lt;x&gt; &amp; &quot;y&quot; &#39;z&#39;\n\
Traceback (most recent call last):\n  File &quot;a.py&quot;, line 1 </p>\n\n\
<p> 2026-12-03 08:02:38,189 - distributed.worker - INFO -         Registered to:      tcp://127.0.0.1:18786 </p>\n\n\
<p> 2026-12-03 08:02:38,152 - distributed.worker - INFO -       Start worker at:      tcp://127.0.0.1:42213 </p>\n\n\n\
<script src=\"../../../statics/js/sortable.min.js\"></script>\n</body>\n</html>\n";

    #[test]
    fn logs_pages_parse_oldest_first() {
        let lines = parse_logs_html(LOGS_HTML);
        assert_eq!(
            lines,
            [
                "2026-12-03 08:02:38,152 - distributed.worker - INFO -       Start worker at:      tcp://127.0.0.1:42213",
                "2026-12-03 08:02:38,189 - distributed.worker - INFO -         Registered to:      tcp://127.0.0.1:18786",
                "2026-12-03 08:02:39,001 - distributed.worker - ERROR - failed <x> & \"y\" 'z'",
                "Traceback (most recent call last):",
                "  File \"a.py\", line 1",
            ]
        );
        assert!(parse_logs_html("<html><body>\n</body></html>").is_empty());
    }

    #[test]
    fn entities_and_addresses() {
        assert_eq!(
            html_unescape("a &amp;amp; &#x41;&#66; &bogus; &"),
            "a &amp; AB &bogus; &"
        );
        assert_eq!(
            percent_encode("tls://10.0.1.7:40123"),
            "tls%3A%2F%2F10.0.1.7%3A40123"
        );
    }
}

//! GitHub Actions: step outputs (`GITHUB_OUTPUT`), the job summary (`GITHUB_STEP_SUMMARY`) and
//! error annotations, each written only when the runner sets its variable, so that a workflow
//! reads the cluster's address as `steps.<id>.outputs.scheduler-address`.

use std::{fs::OpenOptions, io::Write as _, path::PathBuf, time::Duration};

use serde_json::Value;

fn target(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Append `text` to the file named by `var`; a file the runner gave that cannot be written is
/// said on stderr, never fatal to the cluster command.
fn append(var: &str, text: &str) {
    let Some(path) = target(var) else {
        return;
    };
    let written = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    if let Err(e) = written {
        eprintln!(
            "clusterctl: could not write {var} ({}): {e}",
            path.display()
        );
    }
}

/// `name=value` lines in GITHUB_OUTPUT's format (a value with a line break in the
/// `name<<DELIMITER` form, with a delimiter the value does not contain).
fn output_lines(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (name, value) in pairs {
        if value.contains(['\n', '\r']) {
            let mut delimiter = format!("CLUSTERCTL_{:016x}", fastrand::u64(..));
            while value.contains(&delimiter) {
                delimiter = format!("CLUSTERCTL_{:016x}", fastrand::u64(..));
            }
            out.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
        } else {
            out.push_str(&format!("{name}={value}\n"));
        }
    }
    out
}

fn field(ready: &Value, key: &str) -> String {
    match &ready[key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A cluster is up (`up`, `wait`, `run`): the step outputs and a summary.
pub fn ready(ready: &Value, expires_at: u64, elapsed: Duration) {
    let expires =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(expires_at))
            .to_string();
    append(
        "GITHUB_OUTPUT",
        &output_lines(&[
            ("name", field(ready, "name")),
            ("scheduler-address", field(ready, "scheduler_address")),
            ("dashboard-url", field(ready, "dashboard_url")),
            ("provider", field(ready, "provider")),
            ("location", field(ready, "location")),
            ("expires-at", expires.clone()),
        ]),
    );
    let workers = &ready["workers"];
    let joined = match &workers["joined"] {
        Value::Null => "not awaited (`--no-wait`)".to_string(),
        j => format!("{j} of {}", workers["requested"]),
    };
    append(
        "GITHUB_STEP_SUMMARY",
        &format!(
            "### clusterctl: cluster `{name}` {state}\n\n\
             | | |\n|---|---|\n\
             | provider | {provider} ({location}) |\n\
             | workers joined | {joined} |\n\
             | time to ready | {secs:.1} s |\n\
             | scheduler | `{address}` |\n\
             | dashboard | {dashboard} |\n\
             | ends by itself | {expires} |\n\n",
            name = field(ready, "name"),
            state = if ready["ready"] == true {
                "is ready"
            } else {
                "was created"
            },
            provider = field(ready, "provider"),
            location = field(ready, "location"),
            secs = elapsed.as_secs_f64(),
            address = field(ready, "scheduler_address"),
            dashboard = field(ready, "dashboard_url"),
        ),
    );
}

/// `down` removed clusters: a summary line each.
pub fn removed(lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    let mut text = String::from("### clusterctl down\n\n");
    for l in lines {
        text.push_str(&format!("- {l}\n"));
    }
    text.push('\n');
    append("GITHUB_STEP_SUMMARY", &text);
}

/// Escape workflow-command data (`%`, CR, LF).
fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// An error as a GitHub annotation (`::error title=clusterctl::message` with the hints), on
/// stderr (the runner reads workflow commands on both streams; stdout stays the result).
pub fn error(message: &str, hints: &[String]) {
    if std::env::var("GITHUB_ACTIONS").as_deref() != Ok("true") {
        return;
    }
    let mut text = message.to_string();
    for h in hints {
        text.push_str(&format!("\nhint: {h}"));
    }
    eprintln!("::error title=clusterctl::{}", escape_data(&text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_use_the_delimiter_form_only_for_multi_line_values() {
        let text = output_lines(&[("a", "x=y".into()), ("b", "one\ntwo".into())]);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("a=x=y"));
        let open = lines.next().unwrap();
        let delimiter = open.strip_prefix("b<<").unwrap();
        assert_eq!(lines.next(), Some("one"));
        assert_eq!(lines.next(), Some("two"));
        assert_eq!(lines.next(), Some(delimiter));
    }

    #[test]
    fn annotations_escape_line_breaks_and_percent() {
        assert_eq!(escape_data("50% done\nnext\r"), "50%25 done%0Anext%0D");
    }
}

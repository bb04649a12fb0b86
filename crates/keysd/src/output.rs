//! What keysd writes for people and programs to read, in the format
//! `--log-format` chose: the logs on stderr, the lines `serve` announces
//! on stdout (the bootstrap, its service token, the addresses it listens
//! on) and the one-line error before a non-zero exit.
//!
//! In `text` (the default) each announced line is exactly the text tests
//! and scripts parse (`keysd listening on http://ADDR`); in `json` every
//! line, on stdout and on stderr, is one JSON object with a `timestamp`, a
//! `level`, a `message` and the line's fields at the top level, as the JSON
//! logs have them. The bootstrap token is written by
//! [`service_token`] alone, never through `tracing`, so that no log layer
//! or filter ever sees it.

use std::sync::OnceLock;

use serde_json::Value;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// `--log-format`: how every line keysd writes is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people; the lines `serve` announces exactly as scripts
    /// parse them.
    #[default]
    Text,
    /// One JSON object a line, on stdout and on stderr.
    Json,
}

/// The format chosen at start (text until [`init`] runs).
static FORMAT: OnceLock<LogFormat> = OnceLock::new();

fn format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// Sets the format of every line from now on, once, and installs the log
/// subscriber (stderr, filtered by `RUST_LOG`, default `info`). In JSON a
/// panic is logged as one object too, so that not even a crash breaks the
/// one-object-a-line promise.
pub fn init(format: LogFormat) {
    let _first = FORMAT.set(format);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _already_set = match format {
        LogFormat::Text => {
            subscriber.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_target(false).try_init()
        }
        LogFormat::Json => {
            std::panic::set_hook(Box::new(|panic| tracing::error!(panic = %panic, "keysd panicked")));
            // The event's fields beside `message` rather than in a nested
            // object, and the request's span (its request id) once.
            subscriber.json().flatten_event(true).with_span_list(false).with_ansi(false).try_init()
        }
    };
}

/// `keysd bootstrapped organisation 'default' (ID) with workspaces …`.
pub fn bootstrapped(organisation_id: &str) {
    announce(
        format!(
            "keysd bootstrapped organisation 'default' ({organisation_id}) with workspaces 'staging' and 'production'"
        ),
        "keysd bootstrapped organisation",
        &[
            ("organisation", Value::from("default")),
            ("organisation_id", Value::from(organisation_id)),
            ("workspaces", Value::from(vec!["staging", "production"])),
        ],
    );
}

/// The bootstrap service token: the one line that ever carries it.
pub fn service_token(token: &str) {
    const MESSAGE: &str = "keysd service token (shown once, store it now)";
    announce(format!("{MESSAGE}: {token}"), MESSAGE, &[("token", Value::from(token))]);
}

/// `keysd listening on URL` (`URL` is `http://ADDR` or `https://ADDR`).
pub fn listening(url: &str) {
    announce(format!("keysd listening on {url}"), "keysd listening", &[("address", Value::from(url))]);
}

/// `keysd metrics on URL` (the `/metrics` URL of `--metrics-listen`).
pub fn metrics(url: &str) {
    announce(format!("keysd metrics on {url}"), "keysd metrics", &[("address", Value::from(url))]);
}

/// The error that ends the process, on stderr: `keysd: error: …` in text.
pub fn error(error: &anyhow::Error) {
    match format() {
        LogFormat::Text => eprintln!("keysd: error: {error:#}"),
        LogFormat::Json => eprintln!("{}", json_line("ERROR", &format!("{error:#}"), &[])),
    }
}

/// A multi-line message (clap's usage errors) as one line: its lines
/// trimmed and joined, without clap's leading `error: `.
pub fn one_line(message: &str) -> String {
    let joined = message.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ");
    joined.strip_prefix("error: ").map(str::to_owned).unwrap_or(joined)
}

/// One announcement on stdout: `text` as it is in text mode, else a JSON
/// object of `message` and `fields`.
fn announce(text: String, message: &str, fields: &[(&str, Value)]) {
    match format() {
        LogFormat::Text => println!("{text}"),
        LogFormat::Json => println!("{}", json_line("INFO", message, fields)),
    }
}

/// `{"timestamp":…,"level":…,"message":…,<fields>}`, in that order (the
/// order of the JSON logs), with the logs' timestamp format.
fn json_line(level: &str, message: &str, fields: &[(&str, Value)]) -> String {
    let mut timestamp = String::new();
    // Writing into a String cannot fail; an empty timestamp would still be JSON.
    let _written = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    let mut line = format!(
        "{{\"timestamp\":{},\"level\":{},\"message\":{}",
        Value::from(timestamp),
        Value::from(level),
        Value::from(message)
    );
    for (name, value) in fields {
        line.push_str(&format!(",{}:{value}", Value::from(*name)));
    }
    line.push('}');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_line_is_one_object_in_the_logs_order() {
        let line = json_line("INFO", "keysd listening", &[("address", Value::from("http://127.0.0.1:1"))]);
        assert!(!line.contains('\n'));
        let object: serde_json::Map<String, Value> = serde_json::from_str(&line).expect("JSON");
        assert_eq!(object["level"], "INFO");
        assert_eq!(object["message"], "keysd listening");
        assert_eq!(object["address"], "http://127.0.0.1:1");
        assert!(object["timestamp"].as_str().is_some_and(|timestamp| timestamp.ends_with('Z')), "{line}");
        let order: Vec<usize> = ["\"timestamp\"", "\"level\"", "\"message\"", "\"address\""]
            .iter()
            .filter_map(|key| line.find(key))
            .collect();
        assert!(order.len() == 4 && order.is_sorted(), "{line}");
        // Quotes and newlines in a message stay inside its string.
        let tricky = json_line("ERROR", "a \"quoted\"\nmessage", &[]);
        assert_eq!(serde_json::from_str::<Value>(&tricky).expect("JSON")["message"], "a \"quoted\"\nmessage");
    }
}

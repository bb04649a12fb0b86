//! `cargo xtask schemathesis`: schemathesis (from PyPI, pinned to
//! [`PACKAGE`]) against a live `keysd` and its own `/openapi.json`, with
//! every check, over both dialects; part of `cargo xtask ci`.
//!
//! The `keysd` is the debug binary the test suite has just built (its
//! crypto dependencies are optimised even there, see the root
//! `Cargo.toml`), serving a fresh SQLite file in `target/schemathesis/`,
//! bootstrapped with its service token. Small caps (`--max-…`) keep what
//! the run can create bounded: at most [`KEYS_PER_WORKSPACE`] keys of each
//! kind and [`ORGANISATION_KEYS`] RSA keys, however many cases it sends.
//!
//! Two runs, each deterministic (`--generation-deterministic`: the same
//! cases every time) and bounded ([`MAX_EXAMPLES`] per operation):
//! 1. every operation, `Authorization: ServiceToken …`;
//! 2. dialect 2's authenticated operations again, `Authorization: Bearer …`.
//!
//! A run fails on any 5xx, any response its schema does not describe, any
//! request the document calls valid that is refused and any it calls
//! invalid that is accepted. What a schema cannot say is told to
//! schemathesis from the document itself, not listed here: an operation
//! whose 400 is documented as a rule of the current state or the clock
//! (`RULE_REFUSAL` of keys-http's `openapi.rs`: the default public key is
//! not deleted while others live, a slug is taken, only an active key is
//! rolled) may answer a valid request with that 400. Forward
//! authentication answers every method (gateways keep the client's; OpenAPI
//! 3.1 lists eight) and documents its gateway token as a security scheme,
//! so a method the document does not list gets the 401 of a missing token,
//! which `unsupported_method` accepts from a protected operation.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The schemathesis release the CI installs.
pub const PACKAGE: &str = "schemathesis==4.32.5";

/// Test cases per operation and phase.
const MAX_EXAMPLES: u32 = 20;

/// The caps of the server under test.
const KEYS_PER_WORKSPACE: u32 = 200;
const ORGANISATION_KEYS: u32 = 40;
const WORKSPACES: u32 = 200;

/// How keys-http's `RULE_REFUSAL` description begins.
const RULE_REFUSAL_PREFIX: &str = "Refused by a rule of the resource's current state";

/// The statuses a valid request may get from an operation with a rule
/// refusal: schemathesis's defaults (without 5xx, which always fails) and 400.
const RULE_STATUSES: &str = r#"["2xx", "3xx", "400", "401", "403", "404", "409", "429"]"#;

pub fn main(_args: &[String]) -> Result<()> {
    let python = crate::ensure_test_tools()?;
    run(&python)
}

/// Builds `keysd` (nothing to do after the test suite), serves it and runs
/// both passes; fails when schemathesis finds anything.
pub fn run(python: &Path) -> Result<()> {
    let started = Instant::now();
    let mut build = crate::cargo();
    build.args(["build", "--package", "keysd", "--bin", "keysd"]);
    crate::run(build)?;
    let keysd = crate::target_dir().join("debug/keysd");
    let directory = crate::target_dir().join("schemathesis");
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).with_context(|| format!("cannot create {}", directory.display()))?;
    let schemathesis = python.with_file_name("schemathesis");
    let passes = [
        ("every operation, ServiceToken", "ServiceToken", None),
        ("dialect 2, Bearer", "Bearer", Some("^/api/organisations/v1/organisations/\\{organisation_id\\}/keys")),
    ];
    for (index, (name, scheme, only)) in passes.into_iter().enumerate() {
        eprintln!("schemathesis: {name}");
        // Each pass on a fresh database, so neither meets what the other made.
        let directory = directory.join(format!("pass-{}", index + 1));
        std::fs::create_dir_all(&directory).with_context(|| format!("cannot create {}", directory.display()))?;
        let server = Server::start(&keysd, &directory)?;
        let document = http_get(&server.address, "/openapi.json")?;
        let config = directory.join("schemathesis.toml");
        std::fs::write(&config, config_text(&server.organisation, &rule_refusals(&document)?))
            .with_context(|| format!("cannot write {}", config.display()))?;
        let authorization = format!("{scheme} {}", server.token);
        let mut command = Command::new(&schemathesis);
        command
            .current_dir(&directory)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(format!("http://{}/openapi.json", server.address))
            // One worker: CPython 3.11's `ast` is not thread-safe, and
            // hypothesis parses lambdas with it ("AST constructor recursion
            // depth mismatch" with two).
            .args(["--checks", "all", "--generation-deterministic", "--workers", "1", "--no-color"])
            .args(["--max-examples", &MAX_EXAMPLES.to_string(), "--request-timeout", "30"])
            .args(["--header", &format!("Authorization: {authorization}")]);
        if let Some(pattern) = only {
            command.args(["--include-path-regex", pattern]);
        }
        // The token is in the command line: print it without.
        eprintln!("$ schemathesis run … --checks all --max-examples {MAX_EXAMPLES} ({name})");
        let status = command.status().with_context(|| format!("could not start {}", schemathesis.display()))?;
        if !status.success() {
            bail!("schemathesis ({name}) found problems ({status}); the server's log is {}", server.log.display());
        }
    }
    eprintln!("schemathesis: no findings in {:.0?}", started.elapsed());
    Ok(())
}

/// A `keysd serve` on a fresh database, stopped when dropped.
struct Server {
    child: Child,
    address: String,
    token: String,
    organisation: String,
    log: PathBuf,
}

impl Server {
    fn start(keysd: &Path, directory: &Path) -> Result<Self> {
        let log = directory.join("keysd.log");
        let stderr = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = Command::new(keysd)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
            .arg(format!("sqlite://{}", directory.join("keysd.db").display()))
            .args(["--max-keys-per-workspace", &KEYS_PER_WORKSPACE.to_string()])
            .args(["--max-organisation-keys", &ORGANISATION_KEYS.to_string()])
            .args(["--max-workspaces-per-organisation", &WORKSPACES.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("could not start {}", keysd.display()))?;
        let stdout = child.stdout.take().context("keysd's stdout")?;
        let (mut address, mut token, mut organisation) = (None, None, None);
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading keysd's stdout")?;
            if let Some(rest) = line.strip_prefix("keysd bootstrapped organisation 'default' (") {
                organisation = rest.split(')').next().map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("keysd service token (shown once, store it now): ") {
                token = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("keysd listening on http://") {
                address = Some(rest.trim().to_owned());
                break;
            }
        }
        let mut server = Self { child, address: String::new(), token: String::new(), organisation: String::new(), log };
        match (address, token, organisation) {
            (Some(address), Some(token), Some(organisation)) => {
                (server.address, server.token, server.organisation) = (address, token, organisation);
                Ok(server)
            }
            _ => {
                let _ = server.child.kill();
                bail!("keysd did not start and bootstrap; see {}", server.log.display())
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a plain `GET` on the server.
fn http_get(address: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(address).with_context(|| format!("cannot connect to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => bail!("GET {path} did not answer 200"),
    }
}

/// The operation ids whose documented 400 is a rule refusal.
fn rule_refusals(document: &str) -> Result<Vec<String>> {
    let document: serde_json::Value = serde_json::from_str(document).context("/openapi.json is not JSON")?;
    let paths = document["paths"].as_object().context("/openapi.json has no paths")?;
    let mut ids = Vec::new();
    for item in paths.values() {
        for operation in item.as_object().into_iter().flat_map(|item| item.values()) {
            let description = operation["responses"]["400"]["description"].as_str().unwrap_or_default();
            if let (true, Some(id)) = (description.starts_with(RULE_REFUSAL_PREFIX), operation["operationId"].as_str())
            {
                ids.push(id.to_owned());
            }
        }
    }
    if ids.is_empty() {
        bail!("/openapi.json documents no rule refusal: has RULE_REFUSAL of keys-http changed?");
    }
    ids.sort();
    Ok(ids)
}

/// The configuration of both passes: the path parameters that name what the
/// bootstrap made, and what the document says a schema cannot.
fn config_text(organisation: &str, rule_refusals: &[String]) -> String {
    let ids = rule_refusals.iter().map(|id| format!("\"{id}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "# Written by `cargo xtask schemathesis`.\n\
         [parameters]\n\
         \"path.workspace\" = \"staging\"\n\
         \"path.organisation_id\" = \"{organisation}\"\n\n\
         # A 400 documented as a rule of the current state or of the clock.\n\
         [[operations]]\n\
         include-operation-id = [{ids}]\n\
         checks.positive_data_acceptance.expected-statuses = {RULE_STATUSES}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_refusals_are_read_from_the_document() {
        let document = serde_json::json!({"paths": {
            "/a": {"delete": {"operationId": "delete-a", "responses": {"400": {"description": format!("{RULE_REFUSAL_PREFIX}, …")}}},
                   "get": {"operationId": "get-a", "responses": {"400": {"description": "The request is not acceptable."}}}},
            "/b": {"post": {"operationId": "post-b", "responses": {"201": {"description": "Created"}}}},
        }});
        assert_eq!(rule_refusals(&document.to_string()).expect("one"), ["delete-a"]);
        let none = serde_json::json!({"paths": {"/b": {"post": {"operationId": "post-b", "responses": {}}}}});
        assert!(rule_refusals(&none.to_string()).is_err(), "a document without any is a broken marker");
    }

    #[test]
    fn the_config_names_the_organisation_and_the_operations() {
        let text = config_text("01ARZ3NDEKTSV4RRFFQ69G5FAV", &["delete-a".to_owned(), "post-b".to_owned()]);
        assert!(text.contains("\"path.organisation_id\" = \"01ARZ3NDEKTSV4RRFFQ69G5FAV\""));
        assert!(text.contains("include-operation-id = [\"delete-a\", \"post-b\"]"));
        assert!(text.contains("\"400\""));
    }
}

//! Checks against the generated OpenAPI document with independent tools:
//! `check_openapi.py` beside this file, run by Python with
//! `openapi-spec-validator` and `jsonschema` (see `.ci/run`). A missing
//! Python or package is a failure, never a skip.
//!
//! [`Recorder`] collects the responses a test sees and, when it is dropped
//! at the end of a test that did not already fail, checks them all in one
//! Python call: each against the schema documented for its route template,
//! method and status.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::{json, Value};

/// The Python interpreter: `KEYSD_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("KEYSD_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// Runs the checker on `request`; `Err` carries the problems it reports.
pub fn run_checker(request: &Value) -> Result<(), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/support/check_openapi.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {} (set KEYSD_PYTHON, see .ci/run): {error}", python()));
    let input = serde_json::to_vec(request).expect("serialise");
    child.stdin.take().expect("stdin").write_all(&input).expect("write to the checker");
    let output = child.wait_with_output().expect("checker finishes");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Ok(()),
        // Problems found: one a line on stdout.
        Some(1) if stderr.trim().is_empty() => Err(stdout.into_owned()),
        // Anything else (a missing module, a crash) is not a verdict.
        _ => panic!(
            "the OpenAPI checker did not run (install openapi-spec-validator and jsonschema, see .ci/run):\n\
             {stdout}\n{stderr}"
        ),
    }
}

/// The document as served, without `servers`.
pub fn document() -> Value {
    serde_json::from_str(keys_http::openapi::document()).expect("the document is JSON")
}

/// One response as a test saw it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// Checks observations against the document.
pub fn check_observations(observations: &[Observation]) -> Result<(), String> {
    let observations: Vec<Value> = observations
        .iter()
        .filter_map(|seen| {
            // Paths that match no route (404) are not the document's.
            let matched = keys_http::router::resolve(&seen.path)?;
            Some(json!({
                "method": seen.method,
                "path": seen.path,
                "pattern": matched.route.pattern(),
                "status": seen.status,
                "content_type": seen.content_type,
                "body": seen.body,
            }))
        })
        .collect();
    if observations.is_empty() {
        return Ok(());
    }
    run_checker(&json!({"mode": "responses", "document": document(), "observations": observations}))
}

/// Collects the responses of one test and checks them when dropped.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<Vec<Observation>>,
}

impl Recorder {
    pub fn record(&self, observation: Observation) {
        self.seen.lock().expect("recorder").push(observation);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let seen = std::mem::take(&mut *self.seen.lock().expect("recorder"));
        if let Err(problems) = check_observations(&seen) {
            panic!("responses that do not match /openapi.json:\n{problems}");
        }
    }
}

//! `--config FILE` and `--log-format json` on the real binary: a file's
//! settings reach `serve` (the address it listens on, the database it
//! opens, a metrics listener) and the operator commands (the database);
//! its environment variable beats the file and its flag beats both; an
//! unknown key or a bad value stops the start before anything is opened,
//! in one line naming the file and the key; and in JSON every line on
//! stdout and stderr is one object, the bootstrap token in exactly one of
//! them and working.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_keysd");

/// A bound on what must happen (a start, a stop) on a loaded two-core
/// machine; reaching it is a failure, never a measure of speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A free port on loopback, for a setting the test must see honoured.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// Writes `text` as `keysd.toml` in `dir`; its path.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("keysd.toml");
    std::fs::write(&path, text).expect("config file");
    path
}

/// `keysd <args>` with a small RSA pool (the tests share two cores) and
/// `environment`, stdout piped, stderr into `stderr`.
fn keysd(args: &[&str], environment: &[(&str, &str)], stderr: &Path) -> Child {
    Command::new(BINARY)
        .args(args)
        .env("KEYSD_RSA_POOL_SIZE", "0")
        .envs(environment.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr).expect("stderr file"))
        .kill_on_drop(true)
        .spawn()
        .expect("keysd starts")
}

/// A running `keysd serve` and the lines it wrote to stdout until it
/// announced its address.
struct Serving {
    child: Child,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    lines: Vec<String>,
    stderr: PathBuf,
}

impl Serving {
    /// Starts `keysd <args>` and reads stdout up to the line `is_listening`
    /// accepts.
    async fn start(args: &[&str], environment: &[(&str, &str)], dir: &Path, is_listening: fn(&str) -> bool) -> Self {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let stderr = dir.join(format!("keysd-{}.log", STARTS.fetch_add(1, Ordering::Relaxed)));
        let mut child = keysd(args, environment, &stderr);
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut lines = Vec::new();
        tokio::time::timeout(PATIENCE, async {
            while let Some(line) = stdout.next_line().await.expect("stdout") {
                lines.push(line);
                if is_listening(lines.last().expect("a line")) {
                    return;
                }
            }
            panic!("keysd exited before listening: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
        })
        .await
        .expect("keysd listens in time");
        Self { child, stdout, lines, stderr }
    }

    /// The text-mode `keysd listening on URL` line's URL.
    fn address(&self) -> &str {
        self.lines.iter().find_map(|line| line.strip_prefix("keysd listening on ")).expect("a listening line")
    }

    /// SIGTERM, a clean exit, and everything it wrote: stdout's lines, then
    /// stderr's.
    async fn stop(mut self) -> (Vec<String>, Vec<String>) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success());
        let mut lines = self.lines;
        tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.stdout.next_line().await.expect("stdout") {
                lines.push(line);
            }
        })
        .await
        .expect("stdout closes");
        let exit = tokio::time::timeout(PATIENCE, self.child.wait()).await.expect("keysd stops").expect("wait");
        let stderr = std::fs::read_to_string(&self.stderr).expect("stderr");
        assert!(exit.success(), "keysd exit {exit:?}: {stderr}");
        (lines, stderr.lines().map(str::to_owned).collect())
    }
}

fn text_listening(line: &str) -> bool {
    line.starts_with("keysd listening on ")
}

/// `keysd <args>` to its end: exit success, stdout and stderr.
async fn run(args: &[&str], environment: &[(&str, &str)]) -> (bool, String, String) {
    let output = Command::new(BINARY).args(args).envs(environment.iter().copied()).output().await.expect("keysd runs");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("utf-8");
    (output.status.success(), text(output.stdout), text(output.stderr))
}

/// The status code of `GET path` on `base` (`http://ADDR`) with `token`,
/// over a plain HTTP/1.1 connection.
async fn status_of(base: &str, path: &str, token: &str) -> u16 {
    let address = base.strip_prefix("http://").expect("an http:// address");
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: ServiceToken {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("response");
    let status = response.split(' ').nth(1).expect("a status line");
    status.parse().expect("a status code")
}

#[tokio::test]
async fn a_file_sets_what_serve_listens_on_and_opens() {
    let db = keys_testkit::TestDb::sqlite();
    let port = free_port();
    let database = db.dir().join("from-the-file.db");
    let file = config_file(
        db.dir(),
        &format!(
            "# keysd's settings\nlisten = \"127.0.0.1:{port}\"\ndatabase-url = \"sqlite://{}\"\n\
             metrics-listen = \"127.0.0.1:0\"\ncache-ttl-ms = 250\njwt-audience = [\"a\", \"b\"]\n\
             jwt-require-exp = true\n",
            database.display()
        ),
    );
    let config = file.to_str().expect("utf-8 path");
    let server = Serving::start(&["--config", config, "serve"], &[], db.dir(), text_listening).await;
    assert_eq!(server.address(), format!("http://127.0.0.1:{port}"));
    assert!(database.exists(), "serve opened the file's database");
    let metrics = server.lines.iter().find_map(|line| line.strip_prefix("keysd metrics on ")).map(str::to_owned);
    let metrics = metrics.expect("metrics-listen from the file: a metrics line");
    let token = server
        .lines
        .iter()
        .find_map(|line| line.strip_prefix("keysd service token (shown once, store it now): "))
        .expect("a bootstrap token")
        .to_owned();
    assert_eq!(status_of(server.address(), "/v1/workspace/", &token).await, 200);
    // With --metrics-listen, /metrics moves off the main address.
    assert_eq!(status_of(server.address(), "/metrics", &token).await, 404);
    let metrics_base = metrics.strip_suffix("/metrics").expect("a /metrics URL");
    assert_eq!(status_of(metrics_base, "/metrics", &token).await, 200);
    server.stop().await;
}

#[tokio::test]
async fn the_environment_beats_the_file_and_a_flag_beats_both() {
    let db = keys_testkit::TestDb::sqlite();
    let [from_file, from_environment, from_flag] = [free_port(), free_port(), free_port()];
    let file = config_file(
        db.dir(),
        &format!("listen = \"127.0.0.1:{from_file}\"\ndatabase-url = \"sqlite://{}/keysd.db\"\n", db.dir().display()),
    );
    let config = file.to_str().expect("utf-8 path");
    let environment_listen = format!("127.0.0.1:{from_environment}");
    let environment = [("KEYSD_LISTEN", environment_listen.as_str())];
    let server = Serving::start(&["--config", config, "serve"], &environment, db.dir(), text_listening).await;
    assert_eq!(server.address(), format!("http://127.0.0.1:{from_environment}"), "the environment beats the file");
    server.stop().await;
    let flag_listen = format!("127.0.0.1:{from_flag}");
    let args = ["--config", config, "serve", "--listen", &flag_listen];
    let server = Serving::start(&args, &environment, db.dir(), text_listening).await;
    assert_eq!(server.address(), format!("http://127.0.0.1:{from_flag}"), "the flag beats the environment");
    server.stop().await;
    // And KEYSD_CONFIG names the file as --config does.
    let server = Serving::start(&["serve"], &[("KEYSD_CONFIG", config)], db.dir(), text_listening).await;
    assert_eq!(server.address(), format!("http://127.0.0.1:{from_file}"), "the file beats the default");
    server.stop().await;
}

#[tokio::test]
async fn operator_commands_take_the_database_from_the_file() {
    let db = keys_testkit::TestDb::sqlite();
    let database = db.dir().join("operators.db");
    // Serve's keys are there too: one file for the server and the commands.
    let file =
        config_file(db.dir(), &format!("database-url = \"sqlite://{}\"\ncache-ttl-ms = 100\n", database.display()));
    let config = file.to_str().expect("utf-8 path");
    let (created, organisation, errors) = run(&["--config", config, "org", "create", "acme"], &[]).await;
    assert!(created, "{errors}");
    assert!(database.exists(), "the file's database was created");
    let (created, token, errors) =
        run(&["token", "create", "--org", "acme", "--name", "ci"], &[("KEYSD_CONFIG", config)]).await;
    assert!(created && token.trim().starts_with("kst_"), "{errors}");
    assert!(!organisation.trim().is_empty());
}

#[tokio::test]
async fn an_unknown_key_or_a_bad_value_stops_the_start_naming_it() {
    let db = keys_testkit::TestDb::sqlite();
    let database = db.dir().join("never.db");
    for (text, named) in [
        ("listen = \"127.0.0.1:0\"\ncache-ttl = 100\n", "unknown key 'cache-ttl'"),
        ("cache-ttl-ms = 5000\n", "key 'cache-ttl-ms': invalid value '5000'"),
        ("max-connections = \"many\"\n", "key 'max-connections': invalid value 'many'"),
        ("log-format = \"xml\"\n", "key 'log-format': invalid value 'xml'"),
    ] {
        let file = config_file(db.dir(), &format!("database-url = \"sqlite://{}\"\n{text}", database.display()));
        let config = file.to_str().expect("utf-8 path");
        for args in [&["--config", config, "serve"][..], &["--config", config, "org", "create", "acme"]] {
            let (started, stdout, stderr) = run(args, &[]).await;
            assert!(!started, "{args:?} started with {text}");
            assert!(stdout.is_empty(), "{stdout}");
            assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
            assert!(stderr.starts_with("keysd: error: config file "), "{stderr}");
            assert!(stderr.contains(config) && stderr.contains(named), "{named}: {stderr}");
            assert!(!database.exists(), "nothing was opened");
        }
    }
    // The same refusal, as one JSON object, when the logs are JSON.
    let file = config_file(db.dir(), "cache-ttl = 100\n");
    let config = file.to_str().expect("utf-8 path");
    let (started, _, stderr) = run(&["--log-format", "json", "--config", config, "serve"], &[]).await;
    assert!(!started);
    let object: Map<String, Value> = serde_json::from_str(stderr.trim()).expect("one JSON object");
    assert_eq!(object["level"], "ERROR");
    assert!(object["message"].as_str().is_some_and(|message| message.contains("'cache-ttl'")), "{stderr}");
}

/// Each line as a JSON object, or a failure naming the line.
fn objects(stream: &str, lines: &[String]) -> Vec<Map<String, Value>> {
    lines
        .iter()
        .map(|line| {
            let object: Map<String, Value> = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("a {stream} line is not one JSON object ({error}): {line}"));
            assert!(object["timestamp"].is_string() && object["level"].is_string(), "{stream}: {line}");
            object
        })
        .collect()
}

#[tokio::test]
async fn json_logs_on_a_fresh_database_are_one_object_a_line() {
    let db = keys_testkit::TestDb::sqlite();
    let url = format!("sqlite://{}", db.dir().join("json.db").display());
    let args = ["--log-format", "json", "serve", "--listen", "127.0.0.1:0", "--database-url", &url];
    let is_listening = |line: &str| line.contains("\"message\":\"keysd listening\"");
    let server = Serving::start(&args, &[("RUST_LOG", "debug")], db.dir(), is_listening).await;
    let announced = objects("stdout", &server.lines);
    let listening = announced.iter().find(|object| object["message"] == "keysd listening").expect("listening");
    let base = listening["address"].as_str().expect("an address").to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let bootstrapped = announced.iter().find(|object| object["message"] == "keysd bootstrapped organisation");
    assert!(bootstrapped.is_some_and(|object| object["organisation"] == "default"), "{announced:?}");
    let token = announced
        .iter()
        .find_map(|object| object.get("token").and_then(Value::as_str))
        .expect("the token line")
        .to_owned();
    assert!(token.starts_with("kst_"));
    // Logged work at every level, so that the scan below covers it.
    assert_eq!(status_of(&base, "/v1/workspace/", &token).await, 200, "the bootstrap token is an admin's");
    assert_eq!(status_of(&base, "/v1/workspace/", "kst_not_a_token").await, 401);
    let (stdout, stderr) = server.stop().await;
    let stdout_objects = objects("stdout", &stdout);
    let stderr_objects = objects("stderr", &stderr);
    assert!(stderr_objects.iter().any(|object| object["level"] == "DEBUG"), "RUST_LOG=debug reached the logs");
    let carrying: Vec<&String> = stdout.iter().chain(&stderr).filter(|line| line.contains(&token)).collect();
    assert_eq!(carrying.len(), 1, "the token is on one line only: {carrying:#?}");
    let token_lines = stdout_objects.iter().filter(|object| object.get("token").is_some()).count();
    assert_eq!(token_lines, 1);
}

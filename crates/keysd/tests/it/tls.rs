//! HTTPS end to end: the real `keysd serve` with `--tls-cert-file` and
//! `--tls-key-file`, certificates made by the `openssl` command line (a CA
//! and leaves for 127.0.0.1 and localhost), and independent clients: `curl`
//! (HTTP/1.1 and HTTP/2 by ALPN, TLS 1.2 and 1.3) and Python's `ssl` (a
//! connection kept open across a certificate rotation). Every wait is a
//! generous bound on something that must happen.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use keys_testkit::TestDb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_keysd");

/// Long enough for anything that must happen to happen on a loaded
/// two-core machine; reaching it is a failure.
const PATIENCE: Duration = Duration::from_secs(30);

/// What keysd promises: a changed certificate is served within this.
const RELOADED_WITHIN: Duration = Duration::from_secs(10);

// ------------------------------------------------------------ certificates

/// A CA and the leaves it signed, as PEM files in a directory.
struct Pki {
    dir: PathBuf,
}

/// A leaf certificate and its key, by file.
struct Leaf {
    certificate: PathBuf,
    key: PathBuf,
}

impl Pki {
    /// A new CA (P-256) in `dir`.
    fn new(dir: &Path) -> Self {
        let pki = Self { dir: dir.join("pki") };
        std::fs::create_dir_all(&pki.dir).expect("pki directory");
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=keysd test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        pki
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A leaf for 127.0.0.1 and localhost named `name` (its common name),
    /// with a key of `algorithm` (`ec` or `rsa`) and serial `serial`.
    fn leaf(&self, name: &str, algorithm: &str, serial: u32) -> Leaf {
        let key_spec = if algorithm == "rsa" { "rsa:2048" } else { "ec" };
        let mut request = vec!["req", "-new", "-newkey", key_spec, "-nodes"];
        if algorithm == "ec" {
            request.extend(["-pkeyopt", "ec_paramgen_curve:prime256v1"]);
        }
        let (key, csr, certificate) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let subject = format!("/CN={name}");
        request.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        self.openssl(&request);
        let extensions = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&extensions),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n\
             subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
        )
        .expect("extensions file");
        let serial = serial.to_string();
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            &serial,
            "-days",
            "2",
            "-extfile",
            &extensions,
            "-out",
            &certificate,
        ]);
        Leaf { certificate: self.dir.join(certificate), key: self.dir.join(key) }
    }

    fn openssl(&self, args: &[&str]) {
        let output =
            std::process::Command::new("openssl").args(args).current_dir(&self.dir).output().expect("openssl runs");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

impl Leaf {
    /// Copies this pair over the files `served` names, key first (as an
    /// operator's `cp` would: not atomically).
    fn install_as(&self, served: &Leaf) {
        std::fs::copy(&self.key, &served.key).expect("copy the key");
        std::fs::copy(&self.certificate, &served.certificate).expect("copy the certificate");
    }

    fn flags(&self) -> [String; 4] {
        let path = |file: &Path| file.to_str().expect("utf-8 path").to_owned();
        ["--tls-cert-file".to_owned(), path(&self.certificate), "--tls-key-file".to_owned(), path(&self.key)]
    }
}

// ------------------------------------------------------------------ server

/// A running `keysd serve` over TLS, killed on drop.
struct Https {
    _child: Child,
    port: u16,
    metrics_port: Option<u16>,
    log: PathBuf,
}

impl Https {
    async fn start(db: &TestDb, leaf: &Leaf, extra: &[&str]) -> Self {
        let log = db.dir().join("keysd-tls.log");
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db.url()])
            .args(leaf.flags())
            .args(extra)
            .env("KEYSD_RSA_POOL_SIZE", "0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("keysd starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port_of = |address: &str| address.rsplit(':').next().and_then(|port| port.parse::<u16>().ok());
        let mut metrics_port = None;
        let port = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.expect("stdout") {
                if let Some(address) = line.strip_prefix("keysd metrics on https://") {
                    metrics_port = port_of(address.trim_end_matches("/metrics"));
                }
                if let Some(address) = line.strip_prefix("keysd listening on https://") {
                    return port_of(address).expect("a port");
                }
            }
            panic!("keysd exited before listening: {}", std::fs::read_to_string(&log).unwrap_or_default());
        })
        .await
        .expect("keysd listens in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { _child: child, port, metrics_port, log }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("log")
    }
}

/// curl's `-w` line after the body (`status version`) and its `-v` output.
struct Curled {
    status: String,
    http_version: String,
    body: String,
    verbose: String,
}

async fn curl(url: &str, flags: &[&str]) -> Curled {
    let output = Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--verbose",
            "--max-time",
            "20",
            "--write-out",
            "\n%{http_code} %{http_version}",
        ])
        .args(flags)
        .arg(url)
        .output()
        .await
        .expect("curl runs (the suite needs it: `cargo xtask ci` installs it)");
    let verbose = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "curl {flags:?} {url}: {verbose}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let (body, written) = stdout.rsplit_once('\n').expect("the write-out line");
    let (status, http_version) = written.split_once(' ').expect("status and version");
    Curled { status: status.to_owned(), http_version: http_version.to_owned(), body: body.to_owned(), verbose }
}

/// Waits until the peer closes `stream` (EOF or reset); whatever it sent
/// before is read and dropped.
async fn closed_by_peer(stream: &mut TcpStream) {
    let mut buffer = [0_u8; 1024];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The start of a TLS record holding a 512-byte handshake message, and
/// nothing of the message: a client that begins a handshake and stops.
const HALF_A_HANDSHAKE: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01];

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn https_over_tls_1_2_and_1_3_http_2_by_alpn_on_both_listeners_and_plain_http_is_told_to_use_https() {
    let db = TestDb::sqlite();
    let pki = Pki::new(db.dir());
    let leaf = pki.leaf("keysd-first", "ec", 1001);
    let ca = pki.ca();
    let ca = ca.to_str().expect("utf-8 path");
    // A header timeout longer than any wait below: what closes a connection
    // here is the connection table, not the timer.
    let server = Https::start(
        &db,
        &leaf,
        &["--metrics-listen", "127.0.0.1:0", "--max-connections", "2", "--header-read-timeout-seconds", "120"],
    )
    .await;

    let http1 = curl(&server.url("/health"), &["--cacert", ca, "--http1.1"]).await;
    assert_eq!((http1.status.as_str(), http1.http_version.as_str()), ("200", "1.1"), "{}", http1.verbose);
    assert!(http1.verbose.contains("CN=keysd-first"), "{}", http1.verbose);
    let http2 = curl(&server.url("/ready"), &["--cacert", ca, "--http2"]).await;
    assert_eq!((http2.status.as_str(), http2.http_version.as_str()), ("200", "2"), "{}", http2.verbose);
    assert!(http2.verbose.contains("ALPN: server accepted h2"), "{}", http2.verbose);
    for (flags, version) in
        [(["--tlsv1.2", "--tls-max", "1.2"], "TLSv1.2"), (["--tlsv1.3", "--tls-max", "1.3"], "TLSv1.3")]
    {
        let answer = curl(&server.url("/health"), &[&["--cacert", ca], &flags[..]].concat()).await;
        assert_eq!(answer.status, "200");
        assert!(answer.verbose.contains(&format!("SSL connection using {version}")), "{}", answer.verbose);
    }
    let metrics_port = server.metrics_port.expect("keysd metrics on https://…");
    let metrics = curl(&format!("https://localhost:{metrics_port}/metrics"), &["--cacert", ca]).await;
    assert_eq!(metrics.status, "200");
    assert!(metrics.body.contains("keysd_"), "{}", metrics.body);

    let plain = curl(&format!("http://127.0.0.1:{}/health", server.port), &[]).await;
    assert_eq!(plain.status, "400", "{}", plain.verbose);
    assert!(plain.body.contains("HTTPS"), "{}", plain.body);

    // The table holds two connections: two clients stuck in their
    // handshakes, then a real one, which takes the place of the oldest.
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
        stream.write_all(HALF_A_HANDSHAKE).await.expect("write");
        stuck.push(stream);
    }
    let served = curl(&server.url("/health"), &["--cacert", ca]).await;
    assert_eq!(served.status, "200");
    tokio::time::timeout(PATIENCE, closed_by_peer(&mut stuck[0]))
        .await
        .expect("the oldest half-done handshake is evicted from the full table");
}

#[tokio::test]
async fn a_handshake_is_bounded_by_the_header_read_timeout() {
    let db = TestDb::sqlite();
    let pki = Pki::new(db.dir());
    let leaf = pki.leaf("keysd-first", "ec", 1001);
    let server = Https::start(&db, &leaf, &["--header-read-timeout-seconds", "1"]).await;
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    let mut half = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    half.write_all(HALF_A_HANDSHAKE).await.expect("write");
    tokio::time::timeout(PATIENCE, closed_by_peer(&mut silent)).await.expect("a silent client is closed");
    tokio::time::timeout(PATIENCE, closed_by_peer(&mut half)).await.expect("half a handshake is closed");
    let ca = pki.ca();
    let answer = curl(&server.url("/health"), &["--cacert", ca.to_str().expect("utf-8 path")]).await;
    assert_eq!(answer.status, "200", "and keysd serves on");
}

/// A Python client with one HTTPS connection kept open: `get` sends
/// `GET /health` on it and prints `status local-port common-name` (the
/// connection's certificate); `probe` makes a new handshake and prints the
/// common name it was shown.
const PYTHON_CLIENT: &str = r#"
import http.client, socket, ssl, sys
ca, port = sys.argv[1], int(sys.argv[2])
context = ssl.create_default_context(cafile=ca)
def name(sock):
    return dict(pair[0] for pair in sock.getpeercert()["subject"])["commonName"]
connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
connection.connect()
connection.auto_open = 0
for line in sys.stdin:
    if line.strip() == "get":
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        print(response.status, connection.sock.getsockname()[1], name(connection.sock), flush=True)
    elif line.strip() == "probe":
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                print(name(tls), flush=True)
"#;

struct PythonClient {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl PythonClient {
    fn start(ca: &Path, port: u16) -> Self {
        let interpreter = std::env::var("KEYSD_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut child = Command::new(interpreter)
            .args(["-c", PYTHON_CLIENT, ca.to_str().expect("utf-8 path"), &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self { _child: child, stdin, stdout }
    }

    async fn ask(&mut self, command: &str) -> String {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await.expect("to python");
        let line = tokio::time::timeout(PATIENCE, self.stdout.next_line()).await.expect("python answers in time");
        line.expect("python's stdout").expect("python answered (see its stderr above)")
    }
}

#[tokio::test]
async fn a_changed_certificate_serves_new_handshakes_while_open_connections_go_on_and_a_bad_one_is_not_taken() {
    let db = TestDb::sqlite();
    let pki = Pki::new(db.dir());
    let first = pki.leaf("keysd-first", "ec", 1001);
    let second = pki.leaf("keysd-second", "rsa", 2002);
    let served = Leaf { certificate: db.dir().join("served.pem"), key: db.dir().join("served.key") };
    first.install_as(&served);
    // Readable by all: keysd says so (and serves).
    std::fs::set_permissions(&served.key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // Idle keep-alive connections outlive the rotation.
    let server = Https::start(&db, &served, &["--header-read-timeout-seconds", "60"]).await;
    assert!(server.log().contains("the TLS key file is readable by other users"), "{}", server.log());
    let mut client = PythonClient::start(&pki.ca(), server.port);
    let before = client.ask("get").await;
    assert!(before.starts_with("200 ") && before.ends_with(" keysd-first"), "{before}");
    assert_eq!(client.ask("probe").await, "keysd-first");

    second.install_as(&served);
    let installed = Instant::now();
    loop {
        let shown = client.ask("probe").await;
        if shown == "keysd-second" {
            break;
        }
        assert_eq!(shown, "keysd-first");
        assert!(installed.elapsed() < RELOADED_WITHIN, "the new certificate is served within 10 s: {}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = client.ask("get").await;
    assert_eq!(after, before, "the connection opened before the rotation answers, on the same socket");

    // A key that is not the certificate's: keysd says so and serves on with
    // the pair it has.
    std::fs::copy(&first.key, &served.key).expect("copy the key");
    let deadline = Instant::now() + PATIENCE;
    while !server.log().contains("TLS certificate not reloaded") {
        assert!(Instant::now() < deadline, "a warning about the bad pair: {}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(client.ask("probe").await, "keysd-second");
    assert!(client.ask("get").await.starts_with("200 "));
    let log = server.log();
    let warning = log.lines().find(|line| line.contains("TLS certificate not reloaded")).expect("the warning");
    assert!(warning.contains("served.key") && warning.contains("does not match"), "{warning}");
    for key in [&first.key, &second.key] {
        assert!(!log.contains(&key_line(key)), "the log quotes a private key");
    }
}

#[tokio::test]
async fn a_missing_or_bad_file_or_a_lone_flag_stops_the_start_with_one_line_naming_it() {
    let db = TestDb::sqlite();
    let pki = Pki::new(db.dir());
    let first = pki.leaf("keysd-first", "ec", 1001);
    let second = pki.leaf("keysd-second", "ec", 2002);
    let path = |file: &Path| file.to_str().expect("utf-8 path").to_owned();
    let missing = path(&db.dir().join("missing.pem"));
    let (first_certificate, first_key, second_key) = (path(&first.certificate), path(&first.key), path(&second.key));
    let ca = path(&pki.ca());
    let cases: [(&[&str], &str); 5] = [
        (&["--tls-cert-file", &first_certificate], "--tls-cert-file needs --tls-key-file"),
        (&["--tls-key-file", &first_key], "--tls-key-file needs --tls-cert-file"),
        (&["--tls-cert-file", &missing, "--tls-key-file", &first_key], &missing),
        (&["--tls-cert-file", &first_certificate, "--tls-key-file", &second_key], "does not match"),
        // A certificate where the key should be: no key in it.
        (&["--tls-cert-file", &first_certificate, "--tls-key-file", &ca], "no unencrypted PEM private key"),
    ];
    for (flags, expected) in cases {
        let output = tokio::time::timeout(
            PATIENCE,
            Command::new(BINARY)
                .args(["serve", "--listen", "127.0.0.1:0", "--database-url", db.url()])
                .args(flags)
                .env("RUST_LOG", "warn")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("keysd stops at once")
        .expect("keysd runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} started");
        let error = stderr.lines().last().expect("an error line");
        assert!(error.starts_with("keysd: error: ") && error.contains(expected), "{flags:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flags:?}: {stderr}");
        for key in [&first.key, &second.key] {
            assert!(!stderr.contains(&key_line(key)), "{flags:?}: the error quotes a private key");
        }
    }
}

/// A line of the base64 body of a PEM key file.
fn key_line(key: &Path) -> String {
    let pem = std::fs::read_to_string(key).expect("key");
    pem.lines().find(|line| !line.starts_with("-----")).expect("a line of the key").to_owned()
}

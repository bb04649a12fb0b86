//! keysd under hostile clients, end to end: the real `keysd` binary on
//! port 0 (SQLite in a temporary directory), raw TCP sockets that behave as
//! an attacker's would, and the process limits read back from
//! `/proc/<pid>/limits`. Timeouts are set short by flags; every wait below
//! is a generous bound on something that must happen, never a measure of
//! speed.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_keysd");

/// The HTTP/2 connection preface a client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Long enough for anything that must happen to happen on a loaded
/// two-core machine; reaching it is a failure.
const PATIENCE: Duration = Duration::from_secs(30);

/// A running `keysd serve`, killed on drop.
struct Keysd {
    child: Child,
    address: SocketAddr,
    /// The service token the first start printed.
    token: String,
    /// With `--metrics-listen`.
    metrics_address: Option<SocketAddr>,
    db: keys_testkit::TestDb,
}

impl Keysd {
    /// `keysd serve` with `flags`, started through `sh -c` so that `shell`
    /// (e.g. `ulimit` calls) runs first in the same process.
    async fn start_after(shell: &str, flags: &[&str]) -> Self {
        let db = keys_testkit::TestDb::sqlite();
        let url = db.url().to_owned();
        let script = format!("{shell} exec \"$0\" \"$@\"");
        let mut child = Command::new("sh")
            .args(["-c", &script, BINARY, "serve", "--listen", "127.0.0.1:0", "--database-url", &url])
            .args(flags)
            .env("KEYSD_RSA_POOL_SIZE", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(db.dir().join("keysd.log")).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("keysd starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut metrics_address = None;
        let mut token = String::new();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("stdout") {
                if let Some(at) = line.find("kst_") {
                    token = line[at..].trim().to_owned();
                }
                if let Some(address) = line.strip_prefix("keysd metrics on http://") {
                    metrics_address = Some(address.trim().trim_end_matches("/metrics").parse().expect("address"));
                }
                if let Some(address) = line.strip_prefix("keysd listening on http://") {
                    return address.trim().parse().expect("address");
                }
            }
            panic!("keysd exited before listening")
        })
        .await
        .expect("keysd listens within a minute");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, address, token, metrics_address, db }
    }

    async fn start(flags: &[&str]) -> Self {
        Self::start_after("", flags).await
    }

    /// What keysd logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.db.dir().join("keysd.log")).expect("log")
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.address).await.expect("connect")
    }

    /// `GET path` on a new connection; the status line's code.
    async fn get(&self, path: &str) -> u16 {
        get(self.address, path).await.0
    }

    /// keysd's resident memory, in bytes.
    fn rss(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// The value of the metrics line that starts with `series ` (on the
    /// main listener).
    async fn metric(&self, series: &str) -> u64 {
        let (status, metrics) = get(self.address, "/metrics").await;
        assert_eq!(status, 200);
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{series} in {metrics}"))
    }

    /// The soft and hard value of a line of `/proc/<pid>/limits`.
    fn limit(&self, name: &str) -> (String, String) {
        let pid = self.child.id().expect("running");
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
        let line = limits.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{name} in {limits}"));
        let mut values = line[name.len()..].split_whitespace();
        (values.next().expect("soft").to_owned(), values.next().expect("hard").to_owned())
    }
}

/// `GET path` on a new connection to `address`: status and body.
async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    request(&mut stream, path).await.expect("answer")
}

/// Sends `GET path` (keep-alive) on `stream` and reads one response:
/// its status and body. `None` when the server closed the connection.
async fn request(stream: &mut TcpStream, path: &str) -> Option<(u16, String)> {
    request_with(stream, path, "").await
}

/// [`request`] with more header lines (each ending in `\r\n`).
async fn request_with(stream: &mut TcpStream, path: &str, headers: &str) -> Option<(u16, String)> {
    let head = format!("GET {path} HTTP/1.1\r\nHost: keysd\r\n{headers}\r\n");
    stream.write_all(head.as_bytes()).await.ok()?;
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |value| value.trim().parse::<usize>().expect("content-length"));
                if received.len() >= end + 4 + length {
                    let status = head.split_whitespace().nth(1)?.parse().ok()?;
                    let body = String::from_utf8_lossy(&received[end + 4..end + 4 + length]).into_owned();
                    return Some((status, body));
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await
    .expect("a response or a close")
}

/// Reads until the server closes `stream`; what it sent before. Fails the
/// test if it is still open after [`PATIENCE`].
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut chunk).await {
                // A reset is a close too.
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    received
}

/// Whether the server closes `stream` within `wait` (what it sends before,
/// such as HTTP/2 `SETTINGS`, is read and ignored).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut chunk = [0_u8; 4096];
    tokio::time::timeout(wait, async {
        while let Ok(read) = stream.read(&mut chunk).await {
            if read == 0 {
                return;
            }
        }
    })
    .await
    .is_ok()
}

/// `count` sockets that serve nobody, in turn: silent, one byte of the
/// HTTP/2 preface, and the whole preface (none is a request, and none tells
/// hyper-util's detection to give up); with `keep_alive`, every fourth
/// instead makes one request and then idles.
async fn useless_sockets(keysd: &Keysd, count: usize, keep_alive: bool) -> Vec<TcpStream> {
    let openings: [&[u8]; 3] = [b"", b"P", H2_PREFACE];
    let mut sockets = Vec::new();
    for index in 0..count {
        let mut stream = keysd.connect().await;
        if keep_alive && index % 4 == 3 {
            assert_eq!(request(&mut stream, "/health").await.expect("answer").0, 200);
        } else {
            stream.write_all(openings[index % 3]).await.expect("write");
        }
        sockets.push(stream);
    }
    sockets
}

#[tokio::test]
async fn idle_sockets_are_closed_after_the_header_timeout_and_health_answers_meanwhile() {
    let keysd = Keysd::start(&["--header-read-timeout-seconds", "1", "--max-connections", "1000"]).await;
    let mut idle = useless_sockets(&keysd, 150, false).await;
    assert_eq!(keysd.get("/health").await, 200, "health answers while 150 idle sockets are open");
    for (index, stream) in idle.iter_mut().enumerate() {
        let sent = until_closed(stream).await;
        if index % 3 != 2 {
            assert!(sent.is_empty(), "nothing is answered to a socket that sent no request");
        }
    }
    assert_eq!(keysd.get("/health").await, 200);
}

/// Opens a connection that keeps a request in progress: a `POST` whose
/// body never comes (keysd waits for it up to its body read timeout).
async fn busy(keysd: &Keysd) -> TcpStream {
    let mut stream = keysd.connect().await;
    let head = format!(
        "POST /v1/verify/api_key/ HTTP/1.1\r\nHost: keysd\r\nAuthorization: ServiceToken {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        keysd.token
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

#[tokio::test]
async fn a_server_whose_connections_are_all_busy_closes_new_sockets_at_once_and_serves_the_open_ones() {
    let keysd = Keysd::start(&["--max-connections", "3", "--header-read-timeout-seconds", "120"]).await;
    assert!(keysd.token.starts_with("kst_"), "the bootstrap token was printed");
    let mut working = busy(&keysd).await;
    let mut others = vec![busy(&keysd).await, busy(&keysd).await];
    // Three requests in progress fill the server, once keysd has read
    // their heads (until then they are sockets that said nothing).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut refused = keysd.connect().await;
    assert!(
        closed_within(&mut refused, PATIENCE).await,
        "a socket beyond --max-connections is closed when every open one is busy"
    );
    for stream in &mut others {
        assert!(!closed_within(stream, Duration::from_millis(200)).await, "busy connections stay open");
    }
    // The request in progress is answered (its body is refused as
    // malformed JSON) and its connection is served on.
    working.write_all(&[b' '; 100]).await.expect("write");
    let mut answer = [0_u8; 12];
    working.read_exact(&mut answer).await.expect("an answer");
    assert_eq!(&answer, b"HTTP/1.1 400");
    drop(others.pop());
    let served = tokio::time::timeout(PATIENCE, async {
        loop {
            let mut stream = keysd.connect().await;
            if let Some((status, _)) = request(&mut stream, "/health").await {
                return status;
            }
        }
    })
    .await
    .expect("a new connection is served once one closed");
    assert_eq!(served, 200);
    assert!(keysd.metric("keysd_connections_refused_total").await >= 1, "refused connections are counted");
}

#[tokio::test]
async fn connections_that_serve_nobody_give_their_place_to_new_ones() {
    let keysd = Keysd::start(&["--max-connections", "40", "--header-read-timeout-seconds", "120"]).await;
    let mut held = useless_sockets(&keysd, 40, true).await;
    // Wave after wave: each new client is served, the attacker's sockets
    // make way.
    for _ in 0..3 {
        for _ in 0..10 {
            let (status, _) = tokio::time::timeout(Duration::from_secs(10), get(keysd.address, "/health"))
                .await
                .expect("health answers while the table is held");
            assert_eq!(status, 200);
        }
        for _ in 0..10 {
            held.push(keysd.connect().await);
        }
    }
    let closed = held.iter_mut().map(|stream| async { closed_within(stream, Duration::from_millis(100)).await });
    let mut evicted = 0;
    for close in closed {
        evicted += usize::from(close.await);
    }
    assert!(evicted >= 30, "the sockets that served nobody were closed: {evicted}");
    assert!(keysd.metric("keysd_connections_closed_total{reason=\"evicted\"}").await >= 30);
}

/// An HTTP/2 connection whose peer sets `SETTINGS_INITIAL_WINDOW_SIZE` to
/// 0 and never reads a body, so keysd can send no response bytes; it
/// answers pings (h2 does). Requests `GET {path}` with the authorities
/// `authorities` (one stream each, at once) and keeps the responses.
struct ZeroWindow {
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    responses: Vec<http::Response<hyper::body::Incoming>>,
}

impl ZeroWindow {
    async fn open(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).await.expect("connect");
        let (sender, connection) = hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        Self { sender, responses: Vec::new() }
    }

    /// Sends the requests; those answered are kept, unread.
    async fn request(&mut self, path: &str, authorities: impl Iterator<Item = String>) {
        let mut pending = Vec::new();
        for authority in authorities {
            let mut sender = self.sender.clone();
            let request = http::Request::get(format!("http://{authority}{path}"))
                .body(http_body_util::Empty::new())
                .expect("request");
            pending.push(tokio::spawn(async move { sender.send_request(request).await }));
        }
        for answer in pending {
            if let Ok(Ok(response)) = tokio::time::timeout(PATIENCE, answer).await.expect("answered or refused") {
                self.responses.push(response);
            }
        }
    }
}

const MIB: u64 = 1024 * 1024;

#[tokio::test]
async fn zero_window_http2_clients_hold_neither_memory_nor_the_server() {
    let keysd =
        Keysd::start(&["--stalled-response-timeout-seconds", "3600", "--http2-keep-alive-seconds", "3600"]).await;
    let before = keysd.rss();
    // 30 connections, 100 streams each, of the ~140 KB OpenAPI document:
    // the same one (shared, never copied), and one per authority (copies,
    // over the per-connection budget).
    let mut shared = Vec::new();
    for _ in 0..15 {
        let mut client = ZeroWindow::open(keysd.address).await;
        client.request("/openapi.json", (0..100).map(|_| "keysd.test".to_owned())).await;
        assert!(client.responses.len() >= 90, "shared bodies cost no budget: {}", client.responses.len());
        shared.push(client);
    }
    let mut copied = Vec::new();
    for connection in 0..15 {
        let mut client = ZeroWindow::open(keysd.address).await;
        client.request("/openapi.json", (0..100).map(|stream| format!("h{connection}-{stream}.test"))).await;
        copied.push(client);
    }
    let held = keysd.rss();
    assert!(held < 200 * MIB, "RSS grew from {} to {} MiB", before / MIB, held / MIB);
    tokio::time::timeout(PATIENCE, async {
        while !copied.iter().all(|client| client.sender.is_closed()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a connection over its response-bytes budget is closed");
    assert!(shared.iter().all(|client| !client.sender.is_closed()), "the others are served on");
    assert!(keysd.metric("keysd_connections_closed_total{reason=\"stalled\"}").await >= 15);
    assert_eq!(keysd.get("/health").await, 200);
    drop(shared);
}

#[tokio::test]
async fn stalled_http2_streams_are_closed_after_the_stall_timeout_and_give_way_meanwhile() {
    let keysd = Keysd::start(&[
        "--max-connections",
        "20",
        "--stalled-response-timeout-seconds",
        "4",
        "--http2-keep-alive-seconds",
        "3600",
    ])
    .await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut client = ZeroWindow::open(keysd.address).await;
        client.request("/openapi.json", std::iter::once("keysd.test".to_owned())).await;
        assert_eq!(client.responses.len(), 1);
        stalled.push(client);
    }
    // Their responses wait on their peers; after a second they make way.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), get(keysd.address, "/health"))
        .await
        .expect("health answers while stalled streams fill the table");
    assert_eq!(status, 200);
    // And past the stall timeout, every one is closed.
    tokio::time::timeout(PATIENCE, async {
        while !stalled.iter().all(|client| client.sender.is_closed()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("stalled connections are closed");
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_a_431() {
    let keysd = Keysd::start(&["--max-request-head-bytes", "16384"]).await;
    let mut stream = keysd.connect().await;
    let long = format!("X-Padding: {}\r\n", "a".repeat(20_000));
    let (status, _) = request_with(&mut stream, "/health", &long).await.expect("answer");
    assert_eq!(status, 431);
    let mut stream = keysd.connect().await;
    let short = format!("X-Padding: {}\r\n", "a".repeat(8_000));
    assert_eq!(request_with(&mut stream, "/health", &short).await.expect("answer").0, 200);
}

const HEADERS: u8 = 0x1;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;

/// An HTTP/2 client that sends one request (`GET /health`), never answers
/// a ping, and reads frames until the server closes or sends a frame of
/// type `until`: the types of the frames it received. Fails the test if
/// neither happens within [`PATIENCE`].
async fn http2_frames(keysd: &Keysd, until: Option<u8>) -> Vec<u8> {
    let mut stream = keysd.connect().await;
    let mut opening = H2_PREFACE.to_vec();
    // An empty SETTINGS frame.
    opening.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    // HEADERS on stream 1, END_STREAM | END_HEADERS: :method GET,
    // :scheme http (static table), :path /health (literal, indexed name).
    let block = [&[0x82, 0x86, 0x44, 7][..], b"/health"].concat();
    opening.extend_from_slice(&[0, 0, u8::try_from(block.len()).expect("short"), HEADERS, 0x5, 0, 0, 0, 1]);
    opening.extend_from_slice(&block);
    stream.write_all(&opening).await.expect("write");
    let mut types = Vec::new();
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            while received.len() >= 9 {
                let length = usize::from(received[0]) << 16 | usize::from(received[1]) << 8 | usize::from(received[2]);
                if received.len() < 9 + length {
                    break;
                }
                types.push(received[3]);
                if until == Some(received[3]) {
                    return;
                }
                received.drain(..9 + length);
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server closes the connection or sends {until:?}; it sent {types:?}"));
    types
}

#[tokio::test]
async fn an_http2_connection_that_leaves_pings_unanswered_is_closed() {
    let keysd = Keysd::start(&["--http2-keep-alive-seconds", "1", "--header-read-timeout-seconds", "300"]).await;
    let frames = http2_frames(&keysd, None).await;
    assert!(frames.contains(&HEADERS), "the request was answered: {frames:?}");
    assert!(frames.contains(&PING), "the server pinged: {frames:?}");
}

#[tokio::test]
async fn an_http2_connection_past_its_maximum_age_is_sent_away() {
    let keysd = Keysd::start(&[
        "--max-connection-age-seconds",
        "1",
        "--http2-keep-alive-seconds",
        "3600",
        "--header-read-timeout-seconds",
        "300",
    ])
    .await;
    let frames = http2_frames(&keysd, Some(GOAWAY)).await;
    assert!(frames.contains(&HEADERS), "the request was answered: {frames:?}");
    assert!(!frames.contains(&PING), "no keep-alive ping came first: {frames:?}");
}

#[tokio::test]
async fn serve_raises_the_open_files_limit_and_disables_core_dumps() {
    // Start with a low soft limit on files and core dumps allowed (as far
    // as the hard limit lets the shell).
    let keysd = Keysd::start_after("ulimit -Sn 256; ulimit -Sc \"$(ulimit -Hc)\";", &[]).await;
    let (soft, hard) = keysd.limit("Max open files");
    assert_eq!(soft, hard, "the soft open-files limit is raised to the hard one");
    assert_ne!(soft, "256");
    assert_eq!(keysd.limit("Max core file size"), ("0".to_owned(), "0".to_owned()));
    assert_eq!(keysd.get("/health").await, 200);
}

#[tokio::test]
async fn serve_warns_when_no_jwt_issuer_base_is_pinned() {
    let warning = "no --jwt-issuer-base pinned";
    let open = Keysd::start(&[]).await;
    assert!(open.log().contains(warning), "{}", open.log());
    let pinned = Keysd::start(&["--jwt-issuer-base", "https://versori.com"]).await;
    assert!(!pinned.log().contains(warning), "{}", pinned.log());
}

#[tokio::test]
async fn metrics_listen_moves_metrics_off_the_main_listener() {
    let keysd = Keysd::start(&["--metrics-listen", "127.0.0.1:0"]).await;
    let operations = keysd.metrics_address.expect("keysd prints the metrics address");
    assert_eq!(keysd.get("/metrics").await, 404, "not on the main listener");
    assert_eq!(keysd.get("/health").await, 200);
    let (status, metrics) = get(operations, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("keysd_http_requests_total{route=\"/health\""), "{metrics}");
    assert_eq!(get(operations, "/health").await.0, 200);
    assert_eq!(get(operations, "/ready").await.0, 200);
    for elsewhere in ["/v1/workspace/", "/openapi.json", "/console/"] {
        assert_eq!(get(operations, elsewhere).await.0, 404, "{elsewhere} is only on the main listener");
    }
    // Without the flag, /metrics stays where it was.
    let plain = Keysd::start(&[]).await;
    assert_eq!(plain.get("/metrics").await, 200);
    assert!(plain.metrics_address.is_none());
}

#[tokio::test]
async fn rate_limit_counts_each_client_address_on_the_real_server() {
    let keysd = Keysd::start(&["--rate-limit", "2"]).await;
    let forged = "Authorization: ServiceToken kst_forged\r\n";
    let mut stream = keysd.connect().await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(request_with(&mut stream, "/v1/workspace/", forged).await.expect("answer").0);
    }
    assert_eq!(statuses, [401, 401, 429]);
    assert_eq!(keysd.get("/health").await, 200, "public routes are not limited");
    // An untrusted peer's X-Forwarded-For changes nothing.
    let spoofed = format!("{forged}X-Forwarded-For: 203.0.113.7\r\n");
    assert_eq!(request_with(&mut stream, "/v1/workspace/", &spoofed).await.expect("answer").0, 429);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_rate_limit_counts_each_forwarded_client() {
    let keysd = Keysd::start(&["--rate-limit", "2", "--trusted-proxy", "127.0.0.0/8"]).await;
    let mut stream = keysd.connect().await;
    let from =
        |client: &str| format!("Authorization: ServiceToken kst_forged\r\nX-Forwarded-For: 6.6.6.6, {client}\r\n");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(request_with(&mut stream, "/v1/workspace/", &from("203.0.113.7")).await.expect("answer").0);
    }
    assert_eq!(statuses, [401, 401, 429], "one client behind the proxy");
    assert_eq!(
        request_with(&mut stream, "/v1/workspace/", &from("203.0.113.8")).await.expect("answer").0,
        401,
        "another client behind the same proxy has its own budget"
    );
}

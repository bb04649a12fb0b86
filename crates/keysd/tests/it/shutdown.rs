//! Shutdown as a load balancer sees it (docs/OPERATIONS.md, "Shutdown and
//! readiness"): on SIGTERM `/ready` turns 503 at once while requests are
//! still served for `--shutdown-delay-seconds`; then the listener closes,
//! requests in flight get `--shutdown-grace-seconds`, and the process
//! exits cleanly; a second signal cuts the delay short.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::e2e::Server;

/// The status code of `GET {base}{path}` on a new connection, or `None`
/// when nothing answers.
async fn status(base: &str, path: &str) -> Option<u16> {
    let output = tokio::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2"])
        .arg(format!("{base}{path}"))
        .output()
        .await
        .expect("curl runs");
    String::from_utf8_lossy(&output.stdout).trim().parse().ok().filter(|code| *code != 0)
}

/// Polls until `/ready` answers 503, within a second.
async fn not_ready_within_a_second(base: &str) {
    let since = Instant::now();
    loop {
        match status(base, "/ready").await {
            Some(503) => return,
            Some(200) => assert!(since.elapsed() < Duration::from_secs(1), "/ready still 200 a second after SIGTERM"),
            other => panic!("/ready answered {other:?} while draining"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sigterm_turns_ready_off_then_drains_within_the_grace() {
    let backend = keys_testkit::TestDb::sqlite();
    let server = Server::start(&backend, &["--shutdown-delay-seconds", "2", "--shutdown-grace-seconds", "1"]).await;
    let base = server.base.clone();
    assert_eq!(status(&base, "/ready").await, Some(200));

    // A request that will never finish: its body stops half-way (after
    // its token is accepted, so that keysd waits for the rest).
    let token = server.token.clone().expect("bootstrap token");
    let address = base.trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&address).await.expect("connects");
    let head = format!(
        "POST /v1/staging/ws_api_key/ HTTP/1.1\r\nHost: {address}\r\nAuthorization: ServiceToken {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
    );
    stuck.write_all(head.as_bytes()).await.expect("writes");
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.signal("TERM");
    let signalled = Instant::now();
    not_ready_within_a_second(&base).await;
    // Draining is not stopping: new connections are still served, and
    // HTTP/1 clients are told not to reuse theirs.
    assert_eq!(status(&base, "/health").await, Some(200));
    let headers = tokio::process::Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--max-time", "2"])
        .arg(format!("{base}/health"))
        .output()
        .await
        .expect("curl runs");
    let headers = String::from_utf8_lossy(&headers.stdout).to_ascii_lowercase();
    assert!(headers.contains("connection: close"), "{headers}");
    assert_eq!(status(&base, "/v1/workspace/").await, Some(401));

    let exit = server.exit(Duration::from_secs(20)).await;
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit:?}");
    assert!(took >= Duration::from_secs(2), "stopped before the delay was over: {took:?}");
    // The stuck request held the process for the grace, not for its body's
    // own 10 s timeout (which began before the signal).
    assert!(took >= Duration::from_secs(3), "the request in flight was not waited for: {took:?}");
    assert!(took < Duration::from_secs(8), "the grace did not bound the drain: {took:?}");
    drop(stuck);
}

#[tokio::test]
async fn a_second_signal_cuts_the_delay_short() {
    let backend = keys_testkit::TestDb::sqlite();
    let server = Server::start(&backend, &["--shutdown-delay-seconds", "300"]).await;
    let base = server.base.clone();
    server.signal("TERM");
    not_ready_within_a_second(&base).await;
    server.signal("TERM");
    let exit = server.exit(Duration::from_secs(20)).await;
    assert!(exit.success(), "{exit:?}");
}

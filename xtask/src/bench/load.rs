//! The load generator: tokio + hyper 1 HTTP/1.1 clients on loopback.
//!
//! - [`closed_loop`]: `concurrency` keep-alive connections, each sending its
//!   next request as soon as the previous answer is read, for a fixed time
//!   or until the request maker runs out (distinct bodies per request).
//! - [`fixed_rate`]: open loop, one job started every `1/rate` seconds
//!   whatever the previous ones are doing, so a slow answer cannot slow the
//!   schedule down (no coordinated omission).
//! - [`burst`]: `size` jobs started at the same instant.
//!
//! Every loop is bounded (by time, by count, and each request by a timeout).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Longest wait for one answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds request number `n`; `None` ends the run (the bodies ran out).
pub type MakeRequest = Arc<dyn Fn(u64) -> Option<Request<Full<Bytes>>> + Send + Sync>;

/// A unit of work of the open-loop modes: job `n` returns the latency of the
/// part it measures (e.g. the create of a create-then-delete).
pub type Job = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Result<Duration>> + Send>> + Send + Sync>;

/// What a successful answer looks like.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub status: u16,
    /// A byte string the body must contain (e.g. `"valid":true`).
    pub body_contains: Option<&'static str>,
    /// How many times exactly `body_contains` must occur (e.g. once per
    /// row of a list); `None` is at least once.
    pub occurrences: Option<usize>,
}

impl Expect {
    pub const fn status(status: u16) -> Self {
        Self { status, body_contains: None, occurrences: None }
    }

    pub const fn valid() -> Self {
        Self { status: 200, body_contains: Some("\"valid\":true"), occurrences: None }
    }

    /// A 200 whose body holds `needle` exactly `times` times.
    pub const fn counted(needle: &'static str, times: usize) -> Self {
        Self { status: 200, body_contains: Some(needle), occurrences: Some(times) }
    }

    fn check(&self, status: u16, body: &[u8]) -> Result<()> {
        if status != self.status {
            bail!(
                "status {status} (expected {}): {}",
                self.status,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        if let Some(needle) = self.body_contains {
            match self.occurrences {
                None => {
                    if !body.windows(needle.len()).any(|window| window == needle.as_bytes()) {
                        bail!("body lacks {needle}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
                    }
                }
                Some(expected) => {
                    let found = occurrences(body, needle.as_bytes());
                    if found != expected {
                        bail!(
                            "body holds {needle} {found} times (expected {expected}): {}",
                            String::from_utf8_lossy(&body[..body.len().min(300)])
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

/// Non-overlapping occurrences of `needle` in `haystack`.
fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    let (mut found, mut at) = (0, 0);
    while at + needle.len() <= haystack.len() {
        if &haystack[at..at + needle.len()] == needle {
            found += 1;
            at += needle.len();
        } else {
            at += 1;
        }
    }
    found
}

/// The outcome of one run.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    /// Latency of every successful request, in microseconds.
    pub latencies_us: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Sample {
    pub fn ok(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub fn rps(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.ok() as f64 / seconds
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile in milliseconds (`p` in 0..=100).
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        percentile(&sorted, p) / 1000.0
    }

    fn record_error(&mut self, error: &anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{error:#}"));
        }
    }

    fn merge(&mut self, other: Sample) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Nearest-rank percentile of sorted microsecond values, in microseconds.
pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

/// One keep-alive HTTP/1.1 connection's sending half.
pub type Sender = http1::SendRequest<Full<Bytes>>;

/// Opens one keep-alive HTTP/1.1 connection to `addr`.
pub async fn connect(addr: SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        let _ended = connection.await;
    });
    Ok(sender)
}

/// Sends one request and reads its answer; the latency is from `sent` to
/// the last byte of the body, so checking the body is not part of it.
async fn send(sender: &mut Sender, request: Request<Full<Bytes>>, expect: Expect, sent: Instant) -> Result<Duration> {
    sender.ready().await.context("connection closed")?;
    let response = sender.send_request(request).await.context("request failed")?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.context("reading the body")?.to_bytes();
    let latency = sent.elapsed();
    expect.check(status, &body)?;
    Ok(latency)
}

/// `concurrency` connections sending back to back until `duration` has
/// passed or `make` returns `None`. Requests are numbered from 0 across all
/// connections.
pub async fn closed_loop(
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
    make: MakeRequest,
    expect: Expect,
) -> Result<Sample> {
    let counter = Arc::new(AtomicU64::new(0));
    // Connect everything first, so the measured window holds no handshakes.
    let mut senders = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        senders.push(connect(addr).await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = JoinSet::new();
    for mut sender in senders {
        let counter = Arc::clone(&counter);
        let make = Arc::clone(&make);
        workers.spawn(async move {
            let mut sample = Sample::default();
            let mut consecutive_errors = 0u32;
            while Instant::now() < deadline {
                let Some(request) = make(counter.fetch_add(1, Ordering::Relaxed)) else { break };
                let sent = Instant::now();
                match tokio::time::timeout(REQUEST_TIMEOUT, send(&mut sender, request, expect, sent)).await {
                    Ok(Ok(latency)) => {
                        sample.latencies_us.push(micros(latency));
                        consecutive_errors = 0;
                        continue;
                    }
                    Ok(Err(error)) => sample.record_error(&error),
                    Err(_) => sample.record_error(&anyhow!("no answer within {REQUEST_TIMEOUT:?}")),
                }
                consecutive_errors += 1;
                if consecutive_errors >= 100 {
                    break;
                }
                // The connection may be gone: open a new one.
                if sender.is_closed() {
                    match connect(addr).await {
                        Ok(fresh) => sender = fresh,
                        Err(error) => {
                            sample.record_error(&error);
                            break;
                        }
                    }
                }
            }
            sample
        });
    }
    let mut total = Sample::default();
    while let Some(joined) = workers.join_next().await {
        total.merge(joined.context("load worker panicked")?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Starts job `n` at `start + n / rate` for `duration`, then waits for the
/// stragglers (each bounded by [`REQUEST_TIMEOUT`]).
pub async fn fixed_rate(rate: f64, duration: Duration, job: Job) -> Result<Sample> {
    let count = (rate * duration.as_secs_f64()).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let results = Arc::new(Mutex::new(Sample::default()));
    let mut jobs = JoinSet::new();
    for n in 0..count {
        tokio::time::sleep_until((started + interval.mul_f64(n as f64)).into()).await;
        let job = Arc::clone(&job);
        let results = Arc::clone(&results);
        jobs.spawn(async move {
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, job(n)).await;
            let mut results = results.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match outcome {
                Ok(Ok(latency)) => results.latencies_us.push(micros(latency)),
                Ok(Err(error)) => results.record_error(&error),
                Err(_) => results.record_error(&anyhow!("no answer within {REQUEST_TIMEOUT:?}")),
            }
        });
    }
    while let Some(joined) = jobs.join_next().await {
        joined.context("job panicked")?;
    }
    let mut sample = std::mem::take(&mut *results.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    sample.elapsed = started.elapsed();
    Ok(sample)
}

/// Starts `size` jobs at once (numbered from `first`) and waits for all.
pub async fn burst(size: usize, first: u64, job: Job) -> Result<Sample> {
    let started = Instant::now();
    let mut jobs = JoinSet::new();
    for n in 0..size as u64 {
        let job = Arc::clone(&job);
        jobs.spawn(async move { tokio::time::timeout(REQUEST_TIMEOUT, job(first + n)).await });
    }
    let mut sample = Sample::default();
    while let Some(joined) = jobs.join_next().await {
        match joined.context("job panicked")? {
            Ok(Ok(latency)) => sample.latencies_us.push(micros(latency)),
            Ok(Err(error)) => sample.record_error(&error),
            Err(_) => sample.record_error(&anyhow!("no answer within {REQUEST_TIMEOUT:?}")),
        }
    }
    sample.elapsed = started.elapsed();
    Ok(sample)
}

/// A pooled HTTP/1.1 client for setup calls and open-loop jobs.
#[derive(Clone, Debug)]
pub struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
}

/// A JSON answer and how long it took.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: serde_json::Value,
    pub latency: Duration,
}

impl Api {
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
        Self { client, base: format!("http://{addr}"), token: token.to_owned() }
    }

    /// A request with the service token and a JSON body (none when `body`
    /// is `None`).
    pub fn request(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Request<Full<Bytes>> {
        build_request(&self.base, &self.token, method, path, body.map(|body| Bytes::from(body.to_string())))
    }

    /// Sends one request and reads the JSON answer (`null` for an empty body).
    pub async fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Result<Answer> {
        let request = self.request(method, path, body);
        let started = Instant::now();
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| anyhow!("{method} {path}: no answer within {REQUEST_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.with_context(|| format!("{method} {path}: body"))?.to_bytes();
        let latency = started.elapsed();
        let json = if body.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()))
        };
        Ok(Answer { status, json, latency })
    }

    /// [`Api::call`], failing unless the status is `expected`.
    pub async fn expect(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        expected: u16,
    ) -> Result<Answer> {
        let answer = self.call(method, path, body).await?;
        if answer.status != expected {
            bail!("{method} {path}: status {} (expected {expected}): {}", answer.status, answer.json);
        }
        Ok(answer)
    }
}

/// A request to `base` + `path` with the service token (if any) and a JSON body.
pub fn build_request(base: &str, token: &str, method: &str, path: &str, body: Option<Bytes>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(format!("{base}{path}"));
    if !token.is_empty() {
        builder = builder.header("authorization", format!("ServiceToken {token}"));
    }
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    builder.body(Full::new(body.unwrap_or_default())).unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// The requests of a closed loop built from a fixed method, path and token:
/// the same body every time, or body `n` of a list (ending the run when the
/// list runs out).
pub fn requests(addr: SocketAddr, token: &str, method: &'static str, path: &str, bodies: Bodies) -> MakeRequest {
    // HTTP/1 client connections take origin-form URIs; the Host header
    // carries the authority.
    let host = addr.to_string();
    let token = token.to_owned();
    let path = path.to_owned();
    Arc::new(move |n| {
        let body = match &bodies {
            Bodies::Same(body) => body.clone(),
            Bodies::Each(list) => list.get(usize::try_from(n).ok()?)?.clone(),
            Bodies::Numbered(make) => make(n),
        };
        let mut request = build_request("", &token, method, &path, Some(body));
        if let Ok(value) = host.parse() {
            request.headers_mut().insert(hyper::header::HOST, value);
        }
        Some(request)
    })
}

/// Requests whose path and body both depend on the request number.
pub fn requests_by(
    addr: SocketAddr,
    token: &str,
    method: &'static str,
    make: Arc<dyn Fn(u64) -> (String, Bytes) + Send + Sync>,
) -> MakeRequest {
    let host = addr.to_string();
    let token = token.to_owned();
    Arc::new(move |n| {
        let (path, body) = make(n);
        let mut request = build_request("", &token, method, &path, Some(body));
        if let Ok(value) = host.parse() {
            request.headers_mut().insert(hyper::header::HOST, value);
        }
        Some(request)
    })
}

/// Bodies of a closed loop.
#[derive(Clone)]
pub enum Bodies {
    Same(Bytes),
    Each(Arc<Vec<Bytes>>),
    Numbered(Arc<dyn Fn(u64) -> Bytes + Send + Sync>),
}

impl std::fmt::Debug for Bodies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Same(body) => f.debug_tuple("Same").field(&body.len()).finish(),
            Self::Each(list) => f.debug_tuple("Each").field(&list.len()).finish(),
            Self::Numbered(_) => f.write_str("Numbered"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let sorted: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 50.0), 50.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert_eq!(percentile(&sorted, 100.0), 100.0);
        assert_eq!(percentile(&[7], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn expectations_check_status_and_body() {
        assert!(Expect::valid().check(200, br#"{"valid":true,"key_id":"x"}"#).is_ok());
        assert!(Expect::valid().check(200, br#"{"valid":false}"#).is_err());
        assert!(Expect::status(201).check(200, b"").is_err());
        let rows = br#"{"results":[{"outcome":"valid"},{"outcome":"key_disabled"}],"next_cursor":null}"#;
        assert!(Expect::counted("\"outcome\":", 2).check(200, rows).is_ok());
        assert!(Expect::counted("\"outcome\":", 3).check(200, rows).is_err());
        assert_eq!(occurrences(b"aaaa", b"aa"), 2);
        assert_eq!(occurrences(b"abc", b""), 0);
    }
}

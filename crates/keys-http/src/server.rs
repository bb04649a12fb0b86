//! The application ([`App`]: one function from request to response) and the
//! hyper 1 server around it ([`serve`]).
//!
//! [`App::handle`] is generic over the request body, so tests call it with
//! in-memory bodies and no socket; [`serve`] feeds it hyper's `Incoming`
//! bodies from an accept loop (HTTP/1.1 and HTTP/2 via hyper-util's auto
//! builder), over TLS when [`AppConfig::tls`] says so, and shuts down
//! gracefully: on the shutdown signal it stops accepting, lets in-flight
//! requests finish, and closes idle connections.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use keys_core::RequestId;
use keys_service::{Service, ServiceConfig};
use keys_store::Store;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::connections::{Admission, Budgets, Closing, Connection, ConnectionTable, TrackedBody};
use crate::dispatch::{self, BoxError};
use crate::error::{ApiError, Dialect};
use crate::handlers::leaks::LEAK_ROUTES;
use crate::handlers::ROUTES;
use crate::metrics::{ConnectionClosed, Metrics};
use crate::rate_limit::{ClientAddr, RateLimiter};
use crate::routing::Auth;
pub use crate::state::AppConfig;
use crate::state::AppState;
use crate::tls::Stream;

/// The `x-request-id` header.
pub const REQUEST_ID: &str = "x-request-id";

/// The keysd HTTP application. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    state: Arc<AppState>,
    listener: Listener,
}

/// Which listener an [`App`] answers on: the routes each one serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listener {
    /// Every route; `/metrics` only when [`AppConfig::separate_metrics`]
    /// is off.
    Main,
    /// `--metrics-listen`: `/metrics`, `/health` and `/ready` only.
    Operations,
}

/// The routes of the operations listener.
const OPERATIONS_ROUTES: [&str; 3] = ["/metrics", "/health", "/ready"];

impl App {
    /// The application over `store`, with a [`Service`] made from
    /// `config.service` (system clock, OS entropy).
    pub fn new(store: Arc<dyn Store>, config: AppConfig) -> Self {
        let service_config = ServiceConfig {
            record_api_key_uses: config.last_used_interval.is_some(),
            count_usage: config.usage_interval.is_some(),
            ..config.service.clone()
        };
        Self::with_service(Arc::new(Service::new(store, service_config)), config)
    }

    /// The application over a [`Service`] the caller made (its own clock
    /// and entropy, or one it also calls in process); `config.service` is
    /// not read again.
    pub fn with_service(service: Arc<Service>, config: AppConfig) -> Self {
        let openapi = crate::openapi::document();
        let rate_limiter = config.rate_limit_per_minute.map(RateLimiter::new);
        let leak_limiter = RateLimiter::new(config.leak_reports_per_minute);
        let state = Arc::new(AppState {
            service,
            config,
            metrics: Metrics::new(),
            rate_limiter,
            leak_limiter,
            openapi,
            openapi_bodies: Default::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        Self { state, listener: Listener::Main }
    }

    /// The same application as the operations listener answers it
    /// (`--metrics-listen`): `/metrics`, `/health` and `/ready`, and 404 for
    /// every other path.
    pub fn operations(&self) -> Self {
        Self { state: Arc::clone(&self.state), listener: Listener::Operations }
    }

    /// Whether this listener serves the route `pattern`; a route it does not
    /// serve is, on it, no route at all (404).
    fn serves(&self, pattern: &str) -> bool {
        match self.listener {
            Listener::Main => !(self.state.config.separate_metrics && pattern == "/metrics"),
            Listener::Operations => OPERATIONS_ROUTES.contains(&pattern),
        }
    }

    /// Marks the process as shutting down: `/ready` answers 503 from now
    /// on (on every listener), so that load balancers stop sending requests
    /// while those in flight finish.
    pub fn drain(&self) {
        self.state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn config(&self) -> &AppConfig {
        &self.state.config
    }

    /// The use cases this application serves (for the CLI's bootstrap and
    /// for embedders that want both HTTP and direct calls).
    pub fn service(&self) -> &Service {
        &self.state.service
    }

    /// Answers one request. Never fails: every error is a response in the
    /// dialect of the path. Adds `x-request-id` and
    /// `X-Content-Type-Options: nosniff`, logs one line and records
    /// metrics.
    ///
    /// The line (and the span that gives `request_id` to whatever is logged
    /// on the way) is `info`, except for the verification endpoints that
    /// answer below 500: those are the hot path, called for every request
    /// of the services that embed keysd, and their line is `debug` (their
    /// outcomes are counted in the metrics; failures are still logged).
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let started = Instant::now();
        let request_id = request_id(request.headers());
        let http1 = request.version() < http::Version::HTTP_2;
        let method = request.method().clone();
        // A clone of the URI shares its bytes: the path outlives the request.
        let uri = request.uri().clone();
        let path = uri.path();
        let matched = ROUTES.resolve(path).filter(|matched| self.serves(matched.route.pattern()));
        let dialect = matched.map_or_else(|| Dialect::of_path(path), |matched| matched.route.dialect());
        let route = matched.map_or("unmatched", |matched| matched.route.pattern());
        let verification = matched.is_some_and(|matched| matched.route.is_verification());
        let span = if verification {
            tracing::debug_span!("request", request_id = %request_id, method = %method, route)
        } else {
            tracing::info_span!("request", request_id = %request_id, method = %method, route)
        };
        let state = &self.state;
        // What `--rate-limit` guards: verification, and whatever needs a
        // service token (a failed authentication spends the client's budget).
        let limited = state.rate_limiter.as_ref().zip(request.extensions().get::<ClientAddr>().copied()).filter(|_| {
            verification
                || matched
                    .and_then(|matched| matched.route.operation(&method))
                    .is_some_and(|operation| operation.auth() == Auth::ServiceToken)
        });
        // Leak reports have a budget of their own, always on: each may cost
        // a transaction, and GitHub's route takes unauthenticated bodies.
        let leak_report = matched.is_some_and(|matched| LEAK_ROUTES.contains(&matched.route.pattern()));
        let client = request.extensions().get::<ClientAddr>().copied();
        let work = async {
            let throttled = limited.and_then(|(limiter, ClientAddr(client))| {
                let now = Instant::now();
                let allowed = if verification { limiter.spend(client, now) } else { limiter.check(client, now) };
                allowed.err()
            });
            let throttled = throttled.or_else(|| {
                let ClientAddr(client) = client.filter(|_| leak_report)?;
                state.leak_limiter.spend(client, Instant::now()).err()
            });
            let outcome = match throttled {
                Some(wait) => {
                    // Whole seconds, rounded up: retrying sooner is refused.
                    let retry_after_seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                    Ok(Err(ApiError::TooManyRequests { retry_after_seconds }))
                }
                None => {
                    tokio::time::timeout(
                        state.config.request_timeout,
                        dispatch::dispatch(state, matched, request, &request_id),
                    )
                    .await
                }
            };
            let response = match outcome {
                Ok(Ok(response)) => response,
                Ok(Err(error)) => error.into_response(dialect),
                Err(_) => {
                    tracing::warn!("request timed out");
                    ApiError::Unavailable("Request timed out.".to_owned()).into_response(dialect)
                }
            };
            let status = response.status().as_u16();
            if let Some((limiter, ClientAddr(client))) = limited {
                if status == 401 && !verification {
                    // Spent whether or not one is left: the next request is refused.
                    let _ = limiter.spend(client, Instant::now());
                }
            }
            let elapsed = started.elapsed();
            state.metrics.observe_request(route, method_label(&method), status, elapsed);
            // The path holds slugs and ids, never secrets; the query and the
            // body (which may) are not logged.
            let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
            if verification && status < 500 {
                tracing::debug!(path = %path, status, elapsed_ms, "request");
            } else if verification {
                // The span may be disabled: say which request it was.
                tracing::info!(request_id = %request_id, path = %path, status, elapsed_ms, "request");
            } else {
                tracing::info!(path = %path, status, elapsed_ms, "request");
            }
            response
        };
        // A disabled span (the verification routes at `info`) has nothing to
        // enter on every poll.
        let mut response = if span.is_disabled() { work.await } else { work.instrument(span).await };
        if let Ok(value) = HeaderValue::from_str(request_id.as_str()) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        // Every answer, errors included: a browser must never guess that a
        // JSON body (which may echo client text) is HTML or script.
        response.headers_mut().insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        // Shutting down ([`App::drain`]): an HTTP/1 client opens a new
        // connection for its next request (to another replica, once the
        // load balancer has seen `/ready`), instead of reusing this one as
        // the listener closes under it.
        if http1 && self.state.draining.load(std::sync::atomic::Ordering::Relaxed) {
            response.headers_mut().insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The metrics label of a method: the standard ones by name, any extension
/// method as `OTHER`, so clients cannot mint new series.
fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

thread_local! {
    /// Randomness of generated request ids: a CSPRNG per thread, seeded
    /// from the OS once, instead of a `getrandom` call per request.
    static REQUEST_ID_RNG: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::from_entropy());
}

/// The client's request id when it is a sane token (`RequestId::parse`:
/// 1–128 characters of `A-Z a-z 0-9 . _ : -`), otherwise a new ULID. It is
/// echoed on the response and reaches every audit event the request causes.
fn request_id(headers: &HeaderMap) -> RequestId {
    let offered = headers.get(REQUEST_ID).and_then(|value| RequestId::parse(value.to_str().ok()?).ok());
    offered.unwrap_or_else(|| {
        REQUEST_ID_RNG.with(|rng| RequestId::generate(time::OffsetDateTime::now_utc(), &mut *rng.borrow_mut()))
    })
}

/// Serves `app` on `listener` until `shutdown` completes, then drains
/// in-flight requests for at most `shutdown_grace`.
///
/// Every connection is bounded in time and in number, so that clients that
/// open sockets and say nothing cannot exhaust the file descriptors:
/// - at most [`AppConfig::max_connections`] at once; a socket accepted
///   beyond that is closed at once, while the open ones are served on;
/// - a connection that has not sent a complete first request head within
///   [`AppConfig::header_read_timeout`] is closed, whatever it sent (nothing,
///   one byte, part of a TLS handshake, or the HTTP/2 preface): the TLS
///   handshake runs under that timer, and hyper-util's HTTP/1-or-2 detection
///   has no timer of its own, and hyper's HTTP/1 header timeout only starts
///   once the protocol is known (it then also closes idle keep-alive
///   connections between requests);
/// - HTTP/2 connections are pinged every
///   [`AppConfig::http2_keep_alive_interval`] and closed when a ping is not
///   answered within as long again;
/// - any connection older than [`AppConfig::max_connection_age`] is asked
///   to close gracefully (HTTP/2 `GOAWAY`, HTTP/1 `Connection: close`
///   after the request in flight) and dropped `shutdown_grace` later.
pub async fn serve(listener: TcpListener, app: App, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let config = app.config().clone();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        // hyper's floor is 8 KiB; a longer head is a 431.
        .max_buf_size(config.max_request_head_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.http2_keep_alive_interval)
        .keep_alive_timeout(config.http2_keep_alive_interval)
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(config.max_request_head_bytes).unwrap_or(u32::MAX))
        // What a peer may send before keysd reads it: one whole body per
        // stream, four per connection.
        .initial_stream_window_size(u32::try_from(config.body_limit).unwrap_or(u32::MAX).max(65_535))
        .initial_connection_window_size(
            u32::try_from(config.body_limit.saturating_mul(4)).unwrap_or(u32::MAX).max(65_535),
        );
    let builder = Arc::new(builder);
    let limits = ConnectionLimits::of(&config);
    let table = ConnectionTable::new(Budgets {
        max_connections: limits.max_connections,
        per_connection: config.max_response_bytes_per_connection,
        total: config.max_response_bytes,
        stall: config.stalled_response_timeout,
    });
    let (stop, stopped) = watch::channel(false);
    // One flusher per application: the operations listener (`--metrics-listen`)
    // serves no API keys.
    let flusher = config
        .last_used_interval
        .filter(|_| app.listener == Listener::Main)
        .map(|interval| app.state.service.spawn_usage_flusher(interval));
    let counts_flusher = config
        .usage_interval
        .filter(|_| app.listener == Listener::Main)
        .map(|interval| app.state.service.spawn_usage_counts_flusher(interval));
    // Metering's slices and batches go back when idle, and at shutdown.
    let sweeper = (app.listener == Listener::Main).then(|| app.state.service.spawn_metering_sweeper());
    // Webhooks: every replica delivers (each attempt is claimed by one).
    let webhooks = if app.listener == Listener::Main && app.state.config.deliver_webhooks {
        let allow_private = app.state.config.service.webhooks.allow_private_destinations;
        match crate::webhook_client::WebhookClient::new(allow_private, app.state.config.webhook_ca.as_deref()) {
            Ok(client) => Some(app.state.service.spawn_webhooks(Arc::new(client))),
            Err(error) => {
                tracing::error!(%error, "webhooks are not delivered: the client could not be made");
                None
            }
        }
    } else {
        None
    };
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and similar: back off
                        // instead of spinning, and keep serving.
                        tracing::warn!(error = %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // A response written in more than one segment (a list, a
                // usage page, /openapi.json) would otherwise wait for the
                // client's delayed ACK (Nagle's algorithm): 40 ms on Linux.
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(peer = %peer, %error, "TCP_NODELAY not set");
                }
                let connection = match table.admit() {
                    Admission::Admitted(connection) => connection,
                    Admission::Evicted(connection) => {
                        app.state.metrics.observe_connection_closed(ConnectionClosed::Evicted);
                        connection
                    }
                    Admission::Refused => {
                        // Every open connection is serving a request:
                        // dropping the stream closes it at once.
                        tracing::debug!(peer = %peer, "connection refused: --max-connections busy");
                        app.state.metrics.observe_refused_connection();
                        continue;
                    }
                };
                let service = {
                    let app = app.clone();
                    let connection = Arc::clone(&connection);
                    hyper::service::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                        connection.spoke();
                        let in_flight = connection.begin();
                        let client = app.state.config.trusted_proxies.client(peer.ip(), request.headers());
                        request.extensions_mut().insert(ClientAddr(client));
                        let app = app.clone();
                        async move {
                            let response = app.handle(request).await;
                            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, in_flight)))
                        }
                    })
                };
                let tls = config.tls.clone();
                let opening = async move {
                    match tls {
                        Some(tls) => tls.accept(stream).await,
                        None => Ok(Stream::Plain(stream)),
                    }
                };
                let builder = Arc::clone(&builder);
                let stopped = stopped.clone();
                let state = Arc::clone(&app.state);
                tokio::spawn(async move {
                    let serving = |stream| builder.serve_connection(TokioIo::new(stream), service);
                    if let Some(reason) = limits.drive(opening, serving, &connection, stopped, peer).await {
                        state.metrics.observe_connection_closed(reason);
                    }
                    connection.leave();
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight requests");
    // Ignoring the result: no connection task may still be listening.
    let _ = stop.send(true);
    tokio::select! {
        () = table.emptied() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(config.shutdown_grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
    if let Some(flusher) = flusher {
        flusher.stop().await;
        // The uses recorded since the last interval are not lost.
        if let Err(error) = app.service().flush_uses().await {
            tracing::warn!(%error, "writing the last API key and service token uses at shutdown failed");
        }
    }
    if let Some(flusher) = counts_flusher {
        flusher.stop().await;
        // The counts since the last interval are not lost.
        if let Err(error) = app.service().flush_usage_counts().await {
            tracing::warn!(%error, "writing the usage counts at shutdown failed");
        }
    }
    if let Some(webhooks) = webhooks {
        webhooks.stop().await;
        // The warnings raised since the last pass are not lost.
        if let Err(error) = app.service().store_warnings().await {
            tracing::warn!(%error, "storing webhook warnings at shutdown failed");
        }
    }
    if let Some(sweeper) = sweeper {
        sweeper.stop().await;
        // What this replica holds of the shared balances goes back.
        if let Err(error) = app.service().hand_back_metering().await {
            tracing::warn!(%error, "handing back metering slices at shutdown failed");
        }
    }
    Ok(())
}

/// The time limits of one connection (see [`serve`]).
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    max_connections: usize,
    first_request: Duration,
    max_age: Duration,
    grace: Duration,
}

impl ConnectionLimits {
    fn of(config: &AppConfig) -> Self {
        Self {
            // At least one connection, or nothing could ever be served.
            max_connections: config.max_connections.max(1),
            first_request: config.header_read_timeout,
            max_age: config.max_connection_age,
            grace: config.shutdown_grace,
        }
    }

    /// Opens a connection (`opening`: its TLS handshake, or nothing for
    /// plain TCP) and runs it (`serving` makes the HTTP connection over the
    /// stream) to its end under the limits; `state` is its entry in the
    /// connection table, `stopped` turns true at shutdown. Returns why keysd
    /// closed it early, if it did for a reason the metrics count.
    ///
    /// The opening is bounded like a silent client: the first request's
    /// timer starts at accept, and the connection table may evict it.
    async fn drive<S, C>(
        self,
        opening: impl Future<Output = std::io::Result<S>>,
        serving: impl FnOnce(S) -> C,
        state: &Connection,
        mut stopped: watch::Receiver<bool>,
        peer: SocketAddr,
    ) -> Option<ConnectionClosed>
    where
        C: GracefulConnection,
        C::Error: std::fmt::Display,
    {
        let mut first_request = pin!(tokio::time::sleep(self.first_request));
        let closing = state.closing();
        let mut closing = pin!(closing);
        let stream = tokio::select! {
            opened = opening => match opened {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::debug!(peer = %peer, error = %error, "connection closed: TLS handshake failed");
                    return None;
                }
            },
            reason = &mut closing => {
                tracing::debug!(peer = %peer, ?reason, "connection closed by the connection table during its TLS handshake");
                return Some(closed(reason));
            }
            () = &mut first_request => {
                tracing::debug!(peer = %peer, "connection closed: no TLS handshake within the header read timeout");
                return None;
            }
            // An error means the server is gone: close just the same.
            _ = stopped.changed() => return None,
        };
        let mut connection = pin!(serving(stream));
        let mut old_age = pin!(tokio::time::sleep(self.max_age));
        // Armed when the graceful close begins: how long it may take.
        let mut drain_deadline = pin!(tokio::time::sleep(self.grace));
        // Checks for response bytes its peer does not take: a few times per
        // stall timeout, at most once a second.
        let mut stall_check =
            tokio::time::interval((state.stall_timeout() / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
        stall_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut waiting_for_first_request = true;
        let mut draining = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(peer = %peer, error = %error, "connection ended with an error");
                    }
                    return None;
                }
                reason = &mut closing => {
                    // Dropping the connection frees every stream it holds.
                    tracing::debug!(peer = %peer, ?reason, "connection closed by the connection table");
                    return Some(closed(reason));
                }
                _ = stall_check.tick() => {
                    if state.stalled() {
                        tracing::debug!(peer = %peer, "connection closed: its peer took no response bytes within the stall timeout");
                        return Some(ConnectionClosed::Stalled);
                    }
                }
                () = &mut first_request, if waiting_for_first_request => {
                    if !state.has_spoken() {
                        tracing::debug!(peer = %peer, "connection closed: no request within the header read timeout");
                        return None;
                    }
                    waiting_for_first_request = false;
                }
                () = &mut old_age, if !draining => {
                    tracing::debug!(peer = %peer, "connection reached its maximum age; closing it gracefully");
                    connection.as_mut().graceful_shutdown();
                    drain_deadline.as_mut().reset(tokio::time::Instant::now() + self.grace);
                    draining = true;
                }
                // An error means the server is gone: close just the same.
                _ = stopped.changed(), if !draining => {
                    connection.as_mut().graceful_shutdown();
                    drain_deadline.as_mut().reset(tokio::time::Instant::now() + self.grace);
                    draining = true;
                }
                () = &mut drain_deadline, if draining => {
                    tracing::debug!(peer = %peer, "connection did not close in time; dropping it");
                    return None;
                }
            }
        }
    }
}

/// The metrics' name of why the connection table closed a connection.
fn closed(reason: Closing) -> ConnectionClosed {
    match reason {
        Closing::Evicted => ConnectionClosed::Evicted,
        Closing::Stalled => ConnectionClosed::Stalled,
    }
}

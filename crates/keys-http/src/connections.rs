//! The connection table of [`crate::serve`]: which connections are open,
//! what each is doing, and how many response bytes each holds that its
//! peer has not taken yet.
//!
//! Two attacks shape it (docs/SECURITY.md, "Connections"):
//! - **Holding the table.** Sockets that send nothing useful (silence, one
//!   byte, the HTTP/2 preface, an idle keep-alive connection, or streams
//!   whose flow-control window stays at zero) must not keep new clients
//!   out. When the table is full, a new connection evicts one that is doing
//!   nothing for anybody ([`ConnectionTable::admit`]); only when every open
//!   connection has a request in progress is the new one refused.
//! - **Holding memory.** A peer that never opens its flow-control window
//!   makes the server keep every response it asked for. Each response body
//!   is a [`TrackedBody`] that counts its unsent bytes against its
//!   connection ([`Connection`]) and against the whole process; a
//!   connection over either budget, or whose unsent bytes make no progress
//!   for the stall timeout, is closed and everything it held is freed.
//!   Bodies that share their bytes with a cache (the console's assets, the
//!   OpenAPI document, a JWKS) cost a reference each, not a copy, and are
//!   counted only for the stall timeout.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// The largest frame a [`TrackedBody`] hands to hyper at once: hyper asks
/// for the next one only when the peer's window has room (HTTP/2) or its
/// write buffer drained (HTTP/1), so at most this much of a body sits in
/// hyper's buffers uncounted.
pub(crate) const CHUNK: usize = 16 * 1024;

/// The budgets a [`ConnectionTable`] enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budgets {
    /// Connections open at once.
    pub max_connections: usize,
    /// Unsent bytes of unshared response bodies one connection may hold.
    pub per_connection: usize,
    /// The same, over every connection of the process.
    pub total: usize,
    /// How long a connection may hold unsent response bytes without its
    /// peer taking any.
    pub stall: Duration,
}

/// Why a connection is asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    /// A newer connection took its place in a full table.
    Evicted,
    /// Over a response-bytes budget, or stalled past the stall timeout.
    Stalled,
}

/// One open connection, shared by its task, its service and its bodies.
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    table: Arc<Shared>,
    /// A complete request head has arrived.
    spoke: AtomicBool,
    /// Requests whose response has not been fully handed to hyper.
    in_flight: AtomicUsize,
    /// Unsent bytes of every response body of this connection.
    pending: AtomicUsize,
    /// The part of `pending` that no cache shares.
    owned: AtomicUsize,
    /// When the peer last took response bytes (or the wait began), in
    /// milliseconds since the table's epoch.
    progressed: AtomicU64,
    /// When a request last finished, in milliseconds since the epoch.
    active: AtomicU64,
    /// Set once, with the reason, when the connection must close.
    closing: Mutex<Option<Closing>>,
    close: Notify,
}

#[derive(Debug)]
struct Shared {
    budgets: Budgets,
    epoch: Instant,
    open: Mutex<BTreeMap<u64, Arc<Connection>>>,
    next_id: AtomicU64,
    /// The sum of every connection's `owned`.
    owned: AtomicUsize,
    /// Notified whenever a connection leaves the table.
    left: Notify,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Connection>>> {
        // Every update is one insert or remove: a poisoned map is whole.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The open connections of one listener. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionTable(Arc<Shared>);

/// What [`ConnectionTable::admit`] decided.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Served, in the table.
    Admitted(Arc<Connection>),
    /// Served, in the place of one that was asked to close.
    Evicted(Arc<Connection>),
    /// Every open connection is busy: this one is closed at once.
    Refused,
}

impl ConnectionTable {
    pub(crate) fn new(budgets: Budgets) -> Self {
        let budgets = Budgets { max_connections: budgets.max_connections.max(1), ..budgets };
        Self(Arc::new(Shared {
            budgets,
            epoch: Instant::now(),
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            owned: AtomicUsize::new(0),
            left: Notify::new(),
        }))
    }

    /// Takes a new connection in. When the table is full, the connection
    /// that serves nobody is asked to close in its place, in this order:
    /// 1. the oldest that has not sent a complete request head;
    /// 2. the one whose unsent response bytes have waited longest on its
    ///    peer (at least a second);
    /// 3. the one idle longest between requests (nothing in progress).
    ///
    /// When every connection has a request in progress, the new one is
    /// refused.
    pub(crate) fn admit(&self) -> Admission {
        let shared = &self.0;
        let now = shared.now_ms();
        let mut open = shared.lock();
        let mut evicted = false;
        if open.len() >= shared.budgets.max_connections {
            let Some(victim) = victim(&open, now) else {
                return Admission::Refused;
            };
            if let Some(connection) = open.remove(&victim) {
                connection.close(Closing::Evicted);
            }
            evicted = true;
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            table: Arc::clone(shared),
            spoke: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            owned: AtomicUsize::new(0),
            progressed: AtomicU64::new(now),
            active: AtomicU64::new(now),
            closing: Mutex::new(None),
            close: Notify::new(),
        });
        open.insert(id, Arc::clone(&connection));
        drop(open);
        if evicted {
            Admission::Evicted(connection)
        } else {
            Admission::Admitted(connection)
        }
    }

    /// Connections in the table.
    pub(crate) fn len(&self) -> usize {
        self.0.lock().len()
    }

    /// Waits until no connection is left in the table.
    pub(crate) async fn emptied(&self) {
        loop {
            let left = self.0.left.notified();
            if self.len() == 0 {
                return;
            }
            left.await;
        }
    }
}

/// The id of the connection to evict from a full table, if any serves
/// nobody (see [`ConnectionTable::admit`]).
fn victim(open: &BTreeMap<u64, Arc<Connection>>, now: u64) -> Option<u64> {
    // Ids grow with age, so the first silent one is the oldest.
    let mut stalled: Option<(u64, u64)> = None;
    let mut idle: Option<(u64, u64)> = None;
    for (id, connection) in open {
        if !connection.spoke.load(Ordering::Relaxed) {
            return Some(*id);
        }
        let pending = connection.pending.load(Ordering::Relaxed);
        if pending > 0 {
            let since = connection.progressed.load(Ordering::Relaxed);
            if now.saturating_sub(since) >= 1000 && stalled.is_none_or(|(_, oldest)| since < oldest) {
                stalled = Some((*id, since));
            }
        } else if connection.in_flight.load(Ordering::Relaxed) == 0 {
            let since = connection.active.load(Ordering::Relaxed);
            if idle.is_none_or(|(_, oldest)| since < oldest) {
                idle = Some((*id, since));
            }
        }
    }
    stalled.or(idle).map(|(id, _)| id)
}

impl Connection {
    /// Records that a complete request head arrived.
    pub(crate) fn spoke(&self) {
        self.spoke.store(true, Ordering::Relaxed);
    }

    /// Whether a complete request head has arrived.
    pub(crate) fn has_spoken(&self) -> bool {
        self.spoke.load(Ordering::Relaxed)
    }

    /// A request begins; it is in progress until the returned guard drops
    /// (with the response body that carries it).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Asks the connection's task to close it (the first reason wins).
    pub(crate) fn close(&self, reason: Closing) {
        let mut closing = self.closing.lock().unwrap_or_else(PoisonError::into_inner);
        if closing.is_none() {
            *closing = Some(reason);
            drop(closing);
            // A permit is stored if the task is not waiting yet.
            self.close.notify_one();
        }
    }

    /// Resolves when the connection must close, with the reason.
    pub(crate) async fn closing(&self) -> Closing {
        self.close.notified().await;
        self.closing.lock().unwrap_or_else(PoisonError::into_inner).unwrap_or(Closing::Stalled)
    }

    /// Whether response bytes have waited on the peer longer than the
    /// stall timeout.
    pub(crate) fn stalled(&self) -> bool {
        self.pending.load(Ordering::Relaxed) > 0
            && self.table.now_ms().saturating_sub(self.progressed.load(Ordering::Relaxed))
                > u64::try_from(self.table.budgets.stall.as_millis()).unwrap_or(u64::MAX)
    }

    /// The stall timeout of the table.
    pub(crate) fn stall_timeout(&self) -> Duration {
        self.table.budgets.stall
    }

    /// Leaves the table (the connection's task ends).
    pub(crate) fn leave(&self) {
        let removed = self.table.lock().remove(&self.id);
        drop(removed);
        self.table.left.notify_waiters();
    }

    fn add_pending(&self, length: usize, owned: bool) {
        if length == 0 {
            return;
        }
        if self.pending.fetch_add(length, Ordering::Relaxed) == 0 {
            // The wait on the peer begins now.
            self.progressed.store(self.table.now_ms(), Ordering::Relaxed);
        }
        if owned {
            let mine = self.owned.fetch_add(length, Ordering::Relaxed) + length;
            let total = self.table.owned.fetch_add(length, Ordering::Relaxed) + length;
            let budgets = &self.table.budgets;
            if mine > budgets.per_connection || total > budgets.total {
                tracing::debug!(mine, total, "connection closed: over its response-bytes budget");
                self.close(Closing::Stalled);
            }
        }
    }

    fn sent(&self, length: usize, owned: usize, progressed: bool) {
        self.pending.fetch_sub(length, Ordering::Relaxed);
        if owned > 0 {
            self.owned.fetch_sub(owned, Ordering::Relaxed);
            self.table.owned.fetch_sub(owned, Ordering::Relaxed);
        }
        if progressed {
            self.progressed.store(self.table.now_ms(), Ordering::Relaxed);
        }
    }
}

/// A request in progress on its connection (see [`Connection::begin`]).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Connection>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let connection = &self.0;
        connection.active.store(connection.table.now_ms(), Ordering::Relaxed);
        connection.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body whose unsent bytes count against its connection until
/// the peer takes them (see the module documentation). It hands hyper at
/// most [`CHUNK`] bytes at a time.
#[derive(Debug)]
pub(crate) struct TrackedBody {
    rest: Bytes,
    /// Whether `rest` is this body's alone (not shared with a cache).
    owned: bool,
    request: Option<InFlight>,
}

impl TrackedBody {
    /// The body of `response` as `request`'s, counted against its
    /// connection.
    pub(crate) fn new(body: Full<Bytes>, request: InFlight) -> Self {
        let rest = take(body);
        // A unique handle is a copy of this response's own; a shared one
        // (static, or held by a cache) costs nothing more per response.
        let owned = rest.is_unique();
        request.0.add_pending(rest.len(), owned);
        Self { rest, owned, request: Some(request) }
    }
}

/// The bytes of a [`Full`] body: it yields them at its first poll.
fn take(mut body: Full<Bytes>) -> Bytes {
    let mut context = Context::from_waker(Waker::noop());
    match Pin::new(&mut body).poll_frame(&mut context) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.rest.is_empty() {
            // Done: the request is no longer in progress.
            this.request = None;
            return Poll::Ready(None);
        }
        let chunk = this.rest.split_to(this.rest.len().min(CHUNK));
        if let Some(request) = &this.request {
            request.0.sent(chunk.len(), if this.owned { chunk.len() } else { 0 }, true);
        }
        if this.rest.is_empty() {
            this.request = None;
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.rest.len() as u64)
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(request) = &self.request {
            let length = self.rest.len();
            request.0.sent(length, if self.owned { length } else { 0 }, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max_connections: usize) -> ConnectionTable {
        ConnectionTable::new(Budgets {
            max_connections,
            per_connection: 1000,
            total: 1500,
            stall: Duration::from_secs(10),
        })
    }

    fn admitted(admission: Admission) -> Arc<Connection> {
        match admission {
            Admission::Admitted(connection) | Admission::Evicted(connection) => connection,
            Admission::Refused => panic!("refused"),
        }
    }

    fn owned_body(length: usize) -> Full<Bytes> {
        Full::new(Bytes::from(vec![7_u8; length]))
    }

    #[test]
    fn a_full_table_evicts_a_silent_connection_before_an_idle_one_and_refuses_when_all_are_busy() {
        let table = table(2);
        let idle = admitted(table.admit());
        idle.spoke();
        let silent = admitted(table.admit());
        let newcomer = table.admit();
        assert!(matches!(newcomer, Admission::Evicted(_)), "{newcomer:?}");
        assert_eq!(*silent.closing.lock().expect("lock"), Some(Closing::Evicted), "the silent one goes first");
        assert_eq!(*idle.closing.lock().expect("lock"), None);
        let busy = admitted(newcomer);
        busy.spoke();
        let _request = busy.begin();
        let another = admitted(table.admit());
        assert_eq!(*idle.closing.lock().expect("lock"), Some(Closing::Evicted), "then the idle one");
        another.spoke();
        let _also_busy = another.begin();
        assert!(matches!(table.admit(), Admission::Refused), "every connection is serving a request");
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn unsent_owned_bytes_count_until_sent_or_dropped_and_a_budget_overrun_closes() {
        let table = table(10);
        let connection = admitted(table.admit());
        let mut body = TrackedBody::new(owned_body(CHUNK + 10), connection.begin());
        assert_eq!(connection.pending.load(Ordering::Relaxed), CHUNK + 10);
        assert_eq!(connection.in_flight.load(Ordering::Relaxed), 1);
        let mut context = Context::from_waker(Waker::noop());
        let Poll::Ready(Some(Ok(frame))) = Pin::new(&mut body).poll_frame(&mut context) else { panic!("a frame") };
        assert_eq!(frame.into_data().expect("data").len(), CHUNK);
        assert_eq!(connection.pending.load(Ordering::Relaxed), 10);
        drop(body);
        assert_eq!(connection.pending.load(Ordering::Relaxed), 0);
        assert_eq!(table.0.owned.load(Ordering::Relaxed), 0);
        assert_eq!(connection.in_flight.load(Ordering::Relaxed), 0);
        let over = TrackedBody::new(owned_body(1001), connection.begin());
        assert_eq!(*connection.closing.lock().expect("lock"), Some(Closing::Stalled));
        drop(over);
    }

    #[test]
    fn shared_bytes_cost_no_budget() {
        let table = table(10);
        let connection = admitted(table.admit());
        let shared = Bytes::from(vec![1_u8; 5000]);
        let bodies: Vec<_> = (0..10).map(|_| TrackedBody::new(Full::new(shared.clone()), connection.begin())).collect();
        assert_eq!(connection.pending.load(Ordering::Relaxed), 50_000);
        assert_eq!(connection.owned.load(Ordering::Relaxed), 0);
        assert_eq!(*connection.closing.lock().expect("lock"), None);
        drop(bodies);
        let from_static = TrackedBody::new(Full::new(Bytes::from_static(&[0; 2000])), connection.begin());
        assert!(!from_static.owned);
    }

    #[test]
    fn a_connection_leaves_the_table() {
        let table = table(10);
        let connection = admitted(table.admit());
        assert_eq!(table.len(), 1);
        connection.leave();
        assert_eq!(table.len(), 0);
    }
}

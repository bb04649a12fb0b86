//! `last_used_at` of API keys and service tokens without slowing
//! verification (docs/GUARANTEES.md, API keys): a use is
//! recorded in memory on the request path (one sharded lock, no database
//! write, no allocation after a key's first use in an interval); a
//! background task ([`Service::spawn_usage_flusher`]) writes the latest use
//! of each key once per interval, in one transaction, through
//! `Mutations::record_api_key_uses` (and `record_service_token_uses`),
//! which only ever move the value forwards, whichever replica writes.
//! Graceful shutdown stops the task ([`UsageFlusher::stop`]) and flushes
//! what is pending ([`Service::flush_uses`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::{Service, ServiceResult};

/// How many independently locked maps the uses are spread over, so that
/// concurrent verifications of different keys rarely wait for each other.
const SHARDS: usize = 16;

/// The uses seen since the last flush: each key's (or token's) latest.
#[derive(Debug)]
pub(crate) struct UsageRecorder<Id> {
    enabled: bool,
    shards: [Mutex<HashMap<Id, OffsetDateTime>>; SHARDS],
}

/// What one shard held: (its index, the id, the latest use).
type Uses<Id> = Vec<(usize, Id, OffsetDateTime)>;

impl<Id: Clone + Eq + Hash> UsageRecorder<Id> {
    pub(crate) fn new(enabled: bool) -> Self {
        Self { enabled, shards: std::array::from_fn(|_| Mutex::new(HashMap::new())) }
    }

    /// Records that `id` (whose secret's digest starts with `shard_byte`)
    /// was used at `at`.
    pub(crate) fn record(&self, id: &Id, shard_byte: u8, at: OffsetDateTime) {
        if !self.enabled {
            return;
        }
        let mut shard = self.shards[usize::from(shard_byte) % SHARDS].lock().unwrap_or_else(PoisonError::into_inner);
        match shard.get_mut(id) {
            Some(last) if *last >= at => {}
            Some(last) => *last = at,
            None => {
                shard.insert(id.clone(), at);
            }
        }
    }

    /// Everything pending, leaving the recorder empty: each use with the
    /// shard it was in.
    fn take(&self) -> Uses<Id> {
        let mut pending = Vec::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            pending.extend(taken.into_iter().map(|(id, at)| (index, id, at)));
        }
        pending
    }

    /// Puts back uses a flush could not write, each in its shard (newer
    /// uses seen meanwhile win), so a failed write loses nothing.
    fn restore(&self, uses: Uses<Id>) {
        for (index, id, at) in uses {
            let mut shard = self.shards[index].lock().unwrap_or_else(PoisonError::into_inner);
            let last = shard.entry(id).or_insert(at);
            *last = (*last).max(at);
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.shards.iter().map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }
}

/// Uses taken from the recorder for a write: put back when dropped, unless
/// the write succeeded. (A write whose commit went through but whose answer
/// was lost is put back too, which costs one more write of the same values:
/// `record_api_key_uses` only moves forwards.)
struct Taken<'a, Id: Clone + Eq + Hash> {
    recorder: &'a UsageRecorder<Id>,
    uses: Uses<Id>,
}

impl<'a, Id: Clone + Eq + Hash> Taken<'a, Id> {
    fn from(recorder: &'a UsageRecorder<Id>) -> Self {
        Self { recorder, uses: recorder.take() }
    }

    /// The uses as a store write takes them.
    fn latest(&self) -> Vec<(Id, OffsetDateTime)> {
        self.uses.iter().map(|(_, id, at)| (id.clone(), *at)).collect()
    }

    fn written(mut self) {
        self.uses.clear();
    }
}

impl<Id: Clone + Eq + Hash> Drop for Taken<'_, Id> {
    fn drop(&mut self) {
        self.recorder.restore(std::mem::take(&mut self.uses));
    }
}

/// Takes what `recorder` holds and writes it with `write`; what a failed or
/// dropped write took goes back (see [`Taken`]).
async fn flush<Id: Clone + Eq + Hash>(
    recorder: &UsageRecorder<Id>,
    write: impl AsyncFnOnce(&[(Id, OffsetDateTime)]) -> keys_store::StoreResult<u64>,
) -> ServiceResult<u64> {
    let taken = Taken::from(recorder);
    if taken.uses.is_empty() {
        return Ok(0);
    }
    let moved = write(&taken.latest()).await?;
    taken.written();
    Ok(moved)
}

impl Service {
    /// Writes every pending use (the latest per key) to the store in one
    /// transaction; returns how many keys' `last_used_at` moved. On a store
    /// failure, or if this future is dropped before the write returns (the
    /// flusher aborted at shutdown, a timeout), the uses stay pending for
    /// the next flush.
    pub async fn flush_api_key_uses(&self) -> ServiceResult<u64> {
        flush(&self.usage, async |uses| self.store.record_api_key_uses(uses).await).await
    }

    /// As [`Service::flush_api_key_uses`], for service tokens.
    pub async fn flush_service_token_uses(&self) -> ServiceResult<u64> {
        flush(&self.token_usage, async |uses| self.store.record_service_token_uses(uses).await).await
    }

    /// Flushes API key uses, then service token uses; the first failure is
    /// returned, and what it could not write stays pending.
    pub async fn flush_uses(&self) -> ServiceResult<u64> {
        let keys = self.flush_api_key_uses().await;
        let tokens = self.flush_service_token_uses().await;
        Ok(keys? + tokens?)
    }

    /// How many keys have a use not yet written.
    pub fn pending_api_key_uses(&self) -> usize {
        self.usage.pending()
    }

    /// Flushes the recorded uses every `interval` until
    /// [`UsageFlusher::stop`] (then call [`Service::flush_uses`]
    /// once more, as graceful shutdown does).
    pub fn spawn_usage_flusher(self: &Arc<Self>, interval: Duration) -> UsageFlusher {
        every(self, interval, |service| async move {
            if let Err(error) = service.flush_uses().await {
                tracing::warn!(%error, "writing last_used_at failed; retrying at the next interval");
            }
        })
    }
}

/// Runs `work` on the service every `interval` until the returned
/// flusher's [`UsageFlusher::stop`]: the task of both background writers
/// (`last_used_at`, and the usage counts of [`crate::usage_counts`]).
pub(crate) fn every<Work, Done>(service: &Arc<Service>, interval: Duration, work: Work) -> UsageFlusher
where
    Work: Fn(Arc<Service>) -> Done + Send + 'static,
    Done: std::future::Future<Output = ()> + Send,
{
    every_or_woken(service, interval, None, work)
}

/// [`every`], also run at once when `wake` is notified (the deliverer of
/// webhooks, woken as each attempt ends).
pub(crate) fn every_or_woken<Work, Done>(
    service: &Arc<Service>,
    interval: Duration,
    wake: Option<Arc<Notify>>,
    work: Work,
) -> UsageFlusher
where
    Work: Fn(Arc<Service>) -> Done + Send + 'static,
    Done: std::future::Future<Output = ()> + Send,
{
    let service = Arc::clone(service);
    let stop = Arc::new(Notify::new());
    let stopped = Arc::clone(&stop);
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            // Only the wait is raced against the stop: work under way
            // always finishes. A wake-up kept while the work ran (a
            // `Notify` permit) runs it again at once.
            tokio::select! {
                _ = ticks.tick() => {}
                () = woken(wake.as_deref()) => {}
                () = stopped.notified() => return,
            }
            work(Arc::clone(&service)).await;
        }
    });
    UsageFlusher { stop, task }
}

async fn woken(wake: Option<&Notify>) {
    match wake {
        Some(wake) => wake.notified().await,
        None => std::future::pending().await,
    }
}

/// A background writer of [`Service::spawn_usage_flusher`] or
/// [`Service::spawn_usage_counts_flusher`].
#[derive(Debug)]
pub struct UsageFlusher {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl UsageFlusher {
    /// Stops the flusher once the flush under way, if any, has finished
    /// (aborting it could drop uses it had taken, and a write half done).
    pub async fn stop(self) {
        // A permit is kept if the task is not waiting yet: it stops at its
        // next wait.
        self.stop.notify_one();
        if let Err(error) = self.task.await {
            tracing::warn!(%error, "a usage flusher ended abnormally");
        }
    }
}

//! `last_used_at` without slowing verification (SPEC section 1): a use is
//! recorded in memory on the request path (one sharded lock, no database
//! write, no allocation after a key's first use in an interval); a
//! background task ([`Service::spawn_usage_flusher`]) writes the latest use
//! of each key once per interval, in one transaction, through
//! `Mutations::record_api_key_uses`, which only ever moves the value
//! forwards, whichever replica writes. Graceful shutdown stops the task
//! ([`UsageFlusher::stop`]) and flushes what is pending
//! ([`Service::flush_api_key_uses`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keys_core::ApiKeyId;
use time::OffsetDateTime;
use tokio::sync::Notify;

use crate::{Service, ServiceResult};

/// How many independently locked maps the uses are spread over, so that
/// concurrent verifications of different keys rarely wait for each other.
const SHARDS: usize = 16;

/// The uses seen since the last flush: each key's latest.
#[derive(Debug)]
pub(crate) struct UsageRecorder {
    enabled: bool,
    shards: [Mutex<HashMap<ApiKeyId, OffsetDateTime>>; SHARDS],
}

impl UsageRecorder {
    pub(crate) fn new(enabled: bool) -> Self {
        Self { enabled, shards: std::array::from_fn(|_| Mutex::new(HashMap::new())) }
    }

    /// Records that `id` (whose secret's digest starts with `shard_byte`)
    /// was used at `at`.
    pub(crate) fn record(&self, id: &ApiKeyId, shard_byte: u8, at: OffsetDateTime) {
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
    fn take(&self) -> Vec<(usize, ApiKeyId, OffsetDateTime)> {
        let mut pending = Vec::new();
        for (index, shard) in self.shards.iter().enumerate() {
            let taken = std::mem::take(&mut *shard.lock().unwrap_or_else(PoisonError::into_inner));
            pending.extend(taken.into_iter().map(|(id, at)| (index, id, at)));
        }
        pending
    }

    /// Puts back uses a flush could not write, each in its shard (newer
    /// uses seen meanwhile win), so a failed write loses nothing.
    fn restore(&self, uses: Vec<(usize, ApiKeyId, OffsetDateTime)>) {
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
struct Taken<'a> {
    recorder: &'a UsageRecorder,
    uses: Vec<(usize, ApiKeyId, OffsetDateTime)>,
}

impl Taken<'_> {
    fn written(mut self) {
        self.uses.clear();
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.recorder.restore(std::mem::take(&mut self.uses));
    }
}

impl Service {
    /// Writes every pending use (the latest per key) to the store in one
    /// transaction; returns how many keys' `last_used_at` moved. On a store
    /// failure, or if this future is dropped before the write returns (the
    /// flusher aborted at shutdown, a timeout), the uses stay pending for
    /// the next flush.
    pub async fn flush_api_key_uses(&self) -> ServiceResult<u64> {
        let taken = Taken { recorder: &self.usage, uses: self.usage.take() };
        if taken.uses.is_empty() {
            return Ok(0);
        }
        let uses: Vec<(ApiKeyId, OffsetDateTime)> = taken.uses.iter().map(|(_, id, at)| (id.clone(), *at)).collect();
        let moved = self.store.record_api_key_uses(&uses).await?;
        taken.written();
        Ok(moved)
    }

    /// How many keys have a use not yet written.
    pub fn pending_api_key_uses(&self) -> usize {
        self.usage.pending()
    }

    /// Flushes the recorded uses every `interval` until
    /// [`UsageFlusher::stop`] (then call [`Service::flush_api_key_uses`]
    /// once more, as graceful shutdown does).
    pub fn spawn_usage_flusher(self: &Arc<Self>, interval: Duration) -> UsageFlusher {
        let service = Arc::clone(self);
        let stop = Arc::new(Notify::new());
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                // Only the wait is raced against the stop: a flush under
                // way always finishes.
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stopped.notified() => return,
                }
                if let Err(error) = service.flush_api_key_uses().await {
                    tracing::warn!(%error, "writing API key last_used_at failed; retrying at the next interval");
                }
            }
        });
        UsageFlusher { stop, task }
    }
}

/// The background task of [`Service::spawn_usage_flusher`].
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
            tracing::warn!(%error, "the API key last_used_at flusher ended abnormally");
        }
    }
}

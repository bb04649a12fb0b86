//! Usage counts (docs/API.md, Usage): every verification counted per key
//! and outcome, per minute, without slowing verification.
//!
//! **On the request path** a verification that found a key adds one to
//! the key's count of this minute and outcome, under one of [`SHARDS`]
//! locks, in a map keyed by the key's id: nothing is allocated once a key
//! has its entry (its first use since the last flush), and nothing touches
//! the database. (A verification that found no key has nothing to count
//! here; `/metrics` counts every verification by kind and outcome.)
//!
//! **Off it**, [`Service::spawn_usage_counts_flusher`] writes what was
//! counted once per interval as one [`UsageBatch`], which the store adds to
//! the minute, hour and day buckets in one transaction, each row's count
//! plus this batch's (so the counts of all replicas add up). The batch's id
//! is recorded in that transaction: a batch whose write failed is kept,
//! whole and with its id, and written first at the next flush, and one
//! whose commit went through but whose answer was lost is then found
//! recorded and not added again. So every count is written exactly once.
//! Graceful shutdown writes what is pending
//! ([`Service::flush_usage_counts`]).
//!
//! The same task prunes buckets past their retention, in bounded deletes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use keys_core::usage::{Granularity, UsageRetention, UsageWindow};
use keys_store::{UsageBatch, UsageCount, UsageOf, UsagePosition, UsageQuery, UsageRow};
use time::OffsetDateTime;

use crate::audit::InvalidCursor;
use crate::usage::UsageFlusher;
use crate::workspaces::InWorkspace;
use crate::{Service, ServiceResult};

/// Independently locked maps the counts are spread over.
const SHARDS: usize = 16;

/// Rows one prune statement deletes at most; a prune repeats it.
const PRUNE_BATCH: u32 = 10_000;

/// Prune statements per granularity per interval at most, so that a large
/// backlog (a retention shortened by a flag) is worked off over several
/// intervals rather than in one long burst.
const PRUNE_ROUNDS: usize = 10;

/// Batch ids are kept this long after their write: far longer than any
/// retry of a write takes.
const BATCH_ID_RETENTION: time::Duration = time::Duration::DAY;

/// The key a verification found, to count it under: its id and its
/// workspace's uid (`""` for an organisation key, which belongs to no
/// workspace).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counted<'a> {
    pub workspace: &'a str,
    pub key_id: &'a str,
}

impl Counted<'_> {
    /// A byte of the key id that spreads keys over the shards (the last
    /// characters of an id are its random ones), so that one key always
    /// takes the same lock and holds one entry, however it was presented.
    pub(crate) fn shard_byte(&self) -> u8 {
        self.key_id.bytes().rev().take(4).fold(0u8, |hash, byte| hash.wrapping_mul(31).wrapping_add(byte))
    }
}

/// One key's counts since the last flush.
#[derive(Debug)]
struct KeyCounts {
    workspace: Box<str>,
    /// (the minute's Unix second, outcome, count): a handful per key.
    counts: Vec<(i64, &'static str, u64)>,
}

#[derive(Debug, Default)]
struct Shard {
    keys: HashMap<Box<str>, KeyCounts>,
}

/// The counts of this process (see the module documentation).
#[derive(Debug)]
pub(crate) struct UsageCounter {
    /// Whether counts are kept.
    enabled: bool,
    retention: UsageRetention,
    shards: [Mutex<Shard>; SHARDS],
    /// Batches whose write failed, kept whole with their ids.
    unwritten: Mutex<Vec<UsageBatch>>,
    /// Tells this process's batches from every other's.
    process: String,
    sequence: AtomicU64,
}

impl UsageCounter {
    pub(crate) fn new(enabled: bool, retention: UsageRetention, process: String) -> Self {
        Self {
            enabled,
            retention,
            shards: std::array::from_fn(|_| Mutex::default()),
            unwritten: Mutex::new(Vec::new()),
            process,
            sequence: AtomicU64::new(0),
        }
    }

    /// Counts one verification of the key `counted` answered `outcome` at
    /// `at`. `shard_byte` spreads the locks (any byte that varies between
    /// keys: a digest's first).
    pub(crate) fn record(&self, counted: Counted<'_>, outcome: &'static str, shard_byte: u8, at: OffsetDateTime) {
        if !self.enabled {
            return;
        }
        let mut shard = self.shards[usize::from(shard_byte) % SHARDS].lock().unwrap_or_else(PoisonError::into_inner);
        let minute = Granularity::Minute.bucket(at).unix_timestamp();
        let key = match shard.keys.get_mut(counted.key_id) {
            Some(key) => key,
            None => shard
                .keys
                .entry(counted.key_id.into())
                .or_insert_with(|| KeyCounts { workspace: counted.workspace.into(), counts: Vec::with_capacity(2) }),
        };
        match key.counts.iter_mut().find(|(at, was, _)| *at == minute && *was == outcome) {
            Some((_, _, count)) => *count += 1,
            None => key.counts.push((minute, outcome, 1)),
        }
    }

    /// Counts not written yet: keys with a count, plus a batch kept after
    /// a failed write.
    pub(crate) fn pending(&self) -> usize {
        let counted: usize =
            self.shards.iter().map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).keys.len()).sum();
        let unwritten = self.unwritten.lock().unwrap_or_else(PoisonError::into_inner);
        counted + unwritten.iter().map(|batch| batch.counts.len()).sum::<usize>()
    }

    /// Everything counted, as a new batch (`None` when nothing was).
    fn take(&self, now: OffsetDateTime) -> Option<UsageBatch> {
        let mut counts = Vec::new();
        for shard in &self.shards {
            let taken = std::mem::take(&mut shard.lock().unwrap_or_else(PoisonError::into_inner).keys);
            for (key_id, key) in taken {
                for (minute, outcome, count) in key.counts {
                    counts.push(UsageCount {
                        workspace: key.workspace.to_string(),
                        key_id: key_id.to_string(),
                        outcome,
                        minute: OffsetDateTime::from_unix_timestamp(minute).unwrap_or(OffsetDateTime::UNIX_EPOCH),
                        count,
                    });
                }
            }
        }
        if counts.is_empty() {
            return None;
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        Some(UsageBatch { id: format!("{}-{sequence}", self.process), counts, written_at: now })
    }
}

impl Service {
    /// Writes what is counted: first a batch a failed write left, then
    /// everything counted since. Returns how many counts were added. On a
    /// store failure what was not written is kept for the next flush, its
    /// batch id with it, so nothing is lost and nothing is added twice.
    pub async fn flush_usage_counts(&self) -> ServiceResult<u64> {
        let counter = &self.usage_counts;
        let mut added = 0;
        // Batches kept by failed writes first, each with its own id; each
        // batch taken is put back if its write fails.
        let mut batches = std::mem::take(&mut *counter.unwritten.lock().unwrap_or_else(PoisonError::into_inner));
        batches.extend(counter.take(self.now()));
        let mut batches = batches.into_iter();
        while let Some(batch) = batches.next() {
            let written = self.write_usage_batch(batch).await;
            if written.is_err() {
                // Not tried: kept as they are.
                counter.unwritten.lock().unwrap_or_else(PoisonError::into_inner).extend(batches.by_ref());
            }
            added += written?;
        }
        Ok(added)
    }

    async fn write_usage_batch(&self, batch: UsageBatch) -> ServiceResult<u64> {
        // Kept until written: a failure, or this future dropped midway,
        // leaves it for the next flush.
        let kept = KeptBatch { counter: &self.usage_counts, batch, written: false };
        let recorded = self.store.record_usage(&kept.batch).await?;
        let added = if recorded { kept.batch.counts.iter().map(|count| count.count).sum() } else { 0 };
        kept.written();
        Ok(added)
    }

    /// Deletes buckets past their retention and old batch ids, in bounded
    /// statements (at most [`PRUNE_ROUNDS`] of [`PRUNE_BATCH`] rows per
    /// granularity). Returns how many count rows went.
    pub async fn prune_usage(&self) -> ServiceResult<u64> {
        let now = self.now();
        let retention = self.usage_counts.retention;
        let mut pruned = 0;
        let mut cutoffs: Vec<_> = Granularity::ALL.iter().map(|g| (*g, retention.cutoff(*g, now))).collect();
        for _ in 0..PRUNE_ROUNDS {
            let round = self.store.prune_usage(&cutoffs, now - BATCH_ID_RETENTION, PRUNE_BATCH).await?;
            pruned += round.counts;
            if round.counts < PRUNE_BATCH.into() && round.batches < PRUNE_BATCH.into() {
                break;
            }
            // Granularities worked off are not asked again this time.
            cutoffs.retain(|_| round.counts >= PRUNE_BATCH.into());
        }
        Ok(pruned)
    }

    /// Counts not written yet.
    pub fn pending_usage_counts(&self) -> usize {
        self.usage_counts.pending()
    }

    /// Writes the counts every `interval`, and prunes what is past its
    /// retention, until [`UsageFlusher::stop`] (then call
    /// [`Service::flush_usage_counts`] once more, as graceful shutdown
    /// does).
    pub fn spawn_usage_counts_flusher(self: &Arc<Self>, interval: Duration) -> UsageFlusher {
        crate::usage::every(self, interval, |service| async move {
            if let Err(error) = service.flush_usage_counts().await {
                tracing::warn!(%error, "writing usage counts failed; they are kept for the next interval");
            }
            if let Err(error) = service.prune_usage().await {
                tracing::warn!(%error, "pruning usage counts failed; retrying at the next interval");
            }
        })
    }
}

/// A batch being written: kept for the next flush when dropped, unless
/// its write succeeded. Kept whole, with its id: it may have been
/// committed (an answer lost), and its id tells the store so.
struct KeptBatch<'a> {
    counter: &'a UsageCounter,
    batch: UsageBatch,
    written: bool,
}

impl KeptBatch<'_> {
    fn written(mut self) {
        self.written = true;
    }
}

impl Drop for KeptBatch<'_> {
    fn drop(&mut self) {
        if self.written {
            return;
        }
        let empty = UsageBatch { id: String::new(), counts: Vec::new(), written_at: OffsetDateTime::UNIX_EPOCH };
        let batch = std::mem::replace(&mut self.batch, empty);
        self.counter.unwritten.lock().unwrap_or_else(PoisonError::into_inner).push(batch);
    }
}

/// Where the next page of a usage query starts: an opaque token for
/// clients (hexadecimal characters that encode a row's bucket, key id and
/// outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCursor(UsagePosition);

impl UsageCursor {
    /// The cursor of a position, as [`UsagePage::next`] holds it.
    pub fn of(position: UsagePosition) -> Self {
        Self(position)
    }

    pub fn parse(text: &str) -> Result<Self, InvalidCursor> {
        if text.len() > 512 || !text.len().is_multiple_of(2) {
            return Err(InvalidCursor);
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|index| {
                u8::from_str_radix(text.get(index..index + 2).ok_or(InvalidCursor)?, 16).map_err(|_| InvalidCursor)
            })
            .collect::<Result<_, _>>()?;
        let decoded = String::from_utf8(bytes).map_err(|_| InvalidCursor)?;
        let mut parts = decoded.splitn(3, '|');
        let (Some(seconds), Some(key_id), Some(outcome)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(InvalidCursor);
        };
        let at = seconds
            .parse::<i64>()
            .ok()
            .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok())
            .ok_or(InvalidCursor)?;
        let key_shaped = key_id.len() <= 64 && key_id.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if !key_shaped || !keys_core::usage::is_outcome(outcome) {
            return Err(InvalidCursor);
        }
        Ok(Self(UsagePosition { at, key_id: key_id.to_owned(), outcome: outcome.to_owned() }))
    }

    pub fn position(&self) -> &UsagePosition {
        &self.0
    }
}

impl std::fmt::Display for UsageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format!("{}|{}|{}", self.0.at.unix_timestamp(), self.0.key_id, self.0.outcome);
        for byte in text.bytes() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// What a usage query asks (`GET /v1/{workspace}/usage/`).
#[derive(Debug, Clone)]
pub struct UsageRequest {
    pub window: UsageWindow,
    pub of: UsageOf,
    pub after: Option<UsageCursor>,
    /// 1 to [`keys_core::usage::MAX_USAGE_ROWS`].
    pub limit: u32,
}

/// One page of counts, and where the next starts (`None`: the last).
#[derive(Debug, Clone)]
pub struct UsagePage {
    pub rows: Vec<UsageRow>,
    pub next: Option<UsageCursor>,
}

impl InWorkspace<'_> {
    /// The workspace's counts over a window: its totals per outcome, or a
    /// key's, or those of each key with an `external_id`; newest bucket
    /// first. Counts are in once their process wrote them (one usage
    /// interval at most). Needs [`keys_core::Permission::ManageKeys`] (every
    /// `InWorkspace` has it).
    pub async fn usage(&self, request: UsageRequest) -> ServiceResult<UsagePage> {
        let limit = request.limit.clamp(1, keys_core::usage::MAX_USAGE_ROWS);
        let query = UsageQuery {
            workspace: self.workspace.uid.clone(),
            of: request.of,
            granularity: request.window.granularity,
            since: request.window.since,
            until: request.window.until,
            after: request.after.map(|cursor| cursor.0),
            // One more than asked, to know whether another page follows.
            limit: limit + 1,
        };
        let mut rows = self.service.store.usage_page(&query).await?;
        let next = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|row| UsageCursor(row.position()))
        } else {
            None
        };
        Ok(UsagePage { rows, next })
    }
}

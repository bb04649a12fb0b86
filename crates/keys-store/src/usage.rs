//! Usage counts (docs/API.md, Usage): what keys-service's counter writes
//! ([`UsageBatch`]) and what a query reads back ([`UsageQuery`],
//! [`UsageRow`]). The SQL is `repo::usage`'s.

use keys_core::usage::Granularity;
use keys_core::WorkspaceUid;
use time::OffsetDateTime;

/// One count of one minute: `count` verifications of `key_id` (of
/// `workspace`, `""` for an organisation key) answered `outcome`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub workspace: String,
    pub key_id: String,
    pub outcome: &'static str,
    /// The start of the minute.
    pub minute: OffsetDateTime,
    pub count: u64,
}

/// The counts of one flush of one process, written once: its `id` is
/// recorded in the write's transaction, and a batch whose id is recorded
/// already is not added again (a retry after a commit whose answer was
/// lost). Each count is added to its minute, its hour and its day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageBatch {
    /// Unique per batch: 1–64 characters.
    pub id: String,
    pub counts: Vec<UsageCount>,
    pub written_at: OffsetDateTime,
}

/// Whose counts a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsageOf {
    /// The workspace's totals per outcome, all keys together (`key_id`
    /// null in the rows).
    Workspace,
    /// One key of the workspace.
    Key(String),
    /// Each key of the workspace with this `external_id`.
    ExternalId(String),
}

/// Where the next page of a query starts: after this row, in the query's
/// order (newest bucket first, then key id, then outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsagePosition {
    pub at: OffsetDateTime,
    pub key_id: String,
    pub outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub workspace: WorkspaceUid,
    pub of: UsageOf,
    pub granularity: Granularity,
    /// Buckets starting at or after this…
    pub since: OffsetDateTime,
    /// …and before this.
    pub until: OffsetDateTime,
    pub after: Option<UsagePosition>,
    pub limit: u32,
}

/// One bucket's count of one key (none: the workspace's total) and
/// outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub at: OffsetDateTime,
    pub key_id: Option<String>,
    pub outcome: String,
    pub count: u64,
}

impl UsageRow {
    /// The position just past this row.
    pub fn position(&self) -> UsagePosition {
        UsagePosition { at: self.at, key_id: self.key_id.clone().unwrap_or_default(), outcome: self.outcome.clone() }
    }
}

/// What a prune removed: rows of counts and of batch ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsagePruned {
    pub counts: u64,
    pub batches: u64,
}

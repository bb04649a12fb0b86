//! The audit trail: a page of the caller's organisation's events (newest
//! first, continued by an opaque [`AuditCursor`]), the operator's export
//! (oldest first, in batches of constant size) and prune.
//!
//! Pages are keyset pages on `(at, id)` (see [`keys_store::AuditPosition`]):
//! the cursor is the position of the last event of the previous page, so
//! events inserted meanwhile neither shift a page nor appear twice.

use std::fmt;

use keys_core::{Organisation, OrganisationId, Permission};
use keys_store::{AuditAction, AuditFilter, AuditOrder, AuditPosition, AuditQuery, RecordedAuditEvent};
use time::OffsetDateTime;

use crate::{Caller, Service, ServiceResult};

/// Where the next page of events starts: an opaque token for clients (32
/// hexadecimal characters that encode a position of the trail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditCursor(AuditPosition);

/// A cursor that keysd did not make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not one this server returned")]
pub struct InvalidCursor;

impl AuditCursor {
    pub fn parse(text: &str) -> Result<Self, InvalidCursor> {
        if text.len() != 32 || !text.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(InvalidCursor);
        }
        let half = |range: std::ops::Range<usize>| u64::from_str_radix(&text[range], 16).map_err(|_| InvalidCursor);
        let (micros, id) = (half(0..16)? as i64, half(16..32)? as i64);
        // Any 32 hexadecimal characters are a position: one this server
        // never made lies before or after every event (clamped to the years
        // both databases hold), and pages from there. Only the format is
        // refused.
        let (first, last) =
            (time::macros::datetime!(0001-01-01 0:00 UTC), time::macros::datetime!(9999-12-31 23:59:59.999999 UTC));
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .map_or(if micros < 0 { first } else { last }, |at| at.clamp(first, last));
        Ok(Self(AuditPosition { at, id }))
    }

    pub fn position(self) -> AuditPosition {
        self.0
    }
}

impl fmt::Display for AuditCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Microseconds fit an i64 for every representable time.
        let micros = (self.0.at.unix_timestamp_nanos() / 1_000) as i64;
        write!(f, "{:016x}{:016x}", micros as u64, self.0.id as u64)
    }
}

/// What a client asks of the trail: each `Some` narrows it.
#[derive(Debug, Clone, Default)]
pub struct AuditEventsRequest {
    /// A workspace slug of the caller's organisation.
    pub workspace: Option<String>,
    pub action: Option<AuditAction>,
    pub target_id: Option<String>,
    /// Inclusive.
    pub since: Option<OffsetDateTime>,
    /// Exclusive.
    pub until: Option<OffsetDateTime>,
    /// How many events at most (the HTTP layer keeps it within 1–100).
    pub limit: u32,
    pub cursor: Option<AuditCursor>,
}

/// One page of events, newest first, and where the next one starts (`None`
/// on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEventPage {
    pub events: Vec<RecordedAuditEvent>,
    pub next: Option<AuditCursor>,
}

/// The export of an organisation's trail, oldest first: one batch at a time,
/// each continuing after the last, so memory stays that of one batch.
#[derive(Debug)]
pub struct AuditExport<'s> {
    service: &'s Service,
    query: AuditQuery,
    finished: bool,
}

impl AuditExport<'_> {
    /// The next batch, or `None` when every event was read.
    pub async fn next_batch(&mut self) -> ServiceResult<Option<Vec<RecordedAuditEvent>>> {
        if self.finished {
            return Ok(None);
        }
        let batch = self.service.store.audit_page(&self.query).await?;
        self.finished = batch.len() < self.query.limit as usize;
        self.query.after = batch.last().map(RecordedAuditEvent::position).or(self.query.after);
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }
}

impl Service {
    /// A page of the caller's organisation's events, newest first. Needs
    /// [`Permission::ReadAudit`]. An unknown workspace is
    /// [`crate::ServiceError::WorkspaceNotFound`].
    pub async fn audit_events(&self, caller: &Caller, request: AuditEventsRequest) -> ServiceResult<AuditEventPage> {
        caller.require(Permission::ReadAudit)?;
        let workspace = match &request.workspace {
            Some(slug) => Some(self.resolve_workspace(caller, slug).await?.uid),
            None => None,
        };
        let filter = AuditFilter {
            organisation: caller.scope().organisation_id().clone(),
            workspace,
            action: request.action,
            target_id: request.target_id,
            since: request.since,
            until: request.until,
        };
        // One more than asked: whether a next page exists, without a count.
        let after = request.cursor.map(AuditCursor::position);
        let query = AuditQuery { filter, order: AuditOrder::NewestFirst, after, limit: request.limit + 1 };
        let mut events = self.store.audit_page(&query).await?;
        let next = if events.len() > request.limit as usize {
            events.truncate(request.limit as usize);
            events.last().map(|event| AuditCursor(event.position()))
        } else {
            None
        };
        Ok(AuditEventPage { events, next })
    }

    /// The organisation's events between `since` (inclusive) and `until`
    /// (exclusive), oldest first, in batches of `batch` events.
    pub fn export_audit_events(
        &self,
        organisation: &OrganisationId,
        since: Option<OffsetDateTime>,
        until: Option<OffsetDateTime>,
        batch: u32,
    ) -> AuditExport<'_> {
        let filter = AuditFilter { since, until, ..AuditFilter::organisation(organisation.clone()) };
        let query = AuditQuery { filter, order: AuditOrder::OldestFirst, after: None, limit: batch.max(1) };
        AuditExport { service: self, query, finished: false }
    }

    /// Deletes the organisation's events older than `before` (the operator's
    /// CLI) and records one `audit.pruned`; returns how many went.
    pub async fn prune_audit_events(&self, organisation: &Organisation, before: OffsetDateTime) -> ServiceResult<u64> {
        Ok(self.store.prune_audit_events(&organisation.id, before, self.now()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_only_malformed_text() {
        for (at, id) in [(time::macros::datetime!(2026-04-21 12:35:24.117631 UTC), 42), (OffsetDateTime::UNIX_EPOCH, 1)]
        {
            let cursor = AuditCursor(AuditPosition { at, id });
            assert_eq!(AuditCursor::parse(&cursor.to_string()), Ok(cursor));
        }
        let good = AuditCursor(AuditPosition { at: OffsetDateTime::UNIX_EPOCH, id: 0xab }).to_string();
        for bad in
            ["", "abc", &good.to_uppercase(), &format!("{good}0"), &good[1..], "0000000000000000000000000000000g"]
        {
            assert_eq!(AuditCursor::parse(bad), Err(InvalidCursor), "{bad:?}");
        }
        // Any well-formed cursor is a position, one keysd never made
        // included: before every event, or (clamped) after every one.
        let zero = AuditCursor::parse("00000000000000000000000000000000").map(AuditCursor::position);
        assert_eq!(zero, Ok(AuditPosition { at: OffsetDateTime::UNIX_EPOCH, id: 0 }));
        let far = AuditCursor::parse("7fffffffffffffff0000000000000001").map(|cursor| cursor.position().at.year());
        assert_eq!(far, Ok(9999));
        let early = AuditCursor::parse("ffffffffffffffffffffffffffffffff").map(|cursor| cursor.position().at.year());
        assert_eq!(early, Ok(1969), "-1 µs");
    }
}

//! The audit trail (dialect 1): `GET /v1/audit_event/`, a page of the
//! caller's organisation's events, newest first, continued by the opaque
//! `meta.next_cursor` (keyset pagination in keys-store, so pages stay exact
//! while events are written).

use serde::Serialize;
use utoipa::ToSchema;

use http::StatusCode;
use keys_service::audit::{AuditCursor, AuditEventsRequest};
use keys_store::AuditAction;

use super::instant_or_told;
use super::{echo, HttpResult};
use crate::error::{ApiError, Dialect};
use crate::query::pairs as query_pairs;
use crate::respond::json;
use crate::routing::{authenticated, Authenticated, Operation, Query, Route, Tag, NOT_FOUND};
use crate::schema::schema;
use crate::wire::format_timestamp;

/// The page size when the query names none.
const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
const MAX_LIMIT: u32 = 100;

/// The query of a list of events: every value checked, every problem told
/// at once (a 400), unknown parameters ignored as the other lists do.
fn parse_query(query: Option<&str>) -> Result<AuditEventsRequest, ApiError> {
    let mut request = AuditEventsRequest { limit: DEFAULT_LIMIT, ..AuditEventsRequest::default() };
    let mut problems = Vec::new();
    for (key, value) in query_pairs(query)? {
        match key.as_str() {
            "since" => request.since = instant_or_told("since", &value, &mut problems),
            "until" => request.until = instant_or_told("until", &value, &mut problems),
            "workspace" => request.workspace = Some(value),
            "target_id" => request.target_id = Some(value),
            "action" => match AuditAction::parse(&value) {
                Some(action) => request.action = Some(action),
                None => problems.push(format!("action '{}' is not an audit action", echo(&value))),
            },
            "limit" => match value.parse::<u32>() {
                Ok(limit @ 1..=MAX_LIMIT) => request.limit = limit,
                _ => problems.push(format!("limit must be a whole number between 1 and {MAX_LIMIT}")),
            },
            "cursor" => match AuditCursor::parse(&value) {
                Ok(cursor) => request.cursor = Some(cursor),
                Err(error) => problems.push(error.to_string()),
            },
            _ => {}
        }
    }
    // `since` after `until` is an empty window, answered as one: the
    // request is well formed.
    if problems.is_empty() {
        Ok(request)
    } else {
        Err(ApiError::Validation(problems))
    }
}

pub(crate) async fn list(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let request = parse_query(input.query.as_deref())?;
    let (workspace, limit) = (request.workspace.clone().unwrap_or_default(), request.limit);
    let page = state
        .service
        .audit_events(caller, request)
        .await
        .map_err(|error| ApiError::from_service(error, &workspace, "organisation"))?;
    let meta = AuditEventListMeta { limit, next_cursor: page.next.map(|cursor| cursor.to_string()) };
    json(StatusCode::OK, &AuditEventListDto { meta, results: page.events.iter().map(AuditEventDto::from).collect() })
}

/// `/v1/audit_event/`.
const AUDIT_EVENTS: &[Operation] = &[Operation::get(
    "list-audit-events",
    "List audit events",
    authenticated!(ReadAudit, list),
    schema::<AuditEventListDto>(),
)
.query(Query::Audit)
.describe(
    "Every change of the organisation, newest first. `meta.next_cursor` continues the list (null on the last \
     page); events written meanwhile never shift a page or appear twice.",
)
.refuses(&[NOT_FOUND])];

/// Dialect 1's audit trail.
pub(crate) static ROUTES: &[Route] = &[Route::new("/v1/audit_event/", Dialect::SuprSend, Tag::Audit, AUDIT_EVENTS)];

// ---------------------------------------------------------------- wire types

/// Who caused an audit event: the actor of its `*_by` fields and the
/// service token that acted (all null for the operator's CLI).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditActor)]
pub struct AuditActorDto {
    pub name: Option<String>,
    pub email: Option<String>,
    #[schema(pattern = "^st_")]
    pub token_id: Option<String>,
}

/// What an audit event happened to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditTarget)]
pub struct AuditTargetDto {
    /// `workspace`, `api_key`, `public_api_key`, `signing_api_key`,
    /// `organisation_key`, `service_token` or `organisation`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
}

/// One event of the audit trail (docs/API.md, Audit events); never a secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEvent)]
pub struct AuditEventDto {
    #[schema(pattern = "^evt_[0-9]+$")]
    pub id: String,
    pub at: String,
    #[schema(pattern = r"^[a-z_]+\.[a-z_]+$")]
    pub action: &'static str,
    pub actor: AuditActorDto,
    /// The workspace's slug, for what happened inside one.
    pub workspace: Option<String>,
    pub target: AuditTargetDto,
    pub request_id: Option<String>,
    /// What else the event says, never a secret: `source=<URL>` for
    /// `api_key.leaked`; null for the others.
    pub detail: Option<String>,
}

impl From<&keys_store::RecordedAuditEvent> for AuditEventDto {
    fn from(recorded: &keys_store::RecordedAuditEvent) -> Self {
        let event = &recorded.event;
        Self {
            id: format!("evt_{}", recorded.id),
            at: format_timestamp(event.at),
            action: event.action.as_str(),
            actor: AuditActorDto {
                name: event.actor.as_ref().map(|actor| actor.name().to_owned()),
                email: event.actor.as_ref().map(|actor| actor.email().to_owned()),
                token_id: event.token_id.as_ref().map(ToString::to_string),
            },
            workspace: recorded.workspace_slug.as_ref().map(|slug| slug.as_str().to_owned()),
            target: AuditTargetDto { kind: event.action.target_type(), id: event.target_id.clone() },
            request_id: event.request_id.as_ref().map(ToString::to_string),
            detail: event.detail.clone(),
        }
    }
}

/// `{limit, next_cursor}`: `next_cursor` is null on the last page.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEventListMeta)]
pub struct AuditEventListMeta {
    pub limit: u32,
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/audit_event/`: `{"meta": {limit, next_cursor}, "results": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEventList)]
pub struct AuditEventListDto {
    pub meta: AuditEventListMeta,
    pub results: Vec<AuditEventDto>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_checked_value_by_value() {
        let default = parse_query(None).expect("default");
        assert_eq!((default.limit, default.cursor, default.action), (DEFAULT_LIMIT, None, None));
        let full = parse_query(Some(
            "workspace=demo&action=api_key.rolled&target_id=ws_apik_x&since=2026-01-01T00%3A00%3A00Z\
             &until=2026-02-01T00:00:00Z&limit=100&utm=ignored",
        ))
        .expect("valid");
        assert_eq!(
            (full.workspace.as_deref(), full.action, full.limit),
            (Some("demo"), Some(AuditAction::ApiKeyRolled), 100)
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=ten",
            "action=api_key.create",
            "since=yesterday",
            "until=2026-13-01T00:00:00Z",
            "cursor=abc",
        ] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
        // An empty window is well formed (an empty page).
        assert!(parse_query(Some("since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z")).is_ok());
    }
}

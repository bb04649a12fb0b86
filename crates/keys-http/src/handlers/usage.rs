//! Usage (dialect 1): `GET /v1/{workspace}/usage/`, the verifications of
//! the workspace's keys counted per bucket and outcome (docs/API.md,
//! Usage), newest bucket first, continued by the opaque `next_cursor`.

use serde::Serialize;
use utoipa::ToSchema;

use http::StatusCode;
use keys_core::usage::{Granularity, UsageWindow, MAX_USAGE_ROWS};
use keys_service::usage_counts::{UsageCursor, UsageRequest};
use keys_store::{UsageOf, UsageRow};

use super::{echo, in_workspace, instant_or_told, HttpResult};
use crate::error::{ApiError, Dialect};
use crate::query::pairs as query_pairs;
use crate::respond::json;
use crate::routing::{authenticated, Authenticated, Operation, Query, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::{schema, string_enum};
use crate::wire::format_timestamp;

/// The query: every value checked, every problem told at once (a 400),
/// unknown parameters ignored as the other lists do.
fn parse_query(query: Option<&str>, now: time::OffsetDateTime) -> Result<UsageRequest, ApiError> {
    let mut problems = Vec::new();
    let (mut granularity, mut since, mut until) = (Granularity::Hour, None, None);
    let (mut key_id, mut external_id, mut after, mut limit) = (None, None, None, MAX_USAGE_ROWS);
    for (key, value) in query_pairs(query)? {
        match key.as_str() {
            "since" => since = instant_or_told("since", &value, &mut problems),
            "until" => until = instant_or_told("until", &value, &mut problems),
            "granularity" => match Granularity::parse(&value) {
                Ok(parsed) => granularity = parsed,
                Err(error) => problems.push(error.to_string()),
            },
            "key_id" => {
                if (1..=64).contains(&value.len())
                    && value.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
                {
                    key_id = Some(value);
                } else {
                    problems.push(format!("key_id '{}' is not a key id", echo(&value)));
                }
            }
            "external_id" => match keys_core::ExternalId::parse(&value) {
                Ok(_) => external_id = Some(value),
                Err(error) => problems.push(format!("external_id: {error}")),
            },
            "limit" => match value.parse::<u32>() {
                Ok(asked @ 1..=MAX_USAGE_ROWS) => limit = asked,
                _ => problems.push(format!("limit must be a whole number between 1 and {MAX_USAGE_ROWS}")),
            },
            "cursor" => match UsageCursor::parse(&value) {
                Ok(cursor) => after = Some(cursor),
                Err(error) => problems.push(error.to_string()),
            },
            _ => {}
        }
    }
    let of = match (key_id, external_id) {
        (None, None) => UsageOf::Workspace,
        (Some(key_id), None) => UsageOf::Key(key_id),
        (None, Some(external_id)) => UsageOf::ExternalId(external_id),
        (Some(_), Some(_)) => {
            problems.push("key_id and external_id cannot be combined".to_owned());
            UsageOf::Workspace
        }
    };
    let window = UsageWindow::new(granularity, since, until, now);
    match (window, problems.is_empty()) {
        (Ok(window), true) => Ok(UsageRequest { window, of, after, limit }),
        (Err(error), _) => {
            problems.push(error.to_string());
            Err(ApiError::Validation(problems))
        }
        (Ok(_), false) => Err(ApiError::Validation(problems)),
    }
}

pub(crate) async fn usage(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace, input) = (call.state, call.caller, call.param(0), call.input);
    let request = parse_query(input.query.as_deref(), state.service.now())?;
    let granularity = request.window.granularity;
    let scope = in_workspace(state, caller, workspace).await?;
    let page = scope.usage(request).await.map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    let dto = UsageDto {
        granularity: granularity.as_str(),
        results: page.rows.iter().map(UsageRowDto::from).collect(),
        next_cursor: page.next.map(|cursor| cursor.to_string()),
    };
    json(StatusCode::OK, &dto)
}

/// `/v1/{workspace}/usage/`.
const USAGE: &[Operation] = &[Operation::get(
    "get-usage",
    "Usage of the workspace's keys",
    authenticated!(ManageKeys, usage),
    schema::<UsageDto>(),
)
.query(Query::Usage)
.describe(
    "Verifications counted per bucket (`minute`, `hour` or `day`, UTC) and outcome (`valid` or the \
             reason of the refusal), newest bucket first: the workspace's totals per outcome, or with `key_id` one \
             key's, or with `external_id` each of that owner's API keys'. At most `limit` rows (10,000 by \
             default); `next_cursor` continues (null on the last page). Counts are in within one \
             `--usage-interval-seconds` (60 s by default) of the verification.",
)
// What no schema says: `key_id` and `external_id` exclude each other,
// `since` must come before `until`, a cursor is one this server made.
.refuses(&[BAD_REQUEST, NOT_FOUND])];

/// Dialect 1's usage.
pub(crate) static ROUTES: &[Route] = &[Route::new("/v1/{workspace}/usage/", Dialect::SuprSend, Tag::ApiKeys, USAGE)];

// ---------------------------------------------------------------- wire types

/// One bucket's count.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = UsageRow)]
pub struct UsageRowDto {
    /// The start of the bucket.
    #[schema(format = DateTime)]
    pub at: String,
    /// The key; null in the workspace's totals.
    pub key_id: Option<String>,
    /// `valid`, or the reason of the refusal (see `Reason`).
    #[schema(pattern = "^[a-z_]{1,64}$")]
    pub outcome: String,
    pub count: u64,
}

impl From<&UsageRow> for UsageRowDto {
    fn from(row: &UsageRow) -> Self {
        Self {
            at: format_timestamp(row.at),
            key_id: row.key_id.clone(),
            outcome: row.outcome.clone(),
            count: row.count,
        }
    }
}

/// `GET /v1/{workspace}/usage/`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Usage)]
pub struct UsageDto {
    #[schema(schema_with = granularity_schema)]
    pub granularity: &'static str,
    pub results: Vec<UsageRowDto>,
    #[schema(pattern = "^([0-9a-f]{2}){1,256}$")]
    pub next_cursor: Option<String>,
}

fn granularity_schema() -> impl Into<utoipa::openapi::RefOr<utoipa::openapi::Schema>> {
    string_enum(Granularity::ALL.map(Granularity::as_str), "The bucket width of the rows.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_checked_value_by_value() {
        let now = time::macros::datetime!(2026-12-07 19:42:31 UTC);
        let default = parse_query(None, now).expect("default");
        assert_eq!(
            (default.window.granularity, default.limit, default.of),
            (Granularity::Hour, MAX_USAGE_ROWS, UsageOf::Workspace)
        );
        assert_eq!(default.window.since, time::macros::datetime!(2026-12-06 19:00 UTC));
        let key = parse_query(Some("granularity=day&key_id=ws_apik_01J&limit=5&utm=x"), now).expect("valid");
        assert_eq!(
            (key.window.granularity, key.of, key.limit),
            (Granularity::Day, UsageOf::Key("ws_apik_01J".to_owned()), 5)
        );
        for bad in [
            "granularity=week",
            "limit=0",
            "limit=10001",
            "key_id=a%20b",
            "key_id=x&external_id=y",
            "since=yesterday",
            "cursor=zz",
            "since=2026-12-07T00:00:00Z&until=2026-12-06T00:00:00Z",
        ] {
            assert!(parse_query(Some(bad), now).is_err(), "{bad}");
        }
        let cursor =
            UsageCursor::of(keys_store::UsagePosition { at: now, key_id: "ws_apik_1".into(), outcome: "valid".into() });
        let parsed = parse_query(Some(&format!("cursor={cursor}")), now).expect("a cursor this server made");
        assert_eq!(parsed.after, Some(cursor));
    }
}

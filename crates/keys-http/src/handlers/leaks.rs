//! Leaked keys (docs/API.md, Leaked keys): GitHub's secret-scanning alerts
//! (`POST /v1/secret_scanning/github/`, signed by GitHub, no token) and
//! other scanners' reports (`POST /v1/leak_report/`, any service token).
//! keys-service labels and contains each key ([`keys_service::leaks`]).
//!
//! **Order.** An alert's signature is checked over the raw body before the
//! body is parsed or anything is looked up: a missing or bad signature is a
//! 401 that changes nothing.
//!
//! **Timing.** Both answer no sooner than [`ANSWER_FLOOR`] after the
//! request was read, so that how long a report takes does not say whether
//! the key exists (a containment is a transaction; a miss is not). A
//! request with more work than fits in the floor takes longer.
//!
//! **Flooding.** Both routes spend a per-client budget of their own
//! (`--leak-report-rate-limit`, on by default; see [`crate::server`]).
//!
//! The texts reported are secrets to someone: they are never logged, and
//! only GitHub's own `token_raw` echo carries them back to the sender.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::ToSchema;

use http::StatusCode;
use keys_crypto::AlertSignatureRejection;
use keys_service::leaks::{LeakLabel, MAX_LEAK_SOURCE_CHARS};

use super::HttpResult;
use crate::error::{ApiError, Dialect};
use crate::respond::json;
use crate::routing::{
    authenticated, signed, Authenticated, Body, Operation, Route, Signed, Tag, BAD_REQUEST, NOT_FOUND,
};
use crate::schema::schema;

/// The least time a leak report takes to answer.
pub const ANSWER_FLOOR: Duration = Duration::from_millis(250);

/// The most entries one GitHub alert is read for.
pub const MAX_ALERT_ENTRIES: usize = 1_000;

/// The bodies these routes take: a GitHub alert holds up to
/// [`MAX_ALERT_ENTRIES`] matches, each a token and a URL.
const BODY_LIMIT: usize = 1024 * 1024;

/// The paths [`crate::server`] holds to `--leak-report-rate-limit`.
pub(crate) const LEAK_ROUTES: [&str; 2] = ["/v1/secret_scanning/github/", "/v1/leak_report/"];

/// `POST /v1/secret_scanning/github/`.
pub(crate) async fn github(call: Signed<'_>) -> HttpResult {
    let started = Instant::now();
    let header = |name: &str| call.head.headers.get(name).and_then(|value| value.to_str().ok());
    let body = call.input.raw_body();
    // An alert without its signature is refused as such, whether or not
    // this server takes alerts at all.
    let missing = [
        ("github-public-key-identifier", AlertSignatureRejection::MissingIdentifier),
        ("github-public-key-signature", AlertSignatureRejection::MissingSignature),
    ];
    if let Some((_, rejection)) = missing.iter().find(|(name, _)| header(name).is_none_or(str::is_empty)) {
        return Err(ApiError::BadSignature(rejection.as_str()));
    }
    let Some(keys) = call.state.config.github_keys.as_ref() else {
        return Err(ApiError::NotFound(
            "GitHub secret scanning is not enabled on this server (--github-secret-scanning-keys)".to_owned(),
        ));
    };
    keys.current()
        .verify(header("github-public-key-identifier"), header("github-public-key-signature"), body)
        .map_err(|rejection| ApiError::BadSignature(rejection.as_str()))?;
    if !call.input.declares_json() {
        return Err(ApiError::UnsupportedMediaType);
    }
    let alerts: Vec<GithubAlert> = serde_json::from_slice(body).map_err(|_| {
        ApiError::validation("the body must be GitHub's alert: a JSON array of {token, type, url, source}")
    })?;
    if alerts.len() > MAX_ALERT_ENTRIES {
        return Err(ApiError::validation(format!("an alert holds at most {MAX_ALERT_ENTRIES} entries")));
    }
    let mut answers = Vec::with_capacity(alerts.len());
    for alert in alerts {
        let label = call
            .state
            .service
            .report_github_leak(&alert.token, alert.url.as_deref())
            .await
            .map_err(|error| ApiError::from_service(error, "", "workspace"))?;
        answers.push(GithubLabel { token_raw: alert.token, token_type: alert.token_type, label: label.as_str() });
    }
    tokio::time::sleep_until(started + ANSWER_FLOOR).await;
    json(StatusCode::OK, &answers)
}

/// `POST /v1/leak_report/`.
pub(crate) async fn report(call: Authenticated<'_>) -> HttpResult {
    let started = Instant::now();
    let body: LeakReportBody = call.input.json()?;
    if body.source.as_ref().is_some_and(|source| source.chars().count() > MAX_LEAK_SOURCE_CHARS) {
        return Err(ApiError::validation(format!("source must be at most {MAX_LEAK_SOURCE_CHARS} characters")));
    }
    let label = call
        .state
        .service
        .report_leak(call.caller, &body.api_key, body.source.as_deref())
        .await
        .map_err(|error| ApiError::from_service(error, "", "organisation"))?;
    tokio::time::sleep_until(started + ANSWER_FLOOR).await;
    json(StatusCode::OK, &LeakReportAnswer { label: label.as_str() })
}

const GITHUB: &[Operation] = &[Operation::post_answering(
    "github-secret-scanning",
    "GitHub secret-scanning alert",
    signed!(github),
    schema::<GithubLabels>(),
)
.describe(
    "GitHub's partner alert: a JSON array of `{token, type, url, source}`, its raw body signed with ECDSA P-256 \
     (`Github-Public-Key-Signature`, base64 DER) under the key `Github-Public-Key-Identifier` names in the file \
     of `--github-secret-scanning-keys`. The signature is checked before anything else: missing or bad is a 401 \
     that changes nothing. Answers each token's `label`: `true_positive` for a live API key of this server \
     (contained as its workspace's `on_leak` says, and audited as `api_key.leaked` with the URL), else \
     `false_positive`. A 404 when the server has no key file. At least 250 ms per answer; rate-limited per \
     client.",
)
.body(Body::Required(schema::<GithubAlertBody>()))
.takes_bodies_up_to(BODY_LIMIT)
.refuses(&[BAD_REQUEST, NOT_FOUND])];

const REPORT: &[Operation] = &[Operation::post_answering(
    "report-leak",
    "Report a leaked API key",
    authenticated!(ReportLeaks, report),
    schema::<LeakReportAnswer>(),
)
.describe(
    "Any service token of the key's organisation: the key is labelled and contained as for GitHub's \
             alerts (`true_positive` for a live key of the caller's organisation, else `false_positive`). At \
             least 250 ms per answer, whether or not the key exists; rate-limited per client.",
)
.body(Body::Required(schema::<LeakReportBody>()))
.refuses(&[BAD_REQUEST])];

pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/secret_scanning/github/", Dialect::SuprSend, Tag::ApiKeys, GITHUB),
    Route::new("/v1/leak_report/", Dialect::SuprSend, Tag::ApiKeys, REPORT),
];

// ---------------------------------------------------------------- wire types

/// One match of GitHub's alert. Its other fields (`source`: what GitHub
/// scanned, and any GitHub adds) are ignored. No `Debug`: it holds the key.
#[derive(Deserialize, ToSchema)]
#[schema(as = GithubAlertEntry)]
pub struct GithubAlert {
    /// The text found.
    pub token: String,
    /// The pattern GitHub matched (echoed as `token_type`).
    #[serde(rename = "type", default)]
    pub token_type: String,
    /// Where it was found.
    pub url: Option<String>,
}

/// GitHub's alert: its matches, in order (the OpenAPI document's name for
/// the body).
#[derive(ToSchema)]
#[schema(as = GithubAlert)]
pub struct GithubAlertBody(#[allow(dead_code)] Vec<GithubAlert>);

/// The answer to an alert: one label per match, in the alert's order.
#[derive(ToSchema)]
#[schema(as = GithubAlertLabels)]
pub struct GithubLabels(#[allow(dead_code)] Vec<GithubLabel>);

/// GitHub's expected answer per token. No `Debug`: it holds the key.
#[derive(Serialize, ToSchema)]
#[schema(as = GithubAlertLabel)]
pub struct GithubLabel {
    pub token_raw: String,
    pub token_type: String,
    #[schema(schema_with = label_schema)]
    pub label: &'static str,
}

/// `POST /v1/leak_report/`. No `Debug`: it holds the key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LeakReport)]
pub struct LeakReportBody {
    /// The text found.
    pub api_key: String,
    /// Where it was found (a URL), at most 1,024 characters.
    pub source: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = LeakReportResult)]
pub struct LeakReportAnswer {
    #[schema(schema_with = label_schema)]
    pub label: &'static str,
}

fn label_schema() -> impl Into<utoipa::openapi::RefOr<utoipa::openapi::Schema>> {
    crate::schema::string_enum(
        [LeakLabel::TruePositive.as_str(), LeakLabel::FalsePositive.as_str()],
        "`true_positive`: a live API key of this server, now contained; `false_positive`: anything else.",
    )
}

//! Webhook endpoints (docs/WEBHOOKS.md, docs/API.md, Webhooks): create
//! (the signing secret is in that one answer), list, read, patch, delete,
//! rotate the secret (the new one in that answer), and the attempts of an
//! endpoint's deliveries with a manual retry. Only an `admin` token
//! reaches these routes.

use http::StatusCode;
use keys_service::webhooks::{EndpointChange, EndpointView, NewEndpoint};
use keys_store::AttemptRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::HttpResult;
use crate::error::{ApiError, Dialect};
use crate::query::ListQuery;
use crate::respond::{json, no_content, secret_json};
use crate::routing::{authenticated, Authenticated, Body, Operation, Query, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::schema;
use crate::wire::{actor, format_timestamp, present, timestamp_opt, ActorDto, ListDto, Secret};

fn target(id: &str) -> String {
    format!("webhook endpoint '{}'", super::echo(id))
}

pub(crate) async fn list(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let query = ListQuery::parse(input.query.as_deref())?;
    let views =
        state.service.list_webhook_endpoints(caller).await.map_err(|error| ApiError::from_service(error, "", ""))?;
    let total = views.len() as u64;
    let offset = usize::try_from(query.pagination.offset()).unwrap_or(usize::MAX);
    let items: Vec<EndpointView> = views.into_iter().skip(offset).take(query.pagination.limit() as usize).collect();
    json(
        StatusCode::OK,
        &ListDto::<WebhookEndpointDto>::from_page(keys_core::Page { items, total, pagination: query.pagination }),
    )
}

pub(crate) async fn create(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input) = (call.state, call.caller, call.input);
    let body: CreateWebhookEndpoint = input.json()?;
    let url = body.url.ok_or_else(|| ApiError::validation("url is required"))?;
    let events =
        body.events.ok_or_else(|| ApiError::validation("events is required: a list of event types, or [\"*\"]"))?;
    let new = NewEndpoint { url, events, workspaces: body.workspaces, description: body.description };
    let made = state
        .service
        .create_webhook_endpoint(caller, new)
        .await
        .map_err(|error| ApiError::from_service(error, "", "organisation"))?;
    let mut dto = WebhookEndpointDto::from(&made.view);
    dto.secret = Some(Secret::new(made.secret.expose()));
    secret_json(StatusCode::CREATED, &dto)
}

pub(crate) async fn get(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, id) = (call.state, call.caller, call.param(0));
    let view = state
        .service
        .webhook_endpoint(caller, id)
        .await
        .map_err(|error| ApiError::from_service(error, "", &target(id)))?;
    json(StatusCode::OK, &WebhookEndpointDto::from(&view))
}

pub(crate) async fn patch(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input, id) = (call.state, call.caller, call.input, call.param(0));
    let body: PatchWebhookEndpoint = input.json()?;
    let change = EndpointChange {
        url: body.url.map(|url| url.ok_or_else(|| ApiError::validation("url may not be null"))).transpose()?,
        events: body
            .events
            .map(|events| events.ok_or_else(|| ApiError::validation("events may not be null")))
            .transpose()?,
        workspaces: body.workspaces,
        description: body.description,
        status: body
            .status
            .map(|status| status.ok_or_else(|| ApiError::validation("status may not be null")))
            .transpose()?,
    };
    let view = state
        .service
        .change_webhook_endpoint(caller, id, change)
        .await
        .map_err(|error| ApiError::from_service(error, "", &target(id)))?;
    json(StatusCode::OK, &WebhookEndpointDto::from(&view))
}

pub(crate) async fn delete(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, id) = (call.state, call.caller, call.param(0));
    state
        .service
        .delete_webhook_endpoint(caller, id)
        .await
        .map_err(|error| ApiError::from_service(error, "", &target(id)))?;
    Ok(no_content())
}

pub(crate) async fn rotate_secret(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, id) = (call.state, call.caller, call.param(0));
    let rotated = state
        .service
        .rotate_webhook_secret(caller, id)
        .await
        .map_err(|error| ApiError::from_service(error, "", &target(id)))?;
    let mut dto = WebhookEndpointDto::from(&rotated.view);
    dto.secret = Some(Secret::new(rotated.secret.expose()));
    secret_json(StatusCode::OK, &dto)
}

pub(crate) async fn deliveries(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, input, id) = (call.state, call.caller, call.input, call.param(0));
    let query = ListQuery::parse(input.query.as_deref())?;
    let page = state
        .service
        .webhook_attempts(caller, id, query.pagination)
        .await
        .map_err(|error| ApiError::from_service(error, "", &target(id)))?;
    json(StatusCode::OK, &ListDto::<AttemptDto>::from_page(page))
}

pub(crate) async fn retry(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, id, event_id) = (call.state, call.caller, call.param(0), call.param(1));
    let delivery = format!("delivery of '{}' to {}", super::echo(event_id), target(id));
    state
        .service
        .retry_webhook_delivery(caller, id, event_id)
        .await
        .map_err(|error| ApiError::from_service(error, "", &delivery))?;
    json(StatusCode::OK, &RetryDto { event_id: event_id.to_owned(), state: "pending" })
}

/// `/v1/webhook_endpoint/`.
const ENDPOINTS: &[Operation] = &[
    Operation::list(
        "list-webhook-endpoints",
        "List webhook endpoints",
        authenticated!(ManageWebhooks, list),
        schema::<WebhookEndpointDto>(),
    )
    .describe("The organisation's endpoints, newest first; never their secrets.")
    .query(Query::Page)
    .refuses(&[]),
    Operation::post(
        "create-webhook-endpoint",
        "Create webhook endpoint",
        authenticated!(ManageWebhooks, create),
        schema::<WebhookEndpointDto>(),
    )
    .describe(
        "The response carries the signing `secret` (`whsec_…`), shown this once. `url` is `https://…` (`http://` \
         only under `--webhook-allow-private-destinations`); `events` lists event types, or is `[\"*\"]`; \
         `workspaces` (slugs) limits the endpoint to those workspaces, null receives every workspace's events and \
         the organisation's own. At most 32 endpoints per organisation.",
    )
    .body(Body::Required(schema::<CreateWebhookEndpoint>()))
    .refuses(&[BAD_REQUEST])
    .hands_out_secret(),
];
/// `/v1/webhook_endpoint/{webhook_endpoint_id}/`.
const ENDPOINT: &[Operation] = &[
    Operation::get(
        "get-webhook-endpoint",
        "Get webhook endpoint",
        authenticated!(ManageWebhooks, get),
        schema::<WebhookEndpointDto>(),
    ),
    Operation::patch_answering(
        "update-webhook-endpoint",
        "Update webhook endpoint",
        authenticated!(ManageWebhooks, patch),
        schema::<WebhookEndpointDto>(),
    )
    .describe(
        "Any of `url`, `events`, `workspaces`, `description` and `status` (`enabled` or `disabled`); enabling an \
         endpoint keysd disabled starts its run of failures over.",
    )
    .body(Body::Required(schema::<PatchWebhookEndpoint>()))
    .refuses(&[BAD_REQUEST, NOT_FOUND]),
    Operation::delete("delete-webhook-endpoint", "Delete webhook endpoint", authenticated!(ManageWebhooks, delete))
        .describe("Its pending deliveries go with it."),
];
/// `/v1/webhook_endpoint/{webhook_endpoint_id}/rotate_secret/`.
const ROTATE: &[Operation] = &[Operation::post_answering(
    "rotate-webhook-secret",
    "Rotate webhook secret",
    authenticated!(ManageWebhooks, rotate_secret),
    schema::<WebhookEndpointDto>(),
)
.describe("The response carries the new `secret`, shown this once; the previous one keeps signing for 24 hours.")
.refuses(&[NOT_FOUND])
.hands_out_secret()];
/// `/v1/webhook_endpoint/{webhook_endpoint_id}/deliveries/`.
const DELIVERIES: &[Operation] = &[Operation::list(
    "list-webhook-deliveries",
    "List webhook delivery attempts",
    authenticated!(ManageWebhooks, deliveries),
    schema::<AttemptDto>(),
)
.describe("Every attempt, newest first: the event, the receiver's status code or the error, and the next attempt.")
.query(Query::Page)];
/// `/v1/webhook_endpoint/{webhook_endpoint_id}/deliveries/{event_id}/retry/`.
const RETRY: &[Operation] = &[Operation::post_answering(
    "retry-webhook-delivery",
    "Retry webhook delivery",
    authenticated!(ManageWebhooks, retry),
    schema::<RetryDto>(),
)
.describe("Sends the event to the endpoint again now, whatever became of it before.")
.refuses(&[NOT_FOUND])];

/// The webhook routes.
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/webhook_endpoint/", Dialect::SuprSend, Tag::Webhooks, ENDPOINTS),
    Route::new("/v1/webhook_endpoint/{webhook_endpoint_id}/", Dialect::SuprSend, Tag::Webhooks, ENDPOINT),
    Route::new("/v1/webhook_endpoint/{webhook_endpoint_id}/rotate_secret/", Dialect::SuprSend, Tag::Webhooks, ROTATE),
    Route::new("/v1/webhook_endpoint/{webhook_endpoint_id}/deliveries/", Dialect::SuprSend, Tag::Webhooks, DELIVERIES),
    Route::new(
        "/v1/webhook_endpoint/{webhook_endpoint_id}/deliveries/{event_id}/retry/",
        Dialect::SuprSend,
        Tag::Webhooks,
        RETRY,
    ),
];

// ---------------------------------------------------------------- wire types

/// A webhook endpoint; `secret` only in the create and rotate answers.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct WebhookEndpointDto {
    #[schema(pattern = "^we_")]
    pub id: String,
    pub url: String,
    /// Event types, or `["*"]`.
    pub events: Vec<String>,
    /// Workspace slugs; null for every workspace and the organisation's own events.
    pub workspaces: Option<Vec<String>>,
    pub description: Option<String>,
    /// `enabled` or `disabled` (by its owner, or by keysd after 5 days of failures).
    pub status: &'static str,
    /// Since when every attempt failed; null after a success.
    #[schema(format = DateTime)]
    pub failing_since: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub created_by: Option<ActorDto>,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// The signing secret: only in the create and rotate answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^whsec_")]
    pub secret: Option<Secret>,
}

/// Its secret field is a [`Secret`].
impl zeroize::ZeroizeOnDrop for WebhookEndpointDto {}

impl From<&EndpointView> for WebhookEndpointDto {
    fn from(view: &EndpointView) -> Self {
        let endpoint = &view.endpoint;
        Self {
            id: endpoint.id.to_string(),
            url: endpoint.url.as_str().to_owned(),
            events: endpoint.events.names(),
            workspaces: view
                .workspaces
                .as_ref()
                .map(|slugs| slugs.iter().map(|slug| slug.as_str().to_owned()).collect()),
            description: endpoint.description.as_ref().map(|text| text.as_str().to_owned()),
            status: endpoint.status.as_str(),
            failing_since: timestamp_opt(endpoint.failing_since),
            created_at: format_timestamp(endpoint.created_at),
            created_by: actor(&endpoint.created_by),
            updated_at: format_timestamp(endpoint.updated_at),
            secret: None,
        }
    }
}

/// `POST /v1/webhook_endpoint/`: `{url, events, workspaces?, description?}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointCreate)]
pub struct CreateWebhookEndpoint {
    #[schema(required = true, value_type = String, min_length = 8, max_length = 2048, pattern = "^https?://")]
    pub url: Option<String>,
    #[schema(required = true, value_type = Vec<String>, min_items = 1, max_items = 64)]
    pub events: Option<Vec<String>>,
    /// Slugs of existing workspaces; null or absent: every workspace and the organisation's own events.
    #[schema(max_items = 100)]
    pub workspaces: Option<Vec<String>>,
    #[schema(max_length = 1024)]
    pub description: Option<String>,
}

/// `PATCH /v1/webhook_endpoint/{id}/`: any of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = WebhookEndpointPatch)]
pub struct PatchWebhookEndpoint {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, min_length = 8, max_length = 2048, pattern = "^https?://")]
    pub url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Vec<String>, min_items = 1, max_items = 64)]
    pub events: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>, max_items = 100)]
    pub workspaces: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 1024)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, pattern = "^(enabled|disabled)$")]
    pub status: Option<Option<String>>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct AttemptDto {
    /// The event's id, also its `webhook-id`: `evt_<n>` (an audit event) or `wrn_<n>` (a warning).
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(format = DateTime)]
    pub attempted_at: String,
    /// The receiver's status code; null when it did not answer.
    pub status_code: Option<u16>,
    /// Why the attempt failed; null when it succeeded.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The delivery's state now: `pending`, `delivered` or `failed`.
    pub state: String,
    /// When the delivery is tried again; null unless pending.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
}

impl From<&AttemptRow> for AttemptDto {
    fn from(row: &AttemptRow) -> Self {
        Self {
            event_id: row.message_id.clone(),
            kind: row.kind.clone(),
            attempted_at: format_timestamp(row.at),
            status_code: row.status_code,
            error: row.error.clone(),
            duration_ms: row.duration_ms,
            state: row.state.clone(),
            next_attempt_at: timestamp_opt(row.next_attempt_at),
        }
    }
}

/// The answer of a manual retry.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookRetry)]
pub struct RetryDto {
    pub event_id: String,
    /// Always `pending`: the deliverer sends it within a second.
    pub state: &'static str,
}

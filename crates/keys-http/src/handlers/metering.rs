//! Metering's API (docs/API.md, Metering): the `ratelimits` and `credits`
//! of API keys (create, patch, get), `POST …/ws_api_key/{id}/credits/`,
//! identities (`PUT/GET/DELETE /v1/{ws}/identity/{external_id}/`), and what
//! `/v1/verify/api_key/` takes (`cost`, `ratelimits`) and answers.

use http::StatusCode;
use keys_core::meter::{
    Cost, Credits, CreditsOperation, MeterReport, MeterRequest, RateLimit, RateLimitRequests, RateLimits, Refill,
};
use keys_core::{ApiKeyId, ExternalId};
use keys_service::metering::{IdentityView, MeterView};
use keys_store::MeterSetting;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::{in_workspace, HttpResult};
use crate::error::{ApiError, Dialect};
use crate::respond::{json, no_content};
use crate::routing::{authenticated, Authenticated, Body, Operation, Route, Tag, BAD_REQUEST, NOT_FOUND};
use crate::schema::schema;
use crate::wire::{format_timestamp, present};

/// One rate limit, as a create, a patch or an identity's put sends it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RateLimit)]
pub struct RateLimitDto {
    /// `^[a-z0-9][a-z0-9_.:-]{0,63}$`, unique in the list.
    pub name: String,
    /// 1 – 1,000,000,000 tokens per `duration_seconds`.
    pub limit: u64,
    /// 1 – 86,400.
    pub duration_seconds: u64,
    /// Applied to every verification (default), or only to those that name it.
    #[serde(default = "auto_apply")]
    pub auto_apply: bool,
}

fn auto_apply() -> bool {
    RateLimit::DEFAULT_AUTO_APPLY
}

/// `credits.refill`: sets `remaining` to `amount` at 00:00 UTC of each
/// refill day.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreditsRefill)]
pub struct RefillDto {
    /// `daily` or `monthly`.
    pub interval: String,
    /// 0 – 10¹².
    pub amount: u64,
    /// 1 – 31, monthly only (default 1); the last day of a shorter month
    /// stands in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refill_day: Option<u64>,
}

/// `credits`: a balance each verification spends its `cost` from.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Credits)]
pub struct CreditsDto {
    /// 0 – 10¹²; as answered, the balance as the answering replica sees it.
    pub remaining: u64,
    #[serde(default)]
    pub refill: Option<RefillDto>,
}

pub(crate) fn rate_limits(items: &[RateLimitDto]) -> Result<RateLimits, ApiError> {
    let mut limits = Vec::with_capacity(items.len());
    for item in items {
        limits.push(RateLimit::parse(&item.name, item.limit, item.duration_seconds, item.auto_apply)?);
    }
    Ok(RateLimits::parse(limits)?)
}

pub(crate) fn credits(dto: &CreditsDto) -> Result<Credits, ApiError> {
    let refill = dto
        .refill
        .as_ref()
        .map(|refill| Refill::parse(&refill.interval, refill.amount, refill.refill_day))
        .transpose()?;
    Ok(Credits::parse(dto.remaining, refill)?)
}

/// What a create or a patch says of metering; `None` when it says nothing.
pub(crate) fn setting(
    limits: Option<Option<&[RateLimitDto]>>,
    credits_field: Option<Option<&CreditsDto>>,
) -> Result<Option<MeterSetting>, ApiError> {
    if limits.is_none() && credits_field.is_none() {
        return Ok(None);
    }
    Ok(Some(MeterSetting {
        rate_limits: limits.map(|items| rate_limits(items.unwrap_or_default())).transpose()?,
        credits: credits_field.map(|dto| dto.map(credits).transpose()).transpose()?,
        meta: None,
    }))
}

/// A meter's limits as answered.
pub(crate) fn limits_of(view: Option<&MeterView>) -> Vec<RateLimitDto> {
    let Some(view) = view else { return Vec::new() };
    view.stored
        .meter
        .rate_limits
        .as_slice()
        .iter()
        .map(|limit| RateLimitDto {
            name: limit.name().as_str().to_owned(),
            limit: limit.limit(),
            duration_seconds: u64::from(limit.duration_seconds()),
            auto_apply: limit.auto_apply(),
        })
        .collect()
}

/// A meter's credits as answered (null when it spends none).
pub(crate) fn credits_of(view: Option<&MeterView>) -> Option<CreditsDto> {
    let view = view?;
    let rule = view.stored.meter.credits?;
    Some(CreditsDto {
        remaining: view.remaining.unwrap_or(0),
        refill: rule.refill.map(|refill| RefillDto {
            interval: refill.interval().as_str().to_owned(),
            amount: refill.amount(),
            refill_day: refill.refill_day().map(u64::from),
        }),
    })
}

// ------------------------------------------------------------ verification

/// A verification's `cost` and `ratelimits` from its body. Absent or null
/// is the default; anything else that is not what the contract says is a
/// 400 (a cost out of range included).
pub(crate) fn meter_request(body: &Map<String, Value>) -> Result<MeterRequest, ApiError> {
    let cost = match body.get("cost") {
        None | Some(Value::Null) => Cost::default(),
        Some(value) => Cost::parse(whole(value, "cost", Cost::MAX)?)?,
    };
    let rate_limits = match body.get("ratelimits") {
        None | Some(Value::Null) => RateLimitRequests::default(),
        Some(Value::Array(items)) => {
            let mut named = Vec::with_capacity(items.len());
            for item in items {
                let Value::Object(item) = item else {
                    return Err(ApiError::validation("ratelimits must be a list of {name, cost?}"));
                };
                let Some(Value::String(name)) = item.get("name") else {
                    return Err(ApiError::validation("ratelimits[].name must be a string"));
                };
                let cost = match item.get("cost") {
                    None | Some(Value::Null) => None,
                    Some(value) => Some(whole(value, "ratelimits.cost", Cost::MAX)?),
                };
                named.push((name.as_str(), cost));
            }
            RateLimitRequests::parse(named)?
        }
        Some(_) => return Err(ApiError::validation("ratelimits must be a list of {name, cost?}")),
    };
    Ok(MeterRequest { cost, rate_limits })
}

/// A whole number (`60.0` is 60), or the field's 400.
fn whole(value: &Value, field: &str, max: u64) -> Result<u64, ApiError> {
    let refused = || ApiError::validation(format!("{field} must be a whole number between 0 and {max}"));
    match value.as_u64() {
        Some(number) => Ok(number),
        None => {
            let number = value.as_f64().filter(|number| number.fract() == 0.0 && *number >= 0.0).ok_or_else(refused)?;
            // Past the maximum either way; the domain's parse names the range.
            Ok(if number > max as f64 { max + 1 } else { number as u64 })
        }
    }
}

/// One applied limit in a verification's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AppliedRateLimit)]
pub(crate) struct AppliedLimitDto {
    name: String,
    limit: u64,
    duration_seconds: u32,
    /// Tokens left after this verification.
    remaining: u64,
    /// When the limit is whole again.
    #[schema(format = DateTime)]
    reset_at: String,
    /// Whether this limit refused the verification.
    exceeded: bool,
}

/// `credits` of a verification's answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = VerifiedCredits)]
pub(crate) struct RemainingDto {
    remaining: u64,
}

/// The `credits` and `ratelimits` of a verification's answer.
pub(crate) fn report_of(report: Option<&MeterReport>) -> (Option<RemainingDto>, Vec<AppliedLimitDto>) {
    let Some(report) = report else { return (None, Vec::new()) };
    let limits = report
        .rate_limits
        .iter()
        .map(|line| AppliedLimitDto {
            name: line.name.as_str().to_owned(),
            limit: line.limit,
            duration_seconds: line.duration_seconds,
            remaining: line.remaining,
            reset_at: format_timestamp(line.reset_at),
            exceeded: line.exceeded,
        })
        .collect();
    (report.credits.map(|remaining| RemainingDto { remaining }), limits)
}

// ------------------------------------------------------------ credits

/// `POST …/ws_api_key/{id}/credits/`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreditsChange)]
pub struct CreditsChange {
    /// `set`, `increment` or `decrement` (clamped at 0).
    pub operation: String,
    /// 0 – 10¹².
    pub value: u64,
}

pub(crate) async fn change_credits(call: Authenticated<'_>) -> HttpResult {
    let body: CreditsChange = call.input.json()?;
    let operation = CreditsOperation::parse(&body.operation, body.value)?;
    let (key, view) = super::on_key(call, "api key", ApiKeyId::parse, async |scope, id| {
        let view = scope.change_api_key_credits(id, operation).await?;
        Ok((scope.get_api_key(id).await?, view))
    })
    .await?;
    let mut dto = super::api_keys::ApiKeyDto::from(&key);
    dto.metered(Some(&view));
    json(StatusCode::OK, &dto)
}

// ------------------------------------------------------------ identities

/// `PUT /v1/{ws}/identity/{external_id}/`: the whole identity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = IdentityPut)]
pub struct PutIdentity {
    #[serde(default)]
    pub ratelimits: Option<Vec<RateLimitDto>>,
    #[serde(default)]
    pub credits: Option<CreditsDto>,
    /// A JSON object of at most 4 KiB serialised.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Option<Value>>,
}

/// An identity, with its balance and its keys.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Identity)]
pub struct IdentityDto {
    pub external_id: String,
    pub ratelimits: Vec<RateLimitDto>,
    pub credits: Option<CreditsDto>,
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Map<String, Value>>,
    /// The ids of its live keys (at most 1,000, oldest first).
    pub key_ids: Vec<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&IdentityView> for IdentityDto {
    fn from(view: &IdentityView) -> Self {
        Self {
            external_id: view.external_id.clone(),
            ratelimits: limits_of(Some(&view.meter)),
            credits: credits_of(Some(&view.meter)),
            meta: view.meter.stored.meta.as_ref().and_then(super::api_keys::meta_object),
            key_ids: view.key_ids.iter().map(ToString::to_string).collect(),
            created_at: format_timestamp(view.meter.stored.created_at),
            updated_at: format_timestamp(view.meter.stored.updated_at),
        }
    }
}

/// The path's `external_id`, percent-decoded (an identity's id is the
/// customer's text, which may hold what a path cannot).
fn external_id(call: &Authenticated<'_>) -> Result<ExternalId, ApiError> {
    let raw = call.param(1).as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut at = 0;
    while at < raw.len() {
        if raw[at] == b'%' {
            let hex = raw.get(at + 1..at + 3).and_then(|pair| std::str::from_utf8(pair).ok());
            let byte = hex.and_then(|pair| u8::from_str_radix(pair, 16).ok());
            let byte = byte.ok_or_else(|| ApiError::validation("external_id has a malformed percent-encoding"))?;
            bytes.push(byte);
            at += 3;
        } else {
            bytes.push(raw[at]);
            at += 1;
        }
    }
    let text = String::from_utf8(bytes).map_err(|_| ApiError::validation("external_id must be UTF-8"))?;
    Ok(ExternalId::parse(&text)?)
}

pub(crate) async fn put_identity(call: Authenticated<'_>) -> HttpResult {
    // The workspace first: a token that may not reach it learns nothing
    // from how its body would have been read.
    let scope = in_workspace(call.state, call.caller, call.param(0)).await?;
    let body: PutIdentity = call.input.json()?;
    let external_id = external_id(&call)?;
    let limits = rate_limits(body.ratelimits.as_deref().unwrap_or_default())?;
    let credits = body.credits.as_ref().map(credits).transpose()?;
    let meta = match body.meta.flatten() {
        None | Some(Value::Null) => None,
        Some(object @ Value::Object(_)) => Some(keys_core::KeyMeta::parse(&object.to_string())?),
        Some(_) => return Err(ApiError::validation("meta must be a JSON object")),
    };
    let workspace = call.param(0);
    let (view, _created) = scope
        .put_identity(&external_id, limits, credits, meta)
        .await
        .map_err(|error| ApiError::from_service(error, workspace, "workspace"))?;
    json(StatusCode::OK, &IdentityDto::from(&view))
}

/// The identity a GET or DELETE names: one whose `external_id` no key can
/// have does not exist.
fn named_identity(call: &Authenticated<'_>) -> Result<ExternalId, ApiError> {
    external_id(call).map_err(|_| ApiError::NotFound(format!("identity '{}' not found", super::echo(call.param(1)))))
}

pub(crate) async fn get_identity(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace) = (call.state, call.caller, call.param(0));
    let scope = in_workspace(state, caller, workspace).await?;
    let external_id = named_identity(&call)?;
    let target = format!("identity '{}'", super::echo(external_id.as_str()));
    let view = scope.identity(&external_id).await.map_err(|error| ApiError::from_service(error, workspace, &target))?;
    json(StatusCode::OK, &IdentityDto::from(&view))
}

pub(crate) async fn delete_identity(call: Authenticated<'_>) -> HttpResult {
    let (state, caller, workspace) = (call.state, call.caller, call.param(0));
    let scope = in_workspace(state, caller, workspace).await?;
    let external_id = named_identity(&call)?;
    let target = format!("identity '{}'", super::echo(external_id.as_str()));
    scope.delete_identity(&external_id).await.map_err(|error| ApiError::from_service(error, workspace, &target))?;
    Ok(no_content())
}

/// `…/ws_api_key/{id}/credits/`.
const CREDITS: &[Operation] = &[Operation::post_answering(
    "change-api-key-credits",
    "Change an API key's credits",
    authenticated!(ManageKeys, change_credits),
    schema::<super::api_keys::ApiKeyDto>(),
)
.describe(
    "`set` replaces the balance, `increment` adds (capped at 10^12), `decrement` takes away (clamped at 0). A key \
     that spends no credits starts to, from 0. Answers 200 with the key; audited as `api_key.credits_updated`.",
)
.body(Body::Required(schema::<CreditsChange>()))
.refuses(&[BAD_REQUEST, NOT_FOUND])];

/// `/v1/{ws}/identity/{external_id}/`.
const IDENTITY: &[Operation] = &[
    Operation::put(
        "put-identity",
        "Create or replace an identity",
        authenticated!(ManageKeys, put_identity),
        schema::<IdentityDto>(),
    )
    .describe(
        "The keys of the workspace with this `external_id`: their shared limits and credits apply to every \
             verification of each of them, besides the key's own. Audited as `identity.updated`.",
    )
    .body(Body::Required(schema::<PutIdentity>()))
    .refuses(&[BAD_REQUEST, NOT_FOUND]),
    Operation::get(
        "get-identity",
        "Get an identity",
        authenticated!(ManageKeys, get_identity),
        schema::<IdentityDto>(),
    )
    .refuses(&[NOT_FOUND]),
    Operation::delete("delete-identity", "Delete an identity", authenticated!(ManageKeys, delete_identity))
        .describe("Its limits and credits go; its keys keep working. Audited as `identity.deleted`."),
];

pub(crate) static ROUTES: &[Route] = &[
    Route::new("/v1/{workspace}/ws_api_key/{api_key_id}/credits/", Dialect::SuprSend, Tag::ApiKeys, CREDITS),
    Route::new("/v1/{workspace}/identity/{external_id}/", Dialect::SuprSend, Tag::ApiKeys, IDENTITY),
];

//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the
//! route table ([`crate::handlers::ROUTES`]) and the wire types (utoipa's
//! `ToSchema` derives on the DTOs, the error bodies and the verification
//! answers), so it cannot drift from what the server accepts and returns.
//!
//! Each operation's responses are the table's plus the ones every operation
//! of its kind can give: 401 and 403 where a service token is needed, 400 where a
//! body or query is read, 408 and 415 where a body is, and 413 (a declared
//! length over the limit), 500 and 503 (the request ran out of time)
//! everywhere. The error codes of both dialects are enums built from
//! `ApiError` itself. The verification `reason` enum is built from
//! `keys_core::verify::Denial::ALL` and the keys-crypto errors the
//! verification code passes through; forward authentication's
//! `X-Keysd-Reason` is one of them too (its handler only sends a keys-core
//! `Denial` or a keys-service `Refusal`, `service_token_invalid` included).
//! `servers` is the address the document was fetched from (the `Host`
//! header, or the request's authority), or `/` (this origin) when the
//! request names none that is well-formed.
//!
//! The document is built and serialised once ([`document`]); the handler of
//! `/openapi.json` only splices each request's `servers` entry in front of
//! the rest.

use std::sync::LazyLock;

use utoipa::openapi::path::{Operation, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ArrayBuilder, ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, LicenseBuilder, ObjectBuilder, OpenApi,
    OpenApiBuilder, PathsBuilder, Ref, RefOr, Required, ResponseBuilder, Schema, Type,
};

use crate::error::{Dialect, SuprSendError, VersoriError};
use crate::handlers::ROUTES;
use crate::routing::{Auth, Body, Payload, Query, Route, Tag};
pub use crate::schema::reasons;
use crate::schema::{schema, string_enum, SchemaOf, REASON};

// ---------------------------------------------------------------- paths

/// A path parameter's description and pattern, by its name in templates.
fn path_parameter(name: &str) -> Option<(&'static str, &'static str)> {
    const ULID: &str = "[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}";
    let described = match name {
        "workspace" => ("The workspace's slug.", "^[a-z0-9][a-z0-9_-]{0,62}$"),
        "workspace_uid" => ("The workspace's uid, `wksp_<ULID>`.", "^wksp_"),
        "api_key_id" => ("The API key's id, `ws_apik_<ULID>`.", "^ws_apik_"),
        "public_key_id" => ("The public key's id, `ws_pubk_<ULID>`.", "^ws_pubk_"),
        "service_token_id" => ("The service token's id, `st_<ULID>`.", "^st_"),
        "signing_key_uid" => ("The signing key's uid, `signing_key_<ULID>` (also its JWT `kid`).", "^signing_key_"),
        "organisation_id" => ("The organisation's id, a ULID.", ULID),
        "key_id" => ("The organisation signing key's id, a ULID.", ULID),
        "external_id" => (
            "The identity's `external_id` (the keys' owner in the customer's system), percent-encoded where a URL \
             needs it.",
            "^[^/]{1,765}$",
        ),
        "webhook_endpoint_id" => ("The webhook endpoint's id, `we_<ULID>`.", "^we_"),
        "event_id" => ("The event's id (its `webhook-id`): `evt_<n>` or `wrn_<n>`.", "^(evt|wrn)_[0-9]{1,19}$"),
        "asset" => (
            "A file of the console: `index.html`, `console.js` or `console.css`.",
            "^(index\\.html|console\\.js|console\\.css)$",
        ),
        _ => return None,
    };
    Some(described)
}

/// The parameter names of a template, in order.
fn parameter_names(pattern: &str) -> impl Iterator<Item = &str> {
    pattern.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
}

fn http_method(method: &http::Method) -> Option<HttpMethod> {
    Some(match *method {
        http::Method::GET => HttpMethod::Get,
        http::Method::POST => HttpMethod::Post,
        http::Method::PUT => HttpMethod::Put,
        http::Method::PATCH => HttpMethod::Patch,
        http::Method::DELETE => HttpMethod::Delete,
        http::Method::HEAD => HttpMethod::Head,
        http::Method::OPTIONS => HttpMethod::Options,
        http::Method::TRACE => HttpMethod::Trace,
        _ => return None,
    })
}

/// Collects a schema and everything it refers to into the components.
fn register(schemas: &mut Vec<(String, RefOr<Schema>)>, of: SchemaOf) -> RefOr<Schema> {
    let name = (of.name)().into_owned();
    if !schemas.iter().any(|(known, _)| *known == name) {
        schemas.push((name.clone(), (of.schema)()));
        (of.dependencies)(schemas);
    }
    Ref::from_schema_name(name).into()
}

/// The list wrapper of a schema: `{meta, results}`, registered as
/// `<Name>List`.
fn register_list(schemas: &mut Vec<(String, RefOr<Schema>)>, of: SchemaOf) -> RefOr<Schema> {
    let item = register(schemas, of);
    let meta = register(schemas, schema::<crate::wire::ListMeta>());
    let name = format!("{}List", (of.name)());
    if !schemas.iter().any(|(known, _)| *known == name) {
        let list = ObjectBuilder::new()
            .property("meta", meta)
            .required("meta")
            .property("results", ArrayBuilder::new().items(item))
            .required("results")
            .description(Some("A page: newest first, deleted records only with `include_deleted=true`."));
        schemas.push((name.clone(), list.into()));
    }
    Ref::from_schema_name(name).into()
}

/// An operation's description, with the least role it needs (docs/API.md,
/// Authentication and roles) for an authenticated one.
fn described(operation: &crate::routing::Operation) -> Option<String> {
    let role = operation.permission().map(|permission| {
        format!("Needs a service token with role `{}` or above (403 otherwise).", permission.least_role())
    });
    let parts: Vec<String> = [(!operation.description.is_empty()).then(|| operation.description.to_owned()), role]
        .into_iter()
        .flatten()
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}
/// The description of a 400 that a rule of the resource's state or of the
/// clock gives to a request the schema calls valid (the operation's
/// description says which rule). `cargo xtask schemathesis` reads it: such
/// a 400 is not a valid request rejected.
pub const RULE_REFUSAL: &str = "Refused by a rule of the resource's current state or of the clock, as the \
                                operation's description says; or the request is not acceptable (validation error).";

/// The description of a status.
fn status_description(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No content",
        400 => "The request is not acceptable (validation error).",
        401 => "No, a malformed, an unknown, a revoked or an expired service token.",
        403 => "The service token's role, or its workspaces, do not allow this request (PermissionDenied).",
        404 => "Not found (also anything of another organisation).",
        408 => "The request body was not received in time.",
        409 => "What the request would store is stored already.",
        413 => "The request body is over the limit (64 KiB by default; 1 MiB for the import of API keys).",
        415 => "A body that is not `application/json`.",
        429 => "Too many verifications or failed authentications from this address (only with `--rate-limit`); see `Retry-After`.",
        500 => "Internal error; nothing of it reaches the client.",
        503 => "The database is not reachable, or the request ran out of time.",
        _ => "Answer",
    }
}

/// The responses of an operation: the table's, then the generic ones.
fn responses(
    schemas: &mut Vec<(String, RefOr<Schema>)>,
    route: &Route,
    operation: &crate::routing::Operation,
    head: bool,
) -> Vec<(u16, utoipa::openapi::Response)> {
    let mut statuses: Vec<(u16, Payload)> = vec![operation.success];
    statuses.extend_from_slice(operation.refusals);
    let reads_input = !matches!(operation.body, Body::None) || operation.query != Query::None;
    let mut generic = Vec::new();
    if reads_input {
        generic.push(400);
    }
    if operation.auth() == Auth::ServiceToken {
        generic.extend([401, 403]);
    }
    if operation.auth() == Auth::Signed {
        generic.push(401);
    }
    if operation.auth() != Auth::Public || route.is_verification() {
        generic.push(429);
    }
    if !matches!(operation.body, Body::None) && operation.auth() != Auth::Public {
        generic.extend([408, 415]);
    }
    generic.extend([413, 500, 503]);
    for status in generic {
        if !statuses.iter().any(|(known, _)| *known == status) {
            statuses.push((status, Payload::Error));
        }
    }
    statuses.sort_by_key(|(status, _)| *status);
    // A 400 the operation itself declares is a rule of the resource's state
    // or of the clock that no schema can say (the default key cannot be
    // deleted while others live, only an active key can be rolled, a slug
    // is taken): a request the document calls valid may get it.
    let rule_refusal = operation.refusals.iter().any(|(status, _)| *status == 400);
    let error = match route.dialect {
        Dialect::SuprSend => schema::<SuprSendError>(),
        Dialect::Versori => schema::<VersoriError>(),
    };
    statuses
        .into_iter()
        .map(|(status, payload)| {
            let description = if status == 400 && rule_refusal { RULE_REFUSAL } else { status_description(status) };
            let mut response = ResponseBuilder::new().description(description);
            let text = || -> RefOr<Schema> { ObjectBuilder::new().schema_type(Type::String).into() };
            let content: Vec<(&str, RefOr<Schema>)> = match payload {
                Payload::Json(of) => vec![("application/json", register(schemas, of))],
                Payload::List(of) => vec![("application/json", register_list(schemas, of))],
                Payload::AnyObject => vec![("application/json", ObjectBuilder::new().schema_type(Type::Object).into())],
                Payload::PrometheusText => vec![("text/plain; version=0.0.4", text())],
                Payload::Html => vec![("text/html", text())],
                Payload::ConsoleAsset => vec![("text/html", text()), ("text/javascript", text()), ("text/css", text())],
                Payload::Empty => vec![],
                Payload::Error => vec![("application/json", register(schemas, error))],
            };
            if !head {
                for (media_type, schema) in content {
                    response = response.content(media_type, ContentBuilder::new().schema(Some(schema)).build());
                }
            }
            (status, response.build())
        })
        .collect()
}

/// One documented operation.
fn operation(
    schemas: &mut Vec<(String, RefOr<Schema>)>,
    route: &Route,
    operation: &crate::routing::Operation,
    head: bool,
) -> Operation {
    let mut builder = OperationBuilder::new()
        .tag(route.tag.name())
        .operation_id(Some(if head {
            format!("{}-head", operation.operation_id)
        } else {
            operation.operation_id.to_owned()
        }))
        .summary(Some(if head {
            format!("{} (headers only)", operation.summary)
        } else {
            operation.summary.to_owned()
        }))
        .description(described(operation));
    for name in parameter_names(route.pattern) {
        let (description, pattern) = path_parameter(name).unwrap_or(("", ""));
        let parameter = ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description((!description.is_empty()).then_some(description))
            .schema(Some(
                ObjectBuilder::new().schema_type(Type::String).pattern((!pattern.is_empty()).then_some(pattern)),
            ));
        builder = builder.parameter(parameter);
    }
    if operation.query == Query::Audit {
        builder = audit_parameters(builder);
    } else if operation.query == Query::Usage {
        builder = usage_parameters(builder);
    } else if operation.query != Query::None {
        let integer = |minimum: u64, maximum: Option<u64>, default: u64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(minimum))
                .maximum(maximum)
                .default(Some(default.into()))
        };
        let query = |name: &str, description: &str, schema: ObjectBuilder| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(description))
                .schema(Some(schema))
        };
        if operation.query == Query::Cursor {
            let (most, default) = (keys_core::KeyPage::MAX_LIMIT, keys_core::KeyPage::DEFAULT_LIMIT);
            builder = builder
                .parameter(query(
                    "limit",
                    "Page size; out of range is a 400, never clamped.",
                    integer(1, Some(u64::from(most)), u64::from(default)),
                ))
                .parameter(query(
                    "cursor",
                    "The `nextCursor` of the previous page, as it was returned (opaque).",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(crate::handlers::organisation_keys::cursor::CURSOR_PATTERN)),
                ));
        } else {
            builder = builder
                .parameter(query(
                    "limit",
                    "Page size; out of range is a 400, never clamped.",
                    integer(1, Some(100), 10),
                ))
                .parameter(query("offset", "Records to skip.", integer(0, Some(keys_core::Pagination::MAX_OFFSET), 0)));
        }
        if operation.query == Query::List {
            builder = builder.parameter(query(
                "include_deleted",
                "Include deleted records.",
                ObjectBuilder::new().schema_type(Type::Boolean).default(Some(false.into())),
            ));
        }
    }
    let (body, required) = match operation.body {
        Body::None => (None, false),
        Body::Required(of) => (Some(of), true),
        Body::Optional(of) => (Some(of), false),
    };
    if let (Some(of), false) = (body, head) {
        let description = if required {
            "A JSON object (`Content-Type: application/json`)."
        } else {
            "Optional: an empty body is accepted, with or without `Content-Type: application/json`."
        };
        let request_body = RequestBodyBuilder::new()
            .description(Some(description))
            .required(Some(if required { Required::True } else { Required::False }))
            .content("application/json", ContentBuilder::new().schema(Some(register(schemas, of))).build());
        builder = builder.request_body(Some(request_body.build()));
    }
    builder = match operation.auth() {
        // Forward authentication needs no caller but the gateway, which
        // names itself by its own header; said here so that clients (and
        // schemathesis) know a 401 comes before anything else.
        Auth::Public if route.answers_any_method() => {
            builder.securities(Some(vec![SecurityRequirement::new("GatewayToken", Vec::<String>::new())]))
        }
        Auth::Public => builder.securities(Some(Vec::<SecurityRequirement>::new())),
        Auth::Signed => {
            builder.securities(Some(vec![SecurityRequirement::new("GithubSignature", Vec::<String>::new())]))
        }
        Auth::ServiceToken => {
            let mut requirements = vec![SecurityRequirement::new("ServiceToken", Vec::<String>::new())];
            if route.dialect == Dialect::Versori {
                requirements.push(SecurityRequirement::new("BearerAuth", Vec::<String>::new()));
            }
            builder.securities(Some(requirements))
        }
    };
    for (status, response) in responses(schemas, route, operation, head) {
        builder = builder.response(status.to_string(), response);
    }
    builder.build()
}

/// The whole document, without `servers`.
pub fn build() -> OpenApi {
    let mut schemas: Vec<(String, RefOr<Schema>)> = Vec::new();
    let mut paths = PathsBuilder::new();
    for route in ROUTES {
        let mut item = PathItem::default();
        for documented in route.operations {
            let Some(method) = http_method(&documented.method) else { continue };
            item.merge_operations(PathItem::new(method, operation(&mut schemas, route, documented, false)));
            if documented.method == http::Method::GET {
                item.merge_operations(PathItem::new(
                    HttpMethod::Head,
                    operation(&mut schemas, route, documented, true),
                ));
            }
        }
        paths = paths.path(route.pattern, item);
    }
    let reason = string_enum(
        reasons(),
        "Why a credential did not verify: a stable snake_case code, in a verify answer's `reason` and in forward \
         authentication's `X-Keysd-Reason` (where `service_token_invalid` is the gateway's own token).",
    );
    schemas.push((REASON.to_owned(), reason.into()));
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas)
        .security_scheme(
            "ServiceToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Authorization: ServiceToken <token>",
            ))),
        )
        .security_scheme(
            "GatewayToken",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Keysd-Service-Token",
                "Forward authentication only: the gateway's own service token (any role).",
            ))),
        )
        .security_scheme(
            "GithubSignature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Github-Public-Key-Signature",
                "GitHub secret scanning only: the base64 DER ECDSA P-256 signature of the raw body, under the key \
                 `Github-Public-Key-Identifier` names in the file of `--github-secret-scanning-keys`.",
            ))),
        )
        .security_scheme(
            "BearerAuth",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("Dialect 2 only: Authorization: Bearer <service token>"))
                    .build(),
            ),
        )
        .build();
    let info = InfoBuilder::new()
        .title("keysd")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "API keys, publishable keys and signing keys as a service. Dialect 1 (/v1/…) is SuprSend-compatible; \
             dialect 2 (/api/organisations/v1/…) is Versori-compatible. Dialect-1 resource paths are also accepted \
             without the final '/'. HEAD is answered wherever GET is.",
        ))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
        .build();
    let tags =
        Tag::ALL.iter().map(|tag| TagBuilder::new().name(tag.name()).description(Some(tag.description())).build());
    OpenApiBuilder::new().info(info).paths(paths).components(Some(components)).tags(Some(tags)).build()
}

/// The serialised document without `servers`: `{"openapi": …}`.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| match build().to_json() {
    Ok(json) => json,
    Err(error) => {
        // Serialising utoipa's types cannot fail (string keys, no maps of
        // other keys); should it ever, the document says so.
        tracing::error!(error = %error, "the OpenAPI document does not serialise");
        r#"{"openapi":"3.1.0","info":{"title":"keysd","version":"0"},"paths":{}}"#.to_owned()
    }
});

/// The document as generated, without a `servers` entry.
pub fn document() -> &'static str {
    &DOCUMENT
}

/// The query of `GET /v1/{workspace}/usage/` (see [`Query::Usage`]).
fn usage_parameters(mut builder: utoipa::openapi::path::OperationBuilder) -> utoipa::openapi::path::OperationBuilder {
    let string = |pattern: Option<&str>| ObjectBuilder::new().schema_type(Type::String).pattern(pattern);
    let instant = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::Custom("date-time".to_owned())))
    };
    let most = keys_core::usage::MAX_USAGE_ROWS;
    let limit =
        ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(most)).default(Some(most.into()));
    let granularity = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(keys_core::usage::Granularity::ALL.map(keys_core::usage::Granularity::as_str)))
        .default(Some("hour".into()));
    let parameters = [
        ("granularity", "Bucket width; `hour` when absent.", granularity),
        (
            "since",
            "Buckets starting at or after this RFC 3339 instant (moved to the start of its bucket); by default \
             `until` minus a day (`minute`, `hour`) or 30 days (`day`).",
            instant(),
        ),
        ("until", "Buckets starting before this RFC 3339 instant; now by default.", instant()),
        ("key_id", "Only this key's counts (`ws_apik_…`, `ws_pubk_…`).", string(Some(r"^[A-Za-z0-9_]{1,64}$"))),
        ("external_id", "Only the counts of each API key with this `external_id`; not with `key_id`.", string(None)),
        ("limit", "Rows per page; out of range is a 400, never clamped.", limit),
        ("cursor", "`next_cursor` of the previous page (opaque).", string(Some("^([0-9a-f]{2}){1,256}$"))),
    ];
    for (name, description, schema) in parameters {
        let parameter = ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema));
        builder = builder.parameter(parameter);
    }
    builder
}

/// The query of `GET /v1/audit_event/` (see [`Query::Audit`]).
fn audit_parameters(mut builder: utoipa::openapi::path::OperationBuilder) -> utoipa::openapi::path::OperationBuilder {
    let string = |pattern: Option<&str>, format: Option<&str>| {
        let schema = ObjectBuilder::new().schema_type(Type::String).pattern(pattern);
        match format {
            Some(format) => schema.format(Some(utoipa::openapi::SchemaFormat::Custom(format.to_owned()))),
            None => schema,
        }
    };
    let limit =
        ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1)).maximum(Some(100)).default(Some(50.into()));
    let parameters = [
        (
            "workspace",
            "Only the events of this workspace (slug); an unknown one is a 404.",
            string(Some(r"^[a-z0-9][a-z0-9_-]{0,62}$"), None),
        ),
        (
            "action",
            "Only events of this action, e.g. `api_key.rolled`; an unknown action is a 400.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(keys_store::AuditAction::ALL.map(keys_store::AuditAction::as_str))),
        ),
        ("target_id", "Only events on this target (its id).", string(None, None)),
        ("since", "Only events at or after this RFC 3339 instant.", string(None, Some("date-time"))),
        ("until", "Only events before this RFC 3339 instant.", string(None, Some("date-time"))),
        ("limit", "Page size; out of range is a 400, never clamped.", limit),
        ("cursor", "`meta.next_cursor` of the previous page (opaque).", string(Some("^[0-9a-f]{32}$"), None)),
    ];
    for (name, description, schema) in parameters {
        let parameter = ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema));
        builder = builder.parameter(parameter);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_1_json() {
        let document: serde_json::Value = serde_json::from_str(document()).expect("valid JSON");
        assert_eq!(document["openapi"], "3.1.0");
        assert!(document["components"]["schemas"].is_object());
    }

    #[test]
    fn every_path_parameter_is_described() {
        for route in ROUTES {
            for name in parameter_names(route.pattern) {
                assert!(path_parameter(name).is_some(), "{name} of {} has no description", route.pattern);
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let document: serde_json::Value = serde_json::from_str(document()).expect("valid JSON");
        let mut references = Vec::new();
        collect_references(&document, &mut references);
        assert!(!references.is_empty());
        for reference in references {
            let pointer = reference.strip_prefix('#').expect("local reference");
            assert!(document.pointer(pointer).is_some(), "{reference} does not resolve");
        }
    }

    fn collect_references(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", serde_json::Value::String(reference)) => out.push(reference.clone()),
                        _ => collect_references(value, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| collect_references(item, out)),
            _ => {}
        }
    }
}

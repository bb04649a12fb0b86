//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use utoipa::ToSchema;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::error::ApiError;
use crate::error::Dialect;
use crate::respond::json;
use crate::routing::{public, HttpResult, Operation, Payload, Public, Route, Tag};
use crate::schema::schema;

/// `GET /health`: the process answers.
pub(crate) async fn health(_call: Public<'_>) -> HttpResult {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /ready`: the store answers too, and the process is not shutting
/// down ([`crate::App::drain`]).
pub(crate) async fn ready(call: Public<'_>) -> HttpResult {
    let state = call.state;
    if state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::Unavailable("keysd is shutting down.".to_owned()));
    }
    match state.service.ping().await {
        Ok(()) => json(StatusCode::OK, &json!({"status": "ready"})),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            Err(ApiError::Unavailable("The database is not reachable.".to_owned()))
        }
    }
}

/// `GET /metrics`: Prometheus text, with the service's own counters.
pub(crate) async fn metrics(call: Public<'_>) -> HttpResult {
    let state = call.state;
    let mut text = state.metrics.render();
    // What one verification costs in cryptography: a kid-less user token
    // is bounded to keys_core::verify::MAX_KIDLESS_CANDIDATES checks.
    text.push_str(
        "# HELP keysd_signature_checks_total JWT signature checks made by verification (user tokens and \
         organisation-key JWTs; the warm path makes none).\n# TYPE keysd_signature_checks_total counter\n",
    );
    text.push_str(&format!("keysd_signature_checks_total {}\n", state.service.signature_checks()));
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}

/// `GET /openapi.json`, with the address it was fetched from as its server.
///
/// The body is shared, not copied, between the responses that name the
/// same server (a few distinct `Host`s are kept): a client that never reads
/// its responses holds a reference to it per stream, not 100 KiB.
pub(crate) async fn openapi(call: Public<'_>) -> HttpResult {
    let (state, head) = (call.state, call.head);
    let url = server_url(head, state.config.tls.is_some()).unwrap_or_else(|| "/".to_owned());
    let body = state.openapi_bodies.get_or_insert(&url, || Bytes::from(served(state.openapi, &url)));
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The address a request was sent to, when its `Host` (or HTTP/2
/// authority) is a well-formed `host[:port]`: `http://host[:port]`, or
/// `https://…` when keysd serves TLS (`tls`) or behind a proxy that says so
/// in `X-Forwarded-Proto`.
fn server_url(head: &Parts, tls: bool) -> Option<String> {
    let host = head
        .headers
        .get(http::header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| head.uri.authority().map(|authority| authority.as_str()))?;
    let well_formed = !host.is_empty()
        && host.len() <= 255
        && !host.starts_with(':')
        && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'-' | b':' | b'[' | b']'));
    if !well_formed {
        return None;
    }
    let forwarded = head.headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok());
    let scheme = match forwarded.map(str::trim) {
        Some(proto) if proto.eq_ignore_ascii_case("https") => "https",
        _ if tls => "https",
        _ => head.uri.scheme_str().filter(|scheme| *scheme == "https").unwrap_or("http"),
    };
    Some(format!("{scheme}://{host}"))
}

/// The body of `/openapi.json` fetched from `url` (see [`server_url`]):
/// the document with that address as its one server.
pub(crate) fn served(document: &str, url: &str) -> Vec<u8> {
    // `url` holds only the characters checked above, so it needs no JSON
    // escaping; the document is an object, so it starts with `{`.
    let rest = document.strip_prefix('{').unwrap_or(document);
    let mut body = Vec::with_capacity(document.len() + url.len() + 24);
    body.extend_from_slice(b"{\"servers\":[{\"url\":\"");
    body.extend_from_slice(url.as_bytes());
    body.extend_from_slice(b"\"}],");
    body.extend_from_slice(rest.as_bytes());
    body
}

/// `/health`.
const HEALTH: &[Operation] = &[Operation::get("health", "Liveness", public!(health), schema::<StatusDoc>())
    .describe("The process answers.")
    .refuses(&[])];
/// `/ready`.
const READY: &[Operation] =
    &[Operation::get("ready", "Readiness: the store answers", public!(ready), schema::<StatusDoc>())
        .refuses(&[(503, Payload::Error)])];
/// `/metrics`.
const METRICS: &[Operation] =
    &[Operation::new(Method::GET, "metrics", "Prometheus metrics", public!(metrics), (200, Payload::PrometheusText))
        .describe("Request counts and latency by route template, verification outcomes by reason.")];
/// `/openapi.json`.
const OPENAPI: &[Operation] =
    &[Operation::new(Method::GET, "openapi", "This document", public!(openapi), (200, Payload::AnyObject))
        .describe("Its `servers` entry is the address it was fetched from.")];

/// Liveness, readiness, metrics and the OpenAPI document.
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/health", Dialect::SuprSend, Tag::Operations, HEALTH),
    Route::new("/ready", Dialect::SuprSend, Tag::Operations, READY),
    Route::new("/metrics", Dialect::SuprSend, Tag::Operations, METRICS),
    Route::new("/openapi.json", Dialect::SuprSend, Tag::Operations, OPENAPI),
];

// ---------------------------------------------------------------- wire types

/// `{"status": "ok"}` (or `"ready"`).
#[derive(ToSchema)]
#[schema(as = Status)]
#[allow(dead_code)] // Documentation only.
pub(crate) struct StatusDoc {
    status: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(host: Option<&str>, forwarded: Option<&str>) -> Parts {
        let mut builder = http::Request::builder().uri("/openapi.json");
        if let Some(host) = host {
            builder = builder.header(http::header::HOST, host);
        }
        if let Some(forwarded) = forwarded {
            builder = builder.header("x-forwarded-proto", forwarded);
        }
        builder.body(()).expect("request").into_parts().0
    }

    fn servers(parts: &Parts) -> serde_json::Value {
        let document: serde_json::Value = serde_json::from_slice(&served(
            r#"{"openapi":"3.1.0","paths":{}}"#,
            &server_url(parts, false).unwrap_or_else(|| "/".to_owned()),
        ))
        .expect("JSON");
        document["servers"].clone()
    }

    #[test]
    fn over_tls_the_server_is_https_whatever_the_protocol() {
        assert_eq!(
            server_url(&head(Some("keys.example:8443"), None), true).as_deref(),
            Some("https://keys.example:8443")
        );
    }

    #[test]
    fn servers_is_the_address_the_document_was_fetched_from() {
        assert_eq!(servers(&head(Some("127.0.0.1:8080"), None)), serde_json::json!([{"url": "http://127.0.0.1:8080"}]));
        assert_eq!(
            servers(&head(Some("keys.example.com"), Some("https"))),
            serde_json::json!([{"url": "https://keys.example.com"}])
        );
        assert_eq!(servers(&head(Some("[::1]:9000"), None)), serde_json::json!([{"url": "http://[::1]:9000"}]));
        for bad in ["evil.com/\"x", "a b", ""] {
            assert_eq!(servers(&head(Some(bad), None)), serde_json::json!([{"url": "/"}]), "{bad}");
        }
        assert_eq!(servers(&head(None, None)), serde_json::json!([{"url": "/"}]));
    }
}

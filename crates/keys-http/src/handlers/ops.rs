//! Operational endpoints: liveness, readiness, metrics, the OpenAPI document.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::error::{json, json_bytes, ApiError};
use crate::server::AppState;

type HttpResult = Result<Response<Full<Bytes>>, ApiError>;

/// `GET /health`: the process answers.
pub(crate) fn health() -> HttpResult {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /ready`: the store answers too.
pub(crate) async fn ready(state: &AppState) -> HttpResult {
    match state.service.ping().await {
        Ok(()) => json(StatusCode::OK, &json!({"status": "ready"})),
        Err(error) => {
            tracing::warn!(error = %error, "readiness check failed");
            Err(ApiError::Unavailable("The database is not reachable.".to_owned()))
        }
    }
}

/// `GET /metrics`: Prometheus text.
pub(crate) fn metrics(state: &AppState) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(state.metrics.render())));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// `GET /openapi.json`, with the address it was fetched from as its server.
pub(crate) fn openapi(head: &http::request::Parts) -> Response<Full<Bytes>> {
    json_bytes(StatusCode::OK, crate::openapi::served(head))
}

//! keys-http: the HTTP face of keysd, as a library: the server, the routes
//! and their wire types, the OpenAPI document and the console. The `keysd`
//! binary (crate `keysd`) runs it; embedders may serve it themselves.
//!
//! - [`server`]: [`App`] (request → response, generic over the body so tests
//!   need no socket) and [`serve`] (hyper 1 + hyper-util: HTTP/1.1 and
//!   HTTP/2, timeouts, graceful shutdown).
//! - `routing`: what a route is (template, dialect, per-method handler,
//!   request and response types), the request parts handlers read, the
//!   table type and the router (a path → its [`routes::Route`] and
//!   parameters); it knows no resource.
//! - [`routes`]: the route table, gathered from the resource modules, each
//!   of which declares its routes beside its handlers; [`router`]: path
//!   resolution against it (both public paths of the table above).
//! - `handlers`: one module per resource (`workspaces`, `api_keys`,
//!   `public_keys`, `signing_keys`, `organisation_keys`, `verification`,
//!   `forward_auth`, `ops`, …), each with its routes, its handlers and its
//!   wire types; each handler parses the request into keys-core values,
//!   calls one keys-service use case, and renders the answer in its
//!   dialect.
//! - `wire`: the wire types several resources share; `query`: query
//!   strings; [`error`]: failures and their bodies; [`respond`]: successful answers.
//! - `connections`: the connection table of [`serve`] (eviction from a full
//!   table, response bytes counted until the peer takes them).
//! - [`rate_limit`]: the optional per-client limit of `--rate-limit`, and
//!   who the client is behind a trusted proxy.
//! - [`tls`]: HTTPS for [`serve`] (rustls), its certificate re-read from
//!   its files while the server runs.
//! - `github_keys`: [`GithubKeys`], GitHub's secret-scanning keys, read
//!   from a copy of GitHub's key file and re-read while the server runs.
//! - [`metrics`], [`openapi`].
//!
//! **Architecture invariant:** this is the only crate that knows HTTP and
//! JSON, and it holds no domain rule and no use case: those are keys-core's
//! and keys-service's. It holds no state of its own beyond metrics:
//! everything durable is in keys-store (whose `CachedStore` serves `keysd
//! serve`'s verification lookups from memory), every secret is generated in
//! keys-service by keys-crypto and leaves the process once, in the response
//! that creates it. Bodies, queries and `Authorization` headers are never
//! logged.

mod connections;
mod dispatch;
pub mod error;
mod github_keys;
mod handlers;
pub mod metrics;
pub mod openapi;
mod query;
pub mod rate_limit;
mod reload;
pub mod respond;
mod routing;
mod schema;
pub mod server;
mod state;
pub mod tls;
pub mod webhook_client;
mod wire;

pub use github_keys::GithubKeys;
pub use handlers::api_key_imports::{import_entry, IMPORT_BODY_LIMIT};
pub use handlers::audit_events::AuditEventDto;
pub use handlers::service_tokens::ServiceTokenDto;
pub use server::{serve, App};
pub use wire::format_timestamp;

/// The route table: [`ROUTES`](routes::ROUTES), every route of the server,
/// and what a route is.
pub mod routes {
    pub use crate::handlers::ROUTES;
    pub use crate::routing::{Auth, Operation, Route, Routes, Tag};
}

/// A request path → its route of [`routes::ROUTES`] and its parameters.
pub mod router {
    pub use crate::routing::{Matched, MAX_PARAMS};

    /// Resolves a path (without query) to a route of the table, regardless
    /// of method.
    pub fn resolve(path: &str) -> Option<Matched<'_>> {
        crate::handlers::ROUTES.resolve(path)
    }
}
pub use state::{
    AppConfig, DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS, DEFAULT_LEAK_REPORTS_PER_MINUTE, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_HEAD_BYTES, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_RESPONSE_BYTES_PER_CONNECTION,
};

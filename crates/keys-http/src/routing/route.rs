//! What a route is made of, below the handlers that declare them: the
//! request parts a handler reads ([`Input`], [`Public`], [`Authenticated`]),
//! and the [`Route`] and [`Operation`] values each resource module declares
//! beside its handler functions (as in Vault's `framework.Path`): a path
//! template, its dialect (which decides the error body and whether
//! `Authorization: Bearer` is accepted), its OpenAPI tag, and one
//! [`Operation`] per method with the handler, how it authenticates, what it
//! reads (query, body) and what it answers (status → body).
//!
//! [`crate::handlers::ROUTES`] gathers the resource modules' groups into
//! the one table the router, the dispatcher, the metrics and
//! `/openapi.json` read.
//! Adding a route is one entry in its resource module, beside its handler;
//! nothing else lists routes.
//!
//! **Why a function pointer returning a boxed future.** Each operation holds
//! its handler as a non-capturing closure coerced to a function pointer
//! (`fn(Authenticated<'_>) -> HandlerFuture<'_>`) that binds the path
//! parameters and calls the handler function. The alternative, an enum of
//! handlers matched in one place, would make adding a route three edits (the
//! entry, a variant, an arm) and would let an entry and its arm disagree.
//! The price of the pointer is one heap allocation per request for the
//! handler's future. In exchange the router does not copy path parameters
//! into a `Vec<String>` (they borrow the request's path), so a route with
//! parameters allocates less; the verification routes, which have none, pay
//! the one allocation, which measured in-process verification of an API key
//! (about 2.5 µs a request) does not show.
//!
//! How an operation authenticates follows from its handler's kind: a
//! [`Handler::Public`] gets no caller, a [`Handler::ServiceToken`] gets the
//! authenticated [`Caller`] and cannot run without it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response};
use http_body_util::Full;
pub(crate) use keys_core::Permission;
pub(crate) use keys_service::Caller;

use super::input::Input;
use crate::error::{ApiError, Dialect};
use crate::schema::SchemaOf;
use crate::state::AppState;

/// The most parameters a route template has.
pub const MAX_PARAMS: usize = 2;

/// What every handler returns.
pub(crate) type HttpResult = Result<Response<Full<Bytes>>, ApiError>;

/// What a public handler gets: the state, the request head and the path
/// parameters. Copied into the handler's closure, borrowed for `'a`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Public<'a> {
    pub state: &'a Arc<AppState>,
    pub head: &'a Parts,
    params: [&'a str; MAX_PARAMS],
}

impl<'a> Public<'a> {
    pub fn new(state: &'a Arc<AppState>, head: &'a Parts, params: [&'a str; MAX_PARAMS]) -> Self {
        Self { state, head, params }
    }

    /// The `index`-th path parameter of the template.
    pub fn param(&self, index: usize) -> &'a str {
        self.params.get(index).copied().unwrap_or_default()
    }
}

/// What an authenticated handler gets: besides [`Public`]'s, the caller and
/// the query and body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authenticated<'a> {
    pub state: &'a Arc<AppState>,
    pub caller: &'a Caller,
    pub input: &'a Input,
    params: [&'a str; MAX_PARAMS],
}

impl<'a> Authenticated<'a> {
    pub fn new(call: Public<'a>, caller: &'a Caller, input: &'a Input) -> Self {
        Self { state: call.state, caller, input, params: call.params }
    }

    /// The `index`-th path parameter of the template.
    pub fn param(&self, index: usize) -> &'a str {
        self.params.get(index).copied().unwrap_or_default()
    }
}

/// What a signed handler gets: besides [`Public`]'s, the query and body,
/// whose signature it checks before anything else.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signed<'a> {
    pub state: &'a Arc<AppState>,
    pub head: &'a Parts,
    pub input: &'a Input,
}

/// The future of one handler call, borrowing the request for `'a`.
pub(crate) type HandlerFuture<'a> = Pin<Box<dyn Future<Output = HttpResult> + Send + 'a>>;

/// The handler of an operation, and so how it authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    /// No authentication; the body is not read.
    Public(for<'a> fn(Public<'a>) -> HandlerFuture<'a>),
    /// `Authorization: ServiceToken <token>` (also `Bearer <token>` on
    /// dialect-2 routes) of a token whose role has the permission (else a
    /// 403, before the body is read); the body is read for POST, PATCH and
    /// PUT.
    ServiceToken(Permission, for<'a> fn(Authenticated<'a>) -> HandlerFuture<'a>),
    /// No token: the handler authenticates the raw body itself, by a
    /// signature in its headers (GitHub's secret-scanning alerts), before
    /// it reads anything of it. The body is read as for `ServiceToken`.
    Signed(for<'a> fn(Signed<'a>) -> HandlerFuture<'a>),
}

/// How an operation authenticates, as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    ServiceToken,
    /// A signature of the body, checked by the handler.
    Signed,
}

/// The OpenAPI tag of a route: the group it is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Operations,
    Workspaces,
    ServiceTokens,
    ApiKeys,
    PublicKeys,
    SigningKeys,
    Verification,
    SigningKeysVersori,
    Audit,
    Webhooks,
}

impl Tag {
    /// Every tag, in the order the document lists them.
    pub const ALL: [Tag; 10] = [
        Self::Operations,
        Self::Workspaces,
        Self::ServiceTokens,
        Self::ApiKeys,
        Self::PublicKeys,
        Self::SigningKeys,
        Self::Verification,
        Self::SigningKeysVersori,
        Self::Audit,
        Self::Webhooks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Operations => "operations",
            Self::Workspaces => "workspaces",
            Self::ServiceTokens => "service-tokens",
            Self::ApiKeys => "api-keys",
            Self::PublicKeys => "public-keys",
            Self::SigningKeys => "signing-keys",
            Self::Verification => "verification",
            Self::SigningKeysVersori => "signing-keys-versori",
            Self::Audit => "audit",
            Self::Webhooks => "webhooks",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Operations => "Liveness, readiness, metrics and this document.",
            Self::Workspaces => "Dialect 1 (SuprSend-compatible): workspaces of the token's organisation.",
            Self::ServiceTokens => "Dialect 1: the organisation's service tokens (`kst_…`), shown once at creation.",
            Self::ApiKeys => "Dialect 1: server-side API keys (`SS.…`), shown once at creation.",
            Self::PublicKeys => "Dialect 1: publishable client keys (`SS.PUBK.…`).",
            Self::SigningKeys => "Dialect 1: workspace ES256 signing keys and their public JWKS.",
            Self::Verification => "Verification: 200 with `valid` for any well-formed request.",
            Self::SigningKeysVersori => "Dialect 2 (Versori-compatible): organisation RS256 signing keys.",
            Self::Audit => "Dialect 1: the organisation's audit trail, newest first, paged by an opaque cursor.",
            Self::Webhooks => "Webhook endpoints: every change and warning sent out, signed (Standard Webhooks).",
        }
    }
}

/// What a response body holds.
#[derive(Clone, Copy)]
pub(crate) enum Payload {
    /// A JSON document of this schema.
    Json(SchemaOf),
    /// `{"meta": {count, limit, offset}, "results": [...]}` of this schema.
    List(SchemaOf),
    /// Some JSON object (this document).
    AnyObject,
    /// Prometheus text exposition.
    PrometheusText,
    /// An HTML page (the console's).
    Html,
    /// One of the console's files: HTML, JavaScript or CSS.
    ConsoleAsset,
    /// No body (204).
    Empty,
    /// The error body of the route's dialect.
    Error,
}

/// What an operation reads from the body.
#[derive(Clone, Copy)]
pub(crate) enum Body {
    /// Nothing: the body is not read, or ignored.
    None,
    /// A JSON body that must be present.
    Required(SchemaOf),
    /// A JSON body that may be empty (with or without a content type).
    Optional(SchemaOf),
}

/// What an operation reads from the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Query {
    None,
    /// `limit` (1–100), `offset` (≥ 0), `include_deleted` (true/false).
    List,
    /// `limit` and `offset` only.
    Page,
    /// `limit` (1–1000) and an opaque `cursor` (organisation keys).
    Cursor,
    /// The audit trail's: `workspace`, `action`, `target_id`, `since`,
    /// `until`, `limit` (1–100, default 50) and `cursor`.
    Audit,
    /// Usage's: `since`, `until`, `granularity`, `key_id`, `external_id`,
    /// `limit` (1–10,000, default 10,000) and `cursor`.
    Usage,
}

/// One method of a route.
pub struct Operation {
    pub(crate) method: Method,
    pub(crate) operation_id: &'static str,
    pub(crate) summary: &'static str,
    /// Empty for none.
    pub(crate) description: &'static str,
    pub(crate) handler: Handler,
    pub(crate) query: Query,
    pub(crate) body: Body,
    /// The success answer.
    pub(crate) success: (u16, Payload),
    /// The other answers the handler itself gives; the generator adds the
    /// ones every operation of its kind can give (401, 413, 415, 500, …).
    pub(crate) refusals: &'static [(u16, Payload)],
    /// Whether a success carries a secret or a private key (shown once):
    /// the response then has `Cache-Control: no-store` (docs/GUARANTEES.md, Secrets).
    pub(crate) hands_out_secret: bool,
    /// The most bytes of body this operation takes, where it takes more
    /// than the server's limit (the import of API keys); `None`: the
    /// server's limit (`AppConfig::body_limit`).
    pub(crate) body_limit: Option<usize>,
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation").field("method", &self.method).field("operation_id", &self.operation_id).finish()
    }
}

impl Operation {
    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn operation_id(&self) -> &'static str {
        self.operation_id
    }

    pub fn auth(&self) -> Auth {
        match self.handler {
            Handler::Public(_) => Auth::Public,
            Handler::ServiceToken(..) => Auth::ServiceToken,
            Handler::Signed(_) => Auth::Signed,
        }
    }

    /// What the caller's role must permit: `None` for a public operation.
    /// Stated once, in the operation's table entry (`authenticated!`).
    pub fn permission(&self) -> Option<Permission> {
        match self.handler {
            Handler::Public(_) | Handler::Signed(_) => None,
            Handler::ServiceToken(permission, _) => Some(permission),
        }
    }
}

/// One path template and its methods.
#[derive(Debug)]
pub struct Route {
    /// The OpenAPI path template, also the `route` label of metrics.
    pub(crate) pattern: &'static str,
    pub(crate) dialect: Dialect,
    pub(crate) tag: Tag,
    pub(crate) operations: &'static [Operation],
    /// Whether the route answers every method with its first operation.
    pub(crate) any_method: bool,
}

/// A route is its entry in the table: two are equal when they are the same
/// entry.
impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Route {}

impl Route {
    /// A path and its operations (a `const` slice, declared beside the
    /// handlers it names).
    pub(crate) const fn new(
        pattern: &'static str,
        dialect: Dialect,
        tag: Tag,
        operations: &'static [Operation],
    ) -> Self {
        Self { pattern, dialect, tag, operations, any_method: false }
    }

    /// A route that answers every method with its first operation, and
    /// every path below it.
    pub(crate) const fn any_method(self) -> Self {
        Self { any_method: true, ..self }
    }

    pub fn pattern(&self) -> &'static str {
        self.pattern
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn tag(&self) -> Tag {
        self.tag
    }

    pub fn operations(&self) -> &'static [Operation] {
        self.operations
    }

    /// The methods the route declares (HEAD is answered wherever GET is,
    /// without being declared).
    pub fn methods(&self) -> impl Iterator<Item = &'static Method> {
        self.operations.iter().map(|operation| &operation.method)
    }

    /// The operation answering `method`: its own, or GET's for HEAD.
    pub fn operation(&self, method: &Method) -> Option<&'static Operation> {
        let wanted = if method == Method::HEAD { &Method::GET } else { method };
        let declared = self.operations.iter().find(|operation| operation.method == *wanted);
        // A gateway's sub-request may keep any client method (Envoy forwards
        // `PROPFIND` as it is): forward authentication answers them all.
        declared.or_else(|| self.any_method.then(|| self.operations.first()).flatten())
    }

    /// Whether the route answers every method (forward authentication).
    pub fn answers_any_method(&self) -> bool {
        self.any_method
    }

    /// Whether this is one of the verification endpoints, the hot path
    /// (their request lines are logged at `debug`).
    pub fn is_verification(&self) -> bool {
        self.tag == Tag::Verification
    }
}

/// A table entry's handler: `authenticated!(Permission, f)` for an
/// `async fn f(Authenticated<'_>) -> HttpResult`, run after the service
/// token is checked and its role found to have the
/// [`keys_core::Permission`] named: the one place an operation's
/// permission is stated.
macro_rules! authenticated {
    ($permission:ident, $handler:path) => {
        $crate::routing::Handler::ServiceToken(keys_core::Permission::$permission, |call| Box::pin($handler(call)))
    };
}
pub(crate) use authenticated;

/// A table entry's handler: `public!(f)` for an
/// `async fn f(Public<'_>) -> HttpResult`, run without authentication.
macro_rules! public {
    ($handler:path) => {
        $crate::routing::Handler::Public(|call| Box::pin($handler(call)))
    };
}
pub(crate) use public;

/// A table entry's handler: `signed!(f)` for an
/// `async fn f(Signed<'_>) -> HttpResult`, which checks the signature of
/// the body itself.
macro_rules! signed {
    ($handler:path) => {
        $crate::routing::Handler::Signed(|call| Box::pin($handler(call)))
    };
}
pub(crate) use signed;

/// The answer every operation on a keyed resource may give.
pub(crate) const NOT_FOUND: (u16, Payload) = (404, Payload::Error);
/// The answer of an operation a domain rule can refuse.
pub(crate) const BAD_REQUEST: (u16, Payload) = (400, Payload::Error);
/// The answer of an operation refused because what it would store exists.
pub(crate) const CONFLICT: (u16, Payload) = (409, Payload::Error);

/// Building an operation: a constructor for each common shape (list,
/// create, get, update, delete) or [`Operation::new`], then what differs
/// (a `const` builder, so the table stays a `static`).
impl Operation {
    pub(crate) const fn new(
        method: Method,
        operation_id: &'static str,
        summary: &'static str,
        handler: Handler,
        success: (u16, Payload),
    ) -> Self {
        Self {
            method,
            operation_id,
            summary,
            description: "",
            handler,
            query: Query::None,
            body: Body::None,
            success,
            refusals: &[],
            hands_out_secret: false,
            body_limit: None,
        }
    }

    /// `GET` a page of `item`s below a resource found by the path (404).
    pub(crate) const fn list(id: &'static str, summary: &'static str, handler: Handler, item: SchemaOf) -> Self {
        Self::new(Method::GET, id, summary, handler, (200, Payload::List(item)))
            .query(Query::List)
            .refuses(&[NOT_FOUND])
    }

    /// `GET` the `item` the path names (404).
    pub(crate) const fn get(id: &'static str, summary: &'static str, handler: Handler, item: SchemaOf) -> Self {
        Self::new(Method::GET, id, summary, handler, (200, Payload::Json(item))).refuses(&[NOT_FOUND])
    }

    /// `POST` below a resource found by the path (404), answering 201 with
    /// the `item` made.
    pub(crate) const fn post(id: &'static str, summary: &'static str, handler: Handler, item: SchemaOf) -> Self {
        Self::new(Method::POST, id, summary, handler, (201, Payload::Json(item))).refuses(&[NOT_FOUND])
    }

    /// `PATCH` the resource the path names (404), answering 202 with it.
    pub(crate) const fn patch(id: &'static str, summary: &'static str, handler: Handler, item: SchemaOf) -> Self {
        Self::new(Method::PATCH, id, summary, handler, (202, Payload::Json(item))).refuses(&[NOT_FOUND])
    }

    /// `POST` an action that stores nothing new, answering 200 with `item`.
    pub(crate) const fn post_answering(
        id: &'static str,
        summary: &'static str,
        handler: Handler,
        item: SchemaOf,
    ) -> Self {
        Self::new(Method::POST, id, summary, handler, (200, Payload::Json(item)))
    }

    /// `PATCH` the resource the path names (404), answering 200 with it (the
    /// routes of dialect 1's SuprSend pages answer 202: [`Operation::patch`]).
    pub(crate) const fn patch_answering(
        id: &'static str,
        summary: &'static str,
        handler: Handler,
        item: SchemaOf,
    ) -> Self {
        Self::new(Method::PATCH, id, summary, handler, (200, Payload::Json(item))).refuses(&[NOT_FOUND])
    }

    /// `PUT` the resource the path names, whole (404 for what it lives
    /// under), answering 200 with it.
    pub(crate) const fn put(id: &'static str, summary: &'static str, handler: Handler, item: SchemaOf) -> Self {
        Self::new(Method::PUT, id, summary, handler, (200, Payload::Json(item))).refuses(&[NOT_FOUND])
    }

    /// `DELETE` the resource the path names (404), answering 204.
    pub(crate) const fn delete(id: &'static str, summary: &'static str, handler: Handler) -> Self {
        Self::new(Method::DELETE, id, summary, handler, (204, Payload::Empty)).refuses(&[NOT_FOUND])
    }

    pub(crate) const fn describe(self, description: &'static str) -> Self {
        let mut operation = self;
        operation.description = description;
        operation
    }

    pub(crate) const fn query(self, query: Query) -> Self {
        let mut operation = self;
        operation.query = query;
        operation
    }

    pub(crate) const fn body(self, body: Body) -> Self {
        let mut operation = self;
        operation.body = body;
        operation
    }

    pub(crate) const fn refuses(self, refusals: &'static [(u16, Payload)]) -> Self {
        let mut operation = self;
        operation.refusals = refusals;
        operation
    }

    /// Takes bodies up to `bytes` (more than the server's limit; a server
    /// configured with a larger limit keeps its own).
    pub(crate) const fn takes_bodies_up_to(self, bytes: usize) -> Self {
        let mut operation = self;
        operation.body_limit = Some(bytes);
        operation
    }

    /// The most bytes of body this operation reads under `server_limit`.
    pub(crate) fn body_limit(&self, server_limit: usize) -> usize {
        self.body_limit.map_or(server_limit, |limit| limit.max(server_limit))
    }

    /// A success carries a secret or a private key, shown this once.
    pub(crate) const fn hands_out_secret(self) -> Self {
        let mut operation = self;
        operation.hands_out_secret = true;
        operation
    }
}

//! The route table: every route of the server, declared once.
//!
//! A [`Route`] is one value, as in Vault's `framework.Path`: its path
//! template, its dialect (which decides the error body and whether
//! `Authorization: Bearer` is accepted), its OpenAPI tag, and one
//! [`Operation`] per method with the handler, how it authenticates, what it
//! reads (query, body) and what it answers (status → body). The router
//! ([`crate::router`]) resolves paths against [`ROUTES`], the dispatcher
//! (`handlers::dispatch`) runs the operation's handler, the metrics label
//! requests with the template, and `/openapi.json` ([`crate::openapi`]) is
//! generated from the same values. Adding a route is one entry here plus its
//! handler function; nothing else lists routes.
//!
//! **Why a function pointer returning a boxed future.** Each operation holds
//! its handler as a non-capturing closure coerced to a function pointer
//! (`fn(Authenticated<'_>) -> HandlerFuture<'_>`) that binds the path
//! parameters and calls the handler function. The alternative, an enum of
//! handlers matched in one place, would make adding a route three edits (the
//! entry, a variant, an arm) and would let an entry and its arm disagree.
//! The price of the pointer is one heap allocation per request for the
//! handler's future. In exchange the router no longer copies path
//! parameters into a `Vec<String>` (they borrow the request's path), so a
//! route with parameters allocates less than before; the verification
//! routes, which have none, pay the one allocation, which measured
//! in-process verification of an API key (about 2.5 µs a request) does not
//! show. The dispatcher's own future also no longer has the size of the
//! largest handler's.
//!
//! How an operation authenticates follows from its handler's kind: a
//! [`Handler::Public`] gets no caller, a [`Handler::ServiceToken`] gets the
//! authenticated [`Caller`](crate::handlers) and cannot run without it.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{Method, Response};
use http_body_util::Full;

use crate::dto::{
    ApiKeyDto, CreateKey, CreateOrganisationKey, CreateWorkspace, JwkSetDoc, NoFields, OrganisationKeyDto,
    OrganisationKeyList, PatchPublicKey, PublicKeyDto, RollSigningKey, SigningKeyDto, StatusDoc, VerifyApiKeyRequest,
    VerifyJwtRequest, VerifyPublicKeyRequest, WorkspaceDto,
};
use crate::error::{ApiError, Dialect};
use crate::handlers::verification::{ApiKeyVerdict, JwtVerdict, PublicKeyVerdict};
use crate::handlers::{
    api_keys, forward_auth, ops, organisation_keys, public_keys, signing_keys, verification, workspaces, Authenticated,
    Public,
};
use crate::schema::{schema, SchemaOf};

/// What a handler answers.
pub(crate) type HandlerResult = Result<Response<Full<Bytes>>, ApiError>;

/// The future of one handler call, borrowing the request for `'a`.
pub(crate) type HandlerFuture<'a> = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'a>>;

/// The handler of an operation, and so how it authenticates.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    /// No authentication; the body is not read.
    Public(for<'a> fn(Public<'a>) -> HandlerFuture<'a>),
    /// `Authorization: ServiceToken <token>` (also `Bearer <token>` on
    /// dialect-2 routes); the body is read for POST, PATCH and PUT.
    ServiceToken(for<'a> fn(Authenticated<'a>) -> HandlerFuture<'a>),
}

/// How an operation authenticates, as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    ServiceToken,
}

/// The OpenAPI tag of a route: the group it is listed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Operations,
    Workspaces,
    ApiKeys,
    PublicKeys,
    SigningKeys,
    Verification,
    SigningKeysVersori,
}

impl Tag {
    /// Every tag, in the order the document lists them.
    pub const ALL: [Tag; 7] = [
        Self::Operations,
        Self::Workspaces,
        Self::ApiKeys,
        Self::PublicKeys,
        Self::SigningKeys,
        Self::Verification,
        Self::SigningKeysVersori,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Operations => "operations",
            Self::Workspaces => "workspaces",
            Self::ApiKeys => "api-keys",
            Self::PublicKeys => "public-keys",
            Self::SigningKeys => "signing-keys",
            Self::Verification => "verification",
            Self::SigningKeysVersori => "signing-keys-versori",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Operations => "Liveness, readiness, metrics and this document.",
            Self::Workspaces => "Dialect 1 (SuprSend-compatible): workspaces of the token's organisation.",
            Self::ApiKeys => "Dialect 1: server-side API keys (`SS.…`), shown once at creation.",
            Self::PublicKeys => "Dialect 1: publishable client keys (`SS.PUBK.…`).",
            Self::SigningKeys => "Dialect 1: workspace ES256 signing keys and their public JWKS.",
            Self::Verification => "Verification: 200 with `valid` for any well-formed request.",
            Self::SigningKeysVersori => "Dialect 2 (Versori-compatible): organisation RS256 signing keys.",
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
    /// The answers the handler itself gives; the generator adds the ones
    /// every operation of its kind can give (401, 413, 415, 500, …).
    pub(crate) responses: &'static [(u16, Payload)],
    /// Whether a success carries a secret or a private key (shown once):
    /// the response then has `Cache-Control: no-store` (SPEC section 10).
    pub(crate) hands_out_secret: bool,
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
            Handler::ServiceToken(_) => Auth::ServiceToken,
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
        declared.or_else(|| (self.pattern == FORWARD_AUTH_PATTERN).then(|| self.operations.first()).flatten())
    }

    /// Whether this is one of the verification endpoints, the hot path
    /// (their request lines are logged at `debug`).
    pub fn is_verification(&self) -> bool {
        self.tag == Tag::Verification
    }
}

// The closures below bind path parameters (by position in the template)
// and call the handler function; they capture nothing, so each coerces to
// the `fn` pointer of its `Handler` variant.

const NOT_FOUND: (u16, Payload) = (404, Payload::Error);

/// The forward-authentication route, which answers every method.
pub(crate) const FORWARD_AUTH_PATTERN: &str = "/v1/auth/forward";

/// Forward authentication answers every method the same way (a gateway's
/// sub-request keeps the client's method); it authenticates the gateway by
/// its own `X-Keysd-Service-Token`, so it is a public handler here.
const fn forward_auth_operation(method: Method, operation_id: &'static str) -> Operation {
    Operation {
        method,
        operation_id,
        summary: "Forward authentication for gateways",
        description: "For nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz`. The gateway sends \
                      `X-Keysd-Service-Token`; the client's `Authorization` (`Bearer SS.…`, `SS.…`, \
                      `SS.PUBK.…` with `x-ss-signature`, `JWT …`) or `X-Api-Key` says what to verify. 200 with the \
                      identity in `X-Keysd-*` headers; 401 with `X-Keysd-Reason` and `WWW-Authenticate`; 403 for \
                      `insufficient_scope`. The body is ignored; any path below this one is accepted too.",
        handler: Handler::Public(|call| Box::pin(forward_auth::forward(call.state, &call.head.headers))),
        query: Query::None,
        body: Body::None,
        responses: &[(200, Payload::Empty), (401, Payload::Empty), (403, Payload::Empty)],
        hands_out_secret: false,
    }
}
const BAD_REQUEST: (u16, Payload) = (400, Payload::Error);

/// Every route of the server. The router prefers literal segments over
/// parameters whatever the order here.
pub static ROUTES: &[Route] = &[
    // ------------------------------------------------------------ operations
    Route {
        pattern: "/health",
        dialect: Dialect::SuprSend,
        tag: Tag::Operations,
        operations: &[Operation {
            method: Method::GET,
            operation_id: "health",
            summary: "Liveness",
            description: "The process answers.",
            handler: Handler::Public(|_call| Box::pin(async { ops::health() })),
            query: Query::None,
            body: Body::None,
            responses: &[(200, Payload::Json(schema::<StatusDoc>()))],
            hands_out_secret: false,
        }],
    },
    Route {
        pattern: "/ready",
        dialect: Dialect::SuprSend,
        tag: Tag::Operations,
        operations: &[Operation {
            method: Method::GET,
            operation_id: "ready",
            summary: "Readiness: the store answers",
            description: "",
            handler: Handler::Public(|call| Box::pin(ops::ready(call.state))),
            query: Query::None,
            body: Body::None,
            responses: &[(200, Payload::Json(schema::<StatusDoc>())), (503, Payload::Error)],
            hands_out_secret: false,
        }],
    },
    Route {
        pattern: "/metrics",
        dialect: Dialect::SuprSend,
        tag: Tag::Operations,
        operations: &[Operation {
            method: Method::GET,
            operation_id: "metrics",
            summary: "Prometheus metrics",
            description: "Request counts and latency by route template, verification outcomes by reason.",
            handler: Handler::Public(|call| Box::pin(async move { Ok(ops::metrics(call.state)) })),
            query: Query::None,
            body: Body::None,
            responses: &[(200, Payload::PrometheusText)],
            hands_out_secret: false,
        }],
    },
    Route {
        pattern: "/openapi.json",
        dialect: Dialect::SuprSend,
        tag: Tag::Operations,
        operations: &[Operation {
            method: Method::GET,
            operation_id: "openapi",
            summary: "This document",
            description: "Its `servers` entry is the address it was fetched from.",
            handler: Handler::Public(|call| Box::pin(async move { Ok(ops::openapi(call.state, call.head)) })),
            query: Query::None,
            body: Body::None,
            responses: &[(200, Payload::AnyObject)],
            hands_out_secret: false,
        }],
    },
    // ------------------------------------------------- dialect 1: workspaces
    Route {
        pattern: "/v1/workspace/",
        dialect: Dialect::SuprSend,
        tag: Tag::Workspaces,
        operations: &[
            Operation {
                method: Method::GET,
                operation_id: "list-workspaces",
                summary: "List workspaces",
                description: "",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(workspaces::list_workspaces(call.state, call.caller, call.input))
                }),
                query: Query::Page,
                body: Body::None,
                responses: &[(200, Payload::List(schema::<WorkspaceDto>()))],
                hands_out_secret: false,
            },
            Operation {
                method: Method::POST,
                operation_id: "create-workspace",
                summary: "Create workspace",
                description: "",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(workspaces::create_workspace(call.state, call.caller, call.input))
                }),
                query: Query::None,
                body: Body::Required(schema::<CreateWorkspace>()),
                responses: &[(201, Payload::Json(schema::<WorkspaceDto>()))],
                hands_out_secret: false,
            },
        ],
    },
    Route {
        pattern: "/v1/workspace/{workspace_uid}/jwks.json",
        dialect: Dialect::SuprSend,
        tag: Tag::SigningKeys,
        operations: &[Operation {
            method: Method::GET,
            operation_id: "workspace-jwks",
            summary: "Workspace JWKS (public)",
            description: "The active signing key and the rolled ones still inside their grace, `kid` = uid.",
            handler: Handler::Public(|call| {
                Box::pin(workspaces::workspace_jwks(call.state, call.param(0), &call.head.headers))
            }),
            query: Query::None,
            body: Body::None,
            responses: &[(200, Payload::Json(schema::<JwkSetDoc>())), NOT_FOUND],
            hands_out_secret: false,
        }],
    },
    // --------------------------------------------------- dialect 1: API keys
    Route {
        pattern: "/v1/{workspace}/ws_api_key/",
        dialect: Dialect::SuprSend,
        tag: Tag::ApiKeys,
        operations: &[
            Operation {
                method: Method::GET,
                operation_id: "list-api-keys",
                summary: "List API keys",
                description: "",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(api_keys::list_api_keys(call.state, call.caller, call.param(0), call.input))
                }),
                query: Query::List,
                body: Body::None,
                responses: &[(200, Payload::List(schema::<ApiKeyDto>())), NOT_FOUND],
                hands_out_secret: false,
            },
            Operation {
                method: Method::POST,
                operation_id: "create-api-key",
                summary: "Create API key",
                description: "The response carries the secret `api_key`, shown this once.",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(api_keys::create_api_key(call.state, call.caller, call.param(0), call.input))
                }),
                query: Query::None,
                body: Body::Required(schema::<CreateKey>()),
                responses: &[(201, Payload::Json(schema::<ApiKeyDto>())), NOT_FOUND],
                hands_out_secret: true,
            },
        ],
    },
    Route {
        pattern: "/v1/{workspace}/ws_api_key/{api_key_id}/",
        dialect: Dialect::SuprSend,
        tag: Tag::ApiKeys,
        operations: &[Operation {
            method: Method::DELETE,
            operation_id: "delete-api-key",
            summary: "Delete API key",
            description: "",
            handler: Handler::ServiceToken(|call| {
                Box::pin(api_keys::delete_api_key(call.state, call.caller, call.param(0), call.param(1)))
            }),
            query: Query::None,
            body: Body::None,
            responses: &[(204, Payload::Empty), NOT_FOUND],
            hands_out_secret: false,
        }],
    },
    // ------------------------------------------------ dialect 1: public keys
    Route {
        pattern: "/v1/{workspace}/ws_public_key/",
        dialect: Dialect::SuprSend,
        tag: Tag::PublicKeys,
        operations: &[
            Operation {
                method: Method::GET,
                operation_id: "list-public-keys",
                summary: "List public keys",
                description: "",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(public_keys::list_public_keys(call.state, call.caller, call.param(0), call.input))
                }),
                query: Query::List,
                body: Body::None,
                responses: &[(200, Payload::List(schema::<PublicKeyDto>())), NOT_FOUND],
                hands_out_secret: false,
            },
            Operation {
                method: Method::POST,
                operation_id: "create-public-key",
                summary: "Create public key",
                description: "The first public key of a workspace is its default.",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(public_keys::create_public_key(call.state, call.caller, call.param(0), call.input))
                }),
                query: Query::None,
                body: Body::Required(schema::<CreateKey>()),
                responses: &[(201, Payload::Json(schema::<PublicKeyDto>())), NOT_FOUND],
                hands_out_secret: true,
            },
        ],
    },
    Route {
        pattern: "/v1/{workspace}/ws_public_key/{public_key_id}/",
        dialect: Dialect::SuprSend,
        tag: Tag::PublicKeys,
        operations: &[
            Operation {
                method: Method::PATCH,
                operation_id: "update-public-key",
                summary: "Update public key",
                description: "Any of the fields; `null` clears `description` and `allowed_domains`.",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(public_keys::patch_public_key(
                        call.state,
                        call.caller,
                        call.param(0),
                        call.param(1),
                        call.input,
                    ))
                }),
                query: Query::None,
                body: Body::Required(schema::<PatchPublicKey>()),
                responses: &[(202, Payload::Json(schema::<PublicKeyDto>())), NOT_FOUND],
                hands_out_secret: false,
            },
            Operation {
                method: Method::DELETE,
                operation_id: "delete-public-key",
                summary: "Delete public key",
                description: "Deleting the default key while other live keys exist is a 400.",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(public_keys::delete_public_key(call.state, call.caller, call.param(0), call.param(1)))
                }),
                query: Query::None,
                body: Body::None,
                responses: &[(204, Payload::Empty), BAD_REQUEST, NOT_FOUND],
                hands_out_secret: false,
            },
        ],
    },
    Route {
        pattern: "/v1/{workspace}/ws_public_key/{public_key_id}/rotate/",
        dialect: Dialect::SuprSend,
        tag: Tag::PublicKeys,
        operations: &[Operation {
            method: Method::PATCH,
            operation_id: "rotate-public-key",
            summary: "Rotate public key",
            description: "New key material for the same record; the old `api_key` stops working at once.",
            handler: Handler::ServiceToken(|call| {
                Box::pin(public_keys::rotate_public_key(
                    call.state,
                    call.caller,
                    call.param(0),
                    call.param(1),
                    call.input,
                ))
            }),
            query: Query::None,
            body: Body::Optional(schema::<NoFields>()),
            responses: &[(202, Payload::Json(schema::<PublicKeyDto>())), NOT_FOUND],
            hands_out_secret: true,
        }],
    },
    // ----------------------------------------------- dialect 1: signing keys
    Route {
        pattern: "/v1/{workspace}/ws_signing_key/",
        dialect: Dialect::SuprSend,
        tag: Tag::SigningKeys,
        operations: &[
            Operation {
                method: Method::GET,
                operation_id: "list-signing-keys",
                summary: "List signing keys",
                description: "",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(signing_keys::list_signing_keys(call.state, call.caller, call.param(0), call.input))
                }),
                query: Query::List,
                body: Body::None,
                responses: &[(200, Payload::List(schema::<SigningKeyDto>())), NOT_FOUND],
                hands_out_secret: false,
            },
            Operation {
                method: Method::POST,
                operation_id: "create-workspace-signing-key",
                summary: "Create workspace signing key",
                description: "Only one active signing key is allowed per workspace (400 \"only 1 active signing key \
                              is allowed\"); use roll to replace it. The private key is in the response, this once.",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(signing_keys::create_signing_key(call.state, call.caller, call.param(0), call.input))
                }),
                query: Query::None,
                body: Body::Optional(schema::<NoFields>()),
                responses: &[(201, Payload::Json(schema::<SigningKeyDto>())), NOT_FOUND],
                hands_out_secret: true,
            },
        ],
    },
    Route {
        pattern: "/v1/{workspace}/ws_signing_key/{signing_key_uid}/",
        dialect: Dialect::SuprSend,
        tag: Tag::SigningKeys,
        operations: &[Operation {
            method: Method::DELETE,
            operation_id: "delete-workspace-signing-key",
            summary: "Delete workspace signing key",
            description: "",
            handler: Handler::ServiceToken(|call| {
                Box::pin(signing_keys::delete_signing_key(call.state, call.caller, call.param(0), call.param(1)))
            }),
            query: Query::None,
            body: Body::None,
            responses: &[(204, Payload::Empty), NOT_FOUND],
            hands_out_secret: false,
        }],
    },
    Route {
        pattern: "/v1/{workspace}/ws_signing_key/{signing_key_uid}/roll/",
        dialect: Dialect::SuprSend,
        tag: Tag::SigningKeys,
        operations: &[Operation {
            method: Method::POST,
            operation_id: "roll-workspace-signing-key",
            summary: "Roll workspace signing key",
            description: "The active key becomes `rolled` and keeps verifying for `grace_period_seconds`; the new \
                          active key is returned with its private key, this once.",
            handler: Handler::ServiceToken(|call| {
                Box::pin(signing_keys::roll_signing_key(
                    call.state,
                    call.caller,
                    call.param(0),
                    call.param(1),
                    call.input,
                ))
            }),
            query: Query::None,
            body: Body::Optional(schema::<RollSigningKey>()),
            responses: &[(201, Payload::Json(schema::<SigningKeyDto>())), NOT_FOUND],
            hands_out_secret: true,
        }],
    },
    // ---------------------------------------------------------- verification
    Route {
        pattern: FORWARD_AUTH_PATTERN,
        dialect: Dialect::SuprSend,
        tag: Tag::Verification,
        operations: &[
            forward_auth_operation(Method::GET, "forward-auth-get"),
            forward_auth_operation(Method::POST, "forward-auth-post"),
            forward_auth_operation(Method::PUT, "forward-auth-put"),
            forward_auth_operation(Method::PATCH, "forward-auth-patch"),
            forward_auth_operation(Method::DELETE, "forward-auth-delete"),
            forward_auth_operation(Method::OPTIONS, "forward-auth-options"),
        ],
    },
    Route {
        pattern: "/v1/verify/api_key/",
        dialect: Dialect::SuprSend,
        tag: Tag::Verification,
        operations: &[Operation {
            method: Method::POST,
            operation_id: "verify-api-key",
            summary: "Verify an API key",
            description: "200 for any JSON object with `api_key`; `valid:false` with a `reason` when it does not \
                          verify.",
            handler: Handler::ServiceToken(|call| Box::pin(verification::api_key(call.state, call.caller, call.input))),
            query: Query::None,
            body: Body::Required(schema::<VerifyApiKeyRequest>()),
            responses: &[(200, Payload::Json(schema::<ApiKeyVerdict<'static>>()))],
            hands_out_secret: false,
        }],
    },
    Route {
        pattern: "/v1/verify/public_key/",
        dialect: Dialect::SuprSend,
        tag: Tag::Verification,
        operations: &[Operation {
            method: Method::POST,
            operation_id: "verify-public-key",
            summary: "Verify a public key (origin, secure mode)",
            description: "200 for any JSON object with `api_key`; `valid:false` with a `reason` when it does not \
                          verify.",
            handler: Handler::ServiceToken(|call| {
                Box::pin(verification::public_key(call.state, call.caller, call.input))
            }),
            query: Query::None,
            body: Body::Required(schema::<VerifyPublicKeyRequest>()),
            responses: &[(200, Payload::Json(schema::<PublicKeyVerdict>()))],
            hands_out_secret: false,
        }],
    },
    Route {
        pattern: "/v1/verify/jwt/",
        dialect: Dialect::SuprSend,
        tag: Tag::Verification,
        operations: &[Operation {
            method: Method::POST,
            operation_id: "verify-jwt",
            summary: "Verify a Versori-style RS256 JWT",
            description: "200 for any JSON object with `token`; `valid:false` with a `reason` when it does not \
                          verify.",
            handler: Handler::ServiceToken(|call| Box::pin(verification::jwt(call.state, call.caller, call.input))),
            query: Query::None,
            body: Body::Required(schema::<VerifyJwtRequest>()),
            responses: &[(200, Payload::Json(schema::<JwtVerdict>()))],
            hands_out_secret: false,
        }],
    },
    // ------------------------------------------ dialect 2: organisation keys
    Route {
        pattern: "/api/organisations/v1/organisations/{organisation_id}/keys",
        dialect: Dialect::Versori,
        tag: Tag::SigningKeysVersori,
        operations: &[
            Operation {
                method: Method::GET,
                operation_id: "ListSigningKeys",
                summary: "List signing keys",
                description: "",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(organisation_keys::list_keys(call.state, call.caller, call.param(0)))
                }),
                query: Query::None,
                body: Body::None,
                responses: &[(200, Payload::Json(schema::<OrganisationKeyList>())), NOT_FOUND],
                hands_out_secret: false,
            },
            Operation {
                method: Method::POST,
                operation_id: "CreateSigningKey",
                summary: "Create signing key",
                description: "Answers 201 with the key and its `privateKey` (shown this once). Documented deviation: \
                              Versori's document says 204, which cannot carry the body.",
                handler: Handler::ServiceToken(|call| {
                    Box::pin(organisation_keys::create_key(call.state, call.caller, call.param(0), call.input))
                }),
                query: Query::None,
                body: Body::Required(schema::<CreateOrganisationKey>()),
                responses: &[(201, Payload::Json(schema::<OrganisationKeyDto>())), NOT_FOUND],
                hands_out_secret: true,
            },
        ],
    },
    Route {
        pattern: "/api/organisations/v1/organisations/{organisation_id}/keys/{key_id}",
        dialect: Dialect::Versori,
        tag: Tag::SigningKeysVersori,
        operations: &[Operation {
            method: Method::DELETE,
            operation_id: "DeleteSigningKey",
            summary: "Delete signing key",
            description: "Every JWT the key signed stops verifying.",
            handler: Handler::ServiceToken(|call| {
                Box::pin(organisation_keys::delete_key(call.state, call.caller, call.param(0), call.param(1)))
            }),
            query: Query::None,
            body: Body::None,
            responses: &[(204, Payload::Empty), NOT_FOUND],
            hands_out_secret: false,
        }],
    },
    Route {
        pattern: "/api/organisations/v1/organisations/{organisation_id}/jwks.json",
        dialect: Dialect::Versori,
        tag: Tag::SigningKeysVersori,
        operations: &[Operation {
            method: Method::GET,
            operation_id: "OrganisationJwks",
            summary: "Organisation JWKS (public)",
            description: "The organisation's live keys as RS256 JWKs, `kid` = key id.",
            handler: Handler::Public(|call| {
                Box::pin(organisation_keys::organisation_jwks(call.state, call.param(0), &call.head.headers))
            }),
            query: Query::None,
            body: Body::None,
            responses: &[(200, Payload::Json(schema::<JwkSetDoc>())), NOT_FOUND],
            hands_out_secret: false,
        }],
    },
    Route {
        pattern: "/api/organisations/v1/keys/{key_id}",
        dialect: Dialect::Versori,
        tag: Tag::SigningKeysVersori,
        operations: &[Operation {
            method: Method::GET,
            operation_id: "GetPublicKey",
            summary: "Get a public key (public, for verifiers)",
            description: "",
            handler: Handler::Public(|call| Box::pin(organisation_keys::public_key(call.state, call.param(0)))),
            query: Query::None,
            body: Body::None,
            responses: &[(200, Payload::Json(schema::<OrganisationKeyDto>())), NOT_FOUND],
            hands_out_secret: false,
        }],
    },
];

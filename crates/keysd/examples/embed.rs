//! Embedding keysd: a small HTTP service of its own that verifies API keys
//! and Versori-style JWTs in process, through keys-service, on the same
//! database as a running `keysd serve`. No call leaves the process; a key
//! revoked, disabled or rolled out through keysd is refused here within a
//! second (on PostgreSQL the store's change feed tells this process; on
//! SQLite its cache entries last at most a second).
//!
//! ```sh
//! cargo run -p keysd --example embed -- postgres://postgres@127.0.0.1/test default 127.0.0.1:9000
//! curl -H "Authorization: Bearer SS.…" http://127.0.0.1:9000/whoami
//! ```
//!
//! Arguments: the database URL, the organisation (id or name) whose
//! credentials it accepts, and the address to listen on (default
//! `127.0.0.1:0`). It prints `embed listening on http://ADDR`. `GET
//! /whoami` with `Authorization: Bearer <API key or JWT>` answers 200 with
//! who the credential is, or 401 with the reason keysd gives.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use keys_core::{Name, Quotas, Role, TokenWorkspaces};
use keys_service::{Caller, Service, ServiceConfig};
use keys_store::CacheConfig;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(url), Some(organisation)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: embed DATABASE_URL ORGANISATION [LISTEN]");
    };
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());

    // The store as `keysd serve` opens it: cached lookups, invalidated by
    // every change any process makes.
    let store = keys_store::open_cached(&url, CacheConfig::default(), Quotas::default()).await?;
    let service = Service::new(store, ServiceConfig::default());
    let Some(organisation) = service.find_organisation(&organisation).await? else {
        anyhow::bail!("organisation '{organisation}' not found");
    };
    // This process verifies and does nothing else: a `verify` caller of the
    // organisation, made in process (no service token to keep).
    let caller = Caller::embedded(organisation.id, Role::Verify, TokenWorkspaces::all(), Name::parse("embed")?)?;
    let verifier = Arc::new(Verifier { service, caller });

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("embed listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let verifier = Arc::clone(&verifier);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let verifier = Arc::clone(&verifier);
                async move { Ok::<_, Infallible>(verifier.answer(request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(error) = served.await {
                eprintln!("embed: connection error: {error}");
            }
        });
    }
}

/// The service and the caller every verification runs as.
struct Verifier {
    service: Service,
    caller: Caller,
}

impl Verifier {
    async fn answer<B>(&self, request: Request<B>) -> Response<Full<Bytes>> {
        if request.uri().path() != "/whoami" {
            return reply(StatusCode::NOT_FOUND, json!({"reason": "not_found"}));
        }
        let presented = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(presented) = presented else {
            return reply(StatusCode::UNAUTHORIZED, json!({"reason": "missing_credential"}));
        };
        // A JWT's header is base64url JSON: it starts with `eyJ`.
        let verdict = if presented.starts_with("eyJ") {
            self.service.verify_jwt(&self.caller, presented).await.map(|checked| {
                checked.map(|jwt| json!({"kind": "jwt", "key_id": jwt.key_id.to_string(), "sub": jwt.sub}))
            })
        } else {
            self.service.verify_api_key(&self.caller, presented).await.map(|checked| {
                checked.map(|verified| {
                    json!({
                        "kind": "api_key",
                        "key_id": verified.key().id.to_string(),
                        "name": verified.key().name.as_str(),
                        "workspace": verified.workspace().slug.as_str(),
                    })
                })
            })
        };
        match verdict {
            Ok(Ok(who)) => reply(StatusCode::OK, who),
            Ok(Err(refusal)) => reply(StatusCode::UNAUTHORIZED, json!({"reason": refusal.reason()})),
            Err(error) => {
                eprintln!("embed: store error: {error}");
                reply(StatusCode::SERVICE_UNAVAILABLE, json!({"reason": "unavailable"}))
            }
        }
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

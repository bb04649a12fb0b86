//! Workspace key prefixes and leaked keys (docs/API.md, Workspaces and
//! Leaked keys), without a socket and on both stores: `PATCH
//! /v1/workspace/{slug}/`, the `<prefix>_…` keys a workspace with a prefix
//! makes, `POST /v1/leak_report/`, GitHub's signed `POST
//! /v1/secret_scanning/github/`, and the per-client budget both leak
//! routes share.
//!
//! Leak routes answer no sooner than 250 ms; nothing here times them (a
//! duration assertion would be a flaky one), they only make these tests
//! slower.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_core::{Mode, OrganisationId};
use keys_crypto::github::GithubTestSigner;
use keys_crypto::ApiKeySecret;
use keys_http::rate_limit::ClientAddr;
use keys_http::{App, AppConfig, GithubKeys};
use keys_store::Store;
use keys_testkit::{Kind, Tenant, TestDb};
use rand_core::OsRng;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::support::openapi_check;

const LEAK_REPORT: &str = "/v1/leak_report/";
const GITHUB: &str = "/v1/secret_scanning/github/";
const VERIFY: &str = "/v1/verify/api_key/";
const STAGING: &str = "/v1/workspace/staging/";
/// Where GitHub's test alerts say they found their keys.
const LEAKED_AT: &str = "https://github.com/o/r/blob/main/.env";
/// The identifier the test key file lists its one key under.
const KEY_IDENTIFIER: &str = "test-key-1";

struct Harness {
    app: App,
    /// When set, every response, checked against `/openapi.json` when the
    /// test ends ([`openapi_document_tells_the_answers_of_these_routes`]).
    responses: Option<openapi_check::Recorder>,
    store: Arc<dyn Store>,
    token: String,
    /// The database, dropped with the application.
    _db: TestDb,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

/// The application on `db` behind the verification cache, with `config`,
/// bootstrapped with the organisation `default` (workspaces `staging` and
/// `production`) and its admin token.
async fn harness_with(db: TestDb, config: AppConfig) -> Harness {
    let store = db.cached_store(keys_store::CacheConfig::default()).await;
    let app = App::new(Arc::clone(&store), config);
    let workspaces = [("staging", Some(Mode::Sandbox)), ("production", Some(Mode::Production))];
    let tenant = Tenant::new("default", &workspaces, "test", OffsetDateTime::now_utc(), &mut OsRng);
    let (_, token) = tenant.bootstrap(&*store).await;
    Harness { app, responses: None, store, token, _db: db }
}

async fn harness(db: TestDb) -> Harness {
    harness_with(db, AppConfig::default()).await
}

/// GitHub's key file for `signer` (under [`KEY_IDENTIFIER`]) written into
/// the test's directory, and loaded as `--github-secret-scanning-keys`
/// loads it.
fn github_keys(db: &TestDb, signer: &GithubTestSigner) -> GithubKeys {
    let file = db.dir().join("github-secret-scanning-keys.json");
    std::fs::write(&file, signer.key_set_json(KEY_IDENTIFIER)).expect("write the key file");
    GithubKeys::load(&file).expect("the key file loads")
}

/// `response` read whole.
async fn reply_of(response: http::Response<Full<Bytes>>) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, body, text }
}

impl Harness {
    async fn send(&self, request: Request<Full<Bytes>>) -> Reply {
        let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
        let reply = reply_of(self.app.handle(request).await).await;
        let content_type =
            reply.headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
        if let Some(responses) = &self.responses {
            responses.record(openapi_check::Observation {
                method,
                path,
                status: reply.status.as_u16(),
                content_type,
                body: reply.text.clone(),
            });
        }
        reply
    }

    /// A request with `token` and a JSON body, from `client` when given
    /// (the address the accept loop would have put in it).
    async fn from(&self, client: Option<&str>, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut builder =
            Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("ServiceToken {token}"));
        let body = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let mut request = builder.body(Full::new(body)).expect("request");
        if let Some(client) = client {
            request.extensions_mut().insert(ClientAddr(client.parse::<IpAddr>().expect("ip")));
        }
        self.send(request).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.from(None, &self.token, method, path, body).await
    }

    async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.from(None, token, method, path, body).await
    }

    /// GitHub's alert: `body` as it is, no token, JSON, with each header
    /// of `headers`, from `client` when given.
    async fn alert(&self, client: Option<&str>, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        let mut builder =
            Request::builder().method(Method::POST).uri(GITHUB).header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(Full::new(Bytes::copy_from_slice(body))).expect("request");
        if let Some(client) = client {
            request.extensions_mut().insert(ClientAddr(client.parse::<IpAddr>().expect("ip")));
        }
        self.send(request).await
    }

    /// `body` signed by `signer` under [`KEY_IDENTIFIER`], as GitHub sends it.
    async fn signed_alert(&self, client: Option<&str>, signer: &GithubTestSigner, body: &[u8]) -> Reply {
        let signature = signer.sign(body);
        self.alert(
            client,
            body,
            &[("Github-Public-Key-Identifier", KEY_IDENTIFIER), ("Github-Public-Key-Signature", &signature)],
        )
        .await
    }

    /// A second organisation (workspace `staging`) with its own admin token.
    async fn other_organisation(&self, name: &str) -> (OrganisationId, String) {
        let tenant = Tenant::new(name, &[("staging", None)], "other", OffsetDateTime::now_utc(), &mut OsRng);
        tenant.create_in(&*self.store).await
    }

    /// A token of `role` made through the API by the bootstrap token.
    async fn token_of_role(&self, role: &str) -> String {
        let reply = self.call(Method::POST, "/v1/service_token/", Some(json!({"name": role, "role": role}))).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.body["token"].as_str().expect("token").to_owned()
    }

    /// A new API key named `name` in `workspace`: (its record, its secret).
    async fn api_key(&self, workspace: &str, name: &str) -> (Value, String) {
        let path = format!("/v1/{workspace}/ws_api_key/");
        let created = self.call(Method::POST, &path, Some(json!({"name": name}))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let secret = created.body["api_key"].as_str().expect("secret").to_owned();
        (created.body, secret)
    }

    /// Rolls the key `id` of `staging` with an hour's grace: (the new
    /// record, its secret).
    async fn roll(&self, id: &str) -> (Value, String) {
        let path = format!("/v1/staging/ws_api_key/{id}/roll/");
        let rolled = self.call(Method::POST, &path, Some(json!({"grace_period_seconds": 3600}))).await;
        assert_eq!(rolled.status, StatusCode::CREATED, "{}", rolled.text);
        let secret = rolled.body["api_key"].as_str().expect("secret").to_owned();
        (rolled.body, secret)
    }

    /// The `status` of the key `id` of `staging`.
    async fn status_of(&self, id: &str) -> String {
        let reply = self.call(Method::GET, &format!("/v1/staging/ws_api_key/{id}/"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body["status"].as_str().expect("status").to_owned()
    }

    /// `valid`, or the reason verification refuses `secret`.
    async fn verdict(&self, secret: &str) -> String {
        let reply = self.call(Method::POST, VERIFY, Some(json!({"api_key": secret}))).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        if reply.body["valid"] == true {
            return "valid".to_owned();
        }
        reply.body["reason"].as_str().expect("reason").to_owned()
    }

    /// `POST /v1/leak_report/` with `body`, as the bootstrap token.
    async fn report(&self, body: Value) -> Reply {
        self.call(Method::POST, LEAK_REPORT, Some(body)).await
    }

    /// The label of a report of `text` from `source`; the answer is a 200.
    async fn label(&self, text: &str, source: Option<&str>) -> String {
        let mut body = json!({"api_key": text});
        if let Some(source) = source {
            body["source"] = json!(source);
        }
        let reply = self.report(body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(keys_of(&reply.body), ["label"], "{}", reply.text);
        reply.body["label"].as_str().expect("label").to_owned()
    }

    /// `PATCH /v1/workspace/staging/` with `patch`.
    async fn patch_staging(&self, patch: Value) -> Reply {
        self.call(Method::PATCH, STAGING, Some(patch)).await
    }

    /// The workspace `slug` as the list shows it.
    async fn listed_workspace(&self, slug: &str) -> Value {
        let list = self.call(Method::GET, "/v1/workspace/", None).await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let results = list.body["results"].as_array().expect("results");
        results.iter().find(|workspace| workspace["slug"] == slug).cloned().unwrap_or_else(|| panic!("{slug} listed"))
    }

    /// The whole audit trail the bootstrap token sees (newest first), and
    /// its pages' text.
    async fn audit(&self) -> (Vec<Value>, String) {
        let (mut events, mut text, mut next) = (Vec::new(), String::new(), String::new());
        for _ in 0..100 {
            let page = self.call(Method::GET, &format!("/v1/audit_event/?limit=100{next}"), None).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text);
            events.extend(page.body["results"].as_array().expect("results").iter().cloned());
            text.push_str(&page.text);
            match page.body["meta"]["next_cursor"].as_str() {
                Some(cursor) => next = format!("&cursor={cursor}"),
                None => return (events, text),
            }
        }
        panic!("the cursor never ends");
    }

    /// The audit events with `action`, newest first.
    async fn audited(&self, action: &str) -> Vec<Value> {
        self.audit().await.0.into_iter().filter(|event| event["action"] == action).collect()
    }
}

fn keys_of(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// The SuprSend dialect's 400, with `message` among its problems.
fn validation(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
    assert_eq!(reply.body["code"], 400, "{}", reply.text);
    assert_eq!(reply.body["error_code"], "error");
    assert_eq!(reply.body["type"], "ValidationError");
    let detail = reply.body["detail"].as_array().expect("detail array");
    assert!(
        detail.iter().any(|item| item.as_str().is_some_and(|item| item.contains(message))),
        "{message}: {}",
        reply.text
    );
    assert_eq!(reply.body["message"], serde_json::to_string(detail).expect("json"));
}

fn not_found(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert_eq!(
        reply.body,
        json!({"code": 404, "error_code": "not_found", "type": "NotFound", "message": message, "detail": message})
    );
}

fn permission_denied(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
    assert_eq!(reply.body["code"], 403);
    assert_eq!(reply.body["error_code"], "permission_denied");
    assert_eq!(reply.body["type"], "PermissionDenied");
}

/// A 401 of a signed route: the seed's shape, saying why in its message.
fn bad_signature(reply: &Reply, case: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{case}: {}", reply.text);
    assert_eq!(reply.body["code"], 401, "{case}");
    assert_eq!(reply.body["error_code"], "authentication_failed", "{case}");
    assert_eq!(reply.body["type"], "AuthenticationFailed", "{case}");
    assert!(
        reply.body["message"].as_str().is_some_and(|message| message.contains("signature")),
        "{case}: {}",
        reply.text
    );
}

/// `secret` with the character at `index` replaced by another of the same
/// class (a lowercase letter by another, anything else by `A` or `B`), so
/// that the text keeps the shape of a keysd key.
fn with_one_character_changed(secret: &str, index: usize) -> String {
    let mut bytes = secret.as_bytes().to_vec();
    bytes[index] = match bytes[index] {
        b'z' => b'y',
        lower @ b'a'..=b'y' => lower + 1,
        b'A' => b'B',
        _ => b'A',
    };
    String::from_utf8(bytes).expect("ascii")
}

/// A well-formed `acme_live_…` key that no workspace made.
fn unmade_prefixed() -> String {
    let prefix = keys_core::ApiKeyPrefix::parse("acme_live").expect("prefix");
    ApiKeySecret::generate_for(Some(&prefix), &mut OsRng).expose().to_owned()
}

fn is_base64url(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

// ------------------------------------------------------------------ workspaces

keys_testkit::on_both_backends! {
    workspace_patch_changes_each_field_and_refuses_what_it_must => workspace_patch_changes_each_field_and_refuses_what_it_must_sqlite, workspace_patch_changes_each_field_and_refuses_what_it_must_postgres;
    prefixed_keys_are_made_verified_rolled_and_checksummed => prefixed_keys_are_made_verified_rolled_and_checksummed_sqlite, prefixed_keys_are_made_verified_rolled_and_checksummed_postgres;
    leak_reports_label_contain_and_audit => leak_reports_label_contain_and_audit_sqlite, leak_reports_label_contain_and_audit_postgres;
    github_alerts_are_checked_before_anything_else => github_alerts_are_checked_before_anything_else_sqlite, github_alerts_are_checked_before_anything_else_postgres;
    both_leak_routes_spend_one_budget_per_client => both_leak_routes_spend_one_budget_per_client_sqlite, both_leak_routes_spend_one_budget_per_client_postgres;
}

/// Each field changes and reads back in the list, `null` clears the
/// description and the prefix, each effective patch is one
/// `workspace.updated` event; bad bodies are 400s, a manage token a 403,
/// an unknown slug a 404, and none of them change anything.
async fn workspace_patch_changes_each_field_and_refuses_what_it_must(db: TestDb) {
    let harness = harness(db).await;
    let original = harness.listed_workspace("staging").await;
    assert_eq!((&original["api_key_prefix"], &original["on_leak"]), (&Value::Null, &json!("disable")), "{original}");
    assert_eq!(original["description"], Value::Null);
    let production = harness.listed_workspace("production").await;

    let patches = [
        json!({"name": "Staging Two"}),
        json!({"description": "where tests run"}),
        json!({"api_key_prefix": "acme_test"}),
        json!({"on_leak": "notify"}),
        // The bounds of the prefix's first part: 2 and 16 characters.
        json!({"api_key_prefix": "a1_live"}),
        json!({"api_key_prefix": "abcdefghijklmnop_live"}),
        json!({"description": null, "api_key_prefix": null}),
        json!({"name": "Staging", "description": "back", "api_key_prefix": "acme_live", "on_leak": "disable"}),
    ];
    let mut expected = original.clone();
    for patch in &patches {
        let patched = harness.patch_staging(patch.clone()).await;
        assert_eq!(patched.status, StatusCode::OK, "{patch}: {}", patched.text);
        for (field, value) in patch.as_object().expect("object") {
            expected[field] = value.clone();
        }
        assert_eq!(patched.body, expected, "{patch}: the answer is the workspace as it now is");
        assert_eq!(harness.listed_workspace("staging").await, expected, "{patch}: the list shows it");
    }
    // Slug, uid and mode never change; the other workspace is untouched.
    for field in ["slug", "uid", "mode", "created_at"] {
        assert_eq!(expected[field], original[field], "{field}");
    }
    assert_eq!(harness.listed_workspace("production").await, production);

    // One event per effective patch, about the workspace; an empty patch
    // is a 200 that writes none.
    let empty = harness.patch_staging(json!({})).await;
    assert_eq!((empty.status, &empty.body), (StatusCode::OK, &expected), "{}", empty.text);
    let updated = harness.audited("workspace.updated").await;
    assert_eq!(updated.len(), patches.len(), "{updated:?}");
    for event in &updated {
        assert_eq!(event["target"], json!({"type": "workspace", "id": original["uid"]}), "{event}");
        assert_eq!(event["workspace"], "staging", "{event}");
        assert!(event["actor"]["token_id"].is_string(), "{event}");
    }

    // Refusals: each a 400 in the seed's shape that changes nothing.
    let (events_before, _) = harness.audit().await;
    let refusals = [
        (json!({"api_key_prefix": "Acme_live"}), "api_key_prefix must match"),
        (json!({"api_key_prefix": "acme"}), "api_key_prefix must match"),
        (json!({"api_key_prefix": "acme_prod"}), "api_key_prefix must match"),
        (json!({"api_key_prefix": "a_live"}), "api_key_prefix must match"),
        (json!({"api_key_prefix": "abcdefghijklmnopq_live"}), "api_key_prefix must match"),
        (json!({"api_key_prefix": "1acme_live"}), "api_key_prefix must match"),
        (json!({"api_key_prefix": "acme_live_"}), "api_key_prefix must match"),
        (json!({"api_key_prefix": 7}), "api_key_prefix must be a string"),
        (json!({"on_leak": "ignore"}), "on_leak must be 'disable' or 'notify'"),
        (json!({"on_leak": true}), "on_leak must be a string"),
        (json!({"on_leak": null}), "on_leak may not be null"),
        (json!({"name": null}), "name may not be null"),
        (json!({"name": 5}), "name must be a string"),
        (json!({"name": "   "}), "name may not be blank"),
        (json!({"description": ["x"]}), "description must be a string"),
        (json!({"slug": "renamed"}), "unknown field"),
        (json!({"mode": "production"}), "unknown field"),
        (json!({"name": "ok", "colour": "red"}), "unknown field"),
    ];
    for (body, message) in refusals {
        validation(&harness.patch_staging(body.clone()).await, message);
        assert_eq!(harness.listed_workspace("staging").await, expected, "{body}: a refused patch changes nothing");
    }

    // Only an admin token may patch; an unknown slug, or one of another
    // organisation, is the seed's 404.
    for role in ["manage", "verify"] {
        let token = harness.token_of_role(role).await;
        let refused = harness.call_as(&token, Method::PATCH, STAGING, Some(json!({"name": "mine"}))).await;
        permission_denied(&refused);
    }
    not_found(&harness.patch_staging_at("nope", json!({"name": "x"})).await, "workspace 'nope' not found");
    let (_, other_token) = harness.other_organisation("globex").await;
    let theirs =
        harness.call_as(&other_token, Method::PATCH, "/v1/workspace/production/", Some(json!({"name": "x"}))).await;
    not_found(&theirs, "workspace 'production' not found");
    let their_staging = harness.call_as(&other_token, Method::PATCH, STAGING, Some(json!({"name": "Globex"}))).await;
    assert_eq!(their_staging.status, StatusCode::OK, "{}", their_staging.text);
    assert_ne!(their_staging.body["uid"], original["uid"], "their own staging, not ours");

    assert_eq!(harness.listed_workspace("staging").await, expected);
    let (events_after, _) = harness.audit().await;
    let new_events: Vec<&Value> = events_after.iter().filter(|event| !events_before.contains(event)).collect();
    assert!(
        new_events.iter().all(|event| event["action"] == "service_token.generated"),
        "only the two tokens made above: {new_events:?}"
    );
}

impl Harness {
    async fn patch_staging_at(&self, slug: &str, patch: Value) -> Reply {
        self.call(Method::PATCH, &format!("/v1/workspace/{slug}/"), Some(patch)).await
    }
}

// ------------------------------------------------------------- prefixed keys

/// With `acme_live`, new keys are `acme_live_` + 43 characters, masked
/// with the prefix and at most 7 random characters, and verify; keys made
/// before keep verifying; a changed character is `malformed`; a roll gives
/// a prefixed key; without the prefix, new keys are `SS.` again and the
/// prefixed ones still verify.
async fn prefixed_keys_are_made_verified_rolled_and_checksummed(db: TestDb) {
    let harness = harness(db).await;
    let (before, old_secret) = harness.api_key("staging", "before").await;
    assert!(old_secret.starts_with("SS.") && old_secret.len() == 46, "{old_secret}");
    let patched = harness.patch_staging(json!({"api_key_prefix": "acme_live"})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);

    let (created, secret) = harness.api_key("staging", "prefixed").await;
    let random = secret.strip_prefix("acme_live_").unwrap_or_else(|| panic!("prefixed: {secret}"));
    assert_eq!(random.len(), 43, "{secret}");
    assert!(is_base64url(random), "{secret}");
    let masked = created["masked_api_key"].as_str().expect("mask");
    let shown = masked.strip_prefix("acme_live_").and_then(|rest| rest.strip_suffix("*****"));
    let shown = shown.unwrap_or_else(|| panic!("the mask shows the prefix: {masked}"));
    assert!(shown.len() <= 7 && random.starts_with(shown) && !shown.contains('*'), "{masked}");

    let verified = harness.call(Method::POST, VERIFY, Some(json!({"api_key": secret}))).await;
    assert_eq!(
        (&verified.body["valid"], &verified.body["key_id"]),
        (&json!(true), &created["id"]),
        "{}",
        verified.text
    );
    assert_eq!(harness.verdict(&old_secret).await, "valid", "a key made before the prefix keeps verifying");
    // Other workspaces keep `SS.`.
    let (_, production_secret) = harness.api_key("production", "elsewhere").await;
    assert!(production_secret.starts_with("SS."), "{production_secret}");

    // One character changed, anywhere in the random part, in the checksum
    // or in the prefix, can be no key this server made.
    for index in [10, 30, secret.len() - 1, 0, 2] {
        let tampered = with_one_character_changed(&secret, index);
        assert_eq!(harness.verdict(&tampered).await, "malformed", "{index}: {tampered}");
    }
    // One character short, it is not in keysd's shape but could be an
    // imported key's text (docs/API.md, Verification): looked up, unknown.
    assert_eq!(harness.verdict(&format!("acme_live_{}", &random[..42])).await, "unknown_key", "one short");
    // The checksum covers the prefix: an `SS.` key's 43 characters under
    // the prefix are malformed; a well-formed key that was never made is
    // looked up, and unknown.
    let unmade = ApiKeySecret::generate(&mut OsRng);
    let moved = format!("acme_live_{}", &unmade.expose()[3..]);
    assert_eq!(harness.verdict(&moved).await, "malformed", "{moved}");
    assert_eq!(harness.verdict(&unmade_prefixed()).await, "unknown_key");

    // A roll in a prefixed workspace gives a prefixed key, whatever the
    // format of the key it replaces.
    for id in [created["id"].as_str().expect("id"), before["id"].as_str().expect("id")] {
        let (rolled, rolled_secret) = harness.roll(id).await;
        assert!(rolled_secret.starts_with("acme_live_") && rolled_secret.len() == 53, "{rolled_secret}");
        assert!(rolled["masked_api_key"].as_str().expect("mask").starts_with("acme_live_"), "{rolled}");
        assert_eq!(harness.verdict(&rolled_secret).await, "valid");
    }
    assert_eq!(harness.verdict(&secret).await, "valid", "inside its grace");
    assert_eq!(harness.verdict(&old_secret).await, "valid", "inside its grace");

    // Cleared: new keys are `SS.` again; the prefixed ones still verify.
    let cleared = harness.patch_staging(json!({"api_key_prefix": null})).await;
    assert_eq!((cleared.status, &cleared.body["api_key_prefix"]), (StatusCode::OK, &Value::Null), "{}", cleared.text);
    let (after, after_secret) = harness.api_key("staging", "after").await;
    assert!(after_secret.starts_with("SS.") && after_secret.len() == 46, "{after_secret}");
    assert_eq!(after["masked_api_key"], format!("{}*****", &after_secret[..10]));
    assert_eq!(harness.verdict(&after_secret).await, "valid");
    assert_eq!(harness.verdict(&secret).await, "valid", "a prefixed key outlives its prefix");
}

// --------------------------------------------------------------- leak reports

/// `POST /v1/leak_report/`: a live key of the caller's organisation is a
/// `true_positive`, contained as the workspace's `on_leak` says and audited
/// with its source, never its text; anything else is a `false_positive`
/// that writes nothing.
async fn leak_reports_label_contain_and_audit(db: TestDb) {
    let harness = harness(db).await;
    let source = "https://example.com/x";

    // on_leak disable (the default): disabled at once.
    let (leaked, secret) = harness.api_key("staging", "leaked").await;
    let leaked_id = leaked["id"].as_str().expect("id");
    let reply = harness.report(json!({"api_key": secret, "source": source})).await;
    assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!({"label": "true_positive"})), "{}", reply.text);
    assert!(!reply.text.contains(&secret));
    assert_eq!(harness.status_of(leaked_id).await, "disabled");
    assert_eq!(harness.verdict(&secret).await, "key_disabled");
    let leaks = harness.audited("api_key.leaked").await;
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(leaks[0]["detail"], format!("source={source}"));
    assert_eq!(leaks[0]["target"], json!({"type": "api_key", "id": leaked_id}));
    assert_eq!(leaks[0]["workspace"], "staging");
    let disabled = harness.audited("api_key.disabled").await;
    assert_eq!(disabled.iter().map(|event| &event["target"]["id"]).collect::<Vec<_>>(), [leaked_id]);

    // Reported again, it is no longer live: a false positive, still one
    // more `api_key.leaked` (docs/API.md: any not-yet-deleted key's report
    // is), and no second containment.
    assert_eq!(harness.label(&secret, Some(source)).await, "false_positive");
    assert_eq!(harness.status_of(leaked_id).await, "disabled");
    assert_eq!(harness.audited("api_key.leaked").await.len(), 2);
    assert_eq!(harness.audited("api_key.disabled").await.len(), 1);

    // Anything else writes nothing: an unknown key in either format, text
    // that is no key, a key with a bad checksum, and a live key reported
    // by another organisation.
    let (bystander, bystander_secret) = harness.api_key("staging", "bystander").await;
    let bystander_id = bystander["id"].as_str().expect("id");
    let (gone, gone_secret) = harness.api_key("staging", "gone").await;
    let gone_path = format!("/v1/staging/ws_api_key/{}/", gone["id"].as_str().expect("id"));
    assert_eq!(harness.call(Method::DELETE, &gone_path, None).await.status, StatusCode::NO_CONTENT);
    let (events_before, _) = harness.audit().await;
    let unknown = ApiKeySecret::generate(&mut OsRng);
    for text in [
        unknown.expose().to_owned(),
        unmade_prefixed(),
        format!("acme_live_{}", &unknown.expose()[3..]),
        "not a key at all".to_owned(),
        "x".to_owned(),
        with_one_character_changed(&bystander_secret, 20),
        gone_secret.clone(),
    ] {
        assert_eq!(harness.label(&text, Some(source)).await, "false_positive", "{text}");
    }
    let (_, other_token) = harness.other_organisation("globex").await;
    let foreign = harness
        .call_as(&other_token, Method::POST, LEAK_REPORT, Some(json!({"api_key": bystander_secret, "source": source})))
        .await;
    assert_eq!(
        (foreign.status, &foreign.body),
        (StatusCode::OK, &json!({"label": "false_positive"})),
        "{}",
        foreign.text
    );
    let theirs = harness.call_as(&other_token, Method::GET, "/v1/audit_event/", None).await;
    assert!(!theirs.text.contains("api_key.leaked"), "{}", theirs.text);
    assert_eq!(harness.audit().await.0, events_before, "false positives write nothing");
    assert_eq!(harness.status_of(bystander_id).await, "active");
    assert_eq!(harness.verdict(&bystander_secret).await, "valid");

    // Bad bodies are 400s that change nothing; so is no token a 401.
    validation(
        &harness.report(json!({"api_key": bystander_secret, "source": source, "colour": "red"})).await,
        "unknown field",
    );
    validation(&harness.report(json!({"source": source})).await, "api_key is required");
    validation(&harness.report(json!({"api_key": 12})).await, "api_key must be a string");
    validation(
        &harness.report(json!({"api_key": bystander_secret, "source": "s".repeat(1025)})).await,
        "source must be at most 1024 characters",
    );
    let anonymous = harness.send(
        Request::builder()
            .method(Method::POST)
            .uri(LEAK_REPORT)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json!({"api_key": bystander_secret}).to_string())))
            .expect("request"),
    );
    assert_eq!(anonymous.await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(harness.status_of(bystander_id).await, "active");
    assert_eq!(harness.audit().await.0, events_before, "refusals write nothing");

    // Any role may report; without a source the event says so.
    let verify_token = harness.token_of_role("verify").await;
    let by_verifier =
        harness.call_as(&verify_token, Method::POST, LEAK_REPORT, Some(json!({"api_key": bystander_secret}))).await;
    assert_eq!(by_verifier.body, json!({"label": "true_positive"}), "{}", by_verifier.text);
    assert_eq!(harness.verdict(&bystander_secret).await, "key_disabled");
    let latest = &harness.audited("api_key.leaked").await[0];
    assert_eq!((&latest["target"]["id"], &latest["detail"]), (&json!(bystander_id), &json!("source=unknown")));
    // A source of the most characters allowed is kept whole.
    let (_, long_secret) = harness.api_key("staging", "long").await;
    let long_source = format!("https://example.com/{}", "s".repeat(1024 - 20));
    assert_eq!(long_source.chars().count(), 1024);
    assert_eq!(harness.label(&long_secret, Some(&long_source)).await, "true_positive");
    assert_eq!(harness.audited("api_key.leaked").await[0]["detail"], format!("source={long_source}"));

    // on_leak notify: reported and audited, the key stays as it was.
    let notify = harness.patch_staging(json!({"on_leak": "notify"})).await;
    assert_eq!((notify.status, &notify.body["on_leak"]), (StatusCode::OK, &json!("notify")), "{}", notify.text);
    let (noted, noted_secret) = harness.api_key("staging", "noted").await;
    let noted_id = noted["id"].as_str().expect("id");
    assert_eq!(harness.label(&noted_secret, Some("https://example.com/notify")).await, "true_positive");
    assert_eq!(harness.status_of(noted_id).await, "active");
    assert_eq!(harness.verdict(&noted_secret).await, "valid");
    let latest = &harness.audited("api_key.leaked").await[0];
    assert_eq!(
        (&latest["target"]["id"], &latest["detail"]),
        (&json!(noted_id), &json!("source=https://example.com/notify"))
    );
    assert!(harness.audited("api_key.disabled").await.iter().all(|event| event["target"]["id"] != noted_id));
    // Still live, so a second report is a true positive again.
    assert_eq!(harness.label(&noted_secret, None).await, "true_positive");

    // on_leak disable again: a rolled key inside its grace stops at once;
    // the key that replaced it does not.
    let disable = harness.patch_staging(json!({"on_leak": "disable"})).await;
    assert_eq!(disable.status, StatusCode::OK, "{}", disable.text);
    let (graced, graced_secret) = harness.api_key("staging", "graced").await;
    let (_, successor_secret) = harness.roll(graced["id"].as_str().expect("id")).await;
    assert_eq!(harness.verdict(&graced_secret).await, "valid", "inside its grace");
    assert_eq!(harness.label(&graced_secret, Some(source)).await, "true_positive");
    assert_eq!(harness.verdict(&graced_secret).await, "key_expired");
    let ended = harness.audited("api_key.updated").await;
    assert_eq!(ended.first().map(|event| &event["target"]["id"]), Some(&graced["id"]), "the grace's end is audited");
    assert_eq!(harness.verdict(&successor_secret).await, "valid");
    assert_eq!(harness.label(&graced_secret, Some(source)).await, "false_positive");

    // No key text anywhere in the trail.
    let (_, trail) = harness.audit().await;
    for text in [&secret, &bystander_secret, &noted_secret, &graced_secret] {
        assert!(!trail.contains(text.as_str()) && !trail.contains(&text[3..20]), "the trail holds a key");
    }
}

// --------------------------------------------------------------------- GitHub

/// GitHub's alerts: a 404 without a key file; with one, the signature is
/// checked before anything (each way it can be wrong is a 401 that
/// changes nothing), then each token is labelled in order and echoed.
async fn github_alerts_are_checked_before_anything_else(db: TestDb) {
    let signer = GithubTestSigner::generate(&mut OsRng);
    let keys = github_keys(&db, &signer);
    let harness = harness_with(db, AppConfig { github_keys: Some(keys), ..AppConfig::default() }).await;
    let patched = harness.patch_staging(json!({"api_key_prefix": "acme_live"})).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    let alert = |token: &str| json!({"token": token, "type": "keysd_api_key", "url": LEAKED_AT, "source": "content"});

    // The same store served without a key file: the route is a 404.
    let (_, untouched_secret) = harness.api_key("staging", "untouched").await;
    let without = App::new(Arc::clone(&harness.store), AppConfig::default());
    let body = json!([alert(&untouched_secret)]).to_string();
    let signature = signer.sign(body.as_bytes());
    let request = Request::builder()
        .method(Method::POST)
        .uri(GITHUB)
        .header(header::CONTENT_TYPE, "application/json")
        .header("Github-Public-Key-Identifier", KEY_IDENTIFIER)
        .header("Github-Public-Key-Signature", signature)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let reply = reply_of(without.handle(request).await).await;
    assert_eq!((reply.status, &reply.body["type"]), (StatusCode::NOT_FOUND, &json!("NotFound")), "{}", reply.text);
    assert_eq!(harness.verdict(&untouched_secret).await, "valid");

    // One live key, one unknown key and garbage, labelled in order.
    let (live, live_secret) = harness.api_key("staging", "live").await;
    let unknown = ApiKeySecret::generate(&mut OsRng);
    let garbage = "ghp_0123456789 definitely not a key";
    let body = json!([alert(&live_secret), alert(unknown.expose()), alert(garbage)]).to_string();
    let reply = harness.signed_alert(None, &signer, body.as_bytes()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let label = |token: &str, label: &str| json!({"token_raw": token, "token_type": "keysd_api_key", "label": label});
    assert_eq!(
        reply.body,
        json!([
            label(&live_secret, "true_positive"),
            label(unknown.expose(), "false_positive"),
            label(garbage, "false_positive")
        ])
    );
    assert_eq!(harness.status_of(live["id"].as_str().expect("id")).await, "disabled");
    assert_eq!(harness.verdict(&live_secret).await, "key_disabled");
    let leaks = harness.audited("api_key.leaked").await;
    assert_eq!(leaks.len(), 1, "{leaks:?}");
    assert_eq!(leaks[0]["target"]["id"], live["id"]);
    assert_eq!(leaks[0]["detail"], format!("source={LEAKED_AT}"));
    assert_eq!(leaks[0]["actor"]["name"], "GitHub secret scanning");
    assert_eq!(leaks[0]["actor"]["token_id"], Value::Null);

    // GitHub's alerts are the server's: a live key of any organisation is
    // contained. A text twice in one alert is live only the first time.
    let (_, other_token) = harness.other_organisation("globex").await;
    let theirs =
        harness.call_as(&other_token, Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "t"}))).await;
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.text);
    let their_secret = theirs.body["api_key"].as_str().expect("secret").to_owned();
    let body = json!([alert(&their_secret), alert(&their_secret)]).to_string();
    let reply = harness.signed_alert(None, &signer, body.as_bytes()).await;
    assert_eq!(
        reply.body,
        json!([label(&their_secret, "true_positive"), label(&their_secret, "false_positive")]),
        "{}",
        reply.text
    );
    let their_verdict =
        harness.call_as(&other_token, Method::POST, VERIFY, Some(json!({"api_key": their_secret}))).await;
    assert_eq!(their_verdict.body, json!({"valid": false, "reason": "key_disabled"}), "{}", their_verdict.text);

    // Each wrong signature is a 401 that changes nothing.
    let (fresh, fresh_secret) = harness.api_key("staging", "fresh").await;
    let fresh_id = fresh["id"].as_str().expect("id");
    let body = json!([alert(&fresh_secret)]).to_string();
    let good = signer.sign(body.as_bytes());
    let other_signer = GithubTestSigner::generate(&mut OsRng);
    let by_other = other_signer.sign(body.as_bytes());
    let of_other_body = signer.sign(json!([alert(unknown.expose())]).to_string().as_bytes());
    let (events_before, _) = harness.audit().await;
    let identifier = "Github-Public-Key-Identifier";
    let signature = "Github-Public-Key-Signature";
    let cases: [(&str, Vec<(&str, &str)>); 7] = [
        ("a signature of another body", vec![(identifier, KEY_IDENTIFIER), (signature, &of_other_body)]),
        ("a signature by another key", vec![(identifier, KEY_IDENTIFIER), (signature, &by_other)]),
        ("no signature", vec![(identifier, KEY_IDENTIFIER)]),
        ("an empty signature", vec![(identifier, KEY_IDENTIFIER), (signature, "")]),
        ("an unknown identifier", vec![(identifier, "test-key-2"), (signature, &good)]),
        ("no identifier", vec![(signature, &good)]),
        ("a malformed signature", vec![(identifier, KEY_IDENTIFIER), (signature, "bm90IGEgc2lnbmF0dXJl")]),
    ];
    for (case, headers) in &cases {
        bad_signature(&harness.alert(None, body.as_bytes(), headers).await, case);
    }
    assert_eq!(harness.status_of(fresh_id).await, "active");
    assert_eq!(harness.verdict(&fresh_secret).await, "valid");
    assert_eq!(harness.audit().await.0, events_before, "refused alerts write nothing");

    // A signed body that is not GitHub's alert is a 400 that changes nothing.
    let not_an_array = json!({"token": fresh_secret, "type": "keysd_api_key"}).to_string();
    let reply = harness.signed_alert(None, &signer, not_an_array.as_bytes()).await;
    validation(&reply, "JSON array");
    assert_eq!(harness.verdict(&fresh_secret).await, "valid");
    assert_eq!(harness.audit().await.0, events_before);

    // The same body, rightly signed, is what the refusals refused.
    let reply = harness.alert(None, body.as_bytes(), &[(identifier, KEY_IDENTIFIER), (signature, &good)]).await;
    assert_eq!(reply.body, json!([label(&fresh_secret, "true_positive")]), "{}", reply.text);
    assert_eq!(harness.verdict(&fresh_secret).await, "key_disabled");
    assert!(!harness.audit().await.1.contains(&fresh_secret), "the trail never holds the key");
}

// ---------------------------------------------------------------- rate limit

/// `leak_reports_per_minute`: both leak routes spend one budget per
/// client; beyond it, a 429 with `Retry-After`, before anything is looked
/// at. Other clients and other routes are not affected.
async fn both_leak_routes_spend_one_budget_per_client(db: TestDb) {
    let signer = GithubTestSigner::generate(&mut OsRng);
    let keys = github_keys(&db, &signer);
    let config = AppConfig {
        github_keys: Some(keys),
        leak_reports_per_minute: NonZeroU32::new(2).expect("2"),
        ..AppConfig::default()
    };
    let harness = harness_with(db, config).await;
    let token = harness.token.clone();
    let (key, secret) = harness.api_key("staging", "spared").await;
    let unknown = ApiKeySecret::generate(&mut OsRng);
    let report = |text: &str| Some(json!({"api_key": text}));
    let empty_alert = b"[]";
    let throttled = |reply: &Reply, case: &str| {
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{case}: {}", reply.text);
        let retry_after = reply.headers.get(header::RETRY_AFTER).unwrap_or_else(|| panic!("{case}: Retry-After"));
        let seconds: u64 = retry_after.to_str().expect("ascii").parse().expect("seconds");
        assert!((1..=30).contains(&seconds), "{case}: a report comes back every 30 s: {seconds}");
        assert_eq!(reply.body["type"], "Throttled", "{case}");
        assert_eq!(reply.body["code"], 429, "{case}");
    };

    // Two reports, then GitHub's route is refused to the same client.
    let first = "192.0.2.10";
    for _ in 0..2 {
        let reply = harness.from(Some(first), &token, Method::POST, LEAK_REPORT, report(unknown.expose())).await;
        assert_eq!(reply.body, json!({"label": "false_positive"}), "{}", reply.text);
    }
    throttled(&harness.signed_alert(Some(first), &signer, empty_alert).await, "an alert after two reports");
    let refused = harness.from(Some(first), &token, Method::POST, LEAK_REPORT, report(&secret)).await;
    throttled(&refused, "a third report");
    assert_eq!(harness.status_of(key["id"].as_str().expect("id")).await, "active", "a refused report contains nothing");

    // Two alerts, then a report is refused to that client.
    let second = "192.0.2.11";
    for _ in 0..2 {
        let reply = harness.signed_alert(Some(second), &signer, empty_alert).await;
        assert_eq!((reply.status, &reply.body), (StatusCode::OK, &json!([])), "{}", reply.text);
    }
    throttled(
        &harness.from(Some(second), &token, Method::POST, LEAK_REPORT, report(&secret)).await,
        "a report after two alerts",
    );
    assert_eq!(harness.verdict(&secret).await, "valid");

    // Another client has its own budget; other routes are not limited.
    let verified = harness.from(Some(first), &token, Method::POST, VERIFY, report(&secret)).await;
    assert_eq!((verified.status, &verified.body["valid"]), (StatusCode::OK, &json!(true)), "{}", verified.text);
    let third = harness.from(Some("192.0.2.12"), &token, Method::POST, LEAK_REPORT, report(&secret)).await;
    assert_eq!(third.body, json!({"label": "true_positive"}), "{}", third.text);
}

// ------------------------------------------------------ held regressions

/// A request body must be a JSON object (docs/API.md, Shared HTTP
/// behaviour): an array whose items happen to fit the fields in order is a
/// 400 like any other array.
///
/// serde reads a struct from a JSON array field by field: `Input::json`
/// refuses any body that is not an object before it lets serde try, or
/// `["renamed by position"]` would rename a workspace and
/// `["<key>", "<url>"]` disable a key.
async fn a_body_that_is_an_array_is_a_400_that_changes_nothing(db: TestDb) {
    let harness = harness(db).await;
    let before = harness.listed_workspace("staging").await;
    let patched = harness.call(Method::PATCH, STAGING, Some(json!(["renamed by position"]))).await;
    validation(&patched, "request body must be a JSON object");
    assert_eq!(harness.listed_workspace("staging").await, before, "a refused patch changes nothing");

    let (key, secret) = harness.api_key("staging", "positional").await;
    let reported = harness.report(json!([secret, "https://example.com/x"])).await;
    validation(&reported, "request body must be a JSON object");
    assert_eq!(harness.status_of(key["id"].as_str().expect("id")).await, "active");
    assert!(harness.audited("api_key.leaked").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_an_array_is_a_400_that_changes_nothing_sqlite() {
    a_body_that_is_an_array_is_a_400_that_changes_nothing(TestDb::new(Kind::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_an_array_is_a_400_that_changes_nothing_postgres() {
    a_body_that_is_an_array_is_a_400_that_changes_nothing(TestDb::new(Kind::Postgres).await).await;
}

/// Every answer of the new routes matches what `/openapi.json` documents
/// for its route, method and status (judged by Python's validators when
/// the harness drops).
/// All three answer 200 (not the 201 of a create or the 202 of dialect
/// 1's SuprSend patches), and a prefixed key (`acme_live_…`) matches the
/// documented pattern of `api_key`.
async fn openapi_document_tells_the_answers_of_these_routes(db: TestDb) {
    let signer = GithubTestSigner::generate(&mut OsRng);
    let keys = github_keys(&db, &signer);
    let limit = NonZeroU32::new(2).expect("2");
    let config = AppConfig { github_keys: Some(keys), leak_reports_per_minute: limit, ..AppConfig::default() };
    let mut harness = harness_with(db, config).await;
    let manage = harness.token_of_role("manage").await;
    harness.responses = Some(openapi_check::Recorder::default());

    assert_eq!(harness.patch_staging(json!({"api_key_prefix": "acme_live"})).await.status, StatusCode::OK);
    validation(&harness.patch_staging(json!({"api_key_prefix": "nope"})).await, "api_key_prefix");
    permission_denied(&harness.call_as(&manage, Method::PATCH, STAGING, Some(json!({"name": "x"}))).await);
    let missing = harness.call(Method::PATCH, "/v1/workspace/nope/", Some(json!({"name": "x"}))).await;
    not_found(&missing, "workspace 'nope' not found");

    let (_, secret) = harness.api_key("staging", "documented").await;
    assert_eq!(harness.label(&secret, Some("https://example.com/x")).await, "true_positive");
    validation(&harness.report(json!({"api_key": secret, "colour": "red"})).await, "unknown field");
    let body = json!([{"token": secret, "type": "keysd_api_key", "url": "https://example.com/y"}]).to_string();
    assert_eq!(harness.signed_alert(None, &signer, body.as_bytes()).await.status, StatusCode::OK);
    bad_signature(&harness.alert(None, body.as_bytes(), &[]).await, "no headers");
    validation(&harness.signed_alert(None, &signer, b"{}").await, "JSON array");
    let client = Some("192.0.2.20");
    for _ in 0..2 {
        assert_eq!(harness.signed_alert(client, &signer, b"[]").await.status, StatusCode::OK);
    }
    let throttled = harness.signed_alert(client, &signer, b"[]").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS, "{}", throttled.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_tells_the_answers_of_these_routes_sqlite() {
    openapi_document_tells_the_answers_of_these_routes(TestDb::new(Kind::Sqlite).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_tells_the_answers_of_these_routes_postgres() {
    openapi_document_tells_the_answers_of_these_routes(TestDb::new(Kind::Postgres).await).await;
}

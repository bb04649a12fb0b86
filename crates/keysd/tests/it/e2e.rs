//! End-to-end: the real `keysd` binary on port 0, over a real socket, on
//! SQLite (temporary directory) and on PostgreSQL (a fresh database per test
//! on `KEYSD_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`). PostgreSQL being down fails
//! these tests; it never skips them.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use keys_crypto::jwt::Algorithm;
use keys_crypto::mint;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_keysd");

// ------------------------------------------------------------------ backends

/// Where a test's keysd keeps its data: a fresh SQLite file or PostgreSQL
/// database, and a temporary directory for its logs and key files.
type Backend = keys_testkit::TestDb;

// ------------------------------------------------------------------- servers

/// A running `keysd serve`.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// The bootstrap token, when this process bootstrapped.
    pub(crate) token: Option<String>,
    log: PathBuf,
}

impl Server {
    pub(crate) async fn start(backend: &Backend, extra: &[&str]) -> Self {
        Self::start_binary(BINARY, backend, extra).await
    }

    /// `serve` of the binary at `binary` (another release's, for upgrades).
    pub(crate) async fn start_binary(binary: &str, backend: &Backend, extra: &[&str]) -> Self {
        let log = backend.dir().join(format!("keysd-{:08x}.log", OsRng.next_u32()));
        let mut child = Command::new(binary)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--database-url", backend.url()])
            .args(extra)
            // keysd's own `debug` lines too (the verification endpoints log
            // each request at `debug`), so the secret scans below cover them.
            .env("RUST_LOG", "info,keys_http=debug")
            // A small RSA pool: many servers share two cores in this suite,
            // and a full pool of background key generation per process
            // would only slow the others down.
            .env("KEYSD_RSA_POOL_SIZE", "1")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("keysd starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut token = None;
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("stdout") {
                if let Some(rest) = line.strip_prefix("keysd service token (shown once, store it now): ") {
                    token = Some(rest.trim().to_owned());
                }
                if let Some(address) = line.strip_prefix("keysd listening on ") {
                    return address.trim().to_owned();
                }
            }
            panic!("keysd exited before listening: {}", std::fs::read_to_string(&log).unwrap_or_default());
        })
        .await
        .expect("keysd listens within a minute");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, base, token, log }
    }

    /// Sends the process `signal` (`TERM`, `KILL`, …).
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status();
        assert!(status.expect("kill").success());
    }

    /// Waits at most `within` for the process to exit; its status.
    pub(crate) async fn exit(mut self, within: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(within, self.child.wait()).await.expect("keysd exits in time").expect("wait")
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) async fn stop(mut self) {
        let pid = self.child.id().expect("running");
        let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("keysd stops within 30 s")
            .expect("wait");
        assert!(exit.success(), "keysd exit {exit:?}: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }

    pub(crate) fn client(&self, token: &str) -> Api {
        Api {
            http: Client::builder(TokioExecutor::new()).build_http(),
            base: self.base.clone(),
            token: token.to_owned(),
        }
    }
}

/// Runs a `keysd` operator command on `backend`'s database and returns its
/// output.
async fn keysd_output(backend: &Backend, args: &[&str]) -> std::process::Output {
    Command::new(BINARY).args(args).args(["--database-url", backend.url()]).output().await.expect("keysd runs")
}

/// Runs a `keysd` operator command and returns its stdout, trimmed.
pub(crate) async fn keysd(backend: &Backend, args: &[&str]) -> String {
    let output = keysd_output(backend, args).await;
    assert!(output.status.success(), "keysd {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// Runs a `keysd` operator command that must fail; its stderr.
pub(crate) async fn keysd_refused(backend: &Backend, args: &[&str]) -> String {
    let output = keysd_output(backend, args).await;
    assert!(!output.status.success(), "keysd {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `keysd sign <token> --private-key <file> <claims…>`: the token it prints.
async fn keysd_sign(backend: &Backend, token: &str, private_key: &std::path::Path, claims: &[&str]) -> String {
    let private_key = private_key.to_str().expect("utf-8 path");
    keysd(backend, &[&["sign", token, "--private-key", private_key], claims].concat()).await
}

// -------------------------------------------------------------------- client

pub(crate) struct Api {
    http: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

impl Api {
    async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut builder = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("ServiceToken {token}"));
        }
        let body = match body {
            Some(body) => {
                builder = builder.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let response = self.http.request(builder.body(Full::new(body)).expect("request")).await.expect("response");
        let status = response.status();
        assert!(response.headers().contains_key("x-request-id"));
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        Reply { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    pub(crate) async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send(method, path, Some(&self.token), body).await
    }

    /// `POST path` with `body` as it is and `headers`, no token: what
    /// GitHub's secret scanning sends.
    async fn post_signed(&self, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(Bytes::from(body.to_owned()))).expect("request");
        let response = self.http.request(request).await.expect("response");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        Reply { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    async fn public(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, None).await
    }

    pub(crate) async fn verify(&self, kind: &str, body: Value) -> Value {
        let reply = self.call(Method::POST, &format!("/v1/verify/{kind}/"), Some(body)).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    async fn workspace_uid(&self, slug: &str) -> String {
        let list = self.call(Method::GET, "/v1/workspace/?limit=100", None).await;
        list.body["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|workspace| workspace["slug"] == slug)
            .and_then(|workspace| workspace["uid"].as_str())
            .expect("workspace")
            .to_owned()
    }

    /// The bootstrap organisation's id, read from the system actor that
    /// creates a workspace named `probe`.
    async fn organisation_id(&self, probe: &str) -> String {
        let workspace = self.call(Method::POST, "/v1/workspace/", Some(json!({"name": probe}))).await;
        let email = text(&workspace.body["created_by"]["email"]);
        email.trim_start_matches("org_").split('@').next().expect("id").to_owned()
    }

    /// Creates the organisation key `name` of `organisation` (Versori's
    /// dialect).
    async fn create_organisation_key(&self, organisation: &str, name: &str) -> Reply {
        let path = format!("/api/organisations/v1/organisations/{organisation}/keys");
        self.call(Method::POST, &path, Some(json!({"name": name}))).await
    }

    /// Creates the public key `name` in `staging` with secure mode on, and
    /// returns its value.
    async fn secure_public_key(&self, name: &str) -> String {
        let public = self.call(Method::POST, "/v1/staging/ws_public_key/", Some(json!({"name": name}))).await;
        let public_id = text(&public.body["id"]);
        let secure = Some(json!({"is_secure_mode_enabled": true}));
        self.call(Method::PATCH, &format!("/v1/staging/ws_public_key/{public_id}/"), secure).await;
        text(&public.body["api_key"])
    }

    /// Rolls the signing key `kid` of `staging`, the old key verifying for
    /// `grace_seconds` more.
    async fn roll(&self, kid: &str, grace_seconds: u64) -> Reply {
        let grace = Some(json!({"grace_period_seconds": grace_seconds}));
        self.call(Method::POST, &format!("/v1/staging/ws_signing_key/{kid}/roll/"), grace).await
    }

    async fn kids(&self, workspace_uid: &str) -> Vec<String> {
        let jwks = self.public(&format!("/v1/workspace/{workspace_uid}/jwks.json")).await;
        assert_eq!(jwks.status, StatusCode::OK);
        jwks.body["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|key| key["kid"].as_str().expect("kid").to_owned())
            .collect()
    }
}

pub(crate) fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_owned()
}

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

use keys_testkit::on_both_backends;

// ------------------------------------------------------------------ journeys

/// API keys, public keys (domains, secure mode, rotation) and signing keys
/// (create, refusal, roll with grace, delete), all through the socket.
async fn workspace_keys_journey(backend: Backend) {
    let server = Server::start(&backend, &[]).await;
    let api = server.client(server.token.as_deref().expect("bootstrap token printed"));

    // API keys.
    let created = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "backend-prod"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = text(&created.body["api_key"]);
    let key_id = text(&created.body["id"]);
    let list = api.call(Method::GET, "/v1/staging/ws_api_key", None).await;
    assert_eq!(list.body["meta"]["count"], 1);
    assert_eq!(list.body["results"][0]["masked_api_key"], format!("{}*****", &secret[..10]));
    assert_eq!(api.verify("api_key", json!({"api_key": secret})).await["valid"], true);
    let deleted = api.call(Method::DELETE, &format!("/v1/staging/ws_api_key/{key_id}/"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.verify("api_key", json!({"api_key": secret})).await,
        json!({"valid": false, "reason": "key_deleted"})
    );

    // Signing keys.
    let workspace_uid = api.workspace_uid("staging").await;
    let signing = api.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    assert_eq!(signing.status, StatusCode::CREATED);
    let kid = text(&signing.body["uid"]);
    let pem = text(&signing.body["private_key_pem"]);
    let second = api.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    assert_eq!(
        second.body,
        json!({"code": 400, "error_code": "error", "type": "ValidationError",
               "message": "[\"only 1 active signing key is allowed\"]",
               "detail": ["only 1 active signing key is allowed"]})
    );
    assert_eq!(api.kids(&workspace_uid).await, vec![kid.clone()]);

    // Public keys: allowed domains and secure mode with a user token signed
    // by the workspace's private key.
    let public = api.call(Method::POST, "/v1/staging/ws_public_key/", Some(json!({"name": "web-app"}))).await;
    assert_eq!(public.status, StatusCode::CREATED);
    let public_id = text(&public.body["id"]);
    let value = text(&public.body["api_key"]);
    let patched = api
        .call(
            Method::PATCH,
            &format!("/v1/staging/ws_public_key/{public_id}/"),
            Some(json!({"allowed_domains": ["*.example.com"], "is_secure_mode_enabled": true})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::ACCEPTED);
    let claims = json!({"entity_type": "subscriber", "entity_id": "user-1", "exp": now_seconds() + 600});
    let user_token = mint::sign(&claims, Some(&kid), &pem, Algorithm::Es256).expect("signs");
    let request = json!({"api_key": value, "origin": "https://app.example.com", "user_token": user_token});
    let verdict = api.verify("public_key", request.clone()).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["entity_id"], "user-1");
    let wrong_origin = json!({"api_key": value, "origin": "https://example.com", "user_token": user_token});
    assert_eq!(api.verify("public_key", wrong_origin).await["reason"], "origin_not_allowed");

    // Roll with grace: the old kid stays in the JWKS and keeps verifying.
    let rolled = api.roll(&kid, 600).await;
    assert_eq!(rolled.status, StatusCode::CREATED);
    let new_kid = text(&rolled.body["uid"]);
    let kids = api.kids(&workspace_uid).await;
    assert!(kids.contains(&kid) && kids.contains(&new_kid), "{kids:?}");
    assert_eq!(api.verify("public_key", request.clone()).await["valid"], true);
    // Delete the rolled key: the JWKS changes and its tokens stop.
    let deleted = api.call(Method::DELETE, &format!("/v1/staging/ws_signing_key/{kid}/"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(api.kids(&workspace_uid).await, vec![new_kid.clone()]);
    assert_eq!(api.verify("public_key", request).await["reason"], "key_deleted");

    // Rotation: the old value stops at once.
    let rotated = api.call(Method::PATCH, &format!("/v1/staging/ws_public_key/{public_id}/rotate/"), None).await;
    assert_eq!(rotated.status, StatusCode::ACCEPTED);
    let new_value = text(&rotated.body["api_key"]);
    let new_token =
        mint::sign(&claims, Some(&new_kid), &text(&rolled.body["private_key_pem"]), Algorithm::Es256).expect("signs");
    let old = json!({"api_key": value, "origin": "https://app.example.com", "user_token": new_token});
    assert_eq!(api.verify("public_key", old).await["reason"], "unknown_key");
    let new = json!({"api_key": new_value, "origin": "https://app.example.com", "user_token": new_token});
    assert_eq!(api.verify("public_key", new).await["valid"], true);

    let log = server.log.clone();
    let token = server.token.clone().expect("token");
    server.stop().await;
    // Every request was logged (verifications at `debug`), and no secret was.
    let log = std::fs::read_to_string(log).expect("log");
    assert!(log.contains("/v1/verify/api_key/") && log.contains("/v1/staging/ws_api_key/"), "requests are logged");
    for secret in [secret.as_str(), token.as_str(), "PRIVATE KEY", pem.lines().nth(1).expect("pem body"), &user_token] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
    backend.cleanup().await;
}

/// Versori organisation keys: create, list, public GET, RS256 JWTs verified
/// before and refused after delete.
async fn organisation_keys_journey(backend: Backend) {
    let server = Server::start(&backend, &["--jwt-issuer-base", "https://versori.com"]).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);
    let organisation = keysd(&backend, &["org", "create", "second-org"]).await;
    assert_eq!(organisation.len(), 26);
    let default = api.call(Method::GET, "/api/organisations/v1/organisations/nope/keys", None).await;
    assert_eq!(default.status, StatusCode::NOT_FOUND);
    assert_eq!(default.body["code"], "not_found");

    let organisation_id = api.organisation_id("Org Probe").await;
    let base = format!("/api/organisations/v1/organisations/{organisation_id}");

    let created =
        api.call(Method::POST, &format!("{base}/keys"), Some(json!({"name": "Organisation Public Key 1"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key_id = text(&created.body["id"]);
    let private_pem = text(&created.body["privateKey"]);
    let list = api.call(Method::GET, &format!("{base}/keys"), None).await;
    assert_eq!(list.body["keys"][0]["id"], key_id.as_str());
    assert!(list.body["keys"][0].get("privateKey").is_none());
    let public = api.public(&format!("/api/organisations/v1/keys/{key_id}")).await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(public.body["publicKey"], created.body["publicKey"]);
    let jwks = api.public(&format!("{base}/jwks.json")).await;
    assert_eq!(jwks.body["keys"][0]["kid"], key_id.as_str());

    let claims =
        json!({"iss": format!("https://versori.com/sk/{key_id}"), "sub": "end-user", "exp": now_seconds() + 600});
    let token = mint::sign(&claims, None, &private_pem, Algorithm::Rs256).expect("signs");
    let verdict = api.verify("jwt", json!({"token": token})).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["sub"], "end-user");
    // Not the pinned base.
    let mut other_base = claims.clone();
    other_base["iss"] = json!(format!("https://evil.example/sk/{key_id}"));
    let other_token = mint::sign(&other_base, None, &private_pem, Algorithm::Rs256).expect("signs");
    assert_eq!(api.verify("jwt", json!({"token": other_token})).await["reason"], "issuer_not_accepted");

    let deleted = api.call(Method::DELETE, &format!("{base}/keys/{key_id}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(api.verify("jwt", json!({"token": token})).await, json!({"valid": false, "reason": "key_deleted"}));
    assert_eq!(api.public(&format!("/api/organisations/v1/keys/{key_id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.public(&format!("{base}/jwks.json")).await.body["keys"], json!([]));

    server.stop().await;
    backend.cleanup().await;
}

/// Two organisations (the second made with `keysd org create` and `keysd
/// token create`) cannot see or use each other's keys.
async fn tenant_isolation_journey(backend: Backend) {
    let server = Server::start(&backend, &[]).await;
    let first = server.client(server.token.as_deref().expect("bootstrap token"));
    let organisation = keysd(&backend, &["org", "create", "acme"]).await;
    let workspace = keysd(&backend, &["workspace", "create", "--org", "acme", "staging", "--mode", "production"]).await;
    assert!(workspace.starts_with("wksp_"), "{workspace}");
    let second_token = keysd(&backend, &["token", "create", "--org", &organisation, "--name", "ci"]).await;
    assert!(second_token.starts_with("kst_") && !second_token.contains(char::is_whitespace));
    let second = server.client(&second_token);

    let listed = second.call(Method::GET, "/v1/workspace/", None).await;
    assert_eq!(listed.body["meta"]["count"], 1);
    assert_eq!(listed.body["results"][0]["mode"], "production");
    let mine = first.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "first"}))).await;
    let secret = text(&mine.body["api_key"]);
    let id = text(&mine.body["id"]);
    assert_eq!(second.call(Method::GET, "/v1/staging/ws_api_key/", None).await.body["meta"]["count"], 0);
    assert_eq!(second.call(Method::GET, "/v1/production/ws_api_key/", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        second.call(Method::DELETE, &format!("/v1/staging/ws_api_key/{id}/"), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        second.verify("api_key", json!({"api_key": secret})).await,
        json!({"valid": false, "reason": "unknown_key"})
    );
    assert_eq!(first.verify("api_key", json!({"api_key": secret})).await["valid"], true);
    let theirs = format!("/api/organisations/v1/organisations/{organisation}/keys");
    assert_eq!(first.call(Method::GET, &theirs, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(second.call(Method::GET, &theirs, None).await.status, StatusCode::OK);

    server.stop().await;
    backend.cleanup().await;
}

/// Keys and tokens survive a restart; the second start does not bootstrap.
async fn restart_journey(backend: Backend) {
    let server = Server::start(&backend, &[]).await;
    let token = server.token.clone().expect("bootstrap token");
    let api = server.client(&token);
    let created = api.call(Method::POST, "/v1/production/ws_api_key/", Some(json!({"name": "survivor"}))).await;
    let secret = text(&created.body["api_key"]);
    let signing = api.call(Method::POST, "/v1/production/ws_signing_key/", None).await;
    let kid = text(&signing.body["uid"]);
    let workspace_uid = api.workspace_uid("production").await;
    server.stop().await;

    let restarted = Server::start(&backend, &[]).await;
    assert_eq!(restarted.token, None, "a second start must not bootstrap again");
    let api = restarted.client(&token);
    assert_eq!(api.verify("api_key", json!({"api_key": secret})).await["valid"], true);
    assert_eq!(api.kids(&workspace_uid).await, vec![kid]);
    assert_eq!(api.call(Method::GET, "/ready", None).await.status, StatusCode::OK);
    restarted.stop().await;
    backend.cleanup().await;
}

on_both_backends! {
    workspace_keys_journey => sqlite_workspace_keys, postgres_workspace_keys;
    organisation_keys_journey => sqlite_organisation_keys, postgres_organisation_keys;
    tenant_isolation_journey => sqlite_tenant_isolation, postgres_tenant_isolation;
    restart_journey => sqlite_restart, postgres_restart;
}

/// Two `keysd serve` on one fresh PostgreSQL database, started with
/// `extra`, and a client of each with the bootstrap token.
pub(crate) struct Replicas {
    backend: Backend,
    servers: [Server; 2],
    pub(crate) apis: [Api; 2],
}

impl Replicas {
    pub(crate) async fn start(extra: &[&str]) -> Self {
        let backend = Backend::postgres().await;
        let first = Server::start(&backend, extra).await;
        let token = first.token.clone().expect("bootstrap token");
        let second = Server::start(&backend, extra).await;
        assert_eq!(second.token, None, "the second replica does not bootstrap");
        let apis = [first.client(&token), second.client(&token)];
        Self { backend, servers: [first, second], apis }
    }

    pub(crate) async fn stop(self) {
        for server in self.servers {
            server.stop().await;
        }
        self.backend.cleanup().await;
    }
}

/// Two `keysd` on one PostgreSQL: concurrent signing-key creates across both
/// end with exactly one active key, and a delete on one is seen by
/// verification on the other within a second.
#[tokio::test]
async fn postgres_two_processes_keep_invariants() {
    let replicas = Replicas::start(&[]).await;
    let apis = &replicas.apis;

    for round in 0..2 {
        let attempts = (0..8).map(|index| apis[index % 2].call(Method::POST, "/v1/staging/ws_signing_key/", None));
        let replies = futures_join_all(attempts).await;
        let created: Vec<&Reply> = replies.iter().filter(|reply| reply.status == StatusCode::CREATED).collect();
        assert_eq!(created.len(), 1, "round {round}: exactly one create wins");
        for reply in replies.iter().filter(|reply| reply.status != StatusCode::CREATED) {
            assert_eq!(reply.status, StatusCode::BAD_REQUEST);
            assert_eq!(reply.body["detail"], json!(["only 1 active signing key is allowed"]));
        }
        let list = apis[round % 2].call(Method::GET, "/v1/staging/ws_signing_key/", None).await;
        let active =
            list.body["results"].as_array().expect("results").iter().filter(|key| key["status"] == "active").count();
        assert_eq!(active, 1);
        let uid = text(&created[0].body["uid"]);
        let deleted =
            apis[1 - round % 2].call(Method::DELETE, &format!("/v1/staging/ws_signing_key/{uid}/"), None).await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    }

    let created = apis[0].call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "shared"}))).await;
    let secret = text(&created.body["api_key"]);
    let id = text(&created.body["id"]);
    assert_eq!(apis[1].verify("api_key", json!({"api_key": secret})).await["valid"], true);
    // Both processes have the key in their verification caches now. The
    // process that deletes it sees the delete at once; the other within a
    // second (its cache hears the delete's NOTIFY, or the entry expires).
    let deleted = apis[0].call(Method::DELETE, &format!("/v1/staging/ws_api_key/{id}/"), None).await;
    let deleted_at = std::time::Instant::now();
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(apis[0].verdict(&secret).await, "key_deleted");
    apis[1].turns_within_a_second(&secret, "valid", "key_deleted", deleted_at).await;

    replicas.stop().await;
}

/// Two `keysd` on one PostgreSQL agree on an API key's life: a disable,
/// an enable and a roll without grace made through one are seen by the
/// other's verification within a second (through its cache's
/// announcements); the refusals of the lifecycle are the same 400 on both.
#[tokio::test]
async fn postgres_two_replicas_agree_on_an_api_keys_life() {
    let replicas = Replicas::start(&[]).await;
    let apis = &replicas.apis;

    let created = apis[0].call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "shared"}))).await;
    let (secret, id) = (text(&created.body["api_key"]), text(&created.body["id"]));
    let path = format!("/v1/staging/ws_api_key/{id}");
    // Each step through one replica, then seen by the other: both have the
    // key in their verification caches before every change.
    let steps = [("disable", 0, "valid", "key_disabled"), ("enable", 1, "key_disabled", "valid")];
    for (action, through, before, after) in steps {
        let (writer, reader) = (&apis[through], &apis[1 - through]);
        assert_eq!(reader.verdict(&secret).await, before, "{action}");
        let changed = writer.call(Method::PATCH, &format!("{path}/{action}/"), None).await;
        let changed_at = std::time::Instant::now();
        assert_eq!(changed.status, StatusCode::ACCEPTED, "{action}: {}", changed.body);
        assert_eq!(writer.verdict(&secret).await, after, "{action}: its own replica sees it at once");
        reader.turns_within_a_second(&secret, before, after, changed_at).await;
        // The lifecycle's refusal is the same on both replicas.
        for api in apis {
            let again = api.call(Method::PATCH, &format!("{path}/{action}/"), None).await;
            assert_eq!(again.status, StatusCode::BAD_REQUEST, "{action} again: {}", again.body);
        }
    }
    let rolled = apis[1].call(Method::POST, &format!("{path}/roll/"), None).await;
    let rolled_at = std::time::Instant::now();
    assert_eq!(rolled.status, StatusCode::CREATED, "{}", rolled.body);
    let new_secret = text(&rolled.body["api_key"]);
    apis[0].turns_within_a_second(&secret, "valid", "key_expired", rolled_at).await;
    assert_eq!(apis[0].verdict(&new_secret).await, "valid");
    let again = apis[0].call(Method::POST, &format!("{path}/roll/"), None).await;
    assert_eq!(again.body["detail"], json!(["only an active API key can be rolled"]));

    replicas.stop().await;
}

/// Two `keysd` on one PostgreSQL, tokens on the warm path of both: a
/// user token and a Versori JWT verified again and again (so each replica
/// remembers it), then their keys deleted through one replica. The other
/// refuses each within a second, through its warm path, which decides the
/// key's state again on every hit.
#[tokio::test]
async fn postgres_two_replicas_refuse_warm_tokens_within_a_second() {
    let replicas = Replicas::start(&[]).await;
    let apis = &replicas.apis;

    let value = apis[0].secure_public_key("warm-web").await;
    let signing = apis[0].call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    assert_eq!(signing.status, StatusCode::CREATED, "{}", signing.body);
    let kid = text(&signing.body["uid"]);
    let claims = json!({"entity_type": "subscriber", "entity_id": "user-1", "exp": now_seconds() + 600});
    let user_token =
        mint::sign(&claims, Some(&kid), &text(&signing.body["private_key_pem"]), Algorithm::Es256).expect("signs");
    let user_request = json!({"api_key": value, "user_token": user_token});

    let organisation = apis[0].organisation_id("Warm Probe").await;
    let created = apis[0].create_organisation_key(&organisation, "warm").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key_id = text(&created.body["id"]);
    let claims =
        json!({"iss": format!("https://versori.com/sk/{key_id}"), "sub": "end-user", "exp": now_seconds() + 600});
    let jwt = mint::sign(&claims, None, &text(&created.body["privateKey"]), Algorithm::Rs256).expect("signs");
    let jwt_request = json!({"token": jwt});

    for api in apis {
        for _ in 0..3 {
            assert_eq!(api.verify("public_key", user_request.clone()).await["valid"], true);
            assert_eq!(api.verify("jwt", jwt_request.clone()).await["valid"], true);
        }
    }
    let deleted = apis[0].call(Method::DELETE, &format!("/v1/staging/ws_signing_key/{kid}/"), None).await;
    let deleted_at = std::time::Instant::now();
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(apis[0].verdict_of("public_key", user_request.clone()).await, "key_deleted", "at once where deleted");
    let after = apis[1].refuses_within_a_second("public_key", user_request, "key_deleted", deleted_at).await;
    eprintln!("a warm user token was refused by the other replica {after:?} after its key's delete");

    let path = format!("/api/organisations/v1/organisations/{organisation}/keys/{key_id}");
    let deleted = apis[0].call(Method::DELETE, &path, None).await;
    let deleted_at = std::time::Instant::now();
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(apis[0].verdict_of("jwt", jwt_request.clone()).await, "key_deleted", "at once where deleted");
    let after = apis[1].refuses_within_a_second("jwt", jwt_request, "key_deleted", deleted_at).await;
    eprintln!("a warm JWT was refused by the other replica {after:?} after its key's delete");

    replicas.stop().await;
}

/// The status of `GET path` with `token`.
async fn status_as(api: &Api, token: &str, path: &str) -> StatusCode {
    api.send(Method::GET, path, Some(token), None).await.status
}

/// The status of an API-key verification call with `token` (any key).
async fn verify_as(api: &Api, token: &str) -> StatusCode {
    api.send(Method::POST, "/v1/verify/api_key/", Some(token), Some(json!({"api_key": "SS.x"}))).await.status
}

/// Service tokens across two replicas: one made with the CLI on the
/// database (a `verify` token) and one made over the API (a `manage` token
/// limited to `staging`) work on both replicas with their roles; each
/// revocation, by the CLI and over the API, is refused by both replicas
/// within a second of it, though both had the token cached.
#[tokio::test]
async fn postgres_two_replicas_refuse_a_revoked_service_token_within_a_second() {
    let replicas = Replicas::start(&[]).await;
    let (apis, backend) = (&replicas.apis, &replicas.backend);
    let organisation = apis[0].organisation_id("probe").await;
    let gateway =
        keysd(backend, &["token", "create", "--org", &organisation, "--name", "nginx", "--role", "verify"]).await;
    let body = json!({"name": "deploy", "role": "manage", "workspaces": ["staging"]});
    let created = apis[1].call(Method::POST, "/v1/service_token/", Some(body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let (deploy, deploy_id) = (text(&created.body["token"]), text(&created.body["id"]));

    for api in apis {
        assert_eq!(verify_as(api, &gateway).await, StatusCode::OK);
        assert_eq!(status_as(api, &gateway, "/v1/workspace/").await, StatusCode::FORBIDDEN);
        assert_eq!(status_as(api, &deploy, "/v1/staging/ws_api_key/").await, StatusCode::OK);
        assert_eq!(status_as(api, &deploy, "/v1/production/ws_api_key/").await, StatusCode::FORBIDDEN);
    }
    // The CLI lists both, masked.
    let listed = keysd(backend, &["token", "list", "--org", &organisation]).await;
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(!listed.contains(&gateway) && !listed.contains(&deploy), "a token in the CLI's list");
    let gateway_id = listed
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line"))
        .find(|token| token["name"] == "nginx" && token["role"] == "verify")
        .map(|token| text(&token["id"]))
        .expect("the gateway token is listed");

    // Revoked with the CLI: both replicas refuse it within a second.
    keysd(backend, &["token", "revoke", "--org", &organisation, &gateway_id]).await;
    let revoked_at = std::time::Instant::now();
    for api in apis {
        loop {
            match verify_as(api, &gateway).await {
                StatusCode::UNAUTHORIZED => break,
                StatusCode::OK => assert!(revoked_at.elapsed() < Duration::from_secs(1), "still accepted after 1 s"),
                other => panic!("unexpected {other}"),
            }
        }
    }
    // Revoked over the API through one replica: the other refuses it too.
    let revoked = apis[0].call(Method::DELETE, &format!("/v1/service_token/{deploy_id}/"), None).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.body);
    let revoked_at = std::time::Instant::now();
    loop {
        match status_as(&apis[1], &deploy, "/v1/staging/ws_api_key/").await {
            StatusCode::UNAUTHORIZED => break,
            StatusCode::OK => assert!(revoked_at.elapsed() < Duration::from_secs(1), "still accepted after 1 s"),
            other => panic!("unexpected {other}"),
        }
    }
    replicas.stop().await;
}

/// A key leaked to a public repository, across two replicas that both have
/// it cached: GitHub's signed alert through one replica disables it, and
/// both refuse it within a second; a forged alert changes nothing; the
/// audit trail names where it was found, never the key. The workspace's
/// keys carry its prefix, as a secret scanner would register it.
#[tokio::test]
async fn postgres_two_replicas_refuse_a_leaked_key_within_a_second() {
    let github = keys_crypto::github::GithubTestSigner::generate(&mut OsRng);
    let keys_file = std::env::temp_dir().join(format!("keysd-github-keys-{}.json", OsRng.next_u64()));
    std::fs::write(&keys_file, github.key_set_json("github-key-1")).expect("write the key file");
    let keys_flag = keys_file.to_str().expect("utf-8 path");
    let replicas = Replicas::start(&["--github-secret-scanning-keys", keys_flag]).await;
    let apis = &replicas.apis;

    let prefix = Some(json!({"api_key_prefix": "acme_live"}));
    let patched = apis[0].call(Method::PATCH, "/v1/workspace/staging/", prefix).await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let created = apis[1].call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "leaky"}))).await;
    let key = text(&created.body["api_key"]);
    assert!(key.starts_with("acme_live_") && key.len() == "acme_live_".len() + 43, "{key}");
    for api in apis {
        assert_eq!(api.verify("api_key", json!({"api_key": key})).await["valid"], true);
    }

    let url = "https://github.com/acme/app/blob/main/.env";
    let alert = json!([{"token": key, "type": "keysd_api_key", "url": url, "source": "content"}]).to_string();
    let path = "/v1/secret_scanning/github/";
    let forged = keys_crypto::github::GithubTestSigner::generate(&mut OsRng).sign(alert.as_bytes());
    for headers in [
        vec![("Github-Public-Key-Identifier", "github-key-1"), ("Github-Public-Key-Signature", forged.as_str())],
        vec![("Github-Public-Key-Identifier", "github-key-1")],
    ] {
        let refused = apis[1].post_signed(path, &headers, &alert).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    }
    for api in apis {
        assert_eq!(api.verify("api_key", json!({"api_key": key})).await["valid"], true, "a forged alert changed it");
    }

    let signature = github.sign(alert.as_bytes());
    let headers =
        [("Github-Public-Key-Identifier", "github-key-1"), ("Github-Public-Key-Signature", signature.as_str())];
    let labelled = apis[1].post_signed(path, &headers, &alert).await;
    assert_eq!(labelled.status, StatusCode::OK, "{}", labelled.body);
    assert_eq!(labelled.body, json!([{"token_raw": key, "token_type": "keysd_api_key", "label": "true_positive"}]));
    let reported_at = std::time::Instant::now();
    for api in apis {
        loop {
            let verdict = api.verify("api_key", json!({"api_key": key})).await;
            if verdict["valid"] == false {
                assert_eq!(verdict["reason"], "key_disabled");
                break;
            }
            assert!(reported_at.elapsed() < Duration::from_secs(1), "a replica still accepts the key after 1 s");
        }
    }
    let audit = apis[0].call(Method::GET, "/v1/audit_event/?action=api_key.leaked", None).await;
    assert_eq!(audit.body["results"][0]["detail"], format!("source={url}"), "{}", audit.body);
    assert_eq!(audit.body["results"][0]["actor"]["name"], "GitHub secret scanning");
    let trail = apis[0].call(Method::GET, "/v1/audit_event/?limit=100", None).await;
    assert!(!trail.body.to_string().contains(&key), "the key is in the audit trail");
    // Reported again: no longer live.
    let signature = github.sign(alert.as_bytes());
    let headers =
        [("Github-Public-Key-Identifier", "github-key-1"), ("Github-Public-Key-Signature", signature.as_str())];
    let again = apis[0].post_signed(path, &headers, &alert).await;
    assert_eq!(again.body[0]["label"], "false_positive", "{}", again.body);
    replicas.stop().await;
    let _ = std::fs::remove_file(keys_file);
}

/// `last_used_at` written by two replicas on one PostgreSQL (each flushing
/// every second): a key used through one replica only shows its use in
/// `GET` on both, and a key used through both never shows it go back,
/// whichever replica is asked, and ends at or after its last use.
#[tokio::test]
async fn postgres_two_replicas_write_last_used_at_forwards_only() {
    let replicas = Replicas::start(&["--last-used-interval-seconds", "1"]).await;
    let apis = &replicas.apis;
    let mut keys = Vec::new();
    for name in ["through-first", "through-second", "through-both"] {
        let created = apis[0].call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": name}))).await;
        assert_eq!(created.body["last_used_at"], Value::Null);
        keys.push((text(&created.body["api_key"]), text(&created.body["id"])));
    }

    // One use each through its own replica: both replicas write.
    for (index, api) in apis.iter().enumerate() {
        let used_at = time::OffsetDateTime::now_utc();
        assert_eq!(api.verdict(&keys[index].0).await, "valid");
        let written = apis[1 - index].last_used_within(&keys[index].1, Duration::from_secs(5)).await;
        assert!(written >= used_at - time::Duration::seconds(1), "{}: {written} before its use", keys[index].1);
    }

    // The shared key, used through both for a while, read through both.
    let (shared, shared_id) = &keys[2];
    let mut seen: Option<time::OffsetDateTime> = None;
    let mut last_use = time::OffsetDateTime::now_utc();
    for round in 0..12 {
        last_use = time::OffsetDateTime::now_utc();
        assert_eq!(apis[round % 2].verdict(shared).await, "valid");
        assert_eq!(apis[(round + 1) % 2].verdict(shared).await, "valid");
        for api in apis {
            let now = api.last_used_at(shared_id).await;
            assert!(now >= seen, "round {round}: last_used_at went back from {seen:?} to {now:?}");
            seen = now;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Within a couple of intervals the last use is written.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while apis[0].last_used_at(shared_id).await.is_none_or(|at| at < last_use - time::Duration::milliseconds(1)) {
        assert!(std::time::Instant::now() < deadline, "the last use was never written: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = apis[0].last_used_at(shared_id).await;
    assert_eq!(apis[1].last_used_at(shared_id).await, settled, "both replicas read one value");

    replicas.stop().await;
}

/// A graceful shutdown (SIGTERM) writes the uses recorded since the last
/// flush: with an interval far longer than the test, a use is not written
/// while the server runs, and is in the database once it has stopped.
async fn shutdown_flushes_pending_uses_journey(backend: Backend) {
    let server = Server::start(&backend, &["--last-used-interval-seconds", "3600"]).await;
    let api = server.client(server.token.as_deref().expect("bootstrap token"));
    let created = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "used-once"}))).await;
    let (secret, id) = (text(&created.body["api_key"]), text(&created.body["id"]));
    let unused = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "never-used"}))).await;
    let workspace = api.workspace_uid("staging").await;
    let used_at = time::OffsetDateTime::now_utc();
    assert_eq!(api.verdict(&secret).await, "valid");
    assert_eq!(api.last_used_at(&id).await, None, "written before its interval");
    server.stop().await;

    let store = backend.store().await;
    let workspace = keys_core::WorkspaceUid::parse(&workspace).expect("uid");
    let read = |id: String| {
        let (store, workspace) = (&store, &workspace);
        async move {
            let id = keys_core::ApiKeyId::parse(&id).expect("id");
            store.api_key(workspace, &id).await.expect("store").expect("the key").last_used_at
        }
    };
    let written = read(id).await.expect("the pending use was flushed at shutdown");
    assert!(written >= used_at - time::Duration::seconds(1), "{written} is before the use at {used_at}");
    assert_eq!(read(text(&unused.body["id"])).await, None);
    drop(store);
    backend.cleanup().await;
}

on_both_backends! {
    shutdown_flushes_pending_uses_journey => sqlite_shutdown_flushes_pending_uses, postgres_shutdown_flushes_pending_uses;
}

impl Api {
    /// The `reason` of a `/v1/verify/{kind}/` answer to `body`, or `valid`.
    async fn verdict_of(&self, kind: &str, body: Value) -> String {
        let answer = self.verify(kind, body).await;
        if answer["valid"] == true {
            return "valid".to_owned();
        }
        text(&answer["reason"])
    }

    /// Polls `/v1/verify/{kind}/` with `body` until it answers `reason`,
    /// answering only `valid` meanwhile, and no later than a second after
    /// `since`; returns how long after `since` it did.
    async fn refuses_within_a_second(
        &self,
        kind: &str,
        body: Value,
        reason: &str,
        since: std::time::Instant,
    ) -> Duration {
        loop {
            let seen = self.verdict_of(kind, body.clone()).await;
            if seen == reason {
                return since.elapsed();
            }
            assert_eq!(seen, "valid", "on the way to {reason}");
            assert!(since.elapsed() < Duration::from_secs(1), "still valid a second after the change to {reason}");
        }
    }

    /// The `reason` of verifying the API key `secret`, or `valid`.
    pub(crate) async fn verdict(&self, secret: &str) -> String {
        let body = self.verify("api_key", json!({"api_key": secret})).await;
        if body["valid"] == true {
            return "valid".to_owned();
        }
        text(&body["reason"])
    }

    /// Polls until verifying `secret` answers `after`, answering only
    /// `before` meanwhile, and no later than a second after `since`.
    pub(crate) async fn turns_within_a_second(
        &self,
        secret: &str,
        before: &str,
        after: &str,
        since: std::time::Instant,
    ) {
        loop {
            let verdict = self.verdict(secret).await;
            if verdict == after {
                return;
            }
            assert_eq!(verdict, before, "on the way to {after}");
            assert!(since.elapsed() < Duration::from_secs(1), "still {before} a second after the change to {after}");
        }
    }

    /// The `last_used_at` of the `staging` key `id`, as `GET` shows it.
    async fn last_used_at(&self, id: &str) -> Option<time::OffsetDateTime> {
        let got = self.call(Method::GET, &format!("/v1/staging/ws_api_key/{id}/"), None).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        let text = got.body["last_used_at"].as_str()?;
        Some(time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).expect("RFC 3339"))
    }

    /// Polls until the key `id` has a `last_used_at`, for at most `patience`.
    async fn last_used_within(&self, id: &str, patience: Duration) -> time::OffsetDateTime {
        let deadline = std::time::Instant::now() + patience;
        loop {
            if let Some(at) = self.last_used_at(id).await {
                return at;
            }
            assert!(std::time::Instant::now() < deadline, "{id}: no last_used_at after {patience:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs futures concurrently on this task and collects their outputs in
/// order.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut pending = handles.into_iter().enumerate().map(|(index, future)| (index, Some(future))).collect::<Vec<_>>();
    std::future::poll_fn(|context| {
        let mut all_done = true;
        for (index, slot) in pending.iter_mut() {
            if let Some(future) = slot {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(output) => {
                        outputs[*index] = Some(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(|output| output.expect("completed")).collect()
}

// ---------------------------------------------------------------- operator

#[tokio::test]
async fn clear_errors_for_bad_urls_and_busy_ports() {
    let bad_url = Command::new(BINARY)
        .args(["org", "create", "x", "--database-url", "mysql://nowhere/db"])
        .output()
        .await
        .expect("runs");
    assert!(!bad_url.status.success());
    let stderr = String::from_utf8_lossy(&bad_url.stderr);
    assert!(stderr.contains("unsupported database url"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = busy.local_addr().expect("address").to_string();
    let backend = Backend::sqlite();
    let in_use = Command::new(BINARY)
        .args(["serve", "--listen", &address, "--database-url", backend.url()])
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("runs");
    assert!(!in_use.status.success());
    let stderr = String::from_utf8_lossy(&in_use.stderr);
    assert!(stderr.contains(&format!("cannot listen on {address}")), "{stderr}");
    assert!(in_use.stdout.is_empty(), "nothing bootstrapped or printed");

    let missing = keysd_refused(&backend, &["token", "create", "--org", "nobody", "--name", "x"]).await;
    assert!(missing.contains("organisation 'nobody' not found"), "{missing}");
}

/// SIGTERM while a request is in flight: the listener closes, the request
/// still completes, then the process exits cleanly.
#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backend = Backend::sqlite();
    let server = Server::start(&backend, &[]).await;
    let token = server.token.clone().expect("token");
    let address = server.base.trim_start_matches("http://").to_owned();
    let body = r#"{"name":"in-flight"}"#;
    let mut stream = tokio::net::TcpStream::connect(&address).await.expect("connect");
    // One whole exchange first, so the server has certainly accepted this
    // connection: a connection still in the kernel's accept backlog when
    // SIGTERM arrives is never served, and the test would race that.
    stream.write_all(format!("GET /health HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes()).await.expect("health");
    let mut first = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("health answer within 10 s")
            .expect("read");
        assert!(read > 0, "connection closed before the health answer");
        first.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&first);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| line.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|value| value.parse::<usize>().ok())
                .unwrap_or(0);
            if first.len() >= end + 4 + length {
                break;
            }
        }
    }
    assert!(first.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&first));
    let head = format!(
        "POST /v1/staging/ws_api_key/ HTTP/1.1\r\nHost: {address}\r\nAuthorization: ServiceToken {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(&body.as_bytes()[..5]).await.expect("first bytes");
    stream.flush().await.expect("flush");

    let pid = server.child.id().expect("running");
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(status.success());
    // Wait (bounded) until the server stops accepting: then it is shutting
    // down with our request in flight.
    let mut closed = false;
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(&address).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(closed, "the listener closes on SIGTERM");

    stream.write_all(&body.as_bytes()[5..]).await.expect("rest of body");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("response within 30 s")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("in-flight"));

    let mut child = server.child;
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").expect("wait");
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn http2_and_limits_over_the_socket() {
    let backend = Backend::sqlite();
    let server = Server::start(&backend, &[]).await;
    let token = server.token.clone().expect("token");
    // HTTP/2 with prior knowledge.
    let h2: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).http2_only(true).build_http();
    let request = Request::get(format!("{}/v1/workspace/", server.base))
        .header(header::AUTHORIZATION, format!("ServiceToken {token}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = h2.request(request).await.expect("h2 response");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    // A body over 64 KiB.
    let api = server.client(&token);
    let big = json!({"name": "x", "description": "a".repeat(70 * 1024)});
    let reply = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(big)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.body["type"], "PayloadTooLarge");
    server.stop().await;
}

// ------------------------------------------- real client tokens, keysd sign

/// Runs Python (`KEYSD_PYTHON`, else `python3`) with PyJWT, an independent
/// JOSE implementation. A missing PyJWT fails the test: `cargo xtask ci`
/// installs it.
fn python(script: &str, args: &[&str]) -> String {
    let interpreter = std::env::var("KEYSD_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = std::process::Command::new(interpreter)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs (the suite needs it, with PyJWT: `cargo xtask ci` installs both)");
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

/// SuprSend's documented recipe, in PyJWT: no `kid` in the header.
const PYJWT_SUPRSEND_RECIPE: &str = r#"
import sys, time, jwt
pem = open(sys.argv[1]).read()
now = int(time.time())
payload = {"entity_type": "subscriber", "entity_id": "user-py", "exp": now + 600, "iat": now,
           "scope": {"tenant_id": "acme"}}
print(jwt.encode(payload, pem, algorithm="ES256"))
"#;

/// Verifies a token with PyJWT against a JWKS file (by `kid`, or the only
/// key) or a PEM file, and prints its claims.
const PYJWT_VERIFY: &str = r#"
import json, sys, jwt
token, key_file, algorithm = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(key_file).read()
if text.lstrip().startswith("{"):
    keys = json.loads(text)["keys"]
    kid = jwt.get_unverified_header(token).get("kid")
    jwk = next(k for k in keys if kid is None or k["kid"] == kid)
    key = jwt.PyJWK(jwk).key
else:
    key = text
print(json.dumps(jwt.decode(token, key, algorithms=[algorithm], options={"verify_aud": False})))
"#;

async fn client_tokens_journey(backend: Backend) {
    let server = Server::start(&backend, &[]).await;
    let api = server.client(server.token.as_deref().expect("bootstrap token printed"));
    let dir = backend.dir();

    let signing = api.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    let pem_file = dir.join("signing.pem");
    std::fs::write(&pem_file, text(&signing.body["private_key_pem"])).expect("write pem");
    let base64_file = dir.join("signing.b64");
    std::fs::write(&base64_file, text(&signing.body["private_key_base64"])).expect("write base64");
    let value = api.secure_public_key("web").await;

    // A token made by PyJWT the way SuprSend documents it (no kid) verifies.
    let pem_path = pem_file.to_str().expect("utf-8 path");
    let token = python(PYJWT_SUPRSEND_RECIPE, &[pem_path]);
    assert!(!token.is_empty());
    let verdict = api.verify("public_key", json!({"api_key": value, "user_token": token, "tenant_id": "acme"})).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["entity_id"], "user-py");

    // `keysd sign user-token` from the base64 form verifies with keysd, and
    // with PyJWT against the JWKS.
    let claims = ["--entity-id", "user-cli", "--tenant-id", "acme"];
    let signed = keysd_sign(&backend, "user-token", &base64_file, &claims).await;
    let verdict = api.verify("public_key", json!({"api_key": value, "user_token": signed, "tenant_id": "acme"})).await;
    assert_eq!(verdict["entity_id"], "user-cli", "{verdict}");
    let workspace_uid = api.workspace_uid("staging").await;
    let jwks = api.public(&format!("/v1/workspace/{workspace_uid}/jwks.json")).await;
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, jwks.body.to_string()).expect("write jwks");
    let claims: Value =
        serde_json::from_str(&python(PYJWT_VERIFY, &[&signed, jwks_file.to_str().expect("utf-8"), "ES256"]))
            .expect("claims");
    assert_eq!(claims["entity_id"], "user-cli");
    assert_eq!(claims["scope"]["tenant_id"], "acme");

    // `keysd sign jwt` for an organisation key verifies with keysd and PyJWT.
    let organisation = api.organisation_id("Org Probe").await;
    let created = api.create_organisation_key(&organisation, "backend").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    {
        let key_id = text(&created.body["id"]);
        let private_file = dir.join("organisation.pem");
        std::fs::write(&private_file, text(&created.body["privateKey"])).expect("write pem");
        let public_file = dir.join("organisation.pub.pem");
        std::fs::write(&public_file, text(&created.body["publicKey"])).expect("write pem");
        let jwt = keysd_sign(&backend, "jwt", &private_file, &["--key-id", &key_id, "--sub", "user-7"]).await;
        let verdict = api.verify("jwt", json!({"token": jwt})).await;
        assert_eq!(verdict["valid"], true, "{verdict}");
        assert_eq!(verdict["sub"], "user-7");
        let claims: Value =
            serde_json::from_str(&python(PYJWT_VERIFY, &[&jwt, public_file.to_str().expect("utf-8"), "RS256"]))
                .expect("claims");
        assert_eq!(claims["iss"], format!("https://versori.com/sk/{key_id}"));
    }
    server.stop().await;
    backend.cleanup().await;
}

on_both_backends! {
    client_tokens_journey => sqlite_client_tokens, postgres_client_tokens;
}

// ------------------------------------------ forward auth through a real nginx

/// An upstream that answers every request with the headers it received, as
/// a JSON object (lower-case names; repeated headers joined by `, `).
async fn start_echo_upstream() -> (u16, tokio::task::JoinHandle<()>) {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let port = listener.local_addr().expect("address").port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                    let mut seen = serde_json::Map::new();
                    for (name, value) in request.headers() {
                        let value = value.to_str().unwrap_or_default().to_owned();
                        let entry = seen.entry(name.as_str().to_owned()).or_insert(Value::String(String::new()));
                        let joined = match entry.as_str() {
                            Some("") | None => value,
                            Some(previous) => format!("{previous}, {value}"),
                        };
                        *entry = Value::String(joined);
                    }
                    let body = Full::new(Bytes::from(Value::Object(seen).to_string()));
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (port, task)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// The nginx configuration the README shows, pointed at this test's keysd
/// and upstream.
fn nginx_config(dir: &std::path::Path, listen: u16, keysd: &str, upstream: u16, gateway_token: &str) -> String {
    let dir = dir.display();
    let keysd = keysd.trim_start_matches("http://");
    format!(
        r#"daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    # The gateway's record of why keysd refused a request (X-Keysd-Reason):
    # the client is not told. `$http_x_probe` lets the test find its line.
    log_format keysd '$http_x_probe $status $keysd_reason';
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    fastcgi_temp_path {dir}/nginx-fastcgi;
    uwsgi_temp_path {dir}/nginx-uwsgi;
    scgi_temp_path {dir}/nginx-scgi;
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            auth_request /_keysd;
            # The identity keysd answered with, and nothing a client sent
            # under the same names.
            auth_request_set $keysd_organisation $upstream_http_x_keysd_organisation;
            auth_request_set $keysd_workspace $upstream_http_x_keysd_workspace;
            auth_request_set $keysd_key_id $upstream_http_x_keysd_key_id;
            auth_request_set $keysd_entity_id $upstream_http_x_keysd_entity_id;
            auth_request_set $keysd_subject $upstream_http_x_keysd_subject;
            auth_request_set $keysd_reason $upstream_http_x_keysd_reason;
            # Metering: the client's quota, and when to come back.
            auth_request_set $keysd_ratelimit_policy $upstream_http_ratelimit_policy;
            auth_request_set $keysd_ratelimit $upstream_http_ratelimit;
            auth_request_set $keysd_credits $upstream_http_x_keysd_credits_remaining;
            auth_request_set $keysd_retry_after $upstream_http_retry_after;
            add_header RateLimit-Policy $keysd_ratelimit_policy always;
            add_header RateLimit $keysd_ratelimit always;
            add_header X-Keysd-Credits-Remaining $keysd_credits always;
            error_page 403 = @keysd_forbidden;
            proxy_set_header X-Keysd-Organisation $keysd_organisation;
            proxy_set_header X-Keysd-Workspace $keysd_workspace;
            proxy_set_header X-Keysd-Key-Id $keysd_key_id;
            proxy_set_header X-Keysd-Entity-Id $keysd_entity_id;
            proxy_set_header X-Keysd-Subject $keysd_subject;
            proxy_set_header X-Keysd-External-Id "";
            proxy_set_header X-Keysd-Scopes "";
            proxy_set_header X-Keysd-Tenant-Id "";
            proxy_set_header X-Keysd-Service-Token "";
            access_log {dir}/gateway.log keysd;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        # keysd's 403s: a rate-limited client gets a 429 and when to retry.
        location @keysd_forbidden {{
            access_log {dir}/gateway.log keysd;
            if ($keysd_reason = rate_limited) {{
                add_header Retry-After $keysd_retry_after always;
                add_header RateLimit-Policy $keysd_ratelimit_policy always;
                add_header RateLimit $keysd_ratelimit always;
                return 429;
            }}
            return 403;
        }}
        location = /_keysd {{
            internal;
            proxy_pass http://{keysd}/v1/auth/forward;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Keysd-Service-Token "{gateway_token}";
            proxy_set_header X-Keysd-Gateway nginx;
            proxy_set_header X-Original-URI $request_uri;
        }}
    }}
}}
"#
    )
}

/// A running nginx, stopped on drop.
struct Nginx {
    /// Killed on drop.
    _child: Child,
    base: String,
    /// Where its configuration, logs and temporary files are.
    dir: PathBuf,
    /// Numbers the refused requests, to find each one's log line.
    probes: std::sync::atomic::AtomicU32,
}

impl Nginx {
    async fn start(dir: &std::path::Path, keysd: &str, upstream: u16, gateway_token: &str) -> Self {
        let port = free_port();
        let config = dir.join("nginx.conf");
        std::fs::write(&config, nginx_config(dir, port, keysd, upstream, gateway_token)).expect("write config");
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists())
            .expect("nginx is installed (the suite needs it: `cargo xtask ci` installs Debian's nginx)");
        let child = Command::new(binary)
            .args(["-p", &dir.display().to_string(), "-c", &config.display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        let address = format!("127.0.0.1:{port}");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return Self {
                    _child: child,
                    base: format!("http://{address}"),
                    dir: dir.to_path_buf(),
                    probes: std::sync::atomic::AtomicU32::new(0),
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nginx did not listen: {}", std::fs::read_to_string(dir.join("nginx-error.log")).unwrap_or_default());
    }

    async fn get(&self, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, Value) {
        let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut builder = Request::builder().method(Method::GET).uri(format!("{}/orders/42", self.base));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = http.request(builder.body(Full::new(Bytes::new())).expect("request")).await.expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A request nginx refuses: its status, and the reason keysd gave the
    /// gateway, read from the gateway's log. The client sees neither an
    /// `X-Keysd-Reason` nor a reason in `WWW-Authenticate`: a holder of a
    /// leaked key does not learn whether it is disabled, deleted or unknown.
    async fn refused(&self, headers: &[(&str, &str)]) -> (StatusCode, String) {
        let probe = format!("probe-{}", self.probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let mut sent = headers.to_vec();
        sent.push(("x-probe", probe.as_str()));
        let (status, client_headers, _) = self.get(&sent).await;
        assert!(client_headers.get("x-keysd-reason").is_none(), "the client was told the reason: {client_headers:?}");
        if let Some(challenge) = client_headers.get(header::WWW_AUTHENTICATE) {
            let challenge = challenge.to_str().expect("ascii");
            assert!(
                ["Bearer realm=\"keysd\"", "Bearer realm=\"keysd\", error=\"invalid_token\""].contains(&challenge),
                "the client's challenge says more than invalid_token: {challenge}"
            );
        }
        // nginx writes the line when the request ends, which may be a moment
        // after the client has the answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let log = std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default();
            let line = log.lines().find(|line| line.split(' ').next() == Some(probe.as_str()));
            if let Some(line) = line {
                let fields: Vec<&str> = line.split(' ').collect();
                assert_eq!(fields.get(1).copied(), Some(status.as_str()), "{line}");
                return (status, fields.get(2).copied().unwrap_or_default().to_owned());
            }
            assert!(std::time::Instant::now() < deadline, "no gateway log line for {probe}: {log}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn gateway_journey(backend: Backend) {
    let server = Server::start(&backend, &[]).await;
    let admin = server.token.clone().expect("bootstrap token printed");
    let api = server.client(&admin);
    let gateway_token =
        keysd(&backend, &["token", "create", "--org", "default", "--name", "nginx", "--role", "verify"]).await;
    let (upstream, upstream_task) = start_echo_upstream().await;
    let dir = backend.dir();
    let nginx = Nginx::start(dir, &server.base, upstream, &gateway_token).await;

    // An API key reaches the upstream with keysd's identity headers, and a
    // client's own X-Keysd-* headers never do.
    let created = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "backend"}))).await;
    let secret = text(&created.body["api_key"]);
    let key_id = text(&created.body["id"]);
    let bearer = format!("Bearer {secret}");
    let forged = [("authorization", bearer.as_str()), ("x-keysd-workspace", "production"), ("x-keysd-subject", "root")];
    let (status, _, seen) = nginx.get(&forged).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["x-keysd-workspace"], "staging", "{seen}");
    assert_eq!(seen["x-keysd-key-id"], key_id.as_str());
    assert!(seen.get("x-keysd-subject").is_none(), "a client-sent identity header reached the upstream: {seen}");
    assert!(seen.get("x-keysd-service-token").is_none(), "the gateway token reached the upstream: {seen}");
    for headers in [vec![("x-api-key", secret.as_str())], vec![("authorization", secret.as_str())]] {
        assert_eq!(nginx.get(&headers).await.0, StatusCode::OK);
    }

    // Refusals: a wrong key, no credential, garbage; the reason reaches the
    // gateway (its log), not the client.
    let wrong = "Bearer SS.notakeynotakeynotakeynotakeynotakeynotakey00";
    assert_eq!(nginx.refused(&[("authorization", wrong)]).await, (StatusCode::UNAUTHORIZED, "malformed".to_owned()));
    assert_eq!(nginx.refused(&[]).await, (StatusCode::UNAUTHORIZED, "credential_missing".to_owned()));

    // A public key with a user token made as SuprSend documents it (no kid),
    // sent as the web SDK sends it.
    let signing = api.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    let pem_file = dir.join("gateway-signing.pem");
    std::fs::write(&pem_file, text(&signing.body["private_key_pem"])).expect("write pem");
    let value = api.secure_public_key("web").await;
    let user_token = python(PYJWT_SUPRSEND_RECIPE, &[pem_file.to_str().expect("utf-8")]);
    let sdk =
        [("authorization", value.as_str()), ("x-ss-signature", user_token.as_str()), ("x-keysd-tenant-id", "acme")];
    let (status, _, seen) = nginx.get(&sdk).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["x-keysd-entity-id"], "user-py");
    assert_eq!(
        nginx.refused(&[("authorization", value.as_str())]).await,
        (StatusCode::UNAUTHORIZED, "user_token_required".to_owned())
    );

    // A Versori-style JWT.
    let organisation = api.organisation_id("Gateway Probe").await;
    let created = api.create_organisation_key(&organisation, "k").await;
    let private_file = dir.join("gateway-organisation.pem");
    std::fs::write(&private_file, text(&created.body["privateKey"])).expect("write pem");
    let organisation_key = text(&created.body["id"]);
    let jwt = keysd_sign(&backend, "jwt", &private_file, &["--key-id", &organisation_key, "--sub", "u-1"]).await;
    let (status, _, seen) = nginx.get(&[("authorization", &format!("JWT {jwt}"))]).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["x-keysd-subject"], "u-1");
    assert_eq!(nginx.get(&[("authorization", &format!("Bearer {jwt}"))]).await.0, StatusCode::OK);

    // Metering through nginx: a metered key's quota reaches the client;
    // past its limit the client gets a 429 with Retry-After (the gateway
    // logs `rate_limited`), past its credits a 403.
    let limits = json!([{"name": "gateway", "limit": 2, "duration_seconds": 60}]);
    let body = json!({"name": "metered", "ratelimits": limits, "credits": {"remaining": 3}});
    let metered = text(&api.call(Method::POST, "/v1/staging/ws_api_key/", Some(body)).await.body["api_key"]);
    let metered_bearer = format!("Bearer {metered}");
    let (status, headers, _) = nginx.get(&[("authorization", metered_bearer.as_str())]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("ratelimit-policy").and_then(|v| v.to_str().ok()), Some("\"gateway\";q=2;w=60"));
    assert_eq!(headers.get("x-keysd-credits-remaining").and_then(|v| v.to_str().ok()), Some("2"));
    assert_eq!(nginx.get(&[("authorization", metered_bearer.as_str())]).await.0, StatusCode::OK);
    let (status, headers, _) = nginx.get(&[("authorization", metered_bearer.as_str())]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{headers:?}");
    let retry: u64 =
        headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        nginx.refused(&[("authorization", metered_bearer.as_str())]).await,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".to_owned())
    );
    let spender = json!({"name": "spender", "credits": {"remaining": 1}});
    let spender = format!(
        "Bearer {}",
        text(&api.call(Method::POST, "/v1/staging/ws_api_key/", Some(spender)).await.body["api_key"])
    );
    assert_eq!(nginx.get(&[("authorization", spender.as_str())]).await.0, StatusCode::OK);
    assert_eq!(
        nginx.refused(&[("authorization", spender.as_str())]).await,
        (StatusCode::FORBIDDEN, "usage_exceeded".to_owned())
    );

    // A key deleted through the API is refused through nginx within a second.
    let deleted = api.call(Method::DELETE, &format!("/v1/staging/ws_api_key/{key_id}/"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    loop {
        let (status, _, _) = nginx.get(&[("authorization", bearer.as_str())]).await;
        if status == StatusCode::UNAUTHORIZED {
            // The client learns only that the key is refused; the gateway
            // that it was deleted.
            let refused = nginx.refused(&[("authorization", bearer.as_str())]).await;
            assert_eq!(refused, (StatusCode::UNAUTHORIZED, "key_deleted".to_owned()));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "deleted key still passes nginx after a second");
    }

    drop(nginx);
    upstream_task.abort();
    server.stop().await;
    backend.cleanup().await;
}

on_both_backends! {
    gateway_journey => sqlite_gateway_forward_auth_through_nginx, postgres_gateway_forward_auth_through_nginx;
}

// ------------------------------------------------------------ JWKS caching

/// A GET with headers, returning status, headers and the raw body.
async fn raw_get(base: &str, path: &str, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, Bytes) {
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder().method(Method::GET).uri(format!("{base}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = http.request(builder.body(Full::new(Bytes::new())).expect("request")).await.expect("response");
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body.collect().await.expect("body").to_bytes())
}

#[tokio::test]
async fn jwks_cache_correctly_for_outside_verifiers() {
    let backend = Backend::sqlite();
    let server = Server::start(&backend, &[]).await;
    let api = server.client(server.token.as_deref().expect("bootstrap token printed"));
    let workspace_uid = api.workspace_uid("staging").await;
    let path = format!("/v1/workspace/{workspace_uid}/jwks.json");
    let header = |headers: &http::HeaderMap, name: &str| {
        headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
    };

    let signing = api.call(Method::POST, "/v1/staging/ws_signing_key/", None).await;
    let kid = text(&signing.body["uid"]);
    let (status, headers, body) = raw_get(&server.base, &path, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "access-control-allow-origin"), "*");
    assert_eq!(header(&headers, "cache-control"), "public, max-age=60");
    let etag = header(&headers, "etag");
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert!(!body.is_empty());

    // The same document: 304 without a body; a stale tag gets the document.
    let (status, headers, body) = raw_get(&server.base, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(header(&headers, "etag"), etag);
    let (status, _, _) = raw_get(&server.base, &path, &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(status, StatusCode::OK);

    // After a roll with a 30 s grace, caches may not keep the document past
    // the rolled key's expiry; the tag changes with the key set.
    let rolled = api.roll(&kid, 30).await;
    assert_eq!(rolled.status, StatusCode::CREATED);
    let (status, headers, _) = raw_get(&server.base, &path, &[("if-none-match", &etag)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(header(&headers, "etag"), etag);
    let max_age: u32 =
        header(&headers, "cache-control").trim_start_matches("public, max-age=").parse().expect("max-age is a number");
    assert!((25..=30).contains(&max_age), "max-age {max_age} reaches past the rolled key's expiry");
    server.stop().await;
    backend.cleanup().await;
}

// ------------------------------------------------- embedding, beside keysd

/// The `embed` example (`examples/embed.rs`), built beside the binary by
/// `cargo test --all-targets`; built here when a narrower run did not.
fn embed_example() -> PathBuf {
    let example = std::path::Path::new(BINARY).parent().expect("target dir").join("examples/embed");
    if !example.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let built = std::process::Command::new(cargo)
            .args(["build", "--package", "keysd", "--example", "embed"])
            .status()
            .expect("cargo runs");
        assert!(built.success(), "the embed example builds");
    }
    example
}

/// `GET /whoami` of the embedding service with `credential`: status and
/// body.
async fn whoami(base: &str, credential: &str) -> (StatusCode, Value) {
    let http: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = Request::get(format!("{base}/whoami"))
        .header(header::AUTHORIZATION, format!("Bearer {credential}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = http.request(request).await.expect("response");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON"))
}

/// A service of its own that embeds keys-service on keysd's database
/// verifies an API key and an organisation-key JWT made through keysd, in
/// process, and refuses the key within a second of keysd disabling it and
/// the JWT within a second of keysd deleting its key.
async fn embedded_verifier_journey(backend: Backend) {
    let server = Server::start(&backend, &[]).await;
    let api = server.client(server.token.as_deref().expect("bootstrapped"));
    let created = api.call(Method::POST, "/v1/staging/ws_api_key/", Some(json!({"name": "embedded"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let (api_key, key_id) = (text(&created.body["api_key"]), text(&created.body["id"]));
    let organisation = api.organisation_id("embed probe").await;
    let organisation_key = api.create_organisation_key(&organisation, "embedded").await;
    assert_eq!(organisation_key.status, StatusCode::CREATED, "{}", organisation_key.body);
    let organisation_key_id = text(&organisation_key.body["id"]);
    let private_file = backend.dir().join("embedded.pem");
    std::fs::write(&private_file, text(&organisation_key.body["privateKey"])).expect("write pem");
    let jwt = keysd_sign(&backend, "jwt", &private_file, &["--key-id", &organisation_key_id, "--sub", "user-9"]).await;

    let mut embed = Command::new(embed_example())
        .args([backend.url(), "default", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the example starts");
    let mut lines = BufReader::new(embed.stdout.take().expect("stdout")).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("stdout") {
            if let Some(address) = line.strip_prefix("embed listening on ") {
                return address.trim().to_owned();
            }
        }
        panic!("the example exited before listening")
    })
    .await
    .expect("the example listens within a minute");

    let (status, who) = whoami(&base, &api_key).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!((who["kind"].as_str(), who["key_id"].as_str()), (Some("api_key"), Some(key_id.as_str())));
    assert_eq!(who["workspace"], "staging");
    let (status, who) = whoami(&base, &jwt).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!((who["kind"].as_str(), who["sub"].as_str()), (Some("jwt"), Some("user-9")));
    let (status, who) = whoami(&base, "SS.not-a-key").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{who}");

    // keysd disables the key: the embedder refuses it within a second.
    let disabled = api.call(Method::PATCH, &format!("/v1/staging/ws_api_key/{key_id}/disable/"), None).await;
    assert_eq!(disabled.status, StatusCode::ACCEPTED, "{}", disabled.body);
    let disabled_at = std::time::Instant::now();
    loop {
        match whoami(&base, &api_key).await {
            (StatusCode::UNAUTHORIZED, who) => {
                assert_eq!(who["reason"], "key_disabled");
                break;
            }
            (StatusCode::OK, _) => assert!(disabled_at.elapsed() < Duration::from_secs(1), "still valid after 1 s"),
            (other, who) => panic!("unexpected {other}: {who}"),
        }
    }
    // keysd deletes the organisation key: the JWT goes the same way.
    let path = format!("/api/organisations/v1/organisations/{organisation}/keys/{organisation_key_id}");
    let deleted = api.call(Method::DELETE, &path, None).await;
    assert!(deleted.status.is_success(), "{}", deleted.body);
    let deleted_at = std::time::Instant::now();
    loop {
        match whoami(&base, &jwt).await {
            (StatusCode::UNAUTHORIZED, _) => break,
            (StatusCode::OK, _) => assert!(deleted_at.elapsed() < Duration::from_secs(1), "still valid after 1 s"),
            (other, who) => panic!("unexpected {other}: {who}"),
        }
    }
    drop(embed);
    server.stop().await;
}

on_both_backends! {
    embedded_verifier_journey => sqlite_embedded_verifier, postgres_embedded_verifier;
}

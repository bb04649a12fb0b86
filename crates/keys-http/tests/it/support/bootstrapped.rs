//! An application on a fresh SQLite store, bootstrapped (organisation
//! `default`, workspaces `staging` and `production`), with its admin token:
//! what tests without a socket start from.

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use keys_http::{App, AppConfig};
use serde_json::Value;

/// A bootstrapped application and what a test needs to call it.
pub struct Bootstrapped {
    pub app: App,
    /// The bootstrap service token (role `admin`).
    pub token: String,
    /// The id of the organisation `default`.
    pub organisation: String,
    /// The database; deleted when dropped.
    pub db: keys_testkit::TestDb,
}

/// The application with the default configuration (and no RSA pool).
pub async fn bootstrapped_app() -> Bootstrapped {
    bootstrapped_app_with(AppConfig::default()).await
}

pub async fn bootstrapped_app_with(config: AppConfig) -> Bootstrapped {
    let db = keys_testkit::TestDb::sqlite();
    let app = App::new(db.store().await, config);
    let bootstrapped = app.service().bootstrap_if_empty().await.expect("bootstrap").expect("empty");
    Bootstrapped {
        token: bootstrapped.token.expose().to_owned(),
        organisation: bootstrapped.organisation.id.to_string(),
        app,
        db,
    }
}

impl Bootstrapped {
    /// A JSON request with the bootstrap token: the status and the JSON
    /// answer (`null` when the body is not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("ServiceToken {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("request");
        let response = self.app.handle(request).await;
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

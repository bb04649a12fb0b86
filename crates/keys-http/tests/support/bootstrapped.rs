//! An application on a fresh SQLite store, bootstrapped (organisation
//! `default`, workspaces `staging` and `production`), with its admin token:
//! what tests without a socket start from.

use std::sync::Arc;

use keys_http::{App, AppConfig};

/// The application, its bootstrap service token, and the directory that
/// holds its database (deleted when dropped).
pub async fn bootstrapped_app() -> (App, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    let store = keys_store::open(&url).await.expect("store opens");
    let app = App::new(Arc::clone(&store), AppConfig { rsa_pool_capacity: 0, ..AppConfig::default() });
    let token = app.service().bootstrap_if_empty().await.expect("bootstrap").expect("empty").token;
    (app, token.expose().to_owned(), dir)
}

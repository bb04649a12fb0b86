//! The baseline server: a minimal hyper 1 "hello" that reads the request
//! body and answers a small JSON document, built the way keysd serves
//! (hyper-util's auto builder on a multi-threaded tokio runtime), so the
//! difference to keysd is keysd's own work. Run as `xtask bench-hello ADDR`.

use std::convert::Infallible;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"valid":true,"hello":"world"}"#;

async fn hello(request: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the body like a real handler would.
    let _body = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Serves until killed, on `listen` (port 0 picks one); prints
/// `hello listening on http://ADDR`.
pub fn main(listen: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        println!("hello listening on http://{}", listener.local_addr()?);
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let (stream, _peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let connection =
                builder.serve_connection(TokioIo::new(stream), hyper::service::service_fn(hello)).into_owned();
            tokio::spawn(async move {
                let _ended = connection.await;
            });
        }
    })
}

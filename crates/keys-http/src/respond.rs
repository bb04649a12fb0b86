//! Successful answers: a JSON body ([`json`], [`json_bytes`]), a JSON body
//! that carries a secret or a private key ([`secret_json`], written into a
//! [`Wiped`] buffer that is zeroed when the body is dropped), and an empty
//! 204 ([`no_content`]). Failures are [`crate::error`]'s.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

use crate::error::ApiError;

/// A JSON response from already-serialised bytes.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON response from a serialisable value.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Full<Bytes>>, ApiError> {
    let body = serde_json::to_vec(value).map_err(|error| ApiError::internal("serialise response", &error))?;
    Ok(json_bytes(status, body))
}

/// A JSON response that carries a secret or a private key: the text is
/// written once into a buffer of its exact size (measured first, so no
/// reallocation leaves a copy behind) that is zeroed when the response body
/// is dropped, after hyper has written it.
pub fn secret_json<T: Serialize>(status: StatusCode, value: &T) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut counter = ByteCounter(0);
    serde_json::to_writer(&mut counter, value).map_err(|error| ApiError::internal("serialise response", &error))?;
    let mut buffer = Wiped(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut buffer.0, value).map_err(|error| ApiError::internal("serialise response", &error))?;
    let mut response = Response::new(Full::new(Bytes::from_owner(buffer)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// Counts what is written, for [`secret_json`]'s exact buffer.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes that are zeroed when dropped: the owner of a secret response's
/// body (`Bytes::from_owner` drops it with the last handle).
pub(crate) struct Wiped<B: AsMut<[u8]>>(pub B);

impl<B: AsMut<[u8]>> Drop for Wiped<B> {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self.0.as_mut());
    }
}

impl<B: AsMut<[u8]>> zeroize::ZeroizeOnDrop for Wiped<B> {}

impl AsRef<[u8]> for Wiped<Vec<u8>> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// An empty response (204).
pub fn no_content() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wiped_buffer_is_zeroed_when_dropped() {
        let mut bytes = *b"SS.secret-material";
        drop(Wiped(&mut bytes[..]));
        assert_eq!(bytes, [0; 18]);
    }

    #[tokio::test]
    async fn a_secret_response_is_the_json_text() {
        use http_body_util::BodyExt;
        let value = serde_json::json!({"api_key": "SS.abc", "n": [1, 2]});
        let response = secret_json(StatusCode::CREATED, &value).expect("serialises");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, serde_json::to_vec(&value).expect("json"));
    }
}

//! The operator console (`/console/`): a static page, its script and its
//! style sheet, compiled into the binary with `include_str!` (no Node.js at
//! build or run time). The page talks to the API with the service token
//! the operator signs in with; these routes themselves are public and hand
//! out nothing but the files. Every answer carries a strict
//! `Content-Security-Policy` (`default-src 'self'`: no inline script or
//! style, no other origin), `X-Frame-Options: DENY`,
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-cache`.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response};
use http_body_util::Full;

use crate::error::{ApiError, Dialect};
use crate::routing::{public, HttpResult, Operation, Payload, Public, Route, Tag, NOT_FOUND};

/// The console's files: name, media type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../console/index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("../../console/console.js")),
    ("usage.js", "text/javascript; charset=utf-8", include_str!("../../console/usage.js")),
    ("console.css", "text/css; charset=utf-8", include_str!("../../console/console.css")),
];

/// The policy of every console answer: only this origin's script, style,
/// images and API calls; no framing, no form posts elsewhere.
pub(crate) const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// The answer for one compiled-in file, with the console's headers
/// (`X-Content-Type-Options: nosniff` is the server's, on every answer).
fn asset(name: &str) -> HttpResult {
    let (_, media_type, content) = ASSETS
        .iter()
        .find(|(known, _, _)| *known == name)
        .ok_or_else(|| ApiError::NotFound(format!("console asset '{}' not found", super::echo(name))))?;
    let mut response = Response::new(Full::new(Bytes::from_static(content.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `GET /console/`: the page.
pub(crate) async fn index(_call: Public<'_>) -> HttpResult {
    asset("index.html")
}

/// `GET /console/{asset}`: one of the page's files (404 for any other).
pub(crate) async fn file(call: Public<'_>) -> HttpResult {
    asset(call.param(0))
}

/// `/console/`.
const INDEX: &[Operation] =
    &[Operation::new(Method::GET, "console", "The operator console", public!(index), (200, Payload::Html))
        .describe("A page that manages keys with the service token its operator signs in with.")
        .refuses(&[])];
/// `/console/{asset}`.
const FILE: &[Operation] = &[Operation::new(
    Method::GET,
    "console-asset",
    "A file of the console",
    public!(file),
    (200, Payload::ConsoleAsset),
)
.describe("`index.html`, `console.js`, `usage.js` or `console.css`; any other name is a 404.")
.refuses(&[NOT_FOUND])];

/// The console's page and files.
pub(crate) static ROUTES: &[Route] = &[
    Route::new("/console/", Dialect::SuprSend, Tag::Operations, INDEX),
    Route::new("/console/{asset}", Dialect::SuprSend, Tag::Operations, FILE),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_has_its_type_and_the_strict_headers() {
        for (name, media_type, content) in ASSETS {
            let response = asset(name).expect("a known asset");
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], *media_type, "{name}");
            assert_eq!(headers[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY, "{name}");
            assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'self';"));
            assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "{name}");
            assert_eq!(headers[header::REFERRER_POLICY], "no-referrer", "{name}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{name}");
            assert!(!content.is_empty(), "{name}");
        }
    }

    #[test]
    fn an_unknown_asset_is_a_404() {
        for name in ["x", "../Cargo.toml", "index.htm", "", "console.js.map"] {
            let error = asset(name).expect_err(name);
            assert!(matches!(error, ApiError::NotFound(_)), "{name}: {error:?}");
        }
    }

    #[test]
    fn the_scripts_keep_nothing_outside_the_tab_and_log_nothing() {
        for (name, _, content) in ASSETS.iter().filter(|(name, _, _)| name.ends_with(".js")) {
            // The one `console.` is the name of the sessionStorage entry.
            let script = content.replace("'keysd.console.token'", "");
            for forbidden in
                ["localStorage", "document.cookie", "console.", "innerHTML", "eval(", "http://", "https://"]
            {
                assert!(!script.contains(forbidden), "{name} uses {forbidden}");
            }
        }
    }

    #[test]
    fn the_page_has_no_inline_script_style_or_handler() {
        let page = ASSETS[0].2;
        assert!(page.contains(r#"<script src="console.js""#), "the script is a file");
        assert!(!page.contains("<style"), "no inline style element");
        assert!(!page.contains(" style="), "no style attribute");
        for (at, _) in page.match_indices(" on") {
            let rest: String = page[at + 3..].chars().take_while(char::is_ascii_alphabetic).collect();
            let after = page[at + 3 + rest.len()..].chars().next();
            assert!(rest.is_empty() || after != Some('='), "an inline handler: on{rest}=");
        }
        for script in page.split("<script").skip(1) {
            let open_tag = script.split('>').next().unwrap_or_default();
            assert!(open_tag.contains("src="), "an inline script: <script{open_tag}>");
        }
        assert!(!page.contains("http://") && !page.contains("https://"), "no other origin");
    }
}

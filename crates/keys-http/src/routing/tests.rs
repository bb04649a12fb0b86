//! The router's tests, against the server's own table
//! ([`crate::handlers::ROUTES`]): kept out of the `routing` module, which
//! knows no resource.

use super::route::MAX_PARAMS;
use super::router::{segments_of, Matched, Segment, MAX_SEGMENTS};
use crate::handlers::ROUTES;

fn resolve(path: &str) -> Option<Matched<'_>> {
    ROUTES.resolve(path)
}

fn pattern(path: &str) -> Option<&'static str> {
    resolve(path).map(|matched| matched.route.pattern())
}

#[test]
fn resolves_with_and_without_trailing_slash() {
    for path in ["/v1/staging/ws_api_key/", "/v1/staging/ws_api_key"] {
        let matched = resolve(path).expect("routed");
        assert_eq!(matched.route.pattern(), "/v1/{workspace}/ws_api_key/");
        assert_eq!(matched.param(0), "staging");
    }
    let roll = resolve("/v1/prod/ws_signing_key/signing_key_X/roll/").expect("routed");
    assert_eq!(roll.route.pattern(), "/v1/{workspace}/ws_signing_key/{signing_key_uid}/roll/");
    assert_eq!(roll.params(), ["prod", "signing_key_X"]);
}

#[test]
fn json_documents_have_no_trailing_slash() {
    assert_eq!(pattern("/openapi.json"), Some("/openapi.json"));
    assert_eq!(pattern("/openapi.json/"), None);
    assert_eq!(pattern("/v1/workspace/wksp_X/jwks.json/"), None);
}

#[test]
fn rejects_empty_segments_and_unknown_paths() {
    for path in ["", "/", "//v1/workspace/", "/v1//ws_api_key/", "/v2/workspace/", "/v1/a/b/c/d/e/f"] {
        assert_eq!(resolve(path), None, "{path}");
    }
}

#[test]
fn literal_segments_win_over_parameters() {
    assert_eq!(pattern("/v1/verify/jwt/"), Some("/v1/verify/jwt/"));
    assert_eq!(pattern("/v1/verify/api_key"), Some("/v1/verify/api_key/"));
    assert_eq!(pattern("/v1/workspace/"), Some("/v1/workspace/"));
    // Both `/v1/workspace/{uid}/jwks.json` and `/v1/{workspace}/ws_api_key/{id}/`
    // fit; the literal `workspace` decides.
    assert_eq!(pattern("/v1/workspace/ws_api_key/jwks.json"), Some("/v1/workspace/{workspace_uid}/jwks.json"));
    assert_eq!(pattern("/v1/verify/ws_api_key/"), Some("/v1/{workspace}/ws_api_key/"));
}

#[test]
fn every_pattern_resolves_to_its_route() {
    for route in ROUTES {
        let concrete = route
            .pattern()
            .split('/')
            .map(|segment| if segment.starts_with('{') { "x" } else { segment })
            .collect::<Vec<_>>()
            .join("/");
        assert_eq!(pattern(&concrete), Some(route.pattern()), "{concrete}");
    }
}

#[test]
fn templates_fit_the_bounds_and_are_unique() {
    let mut seen = std::collections::HashSet::new();
    for route in ROUTES {
        let segments = segments_of(route.pattern);
        assert!(segments.len() <= MAX_SEGMENTS, "{}", route.pattern);
        let params = segments.iter().filter(|segment| **segment == Segment::Parameter).count();
        assert!(params <= MAX_PARAMS, "{}", route.pattern);
        assert!(seen.insert(segments), "{} duplicates another template", route.pattern);
        assert!(route.pattern.starts_with('/'));
    }
}

#[test]
fn parameters_are_bound_in_path_order() {
    let matched = resolve("/api/organisations/v1/organisations/ORG/keys/KEY").expect("routed");
    assert_eq!(matched.params(), ["ORG", "KEY"]);
    assert_eq!(matched.param(2), "");
}

//! The router: a request path → a [`Route`] of [`ROUTES`] and its path
//! parameters.
//!
//! The table's templates are split once, at first use, into literal and
//! parameter segments and grouped by segment count; resolving a path then
//! compares its segments (held on the stack), last first, with the few
//! templates of the same length, and the parameters borrow the path:
//! nothing is allocated per request. Within a length, templates are ordered so that a literal
//! segment wins over a parameter at the first position where two templates
//! differ (`/v1/verify/jwt/` is never the workspace `verify`), whatever the
//! order of the table.
//!
//! Resource paths of dialect 1 end in `/` as in the seeds, and the same path
//! without it is accepted too (every template matches with or without a
//! final `/`); `.json` documents are served only without it; an empty
//! segment (`//`) matches nothing. Methods are the dispatcher's business:
//! a path resolves regardless of method.

use std::sync::LazyLock;

pub use crate::route::MAX_PARAMS;
use crate::routes::{Route, ROUTES};

/// The most segments a path can have and still match a route.
const MAX_SEGMENTS: usize = 8;

/// A resolved path: the route and its parameters in path order, borrowed
/// from the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched<'path> {
    pub route: &'static Route,
    params: [&'path str; MAX_PARAMS],
}

impl<'path> Matched<'path> {
    /// The `index`-th path parameter (empty when the template has fewer).
    pub fn param(&self, index: usize) -> &'path str {
        self.params.get(index).copied().unwrap_or_default()
    }

    /// The parameters, as many as the template has.
    pub fn params(&self) -> [&'path str; MAX_PARAMS] {
        self.params
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Segment {
    Literal(&'static str),
    Parameter,
}

#[derive(Debug)]
struct Template {
    route: &'static Route,
    segments: Vec<Segment>,
    /// How many of the segments are parameters.
    parameters: usize,
}

/// The templates by segment count.
struct Compiled {
    by_length: [Vec<Template>; MAX_SEGMENTS + 1],
    /// The templates that answer any path below them too.
    prefixes: Vec<&'static str>,
}

/// The segments of a template: `{name}` is a parameter, anything else a
/// literal; the final `/` of resource paths is not a segment.
fn segments_of(pattern: &'static str) -> Vec<Segment> {
    let rest = pattern.strip_prefix('/').unwrap_or(pattern);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/')
        .map(|segment| if segment.starts_with('{') { Segment::Parameter } else { Segment::Literal(segment) })
        .collect()
}

static COMPILED: LazyLock<Compiled> = LazyLock::new(|| {
    let mut by_length: [Vec<Template>; MAX_SEGMENTS + 1] = Default::default();
    for route in ROUTES {
        let segments = segments_of(route.pattern);
        // A template longer than a path can be would never match; the
        // unit tests keep every template within the bounds.
        if let Some(group) = by_length.get_mut(segments.len()) {
            let parameters = segments.iter().filter(|segment| **segment == Segment::Parameter).count();
            group.push(Template { route, segments, parameters });
        }
    }
    for group in &mut by_length {
        // Stable: templates that compare equal keep the table's order.
        group.sort_by(|left, right| {
            let kind = |segment: &Segment| match segment {
                Segment::Literal(_) => 0,
                Segment::Parameter => 1,
            };
            left.segments.iter().map(kind).cmp(right.segments.iter().map(kind))
        });
    }
    let prefixes = ROUTES.iter().filter(|route| route.any_method).map(|route| route.pattern).collect();
    Compiled { by_length, prefixes }
});

/// Resolves a path (without query) to a route, regardless of method.
pub fn resolve(path: &str) -> Option<Matched<'_>> {
    // Gateways that append the client's path to the auth service's (Envoy's
    // `path_prefix`) reach forward authentication too.
    for prefix in &COMPILED.prefixes {
        if path.len() > prefix.len() && path.starts_with(prefix) && path[prefix.len()..].starts_with('/') {
            return resolve(prefix);
        }
    }
    let rest = path.strip_prefix('/')?;
    let (rest, trailing_slash) = match rest.strip_suffix('/') {
        Some(stripped) => (stripped, true),
        None => (rest, false),
    };
    if rest.is_empty() {
        return None;
    }
    // The segments fit on the stack (this runs for every request); a path
    // with more than any template has matches none.
    let mut buffer = [""; MAX_SEGMENTS];
    let mut count = 0;
    for segment in rest.split('/') {
        if segment.is_empty() {
            return None;
        }
        match buffer.get_mut(count) {
            Some(slot) => *slot = segment,
            None => return None,
        }
        count += 1;
    }
    let segments = &buffer[..count];
    if trailing_slash && segments.last().is_some_and(|last| last.ends_with(".json")) {
        return None;
    }
    let candidates = COMPILED.by_length.get(count)?;
    'templates: for template in candidates {
        let mut params = [""; MAX_PARAMS];
        let mut next_param = template.parameters;
        // From the last segment back: templates of one length mostly differ
        // at the end (`…/api_key`, `…/jwt`), so a mismatch shows at once.
        for (expected, actual) in template.segments.iter().zip(segments).rev() {
            match expected {
                Segment::Literal(literal) if literal == actual => {}
                Segment::Literal(_) => continue 'templates,
                Segment::Parameter => {
                    next_param = next_param.saturating_sub(1);
                    if let Some(slot) = params.get_mut(next_param) {
                        *slot = actual;
                    }
                }
            }
        }
        return Some(Matched { route: template.route, params });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

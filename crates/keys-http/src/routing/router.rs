//! The router: a request path → a [`Route`] of a table ([`Routes`]) and its
//! path parameters.
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

use super::route::{Route, MAX_PARAMS};
use super::table::Routes;

/// The most segments a path can have and still match a route.
pub(super) const MAX_SEGMENTS: usize = 8;

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
pub(super) enum Segment {
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

/// A table's templates by segment count, compiled once
/// ([`Routes::resolve`] keeps it).
pub struct Router {
    by_length: [Vec<Template>; MAX_SEGMENTS + 1],
    /// The templates that answer any path below them too.
    prefixes: Vec<&'static str>,
}

/// The segments of a template: `{name}` is a parameter, anything else a
/// literal; the final `/` of resource paths is not a segment.
pub(super) fn segments_of(pattern: &'static str) -> Vec<Segment> {
    let rest = pattern.strip_prefix('/').unwrap_or(pattern);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split('/')
        .map(|segment| if segment.starts_with('{') { Segment::Parameter } else { Segment::Literal(segment) })
        .collect()
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").field("prefixes", &self.prefixes).finish_non_exhaustive()
    }
}

impl Router {
    /// The router of a table.
    pub(crate) fn new(routes: &'static Routes) -> Self {
        let mut by_length: [Vec<Template>; MAX_SEGMENTS + 1] = Default::default();
        for route in routes {
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
        let prefixes = routes.iter().filter(|route| route.any_method).map(|route| route.pattern).collect();
        Self { by_length, prefixes }
    }

    /// Resolves a path (without query) to a route, regardless of method.
    pub fn resolve<'path>(&self, path: &'path str) -> Option<Matched<'path>> {
        // Gateways that append the client's path to the auth service's (Envoy's
        // `path_prefix`) reach forward authentication too.
        for prefix in &self.prefixes {
            if path.len() > prefix.len() && path.starts_with(prefix) && path[prefix.len()..].starts_with('/') {
                return self.resolve(prefix);
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
        let candidates = self.by_length.get(count)?;
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
}

//! The route table: every route of the server, gathered from the resource
//! modules that declare them beside their handlers (see [`crate::route`]
//! for what a route is). The router ([`crate::router`]) resolves paths
//! against [`ROUTES`], the dispatcher runs the operation's handler, the
//! metrics label requests with the template, and `/openapi.json`
//! ([`crate::openapi`]) is generated from the same values.

pub use crate::route::{Auth, Operation, Route, Tag};
pub(crate) use crate::route::{Body, Payload, Query};

use crate::handlers::{
    api_keys, audit_events, console, forward_auth, ops, organisation_keys, public_keys, service_tokens, signing_keys,
    verification, workspaces,
};

/// Every route of the server, resource by resource. The router prefers
/// literal segments over parameters whatever the order here.
pub static ROUTES: &Routes = &Routes(&[
    ops::ROUTES,
    workspaces::ROUTES,
    service_tokens::ROUTES,
    api_keys::ROUTES,
    public_keys::ROUTES,
    signing_keys::ROUTES,
    forward_auth::ROUTES,
    verification::ROUTES,
    organisation_keys::ROUTES,
    audit_events::ROUTES,
    console::ROUTES,
]);

/// The routes of the resource modules, in table order.
#[derive(Debug)]
pub struct Routes(&'static [&'static [Route]]);

impl Routes {
    pub fn iter(&'static self) -> impl Iterator<Item = &'static Route> + Clone {
        self.0.iter().flat_map(|group| group.iter())
    }

    pub fn len(&'static self) -> usize {
        self.0.iter().map(|group| group.len()).sum()
    }

    pub fn is_empty(&'static self) -> bool {
        self.len() == 0
    }
}

impl IntoIterator for &'static Routes {
    type Item = &'static Route;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'static, &'static [Route]>,
        &'static [Route],
        fn(&&'static [Route]) -> &'static [Route],
    >;

    fn into_iter(self) -> Self::IntoIter {
        fn group(routes: &&'static [Route]) -> &'static [Route] {
            routes
        }
        self.0.iter().flat_map(group as fn(&&'static [Route]) -> &'static [Route])
    }
}

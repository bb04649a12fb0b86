//! [`Routes`]: a route table, the groups of [`Route`]s the resource modules
//! declare, in table order. The table itself, [`crate::handlers::ROUTES`],
//! is gathered where the resource modules are; the router, the dispatcher,
//! the metrics and `/openapi.json` ([`crate::openapi`]) all read it. A table
//! resolves paths against its own templates ([`Routes::resolve`]), which it
//! compiles into a [`Router`] on first use.

use std::sync::OnceLock;

use super::route::Route;
use super::router::{Matched, Router};

/// The routes of the resource modules, in table order.
#[derive(Debug)]
pub struct Routes {
    groups: &'static [&'static [Route]],
    router: OnceLock<Router>,
}

impl Routes {
    /// A table of these groups (a `const`, so the table is a `static`).
    pub(crate) const fn new(groups: &'static [&'static [Route]]) -> Self {
        Self { groups, router: OnceLock::new() }
    }

    pub fn iter(&'static self) -> impl Iterator<Item = &'static Route> + Clone {
        self.groups.iter().flat_map(|group| group.iter())
    }

    pub fn len(&'static self) -> usize {
        self.groups.iter().map(|group| group.len()).sum()
    }

    pub fn is_empty(&'static self) -> bool {
        self.len() == 0
    }

    /// Resolves a path (without query) to a route of the table, regardless
    /// of method (see [`Router::resolve`]).
    pub fn resolve<'path>(&'static self, path: &'path str) -> Option<Matched<'path>> {
        self.router.get_or_init(|| Router::new(self)).resolve(path)
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
        self.groups.iter().flat_map(group as fn(&&'static [Route]) -> &'static [Route])
    }
}

//! Routing, in one place: what a route is ([`route`]: a path template, its
//! dialect and tag, and per method an [`Operation`] with its handler, what
//! it reads and what it answers), what a handler reads of a request
//! ([`input`]), the table type ([`table`]: [`Routes`]) and how a path finds
//! its route ([`router`]).
//!
//! This module knows what a route is, not which routes exist: each resource
//! module under [`crate::handlers`] declares its routes beside its handlers,
//! and [`crate::handlers::ROUTES`] gathers them into the one table. So the
//! handlers import this module and this module imports no handler.

pub(crate) mod input;
pub(crate) mod route;
pub(crate) mod router;
pub(crate) mod table;
#[cfg(test)]
mod tests;

pub(crate) use input::Input;
pub(crate) use route::{
    authenticated, public, signed, Authenticated, Body, Caller, Handler, HttpResult, Payload, Public, Query, Signed,
    BAD_REQUEST, CONFLICT, NOT_FOUND,
};
pub use route::{Auth, Operation, Route, Tag, MAX_PARAMS};
pub use router::Matched;
pub use table::Routes;

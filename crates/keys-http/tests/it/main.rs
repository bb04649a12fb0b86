//! keys-http's integration tests, one binary (each test binary links the
//! whole server): the application called in process, with in-memory bodies
//! and no socket, on a real SQLite file or PostgreSQL database. The binary
//! end to end is the `keysd` crate's.

mod console_assets;
mod forward_auth;
mod handlers;
mod leaks;
mod metering;
mod openapi;
mod origins;
mod rate_limit;
mod responses;
mod routes;
mod support;
mod token_policy;
mod usage;

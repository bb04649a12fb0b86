//! Dev-only fixtures shared by the tests of keys-store, keys-service and
//! keys-http, so that each is written once:
//!
//! - [`TestDb`]: a fresh database per test, a real SQLite file in a
//!   temporary directory or a `keysd_test_<random>` PostgreSQL database on
//!   `KEYSD_TEST_DATABASE_URL` (default [`DEFAULT_ADMIN_URL`]), dropped
//!   with it. PostgreSQL being unreachable fails the test; it never skips.
//! - [`World`]: deterministic entities (seeded randomness, a clock that
//!   moves only when told to) for the store's contract suite.
//! - [`Tenant`]: an organisation, its workspaces and a real service token,
//!   bootstrapped into a store or added to it as `keysd org create` and
//!   `keysd token create` do.
//! - [`TestClock`] and [`SeededEntropy`]: the injected sources of a
//!   `keys_service::Service` under test.
//!
//! Only `[dev-dependencies]` name this crate; it may use every layer.

mod database;
mod sources;
mod tenant;
mod world;

pub use database::{Kind, TestDb, DEFAULT_ADMIN_URL, LONG_TTL};
pub use sources::{SeededEntropy, TestClock};
pub use tenant::{Tenant, TenantWorkspace};
pub use world::{name_of, World};

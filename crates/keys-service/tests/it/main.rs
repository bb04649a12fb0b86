//! keys-service's integration tests, one binary: the use cases on a real
//! SQLite file or PostgreSQL database, with a `TestClock` and seeded
//! entropy where time and randomness matter.

mod fixture;
mod imports;
mod rsa_quota;
mod usage;
mod use_cases;
mod warm_path;
mod webhooks;

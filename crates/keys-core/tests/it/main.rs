//! keys-core's integration tests, one binary: every transition and
//! decision of the domain (`transitions`) and a model of key lifecycles
//! driven by proptest (`lifecycle_model`); metering's values, calendar and
//! decision (`metering`), its reference model (`metering_model`) and the
//! counters replicas share (`metering_pool`), through the public API only.

mod common;
mod leaks;
mod lifecycle_model;
mod metering;
mod metering_model;
mod metering_pool;
mod transitions;

//! keys-core's integration tests, one binary: every transition and
//! decision of the domain (`transitions`) and a model of key lifecycles
//! driven by proptest (`lifecycle_model`); metering's values, calendar and
//! decision (`metering`) and its reference model (`metering_model`),
//! through the public API only.

mod common;
mod leaks;
mod lifecycle_model;
mod metering;
mod metering_model;
mod transitions;

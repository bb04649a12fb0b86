//! What several test modules share: an application bootstrapped as `keysd
//! serve` would be, the OpenAPI checks (the generated document judged by
//! Python's validators), and concrete paths for route templates.

pub mod bootstrapped;
pub mod openapi_check;
pub mod paths;

//! The `keysd` binary end to end, one test binary: each module starts the
//! real binary (SQLite in a temporary directory, or PostgreSQL) and talks
//! to it as its users do: over sockets (`e2e`, `hostile`) or through its
//! command line (`audit_cli`).

mod audit_cli;
mod backup;
mod config;
mod e2e;
mod hostile;
mod import;
mod metering;
mod shutdown;
mod tls;
mod upgrade;
mod usage;
mod webhooks;

//! Opening the store, and the one-line messages of what goes wrong.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use keys_core::{Organisation, Quotas};
use keys_service::{Service, ServiceConfig, ServiceError};
use keys_store::{CacheConfig, Migrations, Store, StoreError};

/// The use cases over the uncached store: operator commands write and exit.
pub async fn open_service(url: &str) -> anyhow::Result<Service> {
    let store = keys_store::open(url).await.map_err(|error| open_error(url, error))?;
    Ok(Service::new(store, ServiceConfig::default()))
}

/// As [`open_service`], held to `quotas` instead of the default caps.
pub async fn open_service_with(url: &str, quotas: Quotas) -> anyhow::Result<Service> {
    let store = open_cached_store(url, CacheConfig::disabled(), quotas, Migrations::Apply).await?;
    Ok(Service::new(store, ServiceConfig::default()))
}

pub async fn open_cached_store(
    url: &str,
    cache: CacheConfig,
    quotas: Quotas,
    migrations: Migrations,
) -> anyhow::Result<Arc<dyn Store>> {
    keys_store::open_cached_with(url, cache, quotas, migrations).await.map_err(|error| open_error(url, error))
}

/// `keysd migrate`: applies the pending migrations and says where the
/// schema stands.
pub async fn migrate(url: &str) -> anyhow::Result<keys_store::SchemaStatus> {
    keys_store::migrate(url).await.map_err(|error| open_error(url, error))
}

fn open_error(url: &str, error: StoreError) -> anyhow::Error {
    match error {
        StoreError::UnsupportedUrl => {
            anyhow!("unsupported database url '{}' (expected sqlite://PATH or postgres://…)", redact_url(url))
        }
        StoreError::Schema(refusal) => anyhow!("cannot serve database {}: {refusal}", redact_url(url)),
        other => anyhow!("cannot open database {}: {other}", redact_url(url)),
    }
}

pub fn service_error(error: ServiceError) -> anyhow::Error {
    match error {
        ServiceError::Store(StoreError::Refused(refusal)) => anyhow!("{refusal}"),
        other => anyhow!("{other}"),
    }
}

/// `--org` takes an organisation id or its name.
pub async fn find_organisation(service: &Service, reference: &str) -> anyhow::Result<Organisation> {
    match service.find_organisation(reference).await.map_err(service_error)? {
        Some(organisation) => Ok(organisation),
        None => bail!("organisation '{reference}' not found"),
    }
}

/// The URL with any password replaced, for error messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(authority, path)| (authority, path));
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{credentials}@{host}"),
        },
        None => authority.to_owned(),
    };
    if rest.contains('/') {
        format!("{scheme}://{authority}/{path}")
    } else {
        format!("{scheme}://{authority}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact_url("postgres://user:secret@db:5432/keys"), "postgres://user:***@db:5432/keys");
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/test"), "postgres://postgres@127.0.0.1/test");
        assert_eq!(redact_url("sqlite://keysd.db"), "sqlite://keysd.db");
        assert_eq!(redact_url("nonsense"), "nonsense");
    }
}

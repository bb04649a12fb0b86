//! The operator's use cases: the first state of an empty database and
//! organisations (service tokens are in [`crate::service_tokens`]). The `keysd` CLI calls them directly on
//! the database; they work while a `keysd serve` runs on it.

use keys_core::{
    CoreError, Mode, Name, NewServiceToken, NewWorkspace, Organisation, OrganisationId, ServiceTokenRecord, Workspace,
    WorkspaceSlug,
};
use keys_crypto::ServiceToken;
use keys_store::{Bootstrap, StoreError};

use crate::{Service, ServiceResult};

/// What [`Service::bootstrap_if_empty`] wrote, when it did.
#[derive(Debug)]
pub struct Bootstrapped {
    pub organisation: Organisation,
    pub workspaces: Vec<Workspace>,
    pub token: ServiceToken,
}

fn refused(error: CoreError) -> StoreError {
    StoreError::Refused(error)
}

impl Service {
    /// On an empty database: organisation `default` with workspaces
    /// `staging` (sandbox) and `production`, and one service token. Safe when
    /// several processes start at once: exactly one bootstraps, the others
    /// get `None`.
    pub async fn bootstrap_if_empty(&self) -> ServiceResult<Option<Bootstrapped>> {
        let now = self.now();
        let mut rng = self.rng();
        let organisation = Organisation::create(
            OrganisationId::generate(now, &mut rng),
            Name::parse("default").map_err(refused)?,
            now,
        );
        let mut workspaces = Vec::new();
        for (slug, mode) in [("staging", Mode::Sandbox), ("production", Mode::Production)] {
            let new = NewWorkspace {
                name: Name::parse(slug).map_err(refused)?,
                slug: Some(WorkspaceSlug::parse(slug).map_err(refused)?),
                description: None,
                mode: Some(mode),
            };
            workspaces.push(Workspace::create(organisation.id.clone(), new, None, now, &mut rng).map_err(refused)?);
        }
        let token = ServiceToken::generate(&mut rng);
        let material = crate::service_tokens::material(&token, now, &mut rng);
        let new = NewServiceToken::admin(Name::parse("bootstrap").map_err(refused)?);
        let record = ServiceTokenRecord::create(material, &organisation, new, None, now).map_err(refused)?;
        let bootstrap = Bootstrap { organisation, workspaces, token: record };
        if !self.store.bootstrap_if_empty(&bootstrap).await? {
            return Ok(None);
        }
        Ok(Some(Bootstrapped { organisation: bootstrap.organisation, workspaces: bootstrap.workspaces, token }))
    }

    /// A new organisation with no workspaces; its name must be unused.
    pub async fn create_organisation(&self, name: Name) -> ServiceResult<Organisation> {
        let now = self.now();
        let organisation = Organisation::create(OrganisationId::generate(now, &mut self.rng()), name, now);
        self.store.create_organisation(&organisation).await?;
        Ok(organisation)
    }

    /// The organisation an operator names: by id, else by name.
    pub async fn find_organisation(&self, reference: &str) -> ServiceResult<Option<Organisation>> {
        if let Ok(id) = OrganisationId::parse(reference) {
            if let Some(organisation) = self.store.organisation(&id).await? {
                return Ok(Some(organisation));
            }
        }
        Ok(self.store.organisation_by_name(reference).await?)
    }

    /// A workspace created by the operator (no actor).
    pub async fn create_operator_workspace(
        &self,
        organisation: &Organisation,
        new: NewWorkspace,
    ) -> ServiceResult<Workspace> {
        let workspace =
            Workspace::create(organisation.id.clone(), new, None, self.now(), &mut self.rng()).map_err(refused)?;
        self.store.create_workspace(&workspace).await?;
        Ok(workspace)
    }
}

//! An organisation with its workspaces and a real service token: what the
//! first `keysd serve` bootstraps, or what `keysd org create`, `keysd
//! workspace create` and `keysd token create` add to a running store.

use keys_core::{
    Mode, Name, NewServiceToken, NewWorkspace, Organisation, OrganisationId, ServiceTokenId, ServiceTokenMaterial,
    ServiceTokenRecord, Workspace, WorkspaceSlug,
};
use keys_crypto::ServiceToken;
use keys_store::{Bootstrap, Store};
use rand_core::CryptoRngCore;
use time::OffsetDateTime;

/// A workspace of a [`Tenant`]: its slug (also its name) and its mode.
pub type TenantWorkspace<'a> = (&'a str, Option<Mode>);

/// An organisation, its workspaces and a service token whose plaintext
/// the test holds.
#[derive(Debug)]
pub struct Tenant {
    pub organisation: Organisation,
    pub workspaces: Vec<Workspace>,
    pub record: ServiceTokenRecord,
    pub token: ServiceToken,
}

impl Tenant {
    /// The organisation `name` with one workspace per entry of `workspaces`
    /// (named as its slug, without description or creator) and a service
    /// token named `token_name`, all made at `now`.
    pub fn new(
        name: &str,
        workspaces: &[TenantWorkspace<'_>],
        token_name: &str,
        now: OffsetDateTime,
        rng: &mut impl CryptoRngCore,
    ) -> Self {
        let organisation =
            Organisation::create(OrganisationId::generate(now, rng), Name::parse(name).expect("name"), now);
        let workspaces = workspaces
            .iter()
            .map(|&(slug, mode)| {
                let new = NewWorkspace {
                    name: Name::parse(slug).expect("name"),
                    slug: Some(WorkspaceSlug::parse(slug).expect("slug")),
                    description: None,
                    mode,
                };
                Workspace::create(organisation.id.clone(), new, None, now, rng).expect("workspace")
            })
            .collect();
        let token = ServiceToken::generate(rng);
        let material = ServiceTokenMaterial {
            id: ServiceTokenId::generate(now, rng),
            digest: token.digest(),
            masked_token: token.masked(),
        };
        let new = NewServiceToken::admin(Name::parse(token_name).expect("name"));
        let record = ServiceTokenRecord::create(material, &organisation, new, None, now).expect("token");
        Self { organisation, workspaces, record, token }
    }

    /// Bootstraps the empty `store` with this tenant, as the first `keysd
    /// serve` does. Returns the organisation's id and the token's plaintext.
    pub async fn bootstrap(self, store: &dyn Store) -> (OrganisationId, String) {
        let id = self.organisation.id.clone();
        let token = self.token.expose().to_owned();
        let bootstrap = Bootstrap { organisation: self.organisation, workspaces: self.workspaces, token: self.record };
        assert!(store.bootstrap_if_empty(&bootstrap).await.expect("bootstrap"), "the store was not empty");
        (id, token)
    }

    /// Adds this tenant to `store` one entity at a time, as the operator
    /// commands do. Returns the organisation's id and the token's plaintext.
    pub async fn create_in(self, store: &dyn Store) -> (OrganisationId, String) {
        store.create_organisation(&self.organisation).await.expect("organisation");
        for workspace in &self.workspaces {
            store.create_workspace(workspace).await.expect("workspace stored");
        }
        store.create_service_token(&self.record).await.expect("token");
        (self.organisation.id, self.token.expose().to_owned())
    }
}

//! A deterministic source of entities for the store's contract suite:
//! seeded randomness and a clock that only moves when told to.

use keys_core::{
    Actor, ApiKey, ApiKeyId, ApiKeyMaterial, ApiKeyProfile, Description, Mode, Name, NewServiceToken, NewSigningKey,
    NewWorkspace, Organisation, OrganisationId, OrganisationKeyId, OrganisationSigningKey, PublicKeyId, SecretDigest,
    ServiceTokenId, ServiceTokenMaterial, ServiceTokenRecord, SigningKeyId, SigningKeyUid, Workspace, WorkspaceSlug,
};
use keys_store::{Bootstrap, Store};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use time::{Duration, OffsetDateTime};

/// A deterministic source of entities: seeded randomness and a clock that
/// only moves when told to.
#[derive(Debug)]
pub struct World {
    pub rng: ChaCha8Rng,
    pub now: OffsetDateTime,
    pub actor: Actor,
}

impl World {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: time::macros::datetime!(2026-04-21 12:35:24.117631 UTC),
            actor: Actor::new("Ada Lovelace", "ada@example.com"),
        }
    }

    /// Moves the clock by `micros` microseconds and returns the new time.
    pub fn tick(&mut self, micros: i64) -> OffsetDateTime {
        self.now += Duration::microseconds(micros);
        self.now
    }

    pub fn digest(&mut self) -> SecretDigest {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        SecretDigest::from_bytes(bytes)
    }

    /// `len` base64url characters.
    pub fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len).map(|_| ALPHABET[(self.rng.next_u32() % 64) as usize] as char).collect()
    }

    pub fn organisation(&mut self, name: &str) -> Organisation {
        let now = self.tick(1);
        Organisation::create(OrganisationId::generate(now, &mut self.rng), name_of(name), now)
    }

    pub fn workspace(&mut self, organisation: &Organisation, slug: &str) -> Workspace {
        let now = self.tick(1);
        let new = NewWorkspace {
            name: name_of(&format!("Workspace {slug}")),
            slug: Some(WorkspaceSlug::parse(slug).expect("slug")),
            description: Description::parse(Some("for tests")).expect("description"),
            mode: Some(Mode::Production),
        };
        Workspace::create(organisation.id.clone(), new, Some(&organisation.system_actor()), now, &mut self.rng)
            .expect("workspace")
    }

    /// An organisation named `name`, stored in `store`.
    pub async fn stored_organisation(&mut self, store: &dyn Store, name: &str) -> Organisation {
        let organisation = self.organisation(name);
        store.create_organisation(&organisation).await.expect("organisation stored");
        organisation
    }

    /// A workspace of `organisation` for each of `slugs`, made and stored
    /// in that order.
    pub async fn stored_workspaces<const N: usize>(
        &mut self,
        store: &dyn Store,
        organisation: &Organisation,
        slugs: [&str; N],
    ) -> [Workspace; N] {
        let mut workspaces = Vec::with_capacity(N);
        for slug in slugs {
            let workspace = self.workspace(organisation, slug);
            store.create_workspace(&workspace).await.expect("workspace stored");
            workspaces.push(workspace);
        }
        workspaces.try_into().unwrap_or_else(|_| unreachable!("one workspace per slug"))
    }

    /// An unlimited admin token.
    pub fn service_token(&mut self, organisation: &Organisation) -> ServiceTokenRecord {
        self.service_token_as(organisation, NewServiceToken::admin(name_of("ci")))
    }

    /// A token as `new` asks (role, workspaces, expiry).
    pub fn service_token_as(&mut self, organisation: &Organisation, new: NewServiceToken) -> ServiceTokenRecord {
        let now = self.tick(1);
        let digest = self.digest();
        let material = ServiceTokenMaterial {
            id: ServiceTokenId::generate(now, &mut self.rng),
            digest,
            masked_token: "kst_testkit*****".to_owned(),
        };
        ServiceTokenRecord::create(material, organisation, new, None, now).expect("a token the domain accepts")
    }

    pub fn bootstrap(&mut self, name: &str) -> Bootstrap {
        let organisation = self.organisation(name);
        let workspaces = vec![self.workspace(&organisation, "staging"), self.workspace(&organisation, "production")];
        let token = self.service_token(&organisation);
        Bootstrap { organisation, workspaces, token }
    }

    pub fn api_key(&mut self, workspace: &Workspace, name: &str) -> ApiKey {
        self.api_key_with(workspace, ApiKeyProfile::named(name_of(name)))
    }

    /// A new active key of `workspace` with this profile.
    pub fn api_key_with(&mut self, workspace: &Workspace, profile: ApiKeyProfile) -> ApiKey {
        let material = self.api_key_material();
        let new = keys_core::NewApiKey { workspace: workspace.uid.clone(), material, profile };
        ApiKey::create(new, &self.actor, self.now).expect("a valid key")
    }

    /// Fresh traces of a secret: an id, a digest, a masked prefix.
    pub fn api_key_material(&mut self) -> ApiKeyMaterial {
        let (now, digest) = (self.now, self.digest());
        let masked_api_key = format!("SS.{}*****", self.text(7));
        ApiKeyMaterial { id: ApiKeyId::generate(now, &mut self.rng), digest, masked_api_key }
    }

    pub fn public_key_id(&mut self) -> PublicKeyId {
        PublicKeyId::generate(self.now, &mut self.rng)
    }

    pub fn public_key_value(&mut self) -> String {
        format!("SS.PUBK.{}", self.text(43))
    }

    /// A new public key of `workspace` named `name`, with a fresh id and value.
    pub fn new_public_key(&mut self, workspace: &keys_core::WorkspaceUid, name: &str) -> keys_core::NewPublicKey {
        let (id, value) = (self.public_key_id(), self.public_key_value());
        keys_core::NewPublicKey { id, workspace: workspace.clone(), value, name: name_of(name), description: None }
    }

    /// Key material with a stand-in public key PEM (the store never looks
    /// inside it).
    pub fn signing_key(&mut self) -> NewSigningKey {
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", self.text(64));
        self.signing_key_with_pem(pem)
    }

    pub fn signing_key_with_pem(&mut self, public_key_pem: String) -> NewSigningKey {
        NewSigningKey {
            id: SigningKeyId::generate(self.now, &mut self.rng),
            uid: SigningKeyUid::generate(self.now, &mut self.rng),
            public_key_pem,
        }
    }

    pub fn organisation_key(&mut self, organisation: &Organisation, name: &str) -> OrganisationSigningKey {
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", self.text(64));
        self.organisation_key_with_pem(organisation, name, pem)
    }

    pub fn organisation_key_with_pem(
        &mut self,
        organisation: &Organisation,
        name: &str,
        pem: String,
    ) -> OrganisationSigningKey {
        OrganisationSigningKey::create(
            OrganisationKeyId::generate(self.now, &mut self.rng),
            organisation.id.clone(),
            name_of(name),
            pem,
            &self.actor,
            self.now,
        )
    }
}

/// `text` as a [`Name`] (it must be one).
pub fn name_of(text: &str) -> Name {
    Name::parse(text).expect("name")
}

//! Shared fixtures for the keys-core tests.
#![allow(dead_code)]

use keys_core::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use time::{Duration, OffsetDateTime};

pub fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(42)
}

pub fn t0() -> OffsetDateTime {
    time::macros::datetime!(2026-04-21 12:35:24.117631 UTC)
}

pub fn at(seconds: i64) -> OffsetDateTime {
    t0() + Duration::seconds(seconds)
}

pub fn actor() -> Actor {
    Actor::new("System User", "org_x@systemuser.keysd.local")
}

pub fn workspace_uid(rng: &mut ChaCha8Rng) -> WorkspaceUid {
    WorkspaceUid::generate(t0(), rng)
}

pub fn new_signing_key(rng: &mut ChaCha8Rng) -> NewSigningKey {
    NewSigningKey {
        id: SigningKeyId::generate(t0(), rng),
        uid: SigningKeyUid::generate(t0(), rng),
        public_key_pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_owned(),
    }
}

pub fn name(text: &str) -> Name {
    Name::parse(text).expect("valid name")
}

/// A workspace of `organisation`, for decisions that take one.
pub fn workspace_of(organisation: &OrganisationId, rng: &mut ChaCha8Rng) -> Workspace {
    let new = NewWorkspace { name: name("staging"), slug: None, description: None, mode: None };
    Workspace::create(organisation.clone(), new, None, t0(), rng).expect("valid workspace")
}

/// A new API key of `workspace` with this profile and fresh material.
pub fn new_api_key(workspace: &WorkspaceUid, profile: ApiKeyProfile, rng: &mut ChaCha8Rng) -> NewApiKey {
    use rand_chacha::rand_core::RngCore;
    let mut digest = [0; 32];
    rng.fill_bytes(&mut digest);
    NewApiKey {
        workspace: workspace.clone(),
        material: ApiKeyMaterial {
            id: ApiKeyId::generate(t0(), rng),
            digest: SecretDigest::from_bytes(digest),
            masked_api_key: "SS.xxxxxxx*****".into(),
        },
        profile,
    }
}

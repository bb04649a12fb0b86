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

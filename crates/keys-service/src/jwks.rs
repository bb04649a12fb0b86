//! The public JWKS documents (RFC 7517) of workspaces and organisations,
//! rendered once for each set of keys and shared by every response until
//! that set changes.
//!
//! A JWKS is public and unauthenticated, and it grows with rolled keys: at
//! 1,000 organisation keys it is about 400 KB of JSON, and making it
//! (parsing every stored PEM, writing every JWK, hashing the document for
//! its `ETag`) costs milliseconds. Here it is made once and kept as
//! [`Bytes`], which each response clones (a reference count, not a copy).
//!
//! **Freshness.** A document is used only while the keys it was made from
//! are exactly the keys that verify now: each request still reads the
//! owner's keys through the store (the same cached lookups verification
//! uses, which a change to the keys invalidates at once in this process and
//! within a second on every other) and keys-core still decides, at the
//! request's `now`, which of them verify ([`SigningKeyRing::verifying_at`],
//! [`OrganisationSigningKey::verifies`]); the document is reused only if
//! that list of key ids is the one it was made from. A key id always names
//! the same public key (a roll or a rotation makes a new key), so equal
//! lists make equal documents. A created, rolled or deleted key, and a
//! rolled key whose grace ends, therefore change the document on the very
//! next request, with no invalidation of their own to get wrong.
//!
//! **Bounded.** Only owners that exist get a document; past
//! [`MAX_CACHED_BYTES`] of documents the memo starts over empty.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use keys_core::verify::jwks_max_age;
use keys_core::{OrganisationId, SigningKeyRing, WorkspaceUid};
use keys_crypto::jwt::Algorithm;
use keys_crypto::keypair::public_jwk_from_pem;
use keys_crypto::secret::sha256_digest;
use keys_crypto::JwkSet;
use keys_store::StoreError;

use crate::Service;

/// The most bytes of documents kept (about 160 organisations at the cap of
/// 1,000 keys each, or tens of thousands of ordinary workspaces).
pub const MAX_CACHED_BYTES: usize = 64 * 1024 * 1024;

/// One rendered JWKS.
#[derive(Debug)]
pub struct JwksDocument {
    /// The JWK Set as JSON text (`{"keys": [...]}`).
    pub json: Bytes,
    /// 32 hexadecimal characters of the SHA-256 of `json`: a strong
    /// validator (an `ETag`), the same on every replica for the same keys.
    pub fingerprint: String,
}

/// A JWKS as published now: the shared document and how long outside
/// verifiers may cache it (`Cache-Control: public, max-age=N`), which is at
/// most [`keys_core::verify::JWKS_MAX_AGE_SECONDS`] and, for a workspace, never past the
/// earliest end of grace of a listed key.
#[derive(Debug, Clone)]
pub struct PublishedDocument {
    pub document: Arc<JwksDocument>,
    pub max_age_seconds: u32,
}

/// Whose keys a document lists.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Owner {
    Workspace(WorkspaceUid),
    Organisation(OrganisationId),
}

/// The memo: per owner, the key ids a document was made from, and it.
#[derive(Default)]
pub(crate) struct JwksDocuments {
    state: RwLock<Memo>,
}

#[derive(Default)]
struct Memo {
    entries: HashMap<Owner, (Vec<String>, Arc<JwksDocument>)>,
    bytes: usize,
}

impl JwksDocuments {
    /// The document of `owner` for the keys `kids` (in order), made by
    /// `render` only when the memo holds none for exactly these keys.
    fn get_or_render(&self, owner: Owner, kids: Vec<String>, render: impl FnOnce() -> JwkSet) -> Arc<JwksDocument> {
        // A poisoned lock still guards a consistent memo: every update is
        // one insert or one clear, with its byte count.
        if let Some((made_from, document)) =
            self.state.read().unwrap_or_else(PoisonError::into_inner).entries.get(&owner)
        {
            if *made_from == kids {
                return Arc::clone(document);
            }
        }
        let json = match serde_json::to_vec(&render()) {
            Ok(json) => Bytes::from(json),
            // A JwkSet is strings all the way down: this cannot fail, and
            // if it did an empty set is the safe answer.
            Err(_) => Bytes::from_static(b"{\"keys\":[]}"),
        };
        let fingerprint = sha256_digest(&json).to_hex()[..32].to_owned();
        let document = Arc::new(JwksDocument { json, fingerprint });
        let mut memo = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let size = document.json.len();
        if memo.bytes + size > MAX_CACHED_BYTES {
            memo.entries.clear();
            memo.bytes = 0;
        }
        if let Some((_, replaced)) = memo.entries.insert(owner, (kids, Arc::clone(&document))) {
            memo.bytes -= replaced.json.len();
        }
        memo.bytes += size;
        document
    }
}

impl Service {
    /// The JWKS of a workspace: the keys that verify now (active, and rolled
    /// before their `expiry_at`), by the ring's rule, which is the one
    /// verification applies. `None`: no such workspace.
    pub async fn workspace_jwks_document(&self, uid: &WorkspaceUid) -> Result<Option<PublishedDocument>, StoreError> {
        let Some(workspace) = self.store.workspace_by_uid(uid).await? else {
            return Ok(None);
        };
        let ring = SigningKeyRing::restore(workspace.uid.clone(), self.store.live_signing_keys(&workspace.uid).await?);
        let now = self.now();
        let kids = ring.verifying_at(now).map(|key| key.uid.as_str().to_owned()).collect();
        let document = self.jwks_documents.get_or_render(Owner::Workspace(workspace.uid.clone()), kids, || {
            let mut set = JwkSet::default();
            for key in ring.verifying_at(now) {
                match public_jwk_from_pem(Algorithm::Es256, &key.public_key_pem, key.uid.as_str()) {
                    Ok(jwk) => set.keys.push(jwk),
                    Err(error) => tracing::error!(kid = %key.uid, error = %error, "stored signing key does not parse"),
                }
            }
            set
        });
        Ok(Some(PublishedDocument { document, max_age_seconds: jwks_max_age(Some(&ring), now) }))
    }

    /// The JWKS of an organisation: its keys that verify (not deleted; they
    /// have no expiry, so the full cache lifetime applies). `None`: no such
    /// organisation.
    pub async fn organisation_jwks_document(
        &self,
        id: &OrganisationId,
    ) -> Result<Option<PublishedDocument>, StoreError> {
        if self.store.organisation(id).await?.is_none() {
            return Ok(None);
        }
        let mut keys = self.store.list_organisation_keys(id).await?;
        keys.retain(|key| key.verifies());
        let kids = keys.iter().map(|key| key.id.as_str().to_owned()).collect();
        let document = self.jwks_documents.get_or_render(Owner::Organisation(id.clone()), kids, || {
            let mut set = JwkSet::default();
            for key in &keys {
                match public_jwk_from_pem(Algorithm::Rs256, &key.public_key_pem, key.id.as_str()) {
                    Ok(jwk) => set.keys.push(jwk),
                    Err(error) => {
                        tracing::error!(key_id = %key.id, error = %error, "stored organisation key does not parse")
                    }
                }
            }
            set
        });
        Ok(Some(PublishedDocument { document, max_age_seconds: jwks_max_age(None, self.now()) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(kid: &str) -> JwkSet {
        let mut set = JwkSet::default();
        let pair = keys_crypto::keypair::EcKeyPair::generate(&mut rand_core::OsRng);
        set.keys.push(public_jwk_from_pem(Algorithm::Es256, &pair.public_key_pem(), kid).expect("jwk"));
        set
    }

    #[test]
    fn a_document_is_made_once_per_list_of_keys_and_shared() {
        let memo = JwksDocuments::default();
        let owner = || Owner::Organisation(OrganisationId::parse("01JZZZZZZZZZZZZZZZZZZZZZZZ").expect("id"));
        let first = memo.get_or_render(owner(), vec!["a".to_owned()], || set_of("a"));
        let again = memo.get_or_render(owner(), vec!["a".to_owned()], || panic!("rendered twice"));
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(first.json.as_ptr(), again.json.as_ptr(), "the bytes are shared, not copied");
        let changed = memo.get_or_render(owner(), vec!["a".to_owned(), "b".to_owned()], || set_of("b"));
        assert_ne!(changed.fingerprint, first.fingerprint);
        assert_eq!(first.fingerprint.len(), 32);
        let memo_state = memo.state.read().expect("lock");
        assert_eq!(memo_state.entries.len(), 1);
        assert_eq!(memo_state.bytes, changed.json.len());
    }
}

//! Import of keys made elsewhere through the use case, on both stores: it
//! needs `manage` (checked by the use case), refuses a bad entry naming
//! it, and an imported key verifies by its original text, whatever its
//! format, while keysd's own format keeps its checksum pre-check.

use keys_core::{ApiKeyProfile, Name, Role, TokenWorkspaces};
use keys_crypto::ImportedKeyText;
use keys_service::api_keys::{ImportEntry, ImportedSecret};
use keys_service::{Caller, Service, ServiceConfig, ServiceError};
use keys_store::StoredDigests;
use keys_testkit::TestDb;

fn name(text: &str) -> Name {
    Name::parse(text).expect("name")
}

fn plaintext(text: &str, key_name: &str) -> ImportEntry {
    let secret = ImportedSecret::Text(ImportedKeyText::parse(text).expect("importable"));
    ImportEntry { secret, profile: ApiKeyProfile::named(name(key_name)) }
}

fn sha256(text: &str, key_name: &str) -> ImportEntry {
    let digest = keys_crypto::secret::sha256_digest(text.as_bytes());
    ImportEntry { secret: ImportedSecret::Sha256(digest), profile: ApiKeyProfile::named(name(key_name)) }
}

async fn imported_keys_verify_by_their_text(db: TestDb) {
    let service = Service::new(keys_store::open(db.url()).await.expect("store"), ServiceConfig::default());
    let organisation = service.bootstrap_if_empty().await.expect("bootstrap").expect("empty").organisation;
    let embedded = |role, label: &str| {
        Caller::embedded(organisation.id.clone(), role, TokenWorkspaces::all(), name(label)).expect("caller")
    };
    let (manager, verifier) = (embedded(Role::Manage, "migration"), embedded(Role::Verify, "gateway"));

    // `verify` may not import: the use case refuses it.
    let refused = service.in_workspace(&verifier, "staging").await;
    assert!(matches!(refused, Err(ServiceError::PermissionDenied(_))), "{refused:?}");

    let staging = service.in_workspace(&manager, "staging").await.expect("workspace");
    let (foreign, hashed) = ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "partner-key-0123456789-abcdef");
    // Before the import, the foreign text is an unknown key (looked up),
    // not a malformed one.
    let before = service.verify_api_key(&verifier, foreign).await.expect("store").expect_err("unknown");
    assert_eq!(before.reason(), "unknown_key");

    // A bad entry refuses the whole batch, naming its index.
    let mut bad = sha256(hashed, "hashed");
    bad.profile.expires_at = Some(time::OffsetDateTime::UNIX_EPOCH);
    let entries = vec![plaintext(foreign, "foreign"), bad];
    match staging.import_api_keys(entries, StoredDigests::Refuse).await {
        Err(ServiceError::Invalid(message)) => assert!(message.starts_with("keys[1]: "), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        service.verify_api_key(&verifier, foreign).await.expect("store").expect_err("none").reason(),
        "unknown_key"
    );

    let entries = vec![plaintext(foreign, "foreign"), sha256(hashed, "hashed")];
    let imported = staging.import_api_keys(entries, StoredDigests::Refuse).await.expect("imported");
    let masks: Vec<&str> = imported.imported.iter().map(|key| key.masked_api_key.as_str()).collect();
    assert_eq!(masks[0], "sk_live_*****", "a quarter of 32 characters");
    assert!(masks[1].starts_with("imported_") && !masks[1].contains("partner"), "{}", masks[1]);
    for (text, key) in [(foreign, &imported.imported[0]), (hashed, &imported.imported[1])] {
        let verified = service.verify_api_key(&verifier, text).await.expect("store").expect("valid");
        assert_eq!(verified.key().id, key.id);
    }

    // keysd's own format keeps its pre-check; too short or unprintable
    // texts are refused before any lookup.
    for text in ["SS.not-a-key-but-long-enough", "short-key", "a key with spaces in it"] {
        let denial = service.verify_api_key(&verifier, text).await.expect("store").expect_err("refused");
        assert_eq!(denial.reason(), "malformed", "{text}");
    }

    // The same keys again: a conflict naming the first entry.
    let again = vec![sha256(foreign, "again")];
    match staging.import_api_keys(again, StoredDigests::Refuse).await {
        Err(ServiceError::Store(keys_store::StoreError::Conflict(conflict))) => {
            assert_eq!(conflict, keys_store::Conflict::DigestStored { index: 0 });
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // An empty batch is refused.
    assert!(matches!(staging.import_api_keys(Vec::new(), StoredDigests::Refuse).await, Err(ServiceError::Invalid(_))));
}

keys_testkit::on_both_backends! {
    imported_keys_verify_by_their_text => sqlite_imported_keys_verify_by_their_text,
        postgres_imported_keys_verify_by_their_text;
}

//! The secret scan: make real secrets the way keysd does, go through every
//! store operation that involves them, then read every value of every column
//! of every table (listed from the database's own catalog) and find none of
//! the secrets there. The audit trail is scanned as every table is: its
//! events, attributed to a real service token and a request, must name the
//! token's id and never its secret.

use keys_core::{
    ApiKey, ApiKeyId, ApiKeyMaterial, ApiKeyProfile, Description, NewServiceToken, ServiceTokenId,
    ServiceTokenMaterial, ServiceTokenRecord,
};
use keys_crypto::{ApiKeySecret, EcKeyPair, PublicKeyValue, RsaKeyPair, ServiceToken};
use keys_store::{Attributed, Attribution, Mutations, PublicKeyChange};
use rand_core::OsRng;

use crate::support::{contains, name_of, TestDb, World};

/// What must never be stored: each with a label for the failure message.
struct Secrets(Vec<(String, Vec<u8>)>);

impl Secrets {
    fn add(&mut self, label: &str, secret: &str) {
        self.0.push((label.to_owned(), secret.as_bytes().to_vec()));
    }

    /// A private key PEM: the whole text, each line of its base64 body, and
    /// the `private_key_base64` form (base64 of the PEM text).
    fn add_private_key(&mut self, label: &str, pem: &str, base64_of_pem: &str) {
        self.add(label, pem);
        self.add(&format!("{label} (base64)"), base64_of_pem);
        for line in pem.lines().filter(|line| !line.starts_with("-----") && line.len() >= 16) {
            self.add(&format!("{label} (body line)"), line);
        }
    }
}

pub async fn no_secret_reaches_the_database(db: &TestDb) {
    let store = db.store().await;
    let mut world = World::new(30);
    let mut secrets = Secrets(Vec::new());
    let mut must_find: Vec<String> = Vec::new();

    let bootstrap = world.bootstrap("default");
    store.bootstrap_if_empty(&bootstrap).await.unwrap();
    let organisation = &bootstrap.organisation;
    let workspace = &bootstrap.workspaces[0];
    let actor = world.actor.clone();

    // Service tokens; the last one acts in the changes below.
    let mut acting = None;
    for _ in 0..3 {
        let token = ServiceToken::generate(&mut OsRng);
        secrets.add("service token", token.expose());
        let material = ServiceTokenMaterial {
            id: ServiceTokenId::generate(world.now, &mut world.rng),
            digest: token.digest(),
            masked_token: token.masked(),
        };
        must_find.push(token.masked());
        let new = NewServiceToken::admin(name_of("deploy"));
        let record = ServiceTokenRecord::create(material, organisation, new, None, world.tick(1)).unwrap();
        store.create_service_token(&record).await.unwrap();
        assert!(store.service_token_by_digest(&token.digest()).await.unwrap().is_some());
        acting = Some(record.id.clone());
    }
    let request_id = keys_core::RequestId::parse("scan:request-1").unwrap();
    let attribution = Attribution { token_id: acting.clone(), request_id: Some(request_id.clone()) };
    let attributed = Attributed::new(&*store, attribution);
    // The audit columns are read: the acting token's id and the request id.
    must_find.push(acting.unwrap().to_string());
    must_find.push(request_id.to_string());

    // API keys, one of them deleted.
    for index in 0..3 {
        let secret = ApiKeySecret::generate(&mut OsRng);
        secrets.add("api key", secret.expose());
        // The 43 random characters alone, in case a prefix were stripped.
        secrets.add("api key body", &secret.expose()[3..]);
        must_find.push(secret.masked());
        let mut profile = ApiKeyProfile::named(name_of("server"));
        profile.description = Description::parse(Some("backend")).unwrap();
        let material = ApiKeyMaterial {
            id: ApiKeyId::generate(world.now, &mut world.rng),
            digest: secret.digest(),
            masked_api_key: secret.masked(),
        };
        let new = keys_core::NewApiKey { workspace: workspace.uid.clone(), material, profile };
        let key = ApiKey::create(new, &actor, world.tick(1)).unwrap();
        attributed.create_api_key(&key).await.unwrap();
        assert!(store.api_key_by_digest(&secret.digest()).await.unwrap().is_some());
        if index == 0 {
            attributed.delete_api_key(&workspace.uid, &key.id, &actor, world.tick(1)).await.unwrap();
        }
    }

    // Public keys are not secret (shown in every response) but go through
    // the same scan so a rotation writes nothing unexpected.
    let value = PublicKeyValue::generate(&mut OsRng);
    let public_key = store
        .create_public_key(
            keys_core::NewPublicKey {
                workspace: workspace.uid.clone(),
                id: world.public_key_id(),
                value: value.to_string(),
                name: name_of("web"),
                description: None,
            },
            &actor,
            world.tick(1),
        )
        .await
        .unwrap();
    let rotated = PublicKeyValue::generate(&mut OsRng).to_string();
    store
        .change_public_key(
            &workspace.uid,
            &public_key.id,
            PublicKeyChange::Rotate(rotated.clone()),
            &actor,
            world.tick(1),
        )
        .await
        .unwrap();
    must_find.push(rotated);

    // Workspace signing keys: create, roll, delete.
    let first = EcKeyPair::generate(&mut OsRng);
    secrets.add_private_key("signing key", &first.private_key_pem(), &first.private_key_base64());
    must_find.push(first.public_key_pem());
    let new = world.signing_key_with_pem(first.public_key_pem());
    let created = store.create_signing_key(&workspace.uid, new, &actor, world.tick(1)).await.unwrap();
    let second = EcKeyPair::generate(&mut OsRng);
    secrets.add_private_key("rolled-in signing key", &second.private_key_pem(), &second.private_key_base64());
    let new = world.signing_key_with_pem(second.public_key_pem());
    let (_, fresh) =
        store.roll_signing_key(&workspace.uid, &created.uid, None, new, &actor, world.tick(1)).await.unwrap();
    store.delete_signing_key(&workspace.uid, &fresh.uid, &actor, world.tick(1)).await.unwrap();

    // Organisation signing key (RSA).
    let rsa = RsaKeyPair::generate(&mut OsRng);
    secrets.add_private_key("organisation key", &rsa.private_key_pem(), &rsa.private_key_base64());
    let organisation_key = world.organisation_key_with_pem(organisation, "versori", rsa.public_key_pem());
    store.create_organisation_key(&organisation_key).await.unwrap();

    let values = db.every_value().await;
    // The scan reads what it should: what was stored in the clear is there.
    for expected in &must_find {
        assert!(
            values.iter().any(|(_, value)| contains(value, expected.as_bytes())),
            "the scan did not see {expected:?}: it is not reading every column"
        );
    }
    for (column, value) in &values {
        assert!(!contains(value, b"PRIVATE KEY"), "a private key is stored in {column}");
        for (label, secret) in &secrets.0 {
            assert!(!contains(value, secret), "the {label} is stored in {column}");
        }
    }
    // Below SQL: the SQLite file and its WAL, freed pages included.
    for file in db.raw_files() {
        for (label, secret) in &secrets.0 {
            assert!(!contains(&file, secret), "the {label} is in the database file");
        }
    }
}

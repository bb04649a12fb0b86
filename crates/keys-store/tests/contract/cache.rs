//! The verification cache on a real database: it answers exactly as the
//! store does, forgets what its own mutations change before they return,
//! sees what other stores (other processes) change within a second, and
//! stays within its capacity whatever it is asked.
//!
//! Freshness is always checked against a plain store reading the database,
//! and waited for by polling with a deadline, never by sleeping.

use std::time::{Duration, Instant};

use keys_core::{
    Actor, ApiKey, ApiKeyPatch, GracePeriod, Organisation, OrganisationKeyId, PublicKeyPatch, SecretDigest,
    SigningKeyUid, Workspace, WorkspaceUid,
};
use keys_store::{
    Acting, ApiKeyChange, CacheConfig, CachedStore, Change, Command, Lookups, PublicKeyChange, Queued, Store,
    CHANGES_CHANNEL,
};
use sqlx::Connection;

use crate::support::{name_of, Kind, TestDb, World, LONG_TTL};

/// What the freshness checks look up: every key the verification path
/// reads, including some that do not exist (yet).
#[derive(Debug, Default)]
struct Probe {
    token_digests: Vec<SecretDigest>,
    api_key_digests: Vec<SecretDigest>,
    public_key_values: Vec<String>,
    signing_key_uids: Vec<SigningKeyUid>,
    workspaces: Vec<WorkspaceUid>,
    organisation_keys: Vec<OrganisationKeyId>,
}

/// Whether `cached` answers every lookup of `probe` as `reference` does.
async fn answers_alike(cached: &dyn Store, reference: &dyn Store, probe: &Probe) -> bool {
    // One loop per kind of lookup, each over the probe's keys of that kind.
    macro_rules! alike_for_each {
        ($($keys:ident => $lookup:ident),* $(,)?) => {
            $(
                for key in &probe.$keys {
                    if cached.$lookup(key).await.unwrap() != reference.$lookup(key).await.unwrap() {
                        return false;
                    }
                }
            )*
        };
    }
    alike_for_each!(
        token_digests => service_token_by_digest,
        api_key_digests => api_key_by_digest,
        public_key_values => public_key_by_value,
        signing_key_uids => signing_key_by_uid,
        workspaces => live_signing_keys,
        organisation_keys => organisation_key,
    );
    true
}

/// Polls until `cached` answers as `reference`, failing after a second.
async fn alike_within_a_second(cached: &dyn Store, reference: &dyn Store, probe: &Probe, what: &str) {
    let since = Instant::now();
    while !answers_alike(cached, reference, probe).await {
        assert!(since.elapsed() < Duration::from_secs(1), "{what}: not seen within a second");
        tokio::task::yield_now().await;
    }
}

/// One of everything verification reads, written through `store`.
struct Fixture {
    organisation: Organisation,
    workspace: Workspace,
    api_key: ApiKey,
    actor: Actor,
    probe: Probe,
}

async fn fixture(store: &dyn Store, world: &mut World) -> Fixture {
    let organisation = world.stored_organisation(store, "acme").await;
    let [workspace] = world.stored_workspaces(store, &organisation, ["demo"]).await;
    let actor = world.actor.clone();
    let token = world.service_token(&organisation);
    store.create_service_token(&token).await.unwrap();
    let api_key = world.api_key(&workspace, "backend");
    store.create_api_key(&api_key).await.unwrap();
    let now = world.tick(1);
    let public_key = store.create_public_key(world.new_public_key(&workspace.uid, "web"), &actor, now).await.unwrap();
    let signing_key =
        store.create_signing_key(&workspace.uid, world.signing_key(), &actor, world.tick(1)).await.unwrap();
    let organisation_key = world.organisation_key(&organisation, "versori");
    store.create_organisation_key(&organisation_key).await.unwrap();
    let probe = Probe {
        token_digests: vec![token.digest, world.digest()],
        api_key_digests: vec![api_key.digest, world.digest()],
        public_key_values: vec![public_key.api_key.clone(), world.public_key_value()],
        signing_key_uids: vec![signing_key.uid.clone(), SigningKeyUid::generate(world.now, &mut world.rng)],
        workspaces: vec![workspace.uid.clone()],
        organisation_keys: vec![organisation_key.id.clone(), OrganisationKeyId::generate(world.now, &mut world.rng)],
    };
    Fixture { organisation, workspace, api_key, actor, probe }
}

fn long_lived() -> CacheConfig {
    CacheConfig { ttl: LONG_TTL, ..CacheConfig::default() }
}

pub async fn cached_lookups_answer_as_the_store_does(db: &TestDb) {
    let reference = db.store().await;
    let cached = db.cached_store(long_lived()).await;
    let mut world = World::new(40);
    let fixture = fixture(reference.as_ref(), &mut world).await;
    let probe = &fixture.probe;
    // The first round fills the cache, the second answers from it.
    for _ in 0..2 {
        assert!(answers_alike(cached.as_ref(), reference.as_ref(), probe).await);
    }
    // The probe is not vacuous: it finds what exists and misses what does not.
    assert!(cached.api_key_by_digest(&probe.api_key_digests[0]).await.unwrap().is_some());
    assert!(cached.api_key_by_digest(&probe.api_key_digests[1]).await.unwrap().is_none());
    assert!(cached.public_key_by_value(&probe.public_key_values[0]).await.unwrap().is_some());
    assert_eq!(cached.live_signing_keys(&fixture.workspace.uid).await.unwrap().len(), 1);
}

/// How soon `cached` must see a change.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Right after the mutation returns (made through the cached store).
    AtOnce,
    /// Within a second (made by another store).
    WithinASecond,
}

/// The stores a freshness check compares.
#[derive(Clone, Copy)]
struct Check<'a> {
    writer: &'a dyn Store,
    cached: &'a dyn Store,
    reference: &'a dyn Store,
    expect: Expect,
}

impl<'a> Check<'a> {
    /// Checks `cached` against `other`, the store that holds the truth: the
    /// mutations are made through `cached` itself when they are expected at
    /// once (its own changes), else through `other`.
    fn new(cached: &'a dyn Store, other: &'a dyn Store, expect: Expect) -> Self {
        let writer = match expect {
            Expect::AtOnce => cached,
            Expect::WithinASecond => other,
        };
        Self { writer, cached, reference: other, expect }
    }

    async fn seen(&self, what: &str, probe: &Probe) {
        match self.expect {
            Expect::AtOnce => {
                assert!(
                    answers_alike(self.cached, self.reference, probe).await,
                    "{what}: stale right after the change"
                );
            }
            Expect::WithinASecond => alike_within_a_second(self.cached, self.reference, probe, what).await,
        }
    }
}

/// A fixture written through `check.writer` from `seed`, then every kind of
/// mutation, made through `check.writer`, each followed by a check that the
/// cached store answers as the database. Before each
/// mutation, what it will create is probed, so that the cache holds "not
/// found" for it.
async fn mutate_everything(check: Check<'_>, seed: u64) {
    let mut world = World::new(seed);
    let world = &mut world;
    let mut fixture = fixture(check.writer, world).await;
    let fixture = &mut fixture;
    check.seen("fixture", &fixture.probe).await;
    let writer = check.writer;
    let actor = fixture.actor.clone();
    let workspace = fixture.workspace.uid.clone();

    let token = world.service_token(&fixture.organisation);
    fixture.probe.token_digests.push(token.digest);
    check.seen("token probed", &fixture.probe).await;
    writer.create_service_token(&token).await.unwrap();
    check.seen("service token created", &fixture.probe).await;

    let key = world.api_key(&fixture.workspace, "second");
    fixture.probe.api_key_digests.push(key.digest);
    check.seen("api key probed", &fixture.probe).await;
    writer.create_api_key(&key).await.unwrap();
    check.seen("api key created", &fixture.probe).await;
    let rename = ApiKeyChange::Patch(ApiKeyPatch { name: Some(name_of("renamed")), ..ApiKeyPatch::default() });
    for (what, change) in [("patched", rename), ("disabled", ApiKeyChange::Disable), ("enabled", ApiKeyChange::Enable)]
    {
        writer.change_api_key(&workspace, &key.id, change, &actor, world.tick(1)).await.unwrap();
        check.seen(&format!("api key {what}"), &fixture.probe).await;
    }
    // The new secret is probed only once it exists: no one can have
    // presented it before the roll handed it out.
    let grace = GracePeriod::from_seconds(60).ok();
    let material = world.api_key_material();
    let (_, fresh) = writer.roll_api_key(&workspace, &key.id, grace, material, &actor, world.tick(1)).await.unwrap();
    fixture.probe.api_key_digests.push(fresh.digest);
    check.seen("api key rolled", &fixture.probe).await;
    writer.delete_api_key(&workspace, &fixture.api_key.id, &actor, world.tick(1)).await.unwrap();
    check.seen("api key deleted", &fixture.probe).await;

    let public_key = writer.public_key_by_value(&fixture.probe.public_key_values[0]).await.unwrap().unwrap().0;
    let patch = PublicKeyPatch { is_secure_mode_enabled: Some(true), ..PublicKeyPatch::default() };
    writer
        .change_public_key(&workspace, &public_key.id, PublicKeyChange::Patch(patch), &actor, world.tick(1))
        .await
        .unwrap();
    check.seen("public key patched", &fixture.probe).await;
    let new_value = world.public_key_value();
    fixture.probe.public_key_values.push(new_value.clone());
    check.seen("public key value probed", &fixture.probe).await;
    let rotate = PublicKeyChange::Rotate(new_value);
    writer.change_public_key(&workspace, &public_key.id, rotate, &actor, world.tick(1)).await.unwrap();
    check.seen("public key rotated", &fixture.probe).await;
    writer.delete_public_key(&workspace, &public_key.id, &actor, world.tick(1)).await.unwrap();
    check.seen("public key deleted", &fixture.probe).await;

    let active = fixture.probe.signing_key_uids[0].clone();
    let material = world.signing_key();
    fixture.probe.signing_key_uids.push(material.uid.clone());
    check.seen("signing key probed", &fixture.probe).await;
    let grace = GracePeriod::from_seconds(3600).unwrap();
    let (_, fresh) =
        writer.roll_signing_key(&workspace, &active, Some(grace), material, &actor, world.tick(1)).await.unwrap();
    check.seen("signing key rolled", &fixture.probe).await;
    writer.delete_signing_key(&workspace, &fresh.uid, &actor, world.tick(1)).await.unwrap();
    check.seen("signing key deleted", &fixture.probe).await;

    let organisation_key = world.organisation_key(&fixture.organisation, "second");
    fixture.probe.organisation_keys.push(organisation_key.id.clone());
    check.seen("organisation key probed", &fixture.probe).await;
    writer.create_organisation_key(&organisation_key).await.unwrap();
    check.seen("organisation key created", &fixture.probe).await;
    let organisation = fixture.organisation.id.clone();
    writer.delete_organisation_key(&organisation, &organisation_key.id, &actor, world.tick(1)).await.unwrap();
    check.seen("organisation key deleted", &fixture.probe).await;
}

pub async fn own_changes_are_seen_at_once(db: &TestDb) {
    // Entries outlive the test: only invalidation can refresh them.
    let cached = db.cached_store(long_lived()).await;
    let reference = db.store().await;
    mutate_everything(Check::new(cached.as_ref(), reference.as_ref(), Expect::AtOnce), 41).await;
}

pub async fn other_stores_changes_are_seen_within_a_second(db: &TestDb) {
    // On PostgreSQL entries outlive the test, so only the announcements can
    // refresh them; SQLite has no announcements, and relies on the time to
    // live alone.
    let config = match db.kind {
        Kind::Postgres => long_lived(),
        Kind::Sqlite => CacheConfig { ttl: Duration::from_millis(300), ..CacheConfig::default() },
    };
    let cached = db.cached_store(config).await;
    let other = db.store().await;
    mutate_everything(Check::new(cached.as_ref(), other.as_ref(), Expect::WithinASecond), 42).await;
}

pub async fn the_cache_stays_within_its_capacity(db: &TestDb) {
    let config = CacheConfig { ttl: LONG_TTL, capacity: 64 };
    match db.kind {
        Kind::Sqlite => stays_within(CachedStore::new(db.sqlite_store().await, config), db, config).await,
        Kind::Postgres => {
            let store = CachedStore::following(db.postgres_store().await, config).await.unwrap();
            stays_within(store, db, config).await;
        }
    }
}

async fn stays_within<S: Store>(cached: CachedStore<S>, db: &TestDb, config: CacheConfig) {
    let reference = db.store().await;
    let mut world = World::new(43);
    let fixture = fixture(reference.as_ref(), &mut world).await;
    // Six kinds of lookup, found and not found, each at most `capacity`.
    let bound = 6 * 2 * config.capacity;
    for round in 0..1_000 {
        // Garbage that passed every format check: unknown digests, values and ids.
        cached.api_key_by_digest(&world.digest()).await.unwrap();
        cached.service_token_by_digest(&world.digest()).await.unwrap();
        if round % 4 == 0 {
            cached.public_key_by_value(&world.public_key_value()).await.unwrap();
            cached.signing_key_by_uid(&SigningKeyUid::generate(world.now, &mut world.rng)).await.unwrap();
            cached.organisation_key(&OrganisationKeyId::generate(world.now, &mut world.rng)).await.unwrap();
            cached.live_signing_keys(&WorkspaceUid::generate(world.now, &mut world.rng)).await.unwrap();
        }
        assert!(cached.cached_entries() <= bound, "round {round}: {} entries", cached.cached_entries());
    }
    assert!(cached.cached_entries() > 0);
    // Real credentials still answer correctly after the flood.
    assert!(answers_alike(&cached, reference.as_ref(), &fixture.probe).await);
    assert!(cached.api_key_by_digest(&fixture.api_key.digest).await.unwrap().is_some());
}

/// The listener's connection dies (an operator, a failover, a proxy
/// timeout): it comes back, whatever changed around the outage is seen, and
/// announcements are heard again. (That the cache is cleared when
/// announcements may have been missed is checked deterministically by the
/// unit tests of `cache.rs`, with a feed the test controls.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_recovers_from_a_lost_connection() {
    let db = TestDb::new(Kind::Postgres).await;
    let cached = db.cached_store(long_lived()).await;
    let other = db.store().await;
    let mut world = World::new(44);
    let fixture = fixture(other.as_ref(), &mut world).await;
    alike_within_a_second(cached.as_ref(), other.as_ref(), &fixture.probe, "fixture").await;

    let mut admin = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query = $1",
    )
    .bind(format!("LISTEN \"{CHANGES_CHANNEL}\""))
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(terminated, vec![true], "exactly one listener connection");

    let actor = fixture.actor.clone();
    other.delete_api_key(&fixture.workspace.uid, &fixture.api_key.id, &actor, world.tick(1)).await.unwrap();
    alike_within_a_second(cached.as_ref(), other.as_ref(), &fixture.probe, "delete during the outage").await;
    // Listening again: a change made now is heard.
    let organisation_key = fixture.probe.organisation_keys[0].clone();
    other.delete_organisation_key(&fixture.organisation.id, &organisation_key, &actor, world.tick(1)).await.unwrap();
    alike_within_a_second(cached.as_ref(), other.as_ref(), &fixture.probe, "delete after reconnecting").await;
    admin.close().await.unwrap();
}

/// A command behind the object-safe entry point, its reply dropped: what
/// these tests look at is the change `execute` returns.
fn queue<C: Command>(command: C) -> Queued {
    Queued::new(command).0
}

/// Every command announces, on commit, exactly the change it hands back to
/// its caller (which is what the cache of the caller's process applies), in
/// commit order; a refused command and a bootstrap that finds the database
/// in use announce nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_announces_the_change_it_returns() {
    let db = TestDb::new(Kind::Postgres).await;
    let store = db.store().await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen(CHANGES_CHANNEL).await.unwrap();
    let mut world = World::new(41);
    let actor = world.actor.clone();
    let organisation = world.organisation("acme");
    let workspace = world.workspace(&organisation, "demo");
    let api_key = world.api_key(&workspace, "k");
    let (public_key, value) = (world.public_key_id(), world.public_key_value());
    let signing_key = world.signing_key();
    let organisation_key = world.organisation_key(&organisation, "o");
    let uid = workspace.uid.clone();
    let commands = vec![
        queue(keys_store::CreateOrganisation(organisation.clone())),
        queue(keys_store::CreateServiceToken(world.service_token(&organisation))),
        queue(keys_store::CreateWorkspace(workspace.clone())),
        queue(keys_store::CreateApiKey(api_key.clone())),
        queue(keys_store::ChangeApiKey {
            acting: Acting::new(uid.clone(), actor.clone(), world.tick(1)),
            id: api_key.id.clone(),
            change: ApiKeyChange::Delete,
        }),
        queue(keys_store::CreatePublicKey {
            new: keys_core::NewPublicKey {
                workspace: uid.clone(),
                id: public_key.clone(),
                value,
                name: name_of("p"),
                description: None,
            },
            actor: actor.clone(),
            now: world.tick(1),
        }),
        queue(keys_store::ChangePublicKey {
            acting: Acting::new(uid.clone(), actor.clone(), world.tick(1)),
            id: public_key.clone(),
            change: PublicKeyChange::Rotate(world.public_key_value()),
        }),
        queue(keys_store::DeletePublicKey {
            acting: Acting::new(uid.clone(), actor.clone(), world.tick(1)),
            id: public_key,
        }),
        queue(keys_store::CreateSigningKey {
            acting: Acting::new(uid.clone(), actor.clone(), world.tick(1)),
            new: signing_key.clone(),
        }),
        queue(keys_store::RollSigningKey {
            acting: Acting::new(uid.clone(), actor.clone(), world.tick(1)),
            uid: signing_key.uid.clone(),
            grace: None,
            new: world.signing_key(),
        }),
        queue(keys_store::CreateOrganisationKey(organisation_key.clone())),
        queue(keys_store::DeleteOrganisationKey {
            acting: Acting::new(organisation.id.clone(), actor.clone(), world.tick(1)),
            id: organisation_key.id.clone(),
        }),
    ];
    let mut returned = Vec::new();
    for command in commands {
        let executed = store.execute(command).await.unwrap();
        returned.push(executed.expect("a command that wrote returns its change").to_payload());
    }
    // Refused (a second active signing key) and a no-op: nothing to announce.
    let refused = queue(keys_store::CreateSigningKey {
        acting: Acting::new(uid.clone(), actor, world.now),
        new: world.signing_key(),
    });
    assert!(store.execute(refused).await.is_err());
    assert_eq!(store.execute(queue(world.bootstrap("late"))).await.unwrap(), None);
    // The last announcement: anything announced in between would come first.
    let last = store.execute(queue(keys_store::CreateWorkspace(world.workspace(&organisation, "last")))).await.unwrap();
    returned.push(last.unwrap().to_payload());

    for expected in &returned {
        let heard = tokio::time::timeout(Duration::from_secs(5), listener.recv()).await.unwrap().unwrap();
        assert_eq!(heard.payload(), expected);
    }
    assert!(returned.iter().all(|payload| Change::from_payload(payload) != Change::Everything), "{returned:?}");
}

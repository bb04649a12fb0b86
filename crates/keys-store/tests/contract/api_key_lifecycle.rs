//! The whole life of an API key (docs/GUARANTEES.md, API keys) through the store, one
//! backend at a time: every transition writes what keys-core decided and
//! exactly one audit event; every refusal changes nothing; the database
//! itself refuses rows no transition makes; `last_used_at` only moves
//! forwards, whoever writes it and however many write at once.

use std::sync::Arc;

use keys_core::verify::{decide_api_key, Denial, Scope};
use keys_core::{
    ApiKey, ApiKeyId, ApiKeyLifecycle, ApiKeyPatch, ApiKeyProfile, ApiKeyStatus, CoreError, Description, ExternalId,
    GracePeriod, KeyMeta, KeyScopes, Organisation, Page, Pagination, Workspace,
};
use keys_store::{ApiKeyChange, Listing, Store};
use rand_core::{RngCore, SeedableRng};
use time::{Duration, OffsetDateTime};
use tokio::task::JoinSet;

use crate::support::{acme, assert_refused, name_of, not_found, Expected, Kind, TestDb, World};

/// A profile with every field set, expiring a day after `now`.
fn full_profile(name: &str, now: OffsetDateTime) -> ApiKeyProfile {
    ApiKeyProfile {
        name: name_of(name),
        description: Description::parse(Some("the billing backend")).unwrap(),
        scopes: KeyScopes::parse(["keys:*", "audit:read"]).unwrap(),
        external_id: Some(ExternalId::parse("customer-42").unwrap()),
        meta: Some(KeyMeta::parse(r#"{"plan":"pro","seats":3}"#).unwrap()),
        expires_at: Some(now + Duration::days(1)),
    }
}

/// Where each test starts: the store, the world, `acme` with the
/// workspaces `demo` and `other`.
struct Start {
    store: Arc<dyn Store>,
    world: World,
    organisation: Organisation,
    workspace: Workspace,
    other: Workspace,
}

impl Start {
    async fn new(db: &TestDb, seed: u64) -> Self {
        let (store, world, organisation, [workspace, other]) = acme(db, seed, ["demo", "other"]).await;
        Self { store, world, organisation, workspace, other }
    }

    /// A new key of `demo` with [`full_profile`], stored.
    async fn key(&mut self, name: &str) -> ApiKey {
        self.world.tick(10);
        let key = self.world.api_key_with(&self.workspace, full_profile(name, self.world.now));
        self.store.create_api_key(&key).await.unwrap();
        key
    }

    /// The key as the store has it now, every column.
    async fn read(&self, key: &ApiKey) -> ApiKey {
        self.store.api_key(&key.workspace, &key.id).await.unwrap().expect("the key is stored")
    }

    /// The first page of `demo`'s keys.
    async fn keys(&self, include_deleted: bool) -> Page<ApiKey> {
        let listing = Listing::new(Pagination::default(), include_deleted);
        self.store.list_api_keys(&self.workspace.uid, listing).await.unwrap()
    }

    /// Applies `change` to `key` at a new instant; returns that instant too.
    async fn change(
        &mut self,
        key: &ApiKey,
        change: ApiKeyChange,
    ) -> (keys_store::StoreResult<ApiKey>, OffsetDateTime) {
        let now = self.world.tick(10);
        (self.store.change_api_key(&self.workspace.uid, &key.id, change, &self.world.actor, now).await, now)
    }

    /// What verification decides at `now` for the key its digest finds.
    async fn decision(&self, key: &ApiKey, now: OffsetDateTime) -> Result<(), Denial> {
        let found = self.store.api_key_by_digest(&key.digest).await.unwrap();
        let found = found.as_ref().map(|(key, workspace)| (key, workspace));
        decide_api_key::<&str>(found, Scope::organisation(&self.organisation.id), now, &[]).map(drop)
    }

    /// The organisation's audit trail, newest first, as (action, target).
    async fn trail(&self) -> Vec<(&'static str, String)> {
        let events = self.store.audit_events(&self.organisation.id, 1000).await.unwrap();
        events.into_iter().map(|event| (event.action.as_str(), event.target_id)).collect()
    }

    /// Asserts that exactly one event was written since `before` (a
    /// [`Start::trail`] length): `action` on `key`, by the world's actor,
    /// in `demo`, at `at`.
    async fn one_event(&self, before: usize, action: &str, key: &ApiKey, at: OffsetDateTime) {
        let events = self.store.audit_events(&self.organisation.id, 1000).await.unwrap();
        assert_eq!(events.len(), before + 1, "{action}: exactly one event: {events:?}");
        let newest = &events[0];
        assert_eq!((newest.action.as_str(), newest.target_id.as_str()), (action, key.id.as_str()));
        let expected = (at, Some(&self.world.actor), Some(&self.workspace.uid));
        assert_eq!((newest.at, newest.actor.as_ref(), newest.workspace.as_ref()), expected, "{action}");
    }
}

/// Each field of the profile patched alone changes that field only, and
/// `null` (`Some(None)`) clears each nullable one; each patch is one
/// `api_key.updated` event, and verification reads the patched key.
pub async fn api_key_patches_each_field_and_null_clears(db: &TestDb) {
    let mut start = Start::new(db, 60).await;
    let key = start.key("backend").await;
    let later = start.world.now + Duration::days(7);
    let meta = || KeyMeta::parse(r#"{"plan":"team","nested":{"a":[1,2]}}"#).unwrap();
    let patches: Vec<(&str, ApiKeyPatch, ApiKeyProfile)> = vec![
        (
            "name",
            ApiKeyPatch { name: Some(name_of("renamed")), ..Default::default() },
            ApiKeyProfile { name: name_of("renamed"), ..key.profile.clone() },
        ),
        (
            "description",
            ApiKeyPatch { description: Some(Description::parse(Some("new words")).unwrap()), ..Default::default() },
            ApiKeyProfile { description: Description::parse(Some("new words")).unwrap(), ..key.profile.clone() },
        ),
        (
            "scopes",
            ApiKeyPatch { scopes: Some(KeyScopes::parse(["orders:write"]).unwrap()), ..Default::default() },
            ApiKeyProfile { scopes: KeyScopes::parse(["orders:write"]).unwrap(), ..key.profile.clone() },
        ),
        (
            "external_id",
            ApiKeyPatch { external_id: Some(Some(ExternalId::parse("customer-7").unwrap())), ..Default::default() },
            ApiKeyProfile { external_id: Some(ExternalId::parse("customer-7").unwrap()), ..key.profile.clone() },
        ),
        (
            "meta",
            ApiKeyPatch { meta: Some(Some(meta())), ..Default::default() },
            ApiKeyProfile { meta: Some(meta()), ..key.profile.clone() },
        ),
        (
            "expires_at",
            ApiKeyPatch { expires_at: Some(Some(later)), ..Default::default() },
            ApiKeyProfile { expires_at: Some(later), ..key.profile.clone() },
        ),
        ("nothing", ApiKeyPatch::default(), key.profile.clone()),
        (
            "every nullable field cleared",
            ApiKeyPatch {
                description: Some(None),
                expires_at: Some(None),
                scopes: Some(KeyScopes::default()),
                external_id: Some(None),
                meta: Some(None),
                ..Default::default()
            },
            ApiKeyProfile::named(key.name.clone()),
        ),
    ];
    let mut current = key.clone();
    for (what, patch, expected) in patches {
        // Each patch starts from the key as created, so each changes one
        // field against a known whole.
        let reset = ApiKeyPatch {
            name: Some(key.name.clone()),
            description: Some(key.description.clone()),
            expires_at: Some(key.expires_at),
            scopes: Some(key.scopes.clone()),
            external_id: Some(key.external_id.clone()),
            meta: Some(key.meta.clone()),
        };
        if current.profile != key.profile {
            start.change(&key, ApiKeyChange::Patch(reset)).await.0.unwrap();
        }
        let before = start.trail().await.len();
        let (patched, now) = start.change(&key, ApiKeyChange::Patch(patch)).await;
        let patched = patched.unwrap();
        assert_eq!(patched.profile, expected, "{what}");
        assert_eq!((patched.updated_at, patched.updated_by.as_ref()), (now, Some(&start.world.actor)), "{what}");
        let unchanged = (patched.status(), &patched.digest, patched.created_at, patched.created_by.as_ref());
        assert_eq!(unchanged, (ApiKeyStatus::Active, &key.digest, key.created_at, key.created_by.as_ref()), "{what}");
        assert_eq!(start.read(&key).await, patched, "{what}: reads back as returned");
        let found = start.store.api_key_by_digest(&key.digest).await.unwrap().unwrap().0;
        assert_eq!(found, patched, "{what}: verification reads the patched key");
        start.one_event(before, "api_key.updated", &key, now).await;
        current = patched;
    }
    // An expiry given in nanoseconds is kept to the microsecond.
    let precise = later + Duration::nanoseconds(999);
    let patch = ApiKeyPatch { expires_at: Some(Some(precise)), ..Default::default() };
    assert_eq!(start.change(&key, ApiKeyChange::Patch(patch)).await.0.unwrap().expires_at, Some(later));
    assert_eq!(start.read(&key).await.expires_at, Some(later));
}

/// Active → disabled: `disabled_at/by` set, verification answers
/// `key_disabled`; disabled → active: cleared, verification grants again.
pub async fn api_key_disable_and_enable(db: &TestDb) {
    let mut start = Start::new(db, 61).await;
    let key = start.key("backend").await;
    assert_eq!(start.decision(&key, start.world.now).await, Ok(()));

    let before = start.trail().await.len();
    let (disabled, now) = start.change(&key, ApiKeyChange::Disable).await;
    let disabled = disabled.unwrap();
    assert_eq!(disabled.lifecycle, ApiKeyLifecycle::Disabled { at: now, by: Some(start.world.actor.clone()) });
    assert_eq!((disabled.updated_at, &disabled.profile), (now, &key.profile));
    assert_eq!(start.read(&key).await, disabled);
    start.one_event(before, "api_key.disabled", &key, now).await;
    assert_eq!(start.decision(&key, now).await, Err(Denial::KeyDisabled));
    // A disabled key may still be patched, and stays disabled.
    let rename = ApiKeyPatch { name: Some(name_of("parked")), ..Default::default() };
    let patched = start.change(&key, ApiKeyChange::Patch(rename)).await.0.unwrap();
    assert_eq!((&patched.lifecycle, patched.name.as_str()), (&disabled.lifecycle, "parked"));

    let before = start.trail().await.len();
    let (enabled, now) = start.change(&key, ApiKeyChange::Enable).await;
    let enabled = enabled.unwrap();
    assert_eq!((&enabled.lifecycle, enabled.updated_at), (&ApiKeyLifecycle::Active, now));
    assert_eq!(start.read(&key).await, enabled);
    start.one_event(before, "api_key.enabled", &key, now).await;
    assert_eq!(start.decision(&key, now).await, Ok(()));
    // And round again: the cycle is reversible as often as wanted.
    assert!(start.change(&key, ApiKeyChange::Disable).await.0.is_ok());
    assert!(start.change(&key, ApiKeyChange::Enable).await.0.is_ok());
}

/// A roll with a grace: the old key is `rolled` and expires at
/// `min(now + grace, its own expiry)`; the new key, found by its own digest,
/// is active with the old key's profile; the old verifies until the end of
/// its grace, not a microsecond longer.
pub async fn api_key_roll_with_grace(db: &TestDb) {
    let mut start = Start::new(db, 62).await;
    let key = start.key("backend").await;
    let own_expiry = key.expires_at.expect("a day ahead");

    // A grace that ends before the key's own expiry decides.
    let before = start.trail().await.len();
    let now = start.world.tick(10);
    let material = start.world.api_key_material();
    let grace = GracePeriod::from_seconds(3600).ok();
    let (uid, actor) = (&start.workspace.uid, &start.world.actor);
    let (rolled, fresh) = start.store.roll_api_key(uid, &key.id, grace, material.clone(), actor, now).await.unwrap();
    let end = now + Duration::hours(1);
    assert_eq!(rolled.lifecycle, ApiKeyLifecycle::Rolled { at: now, by: Some(actor.clone()) });
    assert_eq!((rolled.expires_at, rolled.updated_at), (Some(end), now));
    let profile_but_expiry = ApiKeyProfile { expires_at: key.expires_at, ..rolled.profile.clone() };
    assert_eq!(profile_but_expiry, key.profile, "a roll moves the old key's expiry only");
    assert_eq!(start.read(&key).await, rolled);
    let traces = (fresh.id.clone(), fresh.digest, fresh.masked_api_key.clone());
    assert_eq!(traces, (material.id, material.digest, material.masked_api_key));
    assert_eq!((fresh.status(), &fresh.profile, fresh.created_at), (ApiKeyStatus::Active, &key.profile, now));
    assert_eq!((fresh.created_by.as_ref(), fresh.last_used_at), (Some(actor), None));
    let found = start.store.api_key_by_digest(&fresh.digest).await.unwrap();
    assert_eq!(found, Some((fresh.clone(), start.workspace.clone())), "the new secret's digest is findable");
    assert_eq!(start.read(&fresh).await, fresh);
    start.one_event(before, "api_key.rolled", &key, now).await;
    let listed = start.keys(false).await;
    assert_eq!((listed.total, listed.items), (2, vec![fresh.clone(), rolled.clone()]));
    // Inside the grace both verify; at its end only the new one.
    assert_eq!(start.decision(&rolled, end - Duration::microseconds(1)).await, Ok(()));
    assert_eq!(start.decision(&rolled, end).await, Err(Denial::KeyExpired));
    assert_eq!(start.decision(&fresh, end).await, Ok(()));

    // A grace that would outlive the key's own expiry is cut to it.
    let grace = GracePeriod::from_seconds(GracePeriod::MAX_SECONDS).ok();
    let (now, material) = (start.world.tick(10), start.world.api_key_material());
    let (uid, actor) = (&start.workspace.uid, &start.world.actor);
    let (capped, next) = start.store.roll_api_key(uid, &fresh.id, grace, material, actor, now).await.unwrap();
    assert_eq!((capped.status(), capped.expires_at), (ApiKeyStatus::Rolled, Some(own_expiry)));
    assert_eq!((next.status(), next.expires_at), (ApiKeyStatus::Active, Some(own_expiry)));
    assert_eq!(start.read(&fresh).await, capped);
}

/// A roll without grace: the old key stops at once, a key without an
/// expiry getting the roll's instant as one; the new key inherits none.
pub async fn api_key_roll_without_grace(db: &TestDb) {
    let mut start = Start::new(db, 63).await;
    start.world.tick(10);
    let key = start.world.api_key(&start.workspace, "forever");
    start.store.create_api_key(&key).await.unwrap();
    assert_eq!(key.expires_at, None);
    let (now, material) = (start.world.tick(10), start.world.api_key_material());
    let (uid, actor) = (&start.workspace.uid, &start.world.actor);
    let (rolled, fresh) = start.store.roll_api_key(uid, &key.id, None, material, actor, now).await.unwrap();
    assert_eq!(rolled.lifecycle, ApiKeyLifecycle::Rolled { at: now, by: Some(actor.clone()) });
    assert_eq!(rolled.expires_at, Some(now));
    assert_eq!(start.read(&key).await, rolled);
    assert_eq!((fresh.status(), fresh.expires_at), (ApiKeyStatus::Active, None));
    assert_eq!(start.decision(&rolled, now).await, Err(Denial::KeyExpired));
    assert_eq!(start.decision(&fresh, now).await, Ok(()));
}

/// What a refusal case does to its fresh key first.
#[derive(Debug, Clone, Copy)]
enum Before {
    Nothing,
    Disable,
    Roll,
    Expire,
    Delete,
}

/// The change a refusal case attempts.
#[derive(Debug, Clone, Copy)]
enum Attempt {
    Roll,
    Disable,
    Enable,
    Delete,
    /// A patch of `expires_at` to the attempt's instant plus this much, or
    /// to null.
    Expiry(Option<Duration>),
}

impl Attempt {
    fn change(self, world: &mut World, now: OffsetDateTime) -> ApiKeyChange {
        match self {
            Self::Roll => {
                ApiKeyChange::Roll { grace: GracePeriod::from_seconds(60).ok(), material: world.api_key_material() }
            }
            Self::Disable => ApiKeyChange::Disable,
            Self::Enable => ApiKeyChange::Enable,
            Self::Delete => ApiKeyChange::Delete,
            Self::Expiry(offset) => ApiKeyChange::Patch(ApiKeyPatch {
                expires_at: Some(offset.map(|offset| now + offset)),
                ..Default::default()
            }),
        }
    }
}

/// Every refused change: the store answers the domain's refusal (or "not
/// found"), and nothing is written: the key reads back identical, no key
/// is added, no audit event is written.
pub async fn api_key_refusals_change_nothing(db: &TestDb) {
    let mut start = Start::new(db, 64).await;
    let not_active = |action| Expected::from(CoreError::ApiKeyNotActive { action });
    let cases = [
        ("roll a disabled key", Before::Disable, Attempt::Roll, not_active("rolled")),
        ("roll a rolled key", Before::Roll, Attempt::Roll, not_active("rolled")),
        ("roll an expired key", Before::Expire, Attempt::Roll, CoreError::ApiKeyExpired.into()),
        ("disable a disabled key", Before::Disable, Attempt::Disable, not_active("disabled")),
        ("disable a rolled key", Before::Roll, Attempt::Disable, not_active("disabled")),
        ("enable an active key", Before::Nothing, Attempt::Enable, CoreError::ApiKeyNotDisabled.into()),
        ("enable a rolled key", Before::Roll, Attempt::Enable, CoreError::ApiKeyNotDisabled.into()),
        (
            "expiry in the past",
            Before::Nothing,
            Attempt::Expiry(Some(-Duration::seconds(1))),
            CoreError::ExpiryInPast.into(),
        ),
        ("expiry of now", Before::Nothing, Attempt::Expiry(Some(Duration::ZERO)), CoreError::ExpiryInPast.into()),
        (
            "rolled key's expiry later",
            Before::Roll,
            Attempt::Expiry(Some(Duration::days(2))),
            CoreError::RolledKeyExpiry.into(),
        ),
        ("rolled key's expiry cleared", Before::Roll, Attempt::Expiry(None), CoreError::RolledKeyExpiry.into()),
        ("enable a deleted key", Before::Delete, Attempt::Enable, not_found("api key")),
        ("patch a deleted key", Before::Delete, Attempt::Expiry(None), not_found("api key")),
        ("roll a deleted key", Before::Delete, Attempt::Roll, not_found("api key")),
        ("delete a deleted key", Before::Delete, Attempt::Delete, not_found("api key")),
    ];
    for (what, before, attempt, expected) in cases {
        let key = start.key(what.split_whitespace().next().unwrap_or("key")).await;
        let (now, material) = (start.world.tick(10), start.world.api_key_material());
        let (uid, actor) = (&start.workspace.uid, &start.world.actor);
        match before {
            Before::Nothing => {}
            Before::Disable => {
                start.store.change_api_key(uid, &key.id, ApiKeyChange::Disable, actor, now).await.unwrap();
            }
            Before::Roll => {
                let grace = GracePeriod::from_seconds(3600).ok();
                start.store.roll_api_key(uid, &key.id, grace, material, actor, now).await.unwrap();
            }
            // Two days on, past its expiry (a day): keys-core decides with
            // the instant it is given.
            Before::Expire => {
                start.world.tick(2 * 86_400 * 1_000_000);
            }
            Before::Delete => {
                start.store.delete_api_key(uid, &key.id, actor, now).await.unwrap();
            }
        }
        let row = start.read(&key).await;
        let trail = start.trail().await;
        let keys = start.keys(true).await;
        let now = start.world.tick(10);
        let change = attempt.change(&mut start.world, now);
        let refused = start.store.change_api_key(&start.workspace.uid, &key.id, change, &start.world.actor, now).await;
        match &refused {
            Err(error) if Expected::of(error).as_ref() == Some(&expected) => {}
            other => panic!("{what}: expected {expected:?}, got {other:?}"),
        }
        assert_eq!(start.read(&key).await, row, "{what}: the row changed");
        assert_eq!(start.trail().await, trail, "{what}: an event was written");
        let after = start.keys(true).await;
        assert_eq!(after, keys, "{what}: the keys changed");
    }

    // A key of another workspace, or none at all, is not found through
    // this one, whatever the change.
    start.world.tick(10);
    let foreign = start.world.api_key(&start.other, "foreign");
    start.store.create_api_key(&foreign).await.unwrap();
    let unknown = ApiKeyId::generate(start.world.now, &mut start.world.rng);
    let trail = start.trail().await;
    for id in [&foreign.id, &unknown] {
        for attempt in [Attempt::Roll, Attempt::Disable, Attempt::Enable, Attempt::Delete, Attempt::Expiry(None)] {
            let now = start.world.tick(1);
            let change = attempt.change(&mut start.world, now);
            let (uid, actor) = (&start.workspace.uid, &start.world.actor);
            assert_refused(start.store.change_api_key(uid, id, change, actor, now).await, not_found("api key"));
        }
    }
    assert_eq!(start.read(&foreign).await, foreign);
    assert_eq!(start.trail().await, trail);
}

/// The whole life of one key, and of the key that replaces it, is one
/// audit event per change, with the action names of docs/API.md, Audit events.
pub async fn api_key_changes_are_audited_once_each(db: &TestDb) {
    let mut start = Start::new(db, 65).await;
    let key = start.key("backend").await;
    let rename = ApiKeyPatch { name: Some(name_of("renamed")), ..Default::default() };
    for change in [ApiKeyChange::Patch(rename), ApiKeyChange::Disable, ApiKeyChange::Enable] {
        start.change(&key, change).await.0.unwrap();
    }
    let (now, material) = (start.world.tick(10), start.world.api_key_material());
    let (uid, actor) = (&start.workspace.uid, &start.world.actor);
    let (_, fresh) = start.store.roll_api_key(uid, &key.id, None, material, actor, now).await.unwrap();
    start.change(&key, ApiKeyChange::Delete).await.0.unwrap();
    start.change(&fresh, ApiKeyChange::Delete).await.0.unwrap();
    let trail = start.trail().await;
    let (old, new) = (key.id.as_str().to_owned(), fresh.id.as_str().to_owned());
    assert_eq!(
        trail[..7],
        [
            ("api_key.deleted", new),
            ("api_key.deleted", old.clone()),
            ("api_key.rolled", old.clone()),
            ("api_key.enabled", old.clone()),
            ("api_key.disabled", old.clone()),
            ("api_key.updated", old.clone()),
            ("api_key.generated", old),
        ]
    );
    assert_eq!(trail.len(), 7 + 3, "and the organisation's and workspaces' own: {trail:?}");
}

/// The database backs keys-core's API-key rules: whatever writes to it
/// (another version, hand-written SQL), a rolled key without its expiry or
/// roll time, a disabled key without its disable time, an active key with
/// either, or `meta` that is not a JSON object or is over 4 KiB, is refused.
pub async fn the_database_refuses_impossible_api_key_rows(db: &TestDb) {
    let mut start = Start::new(db, 66).await;
    start.world.tick(10);
    let key = start.world.api_key(&start.workspace, "plain");
    start.store.create_api_key(&key).await.unwrap();
    let id = key.id.as_str();
    let too_big = format!(r#"{{"padding":"{}"}}"#, "x".repeat(KeyMeta::MAX_BYTES - 13));
    assert_eq!(too_big.len(), KeyMeta::MAX_BYTES + 1);
    let mut refused = vec![
        "UPDATE api_keys SET status = 'rolled' WHERE id = $1".to_owned(),
        "UPDATE api_keys SET status = 'rolled', rolled_at = created_at WHERE id = $1".to_owned(),
        "UPDATE api_keys SET status = 'rolled', expires_at = created_at WHERE id = $1".to_owned(),
        "UPDATE api_keys SET status = 'disabled' WHERE id = $1".to_owned(),
        "UPDATE api_keys SET status = 'disabled', disabled_at = created_at, rolled_at = created_at, \
         expires_at = created_at WHERE id = $1"
            .to_owned(),
        "UPDATE api_keys SET disabled_at = created_at WHERE id = $1".to_owned(),
        "UPDATE api_keys SET rolled_at = created_at, expires_at = created_at WHERE id = $1".to_owned(),
        "UPDATE api_keys SET status = 'retired' WHERE id = $1".to_owned(),
        format!("UPDATE api_keys SET meta = '{too_big}' WHERE id = $1"),
        "UPDATE api_keys SET meta = '[1, 2]' WHERE id = $1".to_owned(),
        "UPDATE api_keys SET meta = '\"text\"' WHERE id = $1".to_owned(),
        "UPDATE api_keys SET meta = 'null' WHERE id = $1".to_owned(),
        "UPDATE api_keys SET meta = '{not json}' WHERE id = $1".to_owned(),
        "UPDATE api_keys SET external_id = '' WHERE id = $1".to_owned(),
    ];
    if db.kind == Kind::Postgres {
        // SQLite keeps scopes comma-joined and leaves their count to keys-core.
        refused.push("UPDATE api_keys SET scopes = array_fill('a'::text, ARRAY[65]) WHERE id = $1".to_owned());
    }
    for statement in &refused {
        let outcome = db.execute(statement, &[id]).await;
        assert!(outcome.is_err(), "the database accepted: {statement} ({outcome:?})");
    }
    assert_eq!(start.read(&key).await, key, "nothing of it was written");

    // Consistent rows are accepted, and read back as keys-core has them.
    let largest = format!(r#"{{"padding":"{}"}}"#, "x".repeat(KeyMeta::MAX_BYTES - 14));
    let accepted = [
        format!("UPDATE api_keys SET meta = '{largest}' WHERE id = $1"),
        "UPDATE api_keys SET status = 'disabled', disabled_at = created_at WHERE id = $1".to_owned(),
        "UPDATE api_keys SET status = 'active', disabled_at = NULL WHERE id = $1".to_owned(),
        "UPDATE api_keys SET status = 'rolled', rolled_at = created_at, expires_at = created_at WHERE id = $1"
            .to_owned(),
    ];
    for statement in &accepted {
        assert_eq!(db.execute(statement, &[id]).await, Ok(1), "refused: {statement}");
    }
    let read = start.read(&key).await;
    assert_eq!((read.status(), read.expires_at), (ApiKeyStatus::Rolled, Some(key.created_at)));
    assert_eq!(read.meta.as_ref().map(|meta| meta.as_str().len()), Some(KeyMeta::MAX_BYTES));
}

/// `record_api_key_uses` moves `last_used_at` forwards only: a later use
/// then an earlier one leaves the later; the latest of a batch wins in any
/// order; deleted and unknown keys are skipped; no audit event, no
/// `updated_at` change.
pub async fn last_used_at_only_moves_forwards(db: &TestDb) {
    let mut start = Start::new(db, 67).await;
    let [first, second] = [start.key("first").await, start.key("second").await];
    let deleted = start.key("deleted").await;
    let t0 = start.world.tick(10);
    let at = |seconds: i64| t0 + Duration::seconds(seconds);
    let uses = &start.store;
    let trail = start.trail().await;

    assert_eq!(uses.record_api_key_uses(&[(first.id.clone(), at(20))]).await.unwrap(), 1);
    assert_eq!(uses.record_api_key_uses(&[(first.id.clone(), at(10))]).await.unwrap(), 0, "earlier: nothing moves");
    assert_eq!(uses.record_api_key_uses(&[(first.id.clone(), at(20))]).await.unwrap(), 0, "equal: nothing moves");
    assert_eq!(start.read(&first).await.last_used_at, Some(at(20)));
    // In one batch, duplicates in any order: the latest wins.
    let batch = [
        (second.id.clone(), at(30)),
        (first.id.clone(), at(15)),
        (second.id.clone(), at(40)),
        (second.id.clone(), at(35)),
    ];
    uses.record_api_key_uses(&batch).await.unwrap();
    assert_eq!(start.read(&first).await.last_used_at, Some(at(20)));
    assert_eq!(start.read(&second).await.last_used_at, Some(at(40)));
    // A use given in nanoseconds is kept to the microsecond.
    let precise = at(50) + Duration::nanoseconds(123_999);
    assert_eq!(uses.record_api_key_uses(&[(first.id.clone(), precise)]).await.unwrap(), 1);
    assert_eq!(start.read(&first).await.last_used_at, Some(at(50) + Duration::microseconds(123)));

    // A deleted key keeps what it had; an unknown key is no error.
    uses.record_api_key_uses(&[(deleted.id.clone(), at(5))]).await.unwrap();
    let (_, now) = start.change(&deleted, ApiKeyChange::Delete).await;
    let unknown = ApiKeyId::generate(now, &mut start.world.rng);
    let moved = start.store.record_api_key_uses(&[(deleted.id.clone(), at(60)), (unknown, at(60))]).await.unwrap();
    assert_eq!(moved, 0);
    let gone = start.read(&deleted).await;
    assert_eq!((gone.last_used_at, gone.deleted_at()), (Some(at(5)), Some(now)));
    assert_eq!(start.store.record_api_key_uses(&[]).await.unwrap(), 0);

    // Not a change of the key: no event, no update time; the rest of the
    // row is as it was.
    assert_eq!(start.trail().await.len(), trail.len() + 1, "only the delete's event: {:?}", start.trail().await);
    let read = start.read(&second).await;
    assert_eq!(read.profile, second.profile);
    assert_eq!((read.updated_at, read.lifecycle.clone()), (second.updated_at, second.lifecycle.clone()));
}

/// Two stores (two pools, as two replicas have) on one database, each with
/// several flushers at once, record uses of the same keys in batches in
/// random orders: no deadlock, no error, every key ends at the latest use
/// anyone recorded, and a reader polling all along never sees a value go
/// back.
pub async fn concurrent_use_recording_never_moves_backwards(db: &TestDb) {
    let mut start = Start::new(db, 68).await;
    let mut keys = Vec::new();
    for index in 0..16 {
        keys.push(start.key(&format!("key {index}")).await);
    }
    let t0 = start.world.tick(10);
    let stores = [db.store().await, db.store().await];
    let ids: Vec<ApiKeyId> = keys.iter().map(|key| key.id.clone()).collect();

    let mut flushers = JoinSet::new();
    for flusher in 0..6_u64 {
        let (store, ids) = (Arc::clone(&stores[(flusher % 2) as usize]), ids.clone());
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(flusher);
        flushers.spawn(async move {
            let mut latest = vec![t0; ids.len()];
            for _ in 0..20 {
                // Each batch holds every key once, at a random instant, in
                // a random order: the store must take its row locks in one
                // order whatever it is handed.
                let mut batch: Vec<(usize, OffsetDateTime)> = (0..ids.len())
                    .map(|index| (index, t0 + Duration::microseconds(i64::from(rng.next_u32() % 1_000_000))))
                    .collect();
                for index in (1..batch.len()).rev() {
                    batch.swap(index, rng.next_u32() as usize % (index + 1));
                }
                for &(index, at) in &batch {
                    latest[index] = latest[index].max(at);
                }
                let uses: Vec<_> = batch.into_iter().map(|(index, at)| (ids[index].clone(), at)).collect();
                store.record_api_key_uses(&uses).await.expect("a flush never fails, never deadlocks");
            }
            latest
        });
    }
    let reader = {
        let (store, keys) = (Arc::clone(&start.store), keys.clone());
        tokio::spawn(async move {
            let mut seen: Vec<Option<OffsetDateTime>> = vec![None; keys.len()];
            for _ in 0..40 {
                for (index, key) in keys.iter().enumerate() {
                    let now = store.api_key(&key.workspace, &key.id).await.unwrap().unwrap().last_used_at;
                    assert!(now >= seen[index], "{}: last_used_at went back from {:?} to {now:?}", key.id, seen[index]);
                    seen[index] = now;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut expected = vec![t0; ids.len()];
    let finished = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(joined) = flushers.join_next().await {
            for (slot, latest) in expected.iter_mut().zip(joined.expect("a flusher panicked")) {
                *slot = (*slot).max(latest);
            }
        }
    });
    finished.await.expect("the flushers finish (no deadlock)");
    reader.await.expect("the reader saw no value go back");
    for (key, expected) in keys.iter().zip(expected) {
        assert_eq!(start.read(key).await.last_used_at, Some(expected), "{}", key.id);
    }
}

/// A write whose caller goes away part way (a client that disconnects, a
/// request timeout, a flusher stopped) leaves the store writable: the next
/// write is not blocked and commits, as another store sees. Rounds cancel
/// after different numbers of polls, so at different points of the write.
pub async fn a_cancelled_write_leaves_the_store_writable(db: &TestDb) {
    let mut start = Start::new(db, 69).await;
    let key = start.key("backend").await;
    let reader = db.store().await;
    for round in 0..24_u32 {
        let change = if round % 2 == 0 { ApiKeyChange::Disable } else { ApiKeyChange::Enable };
        let (uid, actor, now) = (start.workspace.uid.clone(), start.world.actor.clone(), start.world.tick(10));
        let mut cancelled = Box::pin(start.store.change_api_key(&uid, &key.id, change, &actor, now));
        for _ in 0..round % 6 {
            let poll = std::future::poll_fn(|context| {
                std::task::Poll::Ready(std::future::Future::poll(cancelled.as_mut(), context))
            });
            if poll.await.is_ready() {
                break;
            }
            tokio::task::yield_now().await;
        }
        drop(cancelled);
        // The next uses of the store go through at once, and commit.
        let name = name_of(&format!("round {round}"));
        let rename = ApiKeyChange::Patch(ApiKeyPatch { name: Some(name.clone()), ..Default::default() });
        let next = start.store.change_api_key(&uid, &key.id, rename, &actor, start.world.tick(10));
        let next = tokio::time::timeout(std::time::Duration::from_secs(5), next).await;
        next.unwrap_or_else(|_| panic!("round {round}: the next write is blocked")).unwrap();
        let used = [(key.id.clone(), start.world.now)];
        let uses = start.store.record_api_key_uses(&used);
        tokio::time::timeout(std::time::Duration::from_secs(5), uses).await.expect("not blocked").unwrap();
        let read = reader.api_key(&key.workspace, &key.id).await.unwrap().unwrap();
        assert_eq!((&read.name, read.last_used_at), (&name, Some(start.world.now)), "round {round}: committed");
    }
}

//! Every operation of the store and every refusal, one backend at a time.

use keys_core::{
    ApiKeyId, CoreError, DomainPattern, GracePeriod, OrganisationKeyId, Pagination, PublicKeyId, PublicKeyPatch,
    SigningKeyStatus, SigningKeyUid, WorkspaceUid,
};
use keys_store::{Conflict, Listing, PublicKeyChange, Store};
use time::Duration;

use crate::support::{acme, assert_refused, first_second_foreign, name_of, not_found, Kind, TestDb, World};

fn page(limit: u32, offset: u64) -> Pagination {
    Pagination::new(limit, offset).unwrap()
}

pub async fn opens_migrates_and_pings(db: &TestDb) {
    let store = db.store().await;
    store.ping().await.unwrap();
    // Opening an already migrated database applies nothing and works.
    let again = db.store().await;
    again.ping().await.unwrap();
    let mut world = World::new(1);
    let organisation = world.stored_organisation(&*store, "acme").await;
    assert_eq!(again.organisation(&organisation.id).await.unwrap(), Some(organisation));
}

pub async fn bootstrap_happens_once(db: &TestDb) {
    let store = db.store().await;
    let mut world = World::new(2);
    let bootstrap = world.bootstrap("default");
    assert!(store.bootstrap_if_empty(&bootstrap).await.unwrap());

    let organisation = &bootstrap.organisation;
    assert_eq!(store.organisation(&organisation.id).await.unwrap().as_ref(), Some(organisation));
    assert_eq!(store.organisation_by_name("default").await.unwrap().as_ref(), Some(organisation));
    for workspace in &bootstrap.workspaces {
        assert_eq!(store.workspace_by_uid(&workspace.uid).await.unwrap().as_ref(), Some(workspace));
    }
    let listed = store.list_workspaces(&organisation.id, Pagination::default()).await.unwrap();
    assert_eq!(listed.total, 2);
    assert_eq!(store.service_token_by_digest(&bootstrap.token.digest).await.unwrap(), Some(bootstrap.token.clone()));

    // A second bootstrap (another process starting later) changes nothing.
    let other = world.bootstrap("other");
    assert!(!store.bootstrap_if_empty(&other).await.unwrap());
    assert!(!store.bootstrap_if_empty(&bootstrap).await.unwrap());
    assert_eq!(store.organisation(&other.organisation.id).await.unwrap(), None);
    assert_eq!(store.service_token_by_digest(&other.token.digest).await.unwrap(), None);

    let actions: Vec<&str> = store
        .audit_events(&organisation.id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.action.as_str())
        .collect();
    assert_eq!(actions, ["service_token.generated", "workspace.created", "workspace.created", "organisation.created"]);
}

pub async fn organisations_and_name_refusal(db: &TestDb) {
    let store = db.store().await;
    let mut world = World::new(3);
    let acme = world.stored_organisation(&*store, "acme").await;
    assert_eq!(store.organisation(&acme.id).await.unwrap().as_ref(), Some(&acme));
    assert_eq!(store.organisation_by_name("acme").await.unwrap().as_ref(), Some(&acme));
    assert_eq!(store.organisation_by_name("ACME").await.unwrap(), None);
    assert_eq!(store.organisation(&world.organisation("ghost").id).await.unwrap(), None);

    let impostor = world.organisation("acme");
    assert_refused(store.create_organisation(&impostor).await, Conflict::OrganisationNameTaken("acme".into()));
    assert_eq!(store.organisation(&impostor.id).await.unwrap(), None);
    // An empty database is no longer empty.
    assert!(!store.bootstrap_if_empty(&world.bootstrap("default")).await.unwrap());
}

pub async fn service_tokens_by_digest(db: &TestDb) {
    let (store, mut world, organisation, []) = acme(db, 4, []).await;
    let token = world.service_token(&organisation);
    store.create_service_token(&token).await.unwrap();
    assert_eq!(store.service_token_by_digest(&token.digest).await.unwrap(), Some(token.clone()));
    assert_eq!(store.service_token_by_digest(&world.digest()).await.unwrap(), None);

    // A revoked token no longer authenticates.
    let mut revoked = world.service_token(&organisation);
    revoked.revoke(1, None, world.tick(5)).unwrap();
    store.create_service_token(&revoked).await.unwrap();
    assert_eq!(store.service_token_by_digest(&revoked.digest).await.unwrap(), None);

    let ghost = world.organisation("ghost");
    let orphan = world.service_token(&ghost);
    assert_refused(store.create_service_token(&orphan).await, not_found("organisation"));
}

pub async fn workspaces_slugs_and_listing(db: &TestDb) {
    let store = db.store().await;
    let mut world = World::new(5);
    let acme = world.stored_organisation(&*store, "acme").await;
    let globex = world.stored_organisation(&*store, "globex").await;

    let mut created = Vec::new();
    for slug in ["alpha", "beta", "gamma"] {
        let workspace = world.workspace(&acme, slug);
        store.create_workspace(&workspace).await.unwrap();
        created.push(workspace);
    }
    // Slugs are unique per organisation, not globally.
    let other_alpha = world.workspace(&globex, "alpha");
    store.create_workspace(&other_alpha).await.unwrap();

    assert_eq!(store.workspace_by_slug(&acme.id, "alpha").await.unwrap().as_ref(), Some(&created[0]));
    assert_eq!(store.workspace_by_slug(&globex.id, "alpha").await.unwrap().as_ref(), Some(&other_alpha));
    assert_eq!(store.workspace_by_slug(&globex.id, "beta").await.unwrap(), None);
    assert_eq!(store.workspace_by_uid(&created[1].uid).await.unwrap().as_ref(), Some(&created[1]));
    let unknown = WorkspaceUid::generate(world.now, &mut world.rng);
    assert_eq!(store.workspace_by_uid(&unknown).await.unwrap(), None);

    let duplicate = world.workspace(&acme, "beta");
    assert_refused(store.create_workspace(&duplicate).await, Conflict::SlugTaken("beta".into()));
    let ghost = world.organisation("ghost");
    let orphan = world.workspace(&ghost, "delta");
    assert_refused(store.create_workspace(&orphan).await, not_found("organisation"));

    let first = store.list_workspaces(&acme.id, page(2, 0)).await.unwrap();
    assert_eq!(first.total, 3);
    assert_eq!(first.pagination, page(2, 0));
    assert_eq!(first.items, vec![created[2].clone(), created[1].clone()]);
    let second = store.list_workspaces(&acme.id, page(2, 2)).await.unwrap();
    assert_eq!((second.total, second.items), (3, vec![created[0].clone()]));
    let beyond = store.list_workspaces(&acme.id, page(10, 3)).await.unwrap();
    assert_eq!((beyond.total, beyond.items.len()), (3, 0));
    let huge = store.list_workspaces(&acme.id, page(100, Pagination::MAX_OFFSET)).await.unwrap();
    assert_eq!((huge.total, huge.items.len()), (3, 0));
}

pub async fn api_key_lifecycle(db: &TestDb) {
    let (store, mut world, _, [workspace, other]) = acme(db, 6, ["demo", "other"]).await;

    let [first, second, foreign] = first_second_foreign(&mut world, &workspace, &other, World::api_key);
    for key in [&first, &second, &foreign] {
        store.create_api_key(key).await.unwrap();
    }

    assert_eq!(store.api_key_by_digest(&first.digest).await.unwrap(), Some((first.clone(), workspace.clone())));
    assert_eq!(store.api_key_by_digest(&world.digest()).await.unwrap(), None);
    let listed = store.list_api_keys(&workspace.uid, Listing::new(Pagination::default(), false)).await.unwrap();
    assert_eq!((listed.total, listed.items), (2, vec![second.clone(), first.clone()]));

    // A key of another workspace is not found through this one.
    let now = world.tick(10);
    assert_refused(store.delete_api_key(&workspace.uid, &foreign.id, &world.actor, now).await, not_found("api key"));
    let unknown = ApiKeyId::generate(now, &mut world.rng);
    assert_refused(store.delete_api_key(&workspace.uid, &unknown, &world.actor, now).await, not_found("api key"));

    let deleted = store.delete_api_key(&workspace.uid, &first.id, &world.actor, now).await.unwrap();
    assert_eq!(deleted.deleted_at(), Some(now));
    assert_eq!(deleted.deletion.as_ref().and_then(|deletion| deletion.by.as_ref()), Some(&world.actor));
    // Verification still finds it, so it can say "deleted".
    let (found, _) = store.api_key_by_digest(&first.digest).await.unwrap().unwrap();
    assert_eq!(found, deleted);
    assert!(found.is_deleted());
    assert_refused(
        store.delete_api_key(&workspace.uid, &first.id, &world.actor.clone(), world.tick(1)).await,
        not_found("api key"),
    );

    let live = store.list_api_keys(&workspace.uid, Listing::new(Pagination::default(), false)).await.unwrap();
    assert_eq!((live.total, live.items), (1, vec![second.clone()]));
    let all = store.list_api_keys(&workspace.uid, Listing::new(Pagination::default(), true)).await.unwrap();
    assert_eq!((all.total, all.items), (2, vec![second.clone(), deleted]));
}

pub async fn public_key_lifecycle(db: &TestDb) {
    let (store, mut world, _, [workspace, other]) = acme(db, 7, ["demo", "other"]).await;
    let actor = world.actor.clone();

    let create = |world: &mut World, workspace: &keys_core::WorkspaceUid, name: &str| {
        let now = world.tick(10);
        (world.new_public_key(workspace, name), now)
    };
    let (new, now) = create(&mut world, &workspace.uid, "web");
    let default = store.create_public_key(new, &actor, now).await.unwrap();
    assert!(default.is_default);
    assert_eq!(default.created_at, now);
    let (new, now) = create(&mut world, &workspace.uid, "mobile");
    let mobile = store.create_public_key(new, &actor, now).await.unwrap();
    assert!(!mobile.is_default);
    let (new, now) = create(&mut world, &other.uid, "elsewhere");
    let foreign = store.create_public_key(new, &actor, now).await.unwrap();
    assert!(foreign.is_default, "defaults are per workspace");

    assert_eq!(store.public_key_by_value(&mobile.api_key).await.unwrap(), Some((mobile.clone(), workspace.clone())));
    assert_eq!(store.public_key_by_value("SS.PUBK.nope").await.unwrap(), None);

    // Patch.
    let now = world.tick(10);
    let patch = PublicKeyPatch {
        name: Some(name_of("mobile app")),
        description: Some(keys_core::Description::parse(Some("iOS and Android")).unwrap()),
        allowed_domains: Some(Some(DomainPattern::parse_list(["app.example.com", "*.example.org"]).unwrap())),
        is_secure_mode_enabled: Some(true),
    };
    let patched =
        store.change_public_key(&workspace.uid, &mobile.id, PublicKeyChange::Patch(patch), &actor, now).await.unwrap();
    assert_eq!(patched.name, name_of("mobile app"));
    assert!(patched.is_secure_mode_enabled);
    assert_eq!(patched.updated_at, now);
    assert_eq!(store.public_key_by_value(&mobile.api_key).await.unwrap().unwrap().0, patched);
    // An empty list of domains is not "any origin", and survives the trip.
    let now = world.tick(10);
    let none_allowed = PublicKeyPatch { allowed_domains: Some(Some(Vec::new())), ..PublicKeyPatch::default() };
    let patched = store
        .change_public_key(&workspace.uid, &mobile.id, PublicKeyChange::Patch(none_allowed), &actor, now)
        .await
        .unwrap();
    assert_eq!(patched.allowed_domains, Some(Vec::new()));
    assert_eq!(store.public_key_by_value(&mobile.api_key).await.unwrap().unwrap().0, patched);

    // Rotate: same record, new material; the old value is gone at once.
    let now = world.tick(10);
    let new_value = world.public_key_value();
    let rotated = store
        .change_public_key(&workspace.uid, &mobile.id, PublicKeyChange::Rotate(new_value.clone()), &actor, now)
        .await
        .unwrap();
    assert_eq!(
        (rotated.id.clone(), rotated.api_key.clone(), rotated.rotated_at),
        (mobile.id.clone(), new_value, Some(now))
    );
    assert_eq!(store.public_key_by_value(&mobile.api_key).await.unwrap(), None);
    assert_eq!(store.public_key_by_value(&rotated.api_key).await.unwrap().unwrap().0, rotated);

    // Another workspace's key is not found here.
    let now = world.tick(10);
    assert_refused(
        store
            .change_public_key(
                &workspace.uid,
                &foreign.id,
                PublicKeyChange::Patch(PublicKeyPatch::default()),
                &actor,
                now,
            )
            .await,
        not_found("public key"),
    );
    assert_refused(store.delete_public_key(&workspace.uid, &foreign.id, &actor, now).await, not_found("public key"));

    // The default cannot go while another key is live.
    assert_refused(
        store.delete_public_key(&workspace.uid, &default.id, &actor, now).await,
        CoreError::DefaultPublicKeyInUse,
    );
    let deleted = store.delete_public_key(&workspace.uid, &mobile.id, &actor, now).await.unwrap();
    assert_eq!(deleted.deleted_at, Some(now));
    // Deleted: every further change is "not found"; verification sees it deleted.
    let now = world.tick(10);
    assert_refused(store.delete_public_key(&workspace.uid, &mobile.id, &actor, now).await, not_found("public key"));
    let value = world.public_key_value();
    assert_refused(
        store.change_public_key(&workspace.uid, &mobile.id, PublicKeyChange::Rotate(value), &actor, now).await,
        not_found("public key"),
    );
    assert!(store.public_key_by_value(&rotated.api_key).await.unwrap().unwrap().0.is_deleted());
    // Now the default is the last key and may go; the next key is default.
    let deleted_default = store.delete_public_key(&workspace.uid, &default.id, &actor, now).await.unwrap();
    assert!(deleted_default.is_deleted());
    let (new, now) = create(&mut world, &workspace.uid, "fresh");
    let fresh = store.create_public_key(new, &actor, now).await.unwrap();
    assert!(fresh.is_default);

    let live = store.list_public_keys(&workspace.uid, Listing::new(Pagination::default(), false)).await.unwrap();
    assert_eq!((live.total, live.items), (1, vec![fresh.clone()]));
    let all = store.list_public_keys(&workspace.uid, Listing::new(Pagination::default(), true)).await.unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(all.items, vec![fresh, deleted, deleted_default]);
}

pub async fn signing_key_lifecycle(db: &TestDb) {
    let (store, mut world, _, [workspace, other]) = acme(db, 8, ["demo", "other"]).await;
    let actor = world.actor.clone();

    let now = world.tick(10);
    let first = store.create_signing_key(&workspace.uid, world.signing_key(), &actor, now).await.unwrap();
    assert_eq!(
        (first.status(), first.created_at, first.workspace.clone()),
        (SigningKeyStatus::Active, now, workspace.uid.clone())
    );
    assert_refused(
        store.create_signing_key(&workspace.uid, world.signing_key(), &actor, world.tick(1)).await,
        CoreError::OnlyOneActiveSigningKey,
    );
    let foreign = store.create_signing_key(&other.uid, world.signing_key(), &actor, world.tick(1)).await.unwrap();

    // Roll with a grace period.
    let now = world.tick(10);
    let grace = GracePeriod::from_seconds(3600).unwrap();
    let (rolled, second) = store
        .roll_signing_key(&workspace.uid, &first.uid, Some(grace), world.signing_key(), &actor, now)
        .await
        .unwrap();
    assert_eq!(rolled.uid, first.uid);
    assert_eq!(
        (rolled.status(), rolled.rolled_at(), rolled.expiry_at()),
        (SigningKeyStatus::Rolled, Some(now), Some(now + Duration::hours(1)))
    );
    assert_eq!((second.status(), second.created_at), (SigningKeyStatus::Active, now));
    assert_eq!(store.signing_key_by_uid(&first.uid).await.unwrap(), Some(rolled.clone()));

    // Rolling a rolled key, an unknown key or another workspace's key.
    let now = world.tick(10);
    assert_refused(
        store.roll_signing_key(&workspace.uid, &first.uid, None, world.signing_key(), &actor, now).await,
        CoreError::SigningKeyNotActive,
    );
    let unknown = SigningKeyUid::generate(now, &mut world.rng);
    assert_refused(
        store.roll_signing_key(&workspace.uid, &unknown, None, world.signing_key(), &actor, now).await,
        not_found("signing key"),
    );
    assert_refused(
        store.roll_signing_key(&workspace.uid, &foreign.uid, None, world.signing_key(), &actor, now).await,
        not_found("signing key"),
    );
    assert_refused(store.delete_signing_key(&workspace.uid, &foreign.uid, &actor, now).await, not_found("signing key"));

    // Roll without grace: the rolled key expires at once.
    let (rolled_again, third) =
        store.roll_signing_key(&workspace.uid, &second.uid, None, world.signing_key(), &actor, now).await.unwrap();
    assert_eq!(rolled_again.expiry_at(), Some(now));
    assert!(!rolled_again.verifies_at(now));

    let live = store.live_signing_keys(&workspace.uid).await.unwrap();
    assert_eq!(live.len(), 3);
    assert_eq!(live.iter().filter(|key| key.status() == SigningKeyStatus::Active).count(), 1);

    // Delete the rolled key, then the active one: a workspace may have none.
    let now = world.tick(10);
    let deleted = store.delete_signing_key(&workspace.uid, &rolled.uid, &actor, now).await.unwrap();
    assert_eq!((deleted.deleted_at(), deleted.deleted_by()), (Some(now), Some(&actor)));
    assert_refused(
        store.delete_signing_key(&workspace.uid, &rolled.uid, &actor, world.tick(1)).await,
        not_found("signing key"),
    );
    assert_eq!(store.signing_key_by_uid(&rolled.uid).await.unwrap(), Some(deleted.clone()));
    let now = world.tick(10);
    let deleted_active = store.delete_signing_key(&workspace.uid, &third.uid, &actor, now).await.unwrap();
    assert_refused(
        store.roll_signing_key(&workspace.uid, &third.uid, None, world.signing_key(), &actor, world.tick(1)).await,
        not_found("signing key"),
    );
    // With the active key deleted, a new one may be created.
    let fourth = store.create_signing_key(&workspace.uid, world.signing_key(), &actor, world.tick(10)).await.unwrap();

    let live = store.list_signing_keys(&workspace.uid, Listing::new(Pagination::default(), false)).await.unwrap();
    assert_eq!((live.total, live.items), (2, vec![fourth.clone(), rolled_again.clone()]));
    let all = store.list_signing_keys(&workspace.uid, Listing::new(Pagination::default(), true)).await.unwrap();
    assert_eq!(all.total, 4);
    assert_eq!(all.items, vec![fourth, deleted_active, rolled_again, deleted]);
    assert_eq!(store.live_signing_keys(&other.uid).await.unwrap(), vec![foreign]);
}

pub async fn organisation_key_lifecycle(db: &TestDb) {
    let store = db.store().await;
    let mut world = World::new(9);
    let acme = world.stored_organisation(&*store, "acme").await;
    let globex = world.stored_organisation(&*store, "globex").await;

    let [first, second, foreign] = first_second_foreign(&mut world, &acme, &globex, World::organisation_key);
    for key in [&first, &second, &foreign] {
        store.create_organisation_key(key).await.unwrap();
    }
    let ghost = world.organisation("ghost");
    let orphan = world.organisation_key(&ghost, "orphan");
    assert_refused(store.create_organisation_key(&orphan).await, not_found("organisation"));

    assert_eq!(store.list_organisation_keys(&acme.id).await.unwrap(), vec![second.clone(), first.clone()]);
    assert_eq!(store.organisation_key(&first.id).await.unwrap().as_ref(), Some(&first));
    let unknown = OrganisationKeyId::generate(world.now, &mut world.rng);
    assert_eq!(store.organisation_key(&unknown).await.unwrap(), None);

    let now = world.tick(10);
    let actor = world.actor.clone();
    assert_refused(
        store.delete_organisation_key(&acme.id, &foreign.id, &actor, now).await,
        not_found("organisation signing key"),
    );
    assert_refused(
        store.delete_organisation_key(&acme.id, &unknown, &actor, now).await,
        not_found("organisation signing key"),
    );
    let deleted = store.delete_organisation_key(&acme.id, &first.id, &actor, now).await.unwrap();
    assert_eq!((deleted.deleted_at, deleted.deleted_by.as_ref()), (Some(now), Some(&actor)));
    assert_refused(
        store.delete_organisation_key(&acme.id, &first.id, &actor, world.tick(1)).await,
        not_found("organisation signing key"),
    );
    // Lookup by id still finds it (verification says "deleted"); the list does not.
    assert_eq!(store.organisation_key(&first.id).await.unwrap(), Some(deleted));
    assert_eq!(store.list_organisation_keys(&acme.id).await.unwrap(), vec![second]);
    assert_eq!(store.list_organisation_keys(&globex.id).await.unwrap(), vec![foreign]);
}

pub async fn missing_targets_are_not_found(db: &TestDb) {
    let (store, mut world, organisation, []) = acme(db, 10, []).await;
    let ghost = world.workspace(&organisation, "ghost"); // never written
    let actor = world.actor.clone();
    let now = world.tick(1);
    let workspace_missing = not_found("workspace");

    assert_refused(store.create_api_key(&world.api_key(&ghost, "k")).await, workspace_missing.clone());
    let api_key = ApiKeyId::generate(now, &mut world.rng);
    assert_refused(store.delete_api_key(&ghost.uid, &api_key, &actor, now).await, workspace_missing.clone());
    assert_refused(
        store.create_public_key(world.new_public_key(&ghost.uid, "k"), &actor, now).await,
        workspace_missing.clone(),
    );
    let public_key = PublicKeyId::generate(now, &mut world.rng);
    assert_refused(
        store
            .change_public_key(&ghost.uid, &public_key, PublicKeyChange::Patch(PublicKeyPatch::default()), &actor, now)
            .await,
        workspace_missing.clone(),
    );
    assert_refused(store.delete_public_key(&ghost.uid, &public_key, &actor, now).await, workspace_missing.clone());
    assert_refused(
        store.create_signing_key(&ghost.uid, world.signing_key(), &actor, now).await,
        workspace_missing.clone(),
    );
    let uid = SigningKeyUid::generate(now, &mut world.rng);
    assert_refused(
        store.roll_signing_key(&ghost.uid, &uid, None, world.signing_key(), &actor, now).await,
        workspace_missing.clone(),
    );
    assert_refused(store.delete_signing_key(&ghost.uid, &uid, &actor, now).await, workspace_missing);

    let nobody = world.organisation("nobody");
    let key = OrganisationKeyId::generate(now, &mut world.rng);
    assert_refused(store.delete_organisation_key(&nobody.id, &key, &actor, now).await, not_found("organisation"));

    // Reads of what does not exist are empty, not errors.
    assert_eq!(store.list_api_keys(&ghost.uid, Listing::new(Pagination::default(), true)).await.unwrap().total, 0);
    assert_eq!(store.list_public_keys(&ghost.uid, Listing::new(Pagination::default(), true)).await.unwrap().total, 0);
    assert_eq!(store.list_signing_keys(&ghost.uid, Listing::new(Pagination::default(), true)).await.unwrap().total, 0);
    assert!(store.live_signing_keys(&ghost.uid).await.unwrap().is_empty());
    assert_eq!(store.signing_key_by_uid(&uid).await.unwrap(), None);
    assert!(store.list_organisation_keys(&nobody.id).await.unwrap().is_empty());
    assert_eq!(store.list_workspaces(&nobody.id, Pagination::default()).await.unwrap().total, 0);
    // Nothing was written on the way.
    let audit = store.audit_events(&organisation.id, 100).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
}

pub async fn timestamps_read_back_exactly(db: &TestDb) {
    let (store, mut world, _, [workspace]) = acme(db, 11, ["demo"]).await;
    let actor = world.actor.clone();

    // Instants a microsecond apart, before and after the epoch, across a
    // leap day and near the end of the representable range: each reads back
    // equal, and lists order them correctly.
    let instants = [
        time::macros::datetime!(1969-07-20 20:17:40.000001 UTC),
        time::macros::datetime!(2024-02-29 23:59:59.999999 UTC),
        time::macros::datetime!(2026-04-21 12:35:24.117631 UTC),
        time::macros::datetime!(2026-04-21 12:35:24.117632 UTC),
        time::macros::datetime!(9999-12-31 23:59:59.999999 UTC),
    ];
    let mut keys = Vec::new();
    for instant in instants {
        world.now = instant;
        let key = world.api_key(&workspace, "k");
        assert_eq!(key.created_at, instant);
        store.create_api_key(&key).await.unwrap();
        keys.push(key);
    }
    let listed = store.list_api_keys(&workspace.uid, Listing::new(page(10, 0), false)).await.unwrap();
    keys.reverse();
    assert_eq!(listed.items, keys);

    // Nanoseconds given to a transition are cut to microseconds by the
    // domain, and what is stored reads back equal.
    let precise = time::macros::datetime!(2026-04-21 12:35:24.117631999 +02:00);
    let key = store.create_signing_key(&workspace.uid, world.signing_key(), &actor, precise).await.unwrap();
    assert_eq!(key.created_at, time::macros::datetime!(2026-04-21 10:35:24.117631 UTC));
    assert_eq!(store.signing_key_by_uid(&key.uid).await.unwrap(), Some(key));
}

/// Many keys created in the same microsecond (ties broken by id, newest
/// first) and at distinct instants; every page agrees with the model.
pub async fn lists_page_newest_first_with_ties(db: &TestDb) {
    let (store, mut world, _, [workspace]) = acme(db, 12, ["demo"]).await;
    let actor = world.actor.clone();

    let mut keys = Vec::new();
    for index in 0..13 {
        if index % 4 == 0 {
            world.tick(7);
        }
        let key = world.api_key(&workspace, &format!("key {index}"));
        store.create_api_key(&key).await.unwrap();
        keys.push(key);
    }
    // Delete a few.
    for index in [1, 6, 12] {
        let deleted = store.delete_api_key(&workspace.uid, &keys[index].id, &actor, world.tick(1)).await.unwrap();
        keys[index] = deleted;
    }
    let mut expected_all = keys.clone();
    expected_all.sort_by(|left, right| (right.created_at, right.id.as_str()).cmp(&(left.created_at, left.id.as_str())));
    let expected_live: Vec<_> = expected_all.iter().filter(|key| !key.is_deleted()).cloned().collect();

    for (include_deleted, expected) in [(true, &expected_all), (false, &expected_live)] {
        for limit in [1, 3, 5, 100] {
            let mut seen = Vec::new();
            let mut offset = 0;
            loop {
                let listed = store
                    .list_api_keys(&workspace.uid, Listing::new(page(limit, offset), include_deleted))
                    .await
                    .unwrap();
                assert_eq!(listed.total, expected.len() as u64);
                if listed.items.is_empty() {
                    break;
                }
                assert!(listed.items.len() <= limit as usize);
                offset += listed.items.len() as u64;
                seen.extend(listed.items);
            }
            assert_eq!(&seen, expected, "limit {limit}, include_deleted {include_deleted}");
        }
    }
}

pub async fn audit_trail_records_every_mutation(db: &TestDb) {
    let (store, mut world, organisation, []) = acme(db, 13, []).await;
    let token = world.service_token(&organisation);
    store.create_service_token(&token).await.unwrap();
    let workspace = world.workspace(&organisation, "demo");
    store.create_workspace(&workspace).await.unwrap();
    let actor = world.actor.clone();

    world.tick(10);
    let api_key = world.api_key(&workspace, "k");
    store.create_api_key(&api_key).await.unwrap();
    store.delete_api_key(&workspace.uid, &api_key.id, &actor, world.tick(10)).await.unwrap();
    let public_key =
        store.create_public_key(world.new_public_key(&workspace.uid, "p"), &actor, world.tick(10)).await.unwrap();
    let patch = PublicKeyChange::Patch(PublicKeyPatch::default());
    store.change_public_key(&workspace.uid, &public_key.id, patch, &actor, world.tick(10)).await.unwrap();
    let rotate = PublicKeyChange::Rotate(world.public_key_value());
    store.change_public_key(&workspace.uid, &public_key.id, rotate, &actor, world.tick(10)).await.unwrap();
    store.delete_public_key(&workspace.uid, &public_key.id, &actor, world.tick(10)).await.unwrap();
    let signing_key =
        store.create_signing_key(&workspace.uid, world.signing_key(), &actor, world.tick(10)).await.unwrap();
    let (_, fresh) = store
        .roll_signing_key(&workspace.uid, &signing_key.uid, None, world.signing_key(), &actor, world.tick(10))
        .await
        .unwrap();
    store.delete_signing_key(&workspace.uid, &fresh.uid, &actor, world.tick(10)).await.unwrap();
    world.tick(10);
    let organisation_key = world.organisation_key(&organisation, "o");
    store.create_organisation_key(&organisation_key).await.unwrap();
    let deleted_at = world.tick(10);
    store.delete_organisation_key(&organisation.id, &organisation_key.id, &actor, deleted_at).await.unwrap();

    let events = store.audit_events(&organisation.id, 100).await.unwrap();
    let trail: Vec<(&str, &str)> =
        events.iter().map(|event| (event.action.as_str(), event.target_id.as_str())).collect();
    assert_eq!(
        trail,
        [
            ("organisation_key.deleted", organisation_key.id.as_str()),
            ("organisation_key.generated", organisation_key.id.as_str()),
            ("signing_api_key.deleted", fresh.uid.as_str()),
            ("signing_api_key.rolled", signing_key.uid.as_str()),
            ("signing_api_key.generated", signing_key.uid.as_str()),
            ("public_api_key.deleted", public_key.id.as_str()),
            ("public_api_key.rotated", public_key.id.as_str()),
            ("public_api_key.updated", public_key.id.as_str()),
            ("public_api_key.generated", public_key.id.as_str()),
            ("api_key.deleted", api_key.id.as_str()),
            ("api_key.generated", api_key.id.as_str()),
            ("workspace.created", workspace.uid.as_str()),
            ("service_token.generated", token.id.as_str()),
            ("organisation.created", organisation.id.as_str()),
        ]
    );
    let newest = &events[0];
    assert_eq!((newest.at, newest.actor.as_ref(), newest.workspace.as_ref()), (deleted_at, Some(&actor), None));
    assert_eq!(events[2].workspace.as_ref(), Some(&workspace.uid));
    // Made by the operator (the CLI), not by a token: no actor.
    assert_eq!(events[12].actor, None);
    assert_eq!(events.last().unwrap().actor, None);
    assert_eq!(store.audit_events(&organisation.id, 3).await.unwrap(), events[..3].to_vec());
}

/// `open` by URL: SQLite in memory works (one connection, shared), an
/// unknown scheme is refused, an unreachable PostgreSQL is a database
/// error that names the server but never the password.
#[tokio::test]
async fn open_by_url() {
    let store = keys_store::open("sqlite::memory:").await.unwrap();
    let mut world = World::new(14);
    let bootstrap = world.bootstrap("default");
    assert!(store.bootstrap_if_empty(&bootstrap).await.unwrap());
    let workspace = &bootstrap.workspaces[0];
    let key = store.create_signing_key(&workspace.uid, world.signing_key(), &world.actor, world.now).await.unwrap();
    assert_eq!(store.live_signing_keys(&workspace.uid).await.unwrap(), vec![key]);

    assert!(matches!(keys_store::open("mysql://localhost/x").await, Err(keys_store::StoreError::UnsupportedUrl)));
    match keys_store::open("postgres://keysd:hunter2@127.0.0.1:1/keysd").await {
        Err(error @ keys_store::StoreError::Database { .. }) => {
            let message = error.to_string();
            assert!(message.contains("127.0.0.1:1/keysd"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        other => panic!("expected a database error, got {:?}", other.map(|_| ())),
    }
}

/// The same script on both backends gives the same pages, field for field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_agree_on_every_page() {
    let sqlite = TestDb::new(Kind::Sqlite).await;
    let postgres = TestDb::new(Kind::Postgres).await;
    let mut transcripts = Vec::new();
    for db in [&sqlite, &postgres] {
        transcripts.push(transcript(db.store().await.as_ref()).await);
    }
    assert_eq!(transcripts[0].len(), 50);
    assert_eq!(transcripts[0], transcripts[1]);
}

/// Runs a fixed script (same seed, same clock) and writes down every page
/// of every list.
async fn transcript(store: &dyn Store) -> Vec<String> {
    let mut world = World::new(99);
    let bootstrap = world.bootstrap("default");
    assert!(store.bootstrap_if_empty(&bootstrap).await.unwrap());
    let organisation = &bootstrap.organisation;
    let workspace = &bootstrap.workspaces[0];
    let actor = world.actor.clone();
    for index in 0..9 {
        if index % 3 == 0 {
            world.tick(1);
        }
        let key = world.api_key(workspace, &format!("k{index}"));
        store.create_api_key(&key).await.unwrap();
        if index % 4 == 1 {
            store.delete_api_key(&workspace.uid, &key.id, &actor, world.now).await.unwrap();
        }
        let public_key =
            store.create_public_key(world.new_public_key(&workspace.uid, "p"), &actor, world.now).await.unwrap();
        if index % 3 == 2 {
            store.delete_public_key(&workspace.uid, &public_key.id, &actor, world.now).await.unwrap();
        }
        let live = store.live_signing_keys(&workspace.uid).await.unwrap();
        match live.iter().find(|key| key.status() == SigningKeyStatus::Active) {
            Some(active) if index % 3 != 2 => {
                let grace = GracePeriod::from_seconds(60).ok();
                store
                    .roll_signing_key(&workspace.uid, &active.uid, grace, world.signing_key(), &actor, world.now)
                    .await
                    .unwrap();
            }
            Some(active) => {
                store.delete_signing_key(&workspace.uid, &active.uid, &actor, world.now).await.unwrap();
            }
            None => {
                store.create_signing_key(&workspace.uid, world.signing_key(), &actor, world.now).await.unwrap();
            }
        }
    }
    for slug in ["c", "b", "a"] {
        store.create_workspace(&world.workspace(organisation, slug)).await.unwrap();
    }

    let mut lines = Vec::new();
    for include_deleted in [false, true] {
        for (limit, offset) in [(1, 0), (2, 1), (4, 3), (10, 0), (100, 5), (3, 50)] {
            let pagination = page(limit, offset);
            let uid = &workspace.uid;
            lines.push(format!(
                "{:?}",
                store.list_api_keys(uid, Listing::new(pagination, include_deleted)).await.unwrap()
            ));
            lines.push(format!(
                "{:?}",
                store.list_public_keys(uid, Listing::new(pagination, include_deleted)).await.unwrap()
            ));
            lines.push(format!(
                "{:?}",
                store.list_signing_keys(uid, Listing::new(pagination, include_deleted)).await.unwrap()
            ));
            lines.push(format!("{:?}", store.list_workspaces(&organisation.id, pagination).await.unwrap()));
        }
    }
    lines.push(format!("{:?}", store.live_signing_keys(&workspace.uid).await.unwrap()));
    lines.push(format!("{:?}", store.audit_events(&organisation.id, 1000).await.unwrap()));
    lines
}

/// The database backs keys-core's signing-key lifecycle: whatever writes
/// to it (another version, hand-written SQL), a rolled key without its
/// expiry, or an active key with one, is refused.
pub async fn the_database_refuses_impossible_signing_key_lifecycles(db: &TestDb) {
    let (store, mut world, _, [workspace]) = acme(db, 21, ["demo"]).await;
    let actor = world.actor.clone();
    let key = store.create_signing_key(&workspace.uid, world.signing_key(), &actor, world.tick(10)).await.unwrap();
    let uid = key.uid.as_str().to_owned();
    let statements = [
        "UPDATE workspace_signing_keys SET status = 'rolled' WHERE uid = $1",
        "UPDATE workspace_signing_keys SET status = 'rolled', rolled_at = created_at WHERE uid = $1",
        "UPDATE workspace_signing_keys SET expiry_at = created_at WHERE uid = $1",
    ];
    for statement in statements {
        assert!(db.execute(statement, &[uid.as_str()]).await.is_err(), "the database accepted: {statement}");
    }
    // A consistent roll is accepted, and the key still reads back.
    let consistent = "UPDATE workspace_signing_keys SET status = 'rolled', rolled_at = created_at, \
                      expiry_at = created_at WHERE uid = $1";
    assert_eq!(db.execute(consistent, &[uid.as_str()]).await, Ok(1));
    let read = store.signing_key_by_uid(&key.uid).await.unwrap().expect("the key reads back");
    assert_eq!(read.status(), SigningKeyStatus::Rolled);
}

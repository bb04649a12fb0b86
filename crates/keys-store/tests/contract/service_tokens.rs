//! Service tokens (docs/GUARANTEES.md, Service tokens) on both stores: what a token is made
//! with reads back, lists are newest first and masked, a revocation is
//! audited and announced, the last live admin token stays, uses only move
//! `last_used_at` forwards, and the database refuses rows keys-core would
//! never write.

use keys_core::{CoreError, NewServiceToken, Role, ServiceTokenRecord, TokenWorkspaces, WorkspaceSlug};
use keys_store::{Change, Listing, Run};
use time::Duration;

use crate::support::{acme, assert_refused, name_of, not_found, Kind, TestDb};

fn limited(role: Role, slugs: &[&str]) -> NewServiceToken {
    let slugs = slugs.iter().map(|slug| WorkspaceSlug::parse(slug).unwrap()).collect();
    NewServiceToken {
        name: name_of("gateway"),
        role,
        workspaces: TokenWorkspaces::only(slugs).unwrap(),
        expires_at: None,
    }
}

pub async fn service_tokens_read_back_as_made(db: &TestDb) {
    let (store, mut world, organisation, [_, _]) = acme(db, 81, ["staging", "production"]).await;
    let admin = world.service_token(&organisation);
    store.create_service_token(&admin).await.unwrap();
    let mut new = limited(Role::Verify, &["production", "staging"]);
    new.expires_at = Some(world.now + Duration::days(30));
    let gateway = world.service_token_as(&organisation, new);
    store.create_service_token(&gateway).await.unwrap();

    assert_eq!(store.service_token_by_digest(&gateway.digest).await.unwrap().as_ref(), Some(&gateway));
    assert_eq!(store.service_token(&organisation.id, &gateway.id).await.unwrap().as_ref(), Some(&gateway));
    let read = store.service_token(&organisation.id, &gateway.id).await.unwrap().unwrap();
    assert_eq!(read.role, Role::Verify);
    assert_eq!(
        read.workspaces.slugs().unwrap().iter().map(WorkspaceSlug::as_str).collect::<Vec<_>>(),
        ["production", "staging"]
    );

    // Another organisation's token is not this one's.
    let other = world.stored_organisation(&*store, "globex").await;
    assert_eq!(store.service_token(&other.id, &gateway.id).await.unwrap(), None);

    let page = store.list_service_tokens(&organisation.id, Listing::default()).await.unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.items, vec![gateway.clone(), admin.clone()], "newest first");
}

pub async fn revocation_is_audited_announced_and_final(db: &TestDb) {
    let (store, mut world, organisation, []) = acme(db, 82, []).await;
    let first = world.service_token(&organisation);
    let second = world.service_token(&organisation);
    store.create_service_token(&first).await.unwrap();
    store.create_service_token(&second).await.unwrap();
    let actor = first.actor.clone();

    let at = world.tick(10);
    let revoked = store.revoke_service_token(&organisation.id, &second.id, Some(&actor), at).await.unwrap();
    assert_eq!((revoked.revoked_at, revoked.revoked_by.as_ref()), (Some(at), Some(&actor)));
    assert_eq!(store.service_token_by_digest(&second.digest).await.unwrap(), None, "no longer authenticates");
    assert_eq!(store.service_token(&organisation.id, &second.id).await.unwrap(), Some(revoked));

    let events = store.audit_events(&organisation.id, 1).await.unwrap();
    assert_eq!(
        (events[0].action.as_str(), events[0].target_id.as_str()),
        ("service_token.revoked", second.id.as_str())
    );
    assert_eq!(events[0].actor.as_ref(), Some(&actor));

    // Listed only when revoked ones are asked for.
    let live = store.list_service_tokens(&organisation.id, Listing::default()).await.unwrap();
    assert_eq!(live.items, vec![first.clone()]);
    let all = store.list_service_tokens(&organisation.id, Listing::new(Default::default(), true)).await.unwrap();
    assert_eq!(all.total, 2);

    // Revoking again, or a token that does not exist, is not found and
    // writes nothing.
    let again = store.revoke_service_token(&organisation.id, &second.id, None, world.tick(1)).await;
    assert_refused(again, not_found("service token"));
    let ghost = world.service_token(&organisation);
    assert_refused(
        store.revoke_service_token(&organisation.id, &ghost.id, None, world.tick(1)).await,
        not_found("service token"),
    );
    assert_eq!(store.audit_events(&organisation.id, 1).await.unwrap(), events);

    // The revocation is what replicas hear.
    let third = world.service_token(&organisation);
    store.create_service_token(&third).await.unwrap();
    let executed = store
        .run(keys_store::RevokeServiceToken {
            acting: keys_store::Acting::new(organisation.id.clone(), None, world.tick(1)),
            id: third.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(executed.change, Some(Change::ServiceToken(third.digest)));
    // The output is typed by the command: the token as it now is.
    assert!(executed.output.revoked_at.is_some());
}

pub async fn the_last_live_admin_token_cannot_be_revoked(db: &TestDb) {
    let (store, mut world, organisation, [_]) = acme(db, 83, ["demo"]).await;
    let admin = world.service_token(&organisation);
    store.create_service_token(&admin).await.unwrap();
    // Neither a non-admin token nor an expired admin token counts.
    let manage = world.service_token_as(&organisation, limited(Role::Manage, &["demo"]));
    store.create_service_token(&manage).await.unwrap();
    let mut expiring = NewServiceToken::admin(name_of("expiring"));
    expiring.expires_at = Some(world.now + Duration::seconds(5));
    let expiring = world.service_token_as(&organisation, expiring);
    store.create_service_token(&expiring).await.unwrap();

    let later = world.tick(10_000_000);
    let refused = store.revoke_service_token(&organisation.id, &admin.id, None, later).await;
    assert_refused(refused, CoreError::LastAdminToken);
    assert!(store.service_token_by_digest(&admin.digest).await.unwrap().is_some(), "still authenticates");
    // The other tokens can go; so can the admin token once another exists.
    store.revoke_service_token(&organisation.id, &manage.id, None, later).await.unwrap();
    store.revoke_service_token(&organisation.id, &expiring.id, None, later).await.unwrap();
    let successor = world.service_token(&organisation);
    store.create_service_token(&successor).await.unwrap();
    store.revoke_service_token(&organisation.id, &admin.id, None, world.tick(1)).await.unwrap();
    assert_refused(
        store.revoke_service_token(&organisation.id, &successor.id, None, world.tick(1)).await,
        CoreError::LastAdminToken,
    );
}

pub async fn service_token_uses_only_move_forwards(db: &TestDb) {
    let (store, mut world, organisation, []) = acme(db, 84, []).await;
    let token = world.service_token(&organisation);
    store.create_service_token(&token).await.unwrap();
    let (early, late) = (world.tick(10), world.tick(10));
    assert_eq!(store.record_service_token_uses(&[(token.id.clone(), late)]).await.unwrap(), 1);
    assert_eq!(store.record_service_token_uses(&[(token.id.clone(), early)]).await.unwrap(), 0);
    let read = store.service_token(&organisation.id, &token.id).await.unwrap().unwrap();
    assert_eq!(read.last_used_at, Some(late));
}

pub async fn the_database_refuses_impossible_service_token_rows(db: &TestDb) {
    let (store, mut world, organisation, [_]) = acme(db, 85, ["demo"]).await;
    let admin: ServiceTokenRecord = world.service_token(&organisation);
    store.create_service_token(&admin).await.unwrap();
    let verify = world.service_token_as(&organisation, limited(Role::Verify, &["demo"]));
    store.create_service_token(&verify).await.unwrap();
    let list = if db.kind == Kind::Postgres { "ARRAY['demo']" } else { "'demo'" };
    let empty = if db.kind == Kind::Postgres { "ARRAY[]::text[]" } else { "''" };
    let refused = [
        (format!("UPDATE service_tokens SET workspaces = {list} WHERE id = $1"), admin.id.as_str()),
        ("UPDATE service_tokens SET role = 'root' WHERE id = $1".to_owned(), admin.id.as_str()),
        ("UPDATE service_tokens SET role = 'admin' WHERE id = $1".to_owned(), verify.id.as_str()),
        (format!("UPDATE service_tokens SET workspaces = {empty} WHERE id = $1"), verify.id.as_str()),
        (
            "UPDATE service_tokens SET revoked_by_name = 'x', revoked_by_email = 'y' WHERE id = $1".to_owned(),
            admin.id.as_str(),
        ),
    ];
    for (statement, id) in &refused {
        let outcome = db.execute(statement, &[id]).await;
        assert!(outcome.is_err(), "the database accepted: {statement} ({outcome:?})");
    }
    assert_eq!(store.service_token(&organisation.id, &admin.id).await.unwrap(), Some(admin));
    assert_eq!(store.service_token(&organisation.id, &verify.id).await.unwrap(), Some(verify));
}

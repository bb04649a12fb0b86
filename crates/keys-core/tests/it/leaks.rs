//! Key prefixes, leak policies and what a leak report does to a key
//! (docs/API.md, Workspaces and Leaked keys).

use crate::common::*;
use keys_core::verify::*;
use keys_core::*;

#[test]
fn prefixes_have_the_documented_shape() {
    for good in ["ab_live", "acme_test", "a1b2c3_live", "abcdefghijklmnop_test", "x9_live"] {
        assert_eq!(ApiKeyPrefix::parse(good).expect(good).as_str(), good);
    }
    for bad in [
        "",
        "a_live",                 // one character before the tail
        "abcdefghijklmnopq_live", // seventeen
        "acme",                   // no tail
        "acme_prod",              // another tail
        "acme_live_",             // the separator is not part of it
        "Acme_live",              // uppercase
        "1acme_live",             // a digit first
        "ac-me_live",             // not a letter or digit
        "acme_LIVE",
        "acme__live",
        "SS.",
    ] {
        assert_eq!(ApiKeyPrefix::parse(bad), Err(CoreError::InvalidApiKeyPrefix), "{bad:?}");
    }
    assert_eq!(ApiKeyPrefix::MAX_LEN, "abcdefghijklmnop_test".len());
    assert_eq!(OnLeak::parse("disable"), Ok(OnLeak::Disable));
    assert_eq!(OnLeak::parse("notify"), Ok(OnLeak::Notify));
    assert_eq!(OnLeak::parse("ignore"), Err(CoreError::InvalidOnLeak));
    assert_eq!(OnLeak::default(), OnLeak::Disable);
}

#[test]
fn a_patch_changes_what_it_names_and_nothing_else() {
    let mut rng = rng();
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let workspace = workspace_of(&organisation, &mut rng);
    assert_eq!((workspace.api_key_prefix.as_ref(), workspace.on_leak), (None, OnLeak::Disable));
    assert!(WorkspacePatch::default().is_empty());
    assert_eq!(workspace.patched(WorkspacePatch::default()), workspace);
    let prefix = ApiKeyPrefix::parse("acme_live").expect("valid");
    let patched = workspace.patched(WorkspacePatch {
        api_key_prefix: Some(Some(prefix.clone())),
        on_leak: Some(OnLeak::Notify),
        ..WorkspacePatch::default()
    });
    assert_eq!(patched.api_key_prefix, Some(prefix));
    assert_eq!(patched.on_leak, OnLeak::Notify);
    assert_eq!(
        (&patched.uid, &patched.slug, patched.mode, &patched.name),
        (&workspace.uid, &workspace.slug, workspace.mode, &workspace.name)
    );
    let cleared = patched.patched(WorkspacePatch { api_key_prefix: Some(None), ..WorkspacePatch::default() });
    assert_eq!(cleared.api_key_prefix, None);
    assert_eq!(cleared.on_leak, OnLeak::Notify, "a field the patch does not name stays");
}

#[test]
fn a_leak_stops_a_live_key_under_disable_and_changes_nothing_under_notify() {
    let mut rng = rng();
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let workspace = workspace_of(&organisation, &mut rng);
    let mine = Scope::organisation(&organisation);
    let create = |rng: &mut rand_chacha::ChaCha8Rng| {
        ApiKey::create(new_api_key(&workspace.uid, ApiKeyProfile::named(name("k")), rng), &actor(), t0()).expect("ok")
    };
    let decide = |key: &ApiKey, now| decide_api_key(Some((key, &workspace)), mine, now, &[] as &[&str]).map(|_| ());

    // Notify: reported, left as it was.
    let mut key = create(&mut rng);
    assert_eq!(key.contain_leak(OnLeak::Notify, &actor(), at(1)), Ok(LeakContainment::Unchanged));
    assert_eq!(key.status(), ApiKeyStatus::Active);
    assert!(decide(&key, at(2)).is_ok());

    // Disable: an active key is disabled, at once and by the reporter.
    assert_eq!(key.contain_leak(OnLeak::Disable, &actor(), at(3)), Ok(LeakContainment::Disabled));
    assert_eq!(key.status(), ApiKeyStatus::Disabled);
    assert_eq!(decide(&key, at(3)), Err(Denial::KeyDisabled));
    // Reported again: nothing more to do.
    assert_eq!(key.contain_leak(OnLeak::Disable, &actor(), at(4)), Ok(LeakContainment::Unchanged));

    // A rolled key in its grace: the grace ends at the report.
    let mut old = create(&mut rng);
    let material = new_api_key(&workspace.uid, ApiKeyProfile::named(name("x")), &mut rng).material;
    let grace = GracePeriod::from_seconds(3_600).expect("in range");
    let fresh = old.roll(Some(grace), material, &actor(), at(10)).expect("roll");
    assert!(decide(&old, at(20)).is_ok(), "in its grace");
    assert_eq!(old.contain_leak(OnLeak::Disable, &actor(), at(20)), Ok(LeakContainment::GraceEnded));
    assert_eq!(old.expires_at, Some(at(20)));
    assert!(decide(&old, at(20)).is_err(), "refused from the report on");
    assert!(decide(&fresh, at(20)).is_ok(), "its successor is another key");

    // A deleted key is not there to contain.
    let mut gone = create(&mut rng);
    gone.delete(&actor(), at(30)).expect("delete");
    assert!(gone.contain_leak(OnLeak::Disable, &actor(), at(31)).is_err());
}

//! Table-driven tests for every transition and every refusal of keys-core.

use crate::common::*;
use keys_core::verify::*;
use keys_core::*;

#[test]
fn slugs_are_validated_and_reserved_ones_refused() {
    let cases: &[(&str, Result<(), CoreError>)] = &[
        ("staging", Ok(())),
        ("production", Ok(())),
        ("a", Ok(())),
        ("0abc_def-9", Ok(())),
        (&"a".repeat(63), Ok(())),
        (&"a".repeat(64), Err(CoreError::InvalidSlug)),
        ("", Err(CoreError::InvalidSlug)),
        ("-abc", Err(CoreError::InvalidSlug)),
        ("_abc", Err(CoreError::InvalidSlug)),
        ("Abc", Err(CoreError::InvalidSlug)),
        ("a b", Err(CoreError::InvalidSlug)),
        ("a.b", Err(CoreError::InvalidSlug)),
        ("é", Err(CoreError::InvalidSlug)),
        ("workspace", Err(CoreError::ReservedSlug("workspace".into()))),
        ("organisations", Err(CoreError::ReservedSlug("organisations".into()))),
        ("keys", Err(CoreError::ReservedSlug("keys".into()))),
        ("verify", Err(CoreError::ReservedSlug("verify".into()))),
        ("health", Err(CoreError::ReservedSlug("health".into()))),
    ];
    for (input, expected) in cases {
        assert_eq!(WorkspaceSlug::parse(input).map(|_| ()), *expected, "slug {input:?}");
    }
}

#[test]
fn slug_is_derived_from_name_when_absent() {
    let cases = [("My Workspace", "my-workspace"), ("  Prod / EU  ", "prod-eu"), ("Team_42", "team_42")];
    for (input, expected) in cases {
        assert_eq!(
            WorkspaceSlug::derive_from_name(&name(input)).map(|slug| slug.as_str().to_owned()),
            Ok(expected.to_owned())
        );
    }
    assert_eq!(WorkspaceSlug::derive_from_name(&name("!!!")), Err(CoreError::InvalidSlug));
    assert!(WorkspaceSlug::derive_from_name(&name("Verify")).is_err());
}

#[test]
fn names_and_descriptions_are_bounded() {
    assert_eq!(Name::parse("  web-app ").map(|n| n.as_str().to_owned()), Ok("web-app".to_owned()));
    assert_eq!(Name::parse("   "), Err(CoreError::Blank { field: "name" }));
    assert_eq!(Name::parse(&"x".repeat(256)), Err(CoreError::TooLong { field: "name", max: 255 }));
    assert!(Name::parse(&"é".repeat(255)).is_ok());
    assert_eq!(Name::parse("a\u{0}b"), Err(CoreError::ControlCharacters { field: "name" }));
    // Held as sent, so the OpenAPI document can say exactly what passes
    // (`maxLength`, a pattern without control characters): a control
    // character or the length is not excused by surrounding whitespace.
    assert_eq!(Name::parse("\tweb"), Err(CoreError::ControlCharacters { field: "name" }));
    assert_eq!(Name::parse("web\n"), Err(CoreError::ControlCharacters { field: "name" }));
    assert_eq!(Name::parse(&format!(" {}", "x".repeat(255))), Err(CoreError::TooLong { field: "name", max: 255 }));
    assert_eq!(Name::restore("web").map(|n| n.as_str().to_owned()), Ok("web".to_owned()));
    assert_eq!(Description::parse(None), Ok(None));
    assert_eq!(Description::parse(Some("  ")), Ok(None));
    assert!(Description::parse(Some(&"d".repeat(1025))).is_err());
}

#[test]
fn origins_are_read_as_browsers_read_them() {
    let allowed = |patterns: &[&str], origin: &str| {
        let patterns = DomainPattern::parse_list(patterns.iter().copied()).expect("patterns");
        Origin::parse(origin).is_some_and(|origin| patterns.iter().any(|pattern| pattern.allows(&origin)))
    };
    let wildcard = ["*.example.com"];
    for hostile in [
        "https://evil.com\\@a.example.com",
        "https://evil.com\\.example.com",
        "https://evil.com%2f.example.com",
        "https://evil.com%2F.example.com",
        "javascript://a.example.com",
        "data://a.example.com",
        "https://user:pass@a.example.com",
        "https://evil.com@a.example.com",
        "https://a.example.com/",
        "https://a.example.com/path",
        "https://a.example.com?q",
        "https://a.example.com#f",
        "https://a.example.com.evil.com",
        "https://example.com",
        "evil.com\\@a.example.com",
        "//a.example.com",
        "a.example.com/",
        "null",
        "https://[::1]",
        "https://a.exa mple.com",
    ] {
        assert!(!allowed(&wildcard, hostile), "{hostile:?} must not pass *.example.com");
    }
    for fine in [
        "https://a.example.com",
        "http://a.b.example.com:8080",
        "a.example.com",
        "A.EXAMPLE.COM.",
        "a.example.com:3000",
    ] {
        assert!(allowed(&wildcard, fine), "{fine:?}");
    }
    // A scheme in a pattern pins it, and the port (the scheme's default
    // when none is given); a bare origin has neither, so it cannot match.
    let pinned = ["https://app.example.com", "http://localhost:3000"];
    for (origin, expected) in [
        ("https://app.example.com", true),
        ("https://app.example.com:443", true),
        ("https://app.example.com:8443", false),
        ("http://app.example.com", false),
        ("app.example.com", false),
        ("http://localhost:3000", true),
        ("http://localhost", false),
        ("https://localhost:3000", false),
    ] {
        assert_eq!(allowed(&pinned, origin), expected, "{origin}");
    }
    // Internationalised names compare in their ASCII form.
    assert!(allowed(&["bücher.example"], "https://BÜCHER.example"));
    assert!(allowed(&["xn--bcher-kva.example"], "https://bücher.example"));
}

#[test]
fn names_and_descriptions_refuse_invisible_format_characters() {
    for spoof in
        ["admin\u{202E}txt.exe", "pay\u{200B}pal", "\u{FEFF}billing", "a\u{2066}b", "tag\u{E0041}", "soft\u{AD}hyphen"]
    {
        assert_eq!(Name::parse(spoof), Err(CoreError::FormatCharacters { field: "name" }), "{spoof:?}");
        assert_eq!(
            Description::parse(Some(spoof)),
            Err(CoreError::FormatCharacters { field: "description" }),
            "{spoof:?}"
        );
    }
    // Visible text of any script and single emoji stay valid. (An emoji
    // sequence joined by U+200D ZERO WIDTH JOINER is refused: U+200D is Cf.)
    for fine in ["Zahlungsdienst für Ärzte", "東京 backend", "مفتاح", "🔑 keys", "a-b_c.d"] {
        assert!(Name::parse(fine).is_ok(), "{fine:?}");
    }
}

#[test]
fn modes_parse() {
    assert_eq!(Mode::parse("sandbox"), Ok(Mode::Sandbox));
    assert_eq!(Mode::parse("production"), Ok(Mode::Production));
    assert_eq!(Mode::parse("Production"), Err(CoreError::InvalidMode));
}

#[test]
fn pagination_bounds() {
    assert!(Pagination::new(1, 0).is_ok());
    assert!(Pagination::new(100, 5).is_ok());
    assert_eq!(Pagination::new(0, 0), Err(CoreError::InvalidLimit));
    assert_eq!(Pagination::new(101, 0), Err(CoreError::InvalidLimit));
    assert_eq!(Pagination::default().limit(), 10);
}

#[test]
fn workspace_create_defaults() {
    let mut rng = rng();
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let new = NewWorkspace { name: name("Staging"), slug: None, description: None, mode: None };
    let workspace = Workspace::create(organisation.clone(), new, Some(&actor()), t0(), &mut rng).expect("created");
    assert_eq!(workspace.slug.as_str(), "staging");
    assert_eq!(workspace.mode, Mode::Sandbox);
    assert!(workspace.uid.as_str().starts_with("wksp_"));
    assert_eq!(workspace.organisation_id, organisation);
}

#[test]
fn api_key_delete_is_terminal() {
    let mut rng = rng();
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let other = OrganisationId::generate(t0(), &mut rng);
    let workspace = workspace_of(&organisation, &mut rng);
    let mine = Scope::organisation(&organisation);
    let new = new_api_key(&workspace.uid, ApiKeyProfile::named(name("backend")), &mut rng);
    let mut key = ApiKey::create(new, &actor(), t0()).expect("valid key");
    let none: &[&str] = &[];
    assert_eq!(decide_api_key(Some((&key, &workspace)), mine, t0(), none), Ok((&key, &workspace)));
    // Tenant isolation: another organisation's key is no key for this caller.
    let theirs = Scope::organisation(&other);
    assert_eq!(decide_api_key(Some((&key, &workspace)), theirs, t0(), none), Err(Denial::WrongOrganisation));
    assert_eq!(Denial::WrongOrganisation.reason(), "unknown_key");
    key.delete(&actor(), at(1)).expect("first delete");
    assert_eq!(key.deleted_at(), Some(at(1)));
    assert_eq!(key.deletion.as_ref().and_then(|deletion| deletion.by.clone()), Some(actor()));
    assert_eq!(key.delete(&actor(), at(2)), Err(CoreError::AlreadyDeleted { kind: "api key" }));
    assert_eq!(key.deleted_at(), Some(at(1)), "a refused delete changes nothing");
    assert_eq!(decide_api_key(Some((&key, &workspace)), mine, at(2), none), Err(Denial::Deleted));
    assert_eq!(decide_api_key(None, mine, at(2), none), Err(Denial::UnknownKey));
}

#[test]
fn api_key_disable_enable_and_scopes() {
    let mut rng = rng();
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let workspace = workspace_of(&organisation, &mut rng);
    let mine = Scope::organisation(&organisation);
    let mut profile = ApiKeyProfile::named(name("backend"));
    profile.scopes = KeyScopes::parse(["keys:*", "audit:read"]).expect("valid scopes");
    let mut key = ApiKey::create(new_api_key(&workspace.uid, profile, &mut rng), &actor(), t0()).expect("valid");
    let decide =
        |key: &ApiKey, required: &[&str]| decide_api_key(Some((key, &workspace)), mine, at(1), required).map(|_| ());
    assert!(decide(&key, &["keys:read", "keys:admin:write", "audit:read"]).is_ok());
    assert_eq!(decide(&key, &["audit:write"]), Err(Denial::InsufficientScope));
    assert_eq!(decide(&key, &["keys"]), Err(Denial::InsufficientScope), "keys:* does not cover keys itself");
    assert_eq!(key.enable(&actor(), at(1)), Err(CoreError::ApiKeyNotDisabled));
    key.disable(&actor(), at(1)).expect("disable an active key");
    assert_eq!(key.status(), ApiKeyStatus::Disabled);
    assert_eq!(decide(&key, &[]), Err(Denial::KeyDisabled));
    assert_eq!(key.disable(&actor(), at(2)), Err(CoreError::ApiKeyNotActive { action: "disabled" }));
    let material = new_api_key(&workspace.uid, ApiKeyProfile::named(name("x")), &mut rng).material;
    assert_eq!(key.clone().roll(None, material, &actor(), at(2)), Err(CoreError::ApiKeyNotActive { action: "rolled" }));
    key.enable(&actor(), at(3)).expect("enable a disabled key");
    assert_eq!(key.updated_at, at(3));
    assert!(decide(&key, &[]).is_ok());
}

#[test]
fn api_key_roll_caps_the_old_key_and_hands_on_the_profile() {
    let mut rng = rng();
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let workspace = workspace_of(&organisation, &mut rng);
    let mut profile = ApiKeyProfile::named(name("backend"));
    profile.expires_at = Some(at(100));
    profile.external_id = Some(ExternalId::parse("user_42").expect("valid"));
    profile.meta = Some(KeyMeta::parse(r#"{"plan":"pro"}"#).expect("small"));
    let mut old = ApiKey::create(new_api_key(&workspace.uid, profile.clone(), &mut rng), &actor(), t0()).expect("ok");
    let material = new_api_key(&workspace.uid, ApiKeyProfile::named(name("x")), &mut rng).material;
    let grace = GracePeriod::from_seconds(30).expect("in range");
    let fresh = old.roll(Some(grace), material, &actor(), at(10)).expect("roll an active key");
    assert_eq!(fresh.profile, profile, "name, description, scopes, owner, meta and expiry are inherited");
    assert_eq!(fresh.status(), ApiKeyStatus::Active);
    assert_eq!(old.status(), ApiKeyStatus::Rolled);
    assert_eq!(old.expires_at, Some(at(40)), "now + grace, inside the key's own expiry");
    // A grace past the key's own expiry is capped by it.
    let mut capped = ApiKey::create(new_api_key(&workspace.uid, profile, &mut rng), &actor(), t0()).expect("ok");
    let material = new_api_key(&workspace.uid, ApiKeyProfile::named(name("x")), &mut rng).material;
    let long = GracePeriod::from_seconds(3_600).expect("in range");
    capped.roll(Some(long), material, &actor(), at(10)).expect("roll");
    assert_eq!(capped.expires_at, Some(at(100)));
    // A rolled key's expiry may come sooner, never later or away.
    let later = ApiKeyPatch { expires_at: Some(Some(at(50))), ..ApiKeyPatch::default() };
    assert_eq!(old.patch(later, &actor(), at(11)), Err(CoreError::RolledKeyExpiry));
    let away = ApiKeyPatch { expires_at: Some(None), ..ApiKeyPatch::default() };
    assert_eq!(old.patch(away, &actor(), at(11)), Err(CoreError::RolledKeyExpiry));
    let sooner = ApiKeyPatch { expires_at: Some(Some(at(20))), ..ApiKeyPatch::default() };
    old.patch(sooner, &actor(), at(11)).expect("bring the end of grace forward");
    assert_eq!(old.expires_at, Some(at(20)));
    // An expiry must lie ahead.
    let past = ApiKeyPatch { expires_at: Some(Some(at(5))), ..ApiKeyPatch::default() };
    assert_eq!(old.patch(past, &actor(), at(11)), Err(CoreError::ExpiryInPast));
}

#[test]
fn api_key_values_refuse_what_the_spec_refuses() {
    for good in ["keys:read", "keys:*", "a", "0.9_x-y:z", "billing:admin:*"] {
        assert!(KeyScope::parse(good).is_ok(), "{good}");
    }
    for bad in ["", "Keys", ":x", "-x", "keys*", "keys:*:read", "a b", "ключ", &"a".repeat(65), "*", ":*"] {
        assert!(KeyScope::parse(bad).is_err(), "{bad:?}");
    }
    let many: Vec<String> = (0..65).map(|index| format!("s{index}")).collect();
    assert_eq!(KeyScopes::parse(many.iter().map(String::as_str)), Err(CoreError::TooManyScopes { max: 64 }));
    assert!(KeyScopes::parse(many.iter().take(64).map(String::as_str)).is_ok());
    let big = format!("{{\"x\":\"{}\"}}", "y".repeat(4089));
    assert_eq!(big.len(), 4097);
    assert_eq!(KeyMeta::parse(&big), Err(CoreError::MetaTooLarge { max: 4096 }));
    assert!(KeyMeta::parse(&big.replacen('y', "", 1)).is_ok(), "4096 bytes is within the limit");
    assert_eq!(KeyMeta::parse("[1]"), Err(CoreError::MetaNotAnObject));
    assert!(ExternalId::parse(&"x".repeat(256)).is_err());
    assert!(ExternalId::parse("").is_err());
}

fn ring_with(count: usize, rng: &mut rand_chacha::ChaCha8Rng) -> (PublicKeyRing, Vec<PublicKeyId>) {
    let workspace = workspace_uid(rng);
    let mut ring = PublicKeyRing::restore(Vec::new());
    let mut ids = Vec::new();
    for index in 0..count {
        let id = PublicKeyId::generate(at(index as i64), rng);
        ring.create(
            keys_core::NewPublicKey {
                id: id.clone(),
                workspace: workspace.clone(),
                value: format!("SS.PUBK.{index}"),
                name: name("web"),
                description: None,
            },
            &actor(),
            at(index as i64),
        );
        ids.push(id);
    }
    (ring, ids)
}

#[test]
fn first_public_key_is_default_and_default_is_protected() {
    let mut rng = rng();
    let (mut ring, ids) = ring_with(3, &mut rng);
    let defaults: Vec<bool> = ring.keys().iter().map(|key| key.is_default).collect();
    assert_eq!(defaults, [true, false, false]);
    assert_eq!(ring.delete(&ids[0], &actor(), at(10)).map(|_| ()), Err(CoreError::DefaultPublicKeyInUse));
    let deleted = ring.delete(&ids[1], &actor(), at(10)).expect("non-default delete");
    assert!(deleted.is_deleted());
    assert_eq!(ring.delete(&ids[1], &actor(), at(11)).map(|_| ()), Err(CoreError::NotFound { kind: "public key" }));
    ring.delete(&ids[2], &actor(), at(12)).expect("delete");
    // The default is now the last live key: deleting it is allowed.
    ring.delete(&ids[0], &actor(), at(13)).expect("last key delete");
    assert!(ring.keys().is_empty());
    // A new key in an empty workspace becomes its default again.
    let fresh = ring.create(
        keys_core::NewPublicKey {
            id: PublicKeyId::generate(at(14), &mut rng),
            workspace: workspace_uid(&mut rng),
            value: "SS.PUBK.x".into(),
            name: name("n"),
            description: None,
        },
        &actor(),
        at(14),
    );
    assert!(fresh.is_default);
}

#[test]
fn public_key_patch_rotate_and_deleted_refusals() {
    let mut rng = rng();
    let (ring, _) = ring_with(1, &mut rng);
    let mut key = ring.keys()[0].clone();
    let domains = DomainPattern::parse_list(["app.example.com", "*.example.org"]).expect("domains");
    let patch = PublicKeyPatch {
        name: Some(name("renamed")),
        allowed_domains: Some(Some(domains.clone())),
        is_secure_mode_enabled: Some(true),
        ..PublicKeyPatch::default()
    };
    key.patch(patch, &actor(), at(5)).expect("patch");
    assert_eq!(key.name.as_str(), "renamed");
    assert_eq!(key.allowed_domains.as_deref(), Some(domains.as_slice()));
    assert!(key.is_secure_mode_enabled);
    assert_eq!(key.updated_at, at(5));
    key.rotate("SS.PUBK.new".into(), &actor(), at(6)).expect("rotate");
    assert_eq!(key.api_key, "SS.PUBK.new");
    assert_eq!(key.rotated_at, Some(at(6)));

    let mut ring = PublicKeyRing::restore(vec![key.clone()]);
    let mut deleted = ring.delete(&key.id, &actor(), at(7)).expect("delete");
    assert_eq!(
        deleted.patch(PublicKeyPatch::default(), &actor(), at(8)),
        Err(CoreError::AlreadyDeleted { kind: "public key" })
    );
    assert_eq!(
        deleted.rotate("SS.PUBK.z".into(), &actor(), at(8)),
        Err(CoreError::AlreadyDeleted { kind: "public key" })
    );
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let workspace = workspace_of(&organisation, &mut rng);
    let scope = Scope::organisation(&organisation);
    assert_eq!(
        decide_public_key(Some((&deleted, &workspace)), scope, PublicKeyPresentation::default()),
        Err(Denial::Deleted)
    );
}

#[test]
fn public_key_origin_rules() {
    let mut rng = rng();
    let (ring, _) = ring_with(1, &mut rng);
    let mut key = ring.keys()[0].clone();
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let workspace = workspace_of(&organisation, &mut rng);
    let scope = Scope::organisation(&organisation);
    let from = |origin: Option<&'static str>| PublicKeyPresentation { origin, has_user_token: false };
    let decide = |key: &PublicKey, presented: PublicKeyPresentation<'_>| {
        decide_public_key(Some((key, &workspace)), scope, presented).map(|access| match access {
            PublicKeyAccess::Granted { .. } => "granted",
            PublicKeyAccess::NeedsUserToken { .. } => "needs user token",
        })
    };
    assert_eq!(decide(&key, from(None)), Ok("granted"));
    assert_eq!(decide(&key, from(Some("https://anything.test"))), Ok("granted"));
    let domains = DomainPattern::parse_list(["app.example.com", "*.example.org"]).expect("domains");
    key.patch(PublicKeyPatch { allowed_domains: Some(Some(domains)), ..Default::default() }, &actor(), at(1))
        .expect("patch");
    let cases: &[(Option<&'static str>, Result<&str, Denial>)] = &[
        (Some("https://app.example.com"), Ok("granted")),
        (Some("https://APP.example.com:8443"), Ok("granted")),
        (Some("https://app.example.com:8443/path"), Err(Denial::OriginNotAllowed)),
        (Some("app.example.com"), Ok("granted")),
        (Some("https://eu.example.org"), Ok("granted")),
        (Some("https://a.b.example.org"), Ok("granted")),
        (Some("https://example.org"), Err(Denial::OriginNotAllowed)),
        (Some("https://badexample.org"), Err(Denial::OriginNotAllowed)),
        (Some("https://example.com"), Err(Denial::OriginNotAllowed)),
        (Some("https://app.example.com.evil.test"), Err(Denial::OriginNotAllowed)),
        (Some("https://evil.test/app.example.com"), Err(Denial::OriginNotAllowed)),
        (Some("https://app.example.com@evil.test"), Err(Denial::OriginNotAllowed)),
        (Some("://"), Err(Denial::OriginNotAllowed)),
        (Some(""), Err(Denial::OriginRequired)),
        (None, Err(Denial::OriginRequired)),
    ];
    for (origin, expected) in cases {
        assert_eq!(decide(&key, from(*origin)), *expected, "origin {origin:?}");
    }
    key.patch(PublicKeyPatch { is_secure_mode_enabled: Some(true), ..Default::default() }, &actor(), at(2))
        .expect("patch");
    // Secure mode: no user token is refused here, one is to be verified.
    assert_eq!(decide(&key, from(Some("app.example.com"))), Err(Denial::UserTokenRequired));
    let with_token = PublicKeyPresentation { origin: Some("app.example.com"), has_user_token: true };
    assert_eq!(decide(&key, with_token), Ok("needs user token"));
    // Origin rules come before the user token.
    assert_eq!(decide(&key, PublicKeyPresentation { origin: None, has_user_token: true }), Err(Denial::OriginRequired));
    assert_eq!(decide_public_key(None, scope, with_token), Err(Denial::UnknownKey));
    let other = OrganisationId::generate(t0(), &mut rng);
    assert_eq!(
        decide_public_key(Some((&key, &workspace)), Scope::organisation(&other), with_token),
        Err(Denial::WrongOrganisation)
    );
}

#[test]
fn domain_patterns_are_validated() {
    for good in [
        "example.com",
        "*.example.com",
        "localhost",
        "APP.Example.com.",
        "xn--bcher-kva.example",
        "https://example.com",
        "http://localhost:3000",
        "https://*.example.co.uk",
        "*.app.github.io",
    ] {
        assert!(DomainPattern::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "*",
        "*.",
        "exa mple.com",
        "-a.com",
        "a..com",
        "*.*.com",
        "a/b",
        "https://example.com/",
        "https://user@example.com",
        "ftp://example.com",
        "javascript://example.com",
        "example.com:8443",
        "https://example.com:0",
        "https://example.com:99999",
        "https://a.example.com?x",
        "evil.com%2f.example.com",
        "a*.example.com",
    ] {
        assert!(DomainPattern::parse(bad).is_err(), "{bad}");
    }
    // A wildcard over a single label or a public suffix covers strangers.
    for broad in ["*.com", "*.co.uk", "*.github.io", "*.localhost", "https://*.com", "*.COM."] {
        assert!(matches!(DomainPattern::parse(broad), Err(CoreError::WildcardTooBroad(_))), "{broad}");
        // Storage still reads what an earlier version stored.
        assert!(DomainPattern::restore(broad).is_ok(), "{broad}");
    }
    let too_many: Vec<String> = (0..101).map(|index| format!("h{index}.example.com")).collect();
    assert_eq!(
        DomainPattern::parse_list(too_many.iter().map(String::as_str)),
        Err(CoreError::TooManyDomains { max: 100 })
    );
}

#[test]
fn signing_key_lifecycle() {
    let mut rng = rng();
    let workspace = workspace_uid(&mut rng);
    let mut ring = SigningKeyRing::restore(workspace.clone(), Vec::new());
    let first = ring.create(new_signing_key(&mut rng), &actor(), t0()).expect("first create").uid.clone();
    assert_eq!(
        ring.create(new_signing_key(&mut rng), &actor(), t0()).map(|_| ()),
        Err(CoreError::OnlyOneActiveSigningKey)
    );
    assert_eq!(CoreError::OnlyOneActiveSigningKey.to_string(), "only 1 active signing key is allowed");

    // Roll with a grace period: the old key verifies until expiry_at.
    let grace = GracePeriod::from_seconds(60).expect("grace");
    let (rolled, fresh) = ring.roll(&first, Some(grace), new_signing_key(&mut rng), &actor(), at(10)).expect("roll");
    assert_eq!(rolled.status(), SigningKeyStatus::Rolled);
    assert_eq!(rolled.rolled_at(), Some(at(10)));
    assert_eq!(rolled.expiry_at(), Some(at(70)));
    assert_eq!(fresh.status(), SigningKeyStatus::Active);
    let second = fresh.uid.clone();
    assert_eq!(decide_signing_key(ring.get(&first), &workspace, at(69)).map(|key| &key.uid), Ok(&first));
    assert_eq!(decide_signing_key(ring.get(&first), &workspace, at(70)), Err(Denial::KeyExpired));
    // A key of another workspace is no key for this one.
    let elsewhere = workspace_uid(&mut rng);
    assert_eq!(decide_signing_key(ring.get(&first), &elsewhere, at(69)), Err(Denial::UnknownKey));
    assert_eq!(decide_signing_key(None, &workspace, at(69)), Err(Denial::UnknownKey));
    assert_eq!(ring.verifying_at(at(30)).count(), 2);
    assert_eq!(ring.verifying_at(at(70)).count(), 1);
    // The JWKS may be cached for 60 s, but never past the rolled key's expiry.
    assert_eq!(ring.jwks_max_age(at(10), 60), 60);
    assert_eq!(ring.jwks_max_age(at(30), 60), 40);
    assert_eq!(ring.jwks_max_age(at(69), 60), 1);
    assert_eq!(ring.jwks_max_age(at(70), 60), 60, "the expired key is no longer listed");
    // A token without kid: the active key first, then the rolled one in grace.
    let uids = |now| {
        kidless_candidates(&ring, now).map(|keys| keys.keys().iter().map(|key| key.uid.clone()).collect::<Vec<_>>())
    };
    assert_eq!(uids(at(30)), Ok(vec![second.clone(), first.clone()]));
    assert_eq!(uids(at(70)), Ok(vec![second.clone()]));

    // Rolling a rolled key is refused; the ring is unchanged.
    assert_eq!(
        ring.roll(&first, None, new_signing_key(&mut rng), &actor(), at(11)).map(|_| ()),
        Err(CoreError::SigningKeyNotActive)
    );
    assert_eq!(ring.keys().len(), 2);

    // Roll without grace: the old key stops at once.
    let (rolled, _) = ring.roll(&second, None, new_signing_key(&mut rng), &actor(), at(20)).expect("roll");
    assert_eq!(rolled.expiry_at(), Some(at(20)));
    assert_eq!(decide_signing_key(ring.get(&second), &workspace, at(20)), Err(Denial::KeyExpired));

    // Delete is terminal; a deleted key never verifies and cannot be rolled.
    let deleted = ring.delete(&first, &actor(), at(30)).expect("delete");
    assert!(deleted.is_deleted());
    assert!(!deleted.verifies_at(at(31)));
    assert_eq!(decide_signing_key(Some(&deleted), &workspace, at(31)), Err(Denial::Deleted));
    assert_eq!(ring.delete(&first, &actor(), at(31)).map(|_| ()), Err(CoreError::NotFound { kind: "signing key" }));
    assert_eq!(
        ring.roll(&first, None, new_signing_key(&mut rng), &actor(), at(31)).map(|_| ()),
        Err(CoreError::NotFound { kind: "signing key" })
    );
    assert_eq!(ring.keys().iter().filter(|key| key.status() == SigningKeyStatus::Active).count(), 1);

    // Several rolled keys in grace: newest roll first, after the active key.
    let mut graced = SigningKeyRing::restore(workspace.clone(), Vec::new());
    let oldest = graced.create(new_signing_key(&mut rng), &actor(), t0()).expect("create").uid.clone();
    let long = GracePeriod::from_seconds(1_000).expect("grace");
    let (_, middle) = graced.roll(&oldest, Some(long), new_signing_key(&mut rng), &actor(), at(1)).expect("roll");
    let middle = middle.uid.clone();
    let (_, newest) = graced.roll(&middle, Some(long), new_signing_key(&mut rng), &actor(), at(2)).expect("roll");
    let newest = newest.uid.clone();
    let candidates = kidless_candidates(&graced, at(3)).expect("keys");
    let order: Vec<_> = candidates.keys().iter().map(|key| key.uid.clone()).collect();
    assert_eq!(order, vec![newest.clone(), middle.clone(), oldest.clone()]);
    assert!(!candidates.truncated());
    assert_eq!(candidates.none_verified(), Denial::UserTokenInvalid);
    assert_eq!(
        kidless_candidates(&SigningKeyRing::restore(workspace.clone(), Vec::new()), at(3)),
        Err(Denial::UnknownKey)
    );
    // More keys in grace than a kid-less token is checked against: only the
    // newest MAX_KIDLESS_CANDIDATES are tried, and a token none of them
    // verifies is told to name its key.
    let mut previous = newest.clone();
    let mut rolls = vec![oldest, middle, newest];
    for second in 3..20 {
        let (_, next) =
            graced.roll(&previous, Some(long), new_signing_key(&mut rng), &actor(), at(second)).expect("roll");
        previous = next.uid.clone();
        rolls.push(previous.clone());
    }
    let candidates = kidless_candidates(&graced, at(21)).expect("keys");
    assert_eq!(graced.verifying_at(at(21)).count(), 20);
    assert_eq!(candidates.keys().len(), MAX_KIDLESS_CANDIDATES);
    let newest_first: Vec<_> = rolls.iter().rev().take(MAX_KIDLESS_CANDIDATES).cloned().collect();
    assert_eq!(candidates.keys().iter().map(|key| key.uid.clone()).collect::<Vec<_>>(), newest_first);
    assert!(candidates.contains(&previous));
    assert!(!candidates.contains(&rolls[0]));
    assert!(candidates.truncated());
    assert_eq!(candidates.none_verified(), Denial::UserTokenKidRequired);

    // Deleting the active key allows a new create.
    let active = ring.active().expect("active").uid.clone();
    ring.delete(&active, &actor(), at(40)).expect("delete active");
    assert!(ring.create(new_signing_key(&mut rng), &actor(), at(41)).is_ok());

    // A ring rebuilt from storage ignores deleted keys.
    let rebuilt = SigningKeyRing::restore(workspace, vec![deleted]);
    assert!(rebuilt.keys().is_empty());
}

#[test]
fn grace_period_bounds() {
    assert!(GracePeriod::from_seconds(0).is_ok());
    assert!(GracePeriod::from_seconds(GracePeriod::MAX_SECONDS).is_ok());
    assert_eq!(
        GracePeriod::from_seconds(GracePeriod::MAX_SECONDS + 1),
        Err(CoreError::InvalidGracePeriod { max: GracePeriod::MAX_SECONDS })
    );
}

#[test]
fn user_token_rules() {
    let policy = TimePolicy::default();
    let valid = UserTokenClaims {
        entity_type: Some("subscriber".into()),
        entity_id: Some("user-1".into()),
        times: TokenTimes { exp: Some(at(60).unix_timestamp()), ..TokenTimes::default() },
        tenant_id: None,
    };
    assert_eq!(decide_user_token(&valid, None, &policy, t0()), Ok("user-1"));
    assert_eq!(decide_user_token(&valid, Some("default"), &policy, t0()), Ok("user-1"));
    let times = |exp: Option<i64>, iat: Option<i64>| TokenTimes { exp, iat, nbf: None };
    let now = t0().unix_timestamp();
    let cases: Vec<(UserTokenClaims, Option<&str>, Denial)> = vec![
        (UserTokenClaims { entity_type: Some("user".into()), ..valid.clone() }, None, Denial::EntityTypeNotSubscriber),
        (UserTokenClaims { entity_type: None, ..valid.clone() }, None, Denial::EntityTypeNotSubscriber),
        (UserTokenClaims { entity_id: None, ..valid.clone() }, None, Denial::EntityIdMissing),
        (UserTokenClaims { entity_id: Some(" ".into()), ..valid.clone() }, None, Denial::EntityIdMissing),
        (UserTokenClaims { times: times(None, None), ..valid.clone() }, None, Denial::UserTokenExpiryMissing),
        // One leeway (60 s by default) for exp, nbf and iat.
        (UserTokenClaims { times: times(Some(now - 60), None), ..valid.clone() }, None, Denial::UserTokenExpired),
        (
            UserTokenClaims { times: times(Some(now + 600), Some(now + 61)), ..valid.clone() },
            None,
            Denial::UserTokenNotYetValid,
        ),
        (valid.clone(), Some("acme"), Denial::TenantMismatch),
        (UserTokenClaims { tenant_id: Some("acme".into()), ..valid.clone() }, None, Denial::TenantMismatch),
    ];
    for (claims, tenant, denial) in cases {
        assert_eq!(decide_user_token(&claims, tenant, &policy, t0()), Err(denial), "{claims:?} {tenant:?}");
    }
    // No token lives for ever: `exp` at most a year (366 days) after `iat`,
    // or after `now` without one; year 9999 and 2^64 (read as i64::MAX) are
    // refused, a year's token is not.
    let year = i64::from(DEFAULT_USER_TOKEN_MAX_LIFETIME_SECONDS);
    for (exp, iat) in [
        (253_402_300_799, None),
        (i64::MAX, None),
        (i64::MAX, Some(now)),
        (now + year + 1, None),
        (now + year + 1, Some(now)),
        (now + 600, Some(now - year)),
    ] {
        let forever = UserTokenClaims { times: times(Some(exp), iat), ..valid.clone() };
        assert_eq!(decide_user_token(&forever, None, &policy, t0()), Err(Denial::UserTokenLifetimeTooLong), "{exp}");
    }
    for (exp, iat) in [(now + year, None), (now + year, Some(now)), (now + 31_557_600, Some(now))] {
        let long = UserTokenClaims { times: times(Some(exp), iat), ..valid.clone() };
        assert_eq!(decide_user_token(&long, None, &policy, t0()), Ok("user-1"), "{exp}");
    }
    // The operator may shorten it.
    let hour = policy.with_user_token_max_lifetime(3_600);
    assert_eq!(hour.user_token_max_lifetime_seconds(), 3_600);
    let day = UserTokenClaims { times: times(Some(now + 86_400), Some(now)), ..valid.clone() };
    assert_eq!(decide_user_token(&day, None, &hour, t0()), Err(Denial::UserTokenLifetimeTooLong));
    let skewed = UserTokenClaims { times: times(Some(now - 59), Some(now + 60)), ..valid.clone() };
    assert_eq!(decide_user_token(&skewed, None, &policy, t0()), Ok("user-1"));
    let acme = UserTokenClaims { tenant_id: Some("acme".into()), ..valid };
    assert_eq!(decide_user_token(&acme, Some("acme"), &policy, t0()), Ok("user-1"));
}

#[test]
fn scopes_cover_exactly_or_by_a_trailing_wildcard() {
    let granted = ["keys:*", "audit:read"];
    let none: [&str; 0] = [];
    let cases: &[(&[&str], Result<(), Denial>)] = &[
        (&[], Ok(())),
        (&["keys:read"], Ok(())),
        (&["keys:admin:write", "audit:read"], Ok(())),
        (&["keys"], Err(Denial::InsufficientScope)),
        (&["audit:write"], Err(Denial::InsufficientScope)),
        (&["audit:read", "billing:read"], Err(Denial::InsufficientScope)),
    ];
    for (required, expected) in cases {
        assert_eq!(decide_scopes(&granted, required), *expected, "{required:?}");
    }
    assert_eq!(decide_scopes(&none, &["keys:read"]), Err(Denial::InsufficientScope));
    // `*` alone or a wildcard not after a colon is not a wildcard.
    assert_eq!(decide_scopes(&["*"], &["keys:read"]), Err(Denial::InsufficientScope));
    assert_eq!(decide_scopes(&["keys*"], &["keysmith"]), Err(Denial::InsufficientScope));
}

#[test]
fn organisation_token_rules() {
    let policy = TimePolicy::default();
    let lenient = OrganisationTokenPolicy::default();
    let now = t0().unix_timestamp();
    let claims = |sub: Option<&'static str>, exp: Option<i64>, nbf: Option<i64>| OrganisationTokenClaims {
        sub,
        times: TokenTimes { exp, nbf, iat: None },
        audiences: Vec::new(),
    };
    let decide = |claims: &OrganisationTokenClaims<'static>| decide_organisation_token(claims, &policy, &lenient, t0());
    assert_eq!(decide(&claims(Some("user-1"), None, None)), Ok("user-1"));
    assert_eq!(decide(&claims(None, None, None)), Err(Denial::SubjectMissing));
    assert_eq!(decide(&claims(Some("  "), None, None)), Err(Denial::SubjectMissing));
    assert_eq!(decide(&claims(Some("user-1"), Some(now - 60), None)), Err(Denial::TokenExpired));
    assert_eq!(decide(&claims(Some("user-1"), None, Some(now + 61))), Err(Denial::TokenNotYetValid));
    // Time is checked before the subject.
    assert_eq!(decide(&claims(None, Some(now - 60), None)), Err(Denial::TokenExpired));
}

#[test]
fn organisation_token_policy_of_the_operator() {
    let time = TimePolicy::default();
    let now = t0().unix_timestamp();
    let token = |exp: Option<i64>, iat: Option<i64>, audiences: Vec<&'static str>| OrganisationTokenClaims {
        sub: Some("user-1"),
        times: TokenTimes { exp, nbf: None, iat },
        audiences,
    };
    let decide = |policy: &OrganisationTokenPolicy, claims: OrganisationTokenClaims<'static>| {
        decide_organisation_token(&claims, &time, policy, t0())
    };

    let require_exp = OrganisationTokenPolicy { require_exp: true, ..OrganisationTokenPolicy::default() };
    assert_eq!(decide(&require_exp, token(None, Some(now), vec![])), Err(Denial::TokenExpiryMissing));
    assert_eq!(decide(&require_exp, token(Some(now + 3600), None, vec![])), Ok("user-1"));

    let hour = OrganisationTokenPolicy { max_lifetime_seconds: Some(3600), ..OrganisationTokenPolicy::default() };
    assert_eq!(decide(&hour, token(None, None, vec![])), Err(Denial::TokenExpiryMissing), "implies exp");
    assert_eq!(decide(&hour, token(Some(now + 3600), Some(now), vec![])), Ok("user-1"));
    assert_eq!(decide(&hour, token(Some(now + 3601), Some(now), vec![])), Err(Denial::TokenLifetimeTooLong));
    // Measured from iat, so a long-lived token issued long ago is still too long.
    assert_eq!(decide(&hour, token(Some(now + 60), Some(now - 86_400), vec![])), Err(Denial::TokenLifetimeTooLong));
    // Without iat, from now.
    assert_eq!(decide(&hour, token(Some(now + 3000), None, vec![])), Ok("user-1"));
    assert_eq!(decide(&hour, token(Some(now + 10 * 3600), None, vec![])), Err(Denial::TokenLifetimeTooLong));
    // An iat a million seconds ahead is not valid whatever the policy.
    assert_eq!(decide(&hour, token(Some(now + 1_000_000), Some(now + 999_000), vec![])), Err(Denial::TokenNotYetValid));

    let audience = OrganisationTokenPolicy {
        audiences: vec!["https://api.example.com".to_owned(), "billing".to_owned()],
        ..OrganisationTokenPolicy::default()
    };
    assert_eq!(decide(&audience, token(None, None, vec![])), Err(Denial::AudienceNotAccepted));
    assert_eq!(decide(&audience, token(None, None, vec!["other"])), Err(Denial::AudienceNotAccepted));
    assert_eq!(decide(&audience, token(None, None, vec!["other", "billing"])), Ok("user-1"));
    assert_eq!(decide(&audience, token(None, None, vec!["https://api.example.com"])), Ok("user-1"));
}

#[test]
fn organisation_key_rules_and_issuer() {
    let mut rng = rng();
    let mine = OrganisationId::generate(t0(), &mut rng);
    let theirs = OrganisationId::generate(t0(), &mut rng);
    let mut key = OrganisationSigningKey::create(
        OrganisationKeyId::generate(t0(), &mut rng),
        mine.clone(),
        name("k"),
        "pem".into(),
        &actor(),
        t0(),
    );
    assert_eq!(decide_organisation_key(Some(&key), Scope::organisation(&mine)).map(|key| &key.id), Ok(&key.id));
    assert_eq!(decide_organisation_key(Some(&key), Scope::organisation(&theirs)), Err(Denial::WrongOrganisation));
    assert_eq!(decide_organisation_key(None, Scope::organisation(&mine)), Err(Denial::UnknownKey));
    // Organisation keys span every workspace: a caller limited to some
    // does not reach them, and learns no more than of a key it cannot see.
    let staging = [WorkspaceSlug::parse("staging").expect("slug")];
    assert_eq!(
        decide_organisation_key(Some(&key), Scope::limited(&mine, Some(&staging))),
        Err(Denial::WrongOrganisation)
    );
    assert_eq!(Denial::WrongOrganisation.reason(), "unknown_key");
    assert!(decide_organisation_key(Some(&key), Scope::limited(&mine, None)).is_ok());
    key.delete(&actor(), at(1)).expect("delete");
    assert_eq!(decide_organisation_key(Some(&key), Scope::organisation(&mine)), Err(Denial::Deleted));
    assert!(key.delete(&actor(), at(2)).is_err());

    assert_eq!(parse_issuer("https://versori.com/sk/01ABC", &[]), Ok(("https://versori.com", "01ABC")));
    assert_eq!(parse_issuer("https://versori.com/sk/", &[]), Err(Denial::IssuerNotAccepted));
    assert_eq!(parse_issuer("https://versori.com", &[]), Err(Denial::IssuerNotAccepted));
    let pinned = vec!["https://auth.example.com/".to_owned()];
    assert!(parse_issuer("https://auth.example.com/sk/01ABC", &pinned).is_ok());
    assert_eq!(parse_issuer("https://versori.com/sk/01ABC", &pinned), Err(Denial::IssuerNotAccepted));
}

#[test]
fn timestamps_are_microsecond_utc() {
    let now = time::macros::datetime!(2026-04-21 14:35:24.117631999 +02:00);
    let stamped = timestamp(now);
    assert_eq!(stamped.offset(), time::UtcOffset::UTC);
    assert_eq!(stamped.nanosecond(), 117_631_000);
    assert_eq!(stamped.hour(), 12);
}

#[test]
fn denial_reasons_are_distinct_snake_case() {
    let mut seen = std::collections::HashSet::new();
    for denial in Denial::ALL {
        let reason = denial.reason();
        assert!(reason.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_'), "{reason}");
        // WrongOrganisation deliberately reads as unknown_key: a caller must
        // not learn that another organisation's key exists.
        if denial != Denial::WrongOrganisation {
            assert!(seen.insert(reason), "duplicate reason {reason}");
        }
    }
}

#[test]
fn stored_signing_keys_are_checked_before_use() {
    let mut rng = rng();
    let workspace = workspace_uid(&mut rng);
    let new = new_signing_key(&mut rng);
    let stored = |status: &str, rolled_at: Option<i64>, expiry_at: Option<i64>, deleted_by: bool| {
        let new = new.clone();
        StoredSigningKey {
            id: new.id,
            uid: new.uid,
            workspace: workspace.clone(),
            public_key_pem: new.public_key_pem,
            status: status.to_owned(),
            allowed_domains: None,
            expiry_at: expiry_at.map(at),
            created_at: t0(),
            created_by: None,
            rolled_at: rolled_at.map(at),
            rolled_by: rolled_at.map(|_| actor()),
            deleted_at: None,
            deleted_by: deleted_by.then(actor),
        }
    };
    let active = WorkspaceSigningKey::try_from(stored("active", None, None, false)).expect("a plain active key");
    assert_eq!((active.status(), active.expiry_at()), (SigningKeyStatus::Active, None));
    let rolled = WorkspaceSigningKey::try_from(stored("rolled", Some(10), Some(70), false)).expect("a rolled key");
    assert_eq!((rolled.rolled_at(), rolled.expiry_at()), (Some(at(10)), Some(at(70))));
    assert!(rolled.verifies_at(at(69)) && !rolled.verifies_at(at(70)));
    let refused = [
        stored("rolled", None, Some(70), false),
        stored("rolled", Some(10), None, false),
        stored("rolled", Some(10), Some(5), false),
        stored("active", None, Some(70), false),
        stored("active", Some(10), None, false),
        stored("retired", None, None, false),
        stored("active", None, None, true),
    ];
    for record in refused {
        let description =
            format!("{} rolled_at={:?} expiry_at={:?}", record.status, record.rolled_at, record.expiry_at);
        assert!(
            matches!(WorkspaceSigningKey::try_from(record), Err(CoreError::InconsistentRecord { .. })),
            "{description}"
        );
    }
}

#[test]
fn restoring_refuses_an_actor_without_its_time() {
    let mut rng = rng();
    let (ring, ids) = ring_with(1, &mut rng);
    let key = ring.get(&ids[0]).expect("created");
    let state: PublicKeyState = (**key).clone();
    assert!(PublicKey::try_from(state.clone()).is_ok(), "a stored key as the ring made it");
    let deleter_alone = PublicKeyState { deleted_by: Some(actor()), ..state.clone() };
    assert!(matches!(PublicKey::try_from(deleter_alone), Err(CoreError::InconsistentRecord { .. })));
    let rotator_alone = PublicKeyState { rotated_by: Some(actor()), ..state };
    assert!(matches!(PublicKey::try_from(rotator_alone), Err(CoreError::InconsistentRecord { .. })));
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let id = OrganisationKeyId::generate(t0(), &mut rng);
    let key = OrganisationSigningKey::create(id, organisation, name("o"), "PEM".into(), &actor(), t0());
    let deleter_alone = OrganisationSigningKeyState { deleted_by: Some(actor()), ..(*key).clone() };
    assert!(matches!(OrganisationSigningKey::try_from(deleter_alone), Err(CoreError::InconsistentRecord { .. })));
}

//! A model-based property test of the whole key lifecycle.
//!
//! Random sequences of create / delete / rotate / patch / roll / disable /
//! enable / tick / verify over several workspaces run against the real keys-core aggregates
//! (the system under test) and a deliberately naive reference model side by
//! side. After every step the outcomes must agree and the invariants must
//! hold: at most one non-deleted active signing key per workspace, deleted is
//! terminal and never verifies, a rolled key verifies only before its
//! `expiry_at`, exactly one default among a workspace's live public keys;
//! an API key authenticates exactly when it is neither deleted, disabled
//! nor past its `expires_at`, and a roll caps the old key's expiry at
//! `min(now + grace, its expiry)` while the new key inherits the expiry.

use crate::common::*;
use keys_core::verify::*;
use keys_core::*;
use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;

const WORKSPACES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    /// With an expiry this many seconds ahead, or none.
    CreateApiKey(usize, Option<i64>),
    DeleteApiKey(usize, usize),
    DisableApiKey(usize, usize),
    EnableApiKey(usize, usize),
    RollApiKey(usize, usize, Option<u64>),
    CreatePublicKey(usize),
    DeletePublicKey(usize, usize),
    RotatePublicKey(usize, usize),
    PatchPublicKey(usize, usize, bool),
    CreateSigningKey(usize),
    RollSigningKey(usize, usize, Option<u64>),
    DeleteSigningKey(usize, usize),
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let ws = 0..WORKSPACES;
    let index = 0usize..6;
    prop_oneof![
        2 => (ws.clone(), proptest::option::of(1i64..200)).prop_map(|(w, e)| Op::CreateApiKey(w, e)),
        1 => (ws.clone(), index.clone()).prop_map(|(w, i)| Op::DeleteApiKey(w, i)),
        1 => (ws.clone(), index.clone()).prop_map(|(w, i)| Op::DisableApiKey(w, i)),
        1 => (ws.clone(), index.clone()).prop_map(|(w, i)| Op::EnableApiKey(w, i)),
        2 => (ws.clone(), index.clone(), proptest::option::of(0u64..120)).prop_map(|(w, i, g)| Op::RollApiKey(w, i, g)),
        2 => ws.clone().prop_map(Op::CreatePublicKey),
        1 => (ws.clone(), index.clone()).prop_map(|(w, i)| Op::DeletePublicKey(w, i)),
        1 => (ws.clone(), index.clone()).prop_map(|(w, i)| Op::RotatePublicKey(w, i)),
        1 => (ws.clone(), index.clone(), any::<bool>()).prop_map(|(w, i, s)| Op::PatchPublicKey(w, i, s)),
        3 => ws.clone().prop_map(Op::CreateSigningKey),
        3 => (ws.clone(), index.clone(), proptest::option::of(0u64..120)).prop_map(|(w, i, g)| Op::RollSigningKey(w, i, g)),
        1 => (ws.clone(), index).prop_map(|(w, i)| Op::DeleteSigningKey(w, i)),
        2 => (1i64..90).prop_map(Op::Tick),
    ]
}

// ---- The reference model: plain data and the rules written out naively.

#[derive(Debug, Clone, Copy, PartialEq)]
enum RefSigning {
    Active,
    Rolled { expiry: i64 },
    Deleted,
}

/// An API key as the model sees it: its stage and its expiry (seconds on
/// the test clock).
#[derive(Debug, Clone, Copy, PartialEq)]
enum RefApi {
    Active { expiry: Option<i64> },
    Disabled { expiry: Option<i64> },
    Rolled { expiry: i64 },
    Deleted,
}

#[derive(Debug, Default, Clone)]
struct RefWorkspace {
    api: Vec<RefApi>,
    /// (deleted, default)
    public: Vec<(bool, bool)>,
    signing: Vec<RefSigning>,
}

// ---- The system under test: keys-core's aggregates, plus what storage
// would keep of deleted records.

struct SutWorkspace {
    uid: WorkspaceUid,
    workspace: Workspace,
    api_keys: Vec<ApiKey>,
    public_ring: PublicKeyRing,
    public_ids: Vec<PublicKeyId>,
    public_deleted: Vec<PublicKey>,
    signing_ring: SigningKeyRing,
    signing_uids: Vec<SigningKeyUid>,
    signing_deleted: Vec<WorkspaceSigningKey>,
}

fn outcome<T>(result: Result<T, CoreError>) -> Result<(), CoreError> {
    result.map(|_| ())
}

/// The outcome of a delete, keeping the deleted record (the rings drop it)
/// so that later steps can still try to change it.
fn keep_deleted<K>(result: Result<K, CoreError>, deleted: &mut Vec<K>) -> Result<(), CoreError> {
    result.map(|key| deleted.push(key))
}

fn run(ops: Vec<Op>) {
    let mut rng: ChaCha8Rng = rng();
    let mut clock: i64 = 0;
    let mut model: Vec<RefWorkspace> = vec![RefWorkspace::default(); WORKSPACES];
    let organisation = OrganisationId::generate(t0(), &mut rng);
    let mut sut: Vec<SutWorkspace> = (0..WORKSPACES)
        .map(|_| {
            let workspace = workspace_of(&organisation, &mut rng);
            let uid = workspace.uid.clone();
            SutWorkspace {
                uid: uid.clone(),
                workspace,
                api_keys: Vec::new(),
                public_ring: PublicKeyRing::restore(Vec::new()),
                public_ids: Vec::new(),
                public_deleted: Vec::new(),
                signing_ring: SigningKeyRing::restore(uid, Vec::new()),
                signing_uids: Vec::new(),
                signing_deleted: Vec::new(),
            }
        })
        .collect();

    for op in ops {
        let now = at(clock);
        match op {
            Op::Tick(seconds) => clock += seconds,
            Op::CreateApiKey(w, expiry) => {
                let mut profile = ApiKeyProfile::named(name("k"));
                profile.expires_at = expiry.map(|seconds| at(clock + seconds));
                let key = ApiKey::create(new_api_key(&sut[w].uid, profile, &mut rng), &actor(), now).expect("valid");
                sut[w].api_keys.push(key);
                model[w].api.push(RefApi::Active { expiry: expiry.map(|seconds| clock + seconds) });
            }
            Op::DeleteApiKey(w, i) => {
                let Some(key) = sut[w].api_keys.get_mut(i) else { continue };
                let expected = if model[w].api[i] == RefApi::Deleted {
                    Err(CoreError::AlreadyDeleted { kind: "api key" })
                } else {
                    Ok(())
                };
                assert_eq!(key.delete(&actor(), now), expected);
                model[w].api[i] = RefApi::Deleted;
            }
            Op::DisableApiKey(w, i) => {
                let Some(key) = sut[w].api_keys.get_mut(i) else { continue };
                let (expected, next) = match model[w].api[i] {
                    RefApi::Active { expiry } => (Ok(()), RefApi::Disabled { expiry }),
                    RefApi::Deleted => (Err(CoreError::AlreadyDeleted { kind: "api key" }), RefApi::Deleted),
                    other => (Err(CoreError::ApiKeyNotActive { action: "disabled" }), other),
                };
                assert_eq!(key.disable(&actor(), now), expected);
                model[w].api[i] = next;
            }
            Op::EnableApiKey(w, i) => {
                let Some(key) = sut[w].api_keys.get_mut(i) else { continue };
                let (expected, next) = match model[w].api[i] {
                    RefApi::Disabled { expiry } => (Ok(()), RefApi::Active { expiry }),
                    RefApi::Deleted => (Err(CoreError::AlreadyDeleted { kind: "api key" }), RefApi::Deleted),
                    other => (Err(CoreError::ApiKeyNotDisabled), other),
                };
                assert_eq!(key.enable(&actor(), now), expected);
                model[w].api[i] = next;
            }
            Op::RollApiKey(w, i, grace) => {
                let uid = sut[w].uid.clone();
                let material = new_api_key(&uid, ApiKeyProfile::named(name("unused")), &mut rng).material;
                let Some(key) = sut[w].api_keys.get_mut(i) else { continue };
                let grace_seconds = grace.map_or(0, |seconds| seconds as i64);
                let expected = match model[w].api[i] {
                    RefApi::Deleted => Err(CoreError::AlreadyDeleted { kind: "api key" }),
                    RefApi::Active { expiry: Some(expiry) } if expiry <= clock => Err(CoreError::ApiKeyExpired),
                    RefApi::Active { expiry } => Ok(expiry),
                    _ => Err(CoreError::ApiKeyNotActive { action: "rolled" }),
                };
                let grace = grace.map(|seconds| GracePeriod::from_seconds(seconds).expect("in range"));
                let result = key.roll(grace, material, &actor(), now);
                assert_eq!(result.as_ref().map(|_| ()).map_err(Clone::clone), expected.clone().map(|_| ()));
                if let (Ok(fresh), Ok(expiry)) = (result, expected) {
                    assert_eq!(fresh.name, key.name, "the new key inherits the profile");
                    let capped = expiry.map_or(clock + grace_seconds, |expiry| expiry.min(clock + grace_seconds));
                    model[w].api[i] = RefApi::Rolled { expiry: capped };
                    sut[w].api_keys.push(fresh);
                    model[w].api.push(RefApi::Active { expiry });
                }
            }
            Op::CreatePublicKey(w) => {
                let id = PublicKeyId::generate(now, &mut rng);
                let uid = sut[w].uid.clone();
                let key = sut[w].public_ring.create(
                    keys_core::NewPublicKey {
                        id: id.clone(),
                        workspace: uid,
                        value: format!("SS.PUBK.{clock}"),
                        name: name("p"),
                        description: None,
                    },
                    &actor(),
                    now,
                );
                let expected_default = !model[w].public.iter().any(|(deleted, default)| !deleted && *default);
                assert_eq!(key.is_default, expected_default);
                sut[w].public_ids.push(id);
                model[w].public.push((false, expected_default));
            }
            Op::DeletePublicKey(w, i) => {
                let Some(id) = sut[w].public_ids.get(i).cloned() else { continue };
                let live = model[w].public.iter().filter(|(deleted, _)| !deleted).count();
                let (deleted, default) = model[w].public[i];
                let expected = if deleted {
                    Err(CoreError::NotFound { kind: "public key" })
                } else if default && live > 1 {
                    Err(CoreError::DefaultPublicKeyInUse)
                } else {
                    Ok(())
                };
                let result = sut[w].public_ring.delete(&id, &actor(), now);
                assert_eq!(keep_deleted(result, &mut sut[w].public_deleted), expected);
                if expected.is_ok() {
                    model[w].public[i].0 = true;
                }
            }
            Op::RotatePublicKey(w, i) | Op::PatchPublicKey(w, i, _) => {
                let Some(id) = sut[w].public_ids.get(i).cloned() else { continue };
                let mut key = match sut[w].public_ring.get(&id) {
                    Some(key) => key.clone(),
                    None => sut[w].public_deleted.iter().find(|key| key.id == id).cloned().expect("deleted kept"),
                };
                let result = match op {
                    Op::RotatePublicKey(..) => key.rotate(format!("SS.PUBK.r{clock}"), &actor(), now),
                    Op::PatchPublicKey(_, _, secure) => key.patch(
                        PublicKeyPatch { is_secure_mode_enabled: Some(secure), ..PublicKeyPatch::default() },
                        &actor(),
                        now,
                    ),
                    _ => unreachable!("only rotate and patch reach here"),
                };
                let expected =
                    if model[w].public[i].0 { Err(CoreError::AlreadyDeleted { kind: "public key" }) } else { Ok(()) };
                assert_eq!(result, expected);
            }
            Op::CreateSigningKey(w) => {
                let new = new_signing_key(&mut rng);
                let uid = new.uid.clone();
                let expected = if model[w].signing.contains(&RefSigning::Active) {
                    Err(CoreError::OnlyOneActiveSigningKey)
                } else {
                    Ok(())
                };
                assert_eq!(outcome(sut[w].signing_ring.create(new, &actor(), now)), expected);
                if expected.is_ok() {
                    sut[w].signing_uids.push(uid);
                    model[w].signing.push(RefSigning::Active);
                }
            }
            Op::RollSigningKey(w, i, grace) => {
                let Some(uid) = sut[w].signing_uids.get(i).cloned() else { continue };
                let new = new_signing_key(&mut rng);
                let new_uid = new.uid.clone();
                let expected = match model[w].signing[i] {
                    RefSigning::Active => Ok(()),
                    RefSigning::Rolled { .. } => Err(CoreError::SigningKeyNotActive),
                    RefSigning::Deleted => Err(CoreError::NotFound { kind: "signing key" }),
                };
                let grace = grace.map(|seconds| GracePeriod::from_seconds(seconds).expect("in range"));
                assert_eq!(outcome(sut[w].signing_ring.roll(&uid, grace, new, &actor(), now)), expected);
                if expected.is_ok() {
                    let seconds = grace.map_or(0, |grace| grace.duration().whole_seconds());
                    model[w].signing[i] = RefSigning::Rolled { expiry: clock + seconds };
                    sut[w].signing_uids.push(new_uid);
                    model[w].signing.push(RefSigning::Active);
                }
            }
            Op::DeleteSigningKey(w, i) => {
                let Some(uid) = sut[w].signing_uids.get(i).cloned() else { continue };
                let expected = if model[w].signing[i] == RefSigning::Deleted {
                    Err(CoreError::NotFound { kind: "signing key" })
                } else {
                    Ok(())
                };
                let result = sut[w].signing_ring.delete(&uid, &actor(), now);
                assert_eq!(keep_deleted(result, &mut sut[w].signing_deleted), expected);
                model[w].signing[i] = RefSigning::Deleted;
            }
        }
        check_invariants(&model, &sut, clock);
    }
}

fn check_invariants(model: &[RefWorkspace], sut: &[SutWorkspace], clock: i64) {
    let now = at(clock);
    for (reference, workspace) in model.iter().zip(sut) {
        // At most one non-deleted active signing key.
        let active =
            workspace.signing_ring.keys().iter().filter(|key| key.status() == SigningKeyStatus::Active).count();
        assert!(active <= 1, "{active} active signing keys");
        assert_eq!(active, reference.signing.iter().filter(|state| **state == RefSigning::Active).count());

        // Every signing key verifies exactly when the model says so.
        for (uid, state) in workspace.signing_uids.iter().zip(&reference.signing) {
            let key = workspace
                .signing_ring
                .get(uid)
                .or_else(|| workspace.signing_deleted.iter().find(|key| &key.uid == uid))
                .expect("every key is somewhere");
            let expected = match state {
                RefSigning::Active => Ok(()),
                RefSigning::Rolled { expiry } if clock < *expiry => Ok(()),
                RefSigning::Rolled { .. } => Err(Denial::KeyExpired),
                RefSigning::Deleted => Err(Denial::Deleted),
            };
            let decided = decide_signing_key(Some(key), &workspace.uid, now).map(|_| ());
            assert_eq!(decided, expected, "signing key {uid}");
        }
        let verifying = workspace.signing_ring.verifying_at(now).count();
        let expected_verifying = reference
            .signing
            .iter()
            .filter(|state| match state {
                RefSigning::Active => true,
                RefSigning::Rolled { expiry } => clock < *expiry,
                RefSigning::Deleted => false,
            })
            .count();
        assert_eq!(verifying, expected_verifying);

        // An API key authenticates exactly when the model says so.
        for (key, state) in workspace.api_keys.iter().zip(&reference.api) {
            let expired = |expiry: Option<i64>| expiry.is_some_and(|expiry| expiry <= clock);
            let expected = match *state {
                RefApi::Deleted => Err(Denial::Deleted),
                RefApi::Disabled { .. } => Err(Denial::KeyDisabled),
                RefApi::Active { expiry } if expired(expiry) => Err(Denial::KeyExpired),
                RefApi::Rolled { expiry } if expired(Some(expiry)) => Err(Denial::KeyExpired),
                RefApi::Active { .. } | RefApi::Rolled { .. } => Ok(()),
            };
            let scope = Scope::organisation(&workspace.workspace.organisation_id);
            let decided = decide_api_key::<&str>(Some((key, &workspace.workspace)), scope, now, &[]);
            assert_eq!(decided.map(|_| ()), expected, "api key {}", key.id);
        }

        // Exactly one default among live public keys, when any is live.
        let live = workspace.public_ring.keys();
        let defaults = live.iter().filter(|key| key.is_default).count();
        assert_eq!(defaults, usize::from(!live.is_empty()), "defaults among {} live keys", live.len());
        assert_eq!(live.len(), reference.public.iter().filter(|(deleted, _)| !deleted).count());
        for key in &workspace.public_deleted {
            let scope = Scope::organisation(&workspace.workspace.organisation_id);
            let presented = PublicKeyPresentation::default();
            assert_eq!(decide_public_key(Some((key, &workspace.workspace)), scope, presented), Err(Denial::Deleted));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn lifecycle_agrees_with_the_reference_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops);
    }
}

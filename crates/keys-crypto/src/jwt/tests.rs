//! Round trips and the negative cases of verification, each a typed error.

#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::keypair::{public_jwk_from_pem, EcKeyPair, JwkSet, RsaKeyPair};
use crate::mint::sign;
use crate::test_support::{at, ec_key, other_rsa_key, rsa_key, NOW};

fn claims() -> Value {
    json!({
        "sub": "user-42",
        "iss": "https://versori.com/sk/01HZY",
        "aud": ["a", "b"],
        "iat": NOW,
        "exp": NOW + 300,
        "entity_type": "subscriber",
        "scope": {"tenant_id": "default"},
    })
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// Signs with an arbitrary jsonwebtoken header, to build tokens `sign`
/// refuses to make.
fn sign_with_header(header: jsonwebtoken::Header, claims: &Value, key: &jsonwebtoken::EncodingKey) -> String {
    crate::provider::ensure_installed();
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn es256_token(claims: &Value) -> (EcKeyPair, String) {
    let pair = ec_key(1);
    let token = sign(claims, Some("signing_key_1"), &pair.private_key_pem(), Algorithm::Es256).unwrap();
    (pair, token)
}

/// Replaces the payload segment, keeping header and signature.
fn with_payload(token: &str, payload: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], encode_part(payload), parts[2])
}

/// What both key types promise of their PEMs: the private one is PKCS#8,
/// the public one SPKI, the private PEM parses back into the same key (whose
/// public PEM is `reparsed_public_pem`), and `private_key_base64` is the
/// standard base64 of the private PEM text.
fn assert_pems_round_trip(private_pem: &str, public_pem: &str, reparsed_public_pem: &str, private_base64: &str) {
    assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
    assert_eq!(reparsed_public_pem, public_pem);
    let decoded = STANDARD.decode(private_base64.as_bytes()).unwrap();
    assert_eq!(decoded, private_pem.as_bytes());
}

#[test]
fn es256_round_trip_generate_pem_parse_sign_verify() {
    let pair = ec_key(1);
    let private_pem = pair.private_key_pem();
    assert!(private_pem.trim_end().ends_with("-----END PRIVATE KEY-----"));
    let public_pem = pair.public_key_pem();
    let reparsed = EcKeyPair::from_pkcs8_pem(&private_pem).unwrap();
    assert_pems_round_trip(&private_pem, &public_pem, &reparsed.public_key_pem(), &pair.private_key_base64());

    let token = sign(&claims(), Some("signing_key_1"), &private_pem, Algorithm::Es256).unwrap();
    let key = VerificationKey::from_pem(Algorithm::Es256, &public_pem).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Es256);
    assert_eq!(key, pair.verification_key());
    let verified = verify(&token, &key).unwrap();
    assert_eq!(verified.clone().into_value(), claims());
    assert_eq!(verified.sub(), Some("user-42"));
    assert_eq!(verified.iss(), Some("https://versori.com/sk/01HZY"));
    assert_eq!(verified.aud(), vec!["a", "b"]);
    assert_eq!(verified.exp(), Some(NOW + 300));
    assert_eq!(verified.iat(), Some(NOW));
    assert_eq!(verified.nbf(), None);
    assert_eq!(verified.get("scope").unwrap()["tenant_id"], "default");
    assert_eq!(verified.require_str("entity_type"), Ok("subscriber"));
    assert_eq!(verified.require_str("entity_id"), Err(JwtError::MissingClaim("entity_id")));
    assert_eq!(verified.require_str("scope"), Err(JwtError::InvalidClaim("scope")));

    let header = peek_header(&token).unwrap();
    assert_eq!(header.alg, "ES256");
    assert_eq!(header.kid.as_deref(), Some("signing_key_1"));
    assert_eq!(header.algorithm(), Some(Algorithm::Es256));
}

#[test]
fn rs256_round_trip_generate_pem_parse_sign_verify() {
    let pair = rsa_key();
    let private_pem = pair.private_key_pem();
    let public_pem = pair.public_key_pem();
    let reparsed = RsaKeyPair::from_pkcs8_pem(&private_pem).unwrap();
    assert_pems_round_trip(&private_pem, &public_pem, &reparsed.public_key_pem(), &pair.private_key_base64());

    let token = sign(&claims(), Some("01HZY"), &private_pem, Algorithm::Rs256).unwrap();
    let key = VerificationKey::from_pem(Algorithm::Rs256, &public_pem).unwrap();
    let verified = verify(&token, &key).unwrap();
    assert_eq!(verified.into_map(), claims().as_object().unwrap().clone());
    assert_eq!(peek_header(&token).unwrap().alg, "RS256");
}

#[test]
fn jwk_shapes_follow_rfc_7518() {
    let ec = ec_key(2).public_jwk("signing_key_2");
    let ec_json = serde_json::to_value(&ec).unwrap();
    let object = ec_json.as_object().unwrap();
    let mut members: Vec<&str> = object.keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "crv", "kid", "kty", "use", "x", "y"]);
    assert_eq!(ec_json["kty"], "EC");
    assert_eq!(ec_json["crv"], "P-256");
    assert_eq!(ec_json["alg"], "ES256");
    assert_eq!(ec_json["use"], "sig");
    assert_eq!(ec_json["kid"], "signing_key_2");
    assert_eq!(URL_SAFE_NO_PAD.decode(ec.x.as_ref().unwrap()).unwrap().len(), 32);
    assert_eq!(URL_SAFE_NO_PAD.decode(ec.y.as_ref().unwrap()).unwrap().len(), 32);

    let rsa = rsa_key().public_jwk("01HZY");
    let rsa_json = serde_json::to_value(&rsa).unwrap();
    let mut members: Vec<&str> = rsa_json.as_object().unwrap().keys().map(String::as_str).collect();
    members.sort_unstable();
    assert_eq!(members, ["alg", "e", "kid", "kty", "n", "use"]);
    assert_eq!(rsa_json["kty"], "RSA");
    assert_eq!(rsa_json["alg"], "RS256");
    assert_eq!(rsa_json["e"], "AQAB");
    assert_eq!(URL_SAFE_NO_PAD.decode(rsa.n.as_ref().unwrap()).unwrap().len(), 256);

    // The store keeps PEMs only; JWKs built from them are the same.
    let ec_pair = ec_key(2);
    assert_eq!(public_jwk_from_pem(Algorithm::Es256, &ec_pair.public_key_pem(), "signing_key_2").unwrap(), ec);
    assert_eq!(public_jwk_from_pem(Algorithm::Rs256, &rsa_key().public_key_pem(), "01HZY").unwrap(), rsa);
    assert!(matches!(
        public_jwk_from_pem(Algorithm::Rs256, &ec_pair.public_key_pem(), "k"),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(public_jwk_from_pem(Algorithm::Es256, "not a pem", "k"), Err(CryptoError::InvalidKey(_))));
}

#[test]
fn jwk_to_key_verifies_and_round_trips_through_json() {
    let (pair, token) = es256_token(&claims());
    let jwk = pair.public_jwk("signing_key_1");
    let parsed: Jwk = serde_json::from_str(&serde_json::to_string(&jwk).unwrap()).unwrap();
    let key = VerificationKey::from_jwk(&parsed).unwrap();
    assert_eq!(key.public_key_pem(), pair.public_key_pem());
    assert_eq!(key.to_jwk("signing_key_1"), jwk);
    assert!(verify(&token, &key).is_ok());

    let rsa_token = sign(&claims(), None, &rsa_key().private_key_pem(), Algorithm::Rs256).unwrap();
    let rsa_jwk = rsa_key().public_jwk("01HZY");
    let rsa_verification = VerificationKey::from_jwk(&rsa_jwk).unwrap();
    assert!(verify(&rsa_token, &rsa_verification).is_ok());
}

#[test]
fn jwks_verifier_picks_the_key_by_kid() {
    let active = ec_key(10);
    let rolled = ec_key(11);
    let set = JwkSet {
        keys: vec![
            active.public_jwk("signing_key_active"),
            rolled.public_jwk("signing_key_rolled"),
            rsa_key().public_jwk("01HZY"),
        ],
    };
    let json = serde_json::to_string(&set).unwrap();
    let verifier = Verifier::from_jwks_json(&json).unwrap();
    assert_eq!(verifier.len(), 3);
    assert_eq!(verifier.kids().collect::<Vec<_>>(), ["01HZY", "signing_key_active", "signing_key_rolled"]);

    for (pair, kid) in [(&active, "signing_key_active"), (&rolled, "signing_key_rolled")] {
        let token = sign(&claims(), Some(kid), &pair.private_key_pem(), Algorithm::Es256).unwrap();
        assert_eq!(verifier.verify(&token, at(NOW)).unwrap().sub(), Some("user-42"));
    }
    let rsa_token = sign(&claims(), Some("01HZY"), &rsa_key().private_key_pem(), Algorithm::Rs256).unwrap();
    assert!(verifier.verify(&rsa_token, at(NOW)).is_ok());

    // Signed by the active key but naming the rolled key's kid.
    let wrong_kid = sign(&claims(), Some("signing_key_rolled"), &active.private_key_pem(), Algorithm::Es256).unwrap();
    assert_eq!(verifier.verify(&wrong_kid, at(NOW)), Err(JwtError::BadSignature));
    // Unknown and absent kids.
    let unknown = sign(&claims(), Some("signing_key_gone"), &active.private_key_pem(), Algorithm::Es256).unwrap();
    assert_eq!(verifier.verify(&unknown, at(NOW)), Err(JwtError::UnknownKey));
    let no_kid = sign(&claims(), None, &active.private_key_pem(), Algorithm::Es256).unwrap();
    assert_eq!(verifier.verify(&no_kid, at(NOW)), Err(JwtError::UnknownKey));
    // An RS256 token naming an ES256 kid: the key pins the algorithm.
    let confused = sign(&claims(), Some("signing_key_active"), &rsa_key().private_key_pem(), Algorithm::Rs256).unwrap();
    assert_eq!(verifier.verify(&confused, at(NOW)), Err(JwtError::AlgorithmMismatch));

    // Leeway is configurable on the verifier.
    let expiring = json!({"sub": "x", "exp": NOW});
    let token = sign(&expiring, Some("signing_key_active"), &active.private_key_pem(), Algorithm::Es256).unwrap();
    assert!(verifier.verify(&token, at(NOW + 59)).is_ok());
    let strict = verifier.clone().with_time_policy(keys_core::verify::TimePolicy::new(0).unwrap());
    assert_eq!(strict.verify(&token, at(NOW)), Err(JwtError::Expired));

    // An empty set verifies nothing.
    let empty = Verifier::from_jwks_json(r#"{"keys": []}"#).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.verify(&no_kid, at(NOW)), Err(JwtError::UnknownKey));
}

#[test]
fn jwks_parsing_skips_unusable_keys_and_rejects_broken_ones() {
    let usable = serde_json::to_value(ec_key(12).public_jwk("good")).unwrap();
    let document = json!({"keys": [
        usable,
        {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
        {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "enc", "use": "enc"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "ps", "alg": "PS256"},
        {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
    ]});
    let verifier = Verifier::from_jwks_json(&document.to_string()).unwrap();
    assert_eq!(verifier.kids().collect::<Vec<_>>(), ["good"]);

    assert!(matches!(Verifier::from_jwks_json("not json"), Err(CryptoError::InvalidJwkSet(_))));
    assert!(matches!(Verifier::from_jwks_json(r#"{"keys": 3}"#), Err(CryptoError::InvalidJwkSet(_))));

    // A point that is not on the curve.
    let off_curve = json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "bad",
        "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32]),
    }]});
    assert!(matches!(Verifier::from_jwks_json(&off_curve.to_string()), Err(CryptoError::InvalidKey(_))));
    // A 1024-bit RSA modulus is refused.
    let small = json!({"keys": [{
        "kty": "RSA", "kid": "small", "e": "AQAB",
        "n": URL_SAFE_NO_PAD.encode([0xC3u8; 128]),
    }]});
    assert!(matches!(Verifier::from_jwks_json(&small.to_string()), Err(CryptoError::InvalidKey(_))));
    // The same kid twice.
    let twice = json!({"keys": [
        ec_key(13).public_jwk("same"), ec_key(14).public_jwk("same"),
    ]});
    assert_eq!(
        Verifier::from_jwks_json(&twice.to_string()).unwrap_err(),
        CryptoError::DuplicateKeyId("same".to_owned())
    );
    // An alg that contradicts kty.
    let mut contradiction = ec_key(15).public_jwk("k");
    contradiction.alg = Some("RS256".to_owned());
    assert!(matches!(VerificationKey::from_jwk(&contradiction), Err(CryptoError::UnsupportedKey(_))));
}

#[test]
fn tampered_payload_and_signature_are_bad_signatures() {
    let (pair, token) = es256_token(&claims());
    let key = pair.verification_key();
    let mut changed = claims();
    changed["sub"] = json!("admin");
    assert_eq!(verify(&with_payload(&token, &changed), &key), Err(JwtError::BadSignature));

    // Flip one bit of the signature (in a byte that is not the last
    // character, whose low bits are padding).
    let mut signature = URL_SAFE_NO_PAD.decode(token.rsplit('.').next().unwrap()).unwrap();
    signature[10] ^= 0x01;
    let head = &token[..token.rfind('.').unwrap()];
    let tampered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&signature));
    assert_eq!(verify(&tampered, &key), Err(JwtError::BadSignature));

    // A truncated ES256 signature.
    let short = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&signature[..63]));
    assert_eq!(verify(&short, &key), Err(JwtError::BadSignature));

    let rsa_token = sign(&claims(), None, &rsa_key().private_key_pem(), Algorithm::Rs256).unwrap();
    let rsa_verification = rsa_key().verification_key();
    assert_eq!(verify(&with_payload(&rsa_token, &changed), &rsa_verification), Err(JwtError::BadSignature));
}

#[test]
fn signatures_of_the_wrong_shape_or_range_are_bad_signatures() {
    let (pair, token) = es256_token(&claims());
    let head = &token[..token.rfind('.').unwrap()];
    let with_signature = |head: &str, signature: &[u8]| format!("{head}.{}", URL_SAFE_NO_PAD.encode(signature));
    let key = pair.verification_key();
    // Empty, too long, r = s = 0, and r, s above the group order.
    for signature in [&[][..], &[1u8; 65][..], &[0u8; 64][..], &[0xffu8; 64][..]] {
        assert_eq!(verify(&with_signature(head, signature), &key), Err(JwtError::BadSignature));
    }

    let rsa_token = sign(&claims(), None, &rsa_key().private_key_pem(), Algorithm::Rs256).unwrap();
    let rsa_head = &rsa_token[..rsa_token.rfind('.').unwrap()];
    let real = URL_SAFE_NO_PAD.decode(rsa_token.rsplit('.').next().unwrap()).unwrap();
    assert_eq!(real.len(), 256);
    let mut padded = vec![0u8];
    padded.extend_from_slice(&real);
    let rsa_verification = rsa_key().verification_key();
    // Empty, one byte short, the real one with a leading zero byte (not the
    // modulus length), and a value above the modulus.
    for signature in [&[][..], &real[1..], &padded[..], &[0xffu8; 256][..]] {
        assert_eq!(verify(&with_signature(rsa_head, signature), &rsa_verification), Err(JwtError::BadSignature));
    }
    assert!(verify(&with_signature(rsa_head, &real), &rsa_verification).is_ok());
}

#[test]
fn a_different_key_is_a_bad_signature() {
    let (_, token) = es256_token(&claims());
    assert_eq!(verify(&token, &ec_key(99).verification_key()), Err(JwtError::BadSignature));
    let rsa_token = sign(&claims(), None, &rsa_key().private_key_pem(), Algorithm::Rs256).unwrap();
    assert_eq!(verify(&rsa_token, &other_rsa_key().verification_key()), Err(JwtError::BadSignature));
}

#[test]
fn time_claims_must_be_numeric_dates_but_their_window_is_not_checked_here() {
    let pair = ec_key(3);
    let key = pair.verification_key();
    let pem = pair.private_key_pem();
    let token_with = |claims: Value| sign(&claims, None, &pem, Algorithm::Es256).unwrap();

    // The window is keys-core's TimePolicy: verify() accepts a long-expired
    // or not-yet-valid token and reports its times.
    let expired = token_with(json!({"exp": 1_000, "nbf": 4_000_000_000i64, "iat": 4_000_000_000i64}));
    let claims = verify(&expired, &key).unwrap();
    assert_eq!(
        claims.times(),
        keys_core::verify::TokenTimes { exp: Some(1_000), nbf: Some(4_000_000_000), iat: Some(4_000_000_000) }
    );
    // Fractional NumericDates round towards rejection.
    let fractional = token_with(json!({"exp": NOW as f64 + 0.5, "nbf": NOW as f64 - 1.5, "iat": NOW as f64 + 0.5}));
    let times = verify(&fractional, &key).unwrap().times();
    assert_eq!((times.exp, times.nbf, times.iat), (Some(NOW), Some(NOW - 1), Some(NOW + 1)));
    // Enormous values saturate instead of overflowing.
    let forever = token_with(json!({"exp": u64::MAX, "nbf": i64::MIN}));
    assert_eq!(verify(&forever, &key).unwrap().times().exp, Some(i64::MAX));

    // Claims that are not NumericDates are refused.
    let text_exp = token_with(json!({"exp": "tomorrow"}));
    assert_eq!(verify(&text_exp, &key), Err(JwtError::InvalidClaim("exp")));
    let null_nbf = token_with(json!({"nbf": null}));
    assert_eq!(verify(&null_nbf, &key), Err(JwtError::InvalidClaim("nbf")));
    let array_iat = token_with(json!({"iat": [1]}));
    assert_eq!(verify(&array_iat, &key), Err(JwtError::InvalidClaim("iat")));
    // No exp at all is the token kind's rule, not an error here.
    let no_exp = token_with(json!({"sub": "x"}));
    assert_eq!(verify(&no_exp, &key).unwrap().exp(), None);
}

#[test]
fn the_jwks_verifier_applies_the_core_time_policy() {
    let pair = ec_key(3);
    let pem = pair.private_key_pem();
    let verifier = Verifier::new([("k".to_owned(), pair.verification_key())]).unwrap();
    let expiring = sign(&json!({"exp": NOW}), Some("k"), &pem, Algorithm::Es256).unwrap();
    assert!(verifier.verify(&expiring, at(NOW + 59)).is_ok());
    assert_eq!(verifier.verify(&expiring, at(NOW + 60)), Err(JwtError::Expired));
    let strict = verifier.clone().with_time_policy(keys_core::verify::TimePolicy::new(0).unwrap());
    assert_eq!(strict.verify(&expiring, at(NOW)), Err(JwtError::Expired));
    assert!(strict.verify(&expiring, at(NOW - 1)).is_ok());
    let future = sign(&json!({"iat": NOW + 61}), Some("k"), &pem, Algorithm::Es256).unwrap();
    assert_eq!(verifier.verify(&future, at(NOW)), Err(JwtError::NotYetValid));
}

#[test]
fn alg_none_is_unsupported() {
    let (pair, token) = es256_token(&claims());
    let key = pair.verification_key();
    let payload = token.split('.').nth(1).unwrap();
    for header in [json!({"alg": "none"}), json!({"alg": "none", "typ": "JWT", "kid": "signing_key_1"})] {
        let unsigned = format!("{}.{payload}.", encode_part(&header));
        assert_eq!(verify(&unsigned, &key), Err(JwtError::UnsupportedAlgorithm));
        // Even with the real signature attached.
        let signature = token.rsplit('.').next().unwrap();
        let relabelled = format!("{}.{payload}.{signature}", encode_part(&header));
        assert_eq!(verify(&relabelled, &key), Err(JwtError::UnsupportedAlgorithm));
    }
    for alg in ["None", "NONE", "es256", "ES384", "PS256", "EdDSA", ""] {
        let relabelled = format!("{}.{payload}.AAAA", encode_part(&json!({"alg": alg})));
        assert_eq!(verify(&relabelled, &key), Err(JwtError::UnsupportedAlgorithm));
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_rejected() {
    let ec_pair = ec_key(4);
    for (verification, public_pem) in [
        (ec_pair.verification_key(), ec_pair.public_key_pem()),
        (rsa_key().verification_key(), rsa_key().public_key_pem()),
    ] {
        // The attack: HMAC keyed with the public key's bytes.
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("signing_key_1".to_owned());
        let forged =
            sign_with_header(header, &claims(), &jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()));
        assert_eq!(verify(&forged, &verification), Err(JwtError::UnsupportedAlgorithm));
        let verifier = Verifier::new([("signing_key_1".to_owned(), verification)]).unwrap();
        assert_eq!(verifier.verify(&forged, at(NOW)), Err(JwtError::UnsupportedAlgorithm));
    }
}

#[test]
fn the_other_supported_algorithm_is_a_mismatch() {
    let (_, es_token) = es256_token(&claims());
    assert_eq!(verify(&es_token, &rsa_key().verification_key()), Err(JwtError::AlgorithmMismatch));
    let rs_token = sign(&claims(), None, &rsa_key().private_key_pem(), Algorithm::Rs256).unwrap();
    assert_eq!(verify(&rs_token, &ec_key(1).verification_key()), Err(JwtError::AlgorithmMismatch));
    // An ES256 signature relabelled RS256 and offered to an RSA key.
    let parts: Vec<&str> = es_token.split('.').collect();
    let relabelled = format!("{}.{}.{}", encode_part(&json!({"alg": "RS256", "typ": "JWT"})), parts[1], parts[2]);
    assert_eq!(verify(&relabelled, &rsa_key().verification_key()), Err(JwtError::BadSignature));
}

#[test]
fn critical_header_parameters_are_rejected() {
    let pair = ec_key(5);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.crit = Some(vec!["exp".to_owned()]);
    let token = sign_with_header(header, &claims(), &pair.encoding_key());
    assert_eq!(verify(&token, &pair.verification_key()), Err(JwtError::UnsupportedCriticalHeader));
    // Peeking still works: it only reads.
    assert_eq!(peek_header(&token).unwrap().alg, "ES256");
}

#[test]
fn malformed_tokens_are_malformed() {
    let (pair, token) = es256_token(&claims());
    let key = pair.verification_key();
    let parts: Vec<&str> = token.split('.').collect();
    let header_json = |value: &Value| encode_part(value);
    let cases: Vec<String> = vec![
        String::new(),
        ".".to_owned(),
        "..".to_owned(),
        "...".to_owned(),
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.{}", parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}={}.{}.{}", parts[0], "", parts[1], parts[2]),
        format!("{}.{}.{}!", parts[0], parts[1], parts[2]),
        format!("{}.{}===.{}", parts[0], parts[1], parts[2]),
        format!("*.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), parts[1], parts[2]),
        format!("{}.{}.{}", header_json(&json!(["ES256"])), parts[1], parts[2]),
        format!("{}.{}.{}", header_json(&json!({"typ": "JWT"})), parts[1], parts[2]),
        format!("{}.{}.{}", header_json(&json!({"alg": 256})), parts[1], parts[2]),
        format!("{}.{}.{}", header_json(&json!({"alg": "ES256", "kid": 7})), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("[1,2]"), parts[2]),
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("{\"a\":"), parts[2]),
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode([0xff, 0xfe]), parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], STANDARD.encode([0xfbu8; 64])),
    ];
    for case in &cases {
        assert_eq!(verify(case, &key), Err(JwtError::Malformed), "{case:?}");
    }
    assert_eq!(peek_header(""), Err(JwtError::Malformed));
    assert_eq!(peek_header("a.b"), Err(JwtError::Malformed));
    assert_eq!(peek_unverified_claims("a.b.c"), Err(JwtError::Malformed));
    let verifier = Verifier::new([("signing_key_1".to_owned(), key)]).unwrap();
    assert_eq!(verifier.verify("junk", at(NOW)), Err(JwtError::Malformed));
}

#[test]
fn oversized_tokens_are_rejected_before_decoding() {
    let (pair, _) = es256_token(&claims());
    let key = pair.verification_key();
    let big = json!({"sub": "x", "padding": "p".repeat(MAX_TOKEN_BYTES)});
    let token = sign(&big, Some("signing_key_1"), &pair.private_key_pem(), Algorithm::Es256).unwrap();
    assert!(token.len() > MAX_TOKEN_BYTES);
    assert_eq!(verify(&token, &key), Err(JwtError::TooLarge));
    assert_eq!(peek_header(&token), Err(JwtError::TooLarge));
    assert_eq!(peek_unverified_claims(&token).unwrap_err(), JwtError::TooLarge);
    // Exactly at the limit is decoded (and here fails for being garbage).
    let at_limit = "a".repeat(MAX_TOKEN_BYTES);
    assert_eq!(verify(&at_limit, &key), Err(JwtError::Malformed));
    assert_eq!(verify(&format!("{at_limit}a"), &key), Err(JwtError::TooLarge));
}

#[test]
fn peeking_reads_without_verifying() {
    let (_, token) = es256_token(&claims());
    let mut forged = claims();
    forged["iss"] = json!("https://evil.example/sk/1");
    let tampered = with_payload(&token, &forged);
    let unverified = peek_unverified_claims(&tampered).unwrap();
    assert_eq!(unverified.iss(), Some("https://evil.example/sk/1"));
    assert_eq!(unverified.sub(), Some("user-42"));
    assert_eq!(unverified.get_str("entity_type"), Some("subscriber"));
    assert!(unverified.get("nope").is_none());
    let header = peek_header(&tampered).unwrap();
    assert_eq!(header.kid.as_deref(), Some("signing_key_1"));
    // And the tampered token does not verify.
    assert_eq!(verify(&tampered, &ec_key(1).verification_key()), Err(JwtError::BadSignature));
    let none = format!("{}.{}.", encode_part(&json!({"alg": "none"})), encode_part(&claims()));
    assert_eq!(peek_header(&none).unwrap().algorithm(), None);
}

#[test]
fn sign_refuses_bad_input() {
    let pair = ec_key(6);
    assert!(matches!(
        sign(&json!([1, 2]), None, &pair.private_key_pem(), Algorithm::Es256),
        Err(CryptoError::Signing(_))
    ));
    assert!(matches!(
        sign(&claims(), None, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", Algorithm::Es256),
        Err(CryptoError::InvalidKey(_))
    ));
    // An EC key offered for RS256 and an RSA key offered for ES256.
    assert!(matches!(
        sign(&claims(), None, &pair.private_key_pem(), Algorithm::Rs256),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(
        sign(&claims(), None, &rsa_key().private_key_pem(), Algorithm::Es256),
        Err(CryptoError::InvalidKey(_))
    ));
    // A public key is not a private key.
    assert!(matches!(sign(&claims(), None, &pair.public_key_pem(), Algorithm::Es256), Err(CryptoError::InvalidKey(_))));
}

#[test]
fn verification_keys_refuse_wrong_material() {
    assert!(matches!(
        VerificationKey::from_pem(Algorithm::Es256, &rsa_key().public_key_pem()),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(
        VerificationKey::from_pem(Algorithm::Rs256, &ec_key(7).public_key_pem()),
        Err(CryptoError::InvalidKey(_))
    ));
    // A private key PEM is not a public key PEM.
    assert!(matches!(
        VerificationKey::from_pem(Algorithm::Es256, &ec_key(7).private_key_pem()),
        Err(CryptoError::InvalidKey(_))
    ));
    assert!(matches!(VerificationKey::from_pem(Algorithm::Es256, ""), Err(CryptoError::InvalidKey(_))));
    // Cheap clones share one parsed key.
    let key = ec_key(7).verification_key();
    let clone = key.clone();
    assert_eq!(key, clone);
    assert!(Arc::ptr_eq(&key.inner, &clone.inner));
    assert_eq!(format!("{key:?}"), "VerificationKey { algorithm: Es256, .. }");
}

#[test]
fn debug_of_key_pairs_contains_no_private_material() {
    let ec = ec_key(8);
    let rsa = rsa_key();
    for (debug, pem, base64) in [
        (format!("{ec:?} {ec:#?}"), ec.private_key_pem(), ec.private_key_base64()),
        (format!("{rsa:?} {rsa:#?}"), rsa.private_key_pem(), rsa.private_key_base64()),
    ] {
        assert!(debug.contains("[redacted]"));
        // No line of the PEM body, and no stretch of its base64 form.
        for line in pem.lines().filter(|line| !line.starts_with("-----")) {
            assert!(!debug.contains(line));
            assert!(!debug.contains(&line[..16]));
        }
        assert!(!debug.contains(&base64[..16]));
    }
    assert!(format!("{:?}", ec_key(8).encoding_key()).contains("redacted"));
}

#[test]
fn reasons_are_stable_snake_case() {
    let table = [
        (JwtError::Malformed, "malformed"),
        (JwtError::TooLarge, "too_large"),
        (JwtError::UnsupportedAlgorithm, "unsupported_algorithm"),
        (JwtError::AlgorithmMismatch, "algorithm_mismatch"),
        (JwtError::UnsupportedCriticalHeader, "unsupported_critical_header"),
        (JwtError::BadSignature, "bad_signature"),
        (JwtError::Expired, "expired"),
        (JwtError::NotYetValid, "not_yet_valid"),
        (JwtError::UnknownKey, "unknown_key"),
        (JwtError::MissingClaim("sub"), "missing_claim"),
        (JwtError::InvalidClaim("exp"), "invalid_claim"),
    ];
    for (error, reason) in table {
        assert_eq!(error.reason(), reason);
        assert!(!error.to_string().is_empty());
    }
    assert_eq!(JwtError::MissingClaim("sub").to_string(), "claim \"sub\" is missing");
    assert_eq!(Algorithm::from_jose_name("ES256"), Some(Algorithm::Es256));
    assert_eq!(Algorithm::from_jose_name("RS256"), Some(Algorithm::Rs256));
    assert_eq!(Algorithm::Rs256.to_string(), "RS256");
}

/// Three dot-separated segments of base64url text built from arbitrary
/// bytes, to get past the first checks more often than random text does.
fn segmented_token() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80).prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
        "[A-Za-z0-9_=+/-]{0,40}",
        Just(encode_part(&json!({"alg": "ES256", "kid": "signing_key_1"}))),
        Just(encode_part(&json!({"alg": "RS256", "crit": ["x"]}))),
        Just(encode_part(&json!({"exp": "x", "nbf": 1e300}))),
    ];
    (segment.clone(), segment.clone(), segment).prop_map(|(a, b, c)| format!("{a}.{b}.{c}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn verification_never_panics_on_arbitrary_text(
        token in prop_oneof![any::<String>(), segmented_token()],
        now in any::<i64>().prop_map(|seconds| seconds % 253_402_300_799),
    ) {
        let ec = ec_key(1).verification_key();
        let rsa = rsa_key().verification_key();
        let now = time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let _ = verify(&token, &ec);
        let _ = verify(&token, &rsa);
        let _ = peek_header(&token);
        let _ = peek_unverified_claims(&token);
        let verifier = Verifier::new([("signing_key_1".to_owned(), ec)]).unwrap();
        let _ = verifier.verify(&token, now);
    }

    #[test]
    fn verification_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let key = ec_key(1).verification_key();
        let _ = verify(&text, &key);
        let _ = peek_header(&text);
        let _ = peek_unverified_claims(&text);
    }

    #[test]
    fn jwks_parsing_never_panics(json in "\\PC{0,200}") {
        let _ = Verifier::from_jwks_json(&json);
    }
}

#[test]
fn es256_accepts_both_forms_of_s_as_openssl_produces_them() {
    // OpenSSL does not normalise ECDSA signatures to low-S, so a verifier
    // that insisted on it would reject half of OpenSSL-made tokens.
    let (pair, token) = es256_token(&claims());
    let key = pair.verification_key();
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let parsed = p256::ecdsa::Signature::from_slice(&signature).unwrap();
    let (r, s) = parsed.split_scalars();
    let negated = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
    for variant in [parsed, negated] {
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(variant.to_bytes()));
        assert!(verify(&token, &key).is_ok());
    }
    assert_ne!(parsed.to_bytes(), negated.to_bytes());
}

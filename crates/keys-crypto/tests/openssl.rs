//! Independent acceptance with the `openssl` command-line tool: our key
//! encodings parse there, its signatures verify here, ours verify there, and
//! its keys work here. JWT signing inputs and the ECDSA DER <-> JOSE
//! conversion are written out by hand, so nothing but the code under test is
//! shared between the two sides.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use keys_crypto::jwt::{verify, Algorithm, VerificationKey, Verifier};
use keys_crypto::keypair::{public_jwk_from_pem, EcKeyPair, JwkSet, RsaKeyPair};
use keys_crypto::mint::sign;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::json;
use tempfile::TempDir;
use time::OffsetDateTime;

const NOW: i64 = 1_700_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).unwrap()
}

/// Runs openssl and returns stdout; fails the test with stderr otherwise.
fn openssl(args: &[&str]) -> Vec<u8> {
    let output =
        Command::new("openssl").args(args).output().expect("the openssl command-line tool is needed for these tests");
    assert!(output.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn write(dir: &TempDir, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, contents).unwrap();
    path
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn rsa_key() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(7)))
}

fn ec_key() -> EcKeyPair {
    EcKeyPair::generate(&mut ChaCha20Rng::seed_from_u64(8))
}

fn claims() -> serde_json::Value {
    json!({"sub": "user-1", "iss": "https://versori.com/sk/01HZY", "exp": NOW + 600})
}

/// `base64url(header) . base64url(claims)`, built by hand.
fn signing_input(alg: &str, kid: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap())
    )
}

/// DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` to the
/// 64-byte `r || s` of JOSE (RFC 7518 §3.4).
fn der_to_jose(der: &[u8]) -> [u8; 64] {
    assert_eq!(der[0], 0x30, "not a DER SEQUENCE");
    assert!(der[1] < 0x80, "P-256 signatures use short-form lengths");
    assert_eq!(usize::from(der[1]), der.len() - 2);
    let mut out = [0u8; 64];
    let mut position = 2;
    for half in 0..2 {
        assert_eq!(der[position], 0x02, "not a DER INTEGER");
        let length = usize::from(der[position + 1]);
        let integer = &der[position + 2..position + 2 + length];
        let integer = integer.strip_prefix(&[0u8]).unwrap_or(integer);
        assert!(integer.len() <= 32);
        out[half * 32 + 32 - integer.len()..half * 32 + 32].copy_from_slice(integer);
        position += 2 + length;
    }
    assert_eq!(position, der.len());
    out
}

/// The reverse of [`der_to_jose`].
fn jose_to_der(jose: &[u8]) -> Vec<u8> {
    assert_eq!(jose.len(), 64);
    let mut body = Vec::new();
    for half in jose.chunks(32) {
        let first_nonzero = half.iter().position(|byte| *byte != 0).unwrap_or(31);
        let mut integer = half[first_nonzero..].to_vec();
        if integer[0] & 0x80 != 0 {
            integer.insert(0, 0);
        }
        body.push(0x02);
        body.push(u8::try_from(integer.len()).unwrap());
        body.extend_from_slice(&integer);
    }
    let mut der = vec![0x30, u8::try_from(body.len()).unwrap()];
    der.extend_from_slice(&body);
    der
}

#[test]
fn openssl_parses_our_pems_and_derives_the_same_public_key() {
    let dir = TempDir::new().unwrap();
    let ec = ec_key();
    let rsa = rsa_key();
    for (name, private_pem, public_pem) in
        [("ec", ec.private_key_pem(), ec.public_key_pem()), ("rsa", rsa.private_key_pem(), rsa.public_key_pem())]
    {
        let private_path = write(&dir, &format!("{name}.key"), private_pem.as_bytes());
        let public_path = write(&dir, &format!("{name}.pub"), public_pem.as_bytes());
        openssl(&["pkey", "-in", text(&private_path), "-noout"]);
        openssl(&["pkey", "-pubin", "-in", text(&public_path), "-noout"]);
        // openssl's idea of our private key's public half is our public PEM,
        // byte for byte.
        let derived = openssl(&["pkey", "-in", text(&private_path), "-pubout"]);
        assert_eq!(String::from_utf8(derived).unwrap(), public_pem);
    }
    let description = openssl(&["pkey", "-in", text(&dir.path().join("rsa.key")), "-noout", "-text"]);
    assert!(String::from_utf8_lossy(&description).contains("Private-Key: (2048 bit"));
    let description = openssl(&["pkey", "-in", text(&dir.path().join("ec.key")), "-noout", "-text"]);
    assert!(String::from_utf8_lossy(&description).contains("prime256v1"));
}

#[test]
fn openssl_signatures_verify_here_and_ours_verify_there() {
    let dir = TempDir::new().unwrap();
    let ec = ec_key();
    let rsa = rsa_key();
    let cases: [(&str, Algorithm, zeroize::Zeroizing<String>, String); 2] = [
        ("ES256", Algorithm::Es256, ec.private_key_pem(), ec.public_key_pem()),
        ("RS256", Algorithm::Rs256, rsa.private_key_pem(), rsa.public_key_pem()),
    ];
    for (alg, algorithm, private_pem, public_pem) in cases {
        let private_path = write(&dir, &format!("{alg}.key"), private_pem.as_bytes());
        let public_path = write(&dir, &format!("{alg}.pub"), public_pem.as_bytes());
        let key = VerificationKey::from_pem(algorithm, &public_pem).unwrap();

        // openssl signs, we verify.
        let input = signing_input(alg, "kid-1");
        let input_path = write(&dir, &format!("{alg}.input"), input.as_bytes());
        let signature = openssl(&["dgst", "-sha256", "-sign", text(&private_path), text(&input_path)]);
        let jose_signature = match algorithm {
            Algorithm::Es256 => der_to_jose(&signature).to_vec(),
            Algorithm::Rs256 => signature,
        };
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&jose_signature));
        let verified = verify(&token, &key).unwrap();
        assert_eq!(verified.sub(), Some("user-1"));
        // And the same token with one payload byte changed does not.
        let tampered = token.replacen(".eyJ", ".eyK", 1);
        assert!(verify(&tampered, &key).is_err());

        // We sign, openssl verifies.
        let token = sign(&claims(), Some("kid-2"), &private_pem, algorithm).unwrap();
        let (our_input, our_signature) = token.rsplit_once('.').unwrap();
        let our_signature = URL_SAFE_NO_PAD.decode(our_signature).unwrap();
        let der_signature = match algorithm {
            Algorithm::Es256 => jose_to_der(&our_signature),
            Algorithm::Rs256 => our_signature,
        };
        let our_input_path = write(&dir, &format!("{alg}.ours"), our_input.as_bytes());
        let signature_path = write(&dir, &format!("{alg}.sig"), &der_signature);
        let verdict = openssl(&[
            "dgst",
            "-sha256",
            "-verify",
            text(&public_path),
            "-signature",
            text(&signature_path),
            text(&our_input_path),
        ]);
        assert_eq!(String::from_utf8_lossy(&verdict).trim(), "Verified OK");
    }
}

#[test]
fn keys_generated_by_openssl_work_here() {
    let dir = TempDir::new().unwrap();
    let ec_path = dir.path().join("ec.key");
    let rsa_path = dir.path().join("rsa.key");
    openssl(&["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", text(&ec_path)]);
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", text(&rsa_path)]);

    let mut jwks = JwkSet::default();
    for (path, algorithm, kid) in [(&ec_path, Algorithm::Es256, "ec-1"), (&rsa_path, Algorithm::Rs256, "rsa-1")] {
        let private_pem = fs::read_to_string(path).unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public_pem = String::from_utf8(openssl(&["pkey", "-in", text(path), "-pubout"])).unwrap();

        // Our parsers accept openssl's private key and agree on its public half.
        let our_public_pem = match algorithm {
            Algorithm::Es256 => EcKeyPair::from_pkcs8_pem(&private_pem).unwrap().public_key_pem(),
            Algorithm::Rs256 => RsaKeyPair::from_pkcs8_pem(&private_pem).unwrap().public_key_pem(),
        };
        assert_eq!(our_public_pem, public_pem);

        // Sign here with openssl's key; verify with its public PEM.
        let key = VerificationKey::from_pem(algorithm, &public_pem).unwrap();
        let token = sign(&claims(), Some(kid), &private_pem, algorithm).unwrap();
        assert!(verify(&token, &key).is_ok());

        // openssl signs with its own key; verify here.
        let input = signing_input(algorithm.as_str(), kid);
        let input_path = write(&dir, &format!("{kid}.input"), input.as_bytes());
        let signature = openssl(&["dgst", "-sha256", "-sign", text(path), text(&input_path)]);
        let signature = match algorithm {
            Algorithm::Es256 => der_to_jose(&signature).to_vec(),
            Algorithm::Rs256 => signature,
        };
        let openssl_token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
        assert!(verify(&openssl_token, &key).is_ok());

        jwks.keys.push(public_jwk_from_pem(algorithm, &public_pem, kid).unwrap());
    }

    // JWKS built from openssl's public PEMs verifies tokens of both keys.
    let verifier = Verifier::from_jwks_json(&serde_json::to_string(&jwks).unwrap()).unwrap();
    for (path, algorithm, kid) in [(&ec_path, Algorithm::Es256, "ec-1"), (&rsa_path, Algorithm::Rs256, "rsa-1")] {
        let private_pem = fs::read_to_string(path).unwrap();
        let token = sign(&claims(), Some(kid), &private_pem, algorithm).unwrap();
        assert_eq!(verifier.verify(&token, now()).unwrap().sub(), Some("user-1"));
    }

    // The PKCS#1 form of the RSA public key is accepted too.
    let pkcs1 = String::from_utf8(openssl(&["rsa", "-in", text(&rsa_path), "-RSAPublicKey_out"])).unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PUBLIC KEY-----"));
    let from_pkcs1 = VerificationKey::from_pem(Algorithm::Rs256, &pkcs1).unwrap();
    let spki = String::from_utf8(openssl(&["pkey", "-in", text(&rsa_path), "-pubout"])).unwrap();
    assert_eq!(from_pkcs1, VerificationKey::from_pem(Algorithm::Rs256, &spki).unwrap());
}

#[test]
fn openssl_rsa_4096_signatures_verify_here() {
    // 4096 bits is the largest modulus our key policy accepts; the verifier
    // must handle the whole range, not only the 2048 bits we generate.
    let dir = TempDir::new().unwrap();
    let key_path = dir.path().join("rsa4096.key");
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096", "-out", text(&key_path)]);
    let public_pem = String::from_utf8(openssl(&["pkey", "-in", text(&key_path), "-pubout"])).unwrap();
    let key = VerificationKey::from_pem(Algorithm::Rs256, &public_pem).unwrap();
    let input = signing_input("RS256", "rsa-4096");
    let input_path = write(&dir, "rsa4096.input", input.as_bytes());
    let signature = openssl(&["dgst", "-sha256", "-sign", text(&key_path), text(&input_path)]);
    assert_eq!(signature.len(), 512);
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&signature));
    assert_eq!(verify(&token, &key).unwrap().sub(), Some("user-1"));
    let tampered = token.replacen(".eyJ", ".eyK", 1);
    assert!(verify(&tampered, &key).is_err());
}

#[test]
fn der_jose_conversion_round_trips() {
    // High bits set in both halves (needs the 0x00 pad) and leading zeros.
    let mut jose = [0u8; 64];
    jose[0] = 0x80;
    jose[31] = 1;
    jose[32] = 0;
    jose[33] = 0x7f;
    jose[63] = 9;
    let der = jose_to_der(&jose);
    assert_eq!(der[3], 33);
    assert_eq!(der_to_jose(&der), jose);
}

//! GitHub secret scanning's partner program: the keys GitHub signs its
//! alerts with ([`GithubKeySet`]) and the check of an alert's signature
//! ([`GithubKeySet::verify`]). What keysd does with an alert, and the
//! endpoint that receives it, are described in docs/API.md.
//!
//! GitHub signs the raw bytes of each alert body with ECDSA on P-256 over
//! SHA-256, sends the ASN.1 DER signature in standard base64 and names the
//! key that made it; it publishes its keys as SPKI PEM in a JSON file
//! (`{"public_keys": [{"key_identifier", "key", "is_current"}]}`). The
//! signature is checked over the body exactly as received: an alert parsed
//! and serialised again would not verify.
//!
//! These are public keys and GitHub's own signatures, so the error messages
//! may name key identifiers; they still never quote a key or a body.
//!
//! [`GithubTestSigner`] signs the way GitHub does, so that tests of the
//! crates above can build signed alerts. It is public because keys-crypto
//! has no test-only feature; it only ever holds a key it made itself.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rand_core::{CryptoRng, RngCore};

/// The JSON file as GitHub publishes it. Fields this crate does not read
/// (`is_current`, and whatever GitHub adds later) are ignored.
#[derive(serde::Deserialize)]
struct KeyFile {
    public_keys: Vec<KeyEntry>,
}

#[derive(serde::Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
}

/// Why a key file cannot be used. Messages are one short line; a key is
/// named by its identifier once that is known to be short and printable,
/// by its position before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GithubKeysError {
    #[error("the key file has {bytes} bytes, more than the {} allowed", GithubKeySet::MAX_FILE_BYTES)]
    TooLarge { bytes: usize },
    #[error("not valid JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("not GitHub's key file, {{\"public_keys\": [{{\"key_identifier\", \"key\"}}, ...]}} (line {line}, column {column})")]
    WrongShape { line: usize, column: usize },
    #[error("{count} keys, more than the {} allowed", GithubKeySet::MAX_KEYS)]
    TooManyKeys { count: usize },
    #[error("public_keys[{position}]: key_identifier must be 1 to 256 printable ASCII characters")]
    BadIdentifier { position: usize },
    #[error("key {identifier}: listed twice")]
    DuplicateIdentifier { identifier: String },
    #[error("key {identifier}: not a P-256 public key in SPKI PEM (-----BEGIN PUBLIC KEY-----)")]
    NotP256 { identifier: String },
}

/// The keys GitHub signs alerts with, by identifier.
#[derive(Clone)]
pub struct GithubKeySet {
    keys: BTreeMap<String, VerifyingKey>,
}

impl GithubKeySet {
    /// The largest key file read: GitHub's holds a few keys of under
    /// 300 bytes each, so this only stops a wrong file early.
    pub const MAX_FILE_BYTES: usize = 1024 * 1024;
    /// The most keys a file may list.
    pub const MAX_KEYS: usize = 64;
    /// The longest key identifier (GitHub's are 64 hex digits).
    pub const MAX_IDENTIFIER_CHARS: usize = 256;
    /// The longest signature text accepted: a DER P-256 signature has at
    /// most 72 bytes, 96 in base64, so a longer header is refused before
    /// it is decoded.
    pub const MAX_SIGNATURE_CHARS: usize = 128;

    /// Parses GitHub's key file. Every key must be a P-256 SPKI PEM; one
    /// that is not refuses the whole file, since a half-read file would
    /// refuse the alerts of the keys it dropped without saying why.
    pub fn from_json(bytes: &[u8]) -> Result<Self, GithubKeysError> {
        if bytes.len() > Self::MAX_FILE_BYTES {
            return Err(GithubKeysError::TooLarge { bytes: bytes.len() });
        }
        // serde_json's own messages may quote a value (a whole PEM, say):
        // only the kind of error and its place are kept.
        let file: KeyFile = serde_json::from_slice(bytes).map_err(|error| {
            let (line, column) = (error.line(), error.column());
            match error.classify() {
                serde_json::error::Category::Data => GithubKeysError::WrongShape { line, column },
                _ => GithubKeysError::NotJson { line, column },
            }
        })?;
        if file.public_keys.len() > Self::MAX_KEYS {
            return Err(GithubKeysError::TooManyKeys { count: file.public_keys.len() });
        }
        let mut keys = BTreeMap::new();
        for (position, entry) in file.public_keys.into_iter().enumerate() {
            let identifier = entry.key_identifier;
            if !is_identifier(&identifier) {
                return Err(GithubKeysError::BadIdentifier { position });
            }
            if keys.contains_key(&identifier) {
                return Err(GithubKeysError::DuplicateIdentifier { identifier });
            }
            // The SPKI decoder checks the algorithm and the curve, so an
            // RSA key or an EC key on another curve is refused here.
            let Ok(key) = VerifyingKey::from_public_key_pem(entry.key.trim()) else {
                return Err(GithubKeysError::NotP256 { identifier });
            };
            keys.insert(identifier, key);
        }
        Ok(Self { keys })
    }

    /// How many keys the file listed.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the file listed no key (then every alert is refused as
    /// signed by an unknown key).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key identifiers, in byte order.
    pub fn identifiers(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.keys().map(String::as_str)
    }

    /// Checks an alert: `identifier` and `signature_base64` are the values
    /// of GitHub's `Github-Public-Key-Identifier` and
    /// `Github-Public-Key-Signature` headers (`None` when absent; an empty
    /// value counts as absent), `body` the raw request body. Any key of the
    /// file verifies, not only the current one: the identifier names the
    /// key that signed, and alerts signed just before a rotation still
    /// arrive after it.
    pub fn verify(
        &self,
        identifier: Option<&str>,
        signature_base64: Option<&str>,
        body: &[u8],
    ) -> Result<(), AlertSignatureRejection> {
        let identifier =
            identifier.filter(|value| !value.is_empty()).ok_or(AlertSignatureRejection::MissingIdentifier)?;
        let signature_base64 =
            signature_base64.filter(|value| !value.is_empty()).ok_or(AlertSignatureRejection::MissingSignature)?;
        let key = self.keys.get(identifier).ok_or(AlertSignatureRejection::UnknownIdentifier)?;
        let signature = parse_signature(signature_base64)?;
        // `Verifier<Signature>` hashes the message with the curve's digest,
        // SHA-256 for P-256 (`DigestPrimitive for NistP256`), which is what
        // GitHub signs; the test with GitHub's published sample holds it.
        key.verify(body, &signature).map_err(|_| AlertSignatureRejection::BadSignature)
    }
}

impl fmt::Debug for GithubKeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubKeySet").field("identifiers", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

fn is_identifier(candidate: &str) -> bool {
    (1..=GithubKeySet::MAX_IDENTIFIER_CHARS).contains(&candidate.len())
        && candidate.bytes().all(|byte| byte.is_ascii_graphic())
}

/// Base64 (standard alphabet, padded) of an ASN.1 DER signature, with its
/// `s` made low.
fn parse_signature(text: &str) -> Result<Signature, AlertSignatureRejection> {
    if text.len() > GithubKeySet::MAX_SIGNATURE_CHARS {
        return Err(AlertSignatureRejection::MalformedSignature);
    }
    let der = STANDARD.decode(text).map_err(|_| AlertSignatureRejection::MalformedSignature)?;
    let signature = Signature::from_der(&der).map_err(|_| AlertSignatureRejection::MalformedSignature)?;
    // GitHub's signer does not normalise `s`, and (r, s) verifies exactly
    // when (r, n - s) does. p256 0.13 accepts a high `s` as it is, but
    // other ECDSA verifiers (k256's among them) refuse one, so it is made
    // low here rather than left to the verifier's policy.
    Ok(signature.normalize_s().unwrap_or(signature))
}

/// Why an alert's signature is refused. Checked in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum AlertSignatureRejection {
    /// No key identifier came with the alert.
    #[error("the alert names no signing key")]
    MissingIdentifier,
    /// No signature came with the alert.
    #[error("the alert has no signature")]
    MissingSignature,
    /// The identifier is not in GitHub's key file.
    #[error("the alert names a signing key GitHub does not list")]
    UnknownIdentifier,
    /// The signature is not base64 of an ASN.1 DER ECDSA signature on
    /// P-256, or is longer than [`GithubKeySet::MAX_SIGNATURE_CHARS`].
    #[error("the alert's signature is not a base64 DER ECDSA signature")]
    MalformedSignature,
    /// A well-formed signature that the named key did not make over this
    /// body.
    #[error("the alert's signature does not match its body")]
    BadSignature,
}

impl AlertSignatureRejection {
    /// Every reason, in the order they are checked.
    pub const ALL: [Self; 5] = [
        Self::MissingIdentifier,
        Self::MissingSignature,
        Self::UnknownIdentifier,
        Self::MalformedSignature,
        Self::BadSignature,
    ];

    /// A short, stable, snake_case name for API responses and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::MissingIdentifier => "missing_identifier",
            Self::MissingSignature => "missing_signature",
            Self::UnknownIdentifier => "unknown_identifier",
            Self::MalformedSignature => "malformed_signature",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// Signs alert bodies the way GitHub does, with a P-256 key of its own, and
/// writes the key file GitHub would publish for it: for tests that need a
/// signed alert.
///
/// Not `Clone`; redacted in `Debug`; the secret scalar is zeroized on drop
/// (by `p256`'s `SigningKey`).
pub struct GithubTestSigner {
    signing_key: SigningKey,
}

impl GithubTestSigner {
    /// A signer with a fresh key from the given cryptographically secure
    /// RNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self { signing_key: SigningKey::random(rng) }
    }

    /// The public key as SPKI PEM, as GitHub lists it.
    pub fn public_key_pem(&self) -> String {
        // Invariant: a `VerifyingKey` is a valid point, and SPKI encoding of
        // it only writes DER into a buffer; it has no failure mode.
        self.signing_key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("SPKI encoding of a P-256 public key cannot fail")
    }

    /// GitHub's key file listing this key, current, under `identifier`.
    pub fn key_set_json(&self, identifier: &str) -> String {
        serde_json::json!({
            "public_keys": [{
                "key_identifier": identifier,
                "key": self.public_key_pem(),
                "is_current": true,
            }]
        })
        .to_string()
    }

    /// The signature GitHub would send for `body`: ECDSA P-256 over its
    /// SHA-256, ASN.1 DER, standard base64 with padding. `s` is left as the
    /// signer makes it, high about half of the time, as GitHub's is.
    pub fn sign(&self, body: &[u8]) -> String {
        let signature: Signature = self.signing_key.sign(body);
        STANDARD.encode(signature.to_der().as_bytes())
    }
}

impl fmt::Debug for GithubTestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubTestSigner").field("private_key", &"[redacted]").finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::test_support::{rsa_key, seeded};

    use p256::elliptic_curve::scalar::IsHigh;

    /// GitHub's published sample (docs.github.com, "Secret scanning
    /// partner program", "Implement signature verification"): a key of its
    /// key file, an alert body and its signature, made by GitHub's signer
    /// and checked with `openssl dgst -sha256 -verify`.
    const SAMPLE_IDENTIFIER: &str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";
    const SAMPLE_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAd\nAjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==\n-----END PUBLIC KEY-----\n";
    const SAMPLE_BODY: &[u8] =
        br#"[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]"#;
    const SAMPLE_SIGNATURE: &str =
        "MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4XaeSt/AO1RtBY66YcAdjxji410VQV4xg==";

    /// A secp256k1 public key (`openssl ecparam -name secp256k1`): an EC
    /// key of the same size on another curve.
    const SECP256K1_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFYwEAYHKoZIzj0CAQYFK4EEAAoDQgAEEL/SuHE59wGplWrH6qc0xMwkv71MSl5g\napkHMrpD/89K9vQKtf+bzyfvNQyMkxW0mSKtRe8UYeitPZpjcCWSNg==\n-----END PUBLIC KEY-----\n";

    const BODY: &[u8] =
        br#"[{"token":"SS.example","type":"keysd_api_key","url":"https://github.com/o/r/blob/x","source":"content"}]"#;

    fn signer(seed: u64) -> GithubTestSigner {
        GithubTestSigner::generate(&mut seeded(seed))
    }

    fn key_set(signer: &GithubTestSigner, identifier: &str) -> GithubKeySet {
        GithubKeySet::from_json(signer.key_set_json(identifier).as_bytes()).unwrap()
    }

    fn file_of(entries: &[(&str, &str)]) -> String {
        let keys: Vec<_> = entries
            .iter()
            .map(|(identifier, key)| serde_json::json!({"key_identifier": identifier, "key": key, "is_current": false}))
            .collect();
        serde_json::json!({ "public_keys": keys }).to_string()
    }

    fn der_of(signature_base64: &str) -> Vec<u8> {
        STANDARD.decode(signature_base64).unwrap()
    }

    #[test]
    fn githubs_published_sample_verifies() {
        let file = file_of(&[(SAMPLE_IDENTIFIER, SAMPLE_KEY)]);
        let keys = GithubKeySet::from_json(file.as_bytes()).unwrap();
        assert_eq!(keys.verify(Some(SAMPLE_IDENTIFIER), Some(SAMPLE_SIGNATURE), SAMPLE_BODY), Ok(()));
        // The same body parsed and written again (spaces after the
        // separators) is another message.
        let reserialised = String::from_utf8(SAMPLE_BODY.to_vec()).unwrap().replace(",\"", ", \"");
        assert_eq!(
            keys.verify(Some(SAMPLE_IDENTIFIER), Some(SAMPLE_SIGNATURE), reserialised.as_bytes()),
            Err(AlertSignatureRejection::BadSignature)
        );
    }

    #[test]
    fn a_good_signature_verifies_and_a_changed_byte_does_not() {
        let signer = signer(1);
        let keys = key_set(&signer, "k1");
        let signature = signer.sign(BODY);
        assert_eq!(keys.verify(Some("k1"), Some(&signature), BODY), Ok(()));
        for index in [0, BODY.len() / 2, BODY.len() - 1] {
            let mut changed = BODY.to_vec();
            changed[index] ^= 0x01;
            assert_eq!(
                keys.verify(Some("k1"), Some(&signature), &changed),
                Err(AlertSignatureRejection::BadSignature),
                "byte {index}"
            );
        }
        let mut longer = BODY.to_vec();
        longer.push(b'\n');
        assert_eq!(keys.verify(Some("k1"), Some(&signature), &longer), Err(AlertSignatureRejection::BadSignature));
        assert_eq!(keys.verify(Some("k1"), Some(&signature), b""), Err(AlertSignatureRejection::BadSignature));
    }

    #[test]
    fn the_test_signer_signs_as_an_independent_verifier_expects() {
        // ring's ECDSA_P256_SHA256_ASN1 is another implementation of exactly
        // what GitHub sends: DER, over SHA-256 of the message.
        let signer = signer(2);
        let der = der_of(&signer.sign(BODY));
        let point = signer.signing_key.verifying_key().to_encoded_point(false);
        let public_key =
            ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point.as_bytes());
        assert!(public_key.verify(BODY, &der).is_ok());
        assert!(public_key.verify(b"another body", &der).is_err());
        // And the key file it writes is one GitHub's parser would read:
        // the PEM of SPKI with LF line endings, current.
        let file: serde_json::Value = serde_json::from_str(&signer.key_set_json("abc")).unwrap();
        assert_eq!(file["public_keys"][0]["key_identifier"], "abc");
        assert_eq!(file["public_keys"][0]["is_current"], true);
        assert!(file["public_keys"][0]["key"].as_str().unwrap().starts_with("-----BEGIN PUBLIC KEY-----\n"));
    }

    #[test]
    fn a_signature_of_another_key_is_refused() {
        let listed = signer(3);
        let other = signer(4);
        let keys = key_set(&listed, "k1");
        assert_eq!(keys.verify(Some("k1"), Some(&other.sign(BODY)), BODY), Err(AlertSignatureRejection::BadSignature));
    }

    #[test]
    fn an_identifier_not_listed_is_refused() {
        let signer = signer(5);
        let keys = key_set(&signer, "k1");
        let signature = signer.sign(BODY);
        assert_eq!(keys.verify(Some("k2"), Some(&signature), BODY), Err(AlertSignatureRejection::UnknownIdentifier));
        assert_eq!(keys.verify(Some("K1"), Some(&signature), BODY), Err(AlertSignatureRejection::UnknownIdentifier));
        // Any listed key verifies, current or not.
        let file = file_of(&[("old", &signer.public_key_pem()), (SAMPLE_IDENTIFIER, SAMPLE_KEY)]);
        let keys = GithubKeySet::from_json(file.as_bytes()).unwrap();
        assert_eq!(keys.verify(Some("old"), Some(&signature), BODY), Ok(()));
    }

    #[test]
    fn missing_headers_are_refused_first() {
        let signer = signer(6);
        let keys = key_set(&signer, "k1");
        let signature = signer.sign(BODY);
        let refused = |identifier, signature| keys.verify(identifier, signature, BODY).unwrap_err();
        assert_eq!(refused(None, Some(signature.as_str())), AlertSignatureRejection::MissingIdentifier);
        assert_eq!(refused(Some(""), Some(signature.as_str())), AlertSignatureRejection::MissingIdentifier);
        assert_eq!(refused(None, None), AlertSignatureRejection::MissingIdentifier);
        assert_eq!(refused(Some("k1"), None), AlertSignatureRejection::MissingSignature);
        assert_eq!(refused(Some("k1"), Some("")), AlertSignatureRejection::MissingSignature);
        assert_eq!(refused(Some("unknown"), None), AlertSignatureRejection::MissingSignature);
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let signer = signer(7);
        let keys = key_set(&signer, "k1");
        let signature = signer.sign(BODY);
        let der = der_of(&signature);
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode(&der);
        let unpadded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&der);
        let truncated = STANDARD.encode(&der[..der.len() - 1]);
        let trailing = STANDARD.encode([der.as_slice(), &[0]].concat());
        let raw_r_s = STANDARD.encode(Signature::from_der(&der).unwrap().to_bytes());
        let too_long = format!("{signature}{}", "A".repeat(GithubKeySet::MAX_SIGNATURE_CHARS));
        let cases = [
            "not base64!",
            &signature[1..],
            &format!(" {signature}"),
            &unpadded,
            &truncated,
            &trailing,
            &raw_r_s,
            &too_long,
            "MAYCAQACAQA=",
        ];
        for case in cases {
            assert_eq!(
                keys.verify(Some("k1"), Some(case), BODY),
                Err(AlertSignatureRejection::MalformedSignature),
                "{case}"
            );
        }
        // The url-safe alphabet differs from the standard one only where
        // the signature has a '+' or a '/'.
        if url_safe != signature {
            assert_eq!(
                keys.verify(Some("k1"), Some(&url_safe), BODY),
                Err(AlertSignatureRejection::MalformedSignature)
            );
        }
    }

    #[test]
    fn a_high_s_signature_verifies_like_its_low_s_twin() {
        let signer = signer(8);
        let keys = key_set(&signer, "k1");
        let signature = Signature::from_der(&der_of(&signer.sign(BODY))).unwrap();
        let (r, s) = signature.split_scalars();
        let twin = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let (high, low) = if bool::from(s.is_high()) { (signature, twin) } else { (twin, signature) };
        assert!(bool::from(high.s().is_high()) && !bool::from(low.s().is_high()));
        for variant in [high, low] {
            let text = STANDARD.encode(variant.to_der().as_bytes());
            assert_eq!(keys.verify(Some("k1"), Some(&text), BODY), Ok(()));
        }
        // A high `s` that is not the twin of a valid one still fails.
        let wrong = Signature::from_scalars(r.to_bytes(), (-(*s + p256::Scalar::ONE)).to_bytes()).unwrap();
        let text = STANDARD.encode(wrong.to_der().as_bytes());
        assert_eq!(keys.verify(Some("k1"), Some(&text), BODY), Err(AlertSignatureRejection::BadSignature));
    }

    #[test]
    fn the_signer_leaves_s_as_it_comes_like_github() {
        // Over a few bodies, both a high and a low `s` appear: the signer
        // does not normalise, so the verifier's acceptance of high `s` is
        // exercised by every test that signs.
        let signer = signer(9);
        let highs: Vec<bool> = (0..32_u8)
            .map(|index| {
                let signature = Signature::from_der(&der_of(&signer.sign(&[index]))).unwrap();
                bool::from(signature.s().is_high())
            })
            .collect();
        assert!(highs.contains(&true) && highs.contains(&false), "{highs:?}");
    }

    #[test]
    fn the_file_is_bounded() {
        let signer = signer(10);
        let pem = signer.public_key_pem();
        // At most MAX_FILE_BYTES, whitespace included.
        let file = file_of(&[("k1", &pem)]);
        let padded = format!("{file}{}", " ".repeat(GithubKeySet::MAX_FILE_BYTES - file.len()));
        assert_eq!(GithubKeySet::from_json(padded.as_bytes()).unwrap().len(), 1);
        let over = format!("{padded} ");
        assert_eq!(
            GithubKeySet::from_json(over.as_bytes()).unwrap_err(),
            GithubKeysError::TooLarge { bytes: GithubKeySet::MAX_FILE_BYTES + 1 }
        );
        // At most MAX_KEYS keys.
        let identifiers: Vec<String> = (0..=GithubKeySet::MAX_KEYS).map(|index| format!("k{index}")).collect();
        let pems: Vec<String> = (0..=GithubKeySet::MAX_KEYS as u64).map(|seed| signer_pem(100 + seed)).collect();
        let entries: Vec<(&str, &str)> =
            identifiers.iter().zip(&pems).map(|(identifier, pem)| (identifier.as_str(), pem.as_str())).collect();
        let full = GithubKeySet::from_json(file_of(&entries[..GithubKeySet::MAX_KEYS]).as_bytes()).unwrap();
        assert_eq!(full.len(), GithubKeySet::MAX_KEYS);
        assert_eq!(
            GithubKeySet::from_json(file_of(&entries).as_bytes()).unwrap_err(),
            GithubKeysError::TooManyKeys { count: GithubKeySet::MAX_KEYS + 1 }
        );
    }

    fn signer_pem(seed: u64) -> String {
        signer(seed).public_key_pem()
    }

    #[test]
    fn identifiers_are_1_to_256_printable_ascii_and_unique() {
        let pem = signer_pem(11);
        let longest = "x".repeat(GithubKeySet::MAX_IDENTIFIER_CHARS);
        let keys = GithubKeySet::from_json(file_of(&[(&longest, &pem), ("!~", &pem)]).as_bytes()).unwrap();
        assert_eq!(keys.identifiers().collect::<Vec<_>>(), ["!~", longest.as_str()]);
        for (position, bad) in ["", &"x".repeat(257), "a b", "a\tb", "clé"].into_iter().enumerate() {
            let file = file_of(&[("good", &pem), (bad, &pem)]);
            assert_eq!(
                GithubKeySet::from_json(file.as_bytes()).unwrap_err(),
                GithubKeysError::BadIdentifier { position: 1 },
                "case {position}"
            );
        }
        assert_eq!(
            GithubKeySet::from_json(file_of(&[("k1", &pem), ("k1", &pem)]).as_bytes()).unwrap_err(),
            GithubKeysError::DuplicateIdentifier { identifier: "k1".to_owned() }
        );
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let pem = signer_pem(12);
        let file = serde_json::json!({
            "public_keys": [{
                "key_identifier": "k1",
                "key": pem,
                "is_current": true,
                "algorithm": "ecdsa-sha256",
                "created_at": "2024-01-01T00:00:00Z",
                "nested": {"anything": [1, 2, 3]},
            }],
            "next_rotation": null,
            "documentation_url": "https://docs.github.com/",
        });
        let keys = GithubKeySet::from_json(file.to_string().as_bytes()).unwrap();
        assert_eq!(keys.identifiers().collect::<Vec<_>>(), ["k1"]);
        // And an empty list is a file without keys, which refuses every alert.
        let empty = GithubKeySet::from_json(br#"{"public_keys": []}"#).unwrap();
        assert!(empty.is_empty());
        assert_eq!(empty.verify(Some("k1"), Some("MAA="), BODY), Err(AlertSignatureRejection::UnknownIdentifier));
    }

    #[test]
    fn keys_other_than_p256_spki_pem_are_refused_by_identifier() {
        let p256_pair = crate::keypair::EcKeyPair::generate(&mut seeded(13));
        let private_pem = p256_pair.private_key_pem();
        let rsa_pem = rsa_key().public_key_pem();
        for (name, key) in [
            ("rsa", rsa_pem.as_str()),
            ("secp256k1", SECP256K1_KEY),
            ("private", private_pem.as_str()),
            ("garbage", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            ("empty", ""),
        ] {
            let file = file_of(&[("good", &p256_pair.public_key_pem()), (name, key)]);
            let error = GithubKeySet::from_json(file.as_bytes()).unwrap_err();
            assert_eq!(error, GithubKeysError::NotP256 { identifier: name.to_owned() });
            assert!(error.to_string().starts_with(&format!("key {name}: ")), "{error}");
        }
        // A CRLF PEM, or one with blank lines around it, is the same key.
        let crlf = p256_pair.public_key_pem().replace('\n', "\r\n");
        let padded = format!("\n{}\n\n", p256_pair.public_key_pem());
        assert_eq!(GithubKeySet::from_json(file_of(&[("a", &crlf), ("b", &padded)]).as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn files_that_are_not_githubs_are_refused_without_quoting_them() {
        let pem = signer_pem(14);
        let refused = |text: &str| GithubKeySet::from_json(text.as_bytes()).unwrap_err();
        assert!(matches!(refused("{"), GithubKeysError::NotJson { .. }));
        assert!(matches!(refused(""), GithubKeysError::NotJson { .. }));
        assert!(matches!(refused("[]"), GithubKeysError::WrongShape { .. }));
        assert!(matches!(refused("{}"), GithubKeysError::WrongShape { .. }));
        let key_as_list = format!(r#"{{"public_keys": {}}}"#, serde_json::Value::String(pem.clone()));
        let error = refused(&key_as_list);
        assert!(matches!(error, GithubKeysError::WrongShape { line: 1, .. }), "{error:?}");
        assert!(!error.to_string().contains("MF"), "{error}");
        let missing_key = r#"{"public_keys": [{"key_identifier": "k1"}]}"#;
        assert!(matches!(refused(missing_key), GithubKeysError::WrongShape { .. }));
    }

    #[test]
    fn rejections_have_stable_names() {
        let names: Vec<&str> = AlertSignatureRejection::ALL.iter().map(|rejection| rejection.as_str()).collect();
        assert_eq!(
            names,
            ["missing_identifier", "missing_signature", "unknown_identifier", "malformed_signature", "bad_signature"]
        );
        for rejection in AlertSignatureRejection::ALL {
            assert!(!rejection.to_string().is_empty());
        }
    }

    #[test]
    fn debug_shows_identifiers_and_never_the_private_key() {
        let signer = signer(15);
        let keys = key_set(&signer, "k1");
        assert_eq!(format!("{keys:?}"), r#"GithubKeySet { identifiers: ["k1"] }"#);
        assert_eq!(format!("{signer:?}"), r#"GithubTestSigner { private_key: "[redacted]" }"#);
    }
}

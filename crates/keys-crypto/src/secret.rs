//! Secret formats: API keys, service tokens and publishable keys.
//!
//! All three share one shape, in the style of GitHub's tokens: a fixed,
//! recognisable prefix, then 43 characters of the base64url alphabet
//! (`A-Za-z0-9-_`) of which the first 37 are random (6 bits each, 222 bits
//! of entropy) and the last 6 are a checksum: the CRC32 of everything before
//! it (prefix included), written as 6 base64url digits, most significant
//! first (36 bits, the top 4 always zero).
//!
//! | type | prefix | total length |
//! |---|---|---|
//! | [`ApiKeySecret`] | `SS.` | 46 |
//! | [`ServiceToken`] | `kst_` | 47 |
//! | [`PublicKeyValue`] | `SS.PUBK.` | 51 |
//!
//! The checksum is not a security measure (it is public and forgeable); it
//! lets `parse` reject typos, truncations and foreign strings offline, before
//! any storage lookup, and lets secret scanners recognise real keys. CRC32
//! detects every single-character substitution, because a substitution
//! within one byte is a burst error shorter than 32 bits.
//!
//! Storage keeps only [`SecretDigest`] = SHA-256 of the full text.

use std::fmt;
use std::marker::PhantomData;

use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::CryptoError;

pub use keys_core::SecretDigest;

/// The base64url alphabet (RFC 4648 §5), indexed by 6-bit value.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Random characters after the prefix.
const RANDOM_CHARS: usize = 37;
/// Checksum characters at the end.
const CHECKSUM_CHARS: usize = 6;
/// Characters after the prefix.
const BODY_CHARS: usize = RANDOM_CHARS + CHECKSUM_CHARS;

/// Why a presented string is not a well-formed secret of the expected kind.
/// Checked in this order, so the first failing property is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretRejection {
    /// It does not start with the prefix of the expected kind.
    WrongPrefix,
    /// It has the right prefix but not the right length.
    WrongLength,
    /// A character after the prefix is outside the base64url alphabet.
    InvalidCharacter,
    /// The last 6 characters are not the checksum of the rest.
    BadChecksum,
}

impl SecretRejection {
    /// A short, stable, snake_case name for API responses and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WrongPrefix => "wrong_prefix",
            Self::WrongLength => "wrong_length",
            Self::InvalidCharacter => "invalid_character",
            Self::BadChecksum => "bad_checksum",
        }
    }
}

impl fmt::Display for SecretRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongPrefix => "wrong prefix",
            Self::WrongLength => "wrong length",
            Self::InvalidCharacter => "character outside the base64url alphabet",
            Self::BadChecksum => "checksum mismatch",
        })
    }
}

impl From<SecretRejection> for CryptoError {
    fn from(rejection: SecretRejection) -> Self {
        CryptoError::InvalidSecret(rejection)
    }
}

/// SHA-256 of arbitrary bytes, as the digest type storage keeps.
pub fn sha256_digest(bytes: &[u8]) -> SecretDigest {
    SecretDigest::from_bytes(Sha256::digest(bytes).into())
}

/// Compares two digests in constant time. Lookups by digest do not need it
/// (the digest of a guess reveals nothing useful), but a caller comparing a
/// presented secret against one known digest should not leak, through
/// timing, how many leading bytes matched.
pub fn digests_match(left: &SecretDigest, right: &SecretDigest) -> bool {
    left.as_bytes().ct_eq(right.as_bytes()).into()
}

/// One prefixed, checksummed format.
struct Format {
    prefix: &'static str,
}

impl Format {
    const fn total_len(&self) -> usize {
        self.prefix.len() + BODY_CHARS
    }

    fn generate<R: RngCore + CryptoRng>(&self, rng: &mut R) -> Zeroizing<String> {
        generate_text(self.prefix, rng)
    }

    fn check(&self, candidate: &str) -> Result<(), SecretRejection> {
        if !candidate.starts_with(self.prefix) {
            return Err(SecretRejection::WrongPrefix);
        }
        check_body(self.prefix.len(), candidate)
    }
}

/// `prefix` + 37 random characters + the checksum of everything before it.
fn generate_text<R: RngCore + CryptoRng>(prefix: &str, rng: &mut R) -> Zeroizing<String> {
    let mut random = Zeroizing::new([0u8; RANDOM_CHARS]);
    rng.fill_bytes(random.as_mut());
    // Reserving the final size up front means the string never
    // reallocates, so no unzeroized copy of a partial secret is left
    // behind in freed memory.
    let mut text = Zeroizing::new(String::with_capacity(prefix.len() + BODY_CHARS));
    text.push_str(prefix);
    // 256 is a multiple of 64, so masking a uniform byte to 6 bits gives
    // a uniform character: no modulo bias.
    for byte in random.iter() {
        text.push(char::from(ALPHABET[usize::from(byte & 0x3f)]));
    }
    let checksum = checksum_chars(text.as_bytes());
    for digit in checksum {
        text.push(char::from(digit));
    }
    text
}

/// Length, alphabet and checksum of a candidate whose first `prefix_len`
/// bytes are a prefix already checked.
fn check_body(prefix_len: usize, candidate: &str) -> Result<(), SecretRejection> {
    // Lengths are in bytes; everything valid is ASCII, so a non-ASCII
    // character shows up either here or in the alphabet check.
    if candidate.len() != prefix_len + BODY_CHARS {
        return Err(SecretRejection::WrongLength);
    }
    let bytes = candidate.as_bytes();
    if !bytes[prefix_len..].iter().all(|byte| is_alphabet(*byte)) {
        return Err(SecretRejection::InvalidCharacter);
    }
    let (signed, checksum) = bytes.split_at(bytes.len() - CHECKSUM_CHARS);
    if checksum_chars(signed) != checksum {
        return Err(SecretRejection::BadChecksum);
    }
    Ok(())
}

/// The length of the workspace prefix and separator (`acme_live_`) of a
/// candidate shaped like a prefixed API key: a valid
/// [`keys_core::ApiKeyPrefix`], `_`, then exactly 43 more characters.
/// `None` for anything else. Shape only: the alphabet and checksum are
/// [`check_body`]'s.
fn workspace_prefix_len(candidate: &str) -> Option<usize> {
    let head_len = candidate.len().checked_sub(BODY_CHARS)?;
    let head = candidate.get(..head_len)?;
    let prefix = head.strip_suffix('_')?;
    keys_core::ApiKeyPrefix::is_valid(prefix).then_some(head_len)
}

fn is_alphabet(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// CRC32 of `signed`, as 6 base64url digits (36 bits, most significant
/// first).
fn checksum_chars(signed: &[u8]) -> [u8; CHECKSUM_CHARS] {
    let crc = u64::from(crc32fast::hash(signed));
    let mut out = [0u8; CHECKSUM_CHARS];
    for (index, digit) in out.iter_mut().enumerate() {
        let shift = 6 * (CHECKSUM_CHARS - 1 - index);
        // The mask keeps the index below 64, inside the alphabet.
        *digit = ALPHABET[((crc >> shift) & 0x3f) as usize];
    }
    out
}

const API_KEY: Format = Format { prefix: "SS." };
const SERVICE_TOKEN: Format = Format { prefix: "kst_" };
const PUBLIC_KEY: Format = Format { prefix: "SS.PUBK." };

/// The kinds of [`Secret`]: each names its prefix and how `Debug` shows it.
/// Sealed: the kinds are the ones of the table above.
pub trait SecretKind: sealed::Sealed {
    /// The fixed prefix.
    const PREFIX: &'static str;
    /// What `Debug` prints instead of the text.
    const REDACTED: &'static str;
}

mod sealed {
    //! The seal of [`super::SecretKind`]: a trait no other crate can name,
    //! so no other crate can add a kind of secret.

    /// Keeps [`super::SecretKind`] to the kinds of this module.
    pub trait Sealed {}
}

/// The kind of an [`ApiKeySecret`].
#[derive(Debug)]
pub enum ApiKeyKind {}

/// The kind of a [`ServiceToken`].
#[derive(Debug)]
pub enum ServiceTokenKind {}

impl sealed::Sealed for ApiKeyKind {}
impl sealed::Sealed for ServiceTokenKind {}

impl SecretKind for ApiKeyKind {
    const PREFIX: &'static str = API_KEY.prefix;
    const REDACTED: &'static str = "ApiKeySecret(SS.[redacted])";
}

impl SecretKind for ServiceTokenKind {
    const PREFIX: &'static str = SERVICE_TOKEN.prefix;
    const REDACTED: &'static str = "ServiceToken(kst_[redacted])";
}

/// A secret of one kind: its prefix + 43 characters.
///
/// Not `Clone`; redacted in `Debug`; zeroized on drop. The plaintext is read
/// only through [`Secret::expose`], to hand it out once.
pub struct Secret<Kind: SecretKind> {
    text: Zeroizing<String>,
    kind: PhantomData<Kind>,
}

/// A workspace API key (server-side secret): `SS.` + 43 characters.
pub type ApiKeySecret = Secret<ApiKeyKind>;

/// An organisation service token: `kst_` + 43 characters.
pub type ServiceToken = Secret<ServiceTokenKind>;

impl<Kind: SecretKind> Secret<Kind> {
    /// The fixed prefix.
    pub const PREFIX: &'static str = Kind::PREFIX;
    /// The total length in characters.
    pub const LENGTH: usize = Self::FORMAT.total_len();
    const FORMAT: Format = Format { prefix: Kind::PREFIX };

    /// A fresh secret from the given cryptographically secure RNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self { text: Self::FORMAT.generate(rng), kind: PhantomData }
    }

    /// Checks prefix, length, alphabet and checksum, in that order. Needs no
    /// storage: a string that fails here can never be a secret we issued.
    pub fn parse(candidate: &str) -> Result<Self, CryptoError> {
        Self::FORMAT.check(candidate)?;
        Ok(Self { text: Zeroizing::new(candidate.to_owned()), kind: PhantomData })
    }

    /// The plaintext. The one place it is read, to hand it out once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// SHA-256 of the full text: what storage keeps and looks up.
    pub fn digest(&self) -> SecretDigest {
        sha256_digest(self.text.as_bytes())
    }
}

impl<Kind: SecretKind> Secret<Kind> {
    /// The first 10 characters followed by `*****`, e.g. `SS.AbCdEfG*****`
    /// or `kst_AbCdEf*****`, as lists show it: the prefix and at most 7
    /// random characters, which leaves 36 or more unknown.
    ///
    /// An API key with a workspace prefix shows the whole prefix and the
    /// same 7 random characters (`acme_live_AbCdEfG*****`).
    pub fn masked(&self) -> String {
        // The text is ASCII and longer than 10 bytes, so byte 10 is a
        // character boundary; every format ends with BODY_CHARS after its
        // prefix, so the other cut is one too.
        let shown = if self.text.starts_with(Kind::PREFIX) { 10 } else { self.text.len() - BODY_CHARS + 7 };
        format!("{}*****", &self.text[..shown])
    }
}

/// API keys come in two formats (docs/API.md, Workspaces): `SS.` + 43
/// characters, or a workspace's prefix (`acme_live`), `_`, + 43 characters.
/// The checksum covers the prefix either way.
impl Secret<ApiKeyKind> {
    /// A fresh key: `<prefix>_…` for a workspace with a prefix, else `SS.…`.
    pub fn generate_for<R: RngCore + CryptoRng>(prefix: Option<&keys_core::ApiKeyPrefix>, rng: &mut R) -> Self {
        match prefix {
            None => Self::generate(rng),
            Some(prefix) => {
                let head = format!("{prefix}_");
                Self { text: generate_text(&head, rng), kind: PhantomData }
            }
        }
    }

    /// Tells keysd's API keys from any other text: `None` for a text in
    /// neither of keysd's formats (a foreign key, or nothing), else
    /// whether it is a well-formed one (the checksum checked). A text that
    /// claims keysd's shape but fails its checksum can never be a key
    /// keysd issued, and is refused without a lookup.
    pub fn recognise(candidate: &str) -> Option<Result<Self, CryptoError>> {
        if candidate.starts_with(Self::PREFIX) {
            return Some(Self::parse(candidate));
        }
        let prefix_len = workspace_prefix_len(candidate)?;
        Some(
            check_body(prefix_len, candidate)
                .map(|()| Self { text: Zeroizing::new(candidate.to_owned()), kind: PhantomData })
                .map_err(CryptoError::from),
        )
    }
}

impl<Kind: SecretKind> fmt::Debug for Secret<Kind> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Kind::REDACTED)
    }
}

/// A publishable client key: `SS.PUBK.` + 43 characters.
///
/// Not a secret: it is shown in every response and stored as it is, so it is
/// `Clone` and prints normally.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKeyValue {
    text: String,
}

impl PublicKeyValue {
    /// The fixed prefix.
    pub const PREFIX: &'static str = PUBLIC_KEY.prefix;
    /// The total length in characters.
    pub const LENGTH: usize = PUBLIC_KEY.total_len();

    /// A fresh value from the given RNG. It is public, but it must still be
    /// unguessable so that it cannot be enumerated.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let text = PUBLIC_KEY.generate(rng);
        Self { text: text.as_str().to_owned() }
    }

    /// Checks prefix, length, alphabet and checksum, in that order.
    pub fn parse(candidate: &str) -> Result<Self, CryptoError> {
        PUBLIC_KEY.check(candidate)?;
        Ok(Self { text: candidate.to_owned() })
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for PublicKeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    #[test]
    fn generated_api_key_has_the_documented_shape() {
        let key = ApiKeySecret::generate(&mut rng(1));
        let text = key.expose();
        assert_eq!(text.len(), 46);
        assert_eq!(ApiKeySecret::LENGTH, 46);
        assert!(text.starts_with("SS."));
        assert!(text[3..].bytes().all(is_alphabet));
        // The first checksum digit carries only the top 4 zero bits and the
        // top 2 bits of the CRC.
        assert!(matches!(text.as_bytes()[40], b'A'..=b'D'));
        assert_eq!(ApiKeySecret::parse(text).unwrap().expose(), text);
    }

    #[test]
    fn generated_formats_have_their_lengths_and_prefixes() {
        let token = ServiceToken::generate(&mut rng(2));
        assert_eq!(token.expose().len(), 47);
        assert!(token.expose().starts_with("kst_"));
        let public = PublicKeyValue::generate(&mut rng(3));
        assert_eq!(public.as_str().len(), 51);
        assert!(public.as_str().starts_with("SS.PUBK."));
        assert_eq!(PublicKeyValue::parse(public.as_str()).unwrap(), public);
        assert_eq!(public.to_string(), public.as_str());
    }

    #[test]
    fn checksum_is_the_crc32_of_prefix_and_random_part() {
        let key = ApiKeySecret::generate(&mut rng(4));
        let bytes = key.expose().as_bytes();
        let crc = crc32fast::hash(&bytes[..40]);
        let mut value: u64 = 0;
        for digit in &bytes[40..] {
            let position = ALPHABET.iter().position(|c| c == digit).unwrap();
            value = (value << 6) | position as u64;
        }
        assert_eq!(value, u64::from(crc));
    }

    #[test]
    fn same_seed_same_key_different_seed_different_key() {
        let first = ApiKeySecret::generate(&mut rng(5));
        let again = ApiKeySecret::generate(&mut rng(5));
        let other = ApiKeySecret::generate(&mut rng(6));
        assert_eq!(first.expose(), again.expose());
        assert_ne!(first.expose(), other.expose());
    }

    #[test]
    fn rejections_are_typed_and_in_order() {
        let key = ApiKeySecret::generate(&mut rng(7));
        let text = key.expose();
        let reject = |candidate: &str| match ApiKeySecret::parse(candidate) {
            Err(CryptoError::InvalidSecret(reason)) => reason,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(reject(""), SecretRejection::WrongPrefix);
        assert_eq!(reject(&text.replacen("SS.", "SX.", 1)), SecretRejection::WrongPrefix);
        assert_eq!(reject(&text[..45]), SecretRejection::WrongLength);
        assert_eq!(reject(&format!("{text}A")), SecretRejection::WrongLength);
        let mut bad_char = text.to_owned();
        bad_char.replace_range(5..6, "+");
        assert_eq!(reject(&bad_char), SecretRejection::InvalidCharacter);
        // A public key starts with `SS.` too but is longer.
        let public = PublicKeyValue::generate(&mut rng(8));
        assert_eq!(reject(public.as_str()), SecretRejection::WrongLength);
        // A service token is not an API key.
        let token = ServiceToken::generate(&mut rng(9));
        assert_eq!(reject(token.expose()), SecretRejection::WrongPrefix);
        assert!(matches!(
            ServiceToken::parse(key.expose()),
            Err(CryptoError::InvalidSecret(SecretRejection::WrongPrefix))
        ));
        assert_eq!(SecretRejection::BadChecksum.as_str(), "bad_checksum");
    }

    #[test]
    fn digest_is_sha256_of_the_full_text() {
        let key = ApiKeySecret::generate(&mut rng(10));
        let expected = Sha256::digest(key.expose().as_bytes());
        assert_eq!(key.digest().as_bytes()[..], expected[..]);
        let parsed = ApiKeySecret::parse(key.expose()).unwrap();
        assert_eq!(parsed.digest(), key.digest());
        assert!(digests_match(&parsed.digest(), &key.digest()));
        let token = ServiceToken::generate(&mut rng(10));
        assert_eq!(token.digest(), sha256_digest(token.expose().as_bytes()));
        assert!(!digests_match(&token.digest(), &key.digest()));
        // Known answer: SHA-256("abc").
        assert_eq!(sha256_digest(b"abc").to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn masked_shows_ten_characters() {
        let key = ApiKeySecret::generate(&mut rng(11));
        let masked = key.masked();
        assert_eq!(masked.len(), 15);
        assert_eq!(&masked[..10], &key.expose()[..10]);
        assert!(masked.ends_with("*****"));
    }

    #[test]
    fn debug_of_secrets_contains_no_secret_text() {
        let key = ApiKeySecret::generate(&mut rng(12));
        let token = ServiceToken::generate(&mut rng(13));
        let key_debug = format!("{key:?} {key:#?}");
        let token_debug = format!("{token:?} {token:#?}");
        assert!(!key_debug.contains(&key.expose()[3..]));
        assert!(!key_debug.contains(&key.masked()[..10]));
        assert!(!token_debug.contains(&token.expose()[4..]));
        assert!(key_debug.contains("redacted"));
        assert!(token_debug.contains("redacted"));
    }

    fn prefix(text: &str) -> keys_core::ApiKeyPrefix {
        keys_core::ApiKeyPrefix::parse(text).unwrap()
    }

    #[test]
    fn a_workspace_prefix_makes_keys_of_its_own_shape() {
        let key = ApiKeySecret::generate_for(Some(&prefix("acme_live")), &mut rng(9));
        let text = key.expose();
        assert!(text.starts_with("acme_live_"), "{text}");
        assert_eq!(text.len(), "acme_live_".len() + 43);
        assert!(text["acme_live_".len()..].bytes().all(is_alphabet));
        // The checksum covers the prefix: the same random part under
        // another prefix is another key, and not a well-formed one.
        let moved = text.replacen("acme_live_", "acme_test_", 1);
        assert!(matches!(ApiKeySecret::recognise(&moved), Some(Err(_))), "{moved}");
        let parsed = ApiKeySecret::recognise(text).unwrap().unwrap();
        assert_eq!(parsed.digest(), key.digest());
        // The mask shows the prefix and 7 random characters, as `SS.` keys.
        assert_eq!(key.masked(), format!("{}*****", &text[.."acme_live_".len() + 7]));
        assert_eq!(
            ApiKeySecret::generate_for(None, &mut rng(9)).expose(),
            ApiKeySecret::generate(&mut rng(9)).expose()
        );
    }

    #[test]
    fn recognise_tells_keysd_formats_from_foreign_text() {
        let plain = ApiKeySecret::generate(&mut rng(10));
        assert!(matches!(ApiKeySecret::recognise(plain.expose()), Some(Ok(_))));
        let longest = ApiKeySecret::generate_for(Some(&prefix("abcdefghijklmnop_test")), &mut rng(11));
        assert!(matches!(ApiKeySecret::recognise(longest.expose()), Some(Ok(_))));
        // keysd's shapes with a bad checksum: claimed, and refused.
        assert!(matches!(ApiKeySecret::recognise("SS.short"), Some(Err(_))));
        let mut bad = longest.expose().to_owned();
        let last = bad.pop().unwrap();
        bad.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(ApiKeySecret::recognise(&bad), Some(Err(_))));
        // Foreign: another vendor's prefix, a prefix that is not one (no
        // `_live`/`_test`, uppercase, one letter, seventeen), a wrong length.
        let body = &plain.expose()[3..];
        for foreign in [
            format!("sk_live_{}", &body[..24]),
            format!("acme_prod_{body}"),
            format!("Acme_live_{body}"),
            format!("a_live_{body}"),
            format!("abcdefghijklmnopq_live_{body}"),
            format!("acme_live_{body}x"),
            "not a key at all".to_owned(),
        ] {
            assert!(ApiKeySecret::recognise(&foreign).is_none(), "{foreign}");
        }
    }

    /// A generated value with the character at `position` replaced by
    /// `replacement` must be rejected.
    fn assert_single_change_rejected(
        original: &str,
        position: usize,
        replacement: char,
        parse: impl Fn(&str) -> bool,
    ) -> Result<(), TestCaseError> {
        let position = position % original.len();
        let current = char::from(original.as_bytes()[position]);
        prop_assume!(current != replacement);
        let mut changed = String::with_capacity(original.len() + 4);
        changed.push_str(&original[..position]);
        changed.push(replacement);
        changed.push_str(&original[position + 1..]);
        prop_assert!(!parse(&changed), "accepted {changed:?} from {original:?}");
        Ok(())
    }

    fn replacement_char() -> impl Strategy<Value = char> {
        prop_oneof![
            // Mostly characters of the alphabet, where only the checksum can
            // catch the change.
            4 => proptest::sample::select(ALPHABET.to_vec()).prop_map(char::from),
            1 => any::<char>(),
        ]
    }

    proptest! {
        #[test]
        fn every_generated_secret_parses(seed in any::<u64>()) {
            let mut rng = rng(seed);
            let key = ApiKeySecret::generate(&mut rng);
            prop_assert!(ApiKeySecret::parse(key.expose()).is_ok());
            let token = ServiceToken::generate(&mut rng);
            prop_assert!(ServiceToken::parse(token.expose()).is_ok());
            let public = PublicKeyValue::generate(&mut rng);
            prop_assert!(PublicKeyValue::parse(public.as_str()).is_ok());
        }

        #[test]
        fn any_single_character_change_is_rejected(
            seed in any::<u64>(),
            position in 0usize..64,
            replacement in replacement_char(),
        ) {
            let mut rng = rng(seed);
            let key = ApiKeySecret::generate(&mut rng);
            assert_single_change_rejected(key.expose(), position, replacement, |text| {
                ApiKeySecret::parse(text).is_ok()
            })?;
            let token = ServiceToken::generate(&mut rng);
            assert_single_change_rejected(token.expose(), position, replacement, |text| {
                ServiceToken::parse(text).is_ok()
            })?;
            let public = PublicKeyValue::generate(&mut rng);
            assert_single_change_rejected(public.as_str(), position, replacement, |text| {
                PublicKeyValue::parse(text).is_ok()
            })?;
        }

        #[test]
        fn any_single_character_change_of_a_prefixed_key_is_refused(
            seed in any::<u64>(),
            position in 0usize..64,
            replacement in replacement_char(),
        ) {
            let key = ApiKeySecret::generate_for(Some(&prefix("shop7_test")), &mut rng(seed));
            assert_single_change_rejected(key.expose(), position, replacement, |text| {
                matches!(ApiKeySecret::recognise(text), Some(Ok(_)))
            })?;
        }

        #[test]
        fn parse_never_panics_on_arbitrary_text(text in any::<String>()) {
            let _ = ApiKeySecret::recognise(&text);
            let _ = ApiKeySecret::parse(&text);
            let _ = ServiceToken::parse(&text);
            let _ = PublicKeyValue::parse(&text);
        }

        #[test]
        fn parse_never_panics_on_near_misses(
            prefix in prop_oneof![Just("SS."), Just("kst_"), Just("SS.PUBK."), Just("")],
            body in "[A-Za-z0-9_\\-.+/=é]{0,60}",
        ) {
            let text = format!("{prefix}{body}");
            let _ = ApiKeySecret::parse(&text);
            let _ = ServiceToken::parse(&text);
            let _ = PublicKeyValue::parse(&text);
        }
    }
}

//! Keys brought in from another system: [`ImportedKeyText`], the plaintext
//! of such a key (any format, 16–256 printable ASCII characters), and the
//! masks an imported key is listed with.
//!
//! An imported key is stored like keysd's own, as the SHA-256 of its full
//! text ([`crate::secret::sha256_digest`]), so that verification finds it by
//! the same lookup. Its text is held only for as long as it takes to
//! compute that digest: not `Clone`, redacted in `Debug`, zeroized on drop.

use std::fmt;

use zeroize::Zeroizing;

use crate::secret::{sha256_digest, ApiKeySecret, SecretDigest};

/// The fewest characters an imported key may have.
pub const MIN_IMPORTED_KEY_CHARS: usize = 16;
/// The most characters an imported key may have.
pub const MAX_IMPORTED_KEY_CHARS: usize = 256;
/// The most characters of an imported key's text its mask shows.
const MAX_SHOWN_CHARS: usize = 10;

/// Why a text cannot be an imported key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportedKeyRejection {
    /// Fewer than 16 or more than 256 characters.
    WrongLength,
    /// A character outside printable ASCII (`!` to `~`; no space, no
    /// control character, nothing beyond ASCII).
    NotPrintable,
    /// It starts with keysd's own prefix `SS.` but is not a well-formed
    /// keysd key: verification refuses such a text before any lookup, so
    /// it could never authenticate.
    KeysdPrefix,
}

impl fmt::Display for ImportedKeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongLength => "must be 16 to 256 characters long",
            Self::NotPrintable => "must be printable ASCII characters (no spaces)",
            Self::KeysdPrefix => {
                "has the shape of a keysd key (SS. or a workspace prefix such as acme_live_) but not its checksum, \
                 so it could never verify"
            }
        })
    }
}

impl std::error::Error for ImportedKeyRejection {}

/// The plaintext of a key made by another system.
pub struct ImportedKeyText {
    text: Zeroizing<String>,
}

impl ImportedKeyText {
    /// Checks length and alphabet; a text with keysd's prefix must also be
    /// a well-formed keysd key. Needs no storage.
    pub fn parse(candidate: &str) -> Result<Self, ImportedKeyRejection> {
        let text = Self::parse_foreign(candidate)?;
        if matches!(ApiKeySecret::recognise(candidate), Some(Err(_))) {
            return Err(ImportedKeyRejection::KeysdPrefix);
        }
        Ok(text)
    }

    /// The shape check alone, for verification of a presented text that
    /// is not in keysd's format (the caller has already told them apart).
    pub fn parse_foreign(candidate: &str) -> Result<Self, ImportedKeyRejection> {
        if !(MIN_IMPORTED_KEY_CHARS..=MAX_IMPORTED_KEY_CHARS).contains(&candidate.len()) {
            return Err(ImportedKeyRejection::WrongLength);
        }
        if !candidate.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(ImportedKeyRejection::NotPrintable);
        }
        Ok(Self { text: Zeroizing::new(candidate.to_owned()) })
    }

    /// SHA-256 of the full text, exactly as keysd digests its own keys.
    pub fn digest(&self) -> SecretDigest {
        sha256_digest(self.text.as_bytes())
    }

    /// The first characters followed by `*****`, as lists show keysd's own
    /// keys, but never more than a quarter of the text nor more than 10
    /// characters: a 16-character key shows 4, a 40-character one 10.
    pub fn masked(&self) -> String {
        let shown = (self.text.len() / 4).min(MAX_SHOWN_CHARS);
        // The text is ASCII, so every byte index is a character boundary.
        format!("{}*****", &self.text[..shown])
    }
}

impl fmt::Debug for ImportedKeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ImportedKeyText([redacted])")
    }
}

/// The mask of a key imported as its SHA-256 alone, whose text keysd never
/// saw: `imported_` and the first 6 hex digits of the digest (which the
/// store keeps anyway), so that two such keys can be told apart in a list.
pub fn masked_digest(digest: &SecretDigest) -> String {
    format!("imported_{}*****", &digest.to_hex()[..6])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn accepts_printable_ascii_of_16_to_256_characters() {
        for text in ["a".repeat(16), "~".repeat(256), "sk_live_0123456789abcdef".to_owned()] {
            assert!(ImportedKeyText::parse(&text).is_ok(), "{text}");
        }
        let refused = |text: &str| ImportedKeyText::parse(text).unwrap_err();
        assert_eq!(refused(&"a".repeat(15)), ImportedKeyRejection::WrongLength);
        assert_eq!(refused(&"a".repeat(257)), ImportedKeyRejection::WrongLength);
        assert_eq!(refused("sk_live_0123456789 abcdef"), ImportedKeyRejection::NotPrintable);
        assert_eq!(refused("sk_live_0123456789\tabcdef"), ImportedKeyRejection::NotPrintable);
        assert_eq!(refused("sk_live_é0123456789abcdef"), ImportedKeyRejection::NotPrintable);
        assert_eq!(refused("SS.this-is-not-a-keysd-key"), ImportedKeyRejection::KeysdPrefix);
        assert!(ImportedKeyText::parse_foreign("SS.this-is-not-a-keysd-key").is_ok());
    }

    #[test]
    fn a_keysd_key_imports_with_the_digest_keysd_gives_it() {
        let mut rng = rand_core::OsRng;
        let secret = ApiKeySecret::generate(&mut rng);
        let imported = ImportedKeyText::parse(secret.expose()).unwrap();
        assert_eq!(imported.digest(), secret.digest());
    }

    #[test]
    fn masks_show_at_most_a_quarter_and_at_most_10_characters() {
        let mask = |text: &str| ImportedKeyText::parse(text).unwrap().masked();
        assert_eq!(mask("abcdefghijklmnop"), "abcd*****");
        assert_eq!(mask(&"x".repeat(39)), format!("{}*****", "x".repeat(9)));
        assert_eq!(mask(&"y".repeat(256)), format!("{}*****", "y".repeat(10)));
        let digest = sha256_digest(b"hello");
        assert_eq!(masked_digest(&digest), "imported_2cf24d*****");
    }

    #[test]
    fn debug_never_shows_the_text() {
        let text = ImportedKeyText::parse("sk_live_0123456789abcdef").unwrap();
        assert!(!format!("{text:?}").contains("0123"));
    }
}

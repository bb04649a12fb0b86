//! Identifiers in the formats clients already parse: ULIDs for organisations
//! and organisation signing keys, `<prefix><ULID>` for everything else
//! (`wksp_`, `ws_apik_`, `ws_pubk_`, `ws_signk_`, `signing_key_`, `st_`).

use std::fmt;

use rand_core::RngCore;
use time::OffsetDateTime;

use crate::CoreError;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A ULID (26 Crockford base32 characters: 48 bits of milliseconds, 80 bits
/// of randomness), made from an injected time and RNG.
pub fn ulid(now: OffsetDateTime, rng: &mut impl RngCore) -> String {
    let millis = (now.unix_timestamp_nanos() / 1_000_000).clamp(0, (1 << 48) - 1) as u128;
    let mut random = [0u8; 10];
    rng.fill_bytes(&mut random);
    let mut value: u128 = millis << 80;
    for (index, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - index));
    }
    let mut out = [0u8; 26];
    for (index, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - index);
        *slot = CROCKFORD[((value >> shift) & 0x1f) as usize];
    }
    out.iter().map(|&byte| byte as char).collect()
}

fn is_ulid(text: &str) -> bool {
    text.len() == 26
        && text.as_bytes()[0] <= b'7'
        && text.bytes().all(|byte| CROCKFORD.contains(&byte.to_ascii_uppercase()))
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id from the injected time and randomness.
            pub fn generate(now: OffsetDateTime, rng: &mut impl RngCore) -> Self {
                Self(format!("{}{}", $prefix, ulid(now, rng)))
            }

            /// Parses an id received from a client or read from storage.
            pub fn parse(text: &str) -> Result<Self, CoreError> {
                match text.strip_prefix($prefix) {
                    Some(rest) if is_ulid(rest) => Ok(Self(text.to_owned())),
                    _ => Err(CoreError::InvalidId { kind: $kind }),
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

prefixed_id!(
    /// An organisation: a bare ULID.
    OrganisationId, "", "organisation"
);
prefixed_id!(
    /// A workspace `uid`: `wksp_<ULID>`.
    WorkspaceUid, "wksp_", "workspace"
);
prefixed_id!(
    /// A service token's id (not the token): `st_<ULID>`.
    ServiceTokenId, "st_", "service token"
);
prefixed_id!(
    /// An API key's id (not the secret): `ws_apik_<ULID>`.
    ApiKeyId, "ws_apik_", "api key"
);
prefixed_id!(
    /// A public key's id: `ws_pubk_<ULID>`.
    PublicKeyId, "ws_pubk_", "public key"
);
prefixed_id!(
    /// A workspace signing key's record id: `ws_signk_<ULID>`.
    SigningKeyId, "ws_signk_", "signing key"
);
prefixed_id!(
    /// A workspace signing key's `uid`, used in paths and as the JWT `kid`:
    /// `signing_key_<ULID>`.
    SigningKeyUid, "signing_key_", "signing key"
);
prefixed_id!(
    /// A webhook endpoint's id: `we_<ULID>`.
    WebhookEndpointId, "we_", "webhook endpoint"
);
prefixed_id!(
    /// An organisation signing key (Versori dialect): a bare ULID.
    OrganisationKeyId, "", "organisation key"
);

/// The id of one HTTP request, as it appears in `X-Request-Id` and in the
/// audit events the request causes: what a client sent when it is a sane
/// token (1–128 characters of `A-Z a-z 0-9 . _ : -`), else a ULID keysd
/// makes. Client text, so it is checked before it is echoed or stored.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The longest request id accepted from a client.
    pub const MAX_LEN: usize = 128;

    /// A new id (a ULID) from the injected time and randomness.
    pub fn generate(now: OffsetDateTime, rng: &mut impl RngCore) -> Self {
        Self(ulid(now, rng))
    }

    /// A client's (or a stored) request id; anything but 1–128 characters
    /// of `A-Z a-z 0-9 . _ : -` is refused.
    pub fn parse(text: &str) -> Result<Self, CoreError> {
        let sane = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-'));
        if sane {
            Ok(Self(text.to_owned()))
        } else {
            Err(CoreError::InvalidId { kind: "request" })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn ulid_has_time_prefix_and_parses() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let now = time::macros::datetime!(2026-04-21 12:35:24.117631 UTC);
        let id = OrganisationId::generate(now, &mut rng);
        assert_eq!(id.as_str().len(), 26);
        assert!(OrganisationId::parse(id.as_str()).is_ok());
        // Same millisecond, different randomness: same time prefix.
        let other = OrganisationId::generate(now, &mut rng);
        assert_eq!(id.as_str()[..10], other.as_str()[..10]);
        assert_ne!(id, other);
    }

    #[test]
    fn prefixed_ids_check_prefix_and_body() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let now = OffsetDateTime::UNIX_EPOCH;
        let key = ApiKeyId::generate(now, &mut rng);
        assert!(key.as_str().starts_with("ws_apik_"));
        assert_eq!(ApiKeyId::parse(key.as_str()), Ok(key.clone()));
        for bad in [
            "",
            "ws_apik_",
            "ws_pubk_01ARZ3NDEKTSV4RRFFQ69G5FAV",
            "ws_apik_01ARZ3NDEKTSV4RRFFQ69G5FA!",
            "ws_apik_81ARZ3NDEKTSV4RRFFQ69G5FAV",
        ] {
            assert!(ApiKeyId::parse(bad).is_err(), "{bad} parsed");
        }
        assert!(ApiKeyId::parse("ws_apik_01ARZ3NDEKTSV4RRFFQ69G5FAV").is_ok());
    }

    #[test]
    fn request_ids_are_sane_tokens() {
        for good in ["a", "abc-123", "trace:01.x_y", &"x".repeat(128)] {
            assert_eq!(RequestId::parse(good).map(|id| id.as_str().to_owned()), Ok(good.to_owned()));
        }
        for bad in ["", "bad id!", "a/b", "é", "line\nbreak", &"x".repeat(129)] {
            assert!(RequestId::parse(bad).is_err(), "{bad:?} parsed");
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let generated = RequestId::generate(OffsetDateTime::UNIX_EPOCH, &mut rng);
        assert_eq!(RequestId::parse(generated.as_str()), Ok(generated));
    }
}

//! keys-crypto: the cryptography of keysd.
//!
//! - [`secret`]: the text formats of API keys (`SS.…`), service tokens
//!   (`kst_…`) and publishable keys (`SS.PUBK.…`), each with a CRC32 checksum
//!   so that a mistyped or truncated value is rejected before any storage
//!   lookup, and their SHA-256 digests (the only form storage keeps).
//! - [`imported`]: the plaintext of a key made by another system (any
//!   format, 16–256 printable ASCII characters), digested the same way, and
//!   the masks imported keys are listed with.
//! - [`keypair`]: P-256 (ES256) workspace signing keys and RSA-2048 (RS256)
//!   organisation keys, their PKCS#8 / SPKI PEM encodings, RFC 7517 JWKs, and
//!   a background pool of pre-generated RSA keys.
//! - [`jwt`]: verification of JWS compact tokens with the algorithm pinned by
//!   the key: signatures and structure only (the time window is keys-core's
//!   `TimePolicy`).
//! - [`mint`]: signing — the general [`mint::sign`], and the two token kinds
//!   keysd verifies ([`mint::user_token`], [`mint::organisation_token`]) for
//!   `keysd sign` and backends that mint locally.
//! - [`github`]: the keys GitHub's secret scanning signs its alerts with,
//!   and the check of an alert's signature.
//!
//! Two cryptographic backends, each for what it does best: the pure-Rust
//! `p256` and `rsa` crates generate keys and parse, validate and encode all
//! key material (PEM, DER, JWK); `ring` checks signatures, since its assembly
//! P-256 and RSA verify several times faster (close to OpenSSL) and
//! verification is the hot path of the service. `jsonwebtoken` (RustCrypto
//! backend) is used only by [`mint::sign`].
//!
//! **Architecture invariant:** this crate never sees a database, a socket or
//! the system clock. Randomness is a parameter (`RngCore + CryptoRng`) except
//! in [`keypair::RsaKeyPool`], whose whole point is to generate keys ahead of
//! time from the operating system's RNG, and the current time is always a
//! parameter of verification.
//!
//! **Architecture invariant:** private key material and secrets live only in
//! memory, in types that are not `Clone`, redact themselves in `Debug` and
//! zeroize on drop. The one place plaintext is read out is the explicit
//! `expose` / `private_key_pem` call that puts it into a create response.

mod algorithm;
mod error;
mod jwk;
mod key_material;
mod provider;

pub mod github;
pub mod imported;
pub mod jwt;
pub mod keypair;
pub mod mint;
pub mod secret;
pub mod webhook;

#[cfg(test)]
mod test_support;

pub use error::CryptoError;
pub use github::{AlertSignatureRejection, GithubKeySet, GithubKeysError};
pub use imported::{ImportedKeyRejection, ImportedKeyText};
pub use jwt::{Algorithm, Claims, JwtError, VerificationKey, Verifier};
pub use keypair::{EcKeyPair, Jwk, JwkSet, RsaKeyPair, RsaKeyPool};
pub use secret::{
    ApiKeyKind, ApiKeySecret, PublicKeyValue, Secret, SecretKind, SecretRejection, ServiceToken, ServiceTokenKind,
};

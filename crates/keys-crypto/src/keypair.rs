//! Signing key pairs, their encodings and public JWKs.
//!
//! - [`EcKeyPair`]: P-256 for ES256, the workspace signing keys.
//! - [`RsaKeyPair`]: RSA-2048 for RS256, the organisation keys.
//! - [`Jwk`] / [`JwkSet`] and [`public_jwk_from_pem`]: storage keeps only
//!   public PEMs, and JWKS endpoints build their documents from those.
//! - [`RsaKeyPool`]: RSA generation is slow, so keys are made ahead of time
//!   on a background thread.
//!
//! Private keys are handed out as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`)
//! inside [`Zeroizing`] strings; public keys as SPKI PEM
//! (`-----BEGIN PUBLIC KEY-----`), LF line endings throughout.

mod pool;

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand_core::{CryptoRng, RngCore};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use zeroize::Zeroizing;

use crate::algorithm::Algorithm;
use crate::jwt::VerificationKey;
use crate::key_material::{PublicKeyMaterial, MAX_RSA_BITS, MIN_RSA_BITS};
use crate::CryptoError;

pub use crate::jwk::{Jwk, JwkSet};
pub use pool::{RsaKeyPool, DEFAULT_POOL_CAPACITY, DEFAULT_POOL_THREADS};

/// Size of generated organisation keys.
pub const RSA_KEY_BITS: usize = 2048;

/// Builds the public JWK (`use: sig`, `alg`, `kid`) of a stored public key
/// PEM (SPKI; for RS256 PKCS#1 is accepted too).
pub fn public_jwk_from_pem(alg: Algorithm, pem: &str, kid: &str) -> Result<Jwk, CryptoError> {
    Ok(PublicKeyMaterial::from_pem(alg, pem)?.to_jwk(kid))
}

/// The views both key pairs derive from their `private_key_pem` and
/// `public_material`, written once: invoked inside each `impl`.
macro_rules! key_pair_views {
    () => {
        /// Standard base64 (with padding) of the private key's PEM text, as
        /// the `private_key_base64` response field.
        pub fn private_key_base64(&self) -> Zeroizing<String> {
            Zeroizing::new(STANDARD.encode(self.private_key_pem().as_bytes()))
        }

        /// The public key as SPKI PEM, the form storage keeps.
        pub fn public_key_pem(&self) -> String {
            self.public_material().to_pem()
        }

        /// The public JWK with the given `kid`.
        pub fn public_jwk(&self, kid: &str) -> Jwk {
            self.public_material().to_jwk(kid)
        }

        /// A verification key for tokens this pair signs.
        pub fn verification_key(&self) -> VerificationKey {
            VerificationKey::from_material(self.public_material())
        }
    };
}

/// A P-256 key pair for ES256.
///
/// Not `Clone`; redacted in `Debug`; the secret scalar is zeroized on drop
/// (by `p256`'s `SigningKey`).
pub struct EcKeyPair {
    signing_key: SigningKey,
}

impl EcKeyPair {
    /// A fresh key pair from the given cryptographically secure RNG.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self { signing_key: SigningKey::random(rng) }
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`) on
    /// P-256, such as `openssl genpkey -algorithm EC -pkeyopt
    /// ec_paramgen_curve:prime256v1` writes.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CryptoError> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(|signing_key| Self { signing_key })
            .map_err(|error| CryptoError::InvalidKey(format!("not a P-256 PKCS#8 private key PEM: {error}")))
    }

    /// Always [`Algorithm::Es256`].
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::Es256
    }

    /// The private key as PKCS#8 PEM, to hand out once.
    pub fn private_key_pem(&self) -> Zeroizing<String> {
        // Invariant: a `SigningKey` always holds a valid non-zero scalar, and
        // PKCS#8 encoding of it only writes DER into a buffer; it has no
        // failure mode for a key that exists.
        self.signing_key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding of a P-256 key cannot fail")
    }

    key_pair_views!();

    /// The key as jsonwebtoken signs with: PKCS#8 DER, zeroized on drop.
    pub(crate) fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        // Invariant: as for `private_key_pem`, PKCS#8 encoding of a valid
        // key cannot fail.
        let der = self.signing_key.to_pkcs8_der().expect("PKCS#8 encoding of a P-256 key cannot fail");
        jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes())
    }

    fn public_material(&self) -> PublicKeyMaterial {
        PublicKeyMaterial::Ec(p256::PublicKey::from(self.signing_key.verifying_key()))
    }
}

impl fmt::Debug for EcKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcKeyPair").field("algorithm", &"ES256").field("private_key", &"[redacted]").finish()
    }
}

/// An RSA key pair for RS256 (2048 bits when generated here).
///
/// Not `Clone`; redacted in `Debug`; zeroized on drop (by `rsa`'s
/// `RsaPrivateKey`).
pub struct RsaKeyPair {
    private_key: RsaPrivateKey,
}

impl RsaKeyPair {
    /// A fresh 2048-bit key pair from the given cryptographically secure RNG.
    /// Takes roughly 50–500 ms; see [`RsaKeyPool`] to keep that off the
    /// request path.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        // Invariant: generation fails only for fewer than 2 primes, a modulus
        // under 64 bits or an invalid public exponent; 2 primes, 2048 bits
        // and e = 65537 are fixed here.
        let private_key =
            RsaPrivateKey::new(rng, RSA_KEY_BITS).expect("RSA-2048 generation with e = 65537 cannot fail");
        Self { private_key }
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`) of
    /// 2048 to 4096 bits, such as `openssl genpkey -algorithm RSA` writes.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CryptoError> {
        let private_key = RsaPrivateKey::from_pkcs8_pem(pem.trim())
            .map_err(|error| CryptoError::InvalidKey(format!("not an RSA PKCS#8 private key PEM: {error}")))?;
        let bits = private_key.n().bits();
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(CryptoError::InvalidKey(format!(
                "RSA modulus of {bits} bits, expected {MIN_RSA_BITS} to {MAX_RSA_BITS}"
            )));
        }
        Ok(Self { private_key })
    }

    /// Always [`Algorithm::Rs256`].
    pub fn algorithm(&self) -> Algorithm {
        Algorithm::Rs256
    }

    /// The private key as PKCS#8 PEM, to hand out once.
    pub fn private_key_pem(&self) -> Zeroizing<String> {
        // Invariant: encoding fails only for multi-prime keys or keys whose
        // CRT coefficient does not exist; every key here was generated with
        // or validated to have exactly two distinct primes.
        self.private_key.to_pkcs8_pem(LineEnding::LF).expect("PKCS#8 encoding of a two-prime RSA key cannot fail")
    }

    key_pair_views!();

    /// The key as jsonwebtoken signs with: PKCS#1 DER, zeroized on drop.
    pub(crate) fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        // Invariant: as for `private_key_pem`, a two-prime key always
        // encodes.
        let der = self.private_key.to_pkcs1_der().expect("PKCS#1 encoding of a two-prime RSA key cannot fail");
        jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes())
    }

    fn public_material(&self) -> PublicKeyMaterial {
        PublicKeyMaterial::Rsa(self.private_key.to_public_key())
    }
}

impl fmt::Debug for RsaKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKeyPair")
            .field("algorithm", &"RS256")
            .field("bits", &self.private_key.n().bits())
            .field("private_key", &"[redacted]")
            .finish()
    }
}

//! The signature check of JWT verification, done by `ring`.
//!
//! Key material is parsed and validated by `p256` and `rsa` (see
//! [`crate::key_material`]); only the public-key operation itself runs here.
//! `ring`'s assembly implementations of P-256 and RSA verify at close to
//! OpenSSL's speed, five to ten times the rate of the pure-Rust `p256`/`rsa`
//! verifiers, and the crate builds from crates.io with a C compiler alone
//! (the measurements and the comparison with `aws-lc-rs` are in
//! [`crate::jwt`]).
//!
//! - ES256: `ECDSA_P256_SHA256_FIXED`, the 64-byte `r || s` of JOSE
//!   (RFC 7518 §3.4) with the uncompressed SEC1 point as key. `ring` does not
//!   insist on low-S, so signatures made by OpenSSL (which does not
//!   normalise S) verify. This is deliberate: about half the tokens of
//!   Node's `jsonwebtoken` and of PyJWT are high-S, so refusing them would
//!   refuse half of real clients' tokens; the consequence (a second valid
//!   string per token) is argued in docs/SECURITY.md, "Tokens".
//! - RS256: `RSA_PKCS1_2048_8192_SHA256`, RSASSA-PKCS1-v1_5 with SHA-256,
//!   with the PKCS#1 `RSAPublicKey` DER as key. Its 2048-bit floor is the same
//!   as our key policy, which also caps the modulus at 4096 bits.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use rsa::pkcs1::EncodeRsaPublicKey;

use crate::key_material::PublicKeyMaterial;

/// A public key in the form `ring` verifies with, with its algorithm fixed.
pub(crate) struct SignatureKey {
    key: UnparsedPublicKey<Box<[u8]>>,
}

/// The signature does not verify with the key (any reason: wrong length,
/// out-of-range values, a different key or a changed message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadSignature;

impl SignatureKey {
    /// The key of validated material, for its algorithm only.
    pub(crate) fn new(material: &PublicKeyMaterial) -> Self {
        let key = match material {
            PublicKeyMaterial::Ec(key) => {
                let point = key.to_encoded_point(false);
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, Box::from(point.as_bytes()))
            }
            PublicKeyMaterial::Rsa(key) => {
                // Invariant: PKCS#1 encoding of a public key only writes two
                // positive integers as DER into a growable buffer; it has no
                // failure mode for a key that passed our parsing.
                let der = key.to_pkcs1_der().expect("PKCS#1 encoding of an RSA public key cannot fail");
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, Box::from(der.as_bytes()))
            }
        };
        Self { key }
    }

    /// Checks `signature` (already base64url-decoded) over `signing_input`,
    /// the ASCII `header.payload` of the compact JWS.
    pub(crate) fn verify(&self, signing_input: &[u8], signature: &[u8]) -> Result<(), BadSignature> {
        self.key.verify(signing_input, signature).map_err(|_| BadSignature)
    }
}

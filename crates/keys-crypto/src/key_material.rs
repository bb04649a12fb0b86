//! Parsed public key material shared by [`crate::keypair`] (JWK export) and
//! [`crate::jwt`] (verification keys), so PEM and JWK parsing and the size
//! and curve policy live in one place.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};

use crate::algorithm::Algorithm;
use crate::jwk::Jwk;
use crate::CryptoError;

/// Smallest RSA modulus accepted, in bits (NIST SP 800-131A).
pub(crate) const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits; the `rsa` crate's own limit, which
/// also bounds the cost of one verification.
pub(crate) const MAX_RSA_BITS: usize = RsaPublicKey::MAX_SIZE;

/// A validated public key of one of the two supported algorithms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicKeyMaterial {
    /// A P-256 point, checked to be on the curve and not the identity.
    Ec(p256::PublicKey),
    /// An RSA public key with a modulus of 2048 to 4096 bits.
    Rsa(RsaPublicKey),
}

impl PublicKeyMaterial {
    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Self::Ec(_) => Algorithm::Es256,
            Self::Rsa(_) => Algorithm::Rs256,
        }
    }

    /// Parses an SPKI PEM (`-----BEGIN PUBLIC KEY-----`) for the given
    /// algorithm. For RS256 a PKCS#1 PEM (`-----BEGIN RSA PUBLIC KEY-----`)
    /// is accepted too, since many tools still write that form.
    pub(crate) fn from_pem(algorithm: Algorithm, pem: &str) -> Result<Self, CryptoError> {
        let pem = pem.trim();
        match algorithm {
            Algorithm::Es256 => p256::PublicKey::from_public_key_pem(pem)
                .map(Self::Ec)
                .map_err(|error| CryptoError::InvalidKey(format!("not a P-256 SPKI public key PEM: {error}"))),
            Algorithm::Rs256 => {
                let key = RsaPublicKey::from_public_key_pem(pem)
                    .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
                    .map_err(|error| CryptoError::InvalidKey(format!("not an RSA public key PEM: {error}")))?;
                Self::rsa(key)
            }
        }
    }

    /// Checks the RSA size policy.
    pub(crate) fn rsa(key: RsaPublicKey) -> Result<Self, CryptoError> {
        let bits = key.n().bits();
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(CryptoError::InvalidKey(format!(
                "RSA modulus of {bits} bits, expected {MIN_RSA_BITS} to {MAX_RSA_BITS}"
            )));
        }
        Ok(Self::Rsa(key))
    }

    /// Reads the public part of a JWK (RFC 7517/7518). `kty` and `crv` decide
    /// the key type; `alg`, when present, must agree with it; `use`, when
    /// present, must be `sig`.
    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Self, CryptoError> {
        if let Some(key_use) = jwk.key_use.as_deref() {
            if key_use != "sig" {
                return Err(CryptoError::UnsupportedKey(format!("JWK use {key_use:?}, expected \"sig\"")));
            }
        }
        // Decide what the key is, and whether we can use it, before looking
        // at its material: an unusable key is skipped by JWKS readers, a
        // broken usable one is an error.
        let algorithm = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
            ("EC", Some("P-256")) => Algorithm::Es256,
            ("RSA", _) => Algorithm::Rs256,
            ("EC", curve) => {
                return Err(CryptoError::UnsupportedKey(format!("EC JWK on curve {curve:?}, expected \"P-256\"")));
            }
            (other, _) => {
                return Err(CryptoError::UnsupportedKey(format!("JWK kty {other:?}")));
            }
        };
        if let Some(alg) = jwk.alg.as_deref() {
            if Algorithm::from_jose_name(alg) != Some(algorithm) {
                return Err(CryptoError::UnsupportedKey(format!("JWK alg {alg:?} with kty {:?}", jwk.kty)));
            }
        }
        match algorithm {
            Algorithm::Es256 => {
                let x = decode_coordinate(jwk.x.as_deref(), "x")?;
                let y = decode_coordinate(jwk.y.as_deref(), "y")?;
                let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                let key = Option::<p256::PublicKey>::from(p256::PublicKey::from_encoded_point(&point))
                    .ok_or_else(|| CryptoError::InvalidKey("EC JWK point is not on P-256".to_owned()))?;
                Ok(Self::Ec(key))
            }
            Algorithm::Rs256 => {
                let modulus = decode_member(jwk.n.as_deref(), "n")?;
                let exponent = decode_member(jwk.e.as_deref(), "e")?;
                let key = RsaPublicKey::new(BigUint::from_bytes_be(&modulus), BigUint::from_bytes_be(&exponent))
                    .map_err(|error| CryptoError::InvalidKey(format!("RSA JWK: {error}")))?;
                Self::rsa(key)
            }
        }
    }

    /// The SPKI PEM of this key.
    pub(crate) fn to_pem(&self) -> String {
        let encoded = match self {
            Self::Ec(key) => key.to_public_key_pem(LineEnding::LF),
            Self::Rsa(key) => key.to_public_key_pem(LineEnding::LF),
        };
        // Invariant: encoding a validated in-memory public key as SPKI only
        // writes DER into a growable buffer; it has no failure mode for keys
        // that passed our parsing or generation.
        encoded.expect("encoding a validated public key as SPKI PEM cannot fail")
    }

    /// The public JWK of this key, with `use: sig`, `alg` and `kid`.
    pub(crate) fn to_jwk(&self, kid: &str) -> Jwk {
        let mut jwk = Jwk {
            kty: String::new(),
            key_use: Some("sig".to_owned()),
            kid: Some(kid.to_owned()),
            alg: Some(self.algorithm().as_str().to_owned()),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        };
        match self {
            Self::Ec(key) => {
                let point = key.to_encoded_point(false);
                jwk.kty = "EC".to_owned();
                jwk.crv = Some("P-256".to_owned());
                // An uncompressed point always has both coordinates.
                jwk.x = point.x().map(|x| URL_SAFE_NO_PAD.encode(x));
                jwk.y = point.y().map(|y| URL_SAFE_NO_PAD.encode(y));
            }
            Self::Rsa(key) => {
                jwk.kty = "RSA".to_owned();
                jwk.n = Some(URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()));
                jwk.e = Some(URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()));
            }
        }
        jwk
    }
}

fn decode_member(value: Option<&str>, name: &str) -> Result<Vec<u8>, CryptoError> {
    let value = value.ok_or_else(|| CryptoError::InvalidKey(format!("JWK member {name:?} missing")))?;
    URL_SAFE_NO_PAD.decode(value).map_err(|_| CryptoError::InvalidKey(format!("JWK member {name:?} is not base64url")))
}

fn decode_coordinate(value: Option<&str>, name: &str) -> Result<[u8; 32], CryptoError> {
    let bytes = decode_member(value, name)?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| CryptoError::InvalidKey(format!("JWK member {name:?} is not 32 bytes for P-256")))
}

//! Minting the two kinds of token keysd verifies, for backends that sign
//! locally (and for `keysd sign`): an ES256 secure-mode user token, and an
//! RS256 Versori-style organisation JWT. No database, no network; `now` is
//! a parameter.
//!
//! [`sign`] is the general signer (any claims, with or without `kid`),
//! backed by `jsonwebtoken`; the service itself never calls it.
//!
//! The private key may be given as keysd returned it: the PKCS#8 PEM text
//! (`private_key_pem`, `privateKey`) or its base64 (`private_key_base64`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::algorithm::Algorithm;
use crate::keypair::{EcKeyPair, RsaKeyPair};
use crate::{provider, CryptoError};

/// Signs `claims` (a JSON object) as a compact JWS with `alg`, the header
/// `{"typ":"JWT","alg":...,"kid":...}` and a PKCS#8 private key PEM
/// (`-----BEGIN PRIVATE KEY-----`). For tests and embedders; the service
/// itself never holds private keys.
pub fn sign(claims: &Value, kid: Option<&str>, private_key_pem: &str, alg: Algorithm) -> Result<String, CryptoError> {
    if !claims.is_object() {
        return Err(CryptoError::Signing("claims must be a JSON object".to_owned()));
    }
    // The PEM is parsed and validated by p256 / rsa; jsonwebtoken is built
    // without its own PEM support and gets DER.
    let encoding_key = match alg {
        Algorithm::Es256 => EcKeyPair::from_pkcs8_pem(private_key_pem)?.encoding_key(),
        Algorithm::Rs256 => RsaKeyPair::from_pkcs8_pem(private_key_pem)?.encoding_key(),
    };
    provider::ensure_installed();
    let mut header = jsonwebtoken::Header::new(to_jsonwebtoken(alg));
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &encoding_key).map_err(|error| CryptoError::Signing(error.to_string()))
}

fn to_jsonwebtoken(alg: Algorithm) -> jsonwebtoken::Algorithm {
    match alg {
        Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
        Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
    }
}

/// Reads a private key as keysd hands it out: PEM text, or base64 of it.
pub fn private_key_pem(text: &str) -> Result<Zeroizing<String>, CryptoError> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(Zeroizing::new(trimmed.to_owned()));
    }
    let compact: Zeroizing<String> = Zeroizing::new(trimmed.chars().filter(|c| !c.is_ascii_whitespace()).collect());
    let bytes = Zeroizing::new(
        STANDARD
            .decode(compact.as_bytes())
            .map_err(|_| CryptoError::InvalidKey("not a PEM private key, nor the base64 of one".to_owned()))?,
    );
    let pem = std::str::from_utf8(&bytes)
        .map_err(|_| CryptoError::InvalidKey("base64 that does not hold PEM text".to_owned()))?
        .trim();
    if !pem.starts_with("-----BEGIN") {
        return Err(CryptoError::InvalidKey("base64 that does not hold PEM text".to_owned()));
    }
    Ok(Zeroizing::new(pem.to_owned()))
}

/// What a secure-mode user token says.
#[derive(Debug, Clone)]
pub struct UserTokenRequest<'a> {
    pub entity_id: &'a str,
    /// `scope.tenant_id`; absent means keysd's `default` tenant.
    pub tenant_id: Option<&'a str>,
    pub ttl_seconds: u32,
    /// The signing key's uid as `kid`; absent, keysd tries the workspace's
    /// active key and the rolled keys in grace.
    pub kid: Option<&'a str>,
}

/// An ES256 user token as keysd's secure mode verifies it:
/// `{entity_type: "subscriber", entity_id, iat, exp, scope: {tenant_id}}`.
pub fn user_token(
    private_key: &str,
    request: &UserTokenRequest<'_>,
    now: OffsetDateTime,
) -> Result<String, CryptoError> {
    if request.entity_id.trim().is_empty() {
        return Err(CryptoError::Signing("entity_id may not be empty".to_owned()));
    }
    let issued = now.unix_timestamp();
    let mut claims = json!({
        "entity_type": "subscriber",
        "entity_id": request.entity_id,
        "iat": issued,
        "exp": issued + i64::from(request.ttl_seconds),
    });
    if let Some(tenant_id) = request.tenant_id {
        claims["scope"] = json!({ "tenant_id": tenant_id });
    }
    sign(&claims, request.kid, &private_key_pem(private_key)?, Algorithm::Es256)
}

/// What a Versori-style organisation JWT says.
#[derive(Debug, Clone)]
pub struct OrganisationTokenRequest<'a> {
    /// The organisation key's id: `iss` is `<issuer_base>/sk/<key_id>`.
    pub key_id: &'a str,
    pub sub: &'a str,
    /// Versori's own is `https://versori.com`.
    pub issuer_base: &'a str,
    pub ttl_seconds: u32,
}

/// An RS256 JWT as `/v1/verify/jwt/` verifies it:
/// `{iss: "<base>/sk/<key_id>", sub, iat, exp}`.
pub fn organisation_token(
    private_key: &str,
    request: &OrganisationTokenRequest<'_>,
    now: OffsetDateTime,
) -> Result<String, CryptoError> {
    if request.sub.trim().is_empty() || request.key_id.trim().is_empty() {
        return Err(CryptoError::Signing("sub and key_id may not be empty".to_owned()));
    }
    let issued = now.unix_timestamp();
    let claims = json!({
        "iss": format!("{}/sk/{}", request.issuer_base.trim_end_matches('/'), request.key_id),
        "sub": request.sub,
        "iat": issued,
        "exp": issued + i64::from(request.ttl_seconds),
    });
    sign(&claims, None, &private_key_pem(private_key)?, Algorithm::Rs256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::verify;
    use crate::keypair::EcKeyPair;
    use crate::test_support::{at, ec_key, rsa_key, NOW};

    #[test]
    fn user_tokens_from_pem_or_base64_verify_with_the_public_half() {
        let pair: EcKeyPair = ec_key(5);
        let request = UserTokenRequest { entity_id: "user-1", tenant_id: Some("acme"), ttl_seconds: 3600, kid: None };
        for key in [pair.private_key_pem(), pair.private_key_base64()] {
            let token = user_token(&key, &request, at(NOW)).expect("signs");
            let claims = verify(&token, &pair.verification_key()).expect("verifies");
            assert_eq!(claims.get_str("entity_type"), Some("subscriber"));
            assert_eq!(claims.get_str("entity_id"), Some("user-1"));
            assert_eq!(claims.times().exp, Some(NOW + 3600));
            assert_eq!(claims.get("scope").and_then(|scope| scope.get("tenant_id")), Some(&json!("acme")));
            assert_eq!(crate::jwt::peek_header(&token).expect("header").kid, None);
        }
        let with_kid = UserTokenRequest { kid: Some("signing_key_X"), tenant_id: None, ..request.clone() };
        let token = user_token(&pair.private_key_pem(), &with_kid, at(NOW)).expect("signs");
        assert_eq!(crate::jwt::peek_header(&token).expect("header").kid.as_deref(), Some("signing_key_X"));
        assert!(verify(&token, &pair.verification_key()).expect("verifies").get("scope").is_none());
        // An RSA key cannot sign an ES256 token; garbage is no key.
        assert!(user_token(&rsa_key().private_key_pem(), &request, at(NOW)).is_err());
        assert!(user_token("not a key", &request, at(NOW)).is_err());
        assert!(user_token(&STANDARD.encode("hello"), &request, at(NOW)).is_err());
        let empty = UserTokenRequest { entity_id: " ", ..request };
        assert!(user_token(&pair.private_key_pem(), &empty, at(NOW)).is_err());
    }

    #[test]
    fn organisation_tokens_name_their_key_in_the_issuer() {
        let pair = rsa_key();
        let request = OrganisationTokenRequest {
            key_id: "01ARZ3NDEKTSV4RRFFQ69G5FAV",
            sub: "user-7",
            issuer_base: "https://versori.com/",
            ttl_seconds: 60,
        };
        let token = organisation_token(&pair.private_key_pem(), &request, at(NOW)).expect("signs");
        let claims = verify(&token, &pair.verification_key()).expect("verifies");
        assert_eq!(claims.iss(), Some("https://versori.com/sk/01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert_eq!(claims.sub(), Some("user-7"));
        assert_eq!(claims.times().exp, Some(NOW + 60));
        assert!(organisation_token(&ec_key(1).private_key_pem(), &request, at(NOW)).is_err());
    }
}

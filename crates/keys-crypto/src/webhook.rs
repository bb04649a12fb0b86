//! Webhook signatures in the Standard Webhooks format
//! (<https://www.standardwebhooks.com>, docs/WEBHOOKS.md): a secret is
//! `whsec_` and the base64 of 32 random bytes, and a delivery's
//! `webhook-signature` is `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
//! for each secret that signs, separated by spaces, so that any of the
//! format's libraries verifies it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use keys_core::webhook::EndpointSecret;
use rand_core::RngCore;
use zeroize::Zeroizing;

const PREFIX: &str = "whsec_";

/// A fresh signing secret.
pub fn generate_secret(rng: &mut impl RngCore) -> EndpointSecret {
    let mut bytes = Zeroizing::new([0_u8; 32]);
    rng.fill_bytes(bytes.as_mut());
    EndpointSecret::new(format!("{PREFIX}{}", STANDARD.encode(bytes.as_ref())))
}

/// The `webhook-signature` header of the message `id` sent at `timestamp`
/// (Unix seconds) with `body`, signed by each of `secrets`. A secret that
/// is not `whsec_` and base64 signs with its bytes as they are, as the
/// libraries do with a bare secret.
pub fn signature(secrets: &[&EndpointSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(id.len() + 24 + body.len());
    signed.extend_from_slice(id.as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(timestamp.to_string().as_bytes());
    signed.push(b'.');
    signed.extend_from_slice(body);
    let signatures: Vec<String> = secrets
        .iter()
        .map(|secret| {
            let text = secret.expose();
            let key = match text.strip_prefix(PREFIX).map(|encoded| STANDARD.decode(encoded)) {
                Some(Ok(bytes)) => Zeroizing::new(bytes),
                _ => Zeroizing::new(text.as_bytes().to_vec()),
            };
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
            format!("v1,{}", STANDARD.encode(ring::hmac::sign(&key, &signed).as_ref()))
        })
        .collect();
    signatures.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn secrets_are_whsec_and_32_bytes_of_base64() {
        let secret = generate_secret(&mut OsRng);
        let encoded = secret.expose().strip_prefix("whsec_").expect("prefixed");
        assert_eq!(STANDARD.decode(encoded).expect("base64").len(), 32);
        assert_ne!(secret, generate_secret(&mut OsRng));
    }

    /// The example of the Standard Webhooks specification's reference
    /// libraries (their test suites sign this message with this secret).
    #[test]
    fn signs_as_the_reference_libraries_do() {
        let secret = EndpointSecret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let body = br#"{"test": 2432232314}"#;
        let signed = signature(&[&secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(signed, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_secrets_give_two_signatures() {
        let (one, two) = (generate_secret(&mut OsRng), generate_secret(&mut OsRng));
        let both = signature(&[&one, &two], "evt_1", 1, b"{}");
        let parts: Vec<&str> = both.split(' ').collect();
        assert_eq!(parts, [signature(&[&one], "evt_1", 1, b"{}"), signature(&[&two], "evt_1", 1, b"{}")]);
    }
}

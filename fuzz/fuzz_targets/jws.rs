//! JWS parsing and verification on arbitrary text. Never a panic, and never
//! a token that verifies: the keys are generated here and their private
//! halves dropped at once, so a verifying token would be a forgery (`alg:
//! none`, HS256 keyed with the public key, a malleable signature, …).
#![no_main]

use std::sync::LazyLock;

use keys_crypto::jwt::{self, Algorithm, VerificationKey};
use keys_crypto::{EcKeyPair, RsaKeyPair};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

static KEYS: LazyLock<[VerificationKey; 2]> = LazyLock::new(|| {
    let mut rng = ChaCha20Rng::seed_from_u64(0x6b65_7973);
    let ec = EcKeyPair::generate(&mut rng).public_key_pem();
    let rsa = RsaKeyPair::generate(&mut rng).public_key_pem();
    [
        VerificationKey::from_pem(Algorithm::Es256, &ec).expect("an EC public key"),
        VerificationKey::from_pem(Algorithm::Rs256, &rsa).expect("an RSA public key"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let _ = jwt::peek_header(token);
    if let Ok(claims) = jwt::peek_unverified_claims(token) {
        let _ = (claims.sub(), claims.iss());
    }
    for key in KEYS.iter() {
        assert!(jwt::verify(token, key).is_err(), "a token verified against a key whose private half nobody has");
    }
});

//! The secret parsers (`SS.` API keys, `SS.PUBK.` public keys, `kst_`
//! service tokens) on arbitrary text: never a panic; what parses reads back
//! as itself, and its mask shows ten characters and no more.
#![no_main]

use keys_crypto::{ApiKeySecret, PublicKeyValue, ServiceToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(secret) = ApiKeySecret::parse(text) {
        assert_eq!(secret.expose(), text);
        let again = ApiKeySecret::parse(secret.expose()).expect("reparses");
        assert_eq!(again.digest(), secret.digest());
        let masked = secret.masked();
        assert_eq!(masked.len(), 15);
        assert_eq!(&masked[..10], &text[..10]);
    }
    if let Ok(token) = ServiceToken::parse(text) {
        assert_eq!(token.expose(), text);
        assert_eq!(ServiceToken::parse(token.expose()).expect("reparses").digest(), token.digest());
    }
    if let Ok(value) = PublicKeyValue::parse(text) {
        assert_eq!(value.as_str(), text);
    }
});

//! Selection of the `jsonwebtoken` crypto provider, for [`crate::mint::sign`]
//! (verification does not go through jsonwebtoken; see [`crate::jwt`]).
//!
//! jsonwebtoken 11 picks its provider from its own crate features; with
//! exactly one backend compiled in (our `rust_crypto`) it needs nothing. But
//! Cargo features are additive: if any other crate in a build ever enables
//! `aws_lc_rs` as well, jsonwebtoken can no longer choose and its fallback
//! provider panics on first use. Installing the RustCrypto provider
//! explicitly before every use keeps this crate working in that case; when
//! some other code installed a provider first, that earlier choice stands
//! (installation fails quietly) and it is still a working provider.

use std::sync::Once;

static INSTALL: Once = Once::new();

/// Makes sure jsonwebtoken has a process-wide provider. Cheap after the first
/// call.
pub(crate) fn ensure_installed() {
    INSTALL.call_once(|| {
        // An error only means a provider is installed already.
        let _already_installed = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

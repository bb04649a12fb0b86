//! `keysd sign user-token | jwt`: tokens minted locally with a private key
//! keysd returned, at the system clock (no database).

use anyhow::{anyhow, Context};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum SignCommand {
    /// An ES256 secure-mode user token, as `/v1/verify/public_key/` checks it (docs/API.md, Verification).
    UserToken {
        /// File holding the signing key's `private_key_pem` or `private_key_base64`.
        #[arg(long, value_name = "FILE")]
        private_key: std::path::PathBuf,
        #[arg(long)]
        entity_id: String,
        #[arg(long)]
        tenant_id: Option<String>,
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
        ttl_seconds: u32,
        /// The signing key's uid as `kid` (optional: keysd tries the active key
        /// and the rolled keys in grace).
        #[arg(long, value_name = "UID")]
        kid: Option<String>,
    },
    /// An RS256 Versori-style JWT for an organisation key.
    Jwt {
        /// File holding the organisation key's `privateKey` PEM (or its base64).
        #[arg(long, value_name = "FILE")]
        private_key: std::path::PathBuf,
        #[arg(long)]
        key_id: String,
        #[arg(long)]
        sub: String,
        #[arg(long, default_value = "https://versori.com")]
        issuer_base: String,
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
        ttl_seconds: u32,
    },
}

/// `keysd sign …`: reads the key file, mints the token at the system clock.
pub fn sign(command: SignCommand) -> anyhow::Result<String> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map(zeroize::Zeroizing::new)
            .with_context(|| format!("cannot read the private key file {}", path.display()))
    };
    let now = time::OffsetDateTime::now_utc();
    match command {
        SignCommand::UserToken { private_key, entity_id, tenant_id, ttl_seconds, kid } => {
            let request = keys_crypto::mint::UserTokenRequest {
                entity_id: &entity_id,
                tenant_id: tenant_id.as_deref(),
                ttl_seconds,
                kid: kid.as_deref(),
            };
            keys_crypto::mint::user_token(&read(&private_key)?, &request, now).map_err(|error| anyhow!("{error}"))
        }
        SignCommand::Jwt { private_key, key_id, sub, issuer_base, ttl_seconds } => {
            let request = keys_crypto::mint::OrganisationTokenRequest {
                key_id: &key_id,
                sub: &sub,
                issuer_base: &issuer_base,
                ttl_seconds,
            };
            keys_crypto::mint::organisation_token(&read(&private_key)?, &request, now)
                .map_err(|error| anyhow!("{error}"))
        }
    }
}

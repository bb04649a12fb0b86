//! The `--max-…` flags of `keysd serve`: the per-organisation caps of
//! keys-core's [`Quotas`], which the store holds every create to (a 400 in
//! the dialect's error shape when one is reached).

use clap::Args;
use keys_core::Quotas;

/// The caps on what an organisation may hold (see docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Args)]
pub struct QuotaArgs {
    /// Most workspaces an organisation may have.
    #[arg(
        long,
        env = "KEYSD_MAX_WORKSPACES_PER_ORGANISATION",
        value_name = "N",
        default_value_t = Quotas::DEFAULT_WORKSPACES_PER_ORGANISATION,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_workspaces_per_organisation: u32,
    /// Most live keys of each kind (API keys, public keys, signing keys)
    /// a workspace may have; rolled and disabled keys count until deleted.
    #[arg(
        long,
        env = "KEYSD_MAX_KEYS_PER_WORKSPACE",
        value_name = "N",
        default_value_t = Quotas::DEFAULT_KEYS_PER_WORKSPACE,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_keys_per_workspace: u32,
    /// Most live organisation signing keys (dialect 2, RSA) an organisation
    /// may have.
    #[arg(
        long,
        env = "KEYSD_MAX_ORGANISATION_KEYS",
        value_name = "N",
        default_value_t = Quotas::DEFAULT_ORGANISATION_KEYS_PER_ORGANISATION,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_organisation_keys: u32,
}

impl QuotaArgs {
    /// The caps these flags ask for (each is at least 1: the parser refuses 0).
    pub fn quotas(&self) -> Result<Quotas, keys_core::CoreError> {
        Quotas::new(self.max_workspaces_per_organisation, self.max_keys_per_workspace, self.max_organisation_keys)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use keys_core::QuotaKind;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        quotas: QuotaArgs,
    }

    fn parsed(arguments: &[&str]) -> Result<Quotas, String> {
        let flags = Flags::try_parse_from(std::iter::once("keysd").chain(arguments.iter().copied()))
            .map_err(|error| error.to_string())?;
        flags.quotas.quotas().map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_are_keys_core_defaults() {
        assert_eq!(parsed(&[]), Ok(Quotas::default()));
    }

    #[test]
    fn each_flag_sets_its_cap_and_zero_is_refused() {
        let quotas = parsed(&[
            "--max-workspaces-per-organisation",
            "3",
            "--max-keys-per-workspace",
            "4",
            "--max-organisation-keys",
            "5",
        ])
        .expect("parses");
        assert_eq!(quotas.limit(QuotaKind::Workspaces), 3);
        assert_eq!(quotas.limit(QuotaKind::ApiKeys), 4);
        assert_eq!(quotas.limit(QuotaKind::PublicKeys), 4);
        assert_eq!(quotas.limit(QuotaKind::OrganisationKeys), 5);
        for flag in ["--max-workspaces-per-organisation", "--max-keys-per-workspace", "--max-organisation-keys"] {
            assert!(parsed(&[flag, "0"]).is_err(), "{flag} 0");
        }
    }
}

//! The two signature algorithms of keysd, each pinned by a key.

use std::fmt;

/// The two signature algorithms of keysd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256: workspace signing keys.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256: organisation keys.
    Rs256,
}

impl Algorithm {
    /// The JOSE name (`ES256`, `RS256`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
        }
    }

    /// Reads a JOSE `alg` name; exact, case-sensitive match (RFC 7515
    /// §4.1.1 names are case-sensitive).
    pub fn from_jose_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

//! What `keysd serve` asks of the operating system at start: as many file
//! descriptors as it may have (each connection holds one), and no core
//! dumps (a core file would hold whatever secrets and private keys were in
//! memory). Both go through the `rlimit` crate, whose safe functions wrap
//! `getrlimit`/`setrlimit` (the workspace forbids `unsafe`).

/// Descriptors kept for everything that is not a client connection: the
/// database pool, the SQLite files, the listeners, stdio, the RSA pool's
/// thread. A quarter of the limit, at least this many.
const RESERVED_DESCRIPTORS: u64 = 64;

/// The most connections the derived default ever allows.
const MAX_DEFAULT_CONNECTIONS: u64 = 65_536;

/// Raises the soft limit on open files to the hard limit and returns the
/// soft limit in force afterwards (`None` where it cannot be read).
pub fn raise_descriptor_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let (soft, hard) = match rlimit::Resource::NOFILE.get() {
            Ok(limits) => limits,
            Err(error) => {
                tracing::warn!(error = %error, "cannot read the open-files limit");
                return None;
            }
        };
        if soft >= hard {
            return Some(soft);
        }
        match rlimit::Resource::NOFILE.set(hard, hard) {
            Ok(()) => {
                tracing::info!(from = soft, to = hard, "raised the open-files limit");
                Some(hard)
            }
            Err(error) => {
                tracing::warn!(error = %error, soft, hard, "cannot raise the open-files limit");
                Some(soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Turns core dumps off for this process (soft and hard limit 0, so nothing
/// in the process can turn them back on).
pub fn disable_core_dumps() {
    #[cfg(unix)]
    if let Err(error) = rlimit::Resource::CORE.set(0, 0) {
        tracing::warn!(error = %error, "cannot disable core dumps");
    }
}

/// The default of `--max-connections`: three quarters of the descriptor
/// limit (keeping at least [`RESERVED_DESCRIPTORS`] for the rest), at most
/// [`MAX_DEFAULT_CONNECTIONS`]; the embedders' default where the limit is
/// unknown.
pub fn default_max_connections(descriptor_limit: Option<u64>) -> usize {
    let Some(limit) = descriptor_limit else { return keys_http::DEFAULT_MAX_CONNECTIONS };
    let reserved = (limit / 4).max(RESERVED_DESCRIPTORS);
    let connections = limit.saturating_sub(reserved).clamp(1, MAX_DEFAULT_CONNECTIONS);
    usize::try_from(connections).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_connections_stay_below_the_descriptor_limit() {
        assert_eq!(default_max_connections(Some(256)), 192);
        assert_eq!(default_max_connections(Some(1024)), 768);
        assert_eq!(default_max_connections(Some(100)), 36);
        assert_eq!(default_max_connections(Some(10)), 1);
        assert_eq!(default_max_connections(Some(1 << 20)), 65_536);
        assert_eq!(default_max_connections(None), keys_http::DEFAULT_MAX_CONNECTIONS);
        for limit in [64, 65, 200, 4096, 1 << 16] {
            assert!((default_max_connections(Some(limit)) as u64) < limit, "{limit}");
        }
    }
}

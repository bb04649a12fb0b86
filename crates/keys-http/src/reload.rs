//! Files the server re-reads while it runs (the TLS certificate and key,
//! GitHub's secret-scanning keys): when to load a reading, when to warn of
//! one that does not load, and the thread that polls.
//!
//! A reading is told from the last by the SHA-256 of its contents (or the
//! error that stopped it). One that does not load leaves the previous one
//! in use; it is logged when it is still the same at the next poll, since
//! a rotation that writes files one after the other passes through a bad
//! state for a moment, and once only until it changes.

use std::sync::Weak;
use std::time::Duration;

/// What one reading found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    Contents([u8; 32]),
    Unreadable(String),
}

/// The reading in use, and the last that did not load.
#[derive(Debug)]
pub(crate) struct Reload {
    loaded: Seen,
    /// A reading that did not load, and whether it was logged.
    failed: Option<(Seen, bool)>,
}

impl Reload {
    /// Starts from the reading the holder was made with.
    pub(crate) fn new(digest: [u8; 32]) -> Self {
        Self { loaded: Seen::Contents(digest), failed: None }
    }

    /// Whether `seen` is worth loading: not the reading in use, nor a
    /// failure already logged.
    pub(crate) fn wants(&mut self, seen: &Seen) -> bool {
        if *seen == self.loaded {
            self.failed = None;
            return false;
        }
        !matches!(&self.failed, Some((failed, true)) if failed == seen)
    }

    /// `seen` loaded and is in use now.
    pub(crate) fn loaded(&mut self, seen: Seen) {
        self.loaded = seen;
        self.failed = None;
    }

    /// The reading that did not load, if one is pending, and whether it was
    /// logged.
    #[cfg(test)]
    pub(crate) fn pending_failure(&self) -> Option<&(Seen, bool)> {
        self.failed.as_ref()
    }

    /// `seen` did not load: whether to log it now (the second poll that
    /// finds it unchanged).
    pub(crate) fn failed(&mut self, seen: Seen) -> bool {
        match &mut self.failed {
            Some((failed, logged)) if *failed == seen => {
                *logged = true;
                true
            }
            _ => {
                self.failed = Some((seen, false));
                false
            }
        }
    }
}

/// Calls `refresh` every `interval` on a thread of its own (blocking file
/// reads, no runtime needed) until `holder` is gone: the thread holds only
/// a weak reference, so it ends at the first poll after the last strong one
/// is dropped. `what` names the thread and the warning if it cannot start.
pub(crate) fn watch<T: Send + Sync + 'static>(what: &str, interval: Duration, holder: Weak<T>, refresh: fn(&T)) {
    let spawned = std::thread::Builder::new().name(format!("keysd-{what}-reload")).spawn(move || loop {
        std::thread::sleep(interval);
        let Some(holder) = holder.upgrade() else { return };
        refresh(&holder);
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the {what} file watcher: changes to its file need a restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_reading_is_logged_at_its_second_sighting_and_once() {
        let mut reload = Reload::new([1; 32]);
        assert!(!reload.wants(&Seen::Contents([1; 32])), "the reading in use");
        let bad = Seen::Unreadable("no such file".to_owned());
        assert!(reload.wants(&bad));
        assert!(!reload.failed(bad.clone()), "not at its first sighting");
        assert!(reload.wants(&bad));
        assert!(reload.failed(bad.clone()), "at its second");
        assert!(!reload.wants(&bad), "and never again while it lasts");
        let good = Seen::Contents([2; 32]);
        assert!(reload.wants(&good));
        reload.loaded(good.clone());
        assert!(!reload.wants(&good));
        assert!(reload.wants(&bad), "a bad reading after a good one is new again");
    }
}

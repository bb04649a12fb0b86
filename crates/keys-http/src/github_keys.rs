//! The keys GitHub's secret scanning signs its alerts with, for the alert
//! endpoint (docs/API.md): [`GithubKeys`] holds the current
//! [`GithubKeySet`], read from a copy of GitHub's key file and re-read
//! while the server runs, as [`crate::tls`] does for its certificate.
//!
//! keysd never fetches the file itself (it makes no outbound requests):
//! the operator keeps the copy up to date. A thread reads it every
//! [`RELOAD_INTERVAL`] and swaps in the new set when the contents changed
//! and they load. A file that does not load (unreadable, too big, not
//! GitHub's format, a key that is not P-256) leaves the previous set in
//! place; it is logged as a warning, naming the file, when it is still the
//! same at the next poll, since a file rewritten in place passes through a
//! truncated state for a moment. Writing the new file beside the old one
//! and renaming it over avoids even that moment.

use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use keys_crypto::github::GithubKeySet;
use sha2::{Digest, Sha256};

use crate::reload::{Reload, Seen};

/// How often the key file is read again: a changed file is used within
/// this (twice this for the warning about a bad one).
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// GitHub's alert-signing keys, kept up to date with their file. Cheap to
/// clone; the file is watched until the last clone is dropped.
#[derive(Clone)]
pub struct GithubKeys {
    watched: Arc<Watched>,
}

impl fmt::Debug for GithubKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GithubKeys")
            .field("file", &self.watched.file)
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

impl GithubKeys {
    /// Reads GitHub's key file (the JSON of
    /// `https://api.github.com/meta/public_keys/secret_scanning`) and starts
    /// watching it. The error is one line naming the file.
    pub fn load(file: impl Into<PathBuf>) -> Result<Self, String> {
        let file = file.into();
        let reading = read(&file)?;
        let key_set = reading.key_set(&file)?;
        tracing::info!(file = %file.display(), keys = key_set.len(), "GitHub secret-scanning keys loaded");
        let watched = Arc::new(Watched {
            current: RwLock::new(Arc::new(key_set)),
            reload: Mutex::new(Reload::new(reading.digest)),
            file,
        });
        crate::reload::watch("github-keys", RELOAD_INTERVAL, Arc::downgrade(&watched), Watched::refresh);
        Ok(Self { watched })
    }

    /// The keys as of the last reading that loaded. An alert is checked
    /// against one set from start to end, whatever a reload does meanwhile.
    pub fn current(&self) -> Arc<GithubKeySet> {
        Arc::clone(&self.watched.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What one reading of the file found: its bytes and their digest.
struct Reading {
    bytes: Vec<u8>,
    digest: [u8; 32],
}

/// Reads at most one byte more than a key file may hold, so that a wrong
/// path (a log, a device) costs no more than that.
fn read(file: &Path) -> Result<Reading, String> {
    let unreadable = |error: io::Error| format!("cannot read {}: {error}", file.display());
    let limit = GithubKeySet::MAX_FILE_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    std::fs::File::open(file).and_then(|opened| opened.take(limit).read_to_end(&mut bytes)).map_err(unreadable)?;
    if bytes.len() > GithubKeySet::MAX_FILE_BYTES {
        return Err(format!(
            "{}: more than {} bytes, too big for GitHub's key file",
            file.display(),
            GithubKeySet::MAX_FILE_BYTES
        ));
    }
    let digest = Sha256::digest(&bytes).into();
    Ok(Reading { bytes, digest })
}

impl Reading {
    fn key_set(&self, file: &Path) -> Result<GithubKeySet, String> {
        GithubKeySet::from_json(&self.bytes).map_err(|error| format!("{}: {error}", file.display()))
    }
}

/// The set alerts are checked against, and what the watcher last saw.
struct Watched {
    file: PathBuf,
    current: RwLock<Arc<GithubKeySet>>,
    reload: Mutex<Reload>,
}

impl Watched {
    /// Reads the file; uses its keys when it changed and loads.
    fn refresh(&self) {
        // Every update of the state is whole: a poisoned lock holds a valid one.
        let mut reload = self.reload.lock().unwrap_or_else(PoisonError::into_inner);
        let reading = read(&self.file);
        let seen = match &reading {
            Ok(reading) => Seen::Contents(reading.digest),
            Err(error) => Seen::Unreadable(error.clone()),
        };
        if !reload.wants(&seen) {
            return;
        }
        match reading.and_then(|reading| reading.key_set(&self.file)) {
            Ok(key_set) => {
                tracing::info!(
                    file = %self.file.display(),
                    keys = key_set.len(),
                    "GitHub secret-scanning keys reloaded"
                );
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key_set);
                reload.loaded(seen);
            }
            Err(error) => {
                if reload.failed(seen) {
                    tracing::warn!(
                        file = %self.file.display(),
                        %error,
                        "GitHub secret-scanning keys not reloaded: the previous keys are still used"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Instant;

    use keys_crypto::github::GithubTestSigner;
    use rand_core::{OsRng, RngCore};

    use super::*;

    /// A directory of its own for one test, removed when dropped.
    struct TestDirectory(PathBuf);

    impl TestDirectory {
        fn new() -> Self {
            let name = format!("keys-http-github-keys-{}-{:016x}", std::process::id(), OsRng.next_u64());
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir(&path).unwrap();
            Self(path)
        }

        fn file(&self) -> PathBuf {
            self.0.join("github-keys.json")
        }

        /// Replaces the file the way operators are told to: write beside,
        /// then rename over, so the watcher never sees half a file.
        fn replace(&self, contents: &[u8]) {
            let beside = self.0.join("github-keys.json.new");
            std::fs::write(&beside, contents).unwrap();
            std::fs::rename(&beside, self.file()).unwrap();
        }
    }

    impl Drop for TestDirectory {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn identifiers(keys: &GithubKeys) -> Vec<String> {
        keys.current().identifiers().map(str::to_owned).collect()
    }

    /// Waits for the watcher thread to make `done` true, for one reload
    /// interval and a generous margin for a busy machine.
    fn wait_until(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + RELOAD_INTERVAL * 3;
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        done()
    }

    #[test]
    fn loads_githubs_file_and_verifies_with_it() {
        let directory = TestDirectory::new();
        let signer = GithubTestSigner::generate(&mut OsRng);
        directory.replace(signer.key_set_json("k1").as_bytes());
        let keys = GithubKeys::load(directory.file()).unwrap();
        assert_eq!(identifiers(&keys), ["k1"]);
        let body = br#"[{"token":"x","type":"t","url":"u","source":"content"}]"#;
        assert_eq!(keys.current().verify(Some("k1"), Some(&signer.sign(body)), body), Ok(()));
    }

    #[test]
    fn a_file_that_does_not_load_is_refused_naming_it() {
        let directory = TestDirectory::new();
        let file = directory.file();
        let named = |error: String| {
            assert!(error.contains(&file.display().to_string()), "{error}");
            error
        };
        let error = named(GithubKeys::load(&file).unwrap_err());
        assert!(error.starts_with("cannot read "), "{error}");
        directory.replace(&vec![b' '; GithubKeySet::MAX_FILE_BYTES + 1]);
        let error = named(GithubKeys::load(&file).unwrap_err());
        assert!(error.contains("too big"), "{error}");
        directory.replace(b"{\"public_keys\": [");
        let error = named(GithubKeys::load(&file).unwrap_err());
        assert!(error.contains("not valid JSON"), "{error}");
        directory.replace(br#"{"public_keys": [{"key_identifier": "k1", "key": "-----BEGIN PUBLIC KEY-----"}]}"#);
        let error = named(GithubKeys::load(&file).unwrap_err());
        assert!(error.contains("key k1: not a P-256 public key"), "{error}");
        let error = GithubKeys::load(&directory.0).unwrap_err();
        assert!(error.starts_with(&format!("cannot read {}: ", directory.0.display())), "{error}");
    }

    #[test]
    fn a_changed_file_is_picked_up() {
        let directory = TestDirectory::new();
        let (first, second) = (GithubTestSigner::generate(&mut OsRng), GithubTestSigner::generate(&mut OsRng));
        directory.replace(first.key_set_json("k1").as_bytes());
        let keys = GithubKeys::load(directory.file()).unwrap();
        let before = keys.current();
        directory.replace(second.key_set_json("k2").as_bytes());
        assert!(wait_until(|| identifiers(&keys) == ["k2"]), "still {:?}", identifiers(&keys));
        let body = b"[]";
        assert_eq!(keys.current().verify(Some("k2"), Some(&second.sign(body)), body), Ok(()));
        // The set taken before the change is still whole.
        assert_eq!(before.verify(Some("k1"), Some(&first.sign(body)), body), Ok(()));
    }

    #[test]
    fn the_same_contents_keep_the_same_set() {
        let directory = TestDirectory::new();
        let json = GithubTestSigner::generate(&mut OsRng).key_set_json("k1");
        directory.replace(json.as_bytes());
        let keys = GithubKeys::load(directory.file()).unwrap();
        let before = keys.current();
        directory.replace(json.as_bytes());
        keys.watched.refresh();
        assert!(Arc::ptr_eq(&before, &keys.current()));
    }

    #[test]
    fn a_broken_rewrite_keeps_the_previous_set() {
        let directory = TestDirectory::new();
        directory.replace(GithubTestSigner::generate(&mut OsRng).key_set_json("k1").as_bytes());
        let keys = GithubKeys::load(directory.file()).unwrap();
        let before = keys.current();
        // Polled here rather than waited for, so the test knows the file
        // was read; the watcher thread may poll in between, which changes
        // nothing of what is asserted.
        for broken in [&b"{\"public_keys\": [{\"key_identifier\": \"k2\""[..], b"", b"{\"public_keys\": 7}"] {
            directory.replace(broken);
            keys.watched.refresh();
            keys.watched.refresh();
            assert!(Arc::ptr_eq(&before, &keys.current()), "{}", String::from_utf8_lossy(broken));
            let reload = keys.watched.reload.lock().unwrap();
            assert!(matches!(reload.pending_failure(), Some((Seen::Contents(_), true))), "{reload:?}");
        }
        std::fs::remove_file(directory.file()).unwrap();
        keys.watched.refresh();
        keys.watched.refresh();
        assert!(Arc::ptr_eq(&before, &keys.current()));
        assert!(matches!(keys.watched.reload.lock().unwrap().pending_failure(), Some((Seen::Unreadable(_), true))));
        // The watcher outlives the failures: a good file is picked up.
        directory.replace(GithubTestSigner::generate(&mut OsRng).key_set_json("k3").as_bytes());
        assert!(wait_until(|| identifiers(&keys) == ["k3"]), "still {:?}", identifiers(&keys));
        assert!(keys.watched.reload.lock().unwrap().pending_failure().is_none());
    }

    #[test]
    fn the_watcher_keeps_nothing_alive() {
        let directory = TestDirectory::new();
        directory.replace(GithubTestSigner::generate(&mut OsRng).key_set_json("k1").as_bytes());
        let keys = GithubKeys::load(directory.file()).unwrap();
        let clone = keys.clone();
        let watched = Arc::downgrade(&keys.watched);
        drop(keys);
        assert!(watched.upgrade().is_some(), "a clone still holds it");
        drop(clone);
        // The thread holds a weak reference only: with the last holder gone
        // it finds nothing at its next poll and returns.
        assert!(watched.upgrade().is_none());
    }
}

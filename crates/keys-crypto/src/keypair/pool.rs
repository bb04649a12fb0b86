//! A bounded, memory-only pool of pre-generated RSA key pairs.
//!
//! RSA-2048 generation takes tens to hundreds of milliseconds of CPU. One
//! background thread keeps up to `capacity` keys ready so that creating an
//! organisation key normally returns at once; when the pool is empty (a
//! burst of creates), [`RsaKeyPool::take`] generates inline instead of
//! waiting, so a caller never blocks on the thread.
//!
//! Every key is removed from the queue under the lock before it is returned,
//! so no key is ever handed out twice. Keys never touch disk, and dropping
//! the pool stops and joins the thread (waiting for at most the one
//! generation in progress) and zeroizes the unused keys.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand_core::OsRng;

use super::RsaKeyPair;

/// A pool of ready RSA key pairs, refilled by a background thread.
pub struct RsaKeyPool {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

struct Shared {
    capacity: usize,
    state: Mutex<State>,
    /// Signalled when a key is taken (the worker may refill), when the pool
    /// shuts down, and when a key is added (for `wait_until_full`).
    changed: Condvar,
}

struct State {
    ready: VecDeque<RsaKeyPair>,
    shutting_down: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half
        // updated (push and pop are single calls), so a poisoned lock is
        // still consistent and it is safe to carry on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The default number of keys kept ready.
pub const DEFAULT_POOL_CAPACITY: usize = 8;

impl RsaKeyPool {
    /// Starts a pool that keeps up to `capacity` keys ready, filled from the
    /// operating system's RNG on a background thread named `rsa-key-pool`.
    /// A capacity of 0 starts no thread and every `take` generates inline.
    pub fn new(capacity: usize) -> Self {
        let shared = Arc::new(Shared {
            capacity,
            state: Mutex::new(State { ready: VecDeque::with_capacity(capacity), shutting_down: false }),
            changed: Condvar::new(),
        });
        let worker = if capacity == 0 {
            None
        } else {
            let worker_shared = Arc::clone(&shared);
            // If the thread cannot be spawned (resource exhaustion), the pool
            // still works: it degrades to inline generation.
            std::thread::Builder::new().name("rsa-key-pool".to_owned()).spawn(move || refill(&worker_shared)).ok()
        };
        Self { shared, worker }
    }

    /// A pool with no background thread: every `take` generates inline. For
    /// tests and for tools that create one key and exit.
    pub fn inline() -> Self {
        Self::new(0)
    }

    /// How many keys it keeps ready at most.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// How many keys are ready right now.
    pub fn available(&self) -> usize {
        self.shared.lock().ready.len()
    }

    /// A ready key if there is one, otherwise a key generated inline now.
    /// Never blocks on the background thread.
    pub fn take(&self) -> RsaKeyPair {
        self.try_take().unwrap_or_else(|| RsaKeyPair::generate(&mut OsRng))
    }

    /// A ready key if there is one; never generates.
    pub fn try_take(&self) -> Option<RsaKeyPair> {
        let mut state = self.shared.lock();
        let pooled = state.ready.pop_front();
        if pooled.is_some() {
            // Room for one more: wake the worker if it sleeps.
            self.shared.changed.notify_all();
        }
        pooled
    }

    /// Blocks until the pool holds `capacity` keys or `timeout` passes, and
    /// says whether it is full. Useful to warm up at start-up, and in tests
    /// to synchronise with the worker without sleeping.
    pub fn wait_until_full(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if state.ready.len() >= self.shared.capacity {
                return true;
            }
            if self.worker.is_none() || state.shutting_down {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.shared.changed.wait_timeout(state, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// The worker: sleep while the pool is full, generate while it is not, stop
/// when asked.
fn refill(shared: &Shared) {
    loop {
        {
            let mut state = shared.lock();
            while !state.shutting_down && state.ready.len() >= shared.capacity {
                state = shared.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            if state.shutting_down {
                return;
            }
        }
        // Generate without the lock, so `take` is never held up by it.
        let key = RsaKeyPair::generate(&mut OsRng);
        let mut state = shared.lock();
        if state.shutting_down {
            return;
        }
        state.ready.push_back(key);
        shared.changed.notify_all();
    }
}

impl Drop for RsaKeyPool {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.shutting_down = true;
            // Dropping the ready keys zeroizes them now rather than whenever
            // the worker lets go of its `Arc`.
            state.ready.clear();
            self.shared.changed.notify_all();
        }
        if let Some(worker) = self.worker.take() {
            // A panic in the worker has nothing left to report here.
            let _joined = worker.join();
        }
    }
}

impl fmt::Debug for RsaKeyPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKeyPool")
            .field("capacity", &self.shared.capacity)
            .field("available", &self.available())
            .field("background_thread", &self.worker.is_some())
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn inline_pool_generates_distinct_keys_without_a_thread() {
        let pool = RsaKeyPool::inline();
        assert_eq!(pool.capacity(), 0);
        assert!(pool.worker.is_none());
        assert!(pool.wait_until_full(Duration::from_secs(0)));
        let key = pool.take();
        assert_eq!(pool.available(), 0);
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    }

    #[test]
    fn background_pool_fills_hands_out_each_key_once_and_stops_on_drop() {
        let pool = RsaKeyPool::new(2);
        assert!(format!("{pool:?}").contains("capacity: 2"));
        assert!(pool.wait_until_full(Duration::from_secs(120)));
        assert_eq!(pool.available(), 2);
        let ready: HashSet<String> = {
            let state = pool.shared.lock();
            state.ready.iter().map(RsaKeyPair::public_key_pem).collect()
        };
        assert_eq!(ready.len(), 2);

        // The first two takes come from the pool (whatever the worker does
        // meanwhile, it only appends behind them), the third is pooled or
        // inline; all three are different keys.
        let first = pool.take().public_key_pem();
        let second = pool.take().public_key_pem();
        let third = pool.take().public_key_pem();
        assert!(ready.contains(&first));
        assert!(ready.contains(&second));
        let handed_out: HashSet<&String> = [&first, &second, &third].into_iter().collect();
        assert_eq!(handed_out.len(), 3);

        let shared = Arc::clone(&pool.shared);
        drop(pool);
        // Drop joined the worker, so only our clone of `shared` is left.
        assert_eq!(Arc::strong_count(&shared), 1);
        assert!(shared.lock().shutting_down);
        assert!(shared.lock().ready.is_empty());
    }
}

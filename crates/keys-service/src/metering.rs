//! Metering at verification (docs/METERING.md, Across replicas): what a
//! replica holds of each metered subject, and the one path that meters an
//! API key's verification with keys-core's [`decide`].
//!
//! Per subject (a key's roll chain, an identity) a replica keeps:
//! - its meter as last read (limits, credit rule, the pool's numbers),
//!   read again when the store says a workspace's meters changed
//!   ([`keys_store::Lookups::meter_generation`]), or within a second when
//!   the store cannot say;
//! - a **slice of credits** reserved from the shared balance
//!   ([`keys_store::Mutations::reserve_credits`]) and spent from memory;
//!   handed back after [`CREDITS_IDLE`] without use and at shutdown;
//! - per rate limit, a **batch of tokens** taken from the shared counter
//!   ([`keys_store::Mutations::take_tokens`]), used within the limit's
//!   horizon ([`horizon`]) or given back, and the replica's own GCRA
//!   counter, which decides first (exact in one process).
//!
//! In the steady state a verification reads and writes memory only; the
//! store is asked when a slice or a batch runs out, which is what bounds
//! the statements per verification.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError, RwLock};
use std::time::Duration;

use keys_core::meter::{
    decide, Cost, CreditBalance, CreditPool, Decision, Meter, MeterCounters, MeterOwner, MeterRequest, MeterSubject,
    Metered, RateLimit, RateLimitName, RateLimitState, Reserved,
};
use keys_core::{ApiKey, ApiKeyId, Workspace, WorkspaceUid};
use keys_store::{MeterOf, Store, StoreError, StoredMeter, TokensTaken};
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::usage::UsageFlusher;
use crate::Service;

/// A slice of credits unused this long is handed back.
pub const CREDITS_IDLE: Duration = Duration::from_secs(2);
/// How often idle slices and expired batches are handed back.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// How long a replica that found a balance empty waits before asking
/// again (another replica may hand a slice back meanwhile).
const EXHAUSTED_RETRY: time::Duration = time::Duration::milliseconds(500);
/// Without announcements, meters are read again this often.
const REREAD: Duration = Duration::from_secs(1);
/// The most slices a replica reserves at once, in credits.
const MAX_SLICE: u64 = 10_000;
/// Keys and subjects remembered; past it, everything is handed back and
/// forgotten.
const REMEMBERED: usize = 100_000;

/// How long tokens taken from a shared counter may be used before what is
/// left goes back: `duration / 20`, at most a second. Every token is
/// admitted at most this long after the shared counter admitted it, which
/// is what bounds the overshoot across replicas (docs/METERING.md).
pub fn horizon(limit: &RateLimit) -> time::Duration {
    let nanos = i64::from(limit.duration_seconds()) * 1_000_000_000 / 20;
    time::Duration::nanoseconds(nanos.min(1_000_000_000))
}

/// What a replica holds of metering.
#[derive(Default)]
pub struct Metering {
    keys: RwLock<HashMap<ApiKeyId, Arc<KeyEntry>>>,
    subjects: StdMutex<HashMap<(WorkspaceUid, MeterOf), Arc<Shared>>>,
    /// Tokens of expired batches, given back by the next sweep.
    returns: StdMutex<Vec<Return>>,
}

/// One subject, shared by the keys that draw on it: its state behind a
/// short synchronous lock (held only for in-memory decisions, never across
/// an await, so that a hot key's verifications do not queue behind each
/// other), and an asynchronous lock that serialises its trips to the store
/// (a reservation, a batch, a hand-back) while verifications go on.
struct Shared {
    state: StdMutex<Subject>,
    trips: Mutex<()>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Subject> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Metering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Metering").field("subjects", &subjects).finish_non_exhaustive()
    }
}

/// What a key draws on, as last read.
struct KeyEntry {
    workspace: WorkspaceUid,
    external_id: Option<String>,
    generation: Option<u64>,
    read_at: OffsetDateTime,
    root: ApiKeyId,
    key: Option<Arc<Shared>>,
    identity: Option<Arc<Shared>>,
}

/// One metered subject as this replica holds it.
struct Subject {
    subject: MeterSubject,
    stored: StoredMeter,
    credits: Option<CreditSlice>,
    /// No credits were left in the shared balance when last asked: not
    /// asked again before this instant (unless the meter is read again or
    /// a refill is due), so that an empty balance costs a replica at most
    /// two statements a second, not one per request.
    exhausted: Option<(OffsetDateTime, u64)>,
    tokens: HashMap<RateLimitName, TokenBatch>,
    /// This replica's own GCRA counters.
    mirror: HashMap<RateLimitName, RateLimitState>,
    last_used: OffsetDateTime,
    /// The balance `credits.low` measures against when the subject has no
    /// refill: (epoch, the balance this replica first saw in it). A set
    /// starts a new epoch, so this is the set value, less what was spent
    /// before this replica read it.
    basis: (u64, u64),
}

#[derive(Debug, Clone, Copy)]
struct CreditSlice {
    epoch: u64,
    refilled_at: OffsetDateTime,
    unspent: u64,
    /// Spent from slices since the last reservation (sizes the next).
    spent: u64,
}

#[derive(Debug, Clone)]
struct TokenBatch {
    limit: RateLimit,
    left: u32,
    /// Used since `taken_at`.
    used: u32,
    /// What the previous horizon used (sizes the next batch).
    hint: u32,
    /// When the oldest token held was taken.
    taken_at: OffsetDateTime,
    /// The shared counter refused until then.
    refused_until: Option<OffsetDateTime>,
}

/// What a verification needs from the store before it can be decided.
enum Trip {
    /// A slice of `least` to `want` credits.
    Credits { least: u64, want: u64 },
    /// Tokens of a limit: at least `need`, up to `want`, giving back what
    /// an expired batch left (`returned`: tokens and when taken).
    Tokens { limit: RateLimit, need: u32, want: u32, returned: Option<(u32, OffsetDateTime)> },
    /// The slice goes back to pay a debt.
    PayDebt { slice: CreditSlice },
}

impl Subject {
    fn new(mut stored: StoredMeter, now: OffsetDateTime) -> Self {
        // Verification never reads an identity's meta: not held.
        stored.meta = None;
        let subject = match &stored.of {
            MeterOf::Key(root) => MeterSubject::ApiKey { root: root.clone() },
            MeterOf::Identity(external_id) => {
                MeterSubject::Identity { workspace: stored.workspace.clone(), external_id: external_id.clone() }
            }
        };
        let basis = (stored.pool.epoch(), stored.pool.available());
        Self {
            subject,
            stored,
            credits: None,
            exhausted: None,
            tokens: HashMap::new(),
            mirror: HashMap::new(),
            last_used: now,
            basis,
        }
    }

    /// The balance shown, what `credits.low` measures it against (the
    /// refill amount, else the epoch's first balance) and the epoch, when
    /// the subject spends credits.
    fn credits_basis(&self) -> Option<(u64, u64, u64)> {
        let rule = self.stored.meter.credits?;
        let remaining = self.credits_shown()?;
        let basis = rule.refill.map_or(self.basis.1, |refill| refill.amount());
        Some((remaining, basis, self.stored.pool.epoch()))
    }

    /// The meter read again: a slice of an older epoch is void (a set or a
    /// refill replaced the balance); a batch of a changed limit is taken
    /// out, and returned for its tokens to be given back.
    fn refreshed(&mut self, mut stored: StoredMeter) -> Vec<TokenBatch> {
        stored.meta = None;
        if self.credits.is_some_and(|slice| slice.epoch != stored.pool.epoch()) || stored.meter.credits.is_none() {
            self.credits = None;
        }
        let changed: Vec<RateLimitName> = self
            .tokens
            .iter()
            .filter(|(name, batch)| stored.meter.rate_limits.get(name) != Some(&batch.limit))
            .map(|(name, _)| name.clone())
            .collect();
        let dropped =
            changed.iter().filter_map(|name| self.tokens.remove(name)).filter(|batch| batch.left > 0).collect();
        self.mirror.retain(|name, _| stored.meter.rate_limits.get(name).is_some());
        self.exhausted = None;
        if stored.pool.epoch() != self.basis.0 {
            self.basis = (stored.pool.epoch(), stored.pool.available());
        }
        self.stored = stored;
        dropped
    }

    /// Whether anything of the shared balances is held here.
    fn holds_anything(&self) -> bool {
        self.credits.is_some_and(|slice| slice.unspent > 0) || self.tokens.values().any(|batch| batch.left > 0)
    }

    fn of(&self) -> (WorkspaceUid, MeterOf) {
        (self.stored.workspace.clone(), self.stored.of.clone())
    }

    /// Drops a slice that may no longer be spent at `now` (spent only in
    /// its epoch and refill period: dropped, not handed back).
    fn check_slice(&mut self, now: OffsetDateTime) {
        let (Some(rule), Some(slice)) = (self.stored.meter.credits, self.credits) else { return };
        let refill_due = rule.refill.is_some_and(|refill| refill.due(slice.refilled_at, now).is_some());
        if slice.epoch != self.stored.pool.epoch() || refill_due {
            self.credits = None;
        }
    }

    /// A `decrement` took more than the shared balance held: the slice
    /// this replica holds goes back at once, to pay the debt.
    fn debt_trip(&mut self) -> Option<Trip> {
        let slice = self.credits.filter(|slice| slice.unspent > 0 && self.stored.pool.debt() > 0)?;
        self.credits = None;
        Some(Trip::PayDebt { slice })
    }

    /// What this replica knows is left: its slice and what the shared
    /// balance held when last read.
    fn credits_shown(&self) -> Option<u64> {
        self.stored.meter.credits?;
        let held = self.credits.map_or(0, |slice| slice.unspent);
        Some((self.stored.pool.unleased() + held).saturating_sub(self.stored.pool.debt()))
    }

    /// The slice to ask for, or `None` when the balance was found empty a
    /// moment ago (and no refill is due since).
    fn credits_trip(&self, cost: u64, now: OffsetDateTime) -> Option<Trip> {
        let rule = self.stored.meter.credits?;
        // Nothing unless what this verification lacks is there: one that
        // cannot be admitted holds nothing back from the other replicas.
        let held = self.credits.map_or(0, |slice| slice.unspent);
        let least = cost.saturating_sub(held).max(1);
        let refill_due = rule.refill.is_some_and(|refill| refill.due(self.stored.pool.refilled_at(), now).is_some());
        let refused = self.exhausted.is_some_and(|(until, refused)| now < until && least >= refused);
        if refused && !refill_due {
            return None;
        }
        let spent = self.credits.map_or(0, |slice| slice.spent);
        let want = least.max(spent.saturating_mul(2).clamp(16, MAX_SLICE).min(self.stored.pool.available() / 4 + 1));
        Some(Trip::Credits { least, want })
    }

    /// What a reservation gave: `true` when credits were added.
    fn credits_reserved(&mut self, reserved: Option<(Reserved, CreditPool)>, least: u64, now: OffsetDateTime) -> bool {
        let Some((reserved, pool)) = reserved else {
            self.stored.meter.credits = None;
            return false;
        };
        self.stored.pool = pool;
        if reserved.granted == 0 {
            self.exhausted = Some((now + EXHAUSTED_RETRY, least));
            return false;
        }
        self.exhausted = None;
        let slice = match self.credits.filter(|slice| slice.epoch == reserved.epoch) {
            Some(slice) => CreditSlice { unspent: slice.unspent + reserved.granted, spent: 0, ..slice },
            None => CreditSlice {
                epoch: reserved.epoch,
                refilled_at: reserved.refilled_at,
                unspent: reserved.granted,
                spent: 0,
            },
        };
        self.credits = Some(slice);
        true
    }

    /// Whether `cost` tokens of the limit `name` are held: `Ok(None)` they
    /// are, `Ok(Some(trip))` the store must be asked, `Err(retry_at)` the
    /// shared counter refused a moment ago.
    fn tokens_trip(
        &mut self,
        name: &RateLimitName,
        cost: u32,
        now: OffsetDateTime,
    ) -> Result<Option<Trip>, Option<OffsetDateTime>> {
        let Some(limit) = self.stored.meter.rate_limits.get(name) else { return Ok(None) };
        if !self.tokens.contains_key(name) {
            let batch =
                TokenBatch { limit: limit.clone(), left: 0, used: 0, hint: 0, taken_at: now, refused_until: None };
            self.tokens.insert(name.clone(), batch);
        }
        let Some(batch) = self.tokens.get_mut(name) else { return Ok(None) };
        // Past its horizon, what is left goes back with the next take, in
        // one transaction; what the batch used sizes the next one.
        let mut returned = None;
        if now >= batch.taken_at + horizon(limit) {
            if batch.left > 0 {
                returned = Some((batch.left, batch.taken_at));
            }
            batch.hint = batch.used;
            (batch.left, batch.used, batch.taken_at) = (0, 0, now);
        }
        if batch.left >= cost && returned.is_none() {
            return Ok(None);
        }
        if let Some(until) = batch.refused_until.filter(|until| now < *until) {
            if let Some((tokens, taken_at)) = returned {
                // Not given back with a take: kept for the sweeper.
                batch.left = tokens;
                batch.taken_at = taken_at;
            }
            return Err(Some(until));
        }
        let need = cost.saturating_sub(batch.left).max(1);
        let quarter = u32::try_from(limit.limit() / 4).unwrap_or(u32::MAX).max(1);
        // Twice what the last horizon used, so that a steady demand takes
        // one batch per horizon.
        let demand = batch.used.max(batch.hint);
        let want = need.max(demand.saturating_mul(2).clamp(4, quarter.max(4)).min(quarter));
        Ok(Some(Trip::Tokens { limit: limit.clone(), need, want, returned }))
    }

    /// What a take gave.
    fn tokens_taken(
        &mut self,
        name: &RateLimitName,
        taken: TokensTaken,
        now: OffsetDateTime,
    ) -> Result<(), Option<OffsetDateTime>> {
        let Some(batch) = self.tokens.get_mut(name) else { return Err(None) };
        match taken {
            Ok(taken) => {
                if batch.left == 0 {
                    batch.taken_at = now;
                }
                batch.left += taken;
                batch.refused_until = None;
                Ok(())
            }
            Err(retry_at) => {
                batch.refused_until = retry_at;
                Err(retry_at)
            }
        }
    }

    /// What goes back when idle or expired (everything when `all`): an
    /// idle slice and the batches past their horizon.
    fn sweep_trips(&mut self, now: OffsetDateTime, all: bool) -> Vec<Trip> {
        let mut trips = Vec::new();
        if all || now - self.last_used >= CREDITS_IDLE {
            if let Some(slice) = self.credits.take().filter(|slice| slice.unspent > 0) {
                self.stored.pool = self.stored.pool.hand_back(slice.epoch, slice.unspent);
                trips.push(Trip::PayDebt { slice });
            }
        }
        for batch in self.tokens.values_mut() {
            if (all || now >= batch.taken_at + horizon(&batch.limit)) && batch.left > 0 {
                trips.push(Trip::Tokens {
                    limit: batch.limit.clone(),
                    need: 0,
                    want: 0,
                    returned: Some((batch.left, batch.taken_at)),
                });
                batch.left = 0;
            }
        }
        trips
    }
}

/// Tokens of an expired batch on their way back to the shared counter
/// (given back by the sweeper, off the request path).
struct Return {
    workspace: WorkspaceUid,
    of: MeterOf,
    limit: RateLimit,
    tokens: u32,
    taken_at: OffsetDateTime,
    /// When the batch expired: the give-back is computed as of then.
    at: OffsetDateTime,
}

/// The counters [`decide`] reads: the replica's own GCRA counters and its
/// slices.
struct Held<'a> {
    sides: [Option<&'a Subject>; 2],
    now: OffsetDateTime,
}

impl Held<'_> {
    fn side(&self, subject: &MeterSubject) -> Option<&Subject> {
        self.sides.iter().flatten().copied().find(|side| &side.subject == subject)
    }
}

impl MeterCounters for Held<'_> {
    fn rate_limit(&self, subject: &MeterSubject, name: &RateLimitName) -> Option<RateLimitState> {
        self.side(subject)?.mirror.get(name).copied()
    }

    fn credits(&self, subject: &MeterSubject) -> Option<CreditBalance> {
        let slice = self.side(subject)?.credits?;
        // The slice is spendable now (checked before deciding): no refill
        // is due on it.
        CreditBalance::restore(slice.unspent, self.now).ok()
    }
}

/// Which side of a verification a trip is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Key,
    Identity,
}

impl From<MeterOwner> for Side {
    fn from(owner: MeterOwner) -> Self {
        match owner {
            MeterOwner::Key => Self::Key,
            MeterOwner::Identity => Self::Identity,
        }
    }
}

/// What one in-memory attempt at a verification came to.
enum Attempt {
    Decided(Decision),
    /// The store must be asked first.
    Trip(Side, Trip, Option<RateLimitName>),
}

impl Metering {
    /// The subjects a key draws on, read again when they may have changed.
    async fn entry(
        &self,
        store: &dyn Store,
        key: &ApiKey,
        workspace: &Workspace,
        now: OffsetDateTime,
    ) -> Result<Option<Arc<KeyEntry>>, StoreError> {
        let generation = store.meter_generation(&workspace.uid);
        let presented = key.external_id.as_ref().map(|id| id.as_str());
        let cached = self.keys.read().unwrap_or_else(PoisonError::into_inner).get(&key.id).cloned();
        if let Some(entry) = cached {
            let current = match generation {
                Some(generation) => entry.generation == Some(generation),
                None => now - entry.read_at < REREAD,
            };
            if current && entry.external_id.as_deref() == presented {
                return Ok(Some(entry));
            }
        }
        let external_id = presented.map(str::to_owned);
        let Some(found) = store.key_meters(&workspace.uid, &key.id, external_id.as_deref()).await? else {
            return Ok(None);
        };
        let key_side = found.key.filter(StoredMeter::meters_anything).map(|stored| self.subject(stored, now));
        let identity_side = found.identity.filter(StoredMeter::meters_anything).map(|stored| self.subject(stored, now));
        let entry = Arc::new(KeyEntry {
            workspace: workspace.uid.clone(),
            external_id,
            generation,
            read_at: now,
            root: found.root,
            key: key_side,
            identity: identity_side,
        });
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= REMEMBERED {
            keys.clear();
        }
        keys.insert(key.id.clone(), Arc::clone(&entry));
        Ok(Some(entry))
    }

    /// Forgets which meters each key of `workspace` draws on, so that the
    /// next verification of each reads them again (this process changed a
    /// meter there: its own verifications see the change at once, whatever
    /// its store hears).
    pub(crate) fn forget_keys(&self, workspace: &WorkspaceUid) {
        self.keys.write().unwrap_or_else(PoisonError::into_inner).retain(|_, entry| &entry.workspace != workspace);
    }

    /// Forgets a subject (an identity deleted): what it held is void.
    pub(crate) fn forget_subject(&self, workspace: &WorkspaceUid, of: &MeterOf) {
        self.subjects.lock().unwrap_or_else(PoisonError::into_inner).remove(&(workspace.clone(), of.clone()));
    }

    /// The subject of a meter just read, refreshed with it.
    fn subject(&self, stored: StoredMeter, now: OffsetDateTime) -> Arc<Shared> {
        let id = (stored.workspace.clone(), stored.of.clone());
        let mut subjects = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = subjects.get(&id) {
            let dropped = shared.lock().refreshed(stored);
            let mut returns = self.returns.lock().unwrap_or_else(PoisonError::into_inner);
            for batch in dropped {
                let (workspace, of) = (id.0.clone(), id.1.clone());
                let (limit, tokens, taken_at) = (batch.limit, batch.left, batch.taken_at);
                returns.push(Return { workspace, of, limit, tokens, taken_at, at: now });
            }
            return Arc::clone(shared);
        }
        let shared = Arc::new(Shared { state: StdMutex::new(Subject::new(stored, now)), trips: Mutex::new(()) });
        subjects.insert(id, Arc::clone(&shared));
        shared
    }

    /// The credits this replica holds in a slice of a subject's balance
    /// of `epoch` (to show a balance as the verifications on this replica
    /// see it; a slice of an older epoch is void, and counts nothing).
    pub(crate) fn held(&self, workspace: &WorkspaceUid, of: &MeterOf, epoch: u64) -> u64 {
        let key = (workspace.clone(), of.clone());
        let subject = self.subjects.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        subject
            .and_then(|subject| subject.lock().credits.filter(|slice| slice.epoch == epoch))
            .map_or(0, |slice| slice.unspent)
    }

    /// Hands back idle slices and expired batches; everything when `all`.
    pub(crate) async fn sweep(&self, store: &dyn Store, now: OffsetDateTime, all: bool) -> Result<(), StoreError> {
        let mut first_error = None;
        let returns = std::mem::take(&mut *self.returns.lock().unwrap_or_else(PoisonError::into_inner));
        for back in returns {
            let given =
                store.give_back_tokens(&back.workspace, &back.of, &back.limit, back.tokens, back.taken_at, back.at);
            if let Err(error) = given.await {
                first_error.get_or_insert(error);
            }
        }
        let subjects: Vec<Arc<Shared>> =
            self.subjects.lock().unwrap_or_else(PoisonError::into_inner).values().cloned().collect();
        for subject in &subjects {
            // A subject whose trip is under way is swept next time (at
            // shutdown, once it is done).
            let trips = if all { Some(subject.trips.lock().await) } else { subject.trips.try_lock().ok() };
            let Some(_trips) = trips else { continue };
            let (planned, (workspace, of)) = {
                let mut state = subject.lock();
                (state.sweep_trips(now, all), state.of())
            };
            for trip in planned {
                let result = match trip {
                    Trip::PayDebt { slice } => {
                        store.hand_back_credits(&workspace, &of, slice.epoch, slice.unspent).await
                    }
                    Trip::Tokens { limit, returned: Some((tokens, taken_at)), .. } => {
                        store.give_back_tokens(&workspace, &of, &limit, tokens, taken_at, now).await
                    }
                    Trip::Tokens { returned: None, .. } | Trip::Credits { .. } => Ok(()),
                };
                if let Err(error) = result {
                    first_error.get_or_insert(error);
                }
            }
        }
        if all || subjects.len() >= REMEMBERED {
            self.keys.write().unwrap_or_else(PoisonError::into_inner).clear();
            if subjects.len() >= REMEMBERED {
                // What holds part of a shared balance stays (and goes back
                // when idle); the rest is read again when next used.
                let mut map = self.subjects.lock().unwrap_or_else(PoisonError::into_inner);
                map.retain(|_, shared| shared.state.try_lock().map_or(true, |state| state.holds_anything()));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Meters one verification of a key that passed its own checks:
    /// `None` when nothing meters the key, else keys-core's decision, whose
    /// report shows the balance as this replica sees it.
    ///
    /// The decision is made in memory, under the subjects' synchronous
    /// locks (the key's, then its identity's). When it needs the store (a
    /// slice or a batch ran out, a debt is to be paid), the locks are let
    /// go, the trip is made under that subject's trip lock, its result
    /// merged, and the verification decided again.
    pub(crate) async fn meter(
        &self,
        store: &dyn Store,
        key: &ApiKey,
        workspace: &Workspace,
        request: &MeterRequest,
        now: OffsetDateTime,
    ) -> Result<Option<Decision>, StoreError> {
        let Some(entry) = self.entry(store, key, workspace, now).await? else { return Ok(None) };
        if entry.key.is_none() && entry.identity.is_none() {
            return Ok(None);
        }
        // Credits are asked for at most a few times per verification, so
        // that a balance other replicas drain cannot keep one spinning.
        let mut credit_trips = 0;
        for _ in 0..8 {
            let attempt = self.attempt(&entry, request, now, credit_trips);
            let (side, trip, name) = match attempt {
                Attempt::Decided(decision) => return Ok(Some(decision)),
                Attempt::Trip(side, trip, name) => (side, trip, name),
            };
            let Some(shared) = (match side {
                Side::Key => entry.key.as_ref(),
                Side::Identity => entry.identity.as_ref(),
            }) else {
                break;
            };
            if matches!(trip, Trip::Credits { .. }) {
                credit_trips += 1;
            }
            self.travel(store, shared, trip, name.as_ref(), request, now).await?;
        }
        // Still undecided after every trip: refused as the last attempt
        // found it, asking nothing more.
        Ok(match self.attempt(&entry, request, now, usize::MAX) {
            Attempt::Decided(decision) => Some(decision),
            // The last attempt makes no trip (refuses instead).
            Attempt::Trip(..) => None,
        })
    }

    /// One trip to the store for `shared`, under its trip lock: what the
    /// state asks for is computed again once the lock is held (another
    /// verification may have made the trip meanwhile), made, and merged.
    async fn travel(
        &self,
        store: &dyn Store,
        shared: &Shared,
        planned: Trip,
        name: Option<&RateLimitName>,
        request: &MeterRequest,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let _trip = shared.trips.lock().await;
        // What an expired batch left, taken out of the state when planned:
        // it goes back with this trip's take, or by the sweeper.
        let planned_return = match &planned {
            Trip::Tokens { limit, returned: Some((tokens, taken_at)), .. } => Some((limit.clone(), *tokens, *taken_at)),
            _ => None,
        };
        let (mut trip, (workspace, of)) = {
            let mut state = shared.lock();
            let trip = match planned {
                // A debt: the slice was taken out when planned.
                Trip::PayDebt { slice } => Some(Trip::PayDebt { slice }),
                Trip::Credits { .. } => {
                    let held = state.credits.map_or(0, |slice| slice.unspent);
                    let cost = u64::from(request.cost.get());
                    if held >= cost {
                        None
                    } else {
                        state.credits_trip(cost, now)
                    }
                }
                Trip::Tokens { .. } => {
                    let cost = name.and_then(|name| request.rate_limits.cost_of(name)).map_or(1, |cost| cost.get());
                    match name.map(|name| state.tokens_trip(name, cost, now)) {
                        Some(Ok(trip)) => trip,
                        Some(Err(_)) | None => None,
                    }
                }
            };
            (trip, state.of())
        };
        if let Some((limit, tokens, taken_at)) = planned_return {
            match &mut trip {
                Some(Trip::Tokens { returned: returned @ None, .. }) => *returned = Some((tokens, taken_at)),
                _ => {
                    let back =
                        Return { workspace: workspace.clone(), of: of.clone(), limit, tokens, taken_at, at: now };
                    self.returns.lock().unwrap_or_else(PoisonError::into_inner).push(back);
                }
            }
        }
        match trip {
            None => {}
            Some(Trip::PayDebt { slice }) => {
                store.hand_back_credits(&workspace, &of, slice.epoch, slice.unspent).await?;
                let mut state = shared.lock();
                state.stored.pool = state.stored.pool.hand_back(slice.epoch, slice.unspent);
            }
            Some(Trip::Credits { least, want }) => {
                let reserved = store.reserve_credits(&workspace, &of, least, want, now).await?;
                shared.lock().credits_reserved(reserved, least, now);
            }
            Some(Trip::Tokens { limit, need, want, returned }) => {
                let taken = match returned {
                    Some(returned) => store.exchange_tokens(&workspace, &of, &limit, returned, need, want, now).await?,
                    None => store.take_tokens(&workspace, &of, &limit, need, want, now).await?,
                };
                if let Some(name) = name {
                    let _ = shared.lock().tokens_taken(name, taken, now);
                }
            }
        }
        Ok(())
    }

    /// One in-memory attempt: decided, or the trip it needs first.
    fn attempt(&self, entry: &KeyEntry, request: &MeterRequest, now: OffsetDateTime, credit_trips: usize) -> Attempt {
        // The last attempt makes no trip: what would need one is refused.
        let last = credit_trips == usize::MAX;
        // Always the key's subject first, then the identity's.
        let mut key_side = entry.key.as_ref().map(|shared| shared.lock());
        let mut identity_side = entry.identity.as_ref().map(|shared| shared.lock());
        for (side, state) in [(Side::Key, key_side.as_deref_mut()), (Side::Identity, identity_side.as_deref_mut())] {
            let Some(state) = state else { continue };
            state.check_slice(now);
            if !last {
                if let Some(trip) = state.debt_trip() {
                    return Attempt::Trip(side, trip, None);
                }
            }
        }
        let unmetered = Meter::default();
        let key_subject = MeterSubject::ApiKey { root: entry.root.clone() };
        let decision = {
            let key_metered = Metered {
                subject: key_side.as_ref().map_or(&key_subject, |side| &side.subject),
                meter: key_side.as_ref().map_or(&unmetered, |side| &side.stored.meter),
            };
            let identity_metered =
                identity_side.as_ref().map(|side| Metered { subject: &side.subject, meter: &side.stored.meter });
            let held = Held { sides: [key_side.as_deref(), identity_side.as_deref()], now };
            decide(request, key_metered, identity_metered, &held, now)
        };
        // The shared counters first (rate limits come before credits): each
        // applied limit's tokens held, whatever the credits say.
        let report = decision.report();
        let mut refused = None;
        for line in &report.rate_limits {
            if line.exceeded {
                continue;
            }
            let side = Side::from(line.owner);
            let state = match side {
                Side::Key => key_side.as_deref_mut(),
                Side::Identity => identity_side.as_deref_mut(),
            };
            let Some(state) = state else { continue };
            let cost = request.rate_limits.cost_of(&line.name).map_or(1, |cost| cost.get());
            if cost == 0 || matches!(decision, Decision::RateLimited { .. }) {
                continue;
            }
            match state.tokens_trip(&line.name, cost, now) {
                Ok(None) => {}
                Ok(Some(trip)) if !last => return Attempt::Trip(side, trip, Some(line.name.clone())),
                Ok(Some(_)) => {
                    refused = Some((line.owner, line.name.clone(), None));
                    break;
                }
                Err(retry_at) => {
                    refused = Some((line.owner, line.name.clone(), retry_at));
                    break;
                }
            }
        }
        let decision = match (refused, decision) {
            (Some((owner, name, retry_at)), decision) => {
                // Refused by a shared counter: that limit is exceeded, every
                // other one reported as it stands (a refusal takes nothing).
                let mut report = decision.report().clone();
                for line in &mut report.rate_limits {
                    let state = match line.owner {
                        MeterOwner::Key => key_side.as_deref(),
                        MeterOwner::Identity => identity_side.as_deref(),
                    };
                    if line.owner == owner && line.name == name {
                        (line.exceeded, line.remaining) = (true, 0);
                    } else if let Some(state) = state {
                        if let Some(limit) = state.stored.meter.rate_limits.get(&line.name) {
                            let as_read = limit.check(state.mirror.get(&line.name), Cost::ZERO, now);
                            (line.remaining, line.reset_at) = (as_read.remaining, as_read.reset_at);
                        }
                    }
                }
                report.credits = None;
                Decision::RateLimited { owner, name, retry_at, report }
            }
            (None, Decision::UsageExceeded { owner, report }) => {
                let side = Side::from(owner);
                let state = match side {
                    Side::Key => key_side.as_deref(),
                    Side::Identity => identity_side.as_deref(),
                };
                let trip = state
                    .filter(|_| credit_trips < 3 && !last)
                    .and_then(|state| state.credits_trip(u64::from(request.cost.get()), now));
                match trip {
                    Some(trip) => return Attempt::Trip(side, trip, None),
                    None => Decision::UsageExceeded { owner, report },
                }
            }
            (None, Decision::Admit { updates, report }) => {
                // Admitted: spend from the batches and slices.
                for state in key_side.iter_mut().chain(identity_side.iter_mut()) {
                    state.last_used = now;
                    for (counter, next) in &updates.rate_limits {
                        if counter.subject != state.subject {
                            continue;
                        }
                        state.mirror.insert(counter.name.clone(), *next);
                        let cost = request.rate_limits.cost_of(&counter.name).map_or(1, |cost| cost.get());
                        if let Some(batch) = state.tokens.get_mut(&counter.name) {
                            batch.left = batch.left.saturating_sub(cost);
                            batch.used = batch.used.saturating_add(cost);
                        }
                    }
                    for (subject, balance) in &updates.credits {
                        if subject != &state.subject {
                            continue;
                        }
                        if let Some(slice) = &mut state.credits {
                            slice.spent += slice.unspent - balance.remaining();
                            slice.unspent = balance.remaining();
                        }
                    }
                }
                Decision::Admit { updates, report }
            }
            (None, other) => other,
        };
        Attempt::Decided(shown(decision, key_side.as_deref(), identity_side.as_deref()))
    }
}

/// The decision with its balance as this replica sees it: the key's when
/// the key spends credits, else its identity's.
fn shown(mut decision: Decision, key: Option<&Subject>, identity: Option<&Subject>) -> Decision {
    let credits = key.and_then(Subject::credits_shown).or_else(|| identity.and_then(Subject::credits_shown));
    match &mut decision {
        Decision::Admit { report, .. }
        | Decision::RateLimited { report, .. }
        | Decision::UsageExceeded { report, .. } => {
            report.credits = credits;
        }
    }
    decision
}

impl Metering {
    /// When the balance a verification of `key` shows (the key's, else its
    /// identity's) is below its `credits.low` threshold: the subject (for
    /// the warning's key), its epoch and the balance.
    pub(crate) fn credits_low(&self, key: &ApiKeyId) -> Option<(String, u64, u64)> {
        let entry = self.keys.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()?;
        for shared in [entry.key.as_ref(), entry.identity.as_ref()].into_iter().flatten() {
            let state = shared.lock();
            if let Some((remaining, basis, epoch)) = state.credits_basis() {
                if !keys_core::webhook::credits_low(remaining, basis) {
                    return None;
                }
                let subject = match &state.stored.of {
                    MeterOf::Key(root) => format!("key:{root}"),
                    MeterOf::Identity(external_id) => format!("identity:{external_id}"),
                };
                return Some((subject, epoch, remaining));
            }
        }
        None
    }
}

impl Service {
    /// Hands back what this replica holds of metering: idle slices and
    /// expired batches every [`SWEEP_INTERVAL`] until stopped, and
    /// everything at [`Service::hand_back_metering`].
    pub fn spawn_metering_sweeper(self: &Arc<Self>) -> UsageFlusher {
        crate::usage::every(self, SWEEP_INTERVAL, |service| async move {
            if let Err(error) = service.metering.sweep(service.store.as_ref(), service.now(), false).await {
                tracing::warn!(%error, "handing back metering slices failed; retrying");
            }
        })
    }

    /// Hands back every slice of credits and batch of tokens this replica
    /// holds (graceful shutdown): what a replica killed without it holds is
    /// lost to the customer, never oversold.
    pub async fn hand_back_metering(&self) -> Result<(), StoreError> {
        self.metering.sweep(self.store.as_ref(), self.now(), true).await
    }
}

/// A subject's meter as management shows it: its limits, its credit rule
/// and the balance as this replica sees it (the shared balance and the
/// slice this replica holds; slices other replicas hold come back within
/// [`CREDITS_IDLE`] of their last use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterView {
    pub stored: StoredMeter,
    /// `None` when the subject spends no credits.
    pub remaining: Option<u64>,
}

/// An identity: its meter and the ids of its live keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityView {
    pub external_id: String,
    pub meter: MeterView,
    pub key_ids: Vec<ApiKeyId>,
}

impl crate::workspaces::InWorkspace<'_> {
    async fn view(&self, stored: StoredMeter) -> MeterView {
        let now = self.now();
        let remaining = match stored.meter.credits {
            Some(rule) => {
                let pool = stored.pool.refreshed(&rule, now);
                let held = self.service.metering.held(&stored.workspace, &stored.of, pool.epoch());
                Some((pool.unleased() + held).saturating_sub(pool.debt()))
            }
            None => None,
        };
        MeterView { stored, remaining }
    }

    /// A key's meter (its roll chain's), when it has one.
    pub async fn api_key_meter(&self, id: &ApiKeyId) -> crate::ServiceResult<Option<MeterView>> {
        let store = &self.service.store;
        let Some(found) = store.key_meters(&self.workspace.uid, id, None).await? else { return Ok(None) };
        Ok(match found.key {
            Some(stored) => Some(self.view(stored).await),
            None => None,
        })
    }

    /// Patches a live key and replaces what `setting` says of its limits
    /// and credits, in one transaction with one `api_key.updated` event
    /// (an empty patch moves only its `updated_at`).
    pub async fn set_api_key_meter(
        &self,
        id: &ApiKeyId,
        patch: keys_core::ApiKeyPatch,
        setting: keys_store::MeterSetting,
    ) -> crate::ServiceResult<(ApiKey, MeterView)> {
        let acting = keys_store::Acting::new(self.workspace.uid.clone(), self.caller.actor().clone(), self.now());
        let store = self.service.mutations(self.caller);
        let command = keys_store::PutKeyMeter { acting, id: id.clone(), patch, setting };
        let (key, stored) = keys_store::Run::run(&store, command).await?.output;
        self.service.metering.forget_keys(&self.workspace.uid);
        Ok((key, self.view(stored).await))
    }

    /// `POST …/ws_api_key/{id}/credits/`: changes a key's balance (a key
    /// that spends none starts to, from 0).
    pub async fn change_api_key_credits(
        &self,
        id: &ApiKeyId,
        operation: keys_core::meter::CreditsOperation,
    ) -> crate::ServiceResult<MeterView> {
        self.change_credits(keys_store::CreditsOf::Key(id.clone()), operation).await
    }

    async fn change_credits(
        &self,
        of: keys_store::CreditsOf,
        operation: keys_core::meter::CreditsOperation,
    ) -> crate::ServiceResult<MeterView> {
        let acting = keys_store::Acting::new(self.workspace.uid.clone(), self.caller.actor().clone(), self.now());
        let store = self.service.mutations(self.caller);
        let stored = keys_store::Run::run(&store, keys_store::ChangeCredits { acting, of, operation }).await?.output;
        self.service.metering.forget_keys(&self.workspace.uid);
        Ok(self.view(stored).await)
    }

    /// `PUT /v1/{ws}/identity/{external_id}/`: creates or replaces an
    /// identity; `true` when it is new.
    pub async fn put_identity(
        &self,
        external_id: &keys_core::ExternalId,
        rate_limits: keys_core::meter::RateLimits,
        credits: Option<keys_core::meter::Credits>,
        meta: Option<keys_core::KeyMeta>,
    ) -> crate::ServiceResult<(IdentityView, bool)> {
        let acting = keys_store::Acting::new(self.workspace.uid.clone(), self.caller.actor().clone(), self.now());
        let setting =
            keys_store::MeterSetting { rate_limits: Some(rate_limits), credits: Some(credits), meta: Some(meta) };
        let command = keys_store::PutIdentity { acting, external_id: external_id.as_str().to_owned(), setting };
        let store = self.service.mutations(self.caller);
        let (stored, created) = keys_store::Run::run(&store, command).await?.output;
        self.service.metering.forget_keys(&self.workspace.uid);
        let key_ids = self.service.store.identity_key_ids(&self.workspace.uid, external_id.as_str()).await?;
        let view =
            IdentityView { external_id: external_id.as_str().to_owned(), meter: self.view(stored).await, key_ids };
        Ok((view, created))
    }

    /// An identity with its balances and its keys' ids.
    pub async fn identity(&self, external_id: &keys_core::ExternalId) -> crate::ServiceResult<IdentityView> {
        let of = MeterOf::identity(external_id);
        let stored = self.service.store.meter(&self.workspace.uid, &of).await?;
        let stored = stored.ok_or(StoreError::NotFound { kind: "identity" })?;
        let key_ids = self.service.store.identity_key_ids(&self.workspace.uid, external_id.as_str()).await?;
        Ok(IdentityView { external_id: external_id.as_str().to_owned(), meter: self.view(stored).await, key_ids })
    }

    /// Removes an identity and its limits; its keys keep working.
    pub async fn delete_identity(&self, external_id: &keys_core::ExternalId) -> crate::ServiceResult<()> {
        let acting = keys_store::Acting::new(self.workspace.uid.clone(), self.caller.actor().clone(), self.now());
        let command = keys_store::DeleteIdentity { acting, external_id: external_id.as_str().to_owned() };
        let store = self.service.mutations(self.caller);
        keys_store::Run::run(&store, command).await?;
        self.service.metering.forget_keys(&self.workspace.uid);
        self.service.metering.forget_subject(&self.workspace.uid, &MeterOf::identity(external_id));
        Ok(())
    }
}

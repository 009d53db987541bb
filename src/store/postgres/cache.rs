//! The cache of token ids known to exist, which lets validation skip the
//! database, and the rules that keep it from ever vouching for a removed id.
//!
//! * An id enters only after the database said it exists, and only if no
//!   removal of an id in its stripe (nor a clear) happened since the lookup
//!   began: a [`Ticket`] taken before the query carries the stripe's
//!   generation, and removals bump it. So a lookup racing a revocation can
//!   never re-insert the revoked id after the notification removed it.
//! * Removals come from this store's own deletes (before they return) and
//!   from the listener, which hears every commit that removes rows.
//! * The cache is *trusted* only while the listener has recently proven it
//!   hears everything: until `last proof + max staleness`. Untrusted, every
//!   lookup goes to the database and nothing is cached.
//! * Two generations of at most `capacity / 2` ids each bound the memory:
//!   when the current one fills, it becomes the previous and the old
//!   previous is dropped.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

/// Removals only block caching of ids in the same stripe.
const STRIPES: usize = 32;

#[derive(Debug)]
pub(super) struct ExistsCache {
    state: RwLock<State>,
    generation_capacity: usize,
    /// Trusted while `now < trusted_until`, in ns since `epoch` (0 = never).
    trusted_until: AtomicU64,
    epoch: Instant,
    /// Lookups answered from the cache.
    pub(super) hits: AtomicU64,
    /// Lookups that went to the database (counted by the store).
    pub(super) misses: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    current: HashSet<String>,
    previous: HashSet<String>,
    generations: [u64; STRIPES],
    /// Which stripe an id is in. Its own, fixed for the cache's life: the
    /// sets' hashers are new with every new `current`, and a stripe that
    /// moved between a lookup's ticket and a removal would let the lookup
    /// cache the removed id.
    stripes: RandomState,
}

impl State {
    fn stripe(&self, id: &str) -> usize {
        (self.stripes.hash_one(id) % STRIPES as u64) as usize
    }
}

/// Proof that no removal touched an id's stripe since the ticket was taken.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    stripe: usize,
    generation: u64,
}

impl ExistsCache {
    /// A cache of at most `capacity` ids; 0 disables caching.
    pub(super) fn new(capacity: usize) -> Self {
        ExistsCache {
            state: RwLock::default(),
            generation_capacity: capacity / 2,
            trusted_until: AtomicU64::new(0),
            epoch: Instant::now(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    // Every update below is complete once started, so a poisoned lock is sound.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn nanos_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether cached answers may be given now.
    pub(super) fn is_trusted(&self) -> bool {
        self.generation_capacity > 0
            && self.nanos_since_epoch(Instant::now()) < self.trusted_until.load(Ordering::Acquire)
    }

    /// Trusts the cache until `until` (never shortens the trust).
    pub(super) fn trust_until(&self, until: Instant) {
        self.trusted_until
            .fetch_max(self.nanos_since_epoch(until).max(1), Ordering::AcqRel);
    }

    /// Stops trusting the cache at once.
    pub(super) fn distrust(&self) {
        self.trusted_until.store(0, Ordering::Release);
    }

    /// `true` if `id` is known to exist (trusted cache hit).
    pub(super) fn contains(&self, id: &str) -> bool {
        if !self.is_trusted() {
            return false;
        }
        let state = self.read();
        let hit = state.current.contains(id) || state.previous.contains(id);
        if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Take before asking the database whether `id` exists.
    pub(super) fn ticket(&self, id: &str) -> Ticket {
        let state = self.read();
        let stripe = state.stripe(id);
        Ticket {
            stripe,
            generation: state.generations[stripe],
        }
    }

    /// Records that the database said `id` exists, unless a removal in its
    /// stripe happened since `ticket` or the cache is not trusted.
    pub(super) fn insert(&self, id: &str, ticket: Ticket) {
        if !self.is_trusted() {
            return;
        }
        let mut state = self.write();
        if state.generations[ticket.stripe] != ticket.generation || state.current.contains(id) {
            return;
        }
        if state.current.len() >= self.generation_capacity {
            state.previous = std::mem::take(&mut state.current);
        }
        state.current.insert(id.to_owned());
    }

    /// Forgets removed ids (and blocks in-flight lookups from caching them).
    pub(super) fn remove<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut state = self.write();
        for id in ids {
            let stripe = state.stripe(id);
            state.generations[stripe] += 1;
            state.current.remove(id);
            state.previous.remove(id);
        }
    }

    /// Forgets everything (and blocks every in-flight lookup from caching).
    pub(super) fn clear(&self) {
        let mut state = self.write();
        state.current.clear();
        state.previous.clear();
        for generation in &mut state.generations {
            *generation += 1;
        }
    }

    pub(super) fn len(&self) -> usize {
        let state = self.read();
        state.current.len() + state.previous.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn trusted(capacity: usize) -> ExistsCache {
        let cache = ExistsCache::new(capacity);
        cache.trust_until(Instant::now() + Duration::from_secs(60));
        cache
    }

    #[test]
    fn untrusted_cache_answers_nothing_and_stores_nothing() {
        let cache = ExistsCache::new(10);
        let ticket = cache.ticket("a");
        cache.insert("a", ticket);
        assert_eq!(cache.len(), 0);
        cache.trust_until(Instant::now() + Duration::from_secs(60));
        cache.insert("a", cache.ticket("a"));
        assert!(cache.contains("a"));
        cache.distrust();
        assert!(!cache.contains("a"), "distrusted at once");
    }

    #[test]
    fn trust_expires() {
        let cache = ExistsCache::new(10);
        // The cache must answer within the window; a busy machine may pause
        // this thread past it, so that half is tried until it ran inside.
        let until = loop {
            let until = Instant::now() + Duration::from_millis(20);
            cache.trust_until(until);
            cache.insert("a", cache.ticket("a"));
            let hit = cache.contains("a");
            if Instant::now() < until {
                assert!(hit);
                break until;
            }
        };
        std::thread::sleep(until.saturating_duration_since(Instant::now()) + Duration::from_millis(10));
        assert!(!cache.contains("a"));
    }

    #[test]
    fn a_removal_during_a_lookup_keeps_the_id_out() {
        let cache = trusted(10);
        let ticket = cache.ticket("a"); // lookup starts
        cache.remove(["a"]); // revocation notified meanwhile
        cache.insert("a", ticket); // lookup saw the row before the delete
        assert!(!cache.contains("a"));
        let ticket = cache.ticket("a");
        cache.clear();
        cache.insert("a", ticket);
        assert!(!cache.contains("a"), "a clear blocks in-flight lookups too");
        cache.insert("a", cache.ticket("a"));
        assert!(cache.contains("a"));
        cache.remove(["a"]);
        assert!(!cache.contains("a"));
    }

    #[test]
    fn a_removal_during_a_lookup_keeps_the_id_out_across_a_turnover() {
        // Generations of two ids, so the third insert below starts a new one.
        for n in 0..64 {
            let cache = trusted(4);
            let id = format!("id{n}");
            cache.insert("a", cache.ticket("a"));
            cache.insert("b", cache.ticket("b"));
            let ticket = cache.ticket(&id); // lookup starts
            cache.insert("c", cache.ticket("c")); // a new generation begins
            cache.remove([id.as_str()]); // revocation notified meanwhile
            cache.insert(&id, ticket); // lookup saw the row before the delete
            assert!(!cache.contains(&id), "{id} cached after its removal");
        }
    }

    #[test]
    fn size_is_bounded() {
        let cache = trusted(100);
        for i in 0..1000 {
            let id = format!("id{i}");
            cache.insert(&id, cache.ticket(&id));
            assert!(cache.len() <= 100);
        }
        assert!(cache.contains("id999"));
        assert!(!cache.contains("id0"));
        let disabled = trusted(0);
        disabled.insert("a", disabled.ticket("a"));
        assert!(!disabled.contains("a"));
    }
}

//! Last-used tracking kept off the validation hot path.
//!
//! A successful validation only notes the use in memory, and only if this
//! token's previous recorded use is at least the interval old (the
//! throttle). A background task then writes the noted uses to the store in
//! one [`TokenStore::record_last_used`] call per batch: whatever was noted
//! while the previous batch was being written goes into the next one.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashMap;

use crate::error::Result;
use crate::store::{TokenStore, TokenUse};

/// Throttles, batches and writes the uses of tokens.
pub(crate) struct LastUsedRecorder {
    interval_ms: i64,
    store: Arc<dyn TokenStore>,
    state: Mutex<State>,
    /// Held while a batch is written, so [`flush`](Self::flush) also waits
    /// for a write already under way.
    writing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// When each token's latest noted use happened. Entries older than the
    /// interval no longer throttle anything and are pruned as the map grows,
    /// so it holds about the tokens used within one interval.
    // FxHash: the ids are of tokens that just passed signature and store
    // checks, made by the service, so they cannot be chosen to collide.
    noted: FxHashMap<String, i64>,
    prune_at: usize,
    /// Uses noted and not yet handed to the store: each token's latest, so
    /// a store that stops answering holds at most one per token in use
    /// meanwhile, not one per token per interval.
    pending: FxHashMap<String, i64>,
    /// Whether a writer task is scheduled or running.
    scheduled: bool,
}

impl State {
    /// Adds uses to the pending ones, keeping each token's latest.
    fn keep_pending(&mut self, uses: impl IntoIterator<Item = TokenUse>) {
        for TokenUse { id, at_ms } in uses {
            let latest = self.pending.entry(id).or_insert(at_ms);
            *latest = (*latest).max(at_ms);
        }
    }

    fn take_pending(&mut self) -> Vec<TokenUse> {
        self.pending
            .drain()
            .map(|(id, at_ms)| TokenUse { id, at_ms })
            .collect()
    }
}

/// Smallest size of the throttle map before it is pruned.
const PRUNE_FLOOR: usize = 1024;

/// What the caller of [`LastUsedRecorder::note`] must do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Noted {
    /// Nothing: throttled, or a writer task will write it.
    Done,
    /// Write it now with [`LastUsedRecorder::flush`] (and
    /// [`IfFailed::Drop`]): there is no Tokio runtime to run a writer task on.
    FlushNow,
}

/// What becomes of a batch whose write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IfFailed {
    /// Dropped, its tokens no longer throttled: the next use of each is
    /// noted again. For writes nobody retries, so that a failing store
    /// cannot make the pending uses grow.
    Drop,
    /// Kept pending, for the caller to retry (an explicit flush, say before
    /// shutting down, must not lose them).
    Keep,
}

impl LastUsedRecorder {
    pub(crate) fn new(interval_ms: i64, store: Arc<dyn TokenStore>) -> Self {
        LastUsedRecorder {
            interval_ms,
            store,
            state: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that the token `id` validated at `now_ms`: a map lookup when
    /// throttled, and otherwise a push (and at most one task spawn).
    pub(crate) fn note(self: &Arc<Self>, id: &str, now_ms: i64) -> Noted {
        let mut state = self.state();
        if let Some(&last) = state.noted.get(id) {
            if now_ms.saturating_sub(last) < self.interval_ms {
                return Noted::Done;
            }
        }
        if state.noted.len() >= state.prune_at {
            let interval_ms = self.interval_ms;
            state
                .noted
                .retain(|_, last| now_ms.saturating_sub(*last) < interval_ms);
            state.prune_at = (state.noted.len() * 2).max(PRUNE_FLOOR);
        }
        state.noted.insert(id.to_owned(), now_ms);
        state.keep_pending([TokenUse {
            id: id.to_owned(),
            at_ms: now_ms,
        }]);
        if state.scheduled {
            return Noted::Done;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Noted::FlushNow;
        };
        state.scheduled = true;
        drop(state);
        runtime.spawn(Self::write_until_idle(Writer(Some(self.clone()))));
        Noted::Done
    }

    /// The writer task: writes batches until nothing is pending.
    async fn write_until_idle(mut writer: Writer) {
        let recorder = writer.0.clone().expect("a writer starts armed");
        loop {
            let writing = recorder.writing.lock().await;
            let batch = {
                let mut state = recorder.state();
                if state.pending.is_empty() {
                    state.scheduled = false;
                    writer.0 = None;
                    return;
                }
                state.take_pending()
            };
            if let Err(error) = recorder.write(batch, IfFailed::Drop).await {
                tracing::warn!(%error, "recording when tokens were last used failed; retried at their next use");
            }
            drop(writing);
        }
    }

    /// Writes every noted use now, after any write under way.
    pub(crate) async fn flush(&self, if_failed: IfFailed) -> Result<()> {
        let _writing = self.writing.lock().await;
        let batch = self.state().take_pending();
        if batch.is_empty() {
            return Ok(());
        }
        self.write(batch, if_failed).await
    }

    async fn write(&self, batch: Vec<TokenUse>, if_failed: IfFailed) -> Result<()> {
        let mut in_flight = InFlight {
            recorder: self,
            batch,
            landed: false,
        };
        let written = self.store.record_last_used(&in_flight.batch).await;
        // Not landed: dropping `in_flight` puts the batch back.
        in_flight.landed = written.is_ok() || if_failed == IfFailed::Drop;
        if written.is_err() && if_failed == IfFailed::Drop {
            // Not throttled any more: the next use of each is noted again.
            let mut state = self.state();
            for used in &in_flight.batch {
                if state.noted.get(&used.id) == Some(&used.at_ms) {
                    state.noted.remove(&used.id);
                }
            }
        }
        written
    }
}

/// A batch on its way to the store. Should the write be dropped before it
/// returns (its task cancelled, say by the runtime shutting down), the
/// batch goes back to the pending uses, so the next flush or writer still
/// records it; writing a use twice is harmless, `lastUsedAt` only moves
/// forward.
struct InFlight<'a> {
    recorder: &'a LastUsedRecorder,
    batch: Vec<TokenUse>,
    landed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.landed {
            let batch = std::mem::take(&mut self.batch);
            self.recorder.state().keep_pending(batch);
        }
    }
}

/// The scheduled writer task's claim. Should the runtime drop the task
/// before it finishes (shutting down, even before its first poll), dropping
/// this lets the next use schedule another writer.
struct Writer(Option<Arc<LastUsedRecorder>>);

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(recorder) = self.0.take() {
            recorder.state().scheduled = false;
        }
    }
}

// By hand: the store has its own Debug, the map only needs its size.
impl fmt::Debug for LastUsedRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("LastUsedRecorder")
            .field("interval_ms", &self.interval_ms)
            .field("throttled", &state.noted.len())
            .field("pending", &state.pending.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataHubAccessTokenInfo, StoredAccessToken};
    use crate::store::MemoryTokenStore;
    use crate::urn::Urn;

    fn sample(n: u64) -> StoredAccessToken {
        let alice = Urn::corp_user("alice").unwrap();
        StoredAccessToken {
            id: format!("id{n}"),
            info: DataHubAccessTokenInfo {
                name: format!("token {n}"),
                actor_urn: alice.clone(),
                owner_urn: alice,
                created_at: 0,
                expires_at: None,
                description: None,
                last_used_at: None,
            },
        }
    }

    #[tokio::test]
    async fn throttles_per_token_and_batches() {
        let store = MemoryTokenStore::new();
        for n in 0..3 {
            store.insert(sample(n)).await.unwrap();
        }
        let recorder = Arc::new(LastUsedRecorder::new(1_000, Arc::new(store.clone())));
        let id = |n| sample(n).id;
        assert_eq!(recorder.note(&id(0), 10_000), Noted::Done);
        assert_eq!(recorder.note(&id(0), 10_999), Noted::Done);
        assert_eq!(recorder.note(&id(1), 10_500), Noted::Done);
        recorder.flush(IfFailed::Keep).await.unwrap();
        let last_used = |n| {
            let store = store.clone();
            async move { store.get(&id(n)).await.unwrap().unwrap().info.last_used_at }
        };
        assert_eq!(last_used(0).await, Some(10_000), "the second use was throttled");
        assert_eq!(last_used(1).await, Some(10_500));
        assert_eq!(last_used(2).await, None);
        recorder.note(&id(0), 11_000);
        recorder.flush(IfFailed::Keep).await.unwrap();
        assert_eq!(
            last_used(0).await,
            Some(11_000),
            "a use an interval later is recorded"
        );
    }

    #[test]
    fn a_writer_dropped_with_its_runtime_does_not_block_later_writes() {
        let store = MemoryTokenStore::new();
        let recorder = Arc::new(LastUsedRecorder::new(1_000, Arc::new(store.clone())));
        let first = tokio::runtime::Builder::new_current_thread().build().unwrap();
        first.block_on(async {
            store.insert(sample(0)).await.unwrap();
            // The writer is spawned but never runs: the runtime goes first.
            assert_eq!(recorder.note(&sample(0).id, 1), Noted::Done);
        });
        drop(first);
        assert!(
            !recorder.state().scheduled,
            "the dropped writer unscheduled itself"
        );
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async {
            recorder.note(&sample(0).id, 5_000);
            let started = std::time::Instant::now();
            while store.get(&sample(0).id).await.unwrap().unwrap().info.last_used_at != Some(5_000) {
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(5),
                    "never written"
                );
                tokio::task::yield_now().await;
            }
        });
    }

    /// A memory store whose `record_last_used` never returns while `stall`
    /// is set, to cancel a write half-way.
    #[derive(Debug, Default)]
    struct StallingStore {
        inner: MemoryTokenStore,
        stall: std::sync::atomic::AtomicBool,
        entered: std::sync::atomic::AtomicBool,
        /// `record_last_used` fails at once while set.
        fail: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl TokenStore for StallingStore {
        async fn insert_within_limit(
            &self,
            token: StoredAccessToken,
            limit: Option<crate::store::OwnerLimit>,
        ) -> Result<()> {
            self.inner.insert_within_limit(token, limit).await
        }
        async fn replace(&self, old_id: &str, new: StoredAccessToken) -> Result<()> {
            self.inner.replace(old_id, new).await
        }
        async fn get(&self, id: &str) -> Result<Option<StoredAccessToken>> {
            self.inner.get(id).await
        }
        async fn delete(&self, id: &str) -> Result<bool> {
            self.inner.delete(id).await
        }
        async fn list(&self, query: &crate::store::ListQuery) -> Result<crate::store::ListPage> {
            self.inner.list(query).await
        }
        async fn delete_expired(&self, now_ms: i64) -> Result<Vec<String>> {
            self.inner.delete_expired(now_ms).await
        }
        async fn record_last_used(&self, uses: &[TokenUse]) -> Result<()> {
            self.entered.store(true, std::sync::atomic::Ordering::SeqCst);
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::Error::storage("record_last_used", "the database is away"));
            }
            if self.stall.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            self.inner.record_last_used(uses).await
        }
    }

    #[test]
    fn a_write_cut_short_by_its_runtime_is_kept_for_the_next_flush() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = Arc::new(StallingStore::default());
        store.stall.store(true, SeqCst);
        let recorder = Arc::new(LastUsedRecorder::new(1_000, store.clone()));
        let first = tokio::runtime::Builder::new_current_thread().build().unwrap();
        first.block_on(async {
            store.insert(sample(0)).await.unwrap();
            assert_eq!(recorder.note(&sample(0).id, 7_000), Noted::Done);
            while !store.entered.load(SeqCst) {
                tokio::task::yield_now().await;
            }
        });
        // The writer is inside the store's write, which never returns.
        drop(first);
        assert_eq!(recorder.state().pending.len(), 1, "the batch came back");
        store.stall.store(false, SeqCst);
        let second = tokio::runtime::Builder::new_current_thread().build().unwrap();
        second.block_on(async {
            recorder.flush(IfFailed::Keep).await.unwrap();
            let stored = store.get(&sample(0).id).await.unwrap().unwrap();
            assert_eq!(stored.info.last_used_at, Some(7_000));
        });
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_the_uses_for_the_next() {
        use std::sync::atomic::Ordering::SeqCst;
        let store = Arc::new(StallingStore::default());
        store.insert(sample(0)).await.unwrap();
        store.insert(sample(1)).await.unwrap();
        let recorder = Arc::new(LastUsedRecorder::new(1_000, store.clone()));
        let last_used = |n| {
            let store = store.clone();
            async move { store.get(&sample(n).id).await.unwrap().unwrap().info.last_used_at }
        };
        let used = |n: u64, at_ms| TokenUse {
            id: sample(n).id,
            at_ms,
        };
        store.fail.store(true, SeqCst);
        recorder.state().keep_pending([used(0, 3_000)]);
        assert!(recorder.flush(IfFailed::Keep).await.is_err());
        assert_eq!(
            recorder.state().take_pending(),
            vec![used(0, 3_000)],
            "kept for a retry"
        );
        recorder.state().keep_pending([used(0, 3_000)]);
        store.fail.store(false, SeqCst);
        recorder.flush(IfFailed::Keep).await.unwrap();
        assert_eq!(last_used(0).await, Some(3_000), "written by the retry");

        // Dropped when nobody retries (the writer task's way).
        store.fail.store(true, SeqCst);
        recorder.state().keep_pending([used(1, 4_000)]);
        assert!(recorder.flush(IfFailed::Drop).await.is_err());
        assert!(recorder.state().pending.is_empty());
        store.fail.store(false, SeqCst);
        recorder.flush(IfFailed::Keep).await.unwrap();
        assert_eq!(last_used(1).await, None);
    }

    #[test]
    fn without_a_runtime_the_caller_writes() {
        let recorder = Arc::new(LastUsedRecorder::new(1_000, Arc::new(MemoryTokenStore::new())));
        assert_eq!(recorder.note("x", 5), Noted::FlushNow);
        assert_eq!(recorder.note("x", 6), Noted::Done, "throttled");
    }

    #[test]
    fn pending_uses_keep_one_per_token_while_the_store_is_away() {
        let recorder = Arc::new(LastUsedRecorder::new(10, Arc::new(MemoryTokenStore::new())));
        // No runtime here, so nothing writes: as if the store hung.
        for at in 0..1_000i64 {
            recorder.note(&format!("id{}", at % 3), at * 10);
        }
        let mut pending = recorder.state().take_pending();
        pending.sort_by(|a, b| a.id.cmp(&b.id));
        let latest = |n: i64, at_ms| TokenUse {
            id: format!("id{n}"),
            at_ms,
        };
        assert_eq!(
            pending,
            vec![latest(0, 9_990), latest(1, 9_970), latest(2, 9_980)]
        );
    }

    #[test]
    fn the_throttle_map_stays_bounded() {
        let recorder = Arc::new(LastUsedRecorder::new(10, Arc::new(MemoryTokenStore::new())));
        for n in 0..100_000i64 {
            recorder.note(&format!("id{n}"), n);
        }
        let state = recorder.state();
        assert!(
            state.noted.len() < 2 * PRUNE_FLOOR,
            "{} entries",
            state.noted.len()
        );
        assert_eq!(state.pending.len(), 100_000, "every use is still pending");
    }
}

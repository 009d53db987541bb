//! Failure injection and group commit, which need the writer's insides.

use std::io;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::model::DataHubAccessTokenInfo;
use crate::urn::Urn;

/// Faults the next write or sync will suffer (each fires once).
#[derive(Default)]
pub(super) struct Faults {
    write: Mutex<Option<io::ErrorKind>>,
    /// Failures for the next syncs, in order.
    sync: Mutex<Vec<io::ErrorKind>>,
    /// Hold the next sync until this many ops have been submitted in all.
    hold_sync_until_submitted: Mutex<Option<u64>>,
    /// Hold the next sync until the test sends or drops the other end.
    sync_gate: Mutex<Option<mpsc::Receiver<()>>>,
}

impl Faults {
    pub(super) fn take_write(&self) -> Option<io::ErrorKind> {
        self.write.lock().unwrap().take()
    }

    pub(super) fn before_sync(&self, shared: &Shared) -> Option<io::ErrorKind> {
        let hold = self.hold_sync_until_submitted.lock().unwrap().take();
        if let Some(submitted) = hold {
            let deadline = Instant::now() + Duration::from_secs(30);
            while shared.state().next_seq < submitted {
                assert!(Instant::now() < deadline, "the other writers never queued");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let gate = self.sync_gate.lock().unwrap().take();
        if let Some(gate) = gate {
            let _ = gate.recv();
        }
        let mut failures = self.sync.lock().unwrap();
        (!failures.is_empty()).then(|| failures.remove(0))
    }
}

fn inject_write(store: &FileTokenStore, kind: io::ErrorKind) {
    *store.shared.faults.write.lock().unwrap() = Some(kind);
}

fn inject_sync(store: &FileTokenStore, kind: io::ErrorKind) {
    store.shared.faults.sync.lock().unwrap().push(kind);
}

fn token(n: u64) -> StoredAccessToken {
    StoredAccessToken {
        id: format!("{n:0>43}="),
        info: DataHubAccessTokenInfo {
            name: format!("token {n}"),
            actor_urn: Urn::corp_user("alice").unwrap(),
            owner_urn: Urn::corp_user("alice").unwrap(),
            created_at: n as i64,
            expires_at: None,
            description: None,
            last_used_at: None,
        },
    }
}

fn hold_sync_until_submitted(store: &FileTokenStore, ops: u64) {
    *store.shared.faults.hold_sync_until_submitted.lock().unwrap() = Some(ops);
}

/// Holds the store's next sync until the returned sender is used or dropped.
fn hold_next_sync(store: &FileTokenStore) -> mpsc::Sender<()> {
    let (open, gate) = mpsc::channel();
    *store.shared.faults.sync_gate.lock().unwrap() = Some(gate);
    open
}

fn storage_message(result: Result<()>) -> String {
    match result {
        Err(e @ Error::Storage { .. }) => {
            let source = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            format!("{e}: {source}")
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
}

async fn reopen(dir: &Path) -> FileTokenStore {
    FileTokenStore::open(dir).await.expect("reopen")
}

#[tokio::test]
async fn a_failed_write_is_undone_and_the_store_stays_usable() {
    for kind in [io::ErrorKind::StorageFull, io::ErrorKind::PermissionDenied] {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileTokenStore::open(tmp.path()).await.unwrap();
        store.insert(token(1)).await.unwrap();
        inject_write(&store, kind);
        let message = storage_message(store.insert(token(2)).await);
        assert!(
            message.contains("appending to") && message.contains(LOG_FILE_NAME),
            "{message}"
        );
        assert_eq!(
            store.get(&token(2).id).await.unwrap(),
            None,
            "a failed insert is not visible"
        );
        // The half-written record was cut off: later writes land cleanly.
        store.insert(token(3)).await.unwrap();
        assert!(store.delete(&token(1).id).await.unwrap());
        store.insert(token(2)).await.unwrap();
        drop(store);
        let store = reopen(tmp.path()).await;
        assert_eq!(store.get(&token(1).id).await.unwrap(), None);
        assert_eq!(store.get(&token(2).id).await.unwrap(), Some(token(2)));
        assert_eq!(store.get(&token(3).id).await.unwrap(), Some(token(3)));
    }
}

#[tokio::test]
async fn a_failed_sync_makes_the_store_refuse_writes_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    store.insert(token(1)).await.unwrap();
    inject_sync(&store, io::ErrorKind::Other);
    let message = storage_message(store.insert(token(2)).await);
    assert!(message.contains("syncing"), "{message}");
    let refused = storage_message(store.insert(token(3)).await);
    assert!(
        refused.contains("refuses writes") && refused.contains("reopen"),
        "{refused}"
    );
    assert!(
        store.delete(&token(1).id).await.is_err(),
        "deletes are refused too"
    );
    assert_eq!(
        store.get(&token(1).id).await.unwrap(),
        Some(token(1)),
        "reads still work"
    );
    drop(store);
    let store = reopen(tmp.path()).await;
    assert_eq!(store.get(&token(1).id).await.unwrap(), Some(token(1)));
    store.insert(token(3)).await.unwrap();
}

/// A batch whose sync failed was reported as failed: its bytes, though
/// written, must not come back when the store is reopened.
#[tokio::test]
async fn a_batch_whose_sync_failed_is_cut_off_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    store.insert(token(1)).await.unwrap();
    let before = store.stats().log_bytes;
    inject_sync(&store, io::ErrorKind::Other);
    storage_message(store.insert(token(2)).await);
    let log = tmp.path().join(LOG_FILE_NAME);
    assert_eq!(fs::metadata(&log).unwrap().len(), before);
    drop(store);
    let store = reopen(tmp.path()).await;
    assert_eq!(
        store.get(&token(2).id).await.unwrap(),
        None,
        "a failed insert stays failed"
    );
    assert_eq!(store.stats().live_tokens, 1);
}

/// If the batch cannot be cut off either, the error says the failed write
/// may come back, and the store stays poisoned.
#[tokio::test]
async fn a_failed_sync_that_cannot_be_undone_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    inject_sync(&store, io::ErrorKind::Other);
    inject_sync(&store, io::ErrorKind::Other);
    let message = storage_message(store.insert(token(1)).await);
    assert!(message.contains("may reappear"), "{message}");
    let refused = storage_message(store.insert(token(2)).await);
    assert!(
        refused.contains("may reappear") && refused.contains("reopen"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_queued_behind_a_failed_batch_fail_too() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    store.insert(token(100)).await.unwrap();
    // The first batch (one insert) fails after the others queued behind it,
    // some of them decided on its outcome (a duplicate insert, a delete).
    hold_sync_until_submitted(&store, 5);
    inject_sync(&store, io::ErrorKind::Other);
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.insert(token(1)).await }
    });
    while !store.shared.state().pending.contains_key(&token(1).id) {
        tokio::task::yield_now().await;
    }
    let rest = [
        tokio::spawn({
            let store = store.clone();
            async move { store.insert(token(1)).await }
        }),
        tokio::spawn({
            let store = store.clone();
            async move { store.delete(&token(1).id).await.map(|_| ()) }
        }),
        tokio::spawn({
            let store = store.clone();
            async move { store.insert(token(2)).await }
        }),
    ];
    assert!(first.await.unwrap().is_err());
    for task in rest {
        let message = storage_message(task.await.unwrap());
        assert!(message.contains("earlier write"), "{message}");
    }
    assert_eq!(store.stats().live_tokens, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_one_sync() {
    const WRITERS: u64 = 64;
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    // Hold the first sync until everyone else has queued behind it.
    hold_sync_until_submitted(&store, WRITERS);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..WRITERS {
        let store = store.clone();
        tasks.spawn(async move { store.insert(token(n)).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.live_tokens, WRITERS as usize);
    assert!(
        stats.syncs <= 2,
        "the first batch, then all the others: {stats:?}"
    );
}

#[tokio::test]
async fn a_failed_compaction_keeps_the_old_log() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    for n in 0..20 {
        store.insert(token(n)).await.unwrap();
    }
    for n in 0..15 {
        store.delete(&token(n).id).await.unwrap();
    }
    let before = store.stats();
    inject_write(&store, io::ErrorKind::StorageFull);
    let message = storage_message(store.compact().await);
    assert!(message.contains("compacting"), "{message}");
    assert!(
        !tmp.path().join(COMPACT_FILE_NAME).exists(),
        "the partial file is removed"
    );
    assert_eq!(store.stats().log_bytes, before.log_bytes);
    store.insert(token(99)).await.unwrap();
    store.compact().await.unwrap();
    let after = store.stats();
    assert_eq!((after.compactions, after.dead_records), (1, 0));
    assert!(after.log_bytes < before.log_bytes / 2, "{after:?} vs {before:?}");
    drop(store);
    let store = reopen(tmp.path()).await;
    assert_eq!(store.stats().live_tokens, 6);
    assert_eq!(store.get(&token(99).id).await.unwrap(), Some(token(99)));
}

#[tokio::test]
async fn compaction_runs_by_itself_and_keeps_files_proportional() {
    let tmp = tempfile::tempdir().unwrap();
    let options = FileStoreOptions::default().with_compaction_threshold(50);
    let store = FileTokenStore::open_with(tmp.path(), options.clone())
        .await
        .unwrap();
    for round in 0..20u64 {
        for n in 0..30 {
            store.insert(token(round * 100 + n)).await.unwrap();
        }
        for n in 0..30 {
            store.delete(&token(round * 100 + n).id).await.unwrap();
        }
    }
    store.insert(token(7)).await.unwrap();
    let stats = store.stats();
    assert!(stats.compactions >= 5, "{stats:?}");
    assert!(stats.log_bytes < 120 * 300, "the log stays small: {stats:?}");
    drop(store);
    let store = FileTokenStore::open_with(tmp.path(), options).await.unwrap();
    assert_eq!(store.stats().live_tokens, 1);
}

#[test]
fn works_outside_a_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    // Futures polled by another executor run their I/O inline.
    let store = futures_lite_block_on(FileTokenStore::open(tmp.path())).unwrap();
    futures_lite_block_on(store.insert(token(1))).unwrap();
    assert!(futures_lite_block_on(store.contains(&token(1).id)).unwrap());
    drop(store);
    let store = rt.block_on(FileTokenStore::open(tmp.path())).unwrap();
    assert_eq!(store.stats().live_tokens, 1);
}

/// A minimal executor: polls a future to completion on this thread.
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A process spawned by another thread holds copies of every descriptor
/// until it execs; a copy of the lock file's is one here. Dropping the last
/// handle must still let the directory be opened again at once.
#[tokio::test]
async fn dropping_the_store_unlocks_even_while_a_copy_of_its_lock_lives() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    let copy = store.shared.lock.try_clone().unwrap();
    drop(store);
    let reopened = FileTokenStore::open(tmp.path()).await;
    drop(copy);
    reopened.expect("the dropped store let go of its lock");
}

/// close() must refuse writes from the moment it queues its barrier: a write
/// queued behind the barrier would reach the log after close() released the
/// directory, while another store may already have it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_submitted_while_close_waits_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    let open_gate = hold_next_sync(&store);
    let first = tokio::spawn({
        let store = store.clone();
        async move { store.insert(token(1)).await }
    });
    while store.shared.state().next_seq < 1 {
        tokio::task::yield_now().await;
    }
    let closing = tokio::spawn(store.clone().close());
    // The insert is held in its sync and close() has queued its barrier.
    while store.shared.state().next_seq < 2 {
        tokio::task::yield_now().await;
    }
    let late = tokio::spawn({
        let store = store.clone();
        async move { store.insert(token(2)).await }
    });
    // Refused at once, or (the bug) queued behind the barrier.
    while !late.is_finished() && store.shared.state().next_seq < 3 {
        tokio::task::yield_now().await;
    }
    drop(open_gate);
    first.await.unwrap().unwrap();
    closing.await.unwrap().unwrap();
    let message = storage_message(late.await.unwrap());
    assert!(message.contains("is closed"), "{message}");
    drop(store);
    let store = reopen(tmp.path()).await;
    assert_eq!(store.get(&token(1).id).await.unwrap(), Some(token(1)));
    assert_eq!(
        store.get(&token(2).id).await.unwrap(),
        None,
        "nothing after close() reaches the log"
    );
}

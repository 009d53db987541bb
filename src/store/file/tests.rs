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
    /// A payload limit for the writer far below the real one.
    max_payload: Mutex<Option<usize>>,
}

impl Faults {
    pub(super) fn max_payload(&self) -> Option<usize> {
        *self.max_payload.lock().unwrap()
    }

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

/// Write faults for the first write of the next open of a directory: set on
/// an open store they would come too late for the compaction that upgrades
/// an old log during the open.
static WRITE_FAULTS_AT_OPEN: Mutex<Vec<(PathBuf, io::ErrorKind)>> = Mutex::new(Vec::new());

impl Faults {
    pub(super) fn at_open(dir: &Path) -> Self {
        let mut pending = WRITE_FAULTS_AT_OPEN.lock().unwrap();
        let write = pending
            .iter()
            .position(|(d, _)| d == dir)
            .map(|i| pending.remove(i).1);
        Faults {
            write: Mutex::new(write),
            ..Faults::default()
        }
    }
}

fn inject_write_at_open(dir: &Path, kind: io::ErrorKind) {
    WRITE_FAULTS_AT_OPEN.lock().unwrap().push((dir.to_owned(), kind));
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

fn limit_payload(store: &FileTokenStore, max: usize) {
    *store.shared.faults.max_payload.lock().unwrap() = Some(max);
}

fn expiring(n: u64, at: i64) -> StoredAccessToken {
    let mut token = token(n);
    token.info.expires_at = Some(at);
    token
}

/// A batch in the log: its offset, and the offset and payload length of
/// each of its records.
#[derive(Debug)]
struct LogBatch {
    at: u64,
    records: Vec<(u64, usize)>,
}

/// The batches of an intact log.
fn batches(log: &Path) -> Vec<LogBatch> {
    let bytes = fs::read(log).unwrap();
    let mut offset = format::HEADER_LEN;
    let mut found = Vec::new();
    while let format::BatchSlot::Batch { next } = format::read_batch(&bytes, offset) {
        let mut records = Vec::new();
        let mut at = offset + format::BATCH_HEADER_LEN;
        while let format::Slot::Record { payload, next } = format::read_slot(&bytes[..next], at) {
            records.push((at as u64, payload.len()));
            at = next;
        }
        assert_eq!(at, next, "the batch at {offset} holds only intact records");
        found.push(LogBatch {
            at: offset as u64,
            records,
        });
        offset = next;
    }
    assert_eq!(offset, bytes.len(), "the log holds only intact batches");
    found
}

/// A store holding tokens 0 to 19, expiring at 10, whose last batch is a
/// purge of all of them in several records; returns the log's length
/// before the purge. Closed again.
async fn log_ending_in_a_large_purge(dir: &Path) -> u64 {
    let store = FileTokenStore::open(dir).await.unwrap();
    limit_payload(&store, 200);
    for n in 0..20 {
        store.insert(expiring(n, 10)).await.unwrap();
    }
    let before = store.stats().log_bytes;
    assert_eq!(store.delete_expired(100).await.unwrap().len(), 20);
    drop(store);
    before
}

fn zero(log: &Path, at: u64, len: usize) {
    let mut bytes = fs::read(log).unwrap();
    bytes[at as usize..at as usize + len].fill(0);
    fs::write(log, bytes).unwrap();
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
    let failed = store.compact().await;
    // The cause is reachable as the I/O error it was, each layer said once.
    let (mut chain, mut io_kind) = (vec![], None);
    let mut cause: Option<&dyn std::error::Error> = failed.as_ref().err().map(|e| e as _);
    while let Some(error) = cause {
        chain.push(error.to_string());
        io_kind = io_kind.or(error.downcast_ref::<io::Error>().map(io::Error::kind));
        cause = error.source();
    }
    assert_eq!(io_kind, Some(io::ErrorKind::StorageFull), "{chain:?}");
    assert!(
        chain
            .iter()
            .all(|c| c.matches("token storage failed").count() <= 1),
        "{chain:?}"
    );
    let message = storage_message(failed);
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

/// A purge too large for one record is written as several, each within the
/// reader's limit, all in one batch, and replays whole.
#[tokio::test]
async fn a_large_purge_is_split_into_records_the_reader_accepts() {
    const MAX: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    limit_payload(&store, MAX);
    for n in 0..20 {
        store.insert(expiring(n, 10)).await.unwrap();
    }
    store.insert(expiring(99, 1000)).await.unwrap();
    let purged = store.delete_expired(100).await.unwrap();
    assert_eq!(purged.len(), 20);
    let log = tmp.path().join(LOG_FILE_NAME);
    let batches = batches(&log);
    assert_eq!(batches.len(), 22, "one batch a write: {batches:?}");
    let purge = &batches[21].records;
    assert!(purge.len() > 1, "the purge took several records: {purge:?}");
    for batch in &batches {
        for &(offset, len) in &batch.records {
            assert!(len <= MAX, "the record at {offset} has a payload of {len} bytes");
        }
    }
    drop(store);
    let store = reopen(tmp.path()).await;
    assert_eq!(store.stats().live_tokens, 1);
    assert_eq!(store.get(&token(99).id).await.unwrap(), Some(expiring(99, 1000)));
}

/// A crash that keeps only part of a purge's batch (cut anywhere in it)
/// leaves a purge that was never acknowledged: it deletes nothing, and the
/// batch is cut off like any torn tail.
#[tokio::test]
async fn a_purge_cut_short_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let before = log_ending_in_a_large_purge(tmp.path()).await;
    let log = tmp.path().join(LOG_FILE_NAME);
    let full = fs::read(&log).unwrap();
    let purge = batches(&log).pop().unwrap();
    assert_eq!(purge.at, before);
    let (last, len) = *purge.records.last().unwrap();
    // In its header, in its first record, at its last record, inside it.
    for cut in [
        before + 5,
        before + 30,
        last,
        last + len as u64 / 2,
        full.len() as u64 - 1,
    ] {
        fs::write(&log, &full[..cut as usize]).unwrap();
        let store = reopen(tmp.path()).await;
        assert_eq!(store.stats().live_tokens, 20, "cut at {cut}");
        assert_eq!(
            fs::metadata(&log).unwrap().len(),
            before,
            "cut at {cut}: the batch is cut off"
        );
        // And the log takes appends again after the cut.
        store.insert(token(50)).await.unwrap();
        drop(store);
        assert_eq!(reopen(tmp.path()).await.stats().live_tokens, 21, "cut at {cut}");
    }
}

/// Power loss: the pages of an unsynced batch may reach the disk out of
/// order, so an earlier record of the last batch can read as zeros while a
/// later one is intact. Nothing of that batch was acknowledged: the open
/// drops the batch whole and keeps everything before it.
#[tokio::test]
async fn a_last_batch_with_a_lost_page_is_dropped_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let before = log_ending_in_a_large_purge(tmp.path()).await;
    let log = tmp.path().join(LOG_FILE_NAME);
    let purge = batches(&log).pop().unwrap();
    let (first, len) = purge.records[0];
    let (later, _) = *purge.records.last().unwrap();
    zero(&log, first, format::RECORD_HEADER_LEN + len);
    let bytes = fs::read(&log).unwrap();
    assert!(
        matches!(
            format::read_slot(&bytes, later as usize),
            format::Slot::Record { .. }
        ),
        "a later record of the batch is intact"
    );
    let store = reopen(tmp.path()).await;
    assert_eq!(store.stats().live_tokens, 20, "the purge is dropped whole");
    for n in 0..20 {
        assert_eq!(store.get(&token(n).id).await.unwrap(), Some(expiring(n, 10)));
    }
    assert_eq!(fs::metadata(&log).unwrap().len(), before, "the batch is cut off");
    store.insert(token(50)).await.unwrap();
    drop(store);
    assert_eq!(reopen(tmp.path()).await.stats().live_tokens, 21);
}

/// The same loss in a batch that another batch follows is corruption: that
/// batch was synced before the next one was written. The open fails, naming
/// both offsets, and changes nothing.
#[tokio::test]
async fn damage_in_a_batch_followed_by_an_intact_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let before = log_ending_in_a_large_purge(tmp.path()).await;
    let log = tmp.path().join(LOG_FILE_NAME);
    let after = fs::metadata(&log).unwrap().len();
    reopen(tmp.path()).await.insert(token(50)).await.unwrap();
    let purge = batches(&log).swap_remove(20);
    let (first, len) = purge.records[0];
    zero(&log, first, format::RECORD_HEADER_LEN + len);
    let bytes = fs::read(&log).unwrap();
    let message = match FileTokenStore::open(tmp.path()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a log damaged before its last batch opened"),
    };
    assert!(
        message.contains(&format!("damaged at offset {before}"))
            && message.contains(&format!("intact batch follows at offset {after}")),
        "{message}"
    );
    assert_eq!(fs::read(&log).unwrap(), bytes, "a failed open changes nothing");
}

/// Any other record over the reader's limit is refused rather than written:
/// the reader would take it for damage and refuse the log.
#[tokio::test]
async fn a_record_over_the_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    limit_payload(&store, 200);
    let mut big = token(1);
    big.info.description = Some("x".repeat(200));
    let before = store.stats().log_bytes;
    match store.insert(big).await {
        Err(Error::InvalidInput(message)) => assert!(message.contains("exceeds"), "{message}"),
        other => panic!("expected invalid input, got {other:?}"),
    }
    assert_eq!(store.stats().log_bytes, before);
    store.insert(token(2)).await.unwrap();
    assert_eq!(store.stats().live_tokens, 1);
}

/// A compaction writes batches too, several for a large store, and the
/// compacted log replays whole.
#[tokio::test]
async fn a_compacted_log_is_batches_that_replay_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    store.insert(token(0)).await.unwrap();
    drop(store);
    // Enough tokens for several chunks of COMPACT_CHUNK, appended as one
    // batch (far quicker than as many synced inserts).
    let count = 2 * COMPACT_CHUNK as u64 / 100;
    let mut batch = Vec::new();
    format::open_batch(&mut batch);
    for n in 1..count {
        format::encode_insert(&mut batch, &token(n));
    }
    format::seal_batch(&mut batch);
    let log = tmp.path().join(LOG_FILE_NAME);
    File::options()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&batch)
        .unwrap();
    let store = reopen(tmp.path()).await;
    assert_eq!(store.stats().live_tokens, count as usize);
    store.compact().await.unwrap();
    let batches = batches(&log);
    assert!(batches.len() > 1, "{} batches", batches.len());
    drop(store);
    let store = reopen(tmp.path()).await;
    assert_eq!(store.stats().live_tokens, count as usize);
    assert_eq!(
        store.get(&token(count - 1).id).await.unwrap(),
        Some(token(count - 1))
    );
}

/// The payload length of `token`'s insert record.
fn insert_payload_len(token: &StoredAccessToken) -> usize {
    let mut record = Vec::new();
    format::encode_insert(&mut record, token);
    record.len() - format::RECORD_HEADER_LEN
}

/// Token `n` with a description that makes its insert payload `len` bytes.
fn sized(n: u64, len: usize) -> StoredAccessToken {
    padded(token(n), len)
}

/// `token` with a description that makes its insert payload `len` bytes.
fn padded(mut token: StoredAccessToken, len: usize) -> StoredAccessToken {
    token.info.description = Some(String::new());
    let pad = len - insert_payload_len(&token);
    token.info.description = Some("x".repeat(pad));
    assert_eq!(insert_payload_len(&token), len);
    token
}

/// The payload lengths of every record in the log.
fn record_lens(log: &Path) -> Vec<(u64, usize)> {
    batches(log).into_iter().flat_map(|batch| batch.records).collect()
}

/// A compaction writes each token with the `lastUsedAt` its uses set since
/// it was stored, up to 8 bytes more than the record that stored it. Tokens
/// up to the limit, inserted or rotated in, then used and compacted: every
/// record written must still fit the reader's limit (the reader refuses a
/// longer one as damage, and with it the whole log), and every token the
/// store accepted must come back on reopen, use and all.
#[tokio::test]
async fn no_record_a_compaction_writes_outgrows_the_limit() {
    const MAX: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    limit_payload(&store, MAX);
    let refused = |len: usize, result: Result<()>| match result {
        Err(Error::InvalidInput(message)) => assert!(
            message.contains(&format!("{len} bytes"))
                && message.contains(&format!("{}", len + 8))
                && message.contains(&format!("limit of {MAX}")),
            "{message}"
        ),
        other => panic!("a record of {len} bytes: expected invalid input, got {other:?}"),
    };
    let mut kept = Vec::new();
    // Inserts from 10 bytes under the limit up to it, none used yet.
    for (n, len) in (MAX - 10..=MAX).enumerate() {
        let token = sized(n as u64, len);
        match store.insert(token.clone()).await {
            Ok(()) => kept.push(token),
            result => refused(len, result),
        }
    }
    assert!(
        kept.iter().any(|t| insert_payload_len(t) == MAX - 8),
        "the largest token that fits once used is accepted"
    );
    // A rotation from a short id: its replace record is only 5 bytes longer
    // than the new token's insert record.
    let mut short = token(50);
    short.id = "a".into();
    store.insert(short).await.unwrap();
    let mut rotated = None;
    for len in (MAX - 20..=MAX - 5).rev() {
        let new = sized(60 + len as u64, len);
        match store.replace("a", new.clone()).await {
            Ok(()) => {
                rotated = Some(new);
                break;
            }
            result => refused(len + 5, result),
        }
    }
    kept.push(rotated.expect("a rotation within the limit once used"));
    // A token stored with its lastUsedAt already is kept to the same bound.
    let mut used = token(90);
    used.info.last_used_at = Some(1);
    refused(MAX - 7, store.insert(padded(used.clone(), MAX - 7)).await);
    let used = padded(used, MAX - 8);
    store.insert(used.clone()).await.unwrap();
    kept.push(used);
    for token in &kept {
        let used = TokenUse {
            id: token.id.clone(),
            at_ms: 1_000,
        };
        store.record_last_used(&[used]).await.unwrap();
    }
    store.compact().await.unwrap();
    let log = tmp.path().join(LOG_FILE_NAME);
    for (offset, len) in record_lens(&log) {
        assert!(
            len <= MAX,
            "the compacted record at {offset} has a payload of {len} bytes"
        );
    }
    drop(store);
    let store = reopen(tmp.path()).await;
    assert_eq!(store.stats().live_tokens, kept.len());
    for mut token in kept {
        token.info.last_used_at = Some(1_000);
        assert_eq!(store.get(&token.id).await.unwrap(), Some(token));
    }
}

/// A token stored before its records were checked for the room a use takes
/// (by an earlier build) can still outgrow the limit: the compaction then
/// fails cleanly, keeping the old log, rather than replacing it with one the
/// reader refuses.
#[tokio::test]
async fn a_compaction_that_would_outgrow_the_limit_fails_and_keeps_the_old_log() {
    let tmp = tempfile::tempdir().unwrap();
    let store = FileTokenStore::open(tmp.path()).await.unwrap();
    let big = sized(1, 200);
    store.insert(big.clone()).await.unwrap();
    store.insert(token(2)).await.unwrap();
    store.delete(&token(2).id).await.unwrap();
    let uses = [TokenUse {
        id: big.id.clone(),
        at_ms: 7,
    }];
    store.record_last_used(&uses).await.unwrap();
    // Written within the limit, but 208 bytes once compacted.
    limit_payload(&store, 204);
    let log = tmp.path().join(LOG_FILE_NAME);
    let before = fs::read(&log).unwrap();
    let failed = store.compact().await;
    assert!(matches!(failed, Err(Error::Storage { .. })), "{failed:?}");
    let mut message = String::new();
    let mut cause: Option<&dyn std::error::Error> = failed.as_ref().err().map(|e| e as _);
    while let Some(error) = cause {
        message = format!("{message}: {error}");
        cause = error.source();
    }
    assert!(
        message.contains("compacting")
            && message.contains("208 bytes")
            && message.contains("limit of 204")
            && message.contains(&big.id),
        "{message}"
    );
    assert!(
        !tmp.path().join(COMPACT_FILE_NAME).exists(),
        "the partial file is removed"
    );
    assert_eq!(fs::read(&log).unwrap(), before, "the old log is kept as it was");
    assert_eq!(store.stats().compactions, 0);
    store.insert(token(3)).await.unwrap();
    drop(store);
    let store = reopen(tmp.path()).await;
    let mut expected = big;
    expected.info.last_used_at = Some(7);
    assert_eq!(store.get(&expected.id).await.unwrap(), Some(expected));
    assert_eq!(store.get(&token(3).id).await.unwrap(), Some(token(3)));
}

/// The files keeping torn tails in `dir`, oldest first.
fn torn_tail_paths(dir: &Path) -> Vec<PathBuf> {
    let mut kept: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_str().unwrap().contains(TORN_TAIL_FILE_PREFIX))
        .collect();
    kept.sort();
    kept
}

/// An open that kept a torn tail but failed before cutting it leaves the
/// tail in the log and its copy beside it. The next open reuses that copy;
/// a different tail still gets a file of its own.
#[tokio::test]
async fn a_torn_tail_kept_before_is_not_kept_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let store = reopen(tmp.path()).await;
    store.insert(token(1)).await.unwrap();
    drop(store);
    let log = tmp.path().join(LOG_FILE_NAME);
    let intact = fs::read(&log).unwrap();
    let tear = |tail: &[u8]| fs::write(&log, [&intact[..], tail].concat()).unwrap();
    let earlier = tmp.path().join(format!("{TORN_TAIL_FILE_PREFIX}1"));
    fs::write(&earlier, [7u8; 30]).unwrap();
    // Same length, other bytes: not the same tail.
    let other = tmp.path().join(format!("{TORN_TAIL_FILE_PREFIX}2"));
    fs::write(&other, [8u8; 30]).unwrap();

    tear(&[7u8; 30]);
    drop(reopen(tmp.path()).await);
    assert_eq!(torn_tail_paths(tmp.path()), [earlier.clone(), other.clone()]);
    assert_eq!(fs::read(&log).unwrap(), intact, "cut all the same");

    tear(&[7u8; 31]);
    drop(reopen(tmp.path()).await);
    let kept = torn_tail_paths(tmp.path());
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(torn_tail_files(tmp.path()).contains(&vec![7u8; 31]));
    assert_eq!(
        reopen(tmp.path()).await.get(&token(1).id).await.unwrap(),
        Some(token(1))
    );
}

#[test]
fn cutting_a_torn_tail_warns_and_keeps_its_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    // Outside a runtime the open runs on this thread, where the capture is.
    let store = futures_lite_block_on(FileTokenStore::open(tmp.path())).unwrap();
    futures_lite_block_on(store.insert(token(1))).unwrap();
    drop(store);
    let log = tmp.path().join(LOG_FILE_NAME);
    let mut bytes = fs::read(&log).unwrap();
    let intact = bytes.len();
    bytes.extend_from_slice(&[7u8; 30]);
    fs::write(&log, &bytes).unwrap();

    let warnings = crate::test_log::Warnings::capture();
    let store = futures_lite_block_on(FileTokenStore::open(tmp.path())).unwrap();
    let text = warnings.text();
    let kept = torn_tail_paths(tmp.path());
    let [kept] = &kept[..] else {
        panic!("one file keeps the tail: {kept:?}")
    };
    assert!(
        text.contains(&format!(
            "cut 30 bytes off the end of token log {} at offset {intact}",
            log.display()
        )) && text.contains(&kept.display().to_string()),
        "{text}"
    );
    assert_eq!(fs::read(kept).unwrap(), [7u8; 30]);
    assert_eq!(fs::read(&log).unwrap().len(), intact);
    assert_eq!(store.stats().live_tokens, 1);
}

/// A format 5 log whose base is two batches of one token each, written by
/// hand; and where the second batch starts.
fn log_with_a_base_of_two_batches() -> (Vec<u8>, usize) {
    let mut bytes = format::header(0).to_vec();
    let mut second_at = 0;
    for n in 0..2 {
        let at = bytes.len();
        second_at = at;
        format::open_batch(&mut bytes);
        format::encode_insert(&mut bytes, &token(n));
        format::seal_batch(&mut bytes[at..]);
    }
    let base_len = bytes.len() as u64;
    bytes[..format::HEADER_LEN].copy_from_slice(&format::header(base_len));
    (bytes, second_at)
}

#[test]
fn a_base_of_several_batches_is_protected_whole() {
    let path = Path::new("tokens.log");
    let refused = |bytes: &[u8], expected: &str| match replay(path, bytes) {
        Err(e) => assert!(e.to_string().contains(expected), "{expected}: {e}"),
        Ok(_) => panic!("{expected}: the log was accepted"),
    };
    let (base, second_at) = log_with_a_base_of_two_batches();
    let (_, replayed) = replay(path, &base).unwrap();
    assert_eq!((replayed.len, replayed.torn_at), (base.len() as u64, None));

    // Cut at the boundary between its batches, or damaged in its last one.
    refused(
        &base[..second_at],
        &format!("damaged at offset {second_at}: the log ends inside its base"),
    );
    let mut flipped = base.clone();
    *flipped.last_mut().unwrap() ^= 1;
    refused(
        &flipped,
        &format!("damaged at offset {second_at}: the batch checksum does not match, inside the log's base"),
    );
    // A base that ends inside a batch was not written by a compaction.
    let mut inside = base.clone();
    inside[..format::HEADER_LEN].copy_from_slice(&format::header(second_at as u64 + 5));
    refused(&inside, "runs past the end of the log's base");

    // After the base, a torn batch is still the torn tail.
    let mut torn = base.clone();
    torn.extend_from_slice(&base[second_at..base.len() - 3]);
    let (_, replayed) = replay(path, &torn).unwrap();
    assert_eq!(replayed.torn_at, Some(base.len() as u64));
}

/// A log of format 3 or 4 (records straight after the header, or in one
/// batch) holding `tokens`, whose records are what this build writes.
fn legacy_log(version: u32, tokens: &[StoredAccessToken]) -> Vec<u8> {
    let mut bytes = format::common_header(version).to_vec();
    let records_at = bytes.len();
    if version >= format::BATCH_VERSION {
        format::open_batch(&mut bytes);
    }
    for token in tokens {
        format::encode_insert(&mut bytes, token);
    }
    if version >= format::BATCH_VERSION {
        format::seal_batch(&mut bytes[records_at..]);
    }
    bytes
}

fn header_version(log: &Path) -> u32 {
    u32::from_le_bytes(fs::read(log).unwrap()[8..12].try_into().unwrap())
}

/// The contents of the files keeping torn tails in `dir`, oldest first.
fn torn_tail_files(dir: &Path) -> Vec<Vec<u8>> {
    torn_tail_paths(dir)
        .iter()
        .map(|path| fs::read(path).unwrap())
        .collect()
}

/// A format 4 log takes format 5's batches, so when its upgrade on open
/// fails the store opens all the same and appends to it as it is; a later
/// open upgrades it, with everything written in between.
#[tokio::test]
async fn a_format_4_log_whose_upgrade_fails_is_used_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join(LOG_FILE_NAME);
    fs::write(&log, legacy_log(4, &[token(1), token(2)])).unwrap();

    inject_write_at_open(tmp.path(), io::ErrorKind::StorageFull);
    let store = reopen(tmp.path()).await;
    assert_eq!((store.stats().compactions, header_version(&log)), (0, 4));
    assert!(!tmp.path().join(COMPACT_FILE_NAME).exists());
    store.insert(token(3)).await.unwrap();
    assert!(store.delete(&token(1).id).await.unwrap());
    drop(store);
    assert_eq!(header_version(&log), 4, "appended to in format 4");

    let store = reopen(tmp.path()).await;
    assert_eq!((store.stats().compactions, header_version(&log)), (1, 5));
    for (n, live) in [(1, false), (2, true), (3, true)] {
        assert_eq!(store.contains(&token(n).id).await.unwrap(), live, "token {n}");
    }
}

/// A format 3 log cannot take batches, so a failed upgrade fails the open,
/// and leaves the log as it was, its torn tail included (and no copy of
/// the tail). The next open upgrades it and keeps the tail in one file.
#[tokio::test]
async fn a_format_3_log_whose_upgrade_fails_is_refused_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join(LOG_FILE_NAME);
    let tail = [40u8, 0, 0, 0, 1, 2, 3];
    let bytes = [legacy_log(3, &[token(1), token(2)]), tail.to_vec()].concat();
    fs::write(&log, &bytes).unwrap();

    inject_write_at_open(tmp.path(), io::ErrorKind::StorageFull);
    let message = FileTokenStore::open(tmp.path()).await.unwrap_err().to_string();
    assert!(
        message.contains(&format!("upgrading {} from format version 3 to 5", log.display())),
        "{message}"
    );
    assert!(!tmp.path().join(COMPACT_FILE_NAME).exists());
    assert_eq!(fs::read(&log).unwrap(), bytes);
    assert_eq!(torn_tail_files(tmp.path()), Vec::<Vec<u8>>::new());

    let store = reopen(tmp.path()).await;
    assert_eq!(header_version(&log), 5);
    for n in [1, 2] {
        assert_eq!(store.get(&token(n).id).await.unwrap(), Some(token(n)));
    }
    assert_eq!(store.stats().live_tokens, 2);
    assert_eq!(torn_tail_files(tmp.path()), [tail.to_vec()]);
}

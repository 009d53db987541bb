//! [`FileTokenStore`]: token records in a local directory, durable and
//! crash safe (feature `fs`).
//!
//! # Durability
//!
//! Every acknowledged [`insert`](TokenStore::insert) (limited or not),
//! [`replace`](TokenStore::replace), [`delete`](TokenStore::delete)
//! and [`delete_expired`](TokenStore::delete_expired) is on disk before the call
//! returns: its record is appended to the log and the log is `fdatasync`ed;
//! after a rename (compaction, first creation) the directory is fsynced too.
//! Concurrent writers share one fsync (group commit): while one batch is being
//! synced the next one gathers every record submitted meanwhile. Each batch
//! is written as one checksummed frame, and only after the one before it was
//! synced, so a crash can damage only the last batch, which nobody was told
//! had landed; it is then dropped whole on open (see the format below). A
//! bad batch is that torn tail only if no intact batch follows it; text with
//! NUL characters is refused, so no token's name or description can hold
//! something that reads as an intact batch (its 8-byte length needs NUL
//! bytes) and make an ordinary crash read as damage. The
//! in-memory index (the same one [`MemoryTokenStore`]
//! uses) changes only after a record is durable, so reads never show what a
//! crash could take back.
//!
//! Blocking file I/O runs on tokio's blocking pool (`spawn_blocking`); outside
//! a tokio runtime it runs on the calling thread.
//!
//! # Files
//!
//! The directory (created with mode 0700; files 0600) holds:
//!
//! | file | what |
//! |---|---|
//! | `tokens.log` | the log, below |
//! | `tokens.lock` | held with an exclusive OS lock while a store has the directory open |
//! | `tokens.log.compact` | a compaction in progress; removed on open if a crash left it |
//! | `tokens.log.torn.<ms>` | a torn tail cut off the log on open at that time (see below); remove it once you have read the warning |
//!
//! # On-disk format of `tokens.log` (version 5)
//!
//! All integers are little-endian. The file starts with a 28-byte header:
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | magic `DHATLOG\0` |
//! | 8..12 | format version, `u32` (this build writes 5, reads 1 to 5) |
//! | 12..16 | CRC-32 (IEEE) of bytes 0..12 |
//! | 16..24 | `base_len`: length of the log's base, `u64` |
//! | 24..28 | CRC-32 of bytes 0..24 |
//!
//! The base is what the file held when it became the log: the header alone
//! for a new log, all a compaction wrote for a compacted one. It was synced
//! before the file was linked or renamed into place, so no crash can tear
//! it (see below).
//!
//! Batches follow, one after another, each what one group commit wrote with
//! one write and one `fdatasync` (a compaction writes its file as batches of
//! about 1 MiB, but syncs it before renaming it into place):
//!
//! | bytes | field |
//! |---|---|
//! | 0..8 | `len`: length of the records, `u64`, at least 9 |
//! | 8..12 | CRC-32 of the 8 `len` bytes followed by the records |
//! | 12..12+len | one or more records, back to back |
//!
//! A record:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | `len`: payload length, `u32`, 1 to 2^30 |
//! | 4..8 | CRC-32 of the 4 `len` bytes followed by the payload |
//! | 8..8+len | payload |
//!
//! A payload starts with a kind byte. Text is `u32` byte length + UTF-8;
//! optional fields are a byte `0` (absent) or `1` followed by the value.
//!
//! * `1` insert: `id`, `name`, `actorUrn`, `ownerUrn` (texts), `createdAt`
//!   (`i64` ms), optional `expiresAt` (`i64` ms), optional `description`
//!   (text), optional `lastUsedAt` (`i64` ms; version 3 on).
//! * `2` delete: `u32` count, then that many token ids (texts). A purge too
//!   large for one payload is written as several delete records in its batch.
//! * `3` replace (version 2 on): the `id` deleted (text), then the token
//!   inserted, laid out as in an insert. One record, so a crash never leaves
//!   half a rotation ([`TokenStore::replace`]).
//! * `4` last used (version 3 on): `u32` count, then that many pairs of a
//!   token id (text) and the time it validated (`i64` ms); written only for
//!   tokens present at that point of the log.
//!
//! Version 4 is version 5 with only the first 16 bytes of the header (so
//! no base). Version 3 is version 4 without batches: its records follow the
//! header directly. Version 2 is version 3 without `lastUsedAt` and last-used
//! records; version 1 is version 2 without replace records. An older log is
//! read and then upgraded on open by a compaction (which writes a version 5
//! header), before anything can append to it. If that fails, a version 4
//! log, which takes the same batches, is appended to as it is; the open of
//! a version 1 to 3 log fails and leaves the file as it was. Builds before
//! version 5 refuse a version 5 log as newer: the first 16 bytes keep their
//! layout.
//!
//! The plaintext token is never written: only its id and its info.
//!
//! Replaying the batches in order rebuilds the store. On open, a batch after
//! the base that is damaged or cut short with no intact batch after it is
//! the last batch, which a crash interrupted before its sync returned and
//! which was therefore never acknowledged: it is cut off whole (its bytes
//! kept in `tokens.log.torn.<ms>`, with a warning logged), however much of it
//! reached the disk (after a power loss its pages may have landed in
//! any order, a later record intact behind an earlier one lost). So each
//! batch, and every call in it, takes effect entirely or not at all. Damage
//! followed by an intact batch is corruption, as is damage inside the base,
//! a batch that runs past its end, or a log that ends inside it (a flipped
//! bit in a small compacted store, whose base is one batch, is reported,
//! not cut off as a torn tail), and so is a malformed record inside an
//! intact batch; each fails the open with
//! the file and the byte offsets and leaves the file as it was, as do a
//! foreign file and a newer format version. (Versions 1 to 4 have no base:
//! the same rule applies to all their batches, and versions 1 to 3 apply it
//! record by record.) Bit rot in the last batch written after the base is
//! indistinguishable from a torn write, so it is cut off too; its bytes
//! then survive only in `tokens.log.torn.<ms>`, and the warning names it.
//!
//! # Compaction
//!
//! Revoked and purged tokens leave dead records behind. Once the dead records
//! outnumber both the live tokens and a threshold
//! ([`FileStoreOptions::with_compaction_threshold`]), the writer rewrites the
//! live tokens to `tokens.log.compact`, syncs it, renames it over
//! `tokens.log` and syncs the directory. The rewrite costs time in proportion
//! to the live tokens and happens only after as many dead records have been
//! appended, so writes cost O(1) amortized and the files stay proportional to
//! the live tokens. Writes wait while a compaction runs; reads do not.
//! Expired tokens are dropped once deleted (by [`delete_expired`], by DataHub's
//! cleanup job or by validating them); a compaction deletes nothing by itself.
//!
//! A compaction writes each token as an insert record carrying the
//! `lastUsedAt` its last-used records set, 8 bytes more than an absent one.
//! So an insert or replace is refused ([`Error::InvalidInput`]) unless its
//! record fits the 2^30-byte payload limit with 8 bytes to spare, and every
//! record a compaction writes fits it. Should one not fit all the same
//! (a token an earlier build stored within 8 bytes of the limit), the
//! compaction fails and the old log stays in place; if it was the upgrade of
//! a log of format 1 to 3, the open fails (a format 4 log stays as it is,
//! without a base, until a compaction succeeds).
//!
//! [`delete_expired`]: TokenStore::delete_expired

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::memory::{IdKey, Index};
use super::{ListPage, ListQuery, MemoryTokenStore, OwnerLimit, TokenStore, TokenUse};
use crate::error::{Error, Result};
use crate::model::StoredAccessToken;
use crate::urn::Urn;

mod format;
pub(crate) mod fsutil;
#[cfg(test)]
mod tests;

/// Name of the log file inside the store's directory.
pub const LOG_FILE_NAME: &str = "tokens.log";
/// Name of the lock file inside the store's directory.
pub const LOCK_FILE_NAME: &str = "tokens.lock";
/// Start of the names of the files inside the store's directory that keep
/// the torn tails cut off the log: `tokens.log.torn.<n>`, `n` the time of
/// the cut in ms since the epoch (or the next number not taken).
pub const TORN_TAIL_FILE_PREFIX: &str = "tokens.log.torn.";
const COMPACT_FILE_NAME: &str = "tokens.log.compact";
/// Bytes buffered per write while compacting.
const COMPACT_CHUNK: usize = 1 << 20;

/// Tuning for a [`FileTokenStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStoreOptions {
    compaction_threshold: u64,
}

impl Default for FileStoreOptions {
    /// Compaction after at least 1024 dead records.
    fn default() -> Self {
        FileStoreOptions {
            compaction_threshold: 1024,
        }
    }
}

impl FileStoreOptions {
    /// Compacts only once at least `dead_records` (and at least as many as
    /// there are live tokens) have accumulated; at least 1.
    pub fn with_compaction_threshold(mut self, dead_records: u64) -> Self {
        self.compaction_threshold = dead_records.max(1);
        self
    }
}

/// Counters describing a [`FileTokenStore`], for monitoring and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStoreStats {
    /// Tokens in the store.
    pub live_tokens: usize,
    /// Size of `tokens.log` in bytes.
    pub log_bytes: u64,
    /// Records in the log that a compaction would drop.
    pub dead_records: u64,
    /// Log fsyncs since open (group commit makes this lower than the writes).
    pub syncs: u64,
    /// Compactions since open.
    pub compactions: u64,
}

/// A [`TokenStore`] in a local directory: durable, crash safe, and held
/// exclusively by one open store at a time (see the [module docs](self) for
/// the guarantees and the on-disk format).
///
/// Clones share the same open store. All tokens are also kept in memory,
/// indexed for listing, so reads never touch the disk.
///
/// ```
/// use datahub_access_tokens::store::FileTokenStore;
/// use datahub_access_tokens::TokenStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datahub_access_tokens::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// # let dir = tmp.path().join("tokens");
/// let store = FileTokenStore::open(&dir).await?;
/// assert!(!store.contains("HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=").await?);
/// store.close().await?; // optional: dropping it is as safe
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FileTokenStore {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    log_path: PathBuf,
    memory: MemoryTokenStore,
    options: FileStoreOptions,
    state: Mutex<State>,
    writer: Mutex<Writer>,
    lock: File,
    log_bytes: AtomicU64,
    dead_records: AtomicU64,
    syncs: AtomicU64,
    compactions: AtomicU64,
    #[cfg(test)]
    faults: tests::Faults,
}

impl Drop for Shared {
    /// Unlocks explicitly instead of leaving it to closing the file: a
    /// process that another thread spawns meanwhile holds a copy of every
    /// descriptor until it execs, and the lock lasts as long as any copy.
    fn drop(&mut self) {
        let _ = self.lock.unlock();
    }
}

/// Decisions not yet durable, and the writes waiting for the flusher.
#[derive(Default)]
struct State {
    /// The state each id will have once every queued write lands.
    pending: HashMap<String, Pending>,
    queue: Vec<u8>,
    ops: Vec<Op>,
    next_seq: u64,
    /// Whether a flusher is running (it exits when the queue is empty).
    flushing: bool,
    /// Why writes are refused after an I/O failure that left the log uncertain.
    poisoned: Option<String>,
    closed: bool,
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    /// `Some(expires_at)` if the id will be present, `None` if absent.
    present: Option<Option<i64>>,
    /// The owner of a pending insert, for per-owner limits.
    owner: Option<Urn>,
}

struct Op {
    seq: u64,
    apply: Apply,
    reply: oneshot::Sender<Result<()>>,
}

/// What an acknowledged op does to the in-memory index.
enum Apply {
    Insert(StoredAccessToken),
    Delete(Vec<String>),
    /// Delete the first id and insert the token, as one step.
    Replace(String, StoredAccessToken),
    /// Move these tokens' `lastUsedAt` forward.
    LastUsed(Vec<TokenUse>),
    /// Nothing: the op only waits for the writes queued before it.
    Barrier,
    /// Rewrite the log now.
    Compact,
}

struct Writer {
    file: File,
    len: u64,
    dead: u64,
    /// No automatic compaction before this many dead records (backs off
    /// after a failed attempt).
    next_compaction_at: u64,
}

/// The file store's own failures; callers see them as [`Error::Storage`].
#[derive(Debug, thiserror::Error)]
enum FileStoreError {
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "the token store {} is already open by another process (or by another FileTokenStore in this one)",
        dir.display()
    )]
    Locked { dir: PathBuf },
    #[error("{} is not a DataHub token log (its header is missing or foreign)", path.display())]
    NotOurs { path: PathBuf },
    #[error(
        "{} is a token log of format version {version}; this build reads versions {} to {}, so upgrade it",
        path.display(),
        format::OLDEST_VERSION,
        format::FORMAT_VERSION
    )]
    NewerVersion { path: PathBuf, version: u32 },
    #[error("token log {} is damaged at offset {offset}: {reason}", path.display())]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error(
        "the token store {} refuses writes after an I/O failure ({reason}); reopen it",
        dir.display()
    )]
    Poisoned { dir: PathBuf, reason: String },
    #[error("the token store {} is closed", dir.display())]
    Closed { dir: PathBuf },
    #[error("not written: an earlier write to {} in the same batch failed ({reason})", path.display())]
    Aborted { path: PathBuf, reason: String },
}

impl From<FileStoreError> for Error {
    fn from(e: FileStoreError) -> Self {
        match e {
            FileStoreError::Io { context, source } => Error::storage(context, source),
            other => Error::storage(other.to_string(), other),
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> FileStoreError {
    let context = context.into();
    move |source| FileStoreError::Io { context, source }
}

impl FileTokenStore {
    /// Opens the store in `dir`, creating the directory and an empty log if
    /// missing, and replays the log into memory.
    ///
    /// Fails with [`Error::Storage`] if another store has the directory open
    /// (in this process or another), if the log is damaged anywhere but a
    /// torn tail, is not a token log, or has a newer format version.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, FileStoreOptions::default()).await
    }

    /// [`open`](Self::open) with tuning options.
    pub async fn open_with(dir: impl AsRef<Path>, options: FileStoreOptions) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        off_executor(move || Ok(Self::open_blocking(dir, options)?)).await
    }

    /// The directory holding the store.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Counters: live tokens, log size, dead records, fsyncs, compactions.
    pub fn stats(&self) -> FileStoreStats {
        let s = &self.shared;
        FileStoreStats {
            live_tokens: s.memory.len(),
            log_bytes: s.log_bytes.load(Ordering::Relaxed),
            dead_records: s.dead_records.load(Ordering::Relaxed),
            syncs: s.syncs.load(Ordering::Relaxed),
            compactions: s.compactions.load(Ordering::Relaxed),
        }
    }

    /// Rewrites the log with only the live tokens now, rather than when the
    /// dead records reach the threshold (an operator's tool calls this after
    /// a large purge).
    pub async fn compact(&self) -> Result<()> {
        self.submit(|_, _| Ok(Plan::Write(Vec::new(), Apply::Compact, ())))
            .await
    }

    /// Refuses further writes on every clone, waits for every write submitted
    /// before, then releases the directory, so it can be opened again at
    /// once. Dropping the last clone without closing is just as safe (every
    /// acknowledged write is already durable); it releases the directory then,
    /// as it does if this future is dropped before it finishes.
    pub async fn close(self) -> Result<()> {
        let flushed = self.submit(|_, _| Ok(Plan::Close(()))).await;
        // Already closed or poisoned: nothing is queued, nothing more will be.
        self.shared.state().closed = true;
        let released = self.shared.lock.unlock().map_err(io_error(format!(
            "releasing the lock on {}",
            self.shared.dir.display()
        )));
        flushed?;
        Ok(released?)
    }

    fn open_blocking(dir: PathBuf, options: FileStoreOptions) -> Result<Self, FileStoreError> {
        fsutil::create_private_dir(&dir).map_err(io_error(format!(
            "creating the token store directory {}",
            dir.display()
        )))?;
        let lock_path = dir.join(LOCK_FILE_NAME);
        let lock = fsutil::private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_error(format!("opening {}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(FileStoreError::Locked { dir }),
            Err(fs::TryLockError::Error(e)) => {
                return Err(io_error(format!("locking {}", lock_path.display()))(e))
            }
        }
        // A crash during compaction leaves this behind; the log is intact.
        let compact_path = dir.join(COMPACT_FILE_NAME);
        match fs::remove_file(&compact_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_error(format!("removing {}", compact_path.display()))(e))
            }
            _ => {}
        }
        let log_path = dir.join(LOG_FILE_NAME);
        if !log_path.exists() {
            fsutil::create_new_durably(&log_path, &format::header(format::HEADER_LEN as u64))
                .map_err(io_error(format!("creating {}", log_path.display())))?;
        }
        let bytes = fs::read(&log_path).map_err(io_error(format!("reading {}", log_path.display())))?;
        let (index, replayed) = replay(&log_path, &bytes)?;
        // The torn tail's copy and its length.
        let kept_tail = match replayed.torn_at {
            Some(torn_at) => {
                let tail = &bytes[torn_at as usize..];
                Some((keep_torn_tail(&dir, &log_path, tail)?, tail.len()))
            }
            None => None,
        };
        drop(bytes);
        // A log of format 1 to 3 is upgraded below by a compaction that
        // replaces it whole, torn tail and all; cut first, it would be left
        // shortened if the upgrade failed.
        let upgrade_replaces_log = replayed.version < format::BATCH_VERSION;
        let memory = MemoryTokenStore::from_index(index);
        let mut file = fsutil::private_file_options()
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(io_error(format!("opening {}", log_path.display())))?;
        if let Some(torn_at) = replayed.torn_at.filter(|_| !upgrade_replaces_log) {
            // Cut the torn tail off for good, so appends follow intact records.
            file.set_len(torn_at)
                .and_then(|()| file.sync_all())
                .map_err(io_error(format!(
                    "cutting the torn tail off {} at offset {torn_at}",
                    log_path.display()
                )))?;
        }
        file.seek(SeekFrom::Start(replayed.len))
            .map_err(io_error(format!("seeking in {}", log_path.display())))?;
        let threshold = options.compaction_threshold;
        let shared = Shared {
            #[cfg(test)]
            faults: tests::Faults::at_open(&dir),
            dir,
            log_path,
            memory,
            options,
            state: Mutex::new(State::default()),
            writer: Mutex::new(Writer {
                file,
                len: replayed.len,
                dead: replayed.dead,
                next_compaction_at: threshold,
            }),
            lock,
            log_bytes: AtomicU64::new(replayed.len),
            dead_records: AtomicU64::new(replayed.dead),
            syncs: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
        };
        {
            let mut writer = shared.writer();
            if upgrade_replaces_log {
                // Upgrade before any batch or newer record kind can be appended.
                let upgraded = shared.compact(&mut writer);
                if upgraded.is_err() && shared.compactions.load(Ordering::Relaxed) == 0 {
                    // Not renamed into place: the log is as it was, its
                    // torn tail included, so the copy is not needed.
                    if let Some((kept, _)) = &kept_tail {
                        let _ = fs::remove_file(kept);
                    }
                }
                upgraded.map_err(|e| match e {
                    FileStoreError::Io { context, source } => FileStoreError::Io {
                        context: format!(
                            "upgrading {} from format version {} to {}: {context}",
                            shared.log_path.display(),
                            replayed.version,
                            format::FORMAT_VERSION
                        ),
                        source,
                    },
                    other => other,
                })?;
            } else if replayed.version < format::FORMAT_VERSION || shared.compaction_due(&writer) {
                // Not fatal: the log is intact, and a later batch or open
                // retries. A version 4 log takes the same batches; the first
                // compaction that succeeds gives it a base (version 5).
                let _ = shared.compact(&mut writer);
            }
        }
        if let (Some(torn_at), Some((kept, tail_len))) = (replayed.torn_at, &kept_tail) {
            tracing::warn!(
                "cut {tail_len} bytes off the end of token log {} at offset {torn_at}: the remains of a write \
                 a crash interrupted, never acknowledged, unless bit rot damaged the last batch; kept in {}",
                shared.log_path.display(),
                kept.display()
            );
        }
        Ok(FileTokenStore {
            shared: Arc::new(shared),
        })
    }

    /// Decides an op under the state lock, queues its record, and waits for
    /// it to be durable. `decide` sees the index and the pending decisions.
    async fn submit<T>(&self, decide: impl FnOnce(&State, &Index) -> Result<Plan<T>>) -> Result<T> {
        let max_payload = self.shared.max_payload();
        let (receiver, start, answer) = {
            let mut state = self.shared.state();
            if state.closed {
                return Err(FileStoreError::Closed {
                    dir: self.shared.dir.clone(),
                }
                .into());
            }
            if let Some(reason) = &state.poisoned {
                return Err(FileStoreError::Poisoned {
                    dir: self.shared.dir.clone(),
                    reason: reason.clone(),
                }
                .into());
            }
            let plan = decide(&state, &self.shared.memory.read())?;
            let seq = state.next_seq;
            state.next_seq += 1;
            let (apply, answer) = match plan {
                Plan::Done(answer) => return Ok(answer),
                // Depends on a pending write: answer once it has landed.
                Plan::Wait(answer) => (Apply::Barrier, answer),
                // Closed in the step that queues the barrier, so no write can
                // queue behind it and reach the log once the lock is released.
                Plan::Close(answer) => {
                    state.closed = true;
                    (Apply::Barrier, answer)
                }
                Plan::Write(record, apply, answer) => {
                    // The reader would take it for damage and refuse the log.
                    if let Some(len) = format::oversized(&record, max_payload) {
                        return Err(Error::invalid_input(format!(
                            "a token store record of {len} bytes exceeds the limit of {max_payload}"
                        )));
                    }
                    // Everything queued until the flusher takes it is one batch.
                    if state.queue.is_empty() && !record.is_empty() {
                        format::open_batch(&mut state.queue);
                    }
                    state.queue.extend_from_slice(&record);
                    (apply, answer)
                }
            };
            match &apply {
                Apply::Insert(token) => {
                    let present = Some(token.info.expires_at);
                    let owner = Some(token.info.owner_urn.clone());
                    state
                        .pending
                        .insert(token.id.clone(), Pending { seq, present, owner });
                }
                Apply::Delete(ids) => {
                    for id in ids {
                        let pending = Pending {
                            seq,
                            present: None,
                            owner: None,
                        };
                        state.pending.insert(id.clone(), pending);
                    }
                }
                Apply::Replace(old, token) => {
                    let gone = Pending {
                        seq,
                        present: None,
                        owner: None,
                    };
                    state.pending.insert(old.clone(), gone);
                    let present = Some(token.info.expires_at);
                    let owner = Some(token.info.owner_urn.clone());
                    state
                        .pending
                        .insert(token.id.clone(), Pending { seq, present, owner });
                }
                // Presence does not change: nothing for later decisions.
                Apply::LastUsed(_) | Apply::Barrier | Apply::Compact => {}
            }
            let (reply, receiver) = oneshot::channel();
            state.ops.push(Op { seq, apply, reply });
            let start = !state.flushing;
            state.flushing = true;
            (receiver, start, answer)
        };
        if start {
            // Before any await, so a dropped future cannot strand the queue.
            self.start_flusher();
        }
        match receiver.await {
            Ok(result) => result.map(|()| answer),
            Err(_) => Err(Error::storage(
                format!("writing to the token store {}", self.shared.dir.display()),
                "the writer stopped before confirming this write (is the runtime shutting down?)",
            )),
        }
    }

    fn start_flusher(&self) {
        let claim = FlusherClaim(Some(self.shared.clone()));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(move || claim.run())),
            Err(_) => claim.run(),
        }
    }
}

/// The claim of a flusher about to start (`flushing` is set for it). Should
/// tokio drop it without running it (a runtime shut down refuses blocking
/// tasks), dropping it clears `flushing`, so the next write starts a flusher
/// that writes what is queued, rather than every later write waiting for
/// one that never runs.
struct FlusherClaim(Option<Arc<Shared>>);

impl FlusherClaim {
    fn run(mut self) {
        if let Some(shared) = self.0.take() {
            flush_loop(shared);
        }
    }
}

impl Drop for FlusherClaim {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.state().flushing = false;
        }
    }
}

/// What a mutating op decided.
// Short-lived, one per call, moved once: boxing the record would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Plan<T> {
    /// Answer now; nothing pending affects it.
    Done(T),
    /// Answer after the writes queued so far have landed.
    Wait(T),
    /// As `Wait`, and refuse every later write: the store is closing.
    Close(T),
    /// Append this record, apply this change, then answer.
    Write(Vec<u8>, Apply, T),
}

impl State {
    /// Whether `id` will be present once the queued writes land, its expiry
    /// then, and whether that depends on a queued write.
    fn lookup(&self, index: &Index, id: &str) -> (Option<Option<i64>>, bool) {
        match self.pending.get(id) {
            Some(p) => (p.present, true),
            None => (index.get(id).map(|t| t.info.expires_at), false),
        }
    }
}

/// Runs `f` on tokio's blocking pool, or right here outside a runtime.
async fn off_executor<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| Error::storage("the token store's blocking task failed", e))?,
        Err(_) => f(),
    }
}

/// Saves a torn tail in a new file named by [`TORN_TAIL_FILE_PREFIX`] and
/// the time, durably, before it is cut off the log; returns its path. It
/// is almost always the remains of a write a crash interrupted, which
/// nobody was told had landed; but bit rot in the last batch, acknowledged,
/// reads the same, and these bytes are then its only copy.
///
/// An open that kept the tail and then failed before cutting it (an I/O
/// error there, or a crash before the cut was durable) leaves the tail in
/// the log and its copy beside it: the next open finds that copy and keeps
/// no second one.
fn keep_torn_tail(dir: &Path, log_path: &Path, tail: &[u8]) -> Result<PathBuf, FileStoreError> {
    if let Some(kept) = kept_before(dir, tail) {
        return Ok(kept);
    }
    let mut stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    let mut kept = dir.join(format!("{TORN_TAIL_FILE_PREFIX}{stamp}"));
    // A new file, never one kept before: the next free number if this one is taken.
    let created = loop {
        match fsutil::private_file_options()
            .write(true)
            .create_new(true)
            .open(&kept)
        {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                stamp += 1;
                kept = dir.join(format!("{TORN_TAIL_FILE_PREFIX}{stamp}"));
            }
            created => break created,
        }
    };
    created
        .and_then(|mut file| {
            file.write_all(tail)?;
            file.sync_data()
        })
        .and_then(|()| fsutil::sync_dir(dir))
        .map_err(io_error(format!(
            "keeping the torn tail of {} in {}",
            log_path.display(),
            kept.display()
        )))?;
    Ok(kept)
}

/// A file in `dir` that already keeps exactly `tail`. Any error reading
/// the directory counts as none found: a second copy is safe, a missing
/// one is not.
fn kept_before(dir: &Path, tail: &[u8]) -> Option<PathBuf> {
    fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let path = entry.path();
        let kept = entry.file_name().to_str()?.starts_with(TORN_TAIL_FILE_PREFIX)
            && entry.metadata().ok()?.len() == tail.len() as u64
            && fs::read(&path).ok()? == tail;
        kept.then_some(path)
    })
}

struct Replayed {
    /// The log's format version.
    version: u32,
    /// Bytes of intact log.
    len: u64,
    dead: u64,
    /// Where a torn tail was cut off, if one was.
    torn_at: Option<u64>,
}

/// Rebuilds the index from the log's bytes: replays into a map by id, then
/// builds the index in bulk (much faster than inserting one by one).
fn replay(path: &Path, bytes: &[u8]) -> Result<(Index, Replayed), FileStoreError> {
    let header = match format::check_header(bytes) {
        Ok(header) => header,
        Err(format::HeaderProblem::NotOurs) => return Err(FileStoreError::NotOurs { path: path.into() }),
        Err(format::HeaderProblem::Newer(version)) => {
            return Err(FileStoreError::NewerVersion {
                path: path.into(),
                version,
            })
        }
        Err(format::HeaderProblem::Damaged(offset)) => {
            return Err(FileStoreError::Damaged {
                path: path.into(),
                offset: offset as u64,
                reason: if offset == 0 {
                    "the header checksum does not match".into()
                } else {
                    "the header's base length is cut short, fails its checksum or is shorter than the header"
                        .into()
                },
            })
        }
        Err(format::HeaderProblem::Unknown(version)) => {
            return Err(FileStoreError::Damaged {
                path: path.into(),
                offset: 8,
                reason: format!(
                    "the header names format version {version}, which no build writes (this build reads \
                     versions {} to {})",
                    format::OLDEST_VERSION,
                    format::FORMAT_VERSION
                ),
            })
        }
    };
    let damaged = |offset: usize, reason: String| FileStoreError::Damaged {
        path: path.into(),
        offset: offset as u64,
        reason,
    };
    // One thread checks and decodes records (allocation-heavy) while this
    // one applies them (hash-heavy): opening a large store takes about half
    // the time on two cores.
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Decoded>(8);
        scope.spawn(move || decode_all(bytes, &header, &damaged, sender));
        // Sized for a compacted log (about 140 bytes a token): no rehashing.
        // The live tokens by id, which becomes the index's id map.
        let mut live: FxHashMap<IdKey, Arc<StoredAccessToken>> =
            FxHashMap::with_capacity_and_hasher(bytes.len() / 140, Default::default());
        // Every record version in file (and so memory) order; the live ones
        // are those the map still shares.
        let mut inserted: Vec<Arc<StoredAccessToken>> = Vec::with_capacity(bytes.len() / 140);
        let mut dead = 0u64;
        let insert = |live: &mut FxHashMap<IdKey, Arc<StoredAccessToken>>,
                      inserted: &mut Vec<Arc<StoredAccessToken>>,
                      offset,
                      token: Arc<StoredAccessToken>| {
            inserted.push(token.clone());
            match live.insert(IdKey::new(&token.id), token) {
                Some(first) => Err(damaged(
                    offset,
                    format!("a second insert of token id {}", first.id),
                )),
                None => Ok(()),
            }
        };
        for decoded in receiver {
            match decoded {
                Decoded::Records(records) => {
                    for (offset, record) in records {
                        match record {
                            DecodedRecord::Insert(token) => insert(&mut live, &mut inserted, offset, token)?,
                            DecodedRecord::Replace(old, token) => {
                                if live.remove(&IdKey::new(&old)).is_none() {
                                    let why = format!("a replace of token id {old}, which is not there");
                                    return Err(damaged(offset, why));
                                }
                                dead += 1;
                                insert(&mut live, &mut inserted, offset, token)?;
                            }
                            DecodedRecord::Delete(ids) => {
                                dead += 1;
                                for id in &ids {
                                    if live.remove(&IdKey::new(id)).is_some() {
                                        dead += 1;
                                    }
                                }
                            }
                            DecodedRecord::LastUsed(uses) => {
                                dead += 1;
                                for used in uses {
                                    // Written only for present tokens.
                                    let Some(token) = live.get_mut(&IdKey::new(&used.id)) else {
                                        let why =
                                            format!("a last use of token id {}, which is not there", used.id);
                                        return Err(damaged(offset, why));
                                    };
                                    if token.info.last_used_at.is_none_or(|last| last < used.at_ms) {
                                        // A new version; the old one is dropped below with the dead.
                                        let mut used_token = (**token).clone();
                                        used_token.info.last_used_at = Some(used.at_ms);
                                        *token = Arc::new(used_token);
                                        inserted.push(token.clone());
                                    }
                                }
                            }
                        }
                    }
                }
                Decoded::End { len, torn } => {
                    let replayed = Replayed {
                        version: header.version,
                        len: len as u64,
                        dead,
                        torn_at: torn.then_some(len as u64),
                    };
                    inserted.retain(|token| Arc::strong_count(token) > 1);
                    return Ok((Index::from_map(live, inserted), replayed));
                }
                Decoded::Failed(error) => return Err(error),
            }
        }
        Err(damaged(0, "the log decoder stopped unexpectedly".into()))
    })
}

/// What the decoding thread hands to the applying one.
enum Decoded {
    /// Records with their offsets, in file order.
    Records(Vec<(usize, DecodedRecord)>),
    /// The intact log ends at `len`; `torn`: a torn tail follows.
    End {
        len: usize,
        torn: bool,
    },
    Failed(FileStoreError),
}

enum DecodedRecord {
    Insert(Arc<StoredAccessToken>),
    Delete(Vec<String>),
    Replace(String, Arc<StoredAccessToken>),
    LastUsed(Vec<TokenUse>),
}

/// Checks and decodes every record, sending them on in chunks; stops early
/// if the receiver hangs up.
fn decode_all(
    bytes: &[u8],
    header: &format::Header,
    damaged: &(impl Fn(usize, String) -> FileStoreError + Sync),
    sender: std::sync::mpsc::SyncSender<Decoded>,
) {
    let mut sink = Sink {
        chunk: Vec::with_capacity(Sink::CHUNK),
        sender,
    };
    let version = header.version;
    let last = if version >= format::BATCH_VERSION {
        match decode_batches(bytes, header, damaged, &mut sink) {
            Some(last) => last,
            None => return,
        }
    } else {
        // Before batches: any record may be the start of the torn tail.
        match decode_records(bytes, header.len, version, damaged, &mut sink) {
            Stop::End(len) => Decoded::End { len, torn: false },
            Stop::Bad(offset, reason) => torn_or_damaged(
                offset,
                reason,
                "record",
                format::intact_record_after(bytes, offset),
                damaged,
            ),
            Stop::Failed(error) => Decoded::Failed(error),
            Stop::HungUp => return,
        }
    };
    // Records before a failure are sent first, so the error is the one at
    // the lowest offset.
    if sink.sender.send(Decoded::Records(sink.chunk)).is_ok() {
        let _ = sink.sender.send(last);
    }
}

/// Decodes a log of batches (version 4 on). A bad batch with no intact one
/// after it is the torn tail, cut whole: however its pages reached the disk,
/// none of it was acknowledged. But the base (version 5 on) was synced
/// before the file became the log, so bad bytes or an end inside it are
/// damage. `None` if the receiver hung up.
fn decode_batches(
    bytes: &[u8],
    header: &format::Header,
    damaged: &impl Fn(usize, String) -> FileStoreError,
    sink: &mut Sink,
) -> Option<Decoded> {
    let base_len = header.base_len;
    let in_base = |offset: usize| (offset as u64) < base_len;
    let mut offset = header.len;
    let last = loop {
        match format::read_batch(bytes, offset) {
            format::BatchSlot::End if in_base(offset) => {
                let why = format!(
                    "the log ends inside its base of {base_len} bytes, which was synced before it became \
                     the log: it was cut short"
                );
                break Decoded::Failed(damaged(offset, why));
            }
            format::BatchSlot::End => {
                break Decoded::End {
                    len: offset,
                    torn: false,
                }
            }
            // Compactions write whole batches: the base ends where one does.
            format::BatchSlot::Batch { next }
                if in_base(offset) && !in_base(next) && next as u64 != base_len =>
            {
                let why = format!("the intact batch here runs past the end of the log's base at {base_len}");
                break Decoded::Failed(damaged(offset, why));
            }
            format::BatchSlot::Batch { next } => {
                let records = offset + format::BATCH_HEADER_LEN;
                match decode_records(&bytes[..next], records, header.version, damaged, sink) {
                    Stop::End(_) => offset = next,
                    // The batch's checksum held, so this was written so: damage, not a tear.
                    Stop::Bad(at, reason) => {
                        let why = format!("{reason}, inside the intact batch at offset {offset}");
                        break Decoded::Failed(damaged(at, why));
                    }
                    Stop::Failed(error) => break Decoded::Failed(error),
                    Stop::HungUp => return None,
                }
            }
            format::BatchSlot::Bad(reason) if in_base(offset) => {
                let why = format!(
                    "{reason}, inside the log's base of {base_len} bytes, which was synced before it became \
                     the log: no crash tears it"
                );
                break Decoded::Failed(damaged(offset, why));
            }
            format::BatchSlot::Bad(reason) => {
                let intact = format::intact_batch_after(bytes, offset);
                break torn_or_damaged(offset, reason, "batch", intact, damaged);
            }
        }
    };
    Some(last)
}

/// What bytes at `offset` that are no intact `unit` (a record, a batch)
/// mean: the torn tail of an unacknowledged write if no intact one follows
/// them (`intact`), else damage.
fn torn_or_damaged(
    offset: usize,
    reason: &str,
    unit: &str,
    intact: Option<usize>,
    damaged: &impl Fn(usize, String) -> FileStoreError,
) -> Decoded {
    match intact {
        Some(intact) => {
            let why = format!("{reason}, and an intact {unit} follows at offset {intact}");
            Decoded::Failed(damaged(offset, why))
        }
        None => Decoded::End {
            len: offset,
            torn: true,
        },
    }
}

/// Where [`decode_records`] stopped.
enum Stop {
    /// At the end of the bytes, exactly.
    End(usize),
    /// At bytes that are not an intact record.
    Bad(usize, &'static str),
    /// At an intact record that does not decode.
    Failed(FileStoreError),
    /// The receiver hung up.
    HungUp,
}

/// Decodes the records from `offset` to the end of `bytes` into `sink`.
fn decode_records(
    bytes: &[u8],
    mut offset: usize,
    version: u32,
    damaged: &impl Fn(usize, String) -> FileStoreError,
    sink: &mut Sink,
) -> Stop {
    loop {
        match format::read_slot(bytes, offset) {
            format::Slot::End => return Stop::End(offset),
            format::Slot::Record { payload, next } => {
                let record = match format::decode(payload, version) {
                    Ok(format::Record::Insert(token)) => DecodedRecord::Insert(Arc::new(token)),
                    Ok(format::Record::Delete(ids)) => DecodedRecord::Delete(ids),
                    Ok(format::Record::Replace { old, new }) => DecodedRecord::Replace(old, Arc::new(new)),
                    Ok(format::Record::LastUsed(uses)) => DecodedRecord::LastUsed(uses),
                    Err(why) => return Stop::Failed(damaged(offset, why)),
                };
                if !sink.push(offset, record) {
                    return Stop::HungUp;
                }
                offset = next;
            }
            format::Slot::Bad(reason) => return Stop::Bad(offset, reason),
        }
    }
}

/// Sends decoded records on in chunks.
struct Sink {
    chunk: Vec<(usize, DecodedRecord)>,
    sender: std::sync::mpsc::SyncSender<Decoded>,
}

impl Sink {
    const CHUNK: usize = 4096;

    /// Adds a record; false if the receiver hung up.
    fn push(&mut self, offset: usize, record: DecodedRecord) -> bool {
        self.chunk.push((offset, record));
        if self.chunk.len() < Self::CHUNK {
            return true;
        }
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(Self::CHUNK));
        self.sender.send(Decoded::Records(full)).is_ok()
    }
}

/// The flusher: writes and syncs queued records batch by batch until the
/// queue is empty. Only one runs at a time.
fn flush_loop(shared: Arc<Shared>) {
    let mut shared = Some(shared);
    loop {
        let (replies, idle) = {
            let s = shared.as_ref().expect("held until idle");
            let replies = s.flush_batch();
            let mut state = s.state();
            let idle = state.ops.is_empty();
            if idle {
                state.flushing = false;
            }
            (replies, idle)
        };
        if idle {
            // Let go of the store before acknowledging, so a caller that
            // drops its last handle on the reply really releases the directory.
            drop(shared.take());
        }
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        if idle {
            return;
        }
    }
}

type Reply = (oneshot::Sender<Result<()>>, Result<()>);

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // Updates under this lock cannot panic midway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The longest payload a record may have.
    fn max_payload(&self) -> usize {
        #[cfg(test)]
        if let Some(max) = self.faults.max_payload() {
            return max;
        }
        format::MAX_PAYLOAD_LEN
    }

    fn poison(&self, reason: String) {
        self.state().poisoned.get_or_insert(reason);
    }

    /// Writes, syncs and applies everything queued; returns the replies.
    fn flush_batch(&self) -> Vec<Reply> {
        let (mut bytes, ops) = {
            let mut state = self.state();
            (std::mem::take(&mut state.queue), std::mem::take(&mut state.ops))
        };
        if ops.is_empty() {
            return Vec::new();
        }
        if !bytes.is_empty() {
            format::seal_batch(&mut bytes);
        }
        let mut writer = self.writer();
        if let Err(failure) = self.append(&mut writer, &bytes) {
            // Later queued ops were decided assuming this batch lands: fail
            // them too, and forget every pending decision.
            let later = {
                let mut state = self.state();
                state.pending.clear();
                state.queue.clear();
                std::mem::take(&mut state.ops)
            };
            let reason = failure.to_string();
            let mut failure = Some(failure);
            return ops
                .into_iter()
                .chain(later)
                .map(|op| {
                    let error = match failure.take() {
                        Some(first) => first.into(),
                        None => FileStoreError::Aborted {
                            path: self.log_path.clone(),
                            reason: reason.clone(),
                        }
                        .into(),
                    };
                    (op.reply, Err(error))
                })
                .collect();
        }
        let last_seq = ops.last().map_or(0, |op| op.seq);
        let mut replies = Vec::with_capacity(ops.len());
        let mut touched = Vec::new();
        let mut compact_requests = Vec::new();
        {
            let mut index = self.memory.write();
            for op in ops {
                match op.apply {
                    Apply::Insert(token) => {
                        touched.push(token.id.clone());
                        let inserted = index.insert(token, None);
                        debug_assert!(inserted.is_ok(), "inserts are decided against the index");
                    }
                    Apply::Delete(ids) => {
                        writer.dead += 1;
                        for id in ids {
                            if index.remove(&id).is_some() {
                                writer.dead += 1;
                            }
                            touched.push(id);
                        }
                    }
                    Apply::Replace(old, token) => {
                        if index.remove(&old).is_some() {
                            writer.dead += 1;
                        }
                        touched.push(old);
                        touched.push(token.id.clone());
                        let inserted = index.insert(token, None);
                        debug_assert!(inserted.is_ok(), "replaces are decided against the index");
                    }
                    Apply::LastUsed(uses) => {
                        // Garbage once a compaction folds it into the inserts.
                        writer.dead += 1;
                        for used in uses {
                            index.record_use(&used.id, used.at_ms);
                        }
                    }
                    Apply::Barrier => {}
                    Apply::Compact => {
                        compact_requests.push(op.reply);
                        continue;
                    }
                }
                replies.push((op.reply, Ok(())));
            }
        }
        {
            let mut state = self.state();
            for id in touched {
                if state.pending.get(&id).is_some_and(|p| p.seq <= last_seq) {
                    state.pending.remove(&id);
                }
            }
        }
        if !compact_requests.is_empty() {
            // One failure for every request: each gets it whole as its source.
            let result = self.compact(&mut writer).map_err(|e| Arc::new(Error::from(e)));
            for reply in compact_requests {
                let result = match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(Error::storage("the requested compaction failed", e.clone())),
                };
                replies.push((reply, result));
            }
        } else if self.compaction_due(&writer) {
            // The records are durable already; a failed compaction only
            // leaves the log longer, and is retried after twice the garbage.
            if self.compact(&mut writer).is_err() {
                writer.next_compaction_at = writer.dead.saturating_mul(2);
            }
        }
        self.dead_records.store(writer.dead, Ordering::Relaxed);
        replies
    }

    /// Appends `bytes` (one sealed batch) and syncs. A failed write is undone
    /// (the file is cut back), so the store stays usable; a failed sync is
    /// undone too, but leaves the file's state unknown, so the store then
    /// refuses writes until reopened.
    fn append(&self, writer: &mut Writer, bytes: &[u8]) -> Result<(), FileStoreError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(reason) = self.state().poisoned.clone() {
            return Err(FileStoreError::Poisoned {
                dir: self.dir.clone(),
                reason,
            });
        }
        let log = self.log_path.display();
        if let Err(e) = self.write_bytes(&mut writer.file, bytes) {
            let mut context = format!("appending to {log}");
            if let Err(why) = self.undo_append(writer) {
                self.poison(format!("{context} failed: {e}; {why}"));
                context = format!("{context}; {why}");
            }
            return Err(io_error(context)(e));
        }
        if let Err(e) = self.sync(&writer.file) {
            // Written but maybe not durable: cut off, so that writes reported
            // as failed cannot come back on reopen. Poisoned all the same, as
            // a failed fsync leaves the file's state unknown.
            let mut context = format!("syncing {log}");
            let mut reason = format!("fsync of {log} failed: {e}");
            if let Err(why) = self.undo_append(writer) {
                context = format!("{context}; {why}");
                reason = format!("{reason}; {why}");
            }
            self.poison(reason);
            return Err(io_error(context)(e));
        }
        writer.len += bytes.len() as u64;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.log_bytes.store(writer.len, Ordering::Relaxed);
        Ok(())
    }

    /// Cuts the log back to its length before a failed batch, durably: the
    /// kernel may have written some of the batch out already.
    fn undo_append(&self, writer: &mut Writer) -> Result<(), String> {
        let len = writer.len;
        writer
            .file
            .set_len(len)
            .and_then(|()| writer.file.seek(SeekFrom::Start(len)))
            // fdatasync makes a changed length durable too.
            .and_then(|_| self.sync(&writer.file))
            .map_err(|undo| {
                format!("cutting the failed batch back off failed too ({undo}), so it may reappear on reopen")
            })
    }

    fn compaction_due(&self, writer: &Writer) -> bool {
        let live = self.memory.len() as u64;
        writer.dead
            >= live
                .max(writer.next_compaction_at)
                .max(self.options.compaction_threshold)
    }

    /// Rewrites the log with the live tokens: new file, sync, rename, sync
    /// the directory. Only the flusher (holding the writer) changes the
    /// index, so the snapshot is consistent.
    fn compact(&self, writer: &mut Writer) -> Result<(), FileStoreError> {
        let tmp = self.dir.join(COMPACT_FILE_NAME);
        let built = (|| {
            let mut file = fsutil::private_file_options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            // One batch a chunk: the file is only renamed into place once
            // synced whole, so its batches need not be atomic one by one.
            let mut chunk = Vec::with_capacity(COMPACT_CHUNK + 4096);
            // The base length is known only at the end; the header is rewritten then.
            chunk.extend_from_slice(&format::header(0));
            let mut batch_at = chunk.len();
            format::open_batch(&mut chunk);
            let mut len = 0u64;
            let max_payload = self.max_payload();
            let index = self.memory.read();
            for token in index.values() {
                let at = chunk.len();
                format::encode_insert(&mut chunk, token);
                // Inserts and replaces leave room for a last use, but a log
                // written by an earlier build may hold a token without it:
                // keep the old log rather than put one the reader refuses
                // in its place.
                let payload = chunk.len() - at - format::RECORD_HEADER_LEN;
                if payload > max_payload {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "a token store record of {payload} bytes (token id {}) exceeds the limit of \
                             {max_payload}; the log is kept as it was",
                            token.id
                        ),
                    ));
                }
                if chunk.len() >= COMPACT_CHUNK {
                    format::seal_batch(&mut chunk[batch_at..]);
                    self.write_bytes(&mut file, &chunk)?;
                    len += chunk.len() as u64;
                    chunk.clear();
                    batch_at = 0;
                    format::open_batch(&mut chunk);
                }
            }
            drop(index);
            if chunk.len() > batch_at + format::BATCH_HEADER_LEN {
                format::seal_batch(&mut chunk[batch_at..]);
            } else {
                // A batch holds at least one record.
                chunk.truncate(batch_at);
            }
            self.write_bytes(&mut file, &chunk)?;
            len += chunk.len() as u64;
            // All of it is the base: synced before it becomes the log.
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&format::header(len))?;
            file.seek(SeekFrom::Start(len))?;
            self.sync(&file)?;
            Ok((file, len))
        })();
        let (file, len) = match built.and_then(|built| fs::rename(&tmp, &self.log_path).map(|()| built)) {
            Ok(built) => built,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_error(format!("compacting {}", self.log_path.display()))(e));
            }
        };
        // The rename happened: appends must go to the new file from now on.
        writer.file = file;
        writer.len = len;
        writer.dead = 0;
        writer.next_compaction_at = self.options.compaction_threshold;
        self.log_bytes.store(len, Ordering::Relaxed);
        self.dead_records.store(0, Ordering::Relaxed);
        self.compactions.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = fsutil::sync_dir(&self.dir) {
            self.poison(format!("fsync of directory {} failed: {e}", self.dir.display()));
            return Err(io_error(format!("syncing {}", self.dir.display()))(e));
        }
        Ok(())
    }

    fn write_bytes(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(kind) = self.faults.take_write() {
            // A full disk typically accepts part of a write first.
            file.write_all(&bytes[..bytes.len() / 2])?;
            return Err(io::Error::from(kind));
        }
        file.write_all(bytes)
    }

    fn sync(&self, file: &File) -> io::Result<()> {
        #[cfg(test)]
        if let Some(kind) = self.faults.before_sync(self) {
            return Err(io::Error::from(kind));
        }
        file.sync_data()
    }
}

impl fmt::Debug for FileTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileTokenStore")
            .field("dir", &self.shared.dir)
            .field("tokens", &self.shared.memory.len())
            .finish()
    }
}

/// Text with NUL characters is refused: a crash can tear the last batch of
/// the log anywhere, and the open tells a torn tail from damage by whether
/// an intact batch follows. Without NUL, no text can hold a batch frame
/// (its 8-byte length would be at least 2^56), so a token's name or
/// description cannot make an ordinary crash read as damage.
fn refuse_nul(token: &StoredAccessToken) -> Result<()> {
    match super::field_with_nul(token) {
        Some(field) => Err(Error::invalid_input(format!(
            "{field} contains a NUL character, which the file store does not accept"
        ))),
        None => Ok(()),
    }
}

/// Refuses the record storing a token (an insert, or a replace, which holds
/// the new token's insert and more) unless it fits the limit with
/// [`format::LAST_USED_HEADROOM`] to spare: a compaction writes each live
/// token back as one insert record with the `lastUsedAt` its uses have set
/// since, and must not write one the reader refuses.
fn refuse_outgrowing(record: &[u8], max_payload: usize) -> Result<()> {
    let len = record.len() - format::RECORD_HEADER_LEN;
    let rewritten = len + format::LAST_USED_HEADROOM;
    if rewritten <= max_payload {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "a token store record of {len} bytes, {rewritten} once the token's last use is recorded, \
         exceeds the limit of {max_payload}"
    )))
}

#[async_trait]
impl TokenStore for FileTokenStore {
    async fn insert_within_limit(&self, token: StoredAccessToken, limit: Option<OwnerLimit>) -> Result<()> {
        refuse_nul(&token)?;
        let mut record = Vec::with_capacity(256);
        format::encode_insert(&mut record, &token);
        refuse_outgrowing(&record, self.shared.max_payload())?;
        self.submit(move |state, index| {
            Ok(match state.lookup(index, &token.id) {
                (Some(_), false) => return Err(Error::AlreadyExists { id: token.id }),
                (Some(_), true) => Plan::Wait(Err(Error::AlreadyExists { id: token.id })),
                (None, _) => {
                    if let Some(limit) = limit {
                        // Decided under the state lock against what the index
                        // will hold once the queued writes land, so two
                        // queued inserts cannot both take the last place.
                        let owner = &token.info.owner_urn;
                        let mut live = index.live_count_of_owner(owner, limit.now_ms);
                        for (id, pending) in &state.pending {
                            // What the index counts for a queued id is replaced
                            // by what the queued write will leave.
                            if let Some(indexed) = index.get(id) {
                                if indexed.info.owner_urn == *owner && limit.counts(indexed.info.expires_at) {
                                    live -= 1;
                                }
                            }
                            let queued_live = pending.present.is_some_and(|at| limit.counts(at));
                            if queued_live && pending.owner.as_ref() == Some(owner) {
                                live += 1;
                            }
                        }
                        Index::check_owner_limit(owner, live, limit)?;
                    }
                    Plan::Write(record, Apply::Insert(token), Ok(()))
                }
            })
        })
        .await?
    }

    async fn replace(&self, old_id: &str, new: StoredAccessToken) -> Result<()> {
        refuse_nul(&new)?;
        let mut record = Vec::with_capacity(256);
        format::encode_replace(&mut record, old_id, &new);
        refuse_outgrowing(&record, self.shared.max_payload())?;
        self.submit(move |state, index| {
            Ok(
                match (state.lookup(index, old_id), state.lookup(index, &new.id)) {
                    ((None, false), _) => return Err(Error::NotFound),
                    ((None, true), _) => Plan::Wait(Err(Error::NotFound)),
                    (_, (Some(_), false)) => return Err(Error::AlreadyExists { id: new.id }),
                    (_, (Some(_), true)) => Plan::Wait(Err(Error::AlreadyExists { id: new.id })),
                    _ => Plan::Write(record, Apply::Replace(old_id.to_owned(), new), Ok(())),
                },
            )
        })
        .await?
    }

    async fn get(&self, id: &str) -> Result<Option<StoredAccessToken>> {
        self.shared.memory.get(id).await
    }

    async fn contains(&self, id: &str) -> Result<bool> {
        self.shared.memory.contains(id).await
    }

    fn contains_now(&self, id: &str) -> Option<bool> {
        self.shared.memory.contains_now(id)
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        self.submit(|state, index| {
            Ok(match state.lookup(index, id) {
                (None, false) => Plan::Done(false),
                (None, true) => Plan::Wait(false),
                (Some(_), _) => {
                    let mut record = Vec::with_capacity(64);
                    format::encode_delete(&mut record, std::iter::once(id));
                    Plan::Write(record, Apply::Delete(vec![id.to_owned()]), true)
                }
            })
        })
        .await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage> {
        self.shared.memory.list(query).await
    }

    async fn delete_expired(&self, now_ms: i64) -> Result<Vec<String>> {
        let max_payload = self.shared.max_payload();
        self.submit(|state, index| {
            let expired = |at: Option<i64>| at.is_some_and(|at| at < now_ms);
            let mut ids: Vec<String> = index
                .expired_ids(now_ms)
                .into_iter()
                .filter(|id| !state.pending.contains_key(id))
                .collect();
            ids.extend(
                state
                    .pending
                    .iter()
                    .filter(|(_, p)| p.present.is_some_and(expired))
                    .map(|(id, _)| id.clone()),
            );
            Ok(if ids.is_empty() {
                if state.pending.is_empty() {
                    Plan::Done(ids)
                } else {
                    Plan::Wait(ids)
                }
            } else {
                let mut record = Vec::with_capacity(ids.len() * 50 + 16);
                // Several records if need be: one batch, so still atomic.
                format::encode_purge(&mut record, &ids, max_payload);
                Plan::Write(record, Apply::Delete(ids.clone()), ids)
            })
        })
        .await
    }

    async fn record_last_used(&self, uses: &[TokenUse]) -> Result<()> {
        self.submit(|state, index| {
            // Only uses that would change a present token are written.
            let uses: Vec<TokenUse> = uses
                .iter()
                .filter(|used| match state.pending.get(&used.id) {
                    Some(pending) => pending.present.is_some(),
                    None => index
                        .get(&used.id)
                        .is_some_and(|t| t.info.last_used_at.is_none_or(|last| last < used.at_ms)),
                })
                .cloned()
                .collect();
            if uses.is_empty() {
                return Ok(Plan::Done(()));
            }
            let mut record = Vec::with_capacity(uses.len() * 60 + 16);
            format::encode_last_used(&mut record, &uses);
            Ok(Plan::Write(record, Apply::LastUsed(uses), ()))
        })
        .await
    }
}

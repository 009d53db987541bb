//! The file store: conformance, reopening, damage, locking, permissions and
//! secrecy. (Crashes: `file_store_crash.rs`; injected I/O failures: the unit
//! tests in `src/store/file/tests.rs`.)

use std::path::{Path, PathBuf};

use datahub_access_tokens::store::conformance::{self, sample_token};
use datahub_access_tokens::store::file::{LOCK_FILE_NAME, LOG_FILE_NAME, TORN_TAIL_FILE_PREFIX};
use datahub_access_tokens::store::{FileStoreOptions, FileTokenStore, ListQuery, TokenUse};
use datahub_access_tokens::{
    AccessTokenDuration, CreateAccessTokenInput, DataHubTokenService, Error, ListAccessTokenInput, Policies,
    StoredAccessToken, TokenService, TokenServiceConfig, TokenStore, Urn,
};

fn token(n: u64) -> StoredAccessToken {
    let mut token = sample_token(n, "alice", 1_000 + n as i64, Some(10_000_000 + n as i64));
    token.info.description = Some(format!("description {n}"));
    token
}

async fn open(dir: &Path) -> FileTokenStore {
    FileTokenStore::open(dir).await.expect("open")
}

async fn all(store: &FileTokenStore) -> Vec<StoredAccessToken> {
    let mut tokens = store.list(&ListQuery::all(10_000)).await.unwrap().tokens;
    tokens.sort_by(|a, b| a.id.cmp(&b.id));
    tokens
}

fn open_error(result: datahub_access_tokens::Result<FileTokenStore>) -> String {
    match result {
        Err(e @ Error::Storage { .. }) => e.to_string(),
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_conforms() {
    let mut dirs = Vec::new();
    conformance::run_all(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        dirs.push(dir);
        async move { FileTokenStore::open(path).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn file_store_conforms_when_compacting_constantly() {
    let mut dirs = Vec::new();
    conformance::run_all(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        dirs.push(dir);
        let options = FileStoreOptions::default().with_compaction_threshold(1);
        async move { FileTokenStore::open_with(path, options).await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn everything_acknowledged_survives_close_and_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/tokens");
    let store = open(&dir).await;
    for n in 0..50 {
        store.insert(token(n)).await.unwrap();
    }
    for n in (0..50).step_by(3) {
        assert!(store.delete(&token(n).id).await.unwrap());
    }
    let purged = store.delete_expired(10_000_000 + 10).await.unwrap();
    assert_eq!(purged.len(), 6, "tokens 1, 2, 4, 5, 7, 8 had expired");
    let expected = all(&store).await;
    assert_eq!(expected.len(), 50 - 17 - 6);
    store.close().await.unwrap();

    // After a clean close.
    let store = open(&dir).await;
    assert_eq!(all(&store).await, expected);
    store.insert(token(100)).await.unwrap();
    assert!(store.delete(&token(49).id).await.unwrap());
    let expected = all(&store).await;
    drop(store);

    // After a drop without close.
    let store = open(&dir).await;
    assert_eq!(all(&store).await, expected);
    assert_eq!(store.get(&token(100).id).await.unwrap(), Some(token(100)));
    assert!(store.stats().log_bytes > 0);
}

/// The index rebuilt at open answers every kind of query exactly like the
/// one built insert by insert.
#[tokio::test]
async fn a_reopened_store_lists_exactly_as_before() {
    use datahub_access_tokens::store::{Condition, Filter, TokenField};
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path()).await;
    for n in 0..300u64 {
        let owner = ["alice", "bob", "carol", "dave"][(n % 4) as usize];
        let expires = (n % 5 != 0).then_some(5_000 + (n as i64 % 7) * 100);
        let mut t = sample_token(n, owner, 1_000 + (n as i64 % 11), expires);
        t.info.actor_urn = Urn::corp_user(&format!("robot{}", n % 3)).unwrap();
        store.insert(t).await.unwrap();
    }
    for n in (0..300).step_by(7) {
        store.delete(&conformance::token_id(n)).await.unwrap();
    }
    let filter = |field, condition, values: &[&str]| {
        Filter::new(
            field,
            condition,
            values.iter().map(|v| v.to_string()).collect(),
            false,
        )
        .unwrap()
    };
    let queries = [
        vec![],
        vec![filter(
            TokenField::OwnerUrn,
            Condition::Equal,
            &["urn:li:corpuser:bob"],
        )],
        vec![filter(
            TokenField::ActorUrn,
            Condition::In,
            &["urn:li:corpuser:robot1", "urn:li:corpuser:robot2"],
        )],
        vec![
            filter(TokenField::OwnerUrn, Condition::Equal, &["urn:li:corpuser:alice"]),
            filter(TokenField::ExpiresAt, Condition::LessThan, &["5400"]),
        ],
    ];
    let queries = &queries;
    let pages = |store: FileTokenStore| async move {
        let mut all = Vec::new();
        for filters in queries {
            for (start, count) in [(0, 1000), (5, 17), (250, 100)] {
                let query = ListQuery {
                    filters: filters.clone(),
                    start,
                    count,
                };
                all.push(store.list(&query).await.unwrap());
            }
        }
        all
    };
    let before = pages(store.clone()).await;
    drop(store);
    assert_eq!(pages(open(tmp.path()).await).await, before);
}

#[tokio::test]
async fn a_closed_store_refuses_writes_on_every_clone() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path()).await;
    let clone = store.clone();
    store.insert(token(1)).await.unwrap();
    store.close().await.unwrap();
    let err = clone.insert(token(2)).await.unwrap_err();
    assert!(err.to_string().contains("is closed"), "{err}");
    assert_eq!(
        clone.get(&token(1).id).await.unwrap(),
        Some(token(1)),
        "reads still work"
    );
    // The directory is free again even though a clone lives on.
    let reopened = open(tmp.path()).await;
    assert_eq!(reopened.stats().live_tokens, 1);
}

/// Writes a few records and returns the log's path and the record offsets.
async fn log_with_records(dir: &Path, count: u64) -> (PathBuf, Vec<u64>) {
    let store = open(dir).await;
    let mut offsets = Vec::new();
    for n in 0..count {
        offsets.push(store.stats().log_bytes);
        store.insert(token(n)).await.unwrap();
    }
    drop(store);
    (dir.join(LOG_FILE_NAME), offsets)
}

#[tokio::test]
async fn a_flipped_byte_mid_log_fails_the_open_naming_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, offsets) = log_with_records(tmp.path(), 10).await;
    let mut bytes = std::fs::read(&log).unwrap();
    let damaged_record = offsets[5];
    bytes[damaged_record as usize + 30] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let message = open_error(FileTokenStore::open(tmp.path()).await);
    assert!(
        message.contains(&format!("damaged at offset {damaged_record}")),
        "{message}"
    );
    assert!(message.contains(&log.display().to_string()), "{message}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "a failed open changes nothing"
    );
    // A damaged length field is caught the same way.
    bytes[damaged_record as usize + 30] ^= 0x40;
    bytes[offsets[2] as usize + 1] ^= 0x10;
    std::fs::write(&log, &bytes).unwrap();
    let message = open_error(FileTokenStore::open(tmp.path()).await);
    assert!(
        message.contains(&format!("damaged at offset {}", offsets[2])),
        "{message}"
    );
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, offsets) = log_with_records(tmp.path(), 10).await;
    let full = std::fs::read(&log).unwrap();
    // The contents of the files that keep torn tails, oldest first.
    let kept = || {
        let mut files: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter_map(|name| {
                Some((
                    name.strip_prefix(TORN_TAIL_FILE_PREFIX)?.parse::<u128>().ok()?,
                    name,
                ))
            })
            .collect();
        files.sort();
        let read = |(_, name): (u128, String)| std::fs::read(tmp.path().join(name)).unwrap();
        files.into_iter().map(read).collect::<Vec<_>>()
    };
    assert!(kept().is_empty(), "nothing cut, nothing kept");
    for (n, cut) in [1, 8, 20, full.len() as u64 - offsets[9] - 1]
        .into_iter()
        .enumerate()
    {
        std::fs::write(&log, &full[..full.len() - cut as usize]).unwrap();
        let store = open(tmp.path()).await;
        let kept = kept();
        assert_eq!(kept.len(), n + 1, "cut {cut}: one file a cut, none replaced");
        assert_eq!(
            kept[n],
            &full[offsets[9] as usize..full.len() - cut as usize],
            "cut {cut}: the bytes cut off are kept beside the log"
        );
        let tokens = all(&store).await;
        assert_eq!(
            tokens.len(),
            9,
            "cut {cut}: the torn record is dropped, the rest kept"
        );
        assert_eq!(store.get(&token(9).id).await.unwrap(), None);
        assert_eq!(store.get(&token(8).id).await.unwrap(), Some(token(8)));
        assert_eq!(store.stats().log_bytes, offsets[9], "the tail is cut off");
        // New writes follow the intact records and survive a reopen.
        store.insert(token(9)).await.unwrap();
        drop(store);
        let store = open(tmp.path()).await;
        assert_eq!(all(&store).await.len(), 10);
        drop(store);
    }
    // Zero fill after the last record (a file extended but never written).
    let mut zeros = full.clone();
    zeros.extend_from_slice(&[0u8; 700]);
    std::fs::write(&log, &zeros).unwrap();
    assert_eq!(all(&open(tmp.path()).await).await.len(), 10);
}

/// A token's text cannot pass for the log's own framing: a batch frame needs
/// NUL bytes (its 8-byte length), which the store refuses in text, so a
/// crash that tears a batch inside such text still reads as a torn tail.
#[tokio::test]
async fn text_cannot_pass_for_log_framing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path()).await;
    store.insert(token(1)).await.unwrap();
    let before = store.stats().log_bytes;
    // A whole batch frame (length 9, its checksum, 9 bytes of records) that
    // is ASCII, in a description: refused, nothing written.
    let frame = (0u32..)
        .map(|n| {
            let records = format!("{n:09}");
            let mut frame = (records.len() as u64).to_le_bytes().to_vec();
            let crc = crc32(&[&frame[..], records.as_bytes()].concat());
            frame.extend_from_slice(&crc.to_le_bytes());
            frame.extend_from_slice(records.as_bytes());
            frame
        })
        .find(|frame| frame.is_ascii())
        .unwrap();
    let with_text = |frame: &[u8]| {
        let mut t = token(2);
        let text = String::from_utf8(frame.to_vec()).unwrap();
        t.info.description = Some(format!("{}{text}{}", "a".repeat(100), "c".repeat(100)));
        t
    };
    let err = store.insert(with_text(&frame)).await.unwrap_err();
    assert!(
        matches!(err, Error::InvalidInput(_)) && err.to_string().contains("description contains a NUL"),
        "{err}"
    );
    assert_eq!(store.stats().log_bytes, before, "nothing written");
    // The same bytes without NUL are plain text: torn inside it, the batch
    // is dropped as the torn tail it is.
    let no_nul: Vec<u8> = frame.iter().map(|&b| b.max(1)).collect();
    store.insert(with_text(&no_nul)).await.unwrap();
    drop(store);
    let log = tmp.path().join(LOG_FILE_NAME);
    let full = std::fs::read(&log).unwrap();
    std::fs::write(&log, &full[..full.len() - 60]).unwrap();
    let store = open(tmp.path()).await;
    assert_eq!(all(&store).await, vec![token(1)]);
    assert_eq!(store.stats().log_bytes, before, "the torn batch is cut off");
}

/// A write submitted on a runtime that has shut down (so tokio refuses to
/// run its flusher) does not stop a later write on a live runtime: that one
/// writes both.
#[test]
fn a_write_on_a_dead_runtime_does_not_strand_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = first.block_on(open(tmp.path()));
    let handle = first.handle().clone();
    drop(first);
    let stranded = store.clone();
    let (sent, landed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let inserted = handle.block_on(stranded.insert(token(1))).is_ok();
        // Before answering: the test reopens the directory once told.
        drop(stranded);
        let _ = sent.send(inserted);
    });
    assert!(
        landed
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err(),
        "no flusher has run yet"
    );
    let second = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_time()
        .build()
        .unwrap();
    second.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(10), store.insert(token(2)))
            .await
            .expect("a later write is not stranded")
            .unwrap();
    });
    assert_eq!(
        landed.recv_timeout(std::time::Duration::from_secs(10)),
        Ok(true),
        "the first write landed too"
    );
    second.block_on(async {
        assert_eq!(all(&store).await, vec![token(2), token(1)]);
        drop(store);
        assert_eq!(all(&open(tmp.path()).await).await, vec![token(2), token(1)]);
    });
}

/// A compacted store is one batch while it is small. Its bytes were synced
/// before the file became the log, so damage there is bit rot or a cut
/// copy, never a torn write: it is reported, and the file left as it was,
/// where cutting it off as a torn tail would empty the store.
#[tokio::test]
async fn damage_inside_a_compacted_base_is_reported_not_cut_off() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join(LOG_FILE_NAME);
    let store = open(tmp.path()).await;
    for n in 0..3 {
        store.insert(token(n)).await.unwrap();
    }
    store.compact().await.unwrap();
    let base_len = store.stats().log_bytes;
    drop(store);
    let base = std::fs::read(&log).unwrap();
    assert_eq!(base.len() as u64, base_len);
    assert_eq!(u64::from_le_bytes(base[16..24].try_into().unwrap()), base_len);

    let refused = |bytes: Vec<u8>, expected: &'static str| {
        let log = log.clone();
        let dir = tmp.path().to_owned();
        async move {
            std::fs::write(&log, &bytes).unwrap();
            let message = open_error(FileTokenStore::open(&dir).await);
            assert!(message.contains(expected), "{expected}: {message}");
            assert_eq!(
                std::fs::read(&log).unwrap(),
                bytes,
                "{expected}: the log is left as it was"
            );
        }
    };
    let mut flipped = base.clone();
    flipped[base.len() - 30] ^= 0x01;
    refused(
        flipped,
        "damaged at offset 28: the batch checksum does not match, inside the log's base",
    )
    .await;
    refused(
        base[..base.len() - 10].to_vec(),
        "runs past the end of the file, inside the log's base",
    )
    .await;
    refused(base[..28].to_vec(), "ends inside its base").await;
    let mut bad_base_len = base.clone();
    bad_base_len[17] ^= 0x01;
    refused(bad_base_len, "damaged at offset 16: the header's base length").await;

    // A torn batch after the base is still cut off.
    std::fs::write(&log, &base).unwrap();
    let store = open(tmp.path()).await;
    store.insert(token(3)).await.unwrap();
    drop(store);
    let full = std::fs::read(&log).unwrap();
    std::fs::write(&log, &full[..full.len() - 5]).unwrap();
    let store = open(tmp.path()).await;
    let mut expected: Vec<_> = (0..3).map(token).collect();
    expected.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all(&store).await, expected);
    assert_eq!(store.stats().log_bytes, base_len, "the torn batch is cut off");
}

#[tokio::test]
async fn foreign_and_newer_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join(LOG_FILE_NAME);
    std::fs::write(&log, b"{\"tokens\": []}\n").unwrap();
    let message = open_error(FileTokenStore::open(tmp.path()).await);
    assert!(message.contains("is not a DataHub token log"), "{message}");

    std::fs::remove_file(&log).unwrap();
    log_with_records(tmp.path(), 1).await;
    let mut bytes = std::fs::read(&log).unwrap();
    // A version under an intact checksum of the first 16 header bytes.
    let set_version = |bytes: &mut Vec<u8>, version: u32| {
        bytes[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32(&bytes[..12]);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&log, &bytes).unwrap();
    };
    set_version(&mut bytes, 6);
    let message = open_error(FileTokenStore::open(tmp.path()).await);
    assert!(message.contains("format version 6"), "{message}");
    assert!(message.contains("reads versions 1 to 5"), "{message}");

    // Version 0 under an intact checksum: named as such,
    // not as a checksum that fails, and the log is left as it was.
    set_version(&mut bytes, 0);
    let message = open_error(FileTokenStore::open(tmp.path()).await);
    assert!(message.contains("damaged at offset 8"), "{message}");
    assert!(
        message.contains("format version 0, which no build writes"),
        "{message}"
    );
    assert!(!message.contains("checksum"), "{message}");
    assert_eq!(std::fs::read(&log).unwrap(), bytes);
}

// CRC-32 (IEEE), bit by bit: the test does not trust the crate's own.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test]
async fn a_second_open_fails_while_the_first_is_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let first = open(tmp.path()).await;
    first.insert(token(1)).await.unwrap();
    let message = open_error(FileTokenStore::open(tmp.path()).await);
    assert!(message.contains("already open by another process"), "{message}");
    let clone = first.clone();
    drop(first);
    let message = open_error(FileTokenStore::open(tmp.path()).await);
    assert!(
        message.contains("already open"),
        "a live clone still holds it: {message}"
    );
    drop(clone);
    let second = open(tmp.path()).await;
    assert_eq!(second.get(&token(1).id).await.unwrap(), Some(token(1)));
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tokens");
    let store = open(&dir).await;
    store.insert(token(1)).await.unwrap();
    store.compact().await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(LOG_FILE_NAME)), 0o600);
    assert_eq!(mode(&dir.join(LOCK_FILE_NAME)), 0o600);
}

#[tokio::test]
async fn an_unusable_directory_is_a_storage_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let message = open_error(FileTokenStore::open(file.join("tokens")).await);
    assert!(message.contains("not-a-dir"), "{message}");
}

#[tokio::test]
async fn the_plaintext_token_never_reaches_the_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let config = TokenServiceConfig::load_or_generate_in(&dir).unwrap();
    let store = open(&dir).await;
    let service = DataHubTokenService::new(config, store.clone(), Policies::datahub_defaults());
    let me = Urn::corp_user("datahub").unwrap();
    let mut tokens = Vec::new();
    for n in 0..5 {
        let input =
            CreateAccessTokenInput::personal(me.as_str(), format!("t{n}"), AccessTokenDuration::OneDay)
                .with_description("kept on disk");
        tokens.push(service.create_access_token(&me, input).await.unwrap());
    }
    let listed = service
        .list_access_tokens(&me, &ListAccessTokenInput::owned_by(&me, 10))
        .await
        .unwrap();
    service
        .revoke_access_token(&me, &listed.tokens[0].id)
        .await
        .unwrap();
    store.compact().await.unwrap();
    service
        .revoke_access_token(&me, &listed.tokens[1].id)
        .await
        .unwrap();
    drop(service);
    drop(store);

    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"kept on disk"), "the scan does read the records");
    for token in &tokens {
        let plaintext = token.expose_access_token();
        assert!(!contains(plaintext.as_bytes()), "a plaintext token is on disk");
        let signature = plaintext.rsplit('.').next().unwrap();
        assert!(!contains(signature.as_bytes()), "a token's signature is on disk");
    }
    let store = open(&dir).await;
    assert_eq!(store.stats().live_tokens, 3);
}

/// A log as versions 1 to 4 wrote it, byte by byte from the format's
/// documentation: records without batches before version 4 (one batch in
/// version 4), tokens without `lastUsedAt` before version 3.
fn legacy_log(version: u32, tokens: &[StoredAccessToken], deleted: &[&str]) -> Vec<u8> {
    fn text(p: &mut Vec<u8>, s: &str) {
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
    }
    fn record(out: &mut Vec<u8>, payload: &[u8]) {
        let len = (payload.len() as u32).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc32(&[&len[..], payload].concat()).to_le_bytes());
        out.extend_from_slice(payload);
    }
    let mut out = b"DHATLOG\0".to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&crc32(&out).to_le_bytes());
    for token in tokens {
        let info = &token.info;
        let mut p = vec![1u8];
        for field in [
            &token.id,
            &info.name,
            info.actor_urn.as_str(),
            info.owner_urn.as_str(),
        ] {
            text(&mut p, field);
        }
        p.extend_from_slice(&info.created_at.to_le_bytes());
        match info.expires_at {
            Some(at) => p.extend([&[1u8][..], &at.to_le_bytes()].concat()),
            None => p.push(0),
        }
        match &info.description {
            Some(d) => {
                p.push(1);
                text(&mut p, d);
            }
            None => p.push(0),
        }
        if version >= 3 {
            p.push(0);
        }
        record(&mut out, &p);
    }
    let mut p = vec![2u8];
    p.extend_from_slice(&(deleted.len() as u32).to_le_bytes());
    for id in deleted {
        text(&mut p, id);
    }
    record(&mut out, &p);
    if version >= 4 {
        let records = out.split_off(16);
        let len = (records.len() as u64).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc32(&[&len[..], &records].concat()).to_le_bytes());
        out.extend_from_slice(&records);
    }
    out
}

/// Logs of versions 1 to 4 open with every token, are upgraded to
/// version 5 on open, and then take replace and last-used records that
/// survive a reopen.
#[tokio::test]
async fn version_1_to_4_logs_are_read_and_upgraded() {
    for version in [1, 2, 3, 4] {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join(LOG_FILE_NAME);
        let tokens: Vec<_> = (0..5).map(token).collect();
        let mut bytes = legacy_log(version, &tokens, &[&token(4).id]);
        // A torn tail, cut off as these versions always were.
        bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&log, bytes).unwrap();

        let store = open(tmp.path()).await;
        let mut expected: Vec<_> = (0..4).map(token).collect();
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(all(&store).await, expected, "version {version}");
        let header = std::fs::read(&log).unwrap();
        assert_eq!(
            u32::from_le_bytes(header[8..12].try_into().unwrap()),
            5,
            "version {version} is upgraded on open"
        );
        store.replace(&token(0).id, token(9)).await.unwrap();
        let used = TokenUse {
            id: token(1).id,
            at_ms: 42,
        };
        store.record_last_used(&[used]).await.unwrap();
        drop(store);
        let store = open(tmp.path()).await;
        let mut expected: Vec<_> = [1, 2, 3, 9].into_iter().map(token).collect();
        expected.sort_by(|a, b| a.id.cmp(&b.id));
        for t in &mut expected {
            if t.id == token(1).id {
                t.info.last_used_at = Some(42);
            }
        }
        assert_eq!(
            all(&store).await,
            expected,
            "the replace and last-used records replay"
        );
    }
}

/// Last-used times are durable: they survive a reopen, with and without a
/// compaction between, and a use recorded after a revocation stays dead.
#[tokio::test]
async fn last_used_times_survive_reopen_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path()).await;
    for n in 0..3 {
        store.insert(token(n)).await.unwrap();
    }
    let used = |n: u64, at_ms: i64| TokenUse {
        id: token(n).id,
        at_ms,
    };
    store
        .record_last_used(&[used(0, 100), used(1, 200)])
        .await
        .unwrap();
    assert!(store.delete(&token(1).id).await.unwrap());
    store
        .record_last_used(&[used(1, 300), used(0, 50)])
        .await
        .unwrap();
    // A second version of token 0's record in the log: the later one wins.
    store.record_last_used(&[used(0, 150)]).await.unwrap();
    let expected = |store: FileTokenStore| async move {
        let got = all(&store).await;
        let last_used: Vec<_> = got.iter().map(|t| (t.id.clone(), t.info.last_used_at)).collect();
        let mut want = vec![(token(0).id, Some(150)), (token(2).id, None)];
        want.sort();
        assert_eq!(last_used, want);
        store
    };
    drop(expected(store).await);
    let store = expected(open(tmp.path()).await).await;
    store.compact().await.unwrap();
    drop(store);
    expected(open(tmp.path()).await).await;
}

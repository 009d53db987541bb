//! The bytes of the token log: its header, its checksummed batches and the
//! checksummed records inside them (the layout is documented on the parent
//! module).

use crate::model::{DataHubAccessTokenInfo, StoredAccessToken};
use crate::store::TokenUse;
use crate::urn::Urn;

/// First bytes of every token log.
pub(crate) const MAGIC: [u8; 8] = *b"DHATLOG\0";
/// The format this build writes (and reads, along with older ones).
pub(crate) const FORMAT_VERSION: u32 = 5;
/// The oldest format this build reads (version 1 lacks replace records,
/// versions 1 and 2 lack last-used times, versions 1 to 3 lack batches,
/// versions 1 to 4 lack the base length).
pub(crate) const OLDEST_VERSION: u32 = 1;
/// Magic, version, checksum: the part of the header every version shares
/// (and all of it before version 5).
const COMMON_HEADER_LEN: usize = 16;
/// The header this build writes: the common part, the base length (`u64`)
/// and a checksum of all before it.
pub(crate) const HEADER_LEN: usize = COMMON_HEADER_LEN + 12;
/// The header records the length of the log's base from this version on.
const BASE_VERSION: u32 = 5;
/// Payload length and checksum before each payload.
pub(crate) const RECORD_HEADER_LEN: usize = 8;
/// Largest payload accepted; writers split a larger purge into records.
pub(crate) const MAX_PAYLOAD_LEN: usize = 1 << 30;
/// Records come in batch frames (one per group commit) from this version on.
pub(crate) const BATCH_VERSION: u32 = 4;
/// Batch length (`u64`) and checksum before each batch's records.
pub(crate) const BATCH_HEADER_LEN: usize = 12;

const KIND_INSERT: u8 = 1;
const KIND_DELETE: u8 = 2;
/// Version 2 on.
const KIND_REPLACE: u8 = 3;
/// Version 3 on.
const KIND_LAST_USED: u8 = 4;
/// Replace records exist from this version on.
const REPLACE_VERSION: u32 = 2;
/// Tokens carry an optional `lastUsedAt` from this version on.
const LAST_USED_VERSION: u32 = 3;

/// One decoded log record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Record {
    /// A token was stored.
    Insert(StoredAccessToken),
    /// These tokens were deleted (revoked, or purged as expired).
    Delete(Vec<String>),
    /// One token replaced another in one step (a rotation).
    Replace {
        /// The id deleted.
        old: String,
        /// The token inserted.
        new: StoredAccessToken,
    },
    /// These tokens validated at these times.
    LastUsed(Vec<TokenUse>),
}

/// The header of a log whose base is `base_len` bytes long: what a
/// compaction wrote, or the header alone for a new log. The base is synced
/// before the file becomes the log, so no crash can tear it.
pub(crate) fn header(base_len: u64) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..COMMON_HEADER_LEN].copy_from_slice(&common_header(FORMAT_VERSION));
    out[16..24].copy_from_slice(&base_len.to_le_bytes());
    let crc = crc32fast::hash(&out[..24]);
    out[24..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// What a log's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The format version.
    pub(crate) version: u32,
    /// Where the first record or batch starts.
    pub(crate) len: usize,
    /// Where the base ends: damage before this offset cannot be a torn
    /// write. Before version 5 the header alone.
    pub(crate) base_len: u64,
}

/// Why a file's header was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    /// Not a token log at all.
    NotOurs,
    /// Our magic, but a header checksum fails (or the file ends inside the
    /// header); the offset of the damaged part.
    Damaged(usize),
    /// A token log of a newer format than this build reads.
    Newer(u32),
    /// An intact header naming a version no build writes (0).
    Unknown(u32),
}

/// Checks the header at the start of `file`.
pub(crate) fn check_header(file: &[u8]) -> Result<Header, HeaderProblem> {
    if file.len() < COMMON_HEADER_LEN || file[..8] != MAGIC {
        return Err(HeaderProblem::NotOurs);
    }
    // Every version keeps this layout, so a build that predates a version
    // still names it as newer rather than as damage.
    if u32_at(file, 12) != crc32fast::hash(&file[..12]) {
        return Err(HeaderProblem::Damaged(0));
    }
    let version = match u32_at(file, 8) {
        version @ OLDEST_VERSION..=FORMAT_VERSION => version,
        newer if newer > FORMAT_VERSION => return Err(HeaderProblem::Newer(newer)),
        // Its checksum held: saying it did not would send the reader looking for bit rot.
        unknown => return Err(HeaderProblem::Unknown(unknown)),
    };
    if version < BASE_VERSION {
        return Ok(Header {
            version,
            len: COMMON_HEADER_LEN,
            base_len: COMMON_HEADER_LEN as u64,
        });
    }
    let header = match file.get(..HEADER_LEN) {
        Some(header) if u32_at(header, 24) == crc32fast::hash(&header[..24]) => Header {
            version,
            len: HEADER_LEN,
            base_len: u64::from_le_bytes(header[16..24].try_into().expect("8 bytes")),
        },
        _ => return Err(HeaderProblem::Damaged(COMMON_HEADER_LEN)),
    };
    // The base holds the header at least; less would turn its check off.
    if header.base_len < HEADER_LEN as u64 {
        return Err(HeaderProblem::Damaged(COMMON_HEADER_LEN));
    }
    Ok(header)
}

/// The part of the header every format shares: magic, `version` and their
/// checksum (all of a header before version 5).
pub(crate) fn common_header(version: u32) -> [u8; COMMON_HEADER_LEN] {
    let mut out = [0u8; COMMON_HEADER_LEN];
    out[..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32fast::hash(&out[..12]);
    out[12..].copy_from_slice(&crc.to_le_bytes());
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Appends a framed insert record for `token` to `out`.
pub(crate) fn encode_insert(out: &mut Vec<u8>, token: &StoredAccessToken) {
    frame(out, |p| {
        p.push(KIND_INSERT);
        put_token(p, token);
    });
}

/// What a token's insert record can grow by once written: a use sets its
/// absent `lastUsedAt` (the 1-byte flag) to a present one (the flag and an
/// `i64`). The use is recorded apart, in a last-used record, but a compaction
/// writes the token back as one insert record with it.
pub(crate) const LAST_USED_HEADROOM: usize = 8;

/// Appends a framed replace record (delete `old`, insert `new`) to `out`.
pub(crate) fn encode_replace(out: &mut Vec<u8>, old: &str, new: &StoredAccessToken) {
    frame(out, |p| {
        p.push(KIND_REPLACE);
        put_str(p, old);
        put_token(p, new);
    });
}

fn put_token(p: &mut Vec<u8>, token: &StoredAccessToken) {
    let info = &token.info;
    put_str(p, &token.id);
    put_str(p, &info.name);
    put_str(p, info.actor_urn.as_str());
    put_str(p, info.owner_urn.as_str());
    p.extend_from_slice(&info.created_at.to_le_bytes());
    put_opt(p, info.expires_at, |p, at| p.extend_from_slice(&at.to_le_bytes()));
    put_opt(p, info.description.as_deref(), put_str);
    put_opt(p, info.last_used_at, |p, at| {
        p.extend_from_slice(&at.to_le_bytes())
    });
}

/// Appends a framed last-used record for `uses` to `out`.
pub(crate) fn encode_last_used(out: &mut Vec<u8>, uses: &[TokenUse]) {
    frame(out, |p| {
        p.push(KIND_LAST_USED);
        p.extend_from_slice(&len_u32(uses.len()).to_le_bytes());
        for used in uses {
            put_str(p, &used.id);
            p.extend_from_slice(&used.at_ms.to_le_bytes());
        }
    });
}

/// Appends a framed delete record for `ids` to `out`.
pub(crate) fn encode_delete<'a>(out: &mut Vec<u8>, ids: impl ExactSizeIterator<Item = &'a str>) {
    frame(out, |p| {
        p.push(KIND_DELETE);
        p.extend_from_slice(&len_u32(ids.len()).to_le_bytes());
        for id in ids {
            put_str(p, id);
        }
    });
}

/// Appends delete records for `ids` to `out`, as many as it takes to keep
/// each payload within `max_payload` (an id longer than that still gets a
/// record of its own, which [`oversized`] then reports). Written in one
/// batch, they are applied all or not at all.
pub(crate) fn encode_purge(out: &mut Vec<u8>, ids: &[String], max_payload: usize) {
    let mut rest = ids;
    loop {
        // The kind byte and the count, then each id with its length.
        let mut size = 5;
        let fit = rest
            .iter()
            .take_while(|id| {
                size += 4 + id.len();
                size <= max_payload
            })
            .count();
        let (part, after) = rest.split_at(fit.max(1).min(rest.len()));
        encode_delete(out, part.iter().map(String::as_str));
        if after.is_empty() {
            return;
        }
        rest = after;
    }
}

/// The length of the first payload over `max` in `records` (framed records
/// back to back), if any.
pub(crate) fn oversized(records: &[u8], max: usize) -> Option<usize> {
    let mut at = 0;
    while let Some(len) = records.get(at..at + 4) {
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if len > max {
            return Some(len);
        }
        at += RECORD_HEADER_LEN + len;
    }
    None
}

/// Starts a batch at the end of `out`: room for its header, which
/// [`seal_batch`] fills in once the batch's records follow.
pub(crate) fn open_batch(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0u8; BATCH_HEADER_LEN]);
}

/// Writes the header of `batch` (the room [`open_batch`] left, then the
/// records): `len: u64 | crc32(len ‖ records)`.
pub(crate) fn seal_batch(batch: &mut [u8]) {
    let len = (batch.len() - BATCH_HEADER_LEN) as u64;
    batch[..8].copy_from_slice(&len.to_le_bytes());
    let crc = record_crc(&batch[..8], &batch[BATCH_HEADER_LEN..]);
    batch[8..BATCH_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// Writes `len | crc32(len ‖ payload) | payload`, the payload by `body`.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    body(out);
    let len = len_u32(out.len() - start - RECORD_HEADER_LEN);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = record_crc(&out[start..start + 4], &out[start + RECORD_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn record_crc(len: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len);
    hasher.update(payload);
    hasher.finalize()
}

// Every length we write is bounded far below 4 GiB by the service's checks
// (names, urns, descriptions) and by MAX_PAYLOAD_LEN.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("record parts are shorter than 4 GiB")
}

fn put_str(p: &mut Vec<u8>, s: &str) {
    p.extend_from_slice(&len_u32(s.len()).to_le_bytes());
    p.extend_from_slice(s.as_bytes());
}

fn put_opt<T>(p: &mut Vec<u8>, value: Option<T>, put: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => p.push(0),
        Some(v) => {
            p.push(1);
            put(p, v);
        }
    }
}

/// What lies at an offset of the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Slot<'a> {
    /// The end of the file, exactly.
    End,
    /// An intact record (checksum verified) and the offset after it.
    Record { payload: &'a [u8], next: usize },
    /// Bytes that are not an intact record, and why.
    Bad(&'static str),
}

/// Reads the framed record starting at `offset` of `file`.
pub(crate) fn read_slot(file: &[u8], offset: usize) -> Slot<'_> {
    let rest = &file[offset.min(file.len())..];
    if rest.is_empty() {
        return Slot::End;
    }
    if rest.len() < RECORD_HEADER_LEN {
        return Slot::Bad("the record header is cut short");
    }
    let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > MAX_PAYLOAD_LEN {
        return Slot::Bad("the record length is impossible");
    }
    let Some(payload) = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Slot::Bad("the record runs past the end of the file");
    };
    if crc != record_crc(&rest[..4], payload) {
        return Slot::Bad("the record checksum does not match");
    }
    Slot::Record {
        payload,
        next: offset + RECORD_HEADER_LEN + len,
    }
}

/// Whether an intact record starts anywhere after `offset` (logs before
/// version 4). A crash can only tear the tail (the unacknowledged last batch),
/// so damage followed by an intact record is corruption, never a torn write.
/// A random byte run passes the CRC with odds of 2^-32, and zero fill never
/// does (length 0 is refused).
///
/// A checksum costs the record's whole length, so offsets whose payload
/// does not start with a record kind are passed over first: otherwise a
/// damaged tail of mostly zero bytes (where many offsets read as a length
/// that fits) took time quadratic in its length.
pub(crate) fn intact_record_after(file: &[u8], offset: usize) -> Option<usize> {
    (offset + 1..file.len()).find(|&p| {
        matches!(
            file.get(p + RECORD_HEADER_LEN),
            Some(KIND_INSERT..=KIND_LAST_USED)
        ) && matches!(read_slot(file, p), Slot::Record { .. })
    })
}

/// What lies at an offset of a log of version 4 on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BatchSlot {
    /// The end of the file, exactly.
    End,
    /// An intact batch (checksum verified): its records lie between the
    /// end of its header and `next`.
    Batch { next: usize },
    /// Bytes that are not an intact batch, and why.
    Bad(&'static str),
}

/// Reads the batch frame starting at `offset` of `file`.
pub(crate) fn read_batch(file: &[u8], offset: usize) -> BatchSlot {
    let rest = &file[offset.min(file.len())..];
    if rest.is_empty() {
        return BatchSlot::End;
    }
    let records = match batch_records(rest) {
        Ok(records) => records,
        Err(why) => return BatchSlot::Bad(why),
    };
    if u32_at(rest, 8) != record_crc(&rest[..8], records) {
        return BatchSlot::Bad("the batch checksum does not match");
    }
    BatchSlot::Batch {
        next: offset + BATCH_HEADER_LEN + records.len(),
    }
}

/// The records of the batch frame at the start of `rest`, its length
/// checked against the bytes there (its checksum not yet).
fn batch_records(rest: &[u8]) -> Result<&[u8], &'static str> {
    if rest.len() < BATCH_HEADER_LEN {
        return Err("the batch header is cut short");
    }
    let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
    // A batch holds at least one record.
    if len <= RECORD_HEADER_LEN as u64 {
        return Err("the batch length is impossible");
    }
    // Checked against the bytes read, never trusted to size anything.
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| BATCH_HEADER_LEN.checked_add(len));
    end.and_then(|end| rest.get(BATCH_HEADER_LEN..end))
        .ok_or("the batch runs past the end of the file")
}

/// Whether an intact batch starts anywhere after `offset`. The writer starts
/// a batch only once the one before it is synced, so a crash can only tear
/// the last batch, and damage followed by an intact batch is corruption.
/// Records inside a torn batch are no batch: their `u32` length and checksum,
/// read as a `u64` length, run past the end of the file but with odds of 2^-32.
/// Nor is text a client chose: the store refuses NUL in text, so a length
/// read from it is at least 2^56 (chosen bytes could otherwise carry a frame
/// with a matching checksum).
///
/// A checksum costs the batch's whole length, so offsets whose record
/// lengths do not fill the batch exactly are passed over first (a hop per
/// record): otherwise a damaged tail of mostly zero bytes (where many
/// offsets read as a length that fits) took time quadratic in its length.
pub(crate) fn intact_batch_after(file: &[u8], offset: usize) -> Option<usize> {
    (offset + 1..file.len())
        .find(|&p| records_fill_batch(file, p) && matches!(read_batch(file, p), BatchSlot::Batch { .. }))
}

/// Whether the batch at `offset` has a length that fits the file and
/// record lengths that lead from record to record exactly to its end, as in
/// every batch written.
fn records_fill_batch(file: &[u8], offset: usize) -> bool {
    let Some(Ok(records)) = file.get(offset..).map(batch_records) else {
        return false;
    };
    let mut at = 0;
    while let Some(len) = records.get(at..at + 4) {
        match u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize {
            len @ 1..=MAX_PAYLOAD_LEN => at += RECORD_HEADER_LEN + len,
            _ => return false,
        }
    }
    at == records.len()
}

/// Decodes a payload, whose checksum already matched, of a log of format `version`.
pub(crate) fn decode(payload: &[u8], version: u32) -> Result<Record, String> {
    let mut r = Reader {
        bytes: payload,
        last_used: version >= LAST_USED_VERSION,
    };
    let record = match r.u8()? {
        KIND_INSERT => Record::Insert(r.token()?),
        KIND_REPLACE if version >= REPLACE_VERSION => {
            let old = r.string()?;
            Record::Replace { old, new: r.token()? }
        }
        KIND_DELETE => {
            let count = r.u32()? as usize;
            // Each id takes at least its 4-byte length: bound the allocation.
            if count > r.bytes.len() / 4 {
                return Err(format!("delete record claims {count} ids"));
            }
            let ids = (0..count).map(|_| r.string()).collect::<Result<_, _>>()?;
            Record::Delete(ids)
        }
        KIND_LAST_USED if r.last_used => {
            let count = r.u32()? as usize;
            // Each use takes at least 12 bytes: bound the allocation.
            if count > r.bytes.len() / 12 {
                return Err(format!("last-used record claims {count} uses"));
            }
            let uses = (0..count)
                .map(|_| {
                    Ok(TokenUse {
                        id: r.string()?,
                        at_ms: r.i64()?,
                    })
                })
                .collect::<Result<_, String>>()?;
            Record::LastUsed(uses)
        }
        kind => return Err(format!("unknown record kind {kind}")),
    };
    if !r.bytes.is_empty() {
        return Err(format!("{} unexpected bytes after the record", r.bytes.len()));
    }
    Ok(record)
}

struct Reader<'a> {
    bytes: &'a [u8],
    /// Whether tokens end with an optional `lastUsedAt` (version 3 on).
    last_used: bool,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("the record ends too early".into());
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn token(&mut self) -> Result<StoredAccessToken, String> {
        let id = self.string()?;
        let name = self.string()?;
        let actor_urn = self.urn("actorUrn")?;
        let owner_urn = self.urn("ownerUrn")?;
        let created_at = self.i64()?;
        let expires_at = if self.flag()? { Some(self.i64()?) } else { None };
        let description = if self.flag()? { Some(self.string()?) } else { None };
        let last_used_at = if self.last_used && self.flag()? {
            Some(self.i64()?)
        } else {
            None
        };
        Ok(StoredAccessToken {
            id,
            info: DataHubAccessTokenInfo {
                name,
                actor_urn,
                owner_urn,
                created_at,
                expires_at,
                description,
                last_used_at,
            },
        })
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, String> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("bad presence flag {other}")),
        }
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| "a text field is not UTF-8".into())
    }

    fn urn(&mut self, field: &str) -> Result<Urn, String> {
        Urn::parse(self.string()?).map_err(|e| format!("{field}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(description: Option<&str>, expires_at: Option<i64>) -> StoredAccessToken {
        StoredAccessToken {
            id: "HnMJylxuowJ1FKN74BbGogLvXCS4w+fsd3MZdI35+8A=".into(),
            info: DataHubAccessTokenInfo {
                name: "ünï 🚀".into(),
                actor_urn: Urn::corp_user("alice").unwrap(),
                owner_urn: Urn::corp_user("admin").unwrap(),
                created_at: -5,
                expires_at,
                description: description.map(Into::into),
                last_used_at: None,
            },
        }
    }

    fn one_record(bytes: &[u8]) -> Record {
        match read_slot(bytes, 0) {
            Slot::Record { payload, next } => {
                assert_eq!(next, bytes.len());
                decode(payload, FORMAT_VERSION).unwrap()
            }
            other => panic!("expected a record, got {other:?}"),
        }
    }

    #[test]
    fn records_round_trip() {
        let mut used = token(Some("d"), None);
        used.info.last_used_at = Some(i64::MIN);
        for t in [
            token(None, None),
            token(Some(""), Some(i64::MAX)),
            token(Some("d"), Some(-1)),
            used,
        ] {
            let mut out = Vec::new();
            encode_insert(&mut out, &t);
            assert_eq!(one_record(&out), Record::Insert(t));
        }
        let mut out = Vec::new();
        encode_delete(&mut out, ["a", "b+/="].into_iter());
        assert_eq!(one_record(&out), Record::Delete(vec!["a".into(), "b+/=".into()]));
        let uses = vec![
            TokenUse {
                id: "a".into(),
                at_ms: -1,
            },
            TokenUse {
                id: "b+/=".into(),
                at_ms: i64::MAX,
            },
        ];
        let mut out = Vec::new();
        encode_last_used(&mut out, &uses);
        assert_eq!(one_record(&out), Record::LastUsed(uses));
        let mut out = Vec::new();
        encode_replace(&mut out, "old+/=", &token(Some("d"), Some(7)));
        assert_eq!(
            one_record(&out),
            Record::Replace {
                old: "old+/=".into(),
                new: token(Some("d"), Some(7))
            }
        );
    }

    #[test]
    fn header_checks() {
        let current = Header {
            version: FORMAT_VERSION,
            len: HEADER_LEN,
            base_len: 1234,
        };
        assert_eq!(check_header(&header(1234)), Ok(current));
        for version in 1..BASE_VERSION {
            let legacy = Header {
                version,
                len: 16,
                base_len: 16,
            };
            assert_eq!(
                check_header(&common_header(version)),
                Ok(legacy),
                "version {version} logs are still read"
            );
        }
        assert_eq!(check_header(b"{\"json\": true}    "), Err(HeaderProblem::NotOurs));
        assert_eq!(check_header(&header(0)[..10]), Err(HeaderProblem::NotOurs));
        assert_eq!(check_header(&common_header(7)), Err(HeaderProblem::Newer(7)));
        assert_eq!(check_header(&common_header(0)), Err(HeaderProblem::Unknown(0)));
        let mut damaged = header(0);
        damaged[9] ^= 1;
        assert_eq!(check_header(&damaged), Err(HeaderProblem::Damaged(0)));
        let mut damaged = header(0);
        damaged[20] ^= 1;
        assert_eq!(check_header(&damaged), Err(HeaderProblem::Damaged(16)));
        assert_eq!(check_header(&header(0)[..27]), Err(HeaderProblem::Damaged(16)));
        assert_eq!(
            check_header(&header(27)),
            Err(HeaderProblem::Damaged(16)),
            "a base without its header"
        );
        assert!(check_header(&header(28)).is_ok());
    }

    #[test]
    fn every_damage_is_detected() {
        let mut out = Vec::new();
        encode_insert(&mut out, &token(Some("x"), Some(9)));
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    matches!(read_slot(&bad, 0), Slot::Bad(_)),
                    "flip of bit {bit} of byte {i} went unnoticed"
                );
            }
        }
        for cut in 1..out.len() {
            assert!(matches!(read_slot(&out[..cut], 0), Slot::Bad(_)), "cut at {cut}");
        }
        assert_eq!(read_slot(&out, out.len()), Slot::End);
        assert_eq!(
            intact_record_after(&[0u8; 4096], 0),
            None,
            "zero fill is never a record"
        );
    }

    /// A batch of the given records, sealed.
    fn batch(records: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        open_batch(&mut out);
        out.extend_from_slice(records);
        seal_batch(&mut out);
        out
    }

    #[test]
    fn every_damage_to_a_batch_is_detected() {
        let mut records = Vec::new();
        encode_insert(&mut records, &token(Some("x"), Some(9)));
        encode_delete(&mut records, ["a"].into_iter());
        let out = batch(&records);
        assert_eq!(read_batch(&out, 0), BatchSlot::Batch { next: out.len() });
        assert_eq!(
            &out[BATCH_HEADER_LEN..],
            &records[..],
            "the records inside as they are"
        );
        assert_eq!(read_batch(&out, out.len()), BatchSlot::End);
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    matches!(read_batch(&bad, 0), BatchSlot::Bad(_)),
                    "flip of bit {bit} of byte {i} went unnoticed"
                );
            }
        }
        for cut in 1..out.len() {
            assert!(
                matches!(read_batch(&out[..cut], 0), BatchSlot::Bad(_)),
                "cut at {cut}"
            );
        }
        // A length beyond any file is refused, not allocated or overflowed.
        let mut huge = out.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(read_batch(&huge, 0), BatchSlot::Bad(_)));
        assert_eq!(
            intact_batch_after(&[0u8; 4096], 0),
            None,
            "zero fill is never a batch"
        );
        // The records of a torn batch are not mistaken for a batch.
        let mut torn = out.clone();
        torn[BATCH_HEADER_LEN..BATCH_HEADER_LEN + 20].fill(0);
        assert!(matches!(read_batch(&torn, 0), BatchSlot::Bad(_)));
        assert_eq!(intact_batch_after(&torn, 0), None);
        let mut two = torn.clone();
        two.extend_from_slice(&out);
        assert_eq!(intact_batch_after(&two, 0), Some(torn.len()));
        // Behind sparse bytes (many offsets read as a length that fits),
        // an intact batch or record is still found, at any alignment.
        for shift in 0..8 {
            let mut sparse: Vec<u8> = (0..4096 + shift)
                .map(|i| if i % 8 == 0 { 0x41 } else { 0 })
                .collect();
            assert_eq!(intact_batch_after(&sparse, 0), None);
            assert_eq!(intact_record_after(&sparse, 0), None);
            // Many offsets there read as a length that fits, but none gets
            // as far as a checksum (which would make the scan quadratic).
            let fits = |p: usize| {
                let len = u64::from_le_bytes(sparse[p..p + 8].try_into().unwrap());
                len > 8 && (p + 12) as u64 + len <= sparse.len() as u64
            };
            assert!((0..sparse.len() - 8).filter(|&p| fits(p)).count() > 400);
            assert_eq!(
                (0..sparse.len())
                    .filter(|&p| records_fill_batch(&sparse, p))
                    .count(),
                0
            );
            let kind = |p: usize| {
                matches!(
                    sparse.get(p + RECORD_HEADER_LEN),
                    Some(KIND_INSERT..=KIND_LAST_USED)
                )
            };
            assert_eq!((0..sparse.len()).filter(|&p| kind(p)).count(), 0);
            let at = sparse.len();
            sparse.extend_from_slice(&out);
            assert_eq!(intact_batch_after(&sparse, 0), Some(at));
            assert_eq!(intact_record_after(&sparse, 0), Some(at + BATCH_HEADER_LEN));
        }
    }

    #[test]
    fn a_purge_is_split_within_the_payload_limit() {
        // Each id takes 8 bytes, the kind and count 5.
        let ids: Vec<String> = (0..10).map(|n| format!("id-{n}")).collect();
        for (max, expected) in [(13, 10), (29, 4), (85, 1), (MAX_PAYLOAD_LEN, 1)] {
            let mut out = Vec::new();
            encode_purge(&mut out, &ids, max);
            assert_eq!(oversized(&out, max), None, "limit {max}");
            let mut all = Vec::new();
            let mut at = 0;
            let mut records = 0;
            while let Slot::Record { payload, next } = read_slot(&out, at) {
                match decode(payload, FORMAT_VERSION).unwrap() {
                    Record::Delete(ids) => all.extend(ids),
                    other => panic!("limit {max}: expected a delete, got {other:?}"),
                }
                records += 1;
                at = next;
            }
            assert_eq!((at, records), (out.len(), expected), "limit {max}");
            assert_eq!(all, ids, "limit {max}");
        }
        let mut out = Vec::new();
        encode_purge(&mut out, &ids, 29);
        assert_eq!(oversized(&out, 28), Some(29));
    }

    #[test]
    fn decode_refuses_malformed_payloads() {
        let v = FORMAT_VERSION;
        assert!(decode(&[9], v).unwrap_err().contains("unknown record kind 9"));
        assert!(decode(&[KIND_DELETE, 255, 255, 255, 255], v)
            .unwrap_err()
            .contains("claims"));
        assert!(decode(&[KIND_LAST_USED, 255, 255, 255, 255], v)
            .unwrap_err()
            .contains("claims"));
        assert!(
            decode(&[KIND_LAST_USED, 0, 0, 0, 0], 2)
                .unwrap_err()
                .contains("unknown record kind 4"),
            "version 2 logs have no last-used records"
        );
        let mut replace = vec![KIND_REPLACE];
        put_str(&mut replace, "old");
        put_token(&mut replace, &token(None, None));
        assert!(matches!(decode(&replace, 3), Ok(Record::Replace { .. })));
        assert!(
            decode(&replace, 1).unwrap_err().contains("unknown record kind 3"),
            "version 1 logs have no replace records"
        );
        assert!(decode(&[KIND_INSERT, 1, 0], v)
            .unwrap_err()
            .contains("ends too early"));
    }
}

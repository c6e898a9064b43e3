//! The metadata log on disk: openraft's [`RaftLogStorage`] over one append-only file, plus
//! the vote and the committed log id in small files of their own.
//!
//! ```text
//! <log.dirs>/__cluster_metadata/raft/
//!   metadata.log     [len u32 LE][crc32c u32 LE][JSON Record] ...   append, fsync, then ack
//!   vote.json        the current term's vote: temp file, fsync, rename, fsync directory
//!   committed.json   last committed log id (a hint for replay on restart; not fsynced)
//! ```
//!
//! The metadata log is small (a snapshot every [`SNAPSHOT_EVERY_ENTRIES`](super::SNAPSHOT_EVERY_ENTRIES)
//! entries bounds it), so every entry is also kept in memory and reads never touch the disk.
//! Truncation (a follower's divergent tail) cuts the file at the record's position; a purge
//! (entries covered by a snapshot) rewrites the file atomically, starting with a
//! `Purged(log_id)` record so that the purge point survives a restart.
//!
//! A crash mid-append leaves a torn tail: a short frame, a CRC mismatch or a record that
//! does not decode. Opening cuts the file at the first such record (those entries were
//! never reported flushed, so no voter counted them) and goes on with what came before.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, OptionalSend, RaftLogReader};
use serde::{Deserialize, Serialize};

use super::{Entry, LogId, StorageError, TypeConfig, Vote};

const LOG_FILE: &str = "metadata.log";
const VOTE_FILE: &str = "vote.json";
const COMMITTED_FILE: &str = "committed.json";
/// Bytes before each record's JSON: length and CRC-32C of the JSON.
const FRAME_HEADER_BYTES: usize = 8;
/// A frame claiming more than this is garbage, not a record (metadata commands are small).
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// One framed record of `metadata.log`.
#[derive(Debug, Deserialize)]
enum Record {
    /// Entries up to and including this log id were purged; only ever the first record.
    Purged(LogId),
    Entry(Entry),
}

/// [`Record`] by reference, so framing an entry does not clone it (serde writes both the same).
#[derive(Serialize)]
enum RecordRef<'a> {
    Purged(&'a LogId),
    Entry(&'a Entry),
}

/// The metadata log. Cheap to clone: clones share the same file and entries, which is how
/// openraft gets a [`RaftLogReader`] that reads while the storage task appends.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogFile>>,
}

/// The open log file and its in-memory mirror. Guarded by a `std` mutex: critical sections
/// are short, and the ones that do file I/O run on the blocking pool.
struct LogFile {
    dir: PathBuf,
    file: File,
    /// Every entry in the file by index, with the byte position of its record.
    entries: BTreeMap<u64, (u64, Entry)>,
    /// Length of the valid prefix of the file: where the next record goes.
    end: u64,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// What scanning a log file's bytes found.
#[derive(Debug)]
struct Scan {
    /// Each decoded record with its byte position.
    records: Vec<(u64, Record)>,
    /// Length of the valid prefix.
    valid_len: u64,
    /// Why the scan stopped before the end of the bytes, if it did.
    torn: Option<String>,
}

/// Decodes framed records until the bytes end or a record is short, fails its CRC or does
/// not decode. Pure, so torn-tail handling is tested without files.
fn scan(bytes: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let torn = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < FRAME_HEADER_BYTES {
            break Some(format!("{} bytes of a frame header", rest.len()));
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD_BYTES {
            break Some(format!("a frame claims {len} bytes"));
        }
        let Some(payload) = rest.get(FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + len) else {
            break Some(format!(
                "a {len}-byte record with {} bytes present",
                rest.len() - FRAME_HEADER_BYTES
            ));
        };
        let actual = crc32c::crc32c(payload);
        if actual != crc {
            break Some(format!(
                "CRC-32C mismatch (stored {crc:#010x}, computed {actual:#010x})"
            ));
        }
        match serde_json::from_slice::<Record>(payload) {
            Ok(record) => records.push((pos as u64, record)),
            Err(e) => break Some(format!("a record that does not decode: {e}")),
        }
        pos += FRAME_HEADER_BYTES + len;
    };
    Scan {
        records,
        valid_len: pos as u64,
        torn,
    }
}

fn frame(record: &RecordRef<'_>, out: &mut Vec<u8>) {
    // Serializing plain data (ids, strings, numbers) to JSON cannot fail.
    let payload = serde_json::to_vec(record).expect("metadata log records serialize");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

fn corrupt(path: &Path, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {reason}", path.display()),
    )
}

fn io_context(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_context(dir, e))
}

/// Replaces `dir/name` with `bytes` atomically: a reader sees the old or the new content,
/// never a mix. With `durable`, the new content also survives a crash once this returns.
pub(super) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(|e| io_context(&tmp, e))?;
    file.write_all(bytes).map_err(|e| io_context(&tmp, e))?;
    if durable {
        file.sync_all().map_err(|e| io_context(&tmp, e))?;
    }
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| io_context(&path, e))?;
    if durable {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Reads a small JSON file; `None` when it does not exist.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io_context(path, io::Error::new(io::ErrorKind::InvalidData, e))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_context(path, e)),
    }
}

impl LogStore {
    /// Opens (or creates) the metadata log in `dir`, cutting a torn tail.
    pub fn open(dir: &Path) -> io::Result<LogStore> {
        let log = LogFile::open(dir)?;
        Ok(LogStore {
            inner: Arc::new(Mutex::new(log)),
        })
    }

    /// The log for a read; a poisoned lock is a storage error for openraft.
    fn lock(&self) -> io::Result<MutexGuard<'_, LogFile>> {
        lock(&self.inner)
    }

    /// Runs `f` on the log file on the blocking pool: it does file I/O and fsyncs.
    /// Failures become openraft's [`StorageError`] about `subject`.
    async fn blocking<T: Send + 'static>(
        &self,
        subject: ErrorSubject<u64>,
        verb: ErrorVerb,
        f: impl FnOnce(&mut LogFile) -> io::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut *lock(&inner)?))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(format!("metadata log task failed: {e}"))))
            .map_err(|e| StorageError::from_io_error(subject, verb, e))
    }
}

fn read_error(e: io::Error) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn lock(inner: &Mutex<LogFile>) -> io::Result<MutexGuard<'_, LogFile>> {
    inner
        .lock()
        .map_err(|_| io::Error::other("metadata log lock poisoned by an earlier panic"))
}

impl LogFile {
    fn open(dir: &Path) -> io::Result<LogFile> {
        std::fs::create_dir_all(dir).map_err(|e| io_context(dir, e))?;
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_context(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_context(&path, e))?;

        let scan = scan(&bytes);
        if let Some(reason) = &scan.torn {
            tracing::warn!(
                path = %path.display(),
                valid_bytes = scan.valid_len,
                file_bytes = bytes.len(),
                "metadata log ends in a torn or corrupt record ({reason}); cutting it off"
            );
            file.set_len(scan.valid_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_context(&path, e))?;
        }

        let mut last_purged = None;
        let mut entries: BTreeMap<u64, (u64, Entry)> = BTreeMap::new();
        for (pos, record) in scan.records {
            match record {
                Record::Purged(log_id) if pos == 0 => last_purged = Some(log_id),
                Record::Purged(log_id) => {
                    return Err(corrupt(
                        &path,
                        format!("purge marker {log_id} at byte {pos}, not at the start"),
                    ))
                }
                Record::Entry(entry) => {
                    // Appends only ever go after the last entry (truncating first where
                    // needed), so indexes in the file strictly increase.
                    let previous = entries
                        .last_key_value()
                        .map(|(&i, _)| i)
                        .or(last_purged.map(|p| p.index));
                    let index = entry.log_id.index;
                    if previous.is_some_and(|previous| index <= previous) {
                        return Err(corrupt(
                            &path,
                            format!(
                                "entry {} at byte {pos} does not follow index {previous:?}",
                                entry.log_id
                            ),
                        ));
                    }
                    entries.insert(index, (pos, entry));
                }
            }
        }

        let vote = read_json::<Vote>(&dir.join(VOTE_FILE))?;
        // The committed id is only a replay hint written without fsync: unreadable means
        // "unknown", and it never points past the entries actually on disk.
        let committed = match read_json::<LogId>(&dir.join(COMMITTED_FILE)) {
            Ok(committed) => committed,
            Err(e) => {
                tracing::warn!("ignoring the committed log id: {e}");
                None
            }
        };
        let last_log_id = entries
            .last_key_value()
            .map(|(_, (_, entry))| entry.log_id)
            .or(last_purged);
        let committed = committed.filter(|c| last_log_id.is_some_and(|last| c.index <= last.index));

        let end = scan.valid_len;
        file.seek(SeekFrom::Start(end))
            .map_err(|e| io_context(&path, e))?;
        Ok(LogFile {
            dir: dir.to_path_buf(),
            file,
            entries,
            end,
            last_purged,
            vote,
            committed,
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .last_key_value()
            .map(|(_, (_, entry))| entry.log_id)
            .or(self.last_purged)
    }

    fn append(&mut self, new: Vec<Entry>) -> io::Result<()> {
        let path = self.path();
        // openraft truncates a conflicting tail before it appends; should an append still
        // land on existing indexes, the newer entries win, as in Raft itself.
        if let Some(first) = new.first() {
            self.truncate(first.log_id.index)?;
        }
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(new.len());
        let mut last = self.last_log_id().map(|id| id.index);
        for entry in &new {
            if last.is_some_and(|last| entry.log_id.index <= last) {
                return Err(io::Error::other(format!(
                    "{}: appended entries are out of order: {} after index {last:?}",
                    path.display(),
                    entry.log_id,
                )));
            }
            last = Some(entry.log_id.index);
            positions.push(self.end + bytes.len() as u64);
            frame(&RecordRef::Entry(entry), &mut bytes);
        }
        let write = |file: &mut File, end: u64| -> io::Result<()> {
            file.seek(SeekFrom::Start(end))?;
            file.write_all(&bytes)?;
            file.sync_data()
        };
        if let Err(e) = write(&mut self.file, self.end) {
            // Whatever part of the batch reached the file is cut again by the next open
            // (or overwritten by the next append, which starts at `end`).
            return Err(io_context(&path, e));
        }
        self.end += bytes.len() as u64;
        for (pos, entry) in positions.into_iter().zip(new) {
            self.entries.insert(entry.log_id.index, (pos, entry));
        }
        Ok(())
    }

    /// Deletes entries from `index` on (a divergent tail replaced by the leader's).
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(&(pos, _)) = self.entries.range(index..).next().map(|(_, v)| v) else {
            return Ok(());
        };
        let path = self.path();
        self.file
            .set_len(pos)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_context(&path, e))?;
        self.entries.split_off(&index);
        self.end = pos;
        Ok(())
    }

    /// Deletes entries up to and including `log_id` by rewriting the file.
    fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        if self
            .last_purged
            .is_some_and(|purged| purged.index >= log_id.index)
        {
            return Ok(());
        }
        let kept = self.entries.split_off(&(log_id.index + 1));
        let mut bytes = Vec::new();
        frame(&RecordRef::Purged(&log_id), &mut bytes);
        let mut rewritten = BTreeMap::new();
        for (index, (_, entry)) in kept {
            let pos = bytes.len() as u64;
            frame(&RecordRef::Entry(&entry), &mut bytes);
            rewritten.insert(index, (pos, entry));
        }

        let path = self.path();
        write_atomically(&self.dir, LOG_FILE, &bytes, true)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_context(&path, e))?;
        file.seek(SeekFrom::Start(bytes.len() as u64))
            .map_err(|e| io_context(&path, e))?;
        self.file = file;
        self.end = bytes.len() as u64;
        self.entries = rewritten;
        self.last_purged = Some(log_id);
        Ok(())
    }

    fn entries_in(&self, range: impl RangeBounds<u64>) -> Vec<Entry> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            // `BTreeMap::range` panics on an inverted range; the answer is just empty.
            return Vec::new();
        }
        self.entries
            .range(start..end)
            .map(|(_, (_, entry))| entry.clone())
            .collect()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self.lock().map_err(read_error)?.entries_in(range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.lock().map_err(read_error)?;
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: log.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = *vote;
        self.blocking(ErrorSubject::Vote, ErrorVerb::Write, move |log| {
            // Serializing a vote (numbers and a bool) cannot fail.
            let bytes = serde_json::to_vec(&vote).expect("a vote serializes");
            write_atomically(&log.dir, VOTE_FILE, &bytes, true)?;
            log.vote = Some(vote);
            Ok(())
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().map_err(read_error)?.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.blocking(ErrorSubject::Store, ErrorVerb::Write, move |log| {
            // Serializing a log id cannot fail.
            let bytes = serde_json::to_vec(&committed).expect("a log id serializes");
            // Not fsynced: losing it only means replaying from the snapshot after a crash.
            write_atomically(&log.dir, COMMITTED_FILE, &bytes, false)?;
            log.committed = committed;
            Ok(())
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().map_err(read_error)?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self
            .blocking(ErrorSubject::Logs, ErrorVerb::Write, move |log| {
                log.append(entries)
            })
            .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |log| {
            log.truncate(log_id.index)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.blocking(ErrorSubject::Logs, ErrorVerb::Delete, move |log| {
            log.purge(log_id)
        })
        .await
    }
}

/// The path of the log file in `dir`, for tests that damage it.
#[cfg(test)]
pub(crate) fn log_file_path(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::controller::Command;

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Command::AllocateProducerIds {
                broker_id: index as i32,
            }),
        }
    }

    fn indexes(log: &LogStore) -> Vec<u64> {
        log.lock().unwrap().entries.keys().copied().collect()
    }

    #[test]
    fn scan_stops_at_short_header_short_payload_and_bad_crc() {
        let mut bytes = Vec::new();
        frame(&RecordRef::Entry(&entry(1, 0)), &mut bytes);
        let one = bytes.len();
        frame(&RecordRef::Entry(&entry(1, 1)), &mut bytes);
        let full = scan(&bytes);
        assert_eq!(full.records.len(), 2);
        assert!(full.torn.is_none());
        assert_eq!(full.valid_len, bytes.len() as u64);

        for cut in [one + 3, one + FRAME_HEADER_BYTES + 2, bytes.len() - 1] {
            let s = scan(&bytes[..cut]);
            assert_eq!(s.records.len(), 1, "cut at {cut}");
            assert_eq!(s.valid_len, one as u64);
            assert!(s.torn.is_some());
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x40;
        let s = scan(&flipped);
        assert_eq!(s.records.len(), 1);
        assert!(s.torn.unwrap().contains("CRC"));
    }

    #[tokio::test]
    async fn torn_tail_is_cut_on_open_and_earlier_entries_survive() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = LogStore::open(dir.path()).unwrap();
            log.lock()
                .unwrap()
                .append((0..5).map(|i| entry(1, i)).collect())
                .unwrap();
        }
        let path = log_file_path(dir.path());
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 3).unwrap();
        drop(file);

        let mut log = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![0, 1, 2, 3]);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(entry(1, 3).log_id));
        // The cut is on disk, and appends go on from there.
        log.lock().unwrap().append(vec![entry(2, 4)]).unwrap();
        drop(log);
        let log = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![0, 1, 2, 3, 4]);
        let got = log.lock().unwrap().entries_in(4..=4);
        assert_eq!(got[0].log_id, entry(2, 4).log_id);
    }

    #[tokio::test]
    async fn garbage_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = LogStore::open(dir.path()).unwrap();
            log.lock()
                .unwrap()
                .append((0..3).map(|i| entry(1, i)).collect())
                .unwrap();
        }
        let path = log_file_path(dir.path());
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0xff; 40]).unwrap();
        drop(file);
        let log = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn truncate_purge_vote_and_committed_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::open(dir.path()).unwrap();
            log.lock()
                .unwrap()
                .append((0..10).map(|i| entry(1, i)).collect())
                .unwrap();
            log.truncate(entry(1, 7).log_id).await.unwrap();
            log.purge(entry(1, 3).log_id).await.unwrap();
            // Purging again up to an older point changes nothing.
            log.purge(entry(1, 1).log_id).await.unwrap();
            let vote = Vote::new(3, 2);
            log.save_vote(&vote).await.unwrap();
            log.save_committed(Some(entry(1, 5).log_id)).await.unwrap();
        }
        let mut log = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![4, 5, 6]);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(entry(1, 3).log_id));
        assert_eq!(state.last_log_id, Some(entry(1, 6).log_id));
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        assert_eq!(
            log.read_committed().await.unwrap(),
            Some(entry(1, 5).log_id)
        );
        let (from, to) = (5, 2);
        assert!(log.try_get_log_entries(from..to).await.unwrap().is_empty());
        assert_eq!(log.try_get_log_entries(..).await.unwrap().len(), 3);

        // Purging past the last entry empties the log; the next entry follows the purge.
        log.purge(entry(1, 8).log_id).await.unwrap();
        assert!(indexes(&log).is_empty());
        log.lock().unwrap().append(vec![entry(2, 9)]).unwrap();
        let out_of_order = vec![entry(2, 10), entry(2, 10)];
        assert!(log.lock().unwrap().append(out_of_order).is_err());
        drop(log);
        let log = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&log), vec![9]);
    }

    #[tokio::test]
    async fn committed_past_the_log_end_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = LogStore::open(dir.path()).unwrap();
            log.lock()
                .unwrap()
                .append((0..3).map(|i| entry(1, i)).collect())
                .unwrap();
            log.save_committed(Some(entry(1, 9).log_id)).await.unwrap();
        }
        let mut log = LogStore::open(dir.path()).unwrap();
        assert_eq!(log.read_committed().await.unwrap(), None);
    }
}

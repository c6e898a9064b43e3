//! [`LogSegment`]: one `.log` file of whole record batches plus its `.index` and
//! `.timeindex` (Kafka's `LogSegment`).
//!
//! ```text
//! <dir>/00000000000000000042.log        batches, appended at the end
//!       00000000000000000042.index      sparse (last offset of batch → position)
//!       00000000000000000042.timeindex  sparse (max timestamp so far → its offset)
//! ```
//!
//! Appends write at the end of the file with positioned writes; reads use `read_at`, so a
//! reader only needs `&self`. The `.log` file handle is an `Arc<File>`: a reader that cloned
//! it finishes its read even if retention unlinks the segment meanwhile.
//!
//! The segment knows nothing about the partition: `Log` decides when to roll, recover or
//! delete it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::log::batch::{
    decode_records, validate_batch_summary, BatchHeader, BatchSummary, Compression,
    BATCH_HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2, MIN_BATCH_LENGTH,
};
use crate::log::index::{OffsetIndex, TimeIndex};

/// Suffix of segment data files.
pub const LOG_FILE_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub const INDEX_FILE_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub const TIME_INDEX_FILE_SUFFIX: &str = ".timeindex";
/// Extra suffix of the files of a segment the cleaner is writing (`<base>.log.cleaned`, ...);
/// `Log::open` removes such files, so a crash before the swap leaves the old segment.
pub const CLEANED_FILE_SUFFIX: &str = ".cleaned";

/// Largest relative offset a segment may hold: index entries store relative offsets in four
/// bytes, which Kafka reads as a signed int.
pub const MAX_RELATIVE_OFFSET: i64 = i32::MAX as i64;

/// `<dir>/<base offset, 20 digits><suffix>`.
pub fn segment_file_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

/// One segment of a partition log.
#[derive(Debug)]
pub struct LogSegment {
    base_offset: i64,
    log_path: PathBuf,
    /// Shared so readers can outlive a deletion; writes go through `&mut self` only.
    log: Arc<File>,
    /// Bytes of valid batches in `.log`: the append position.
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    index_interval_bytes: u32,
    /// Bytes appended since the last index entry; an entry is added when this exceeds
    /// `index_interval_bytes`.
    bytes_since_last_index_entry: u64,
    /// Largest batch max timestamp seen, -1 if none.
    max_timestamp: i64,
    /// Offset of the record holding `max_timestamp`, -1 if none.
    offset_of_max_timestamp: i64,
    /// Offset after the last batch, `base_offset` if empty.
    next_offset: i64,
    /// Wall-clock time of the first append (or of creation or load), for `segment.ms`.
    created_ms: i64,
}

/// How recovery of one segment went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryOutcome {
    /// Valid batches kept.
    pub valid_batches: u64,
    /// Bytes cut from the end of the `.log` file.
    pub truncated_bytes: u64,
}

impl LogSegment {
    /// Creates a new, empty segment, replacing any files with the same base offset.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> io::Result<LogSegment> {
        for suffix in [LOG_FILE_SUFFIX, INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
            remove_if_exists(&segment_file_path(dir, base_offset, suffix))?;
        }
        let mut segment =
            LogSegment::open_files(dir, base_offset, "", index_interval_bytes, now_ms)?;
        segment.next_offset = base_offset;
        Ok(segment)
    }

    /// Creates a new, empty segment in the cleaner's files (`<base>.log.cleaned`,
    /// `<base>.index.cleaned`, `<base>.timeindex.cleaned`), replacing leftovers of an
    /// earlier attempt. [`swap_in_cleaned`] later renames them over the segment's files.
    pub(crate) fn create_cleaned(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> io::Result<LogSegment> {
        for suffix in [LOG_FILE_SUFFIX, INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
            remove_if_exists(&cleaned_file_path(dir, base_offset, suffix))?;
        }
        let mut segment = LogSegment::open_files(
            dir,
            base_offset,
            CLEANED_FILE_SUFFIX,
            index_interval_bytes,
            now_ms,
        )?;
        segment.next_offset = base_offset;
        Ok(segment)
    }

    /// Opens the files of an existing segment and loads its indexes after checking them
    /// (see `docs/design/log.md`); an index that fails a check is rebuilt from the `.log`.
    /// `next_segment_base` bounds the offsets the segment may hold.
    pub fn load(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        next_segment_base: Option<i64>,
        now_ms: i64,
    ) -> io::Result<LogSegment> {
        let mut segment =
            LogSegment::open_files(dir, base_offset, "", index_interval_bytes, now_ms)?;
        if let Err(reason) = segment.check_and_load(next_segment_base) {
            tracing::warn!(
                segment = %segment.log_path.display(),
                %reason,
                "rebuilding indexes of segment"
            );
            segment.recover()?;
        }
        Ok(segment)
    }

    /// Opens the files of an existing segment, then validates every batch, truncates the
    /// `.log` at the first invalid or incomplete one and rebuilds both indexes.
    pub fn open_and_recover(
        dir: &Path,
        base_offset: i64,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> io::Result<(LogSegment, RecoveryOutcome)> {
        let mut segment =
            LogSegment::open_files(dir, base_offset, "", index_interval_bytes, now_ms)?;
        let outcome = segment.recover()?;
        Ok((segment, outcome))
    }

    /// Opens (creating if missing) `<base><suffix><extra_suffix>` for the three suffixes;
    /// `extra_suffix` is empty except for the cleaner's `.cleaned` files.
    fn open_files(
        dir: &Path,
        base_offset: i64,
        extra_suffix: &str,
        index_interval_bytes: u32,
        now_ms: i64,
    ) -> io::Result<LogSegment> {
        let path =
            |suffix: &str| segment_file_path(dir, base_offset, &format!("{suffix}{extra_suffix}"));
        let log_path = path(LOG_FILE_SUFFIX);
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)?;
        let size = log.metadata()?.len();
        let offset_index = OffsetIndex::open(&path(INDEX_FILE_SUFFIX), base_offset)?;
        let time_index = TimeIndex::open(&path(TIME_INDEX_FILE_SUFFIX), base_offset)?;
        Ok(LogSegment {
            base_offset,
            log_path,
            log: Arc::new(log),
            size,
            offset_index,
            time_index,
            index_interval_bytes,
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            next_offset: base_offset,
            created_ms: now_ms,
        })
    }

    /// Trusts the indexes if they pass the sanity checks and the log after the last offset
    /// index entry is a clean run of batch headers ending exactly at the end of the file.
    fn check_and_load(&mut self, next_segment_base: Option<i64>) -> Result<(), String> {
        let max_relative = next_segment_base.map_or(MAX_RELATIVE_OFFSET, |next| {
            (next - 1 - self.base_offset).min(MAX_RELATIVE_OFFSET)
        });
        let max_relative = u64::try_from(max_relative).unwrap_or(0);
        self.offset_index.sanity_check(self.size, max_relative)?;
        self.time_index.sanity_check(max_relative)?;
        let start = self.offset_index.last_entry();
        if start.is_some() && self.time_index.is_empty() {
            return Err("time index is empty but the offset index is not".to_string());
        }
        let mut position = start.map_or(0, |e| u64::from(e.position));
        let mut next_offset = self.base_offset;
        let mut first = true;
        let mut bytes_since_last_entry = 0u64;
        // The tail after the last index entry may hold newer timestamps than the time index
        // has seen (it gets an entry only every index interval).
        let mut tail_max_timestamp = (-1i64, -1i64);
        while position < self.size {
            let header = self
                .read_header_at(position)
                .map_err(|e| format!("cannot read batch header at {position}: {e}"))?
                .ok_or_else(|| format!("incomplete batch header at {position}"))?;
            if header.magic != MAGIC_V2 || header.batch_length < MIN_BATCH_LENGTH {
                return Err(format!("invalid batch header at {position}"));
            }
            if first {
                if let Some(entry) = start {
                    if header.last_offset() != entry.offset {
                        return Err(format!(
                            "last index entry says offset {} at {}, the log has {} there",
                            entry.offset,
                            entry.position,
                            header.last_offset()
                        ));
                    }
                }
                first = false;
            } else if bytes_since_last_entry > u64::from(self.index_interval_bytes) {
                // An append would have indexed this batch: the index lost entries (or was
                // deleted and recreated empty).
                return Err(format!("no index entry for the batch at {position}"));
            }
            bytes_since_last_entry += header.total_size() as u64;
            if header.base_offset < next_offset {
                return Err(format!(
                    "batch at {position} goes back to offset {}",
                    header.base_offset
                ));
            }
            next_offset = header.next_offset();
            if header.max_timestamp > tail_max_timestamp.0 {
                tail_max_timestamp = (header.max_timestamp, header.last_offset());
            }
            position += header.total_size() as u64;
        }
        if position != self.size {
            return Err(format!(
                "last batch ends at {position}, past the log size {}",
                self.size
            ));
        }
        if next_offset - 1 - self.base_offset > u64_to_i64(max_relative) {
            return Err(format!(
                "offset {} is past the segment's range",
                next_offset - 1
            ));
        }
        self.next_offset = next_offset;
        self.bytes_since_last_index_entry = bytes_since_last_entry;
        if let Some(last) = self.time_index.last_entry() {
            self.max_timestamp = last.timestamp;
            self.offset_of_max_timestamp = last.offset;
        }
        if tail_max_timestamp.0 > self.max_timestamp {
            (self.max_timestamp, self.offset_of_max_timestamp) = tail_max_timestamp;
        }
        Ok(())
    }

    /// Validates every batch from the start (length, magic, CRC, record structure, offsets
    /// increasing and within range), truncates the `.log` at the first batch that fails or is
    /// incomplete, and rebuilds both indexes (Kafka's `LogSegment.recover`).
    pub fn recover(&mut self) -> io::Result<RecoveryOutcome> {
        self.offset_index.clear()?;
        self.time_index.clear()?;
        self.bytes_since_last_index_entry = 0;
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.next_offset = self.base_offset;
        let file_len = self.log.metadata()?.len();
        let file = Arc::clone(&self.log);
        let mut valid_batches = 0;
        let valid_end = scan_batches(&file, file_len, 0, |position, bytes| {
            let Ok(summary) = validate_batch_summary(bytes) else {
                return false;
            };
            let header = summary.header;
            let in_range = header.base_offset >= self.next_offset
                && header.last_offset() - self.base_offset <= MAX_RELATIVE_OFFSET
                && u32::try_from(position).is_ok();
            if !in_range {
                return false;
            }
            self.index_batch(position, &summary);
            valid_batches += 1;
            true
        })?;
        if valid_end < file_len {
            tracing::warn!(
                segment = %self.log_path.display(),
                valid_end,
                file_len,
                "truncating invalid or incomplete data at the end of segment"
            );
            self.log.set_len(valid_end)?;
        }
        self.size = valid_end;
        // Record the largest timestamp, which a sparse rebuild may have skipped, so a later
        // load (which takes it from the last time index entry) sees it too.
        self.time_index
            .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        self.offset_index.flush()?;
        self.time_index.flush()?;
        Ok(RecoveryOutcome {
            valid_batches,
            truncated_bytes: file_len - valid_end,
        })
    }

    /// Updates indexes and timestamps for a batch written at `position`.
    fn index_batch(&mut self, position: u64, summary: &BatchSummary) {
        let header = &summary.header;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = summary.offset_of_max_timestamp();
        }
        if self.bytes_since_last_index_entry > u64::from(self.index_interval_bytes) {
            // `Log::maybe_roll` rolls before a segment grows past u32::MAX bytes, and recovery
            // stops at the first batch beyond it.
            let position =
                u32::try_from(position).expect("segment positions fit in u32 (checked by roll)");
            self.offset_index.append(header.last_offset(), position);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.total_size() as u64;
        self.next_offset = header.next_offset();
    }

    /// Appends `bytes`, which hold the already validated batches `batches` (start position
    /// within `bytes`, summary) with their final offsets. On a write error the file is cut
    /// back to its previous size and nothing is indexed.
    /// The first append into an empty segment restarts its `segment.ms` clock, so an idle
    /// partition's empty segment is not rolled right after its first append (Kafka measures
    /// from the first batch's timestamp for the same reason).
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        batches: &[(usize, BatchSummary)],
        now_ms: i64,
    ) -> io::Result<()> {
        let start = self.size;
        if let Err(e) = self.log.write_all_at(bytes, start) {
            if let Err(undo) = self.log.set_len(start) {
                tracing::error!(segment = %self.log_path.display(), error = %undo, "cannot undo a partial append");
            }
            return Err(e);
        }
        if start == 0 {
            self.created_ms = now_ms;
        }
        self.size += bytes.len() as u64;
        for (position, summary) in batches {
            self.index_batch(start + *position as u64, summary);
        }
        Ok(())
    }

    /// Parses the batch header at `position`, `None` if fewer than 61 bytes remain.
    pub fn read_header_at(&self, position: u64) -> io::Result<Option<BatchHeader>> {
        if position + BATCH_HEADER_SIZE as u64 > self.size {
            return Ok(None);
        }
        let mut buf = [0u8; BATCH_HEADER_SIZE];
        self.log.read_exact_at(&mut buf, position)?;
        // The buffer is exactly a header long, so parsing cannot fail.
        Ok(BatchHeader::parse(&buf).ok())
    }

    /// Position and header of the first batch whose last offset is >= `offset`, found through
    /// the offset index and a short scan of headers; `None` if every batch is below it.
    pub fn translate_offset(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader)>> {
        let mut position = u64::from(self.offset_index.lookup(offset).position);
        while let Some(header) = self.read_header_at(position)? {
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.total_size() as u64;
        }
        Ok(None)
    }

    /// Reads whole batches starting at `position`: at most `max_bytes`, only batches whose
    /// last offset is below `max_offset`, but at least one batch (if one is below
    /// `max_offset`) when `min_one_batch` is set, whatever its size (KIP-74). Returns the
    /// bytes and whether the read reached the end of the segment (so the caller may go on
    /// with the next one).
    pub fn read(
        &self,
        position: u64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> io::Result<(Vec<u8>, bool)> {
        if position >= self.size {
            return Ok((Vec::new(), true));
        }
        let available = self.size - position;
        let want = usize::try_from(available)
            .unwrap_or(usize::MAX)
            .min(max_bytes);
        let mut buf = vec![0u8; want];
        self.log.read_exact_at(&mut buf, position)?;
        let mut end = 0;
        while buf.len() - end >= BATCH_HEADER_SIZE {
            // At least a header's worth of bytes: parsing cannot fail.
            let Ok(header) = BatchHeader::parse(&buf[end..]) else {
                break;
            };
            if header.last_offset() >= max_offset {
                buf.truncate(end);
                return Ok((buf, false));
            }
            if end + header.total_size() > buf.len() {
                break;
            }
            end += header.total_size();
        }
        if end == buf.len() && end as u64 == available {
            return Ok((buf, true));
        }
        if end == 0 && min_one_batch {
            // The first batch is larger than max_bytes: return it whole anyway.
            if let Some(header) = self.read_header_at(position)? {
                if header.last_offset() < max_offset {
                    let mut batch = vec![0u8; header.total_size()];
                    self.log.read_exact_at(&mut batch, position)?;
                    let at_end =
                        position + batch.len() as u64 == self.size && batch.len() <= max_bytes;
                    return Ok((batch, at_end));
                }
            }
            return Ok((Vec::new(), false));
        }
        buf.truncate(end);
        Ok((buf, false))
    }

    /// The earliest record at or after `starting_offset` whose timestamp is >= `timestamp`,
    /// as (offset, timestamp) (Kafka's `LogSegment.findOffsetByTimestamp`). For a compressed
    /// batch the answer is the batch's base offset (or `starting_offset` if later) and its
    /// max timestamp: the log does not decompress.
    pub fn find_offset_by_timestamp(
        &self,
        timestamp: i64,
        starting_offset: i64,
    ) -> io::Result<Option<(i64, i64)>> {
        let from = self
            .time_index
            .lookup(timestamp)
            .offset
            .max(starting_offset);
        let mut position = u64::from(self.offset_index.lookup(from).position);
        while let Some(header) = self.read_header_at(position)? {
            let size = header.total_size();
            if header.last_offset() >= starting_offset && header.max_timestamp >= timestamp {
                if header.compression() != Compression::None {
                    return Ok(Some((
                        header.base_offset.max(starting_offset),
                        header.max_timestamp,
                    )));
                }
                let mut batch = vec![0u8; size];
                self.log.read_exact_at(&mut batch, position)?;
                let records = decode_records(&batch)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                if let Some(record) = records
                    .iter()
                    .find(|r| r.offset >= starting_offset && r.timestamp >= timestamp)
                {
                    return Ok(Some((record.offset, record.timestamp)));
                }
            }
            position += size as u64;
        }
        Ok(None)
    }

    /// Removes every batch whose last offset is >= `offset` (a batch holding `offset` goes
    /// whole), then rebuilds the indexes. Returns the bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> io::Result<u64> {
        let Some((position, _)) = self.translate_offset(offset)? else {
            return Ok(0);
        };
        let removed = self.size - position;
        self.log.set_len(position)?;
        self.recover()?;
        Ok(removed)
    }

    /// Called when a newer segment becomes active: records the final max timestamp in the
    /// time index (so it can be loaded without a scan) and fsyncs everything.
    pub fn on_become_inactive(&mut self) -> io::Result<()> {
        self.time_index
            .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        self.flush()
    }

    /// Fsyncs the `.log` and writes and fsyncs the indexes.
    pub fn flush(&mut self) -> io::Result<()> {
        self.log.sync_data()?;
        self.offset_index.sync()?;
        self.time_index.sync()
    }

    /// Writes pending index entries to the OS without fsync.
    pub fn flush_indexes(&mut self) -> io::Result<()> {
        self.offset_index.flush()?;
        self.time_index.flush()
    }

    /// Removes the segment's files. Readers holding [`LogSegment::log_file`] keep reading.
    pub fn delete_files(self, dir: &Path) -> io::Result<()> {
        for suffix in [LOG_FILE_SUFFIX, INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
            remove_if_exists(&segment_file_path(dir, self.base_offset, suffix))?;
        }
        Ok(())
    }

    /// Offset of the first record the segment may hold.
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the last batch, `base_offset` if empty.
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes in the `.log` file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True if the segment holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Largest batch max timestamp, -1 if none.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Offset of the record with the largest timestamp, -1 if none.
    pub fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }

    /// Creation (or load) time, for `segment.ms`.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// The timestamp retention compares with: the largest record timestamp, or the `.log`
    /// file's modification time when no batch carries one (Kafka's `largestTimestamp`).
    pub fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            return self.max_timestamp;
        }
        self.last_modified_ms()
    }

    /// Modification time of the `.log` file in ms since the epoch, -1 if unknown (Kafka's
    /// `LogSegment.lastModified`). The cleaner carries it over to a cleaned segment, so
    /// `delete.retention.ms` counts from the last append, not from the last cleaning.
    pub fn last_modified_ms(&self) -> i64 {
        self.log
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Sets the `.log` file's modification time (the cleaner keeps the original's).
    pub(crate) fn set_last_modified_ms(&self, ms: i64) -> io::Result<()> {
        let Ok(ms) = u64::try_from(ms) else {
            return Ok(()); // unknown: leave the file's own time
        };
        self.log
            .set_modified(UNIX_EPOCH + std::time::Duration::from_millis(ms))
    }

    /// Calls `visit(position, batch)` for every batch, oldest first, reading in large
    /// chunks; stops early when `visit` returns false.
    pub(crate) fn for_each_batch(&self, visit: impl FnMut(u64, &[u8]) -> bool) -> io::Result<()> {
        scan_batches(&self.log, self.size, 0, visit).map(|_| ())
    }

    /// The `.log` file handle, for readers that must outlive the segment.
    pub fn log_file(&self) -> Arc<File> {
        Arc::clone(&self.log)
    }

    /// Path of the `.log` file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Changes the index interval for future appends.
    pub fn set_index_interval_bytes(&mut self, index_interval_bytes: u32) {
        self.index_interval_bytes = index_interval_bytes;
    }

    /// The offset index (for inspection and tests).
    pub fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }

    /// The time index (for inspection and tests).
    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }
}

/// `<dir>/<base offset, 20 digits><suffix>.cleaned`.
pub fn cleaned_file_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    segment_file_path(dir, base_offset, &format!("{suffix}{CLEANED_FILE_SUFFIX}"))
}

/// Replaces the files of segment `base_offset` with its fsynced `.cleaned` files, such that
/// a crash at any point leaves either the old `.log` or the new one, each with indexes that
/// are either its own or missing (and then rebuilt by `LogSegment::load`):
///
/// 1. remove the old `.index` and `.timeindex`, fsync the directory;
/// 2. rename `.log.cleaned` over `.log` (atomic);
/// 3. rename `.index.cleaned` and `.timeindex.cleaned` into place, fsync the directory.
///
/// Kafka renames the cleaned files to `.swap`, deletes the old ones and renames the `.swap`
/// files back, so its recovery must finish an interrupted swap. A rename over the old file
/// never leaves a moment without a `.log`, so recovery only deletes leftovers.
pub(crate) fn swap_in_cleaned(dir: &Path, base_offset: i64) -> io::Result<()> {
    let sync_dir = || File::open(dir).and_then(|d| d.sync_all());
    for suffix in [INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
        remove_if_exists(&segment_file_path(dir, base_offset, suffix))?;
    }
    sync_dir()?;
    for suffix in [LOG_FILE_SUFFIX, INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
        std::fs::rename(
            cleaned_file_path(dir, base_offset, suffix),
            segment_file_path(dir, base_offset, suffix),
        )?;
    }
    sync_dir()
}

fn u64_to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Calls `visit(position, batch)` for each batch from `start` whose declared length is sane
/// and which lies entirely within `file_len`, reading in large chunks. Stops when `visit`
/// returns false or at the first incomplete batch; returns the position where it stopped
/// (the end of the last accepted batch).
fn scan_batches(
    file: &File,
    file_len: u64,
    start: u64,
    mut visit: impl FnMut(u64, &[u8]) -> bool,
) -> io::Result<u64> {
    const CHUNK_BYTES: u64 = 1 << 20;
    let mut buf = Vec::new();
    let mut position = start;
    loop {
        if position >= file_len {
            return Ok(position);
        }
        let want = (file_len - position).min(CHUNK_BYTES) as usize;
        buf.resize(want, 0);
        file.read_exact_at(&mut buf, position)?;
        let mut offset = 0usize;
        loop {
            let rest = &buf[offset..];
            let at = position + offset as u64;
            if rest.len() < LOG_OVERHEAD {
                if at + rest.len() as u64 >= file_len {
                    return Ok(at); // an incomplete length prefix at the very end
                }
                break; // refill from `at`
            }
            let batch_length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
            if batch_length < MIN_BATCH_LENGTH {
                return Ok(at);
            }
            let size = batch_length as u64 + LOG_OVERHEAD as u64;
            if at + size > file_len {
                return Ok(at);
            }
            if size > rest.len() as u64 {
                if offset == 0 {
                    // A batch bigger than a chunk: read it alone.
                    let mut big = vec![0u8; size as usize];
                    file.read_exact_at(&mut big, at)?;
                    if !visit(at, &big) {
                        return Ok(at);
                    }
                    offset = usize::MAX; // marks "advance by `size`" below
                }
                break;
            }
            if !visit(at, &rest[..size as usize]) {
                return Ok(at);
            }
            offset += size as usize;
        }
        if offset == usize::MAX {
            let batch_length = i32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
            position += batch_length as u64 + LOG_OVERHEAD as u64;
        } else {
            position += offset as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{build_batch, split_batches_summary};

    fn append(segment: &mut LogSegment, base_offset: i64, ts: i64, values: &[&[u8]]) {
        let records: Vec<_> = values.iter().map(|v| (None, Some(*v))).collect();
        let batch = build_batch(base_offset, ts, &records);
        let batches = split_batches_summary(&batch).unwrap();
        segment.append(&batch, &batches, 0).unwrap();
    }

    #[test]
    fn append_read_and_translate() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 100, 0, 0).unwrap();
        append(&mut seg, 100, 10, &[b"a", b"b"]);
        append(&mut seg, 102, 20, &[b"c"]);
        append(&mut seg, 103, 15, &[b"d", b"e", b"f"]);
        assert_eq!(seg.next_offset(), 106);
        assert_eq!(seg.max_timestamp(), 20);
        assert_eq!(seg.offset_of_max_timestamp(), 102);
        assert_eq!(
            seg.offset_index().len(),
            2,
            "every batch but the first indexed"
        );
        let (pos, header) = seg.translate_offset(104).unwrap().unwrap();
        assert_eq!(header.base_offset, 103);
        let (bytes, at_end) = seg.read(pos, 1 << 20, i64::MAX, true).unwrap();
        assert!(at_end);
        assert_eq!(bytes.len() as u64, seg.size() - pos);
        assert!(seg.translate_offset(106).unwrap().is_none());
        // max_offset cuts before the batch holding 105.
        let (bytes, at_end) = seg.read(0, 1 << 20, 105, true).unwrap();
        assert!(!at_end);
        assert_eq!(bytes.len() as u64, pos);
    }

    #[test]
    fn find_offset_by_timestamp_returns_exact_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, 0, 0).unwrap();
        append(&mut seg, 0, 100, &[b"a", b"b", b"c"]); // ts 100, 101, 102
        append(&mut seg, 3, 50, &[b"d"]); // ts 50
        append(&mut seg, 4, 200, &[b"e", b"f"]); // ts 200, 201
        assert_eq!(seg.find_offset_by_timestamp(0, 0).unwrap(), Some((0, 100)));
        assert_eq!(
            seg.find_offset_by_timestamp(101, 0).unwrap(),
            Some((1, 101))
        );
        assert_eq!(
            seg.find_offset_by_timestamp(103, 0).unwrap(),
            Some((4, 200))
        );
        assert_eq!(
            seg.find_offset_by_timestamp(201, 0).unwrap(),
            Some((5, 201))
        );
        assert_eq!(seg.find_offset_by_timestamp(202, 0).unwrap(), None);
        assert_eq!(seg.find_offset_by_timestamp(0, 2).unwrap(), Some((2, 102)));
    }

    #[test]
    fn rebuilt_time_index_keeps_the_largest_timestamp_for_the_next_load() {
        let dir = tempfile::tempdir().unwrap();
        let batch_size = build_batch(0, 0, &[(None, Some(&b"x"[..]))]).len() as u32;
        let mut seg = LogSegment::create(dir.path(), 0, batch_size, 0).unwrap();
        for (i, ts) in [100, 200, 300, 400].into_iter().enumerate() {
            append(&mut seg, i as i64, ts, &[b"x"]);
        }
        // Only the third batch got index entries; the largest timestamp is in the fourth.
        assert_eq!(seg.offset_index().len(), 1);
        seg.recover().unwrap();
        assert_eq!(seg.max_timestamp(), 400);
        drop(seg);
        let seg = LogSegment::load(dir.path(), 0, batch_size, Some(4), 0).unwrap();
        assert_eq!(seg.max_timestamp(), 400);
        assert_eq!(seg.offset_of_max_timestamp(), 3);
        assert_eq!(seg.next_offset(), 4);
    }

    #[test]
    fn scan_handles_batches_larger_than_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = LogSegment::create(dir.path(), 0, 4096, 0).unwrap();
        let big = vec![7u8; 1_500_000];
        append(&mut seg, 0, 1, &[b"small"]);
        append(&mut seg, 1, 2, &[&big]);
        append(&mut seg, 2, 3, &[b"small again"]);
        let size = seg.size();
        let outcome = seg.recover().unwrap();
        assert_eq!(outcome.valid_batches, 3);
        assert_eq!(outcome.truncated_bytes, 0);
        assert_eq!(seg.size(), size);
        assert_eq!(seg.next_offset(), 3);
    }
}

//! Sparse per-segment indexes in Kafka's file formats: [`OffsetIndex`] (`.index`, offset →
//! file position) and [`TimeIndex`] (`.timeindex`, timestamp → offset).
//!
//! Kafka memory-maps these files; `unsafe_code` is forbidden here, so the entries live in a
//! `Vec` and new entries are written to the file with positioned writes when the segment
//! flushes, rolls or closes. Lookups are binary searches over the `Vec`.
//!
//! ```text
//! .index      entry = relative offset u32 BE | position u32 BE         (8 bytes)
//! .timeindex  entry = timestamp i64 BE       | relative offset u32 BE (12 bytes)
//! ```
//!
//! Offsets are stored relative to the segment's base offset. The offset index entry for a
//! batch is (batch last offset, batch start position), as Kafka's `LogSegment.append` writes
//! it; the time index entry is (max timestamp so far, offset of that timestamp), appended
//! only when the timestamp grows (Kafka's `TimeIndex.maybeAppend`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Size of one `.index` entry.
pub const OFFSET_INDEX_ENTRY_SIZE: usize = 8;
/// Size of one `.timeindex` entry.
pub const TIME_INDEX_ENTRY_SIZE: usize = 12;

/// An index file whose first `persisted_bytes` hold the first entries and whose remaining
/// entries sit in `pending` until the next [`IndexFile::flush`].
#[derive(Debug)]
struct IndexFile {
    path: PathBuf,
    file: File,
    /// Bytes of the file that hold entries (the file has no preallocated tail).
    persisted_bytes: u64,
    /// Encoded entries not yet written.
    pending: Vec<u8>,
}

impl IndexFile {
    /// Opens (creating if missing) and returns the file with its current contents.
    fn open(path: &Path) -> io::Result<(IndexFile, Vec<u8>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let contents = std::fs::read(path)?;
        let index = IndexFile {
            path: path.to_path_buf(),
            file,
            persisted_bytes: contents.len() as u64,
            pending: Vec::new(),
        };
        Ok((index, contents))
    }

    fn push(&mut self, entry: &[u8]) {
        self.pending.extend_from_slice(entry);
    }

    /// Writes pending entries to the OS (not to disk: see [`IndexFile::sync`]).
    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.file
                .write_all_at(&self.pending, self.persisted_bytes)?;
            self.persisted_bytes += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        self.file.sync_data()
    }

    /// Keeps only the first `len` bytes of entries.
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        if len >= self.persisted_bytes {
            // Only pending entries go.
            let keep = (len - self.persisted_bytes) as usize;
            self.pending.truncate(keep);
        } else {
            self.pending.clear();
            self.file.set_len(len)?;
            self.persisted_bytes = len;
        }
        Ok(())
    }
}

impl Drop for IndexFile {
    fn drop(&mut self) {
        // Best effort, like a BufWriter: an entry lost here is rebuilt by recovery.
        if let Err(e) = self.flush() {
            tracing::warn!(path = %self.path.display(), error = %e, "failed to write index entries on close");
        }
    }
}

/// One `.index` entry with an absolute offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    /// Absolute offset (the last offset of the batch at `position`).
    pub offset: i64,
    /// Byte position of the batch in the `.log` file.
    pub position: u32,
}

/// Sparse offset → position index of one segment (Kafka's `OffsetIndex`).
#[derive(Debug)]
pub struct OffsetIndex {
    base_offset: i64,
    /// (relative offset, position), strictly increasing in both.
    entries: Vec<(u32, u32)>,
    file: IndexFile,
}

impl OffsetIndex {
    /// Opens the index file, creating it if missing, and loads its entries as they are.
    /// Call [`OffsetIndex::sanity_check`] before trusting them.
    pub fn open(path: &Path, base_offset: i64) -> io::Result<OffsetIndex> {
        let (file, contents) = IndexFile::open(path)?;
        let entries = contents
            .chunks_exact(OFFSET_INDEX_ENTRY_SIZE)
            .map(|c| {
                (
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
                    u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        Ok(OffsetIndex {
            base_offset,
            entries,
            file,
        })
    }

    /// Checks the loaded file against Kafka's `OffsetIndex.sanityCheck` rules and more:
    /// whole entries only, offsets and positions strictly increasing, every position inside
    /// the log (`< log_size`), and the last relative offset below `max_relative_offset`.
    /// Returns a description of the first problem.
    pub fn sanity_check(&self, log_size: u64, max_relative_offset: u64) -> Result<(), String> {
        if self.file.persisted_bytes % OFFSET_INDEX_ENTRY_SIZE as u64 != 0 {
            return Err(format!(
                "size {} is not a multiple of {OFFSET_INDEX_ENTRY_SIZE}",
                self.file.persisted_bytes
            ));
        }
        let mut previous: Option<(u32, u32)> = None;
        for &(rel, pos) in &self.entries {
            if u64::from(pos) >= log_size {
                return Err(format!("position {pos} is beyond the log size {log_size}"));
            }
            if u64::from(rel) > max_relative_offset {
                return Err(format!(
                    "relative offset {rel} is beyond the segment's last {max_relative_offset}"
                ));
            }
            if let Some((prev_rel, prev_pos)) = previous {
                if rel <= prev_rel || pos <= prev_pos {
                    return Err(format!(
                        "entry ({rel}, {pos}) does not follow ({prev_rel}, {prev_pos})"
                    ));
                }
            }
            previous = Some((rel, pos));
        }
        Ok(())
    }

    /// Appends an entry for the batch whose last offset is `offset`, starting at `position`.
    ///
    /// # Panics
    /// If the entry does not follow the last one or the offset is not representable: both are
    /// bugs in the segment's bookkeeping.
    pub fn append(&mut self, offset: i64, position: u32) {
        // Documented panic: the segment rolls before relative offsets overflow.
        let rel = u32::try_from(offset - self.base_offset)
            .expect("offset index: relative offset out of range");
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            assert!(
                rel > last_rel && position > last_pos,
                "offset index entries must increase: ({rel}, {position}) after ({last_rel}, {last_pos})"
            );
        }
        self.entries.push((rel, position));
        let mut entry = [0u8; OFFSET_INDEX_ENTRY_SIZE];
        entry[..4].copy_from_slice(&rel.to_be_bytes());
        entry[4..].copy_from_slice(&position.to_be_bytes());
        self.file.push(&entry);
    }

    /// The entry with the largest offset <= `target`, or (base offset, 0) if there is none.
    pub fn lookup(&self, target: i64) -> OffsetPosition {
        let rel = target - self.base_offset;
        let count = self.entries.partition_point(|&(r, _)| i64::from(r) <= rel);
        match count.checked_sub(1).map(|i| self.entries[i]) {
            Some((r, position)) => OffsetPosition {
                offset: self.base_offset + i64::from(r),
                position,
            },
            None => OffsetPosition {
                offset: self.base_offset,
                position: 0,
            },
        }
    }

    /// The last entry, if any.
    pub fn last_entry(&self) -> Option<OffsetPosition> {
        self.entries.last().map(|&(r, position)| OffsetPosition {
            offset: self.base_offset + i64::from(r),
            position,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes every entry whose position is >= `position`.
    pub fn truncate_to_position(&mut self, position: u64) -> io::Result<()> {
        let keep = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) < position);
        self.truncate_entries(keep)
    }

    /// Removes all entries.
    pub fn clear(&mut self) -> io::Result<()> {
        self.truncate_entries(0)
    }

    fn truncate_entries(&mut self, keep: usize) -> io::Result<()> {
        self.entries.truncate(keep);
        self.file.truncate((keep * OFFSET_INDEX_ENTRY_SIZE) as u64)
    }

    /// Writes pending entries to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Writes pending entries and fsyncs the file.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync()
    }
}

/// One `.timeindex` entry with an absolute offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The largest timestamp seen up to `offset`.
    pub timestamp: i64,
    /// The offset of the record holding it.
    pub offset: i64,
}

/// Sparse timestamp → offset index of one segment (Kafka's `TimeIndex`).
#[derive(Debug)]
pub struct TimeIndex {
    base_offset: i64,
    /// (timestamp, relative offset), strictly increasing timestamps.
    entries: Vec<(i64, u32)>,
    file: IndexFile,
}

impl TimeIndex {
    /// Opens the index file, creating it if missing, and loads its entries as they are.
    /// Call [`TimeIndex::sanity_check`] before trusting them.
    pub fn open(path: &Path, base_offset: i64) -> io::Result<TimeIndex> {
        let (file, contents) = IndexFile::open(path)?;
        let entries = contents
            .chunks_exact(TIME_INDEX_ENTRY_SIZE)
            .map(|c| {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&c[..8]);
                (
                    i64::from_be_bytes(ts),
                    u32::from_be_bytes([c[8], c[9], c[10], c[11]]),
                )
            })
            .collect();
        Ok(TimeIndex {
            base_offset,
            entries,
            file,
        })
    }

    /// Whole entries only, timestamps strictly increasing, offsets non-decreasing and not
    /// beyond `max_relative_offset`.
    pub fn sanity_check(&self, max_relative_offset: u64) -> Result<(), String> {
        if self.file.persisted_bytes % TIME_INDEX_ENTRY_SIZE as u64 != 0 {
            return Err(format!(
                "size {} is not a multiple of {TIME_INDEX_ENTRY_SIZE}",
                self.file.persisted_bytes
            ));
        }
        let mut previous: Option<(i64, u32)> = None;
        for &(ts, rel) in &self.entries {
            if u64::from(rel) > max_relative_offset {
                return Err(format!(
                    "relative offset {rel} is beyond the segment's last {max_relative_offset}"
                ));
            }
            if let Some((prev_ts, prev_rel)) = previous {
                if ts <= prev_ts || rel < prev_rel {
                    return Err(format!(
                        "entry ({ts}, {rel}) does not follow ({prev_ts}, {prev_rel})"
                    ));
                }
            }
            previous = Some((ts, rel));
        }
        Ok(())
    }

    /// Appends (timestamp, offset) if the timestamp is larger than the last entry's; returns
    /// whether it did.
    ///
    /// # Panics
    /// If the offset goes backwards or is not representable: bugs in the segment's
    /// bookkeeping.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        // An empty index behaves as if its last entry were (-1, base offset), as in Kafka:
        // batches without timestamps (-1) are never indexed.
        let last_ts = self.entries.last().map_or(-1, |&(ts, _)| ts);
        if timestamp <= last_ts {
            return false;
        }
        // Documented panic: the segment rolls before relative offsets overflow.
        let rel = u32::try_from(offset - self.base_offset)
            .expect("time index: relative offset out of range");
        if let Some(&(_, last_rel)) = self.entries.last() {
            // An equal offset is fine (a later, larger timestamp in the same batch).
            assert!(
                rel >= last_rel,
                "time index offsets must not decrease: {rel} after {last_rel}"
            );
        }
        self.entries.push((timestamp, rel));
        let mut entry = [0u8; TIME_INDEX_ENTRY_SIZE];
        entry[..8].copy_from_slice(&timestamp.to_be_bytes());
        entry[8..].copy_from_slice(&rel.to_be_bytes());
        self.file.push(&entry);
        true
    }

    /// The entry with the largest timestamp <= `target`, or (-1, base offset) if none.
    pub fn lookup(&self, target: i64) -> TimestampOffset {
        let count = self.entries.partition_point(|&(ts, _)| ts <= target);
        match count.checked_sub(1).map(|i| self.entries[i]) {
            Some((timestamp, rel)) => TimestampOffset {
                timestamp,
                offset: self.base_offset + i64::from(rel),
            },
            None => TimestampOffset {
                timestamp: -1,
                offset: self.base_offset,
            },
        }
    }

    /// The last entry, if any: after a roll or a rebuild it holds the segment's largest
    /// timestamp.
    pub fn last_entry(&self) -> Option<TimestampOffset> {
        self.entries
            .last()
            .map(|&(timestamp, rel)| TimestampOffset {
                timestamp,
                offset: self.base_offset + i64::from(rel),
            })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the index has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Removes all entries.
    pub fn clear(&mut self) -> io::Result<()> {
        self.entries.clear();
        self.file.truncate(0)
    }

    /// Writes pending entries to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// Writes pending entries and fsyncs the file.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_offset_lookup(entries: &[(i64, u32)], base: i64, target: i64) -> OffsetPosition {
        entries
            .iter()
            .rev()
            .find(|(o, _)| *o <= target)
            .map(|&(offset, position)| OffsetPosition { offset, position })
            .unwrap_or(OffsetPosition {
                offset: base,
                position: 0,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn offset_lookup_matches_linear_scan(
            gaps in proptest::collection::vec((1i64..50, 1u32..5000), 0..200),
            targets in proptest::collection::vec(0i64..20_000, 1..50),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let base = 1_000;
            let mut index = OffsetIndex::open(&dir.path().join("i.index"), base).unwrap();
            let mut model = Vec::new();
            let (mut offset, mut position) = (base, 0u32);
            for (d_off, d_pos) in gaps {
                offset += d_off;
                position += d_pos;
                index.append(offset, position);
                model.push((offset, position));
            }
            for t in targets {
                let t = base - 10 + t;
                prop_assert_eq!(index.lookup(t), naive_offset_lookup(&model, base, t));
            }
            // The same after a round trip through the file.
            index.flush().unwrap();
            drop(index);
            let index = OffsetIndex::open(&dir.path().join("i.index"), base).unwrap();
            prop_assert_eq!(index.len(), model.len());
            prop_assert!(index.sanity_check(u64::MAX, u64::MAX).is_ok());
        }

        #[test]
        fn time_lookup_matches_linear_scan(
            stamps in proptest::collection::vec((-5i64..100, 0i64..3), 0..200),
            targets in proptest::collection::vec(-10i64..3000, 1..50),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut index = TimeIndex::open(&dir.path().join("t.timeindex"), 0).unwrap();
            let mut model: Vec<(i64, i64)> = Vec::new();
            let (mut ts, mut offset) = (0i64, 0i64);
            for (d_ts, d_off) in stamps {
                ts += d_ts;
                offset += d_off;
                let appended = index.maybe_append(ts, offset);
                let expect = ts > model.last().map_or(-1, |&(last, _)| last);
                prop_assert_eq!(appended, expect);
                if expect { model.push((ts, offset)); }
            }
            for t in targets {
                let naive = model.iter().rev().find(|(s, _)| *s <= t)
                    .map(|&(timestamp, offset)| TimestampOffset { timestamp, offset })
                    .unwrap_or(TimestampOffset { timestamp: -1, offset: 0 });
                prop_assert_eq!(index.lookup(t), naive);
            }
        }
    }

    #[test]
    fn pending_entries_survive_truncation_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000100.index");
        let mut index = OffsetIndex::open(&path, 100).unwrap();
        index.append(105, 4096);
        index.append(110, 8192);
        index.flush().unwrap();
        index.append(120, 12288);
        index.truncate_to_position(8192).unwrap();
        assert_eq!(index.len(), 1);
        index.append(130, 9000);
        index.sync().unwrap();
        drop(index);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        let index = OffsetIndex::open(&path, 100).unwrap();
        assert_eq!(
            index.last_entry(),
            Some(OffsetPosition {
                offset: 130,
                position: 9000
            })
        );
        assert_eq!(index.lookup(129).offset, 105);
        assert_eq!(index.lookup(99).position, 0);
    }

    #[test]
    fn sanity_check_rejects_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        std::fs::write(&path, [0u8; 12]).unwrap();
        let index = OffsetIndex::open(&path, 0).unwrap();
        assert!(index.sanity_check(100, 100).is_err(), "partial entry");

        let mut bytes = Vec::new();
        for (rel, pos) in [(5u32, 100u32), (3, 200)] {
            bytes.extend_from_slice(&rel.to_be_bytes());
            bytes.extend_from_slice(&pos.to_be_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let index = OffsetIndex::open(&path, 0).unwrap();
        assert!(
            index.sanity_check(1000, 1000).is_err(),
            "decreasing offsets"
        );

        let mut bytes = Vec::new();
        for (rel, pos) in [(5u32, 100u32), (8, 2000)] {
            bytes.extend_from_slice(&rel.to_be_bytes());
            bytes.extend_from_slice(&pos.to_be_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        let index = OffsetIndex::open(&path, 0).unwrap();
        assert!(index.sanity_check(1000, 1000).is_err(), "position past log");
        assert!(index.sanity_check(3000, 7).is_err(), "offset past segment");
        assert!(index.sanity_check(3000, 8).is_ok());

        let tpath = dir.path().join("x.timeindex");
        let mut bytes = Vec::new();
        for (ts, rel) in [(50i64, 1u32), (40, 2)] {
            bytes.extend_from_slice(&ts.to_be_bytes());
            bytes.extend_from_slice(&rel.to_be_bytes());
        }
        std::fs::write(&tpath, &bytes).unwrap();
        let tindex = TimeIndex::open(&tpath, 0).unwrap();
        assert!(tindex.sanity_check(10).is_err(), "decreasing timestamps");
    }
}

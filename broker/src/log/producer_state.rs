//! Idempotent-producer state of one partition: Kafka's `ProducerStateManager`,
//! `ProducerStateEntry` and the sequence checks of `ProducerAppendInfo` (KIP-98, with the
//! KIP-360 relaxation for producers whose state is gone).
//!
//! ```text
//! produce ──▶ check(header)  ── Append ──▶ log append ──▶ update(header, base_offset, now)
//!                  │          └ Duplicate{offsets} ──▶ answer success with the original offsets
//!                  └ Err(ProducerError) ──▶ error code in the produce response
//! recovery ──▶ read_latest_snapshot ──▶ load_from_batches(batches after the snapshot)
//! retention ──▶ remove_expired / delete_snapshots_older_than;  truncation ──▶ truncate_to
//! ```
//!
//! The manager is a pure in-memory core: it owns no file and no clock. Only the snapshot
//! functions touch the disk, and the caller decides when to call them. For every producer id
//! it remembers the epoch and the metadata of the last [`NUM_BATCHES_TO_RETAIN`] batches, so a
//! retried batch (a client keeps at most five requests in flight) is answered with the offsets
//! it got the first time instead of being appended twice.
//!
//! Control batches (transaction markers) and transactional bookkeeping (the first offset of an
//! open transaction) are not handled yet: control batches are ignored, and transactional data
//! batches are checked like any idempotent batch.
//!
//! # Snapshot format (version 1)
//!
//! A snapshot of the state after every batch below offset `N` is stored in
//! `<N, 20 digits>.snapshot` (Kafka's name). Unlike Kafka, which keeps only the last batch
//! of each producer in its snapshots, every retained batch is stored, so duplicate detection
//! survives a restart. All integers are big-endian:
//!
//! ```text
//! version         i16   1
//! crc             u32   CRC-32C of every byte after this field
//! producer_count  i32
//! producer_count × {
//!   producer_id        i64
//!   producer_epoch     i16
//!   last_timestamp_ms  i64
//!   batch_count        i8    0..=5, oldest batch first
//!   batch_count × { first_seq i32, last_seq i32, first_offset i64, last_offset i64, timestamp i64 }
//! }
//! ```
//!
//! Files are written atomically: `<name>.tmp`, fsync, rename, fsync of the directory (`Log::open`
//! removes a leftover `.tmp`). A snapshot whose CRC, version or layout is wrong is skipped with a
//! warning, and the next older one is used.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::log::batch::BatchHeader;
use crate::log::error::{Error, Result};

/// Batches remembered per producer for duplicate detection (Kafka's
/// `ProducerStateEntry.NUM_BATCHES_TO_RETAIN`, the client's `max.in.flight.requests` limit).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// Default of Kafka's `producer.id.expiration.ms`: one day.
pub const DEFAULT_PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;
/// Suffix of snapshot files.
pub const SNAPSHOT_FILE_SUFFIX: &str = ".snapshot";
/// Kafka's `OUT_OF_ORDER_SEQUENCE_NUMBER`.
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// Kafka's `INVALID_PRODUCER_EPOCH`.
pub const INVALID_PRODUCER_EPOCH: i16 = 47;

const SNAPSHOT_VERSION: i16 = 1;
/// `version` + `crc`.
const SNAPSHOT_HEADER_SIZE: usize = 6;
const ENTRY_FIXED_SIZE: usize = 8 + 2 + 8 + 1;
const BATCH_SIZE: usize = 4 + 4 + 8 + 8 + 8;

/// What to do with a batch that passed [`ProducerStateManager::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Append it, then call [`ProducerStateManager::update`].
    Append,
    /// A retry of a batch already in the log: append nothing and answer success with these
    /// offsets (Kafka's `ProducerStateEntry.findDuplicateBatch`).
    Duplicate {
        /// Offset the original batch was given.
        base_offset: i64,
        /// Offset of its last record.
        last_offset: i64,
        /// Its max timestamp, for the response's `log_append_time` on `LogAppendTime` topics.
        timestamp: i64,
    },
}

/// Why a produce batch was refused. These are Kafka error codes for the produce response
/// (STYLE §3, kind 1), not operational faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    /// The batch carries an epoch older than the one the partition has seen: a newer
    /// producer instance with the same id (after `InitProducerId`) has fenced this one.
    #[error("producer {producer_id} is fenced: batch epoch {batch_epoch} < current epoch {current_epoch}")]
    ProducerFenced {
        /// The producer id.
        producer_id: i64,
        /// Epoch in the batch.
        batch_epoch: i16,
        /// Epoch the partition knows.
        current_epoch: i16,
    },
    /// The batch's first sequence is not the one expected next.
    #[error(
        "out of order sequence for producer {producer_id} epoch {producer_epoch}: \
         batch starts at {base_sequence}, expected {expected_sequence}"
    )]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// Epoch in the batch.
        producer_epoch: i16,
        /// First sequence of the batch.
        base_sequence: i32,
        /// Sequence the partition expected: last sequence + 1, or 0 for a new epoch.
        expected_sequence: i32,
    },
}

impl ProducerError {
    /// The code for the produce response. An old epoch is `INVALID_PRODUCER_EPOCH` (47), as
    /// Kafka answers produce requests since KIP-588; `PRODUCER_FENCED` (90) is reserved for the
    /// transaction coordinator's APIs.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            ProducerError::ProducerFenced { .. } => INVALID_PRODUCER_EPOCH,
            ProducerError::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
        }
    }
}

/// Metadata of one appended batch (Kafka's `BatchMetadata`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record (wraps from `i32::MAX` to 0).
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Max timestamp of the batch.
    pub timestamp: i64,
}

/// What the partition knows about one producer id (Kafka's `ProducerStateEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// Latest epoch seen; all retained batches belong to it (an epoch change clears them).
    pub producer_epoch: i16,
    /// The last batches, oldest first, at most [`NUM_BATCHES_TO_RETAIN`].
    pub batches: VecDeque<BatchMetadata>,
    /// Broker time of the last append, the clock `producer.id.expiration.ms` runs on.
    pub last_timestamp_ms: i64,
}

impl ProducerEntry {
    /// Last sequence written in the current epoch, `None` if no batch is retained.
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    fn find_duplicate(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<&BatchMetadata> {
        if epoch != self.producer_epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
    }
}

/// Producer state of one partition. See the module doc.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    /// Ordered so snapshots are deterministic and equal states compare equal.
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// An empty state.
    pub fn new() -> ProducerStateManager {
        ProducerStateManager::default()
    }

    /// The entry of `producer_id`, if the partition knows it.
    pub fn producer(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// All entries, by producer id.
    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&id, e)| (id, e))
    }

    /// Number of known producers.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True if no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Decides, without changing anything, whether a client's batch may be appended (Kafka's
    /// `UnifiedLog.analyzeAndValidateProducerState` for `AppendOrigin.CLIENT`: the duplicate
    /// lookup first, then `ProducerAppendInfo.checkProducerEpoch` and `checkSequence`).
    ///
    /// A producer id the partition does not know is accepted at any sequence. That is Kafka's
    /// behaviour since 2.5 (KIP-360): the state of a producer can legitimately vanish when its
    /// batches are removed by retention or `DeleteRecords`, or when it expires, and the broker
    /// can't tell that from a lost write. Kafka before 2.5 answered `UNKNOWN_PRODUCER_ID` (59)
    /// to a non-zero sequence; clients since KIP-360 no longer expect it from produce.
    ///
    /// Checking several batches of one producer in one request needs the state after each:
    /// `update` a scratch clone between checks.
    pub fn check(&self, header: &BatchHeader) -> std::result::Result<Check, ProducerError> {
        if header.producer_id < 0 || header.is_control() {
            return Ok(Check::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(Check::Append);
        };
        let epoch = header.producer_epoch;
        let first_seq = header.base_sequence;
        let last_seq = increment_sequence(first_seq, header.last_offset_delta);
        if let Some(dup) = entry.find_duplicate(epoch, first_seq, last_seq) {
            return Ok(Check::Duplicate {
                base_offset: dup.first_offset,
                last_offset: dup.last_offset,
                timestamp: dup.timestamp,
            });
        }
        if epoch < entry.producer_epoch {
            return Err(ProducerError::ProducerFenced {
                producer_id: header.producer_id,
                batch_epoch: epoch,
                current_epoch: entry.producer_epoch,
            });
        }
        // A new epoch starts over at 0; within an epoch, sequences follow on, and an entry
        // with no retained batch expects 0 too (Kafka's `RecordBatch.NO_SEQUENCE` + 1).
        let expected_sequence = match entry.last_seq() {
            Some(last) if epoch == entry.producer_epoch => increment_sequence(last, 1),
            _ => 0,
        };
        if first_seq != expected_sequence {
            return Err(ProducerError::OutOfOrderSequence {
                producer_id: header.producer_id,
                producer_epoch: epoch,
                base_sequence: first_seq,
                expected_sequence,
            });
        }
        Ok(Check::Append)
    }

    /// Records a batch that is now in the log at `base_offset`. Called after a successful
    /// leader append, for replicated batches, and by [`load_from_batches`]; it trusts the log,
    /// so it does not check anything: a different epoch replaces the entry's epoch and clears
    /// its batches (Kafka's `ProducerStateEntry.maybeUpdateProducerEpoch`).
    ///
    /// [`load_from_batches`]: ProducerStateManager::load_from_batches
    pub fn update(&mut self, header: &BatchHeader, base_offset: i64, now_ms: i64) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                producer_epoch: header.producer_epoch,
                batches: VecDeque::with_capacity(NUM_BATCHES_TO_RETAIN),
                last_timestamp_ms: now_ms,
            });
        if entry.producer_epoch != header.producer_epoch {
            entry.producer_epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == NUM_BATCHES_TO_RETAIN {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: increment_sequence(header.base_sequence, header.last_offset_delta),
            first_offset: base_offset,
            last_offset: base_offset + i64::from(header.last_offset_delta),
            timestamp: header.max_timestamp,
        });
        entry.last_timestamp_ms = now_ms;
    }

    /// Replays batches read from the log, in log order, on top of the current state (empty, or
    /// loaded from the latest snapshot below the first of them). A replayed batch has no
    /// append time, so its max timestamp stands in for it, which is what Kafka uses for every
    /// batch.
    pub fn load_from_batches(&mut self, batches: impl IntoIterator<Item = (BatchHeader, i64)>) {
        for (header, base_offset) in batches {
            self.update(&header, base_offset, header.max_timestamp);
        }
    }

    /// Forgets producers that have not appended for `producer_id_expiration_ms`
    /// (`producer.id.expiration.ms`; Kafka's `removeExpiredProducers`). Returns their ids.
    pub fn remove_expired(&mut self, now_ms: i64, producer_id_expiration_ms: i64) -> Vec<i64> {
        let mut expired = Vec::new();
        self.producers.retain(|&id, e| {
            let keep = now_ms.saturating_sub(e.last_timestamp_ms) < producer_id_expiration_ms;
            if !keep {
                expired.push(id);
            }
            keep
        });
        expired
    }

    /// Forgets every batch whose last offset is at or after `offset`, as the log drops whole
    /// batches when truncated there, and every producer left without batches.
    ///
    /// This is an approximation: batches evicted from the window, or cleared by an epoch
    /// change, don't come back. The exact state after truncating to `offset` is the latest
    /// snapshot at or below it plus a replay of the log from there
    /// ([`delete_snapshots_after`], [`read_latest_snapshot`], [`load_from_batches`]),
    /// which is what Kafka's `truncateAndReload` does.
    ///
    /// [`load_from_batches`]: ProducerStateManager::load_from_batches
    pub fn truncate_to(&mut self, offset: i64) {
        self.producers.retain(|_, e| {
            e.batches.retain(|b| b.last_offset < offset);
            !e.batches.is_empty()
        });
    }

    /// Writes the state as `<offset>.snapshot` in `dir`, atomically (see the module doc).
    /// `offset` is the log end offset the state corresponds to.
    pub fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<()> {
        let path = snapshot_path(dir, offset);
        let tmp = dir.join(format!("{offset:020}{SNAPSHOT_FILE_SUFFIX}.tmp"));
        let bytes = self.encode_snapshot();
        let mut file = fs::File::create(&tmp).map_err(Error::io("creating", &tmp))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(Error::io("writing", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(Error::io("renaming", &tmp))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("syncing", dir))
    }

    fn encode_snapshot(&self) -> Vec<u8> {
        let body_len = 4 + self
            .producers
            .values()
            .map(|e| ENTRY_FIXED_SIZE + e.batches.len() * BATCH_SIZE)
            .sum::<usize>();
        let mut body = Vec::with_capacity(body_len);
        // A partition can't hold 2^31 producers: each needs a batch of its own in the log.
        let count = i32::try_from(self.producers.len()).expect("fewer than 2^31 producers");
        body.extend_from_slice(&count.to_be_bytes());
        for (&id, e) in &self.producers {
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&e.producer_epoch.to_be_bytes());
            body.extend_from_slice(&e.last_timestamp_ms.to_be_bytes());
            // `update` keeps at most NUM_BATCHES_TO_RETAIN (5) batches.
            body.push(u8::try_from(e.batches.len()).expect("at most 5 batches"));
            for b in &e.batches {
                body.extend_from_slice(&b.first_seq.to_be_bytes());
                body.extend_from_slice(&b.last_seq.to_be_bytes());
                body.extend_from_slice(&b.first_offset.to_be_bytes());
                body.extend_from_slice(&b.last_offset.to_be_bytes());
                body.extend_from_slice(&b.timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER_SIZE + body.len());
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode_snapshot(bytes: &[u8]) -> std::result::Result<ProducerStateManager, CorruptSnapshot> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let version = r.i16()?;
        if version != SNAPSHOT_VERSION {
            return Err(CorruptSnapshot::UnknownVersion(version));
        }
        let stored = r.u32()?;
        let computed = crc32c::crc32c(&bytes[SNAPSHOT_HEADER_SIZE..]);
        if stored != computed {
            return Err(CorruptSnapshot::CrcMismatch { stored, computed });
        }
        let count = r.i32()?;
        if count < 0 {
            return Err(CorruptSnapshot::Invalid("negative producer count"));
        }
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let producer_id = r.i64()?;
            let producer_epoch = r.i16()?;
            let last_timestamp_ms = r.i64()?;
            let batch_count = usize::from(r.u8()?);
            if batch_count > NUM_BATCHES_TO_RETAIN {
                return Err(CorruptSnapshot::Invalid(
                    "more than 5 batches for a producer",
                ));
            }
            let mut batches = VecDeque::with_capacity(batch_count);
            for _ in 0..batch_count {
                batches.push_back(BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                    timestamp: r.i64()?,
                });
            }
            if producer_id < 0 {
                return Err(CorruptSnapshot::Invalid("negative producer id"));
            }
            let entry = ProducerEntry {
                producer_epoch,
                batches,
                last_timestamp_ms,
            };
            if producers.insert(producer_id, entry).is_some() {
                return Err(CorruptSnapshot::Invalid("producer id listed twice"));
            }
        }
        if r.pos != bytes.len() {
            return Err(CorruptSnapshot::Invalid("trailing bytes"));
        }
        Ok(ProducerStateManager { producers })
    }
}

/// Why a snapshot file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CorruptSnapshot {
    #[error("file ends early")]
    Truncated,
    #[error("unknown version {0}")]
    UnknownVersion(i16),
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("{0}")]
    Invalid(&'static str),
}

/// Big-endian cursor over a snapshot.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> std::result::Result<[u8; N], CorruptSnapshot> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or(CorruptSnapshot::Truncated)?;
        self.pos += N;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }
    fn u8(&mut self) -> std::result::Result<u8, CorruptSnapshot> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> std::result::Result<i16, CorruptSnapshot> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> std::result::Result<i32, CorruptSnapshot> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> std::result::Result<u32, CorruptSnapshot> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> std::result::Result<i64, CorruptSnapshot> {
        self.take().map(i64::from_be_bytes)
    }
}

/// `sequence + delta` in the producer's sequence space, which wraps from `i32::MAX` to 0
/// (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn increment_sequence(sequence: i32, delta: i32) -> i32 {
    let sum = (i64::from(sequence) + i64::from(delta)).rem_euclid(1 << 31);
    // rem_euclid by 2^31 leaves a value in 0..=i32::MAX.
    i32::try_from(sum).expect("reduced modulo 2^31")
}

/// Path of the snapshot for `offset`: `<dir>/<offset, 20 digits>.snapshot`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_FILE_SUFFIX}"))
}

/// Offsets of the snapshots in `dir`, ascending. Other files, `.tmp` included, are ignored.
pub fn list_snapshot_offsets(dir: &Path) -> Result<Vec<i64>> {
    let mut offsets = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offsets),
        Err(e) => return Err(Error::io("listing", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(Error::io("listing", dir))?;
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SNAPSHOT_FILE_SUFFIX))
        else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(offset) = stem.parse() {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

/// Loads the newest usable snapshot in `dir`: `(offset, state)`, `None` if there is none.
/// A snapshot with a bad CRC, version or layout is skipped with a warning (Kafka's
/// `CorruptSnapshotException` path) and left on disk for inspection; the next older one is
/// tried. I/O errors are returned.
pub fn read_latest_snapshot(dir: &Path) -> Result<Option<(i64, ProducerStateManager)>> {
    for offset in list_snapshot_offsets(dir)?.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        let bytes = fs::read(&path).map_err(Error::io("reading", &path))?;
        match ProducerStateManager::decode_snapshot(&bytes) {
            Ok(state) => return Ok(Some((offset, state))),
            Err(reason) => tracing::warn!(
                file = %path.display(),
                %reason,
                "skipping corrupt producer state snapshot"
            ),
        }
    }
    Ok(None)
}

/// Deletes the snapshots of offsets greater than `offset`, for a log truncated to `offset`.
/// Returns the deleted offsets.
pub fn delete_snapshots_after(dir: &Path, offset: i64) -> Result<Vec<i64>> {
    delete_snapshots_where(dir, |o| o > offset)
}

/// Deletes the snapshots of offsets less than `offset` (Kafka's `deleteSnapshotsBefore`), for
/// retention once a newer snapshot exists. Returns the deleted offsets.
pub fn delete_snapshots_older_than(dir: &Path, offset: i64) -> Result<Vec<i64>> {
    delete_snapshots_where(dir, |o| o < offset)
}

fn delete_snapshots_where(dir: &Path, doomed: impl Fn(i64) -> bool) -> Result<Vec<i64>> {
    let mut deleted = Vec::new();
    for offset in list_snapshot_offsets(dir)? {
        if doomed(offset) {
            let path = snapshot_path(dir, offset);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("removing", &path)(e))
                }
                _ => deleted.push(offset),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
#[path = "producer_state_test.rs"]
mod tests;

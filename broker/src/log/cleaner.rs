//! Log compaction (`cleanup.policy=compact`): keep only the newest record per key in the
//! inactive segments (Kafka's `LogCleaner` / `Cleaner`, one pass, no background thread).
//!
//! ```text
//! Log::compact ──▶ build_offset_map(inactive segments)      key → latest offset
//!              └─▶ for each inactive segment:
//!                    clean_segment ──▶ <base>.log.cleaned (+ .index/.timeindex.cleaned), fsync
//!                                  └─▶ swap_in_cleaned (renames) ──▶ LogSegment::load
//! ```
//!
//! What a pass keeps, batch by batch:
//!
//! - **Compressed batches** are kept whole and byte for byte: the log does not decompress,
//!   so their keys are unknown. They also stay out of the offset map, so a record they
//!   supersede survives too (keeping too much is safe; dropping a latest value is not).
//! - **Idempotent, transactional and control batches** (producer id >= 0, or the
//!   transactional or control bit) are kept whole, so the producer state and transaction
//!   markers a reload rebuilds from the log stay as they were. Their uncompressed data
//!   records do enter the offset map (control records do not), so they supersede older
//!   records elsewhere.
//! - **Other (uncompressed, non-idempotent) batches** keep each record whose offset is the
//!   latest for its key. Keyless records are dropped (Kafka refuses them on compacted
//!   topics). Tombstones (null value) are dropped once the segment's `.log` was last
//!   modified more than `delete.retention.ms` ago. A batch that keeps every record is
//!   copied unchanged; one that keeps none disappears; one that keeps some is rebuilt with
//!   the ORIGINAL offsets, timestamps and headers, as one batch per run of consecutive
//!   kept offsets (base offset = the run's first offset, offset deltas 0..n-1).
//!
//! The last point departs from Kafka, which writes one batch per original batch with gaps
//! in its offset deltas. Our batch validation (on append and in segment recovery) requires
//! deltas `0..n-1`; splitting keeps every stored batch valid under it, at the cost of a
//! 61-byte header per run. Relaxing recovery's check would let us write Kafka's shape.
//!
//! Offsets never change, so a fetch at an offset that was compacted away is answered with
//! the next surviving batch, exactly as a fetch into a gap between batches.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use crate::log::batch::{
    decode_records, encode_batch, put_bytes, put_varlong, split_batches_summary, BatchHeader,
    Compression, Record, MAGIC_V2,
};
use crate::log::error::{Error, Result};
use crate::log::partition_log::LogConfig;
use crate::log::segment::{
    cleaned_file_path, swap_in_cleaned, LogSegment, INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX,
    TIME_INDEX_FILE_SUFFIX,
};

/// Bytes of rebuilt batches buffered before they are appended to the cleaned segment.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// What one compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Inactive segments read.
    pub segments_read: usize,
    /// Segments rewritten (a segment where nothing is removed is left alone).
    pub segments_cleaned: usize,
    /// Bytes of the segments read.
    pub bytes_read: u64,
    /// Bytes of the rewritten segments after cleaning.
    pub bytes_written: u64,
    /// Distinct keys in the offset map.
    pub keys: usize,
    /// Records removed because a later record has the same key.
    pub superseded_records_removed: u64,
    /// Tombstones removed because `delete.retention.ms` had passed.
    pub tombstones_removed: u64,
    /// Records without a key removed.
    pub keyless_records_removed: u64,
    /// Compressed, idempotent, transactional or control batches kept whole.
    pub batches_kept_whole: u64,
}

impl CleanStats {
    /// All records removed.
    pub fn records_removed(&self) -> u64 {
        self.superseded_records_removed + self.tombstones_removed + self.keyless_records_removed
    }
}

/// Key → offset of its latest record (Kafka's `OffsetMap`). Kafka's `SkimpyOffsetMap`
/// stores 16-byte hashes in a fixed buffer (`log.cleaner.dedupe.buffer.size`) and cleans in
/// several passes when it fills up; this one stores whole keys and grows with the number of
/// distinct keys.
#[derive(Debug, Default)]
pub struct OffsetMap {
    latest: HashMap<Vec<u8>, i64>,
}

impl OffsetMap {
    /// Records `offset` for `key`; offsets must be put in increasing order.
    pub fn put(&mut self, key: &[u8], offset: i64) {
        if let Some(latest) = self.latest.get_mut(key) {
            assert!(*latest < offset, "offsets put out of order for a key");
            *latest = offset;
        } else {
            self.latest.insert(key.to_vec(), offset);
        }
    }

    /// Offset of the latest record with `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// True if no key was put.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

/// Cleans `segments[..count]`, the inactive segments below the cleaning bound, replacing
/// each one that loses records with its cleaned version. `segments[count]` must exist (it
/// bounds the last cleaned segment's offsets). Called by [`crate::log::Log::compact`].
pub(crate) fn clean(
    dir: &Path,
    segments: &mut [LogSegment],
    count: usize,
    config: &LogConfig,
    now_ms: i64,
) -> Result<CleanStats> {
    assert!(
        count < segments.len(),
        "the active segment is never cleaned"
    );
    let mut stats = CleanStats::default();
    if count == 0 {
        return Ok(stats);
    }
    let map = build_offset_map(&segments[..count])?;
    stats.keys = map.len();
    for i in 0..count {
        let next_base = segments[i + 1].base_offset();
        if let Some(cleaned) = clean_segment(
            dir,
            &segments[i],
            next_base,
            &map,
            config,
            now_ms,
            &mut stats,
        )? {
            tracing::info!(
                segment = %cleaned.log_path().display(),
                before = segments[i].size(),
                after = cleaned.size(),
                "cleaned segment"
            );
            segments[i] = cleaned;
        }
    }
    Ok(stats)
}

/// True if the cleaner copies the batch unchanged whatever its records.
fn kept_whole(header: &BatchHeader) -> bool {
    header.compression() != Compression::None
        || header.producer_id >= 0
        || header.is_transactional()
        || header.is_control()
}

/// Builds the key → latest offset map over the uncompressed data batches of `segments`.
pub fn build_offset_map(segments: &[LogSegment]) -> Result<OffsetMap> {
    let mut map = OffsetMap::default();
    for segment in segments {
        let mut failure = None;
        segment
            .for_each_batch(|_, bytes| {
                let Ok(header) = BatchHeader::parse(bytes) else {
                    return true; // scan_batches hands out whole batches only
                };
                if header.compression() != Compression::None || header.is_control() {
                    return true;
                }
                match decode_records(bytes) {
                    Ok(records) => {
                        for record in &records {
                            if let Some(key) = &record.key {
                                map.put(key, record.offset);
                            }
                        }
                        true
                    }
                    Err(e) => {
                        failure = Some(io::Error::new(io::ErrorKind::InvalidData, e));
                        false
                    }
                }
            })
            .map_err(Error::io("reading", segment.log_path()))?;
        if let Some(e) = failure {
            return Err(Error::io(
                "building the offset map from",
                segment.log_path(),
            )(e));
        }
    }
    Ok(map)
}

/// What the cleaner does with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    Superseded,
    Tombstone,
    Keyless,
}

fn judge(record: &Record, map: &OffsetMap, drop_tombstones: bool) -> Verdict {
    let Some(key) = &record.key else {
        return Verdict::Keyless;
    };
    // A key missing from the map cannot happen (the map covers these segments); keep it.
    if map.get(key).is_some_and(|latest| latest > record.offset) {
        return Verdict::Superseded;
    }
    if record.value.is_none() && drop_tombstones {
        return Verdict::Tombstone;
    }
    Verdict::Keep
}

/// Writes the cleaned copy of `segment` to its `.cleaned` files and swaps it in; returns the
/// reloaded segment, or `None` (and no file changed) if nothing would be removed.
fn clean_segment(
    dir: &Path,
    segment: &LogSegment,
    next_base: i64,
    map: &OffsetMap,
    config: &LogConfig,
    now_ms: i64,
    stats: &mut CleanStats,
) -> Result<Option<LogSegment>> {
    let base = segment.base_offset();
    let cleaned_path = cleaned_file_path(dir, base, LOG_FILE_SUFFIX);
    let last_modified_ms = segment.last_modified_ms();
    let drop_tombstones = last_modified_ms >= 0
        && now_ms.saturating_sub(last_modified_ms) > config.delete_retention_ms;
    stats.segments_read += 1;
    stats.bytes_read += segment.size();

    let mut cleaned = LogSegment::create_cleaned(dir, base, config.index_interval_bytes, now_ms)
        .map_err(Error::io("creating", &cleaned_path))?;
    let mut changed = false;
    let mut out = Vec::new();
    let mut failure: Option<io::Error> = None;
    let mut removed = CleanStats::default();
    segment
        .for_each_batch(|_, bytes| {
            let result = (|| -> io::Result<()> {
                let Ok(header) = BatchHeader::parse(bytes) else {
                    return Ok(()); // scan_batches hands out whole batches only
                };
                if kept_whole(&header) {
                    removed.batches_kept_whole += 1;
                    out.extend_from_slice(bytes);
                } else {
                    let records = decode_records(bytes)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    let mut kept = Vec::with_capacity(records.len());
                    for record in records.iter() {
                        match judge(record, map, drop_tombstones) {
                            Verdict::Keep => kept.push(record),
                            Verdict::Superseded => removed.superseded_records_removed += 1,
                            Verdict::Tombstone => removed.tombstones_removed += 1,
                            Verdict::Keyless => removed.keyless_records_removed += 1,
                        }
                    }
                    if kept.len() == records.len() {
                        out.extend_from_slice(bytes);
                    } else {
                        changed = true;
                        for run in kept.chunk_by(|a, b| b.offset == a.offset + 1) {
                            out.extend_from_slice(&rebuild_batch(&header, run));
                        }
                    }
                }
                if out.len() >= WRITE_BUFFER_BYTES {
                    append_all(&mut cleaned, &mut out, now_ms)?;
                }
                Ok(())
            })();
            match result {
                Ok(()) => true,
                Err(e) => {
                    failure = Some(e);
                    false
                }
            }
        })
        .map_err(Error::io("reading", segment.log_path()))?;
    if let Some(e) = failure {
        return Err(Error::io("cleaning", segment.log_path())(e));
    }
    if !changed {
        drop(cleaned);
        for suffix in [LOG_FILE_SUFFIX, INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
            let path = cleaned_file_path(dir, base, suffix);
            std::fs::remove_file(&path).map_err(Error::io("removing", path))?;
        }
        stats.batches_kept_whole += removed.batches_kept_whole;
        return Ok(None);
    }
    append_all(&mut cleaned, &mut out, now_ms).map_err(Error::io("writing", &cleaned_path))?;
    // Keep the original modification time so delete.retention.ms keeps counting from the
    // last append (Kafka: `cleaned.lastModified = segment.lastModified`), then make the new
    // files durable before they replace the old ones.
    cleaned
        .set_last_modified_ms(last_modified_ms)
        .and_then(|()| cleaned.on_become_inactive())
        .and_then(|()| cleaned.log_file().sync_all())
        .map_err(Error::io("flushing", &cleaned_path))?;
    drop(cleaned);
    swap_in_cleaned(dir, base).map_err(Error::io("swapping in", &cleaned_path))?;
    let reloaded = LogSegment::load(
        dir,
        base,
        config.index_interval_bytes,
        Some(next_base),
        now_ms,
    )
    .map_err(Error::io("loading cleaned segment", segment.log_path()))?;
    stats.segments_cleaned += 1;
    stats.bytes_written += reloaded.size();
    stats.superseded_records_removed += removed.superseded_records_removed;
    stats.tombstones_removed += removed.tombstones_removed;
    stats.keyless_records_removed += removed.keyless_records_removed;
    stats.batches_kept_whole += removed.batches_kept_whole;
    Ok(Some(reloaded))
}

/// Appends the whole batches in `buf` to `segment` and empties `buf`.
fn append_all(segment: &mut LogSegment, buf: &mut Vec<u8>, now_ms: i64) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    // Every batch in `buf` was read from a valid segment or rebuilt by `rebuild_batch`; a
    // failure here is corruption between the two, reported rather than written.
    let batches = split_batches_summary(buf).map_err(|(position, e)| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cleaned batch at {position} is invalid: {e}"),
        )
    })?;
    segment.append(buf, &batches, now_ms)?;
    buf.clear();
    Ok(())
}

/// Rebuilds an uncompressed, non-idempotent batch holding only `records` (a non-empty run
/// of consecutive offsets from the batch) with their original offsets, timestamps and
/// headers. The batch's leader epoch and attributes are kept.
fn rebuild_batch(original: &BatchHeader, records: &[&Record]) -> Vec<u8> {
    assert!(
        !records.is_empty(),
        "a rebuilt batch keeps at least one record"
    );
    let base_offset = records[0].offset;
    let base_timestamp = records[0].timestamp;
    let max_timestamp = if original.is_log_append_time() {
        original.max_timestamp
    } else {
        records.iter().map(|r| r.timestamp).max().unwrap_or(-1)
    };
    let mut body = Vec::new();
    let mut record_bytes = Vec::new();
    for record in records {
        record_bytes.clear();
        record_bytes.push(0); // attributes (unused in v2)
        put_varlong(
            &mut record_bytes,
            record.timestamp.wrapping_sub(base_timestamp),
        );
        put_varlong(&mut record_bytes, record.offset - base_offset);
        put_bytes(&mut record_bytes, record.key.as_deref());
        put_bytes(&mut record_bytes, record.value.as_deref());
        put_varlong(&mut record_bytes, record.headers.len() as i64);
        for header in &record.headers {
            put_bytes(&mut record_bytes, Some(&header.key));
            put_bytes(&mut record_bytes, header.value.as_deref());
        }
        put_varlong(&mut body, record_bytes.len() as i64);
        body.extend_from_slice(&record_bytes);
    }
    assert!(
        records.windows(2).all(|w| w[1].offset == w[0].offset + 1),
        "a rebuilt batch holds consecutive offsets"
    );
    // Both fit: the records came from one batch, whose last offset delta and record count
    // are i32s.
    let last_offset_delta = i32::try_from(records[records.len() - 1].offset - base_offset)
        .expect("offsets of one batch span less than i32::MAX");
    let records_count = i32::try_from(records.len()).expect("a batch holds < i32::MAX records");
    let header = BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: original.partition_leader_epoch,
        magic: MAGIC_V2,
        crc: 0,
        attributes: original.attributes,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count,
    };
    encode_batch(&header, &body)
}

#[cfg(test)]
#[path = "cleaner_test.rs"]
mod tests;

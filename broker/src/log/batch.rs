//! Kafka RecordBatch v2 (magic 2): header parsing, producer-side validation, offset
//! assignment, and a small builder/decoder for tests, benches and timestamp lookups.
//!
//! Nothing here decompresses: compressed batches are validated up to their CRC and header
//! and stored as they came. Uncompressed batches additionally have their records walked.
//!
//! ```text
//! offset  field                 type
//!      0  baseOffset            i64
//!      8  batchLength           i32   bytes after this field
//!     12  partitionLeaderEpoch  i32
//!     16  magic                 i8    always 2
//!     17  crc                   u32   CRC-32C of bytes [21, end)
//!     21  attributes            i16   bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control
//!     23  lastOffsetDelta       i32
//!     27  baseTimestamp         i64
//!     35  maxTimestamp          i64
//!     43  producerId            i64
//!     51  producerEpoch         i16
//!     53  baseSequence          i32
//!     57  recordsCount          i32
//!     61  records
//! ```
//!
//! Mirrors Kafka's `DefaultRecordBatch` and `DefaultRecord`.

use crate::log::error::kafka_code;

/// Size of the fixed batch header, up to the first record.
pub const BATCH_HEADER_SIZE: usize = 61;
/// Bytes before (and including) the `batchLength` field; `total_size = batch_length + 12`.
pub const LOG_OVERHEAD: usize = 12;
/// The smallest legal `batchLength` (a header with no records).
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_SIZE - LOG_OVERHEAD) as i32;
/// The only record batch format this broker accepts.
pub const MAGIC_V2: i8 = 2;

/// Position of `partitionLeaderEpoch`, which the CRC does not cover.
const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;

/// Why a record batch was rejected. Each variant maps to a Kafka error code through
/// [`BatchError::kafka_error_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The buffer ends before the batch does.
    #[error("truncated record batch: needed {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the batch (or its header) needs.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// `batchLength` is smaller than a bare header.
    #[error("batchLength {batch_length} is below the minimum {min}")]
    InvalidBatchLength {
        /// The value found.
        batch_length: i32,
        /// The smallest legal value.
        min: i32,
    },
    /// The buffer given for one batch holds more bytes than the batch says it has.
    #[error("buffer of {buffer_len} bytes holds a batch of {batch_size} bytes and trailing bytes")]
    TrailingBytes {
        /// `batchLength + 12`.
        batch_size: usize,
        /// The buffer's length.
        buffer_len: usize,
    },
    /// Magic byte other than 2.
    #[error("unsupported record batch magic {magic}, expected 2")]
    InvalidMagic {
        /// The value found.
        magic: i8,
    },
    /// Stored CRC differs from the CRC-32C of the batch contents.
    #[error("CRC mismatch: batch says {stored:#010x}, contents hash to {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the batch.
        stored: u32,
        /// CRC computed over bytes 21.. of the batch.
        computed: u32,
    },
    /// `recordsCount` is not positive, or disagrees with `lastOffsetDelta`.
    #[error("recordsCount {records_count} does not match lastOffsetDelta {last_offset_delta}")]
    InvalidRecordCount {
        /// `recordsCount` from the header.
        records_count: i32,
        /// `lastOffsetDelta` from the header.
        last_offset_delta: i32,
    },
    /// Compression codec bits 5, 6 or 7.
    #[error("unknown compression codec {codec}")]
    UnsupportedCompression {
        /// The codec id found in the attributes.
        codec: u8,
    },
    /// Records of an uncompressed batch could not be decoded.
    #[error("malformed record {index}: {reason}")]
    MalformedRecord {
        /// Index of the record in the batch.
        index: i32,
        /// What was wrong.
        reason: &'static str,
    },
    /// A record's `offsetDelta` is not its index in the batch.
    #[error("record {index} has offsetDelta {actual}, expected {expected}")]
    RecordOffsetDelta {
        /// Index of the record.
        index: i32,
        /// The delta it should have.
        expected: i32,
        /// The delta it has.
        actual: i32,
    },
    /// The records of an uncompressed batch do not exactly fill it.
    #[error("records occupy {actual_bytes} bytes but the batch holds {expected_bytes}")]
    RecordsSizeMismatch {
        /// Bytes after the header, per `batchLength`.
        expected_bytes: usize,
        /// Bytes the declared records occupy.
        actual_bytes: usize,
    },
    /// A produce request carried no batch at all.
    #[error("no record batch in the records")]
    NoBatches,
    /// `decode_records` was asked to decode a compressed batch.
    #[error("cannot decode records of a batch compressed with codec {codec}")]
    CompressedRecords {
        /// The codec id.
        codec: u8,
    },
}

impl BatchError {
    /// The Kafka error code for this failure: `CORRUPT_MESSAGE` (2) for CRC and length
    /// problems, `INVALID_RECORD` (87) for a wrong magic or bad record structure,
    /// `UNSUPPORTED_COMPRESSION_TYPE` (76) for unknown codecs.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            BatchError::Truncated { .. }
            | BatchError::InvalidBatchLength { .. }
            | BatchError::TrailingBytes { .. }
            | BatchError::CrcMismatch { .. } => kafka_code::CORRUPT_MESSAGE,
            BatchError::InvalidMagic { .. }
            | BatchError::InvalidRecordCount { .. }
            | BatchError::MalformedRecord { .. }
            | BatchError::RecordOffsetDelta { .. }
            | BatchError::RecordsSizeMismatch { .. }
            | BatchError::NoBatches => kafka_code::INVALID_RECORD,
            BatchError::UnsupportedCompression { .. } | BatchError::CompressedRecords { .. } => {
                kafka_code::UNSUPPORTED_COMPRESSION_TYPE
            }
        }
    }
}

/// Compression codec of a batch (attribute bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Codec 0.
    None,
    /// Codec 1.
    Gzip,
    /// Codec 2.
    Snappy,
    /// Codec 3.
    Lz4,
    /// Codec 4.
    Zstd,
    /// Codecs 5-7, which Kafka does not define; `validate_batch` rejects them.
    Unknown(u8),
}

impl Compression {
    fn from_codec(codec: u8) -> Compression {
        match codec {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }
}

/// The fixed 61-byte header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (assigned by the leader).
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch stamped by the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; 2 for every batch this broker stores.
    pub magic: i8,
    /// CRC-32C of bytes 21.. of the batch.
    pub crc: u32,
    /// Codec, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without validating anything but its length.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_SIZE,
                available: buf.len(),
            });
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, 0),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, 12),
            magic: buf[16] as i8,
            crc: be_i32(buf, 17) as u32,
            attributes: be_i16(buf, 21),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        })
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset just past the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Size of the whole batch in bytes (`batch_length + 12`).
    pub fn total_size(&self) -> usize {
        // A negative length is rejected by every validating path; clamp for parse-only use.
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD
    }

    /// Compression codec.
    pub fn compression(&self) -> Compression {
        Compression::from_codec((self.attributes & 0x07) as u8)
    }

    /// True for `LogAppendTime` batches (attribute bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    /// True for transactional batches (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    /// True for control batches (attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// One decoded record of an uncompressed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Absolute offset.
    pub offset: i64,
    /// Absolute timestamp (the batch's max timestamp for `LogAppendTime` batches).
    pub timestamp: i64,
    /// Key, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// Value, `None` for a null value (a tombstone).
    pub value: Option<Vec<u8>>,
    /// Record headers in order.
    pub headers: Vec<RecordHeader>,
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// Header key (a UTF-8 string in Kafka; kept as bytes here).
    pub key: Vec<u8>,
    /// Header value, `None` for null.
    pub value: Option<Vec<u8>>,
}

/// Validates ONE complete batch as a producer sent it: lengths, magic 2, CRC-32C, record
/// count, and for uncompressed batches the structure of every record.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    validate_batch_summary(buf).map(|summary| summary.header)
}

/// What validation learns about a batch beyond its header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSummary {
    pub header: BatchHeader,
    /// Offset delta of the (first) record with the largest timestamp, when the records were
    /// walked (uncompressed batches); `None` for compressed batches.
    pub max_timestamp_offset_delta: Option<i32>,
}

impl BatchSummary {
    /// Absolute offset of the record with the largest timestamp; the batch's last offset when
    /// the records are compressed (Kafka's "shallow" offset).
    pub fn offset_of_max_timestamp(&self) -> i64 {
        match self.max_timestamp_offset_delta {
            Some(delta) => self.header.base_offset + i64::from(delta),
            None => self.header.last_offset(),
        }
    }
}

pub(crate) fn validate_batch_summary(buf: &[u8]) -> Result<BatchSummary, BatchError> {
    let header = BatchHeader::parse(buf)?;
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidBatchLength {
            batch_length: header.batch_length,
            min: MIN_BATCH_LENGTH,
        });
    }
    let size = header.total_size();
    if buf.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: buf.len(),
        });
    }
    if buf.len() > size {
        return Err(BatchError::TrailingBytes {
            batch_size: size,
            buffer_len: buf.len(),
        });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::InvalidMagic {
            magic: header.magic,
        });
    }
    let computed = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::InvalidRecordCount {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let max_timestamp_offset_delta = match header.compression() {
        Compression::Unknown(codec) => return Err(BatchError::UnsupportedCompression { codec }),
        Compression::None => {
            let mut best: Option<(i64, i32)> = None;
            walk_records(&header, &buf[BATCH_HEADER_SIZE..], |record| {
                if best.is_none_or(|(ts, _)| record.timestamp_delta > ts) {
                    best = Some((record.timestamp_delta, record.offset_delta));
                }
            })?;
            best.map(|(_, delta)| delta)
        }
        _ => None,
    };
    Ok(BatchSummary {
        header,
        max_timestamp_offset_delta,
    })
}

/// Splits a buffer of concatenated batches (a produce request's `records` field) and
/// validates each with [`validate_batch`]. Returns each batch's start position and header.
/// An empty buffer is [`BatchError::NoBatches`].
pub fn split_batches(buf: &[u8]) -> Result<Vec<(usize, BatchHeader)>, BatchError> {
    Ok(split_batches_summary(buf)
        .map_err(|(_, e)| e)?
        .into_iter()
        .map(|(pos, summary)| (pos, summary.header))
        .collect())
}

/// Like [`split_batches`], but keeps the summaries and says where the failing batch starts.
pub(crate) fn split_batches_summary(
    buf: &[u8],
) -> Result<Vec<(usize, BatchSummary)>, (usize, BatchError)> {
    if buf.is_empty() {
        return Err((0, BatchError::NoBatches));
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < LOG_OVERHEAD {
            return Err((
                pos,
                BatchError::Truncated {
                    needed: LOG_OVERHEAD,
                    available: rest.len(),
                },
            ));
        }
        let batch_length = be_i32(rest, 8);
        if batch_length < MIN_BATCH_LENGTH {
            return Err((
                pos,
                BatchError::InvalidBatchLength {
                    batch_length,
                    min: MIN_BATCH_LENGTH,
                },
            ));
        }
        // Checked non-negative just above.
        let size = batch_length as usize + LOG_OVERHEAD;
        if rest.len() < size {
            return Err((
                pos,
                BatchError::Truncated {
                    needed: size,
                    available: rest.len(),
                },
            ));
        }
        let summary = validate_batch_summary(&rest[..size]).map_err(|e| (pos, e))?;
        out.push((pos, summary));
        pos += size;
    }
    Ok(out)
}

/// Overwrites the batch's base offset. The CRC does not cover it, so the batch stays valid.
///
/// # Panics
/// If `buf` is shorter than 8 bytes.
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    buf[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites the batch's `partitionLeaderEpoch`, as a leader does when it appends a
/// producer's batch (Kafka's `DefaultRecordBatch.setPartitionLeaderEpoch`). The CRC does not
/// cover the field, so the batch stays valid and nothing has to be recomputed.
///
/// # Panics
/// If `buf` is shorter than 16 bytes.
pub fn set_partition_leader_epoch(buf: &mut [u8], leader_epoch: i32) {
    buf[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Encodes a batch from a header and an already-encoded records section, filling in
/// `batch_length` and `crc` (the given values of those two fields are ignored). Tests use it
/// to build batches with arbitrary attributes, e.g. "compressed" ones with opaque payloads.
///
/// # Panics
/// If the batch would be larger than `i32::MAX` bytes, which the format cannot express.
pub fn encode_batch(header: &BatchHeader, records: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(BATCH_HEADER_SIZE + records.len());
    // A documented panic: the format has no way to express such a batch.
    let batch_length = i32::try_from(BATCH_HEADER_SIZE - LOG_OVERHEAD + records.len())
        .expect("record batch larger than 2 GiB");
    buf.extend_from_slice(&header.base_offset.to_be_bytes());
    buf.extend_from_slice(&batch_length.to_be_bytes());
    buf.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    buf.push(header.magic as u8);
    buf.extend_from_slice(&0u32.to_be_bytes());
    buf.extend_from_slice(&header.attributes.to_be_bytes());
    buf.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    buf.extend_from_slice(&header.base_timestamp.to_be_bytes());
    buf.extend_from_slice(&header.max_timestamp.to_be_bytes());
    buf.extend_from_slice(&header.producer_id.to_be_bytes());
    buf.extend_from_slice(&header.producer_epoch.to_be_bytes());
    buf.extend_from_slice(&header.base_sequence.to_be_bytes());
    buf.extend_from_slice(&header.records_count.to_be_bytes());
    buf.extend_from_slice(records);
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_OFFSET..]);
    buf[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    buf
}

/// One record for [`build_batch`]: (key, value), `None` for null.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a valid uncompressed batch: no producer id (-1/-1/-1), leader epoch -1,
/// CreateTime timestamps `base_timestamp + index`.
///
/// # Panics
/// If `records` is empty (a batch holds at least one record) or holds more than `i32::MAX`
/// records.
pub fn build_batch(base_offset: i64, base_timestamp: i64, records: &[KeyValue<'_>]) -> Vec<u8> {
    assert!(
        !records.is_empty(),
        "a record batch holds at least one record"
    );
    // A documented panic, like the assertion above.
    let count = i32::try_from(records.len()).expect("too many records for one batch");
    let mut body = Vec::new();
    let mut record = Vec::new();
    for (index, (key, value)) in records.iter().enumerate() {
        record.clear();
        record.push(0); // attributes
        put_varlong(&mut record, index as i64); // timestampDelta
        put_varlong(&mut record, index as i64); // offsetDelta
        put_bytes(&mut record, *key);
        put_bytes(&mut record, *value);
        put_varlong(&mut record, 0); // headers count
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let header = BatchHeader {
        base_offset,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: MAGIC_V2,
        crc: 0,
        attributes: 0,
        last_offset_delta: count - 1,
        base_timestamp,
        max_timestamp: base_timestamp + i64::from(count - 1),
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        records_count: count,
    };
    encode_batch(&header, &body)
}

/// Decodes the records of one uncompressed batch (which need not start at the start of a
/// validated buffer: only the header and record structure are checked, not the CRC).
pub fn decode_records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidBatchLength {
            batch_length: header.batch_length,
            min: MIN_BATCH_LENGTH,
        });
    }
    let size = header.total_size();
    if batch.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::InvalidMagic {
            magic: header.magic,
        });
    }
    match header.compression() {
        Compression::None => {}
        Compression::Unknown(codec) => return Err(BatchError::UnsupportedCompression { codec }),
        _ => {
            return Err(BatchError::CompressedRecords {
                codec: (header.attributes & 0x07) as u8,
            })
        }
    }
    let mut out = Vec::with_capacity(usize::try_from(header.records_count).unwrap_or(0));
    walk_records(&header, &batch[BATCH_HEADER_SIZE..size], |raw| {
        out.push(Record {
            offset: header.base_offset + i64::from(raw.offset_delta),
            timestamp: if header.is_log_append_time() {
                header.max_timestamp
            } else {
                header.base_timestamp.wrapping_add(raw.timestamp_delta)
            },
            key: raw.key.map(<[u8]>::to_vec),
            value: raw.value.map(<[u8]>::to_vec),
            headers: raw
                .headers
                .iter()
                .map(|(k, v)| RecordHeader {
                    key: k.to_vec(),
                    value: v.map(<[u8]>::to_vec),
                })
                .collect(),
        });
    })?;
    Ok(out)
}

/// A record borrowed from a batch's records section.
struct RawRecord<'a> {
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: Vec<(&'a [u8], Option<&'a [u8]>)>,
}

/// Walks `header.records_count` records in `records`, checking that they exactly fill it and
/// that offset deltas run 0..n-1.
fn walk_records<'a>(
    header: &BatchHeader,
    records: &'a [u8],
    mut visit: impl FnMut(RawRecord<'a>),
) -> Result<(), BatchError> {
    let mut cursor = Cursor {
        buf: records,
        pos: 0,
    };
    for index in 0..header.records_count {
        let malformed = |reason| BatchError::MalformedRecord { index, reason };
        let length = cursor.varint().ok_or(malformed("bad length varint"))?;
        let length = usize::try_from(length).map_err(|_| malformed("negative length"))?;
        if cursor.remaining() < length {
            return Err(BatchError::RecordsSizeMismatch {
                expected_bytes: records.len(),
                actual_bytes: cursor.pos + length,
            });
        }
        let body = &records[cursor.pos..cursor.pos + length];
        cursor.pos += length;
        let mut rec = Cursor { buf: body, pos: 0 };
        rec.take(1).ok_or(malformed("missing attributes"))?;
        let timestamp_delta = rec.varlong().ok_or(malformed("bad timestampDelta"))?;
        let offset_delta = rec.varint().ok_or(malformed("bad offsetDelta"))?;
        if offset_delta != index {
            return Err(BatchError::RecordOffsetDelta {
                index,
                expected: index,
                actual: offset_delta,
            });
        }
        let key = rec.nullable_bytes().ok_or(malformed("bad key"))?;
        let value = rec.nullable_bytes().ok_or(malformed("bad value"))?;
        let header_count = rec.varint().ok_or(malformed("bad headers count"))?;
        let header_count =
            usize::try_from(header_count).map_err(|_| malformed("negative headers count"))?;
        let mut headers = Vec::new();
        for _ in 0..header_count {
            let key = rec
                .nullable_bytes()
                .ok_or(malformed("bad header key"))?
                .ok_or(malformed("null header key"))?;
            let value = rec.nullable_bytes().ok_or(malformed("bad header value"))?;
            headers.push((key, value));
        }
        if rec.remaining() != 0 {
            return Err(malformed("record length does not match its fields"));
        }
        visit(RawRecord {
            timestamp_delta,
            offset_delta,
            key,
            value,
            headers,
        });
    }
    if cursor.remaining() != 0 {
        return Err(BatchError::RecordsSizeMismatch {
            expected_bytes: records.len(),
            actual_bytes: cursor.pos,
        });
    }
    Ok(())
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    /// Zigzag varlong, at most 10 bytes.
    fn varlong(&mut self) -> Option<i64> {
        let mut raw: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        None
    }

    /// Zigzag varint, at most 5 bytes.
    fn varint(&mut self) -> Option<i32> {
        let mut raw: u32 = 0;
        for i in 0..5 {
            let byte = *self.buf.get(self.pos)?;
            self.pos += 1;
            raw |= u32::from(byte & 0x7f).checked_shl(7 * i)?;
            if byte & 0x80 == 0 {
                return Some((raw >> 1) as i32 ^ -((raw & 1) as i32));
            }
        }
        None
    }

    /// Varint length (-1 = null) followed by that many bytes.
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let len = self.varint()?;
        if len == -1 {
            return Some(None);
        }
        let len = usize::try_from(len).ok()?;
        self.take(len).map(Some)
    }
}

pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    i32::from_be_bytes(b)
}

fn be_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        build_batch(
            0,
            1_000,
            &[
                (Some(b"k0"), Some(b"v0")),
                (None, Some(b"value one")),
                (Some(b"k2"), None),
            ],
        )
    }

    #[test]
    fn built_batch_validates_and_decodes() {
        let batch = sample();
        let header = validate_batch(&batch).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.total_size(), batch.len());
        assert_eq!(header.compression(), Compression::None);
        assert_eq!(header.max_timestamp, 1_002);
        assert_eq!(header.producer_id, -1);
        let records = decode_records(&batch).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(records[1].offset, 1);
        assert_eq!(records[1].timestamp, 1_001);
        assert_eq!(records[1].key, None);
        assert_eq!(records[1].value.as_deref(), Some(&b"value one"[..]));
        assert_eq!(records[2].value, None);
    }

    #[test]
    fn set_base_offset_keeps_crc_valid() {
        let mut batch = sample();
        set_base_offset(&mut batch, 42);
        let header = validate_batch(&batch).unwrap();
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.last_offset(), 44);
        assert_eq!(decode_records(&batch).unwrap()[0].offset, 42);
    }

    #[test]
    fn set_partition_leader_epoch_keeps_crc_valid() {
        let mut batch = sample();
        assert_eq!(
            BatchHeader::parse(&batch).unwrap().partition_leader_epoch,
            -1
        );
        set_partition_leader_epoch(&mut batch, 7);
        let header = validate_batch(&batch).unwrap();
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.base_offset, 0, "nothing else changes");
        assert_eq!(
            decode_records(&batch).unwrap(),
            decode_records(&sample()).unwrap()
        );
    }

    #[test]
    fn crc_mismatch_is_corrupt_message() {
        let mut batch = sample();
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        let err = validate_batch(&batch).unwrap_err();
        assert!(
            matches!(err, BatchError::CrcMismatch { stored, computed } if stored != computed),
            "{err:?}"
        );
        assert_eq!(err.kafka_error_code(), 2);
    }

    #[test]
    fn truncated_batch_is_corrupt_message() {
        let batch = sample();
        let err = validate_batch(&batch[..batch.len() - 3]).unwrap_err();
        assert_eq!(
            err,
            BatchError::Truncated {
                needed: batch.len(),
                available: batch.len() - 3
            }
        );
        assert_eq!(err.kafka_error_code(), 2);
        let err = validate_batch(&batch[..30]).unwrap_err();
        assert!(matches!(err, BatchError::Truncated { needed: 61, .. }));
        assert_eq!(err.kafka_error_code(), 2);
    }

    #[test]
    fn inconsistent_lengths_are_corrupt_message() {
        let mut batch = sample();
        batch.push(0);
        let err = validate_batch(&batch).unwrap_err();
        assert!(matches!(err, BatchError::TrailingBytes { .. }));
        assert_eq!(err.kafka_error_code(), 2);
        let mut batch = sample();
        batch[8..12].copy_from_slice(&10i32.to_be_bytes());
        let err = validate_batch(&batch).unwrap_err();
        assert_eq!(
            err,
            BatchError::InvalidBatchLength {
                batch_length: 10,
                min: 49
            }
        );
        assert_eq!(err.kafka_error_code(), 2);
    }

    #[test]
    fn magic_1_is_invalid_record() {
        let mut batch = sample();
        batch[16] = 1;
        let err = validate_batch(&batch).unwrap_err();
        assert_eq!(err, BatchError::InvalidMagic { magic: 1 });
        assert_eq!(err.kafka_error_code(), 87);
    }

    fn with_header(batch: &[u8], edit: impl FnOnce(&mut BatchHeader)) -> Vec<u8> {
        let mut header = BatchHeader::parse(batch).unwrap();
        edit(&mut header);
        encode_batch(&header, &batch[BATCH_HEADER_SIZE..])
    }

    #[test]
    fn bad_record_count_is_invalid_record() {
        // Header says 4 records (consistently with lastOffsetDelta) but only 3 are present.
        let batch = with_header(&sample(), |h| {
            h.records_count = 4;
            h.last_offset_delta = 3;
        });
        let err = validate_batch(&batch).unwrap_err();
        assert!(
            matches!(err, BatchError::MalformedRecord { index: 3, .. }),
            "{err:?}"
        );
        assert_eq!(err.kafka_error_code(), 87);

        // Header says 2 records: the third one is left over.
        let batch = with_header(&sample(), |h| {
            h.records_count = 2;
            h.last_offset_delta = 1;
        });
        let err = validate_batch(&batch).unwrap_err();
        assert!(
            matches!(err, BatchError::RecordsSizeMismatch { .. }),
            "{err:?}"
        );
        assert_eq!(err.kafka_error_code(), 87);

        // recordsCount disagrees with lastOffsetDelta.
        let batch = with_header(&sample(), |h| h.last_offset_delta = 5);
        let err = validate_batch(&batch).unwrap_err();
        assert_eq!(
            err,
            BatchError::InvalidRecordCount {
                records_count: 3,
                last_offset_delta: 5
            }
        );
        assert_eq!(err.kafka_error_code(), 87);

        // Zero records.
        let batch = with_header(&sample(), |h| {
            h.records_count = 0;
            h.last_offset_delta = -1;
        });
        assert_eq!(validate_batch(&batch).unwrap_err().kafka_error_code(), 87);
    }

    #[test]
    fn wrong_offset_delta_is_invalid_record() {
        // Rebuild the records section with offsetDelta 5 for the only record.
        let mut record = vec![0u8];
        put_varlong(&mut record, 0);
        put_varlong(&mut record, 5);
        put_bytes(&mut record, None);
        put_bytes(&mut record, Some(b"v"));
        put_varlong(&mut record, 0);
        let mut body = Vec::new();
        put_varlong(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
        let header = BatchHeader::parse(&build_batch(0, 0, &[(None, Some(b"v"))])).unwrap();
        let batch = encode_batch(&header, &body);
        let err = validate_batch(&batch).unwrap_err();
        assert_eq!(
            err,
            BatchError::RecordOffsetDelta {
                index: 0,
                expected: 0,
                actual: 5
            }
        );
        assert_eq!(err.kafka_error_code(), 87);
    }

    #[test]
    fn compressed_batches_are_not_walked() {
        let batch = with_header(&sample(), |h| h.attributes = 4); // zstd, opaque payload
        let header = validate_batch(&batch).unwrap();
        assert_eq!(header.compression(), Compression::Zstd);
        assert_eq!(
            decode_records(&batch).unwrap_err(),
            BatchError::CompressedRecords { codec: 4 }
        );
        let batch = with_header(&sample(), |h| h.attributes = 6);
        let err = validate_batch(&batch).unwrap_err();
        assert_eq!(err, BatchError::UnsupportedCompression { codec: 6 });
        assert_eq!(err.kafka_error_code(), 76);
    }

    #[test]
    fn split_batches_finds_every_batch_and_reports_position() {
        let a = sample();
        let b = build_batch(0, 5, &[(None, Some(b"x"))]);
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        let split = split_batches(&buf).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].0, 0);
        assert_eq!(split[1].0, a.len());
        assert_eq!(split[1].1.records_count, 1);

        buf.truncate(buf.len() - 1);
        assert!(matches!(
            split_batches_summary(&buf).unwrap_err(),
            (pos, BatchError::Truncated { .. }) if pos == a.len()
        ));
        assert_eq!(split_batches(&[]).unwrap_err(), BatchError::NoBatches);
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i32::MAX as i64,
            i32::MIN as i64,
        ] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            let mut c = Cursor { buf: &buf, pos: 0 };
            assert_eq!(c.varint(), Some(v as i32));
            let mut c = Cursor { buf: &buf, pos: 0 };
            assert_eq!(c.varlong(), Some(v));
        }
        for v in [i64::MAX, i64::MIN] {
            let mut buf = Vec::new();
            put_varlong(&mut buf, v);
            let mut c = Cursor { buf: &buf, pos: 0 };
            assert_eq!(c.varlong(), Some(v));
        }
    }

    #[test]
    fn summary_finds_offset_of_max_timestamp() {
        let batch = sample();
        let summary = validate_batch_summary(&batch).unwrap();
        assert_eq!(summary.offset_of_max_timestamp(), 2);
    }
}

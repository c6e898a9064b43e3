//! Model-based property test of the partition log: random sequences of appends (with small
//! segments, so they roll), `truncate_to`, retention by bytes, `DeleteRecords`, flushes,
//! close-and-reopen and simulated `kill -9` (the `Log` is leaked without running any
//! destructor, and a torn write is left at the end of the newest `.log`), checked after
//! every step against a plain in-memory model of (offset, key, value) batches plus the log
//! start and end offsets.

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use tributary::log::{build_batch, decode_records, BatchHeader, KeyValue, Log, LogConfig};

type Kv = (Option<Vec<u8>>, Option<Vec<u8>>);

#[derive(Debug, Clone)]
enum Op {
    /// One batch of 1..5 records.
    Append(Vec<Kv>),
    /// Truncate to `leo * frac`, rounded down.
    Truncate(f64),
    /// Apply retention with this `retention.bytes`.
    RetainBytes(u64),
    /// DeleteRecords up to `lso + (leo - lso) * frac`.
    DeleteRecords(f64),
    Flush,
    Reopen,
    /// Leak the log (no destructor: unwritten index entries are lost, as with `kill -9`),
    /// append these bytes to the newest `.log` file as a torn write, and reopen.
    Crash(Vec<u8>),
}

fn kv() -> impl Strategy<Value = Kv> {
    (
        proptest::option::weighted(0.7, proptest::collection::vec(any::<u8>(), 0..16)),
        proptest::option::weighted(0.9, proptest::collection::vec(any::<u8>(), 0..200)),
    )
}

/// Random bytes, or a strict prefix of a valid batch (a write cut short by the crash).
fn torn_write() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..100),
        (proptest::collection::vec(kv(), 1..=3), 0.0..1.0f64).prop_map(|(records, cut)| {
            let refs: Vec<KeyValue<'_>> = records
                .iter()
                .map(|(k, v)| (k.as_deref(), v.as_deref()))
                .collect();
            let batch = build_batch(0, 0, &refs);
            let cut = (batch.len() as f64 * cut) as usize;
            batch[..cut].to_vec()
        }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec(kv(), 1..=5).prop_map(Op::Append),
        1 => (0.0..=1.0f64).prop_map(Op::Truncate),
        1 => (0u64..3000).prop_map(Op::RetainBytes),
        1 => (0.0..=1.0f64).prop_map(Op::DeleteRecords),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => torn_write().prop_map(Op::Crash),
    ]
}

/// What the log should hold: contiguous batches, the log start and end offsets.
#[derive(Debug, Default)]
struct Model {
    /// (base offset, records), in offset order.
    batches: Vec<(i64, Vec<Kv>)>,
    log_start_offset: i64,
    log_end_offset: i64,
}

impl Model {
    fn append(&mut self, records: Vec<Kv>) -> i64 {
        let base = self.log_end_offset;
        self.log_end_offset += records.len() as i64;
        self.batches.push((base, records));
        base
    }

    /// `Log::truncate_to`: batches whose last offset is >= `offset` go whole; below the log
    /// start offset the log restarts empty at `offset`.
    fn truncate_to(&mut self, offset: i64) {
        if offset >= self.log_end_offset {
            return;
        }
        if offset < self.log_start_offset {
            self.batches.clear();
            self.log_start_offset = offset;
            self.log_end_offset = offset;
            return;
        }
        let keep = self
            .batches
            .iter()
            .position(|(base, records)| base + records.len() as i64 > offset)
            .expect("some batch holds offsets >= offset < log end offset");
        self.log_end_offset = self.batches[keep].0;
        self.batches.truncate(keep);
        self.log_start_offset = self.log_start_offset.min(self.log_end_offset);
    }

    /// Visible records: offsets >= log start offset.
    fn records(&self) -> Vec<(i64, Kv)> {
        self.batches
            .iter()
            .flat_map(|(base, records)| {
                records
                    .iter()
                    .enumerate()
                    .map(move |(i, kv)| (base + i as i64, kv.clone()))
            })
            .filter(|(offset, _)| *offset >= self.log_start_offset)
            .collect()
    }

    fn is_batch_boundary(&self, offset: i64) -> bool {
        offset == self.log_end_offset || self.batches.iter().any(|(base, _)| *base == offset)
    }
}

fn read_everything(log: &Log) -> Vec<(i64, Kv)> {
    let data = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX)
        .expect("read from the log start offset");
    assert_eq!(data.log_start_offset, log.log_start_offset());
    assert_eq!(data.log_end_offset, log.log_end_offset());
    let mut out = Vec::new();
    let mut bytes = &data.records[..];
    while !bytes.is_empty() {
        let header = BatchHeader::parse(bytes).expect("batch header");
        let batch = &bytes[..header.total_size()];
        for record in decode_records(batch).expect("decodable batch") {
            if record.offset >= log.log_start_offset() {
                out.push((record.offset, (record.key, record.value)));
            }
        }
        bytes = &bytes[header.total_size()..];
    }
    out
}

/// Reads with `max_bytes = 1`: each read must return exactly one whole batch (KIP-74), and
/// following `next_offset` must visit every batch, across segment boundaries.
fn read_batch_by_batch(log: &Log) -> Vec<(i64, Kv)> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let data = log.read(offset, 1, i64::MAX).expect("read one batch");
        let header = BatchHeader::parse(&data.records).expect("one batch header");
        assert_eq!(header.total_size(), data.records.len(), "exactly one batch");
        assert!(header.last_offset() >= offset);
        for record in decode_records(&data.records).expect("decodable batch") {
            if record.offset >= offset {
                out.push((record.offset, (record.key, record.value)));
            }
        }
        offset = header.next_offset();
    }
    out
}

fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), model.log_start_offset);
    prop_assert_eq!(log.log_end_offset(), model.log_end_offset);
    let expected = model.records();
    prop_assert_eq!(&read_everything(log), &expected);
    prop_assert_eq!(&read_batch_by_batch(log), &expected);
    Ok(())
}

fn newest_log_file(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("list dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a log has at least one segment")
}

fn run(dir: &Path, config: LogConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut now_ms = 1_000_000;
    let mut log = Log::open(dir, config.clone(), now_ms).expect("open");
    let mut model = Model::default();
    check(&log, &model)?;
    for op in ops {
        now_ms += 10;
        match op {
            Op::Append(records) => {
                let refs: Vec<KeyValue<'_>> = records
                    .iter()
                    .map(|(k, v)| (k.as_deref(), v.as_deref()))
                    .collect();
                let mut batch = build_batch(0, now_ms, &refs);
                let info = log.append_as_leader(&mut batch, now_ms).expect("append");
                let base = model.append(records);
                prop_assert_eq!(info.base_offset, base);
                prop_assert_eq!(info.last_offset, model.log_end_offset - 1);
            }
            Op::Truncate(frac) => {
                let offset = (model.log_end_offset as f64 * frac).floor() as i64;
                log.truncate_to(offset).expect("truncate");
                model.truncate_to(offset);
            }
            Op::RetainBytes(retention_bytes) => {
                log.update_config(LogConfig {
                    retention_bytes: retention_bytes as i64,
                    ..config.clone()
                });
                let before = log.log_start_offset();
                log.apply_retention(now_ms).expect("retention");
                log.update_config(config.clone());
                // Which segments go depends on segment boundaries the model does not track;
                // check the rules, then adopt the new log start offset.
                let after = log.log_start_offset();
                prop_assert!(after >= before);
                if after != before {
                    prop_assert!(
                        model.is_batch_boundary(after),
                        "lso {} not a batch start",
                        after
                    );
                }
                let size = log.size_bytes();
                let first = log.segments()[0].size();
                prop_assert!(
                    size <= retention_bytes || size - retention_bytes < first,
                    "retention left {} bytes > {} with a first segment of {}",
                    size,
                    retention_bytes,
                    first
                );
                model.log_start_offset = after;
            }
            Op::DeleteRecords(frac) => {
                let span = (model.log_end_offset - model.log_start_offset) as f64;
                let offset = model.log_start_offset + (span * frac).floor() as i64;
                let low_watermark = log.delete_records_before(offset).expect("delete records");
                model.log_start_offset = model.log_start_offset.max(offset);
                prop_assert_eq!(low_watermark, model.log_start_offset);
                prop_assert!(log.delete_records_before(model.log_end_offset + 1).is_err());
            }
            Op::Flush => {
                log.flush().expect("flush");
                prop_assert_eq!(log.recovery_point(), model.log_end_offset);
            }
            Op::Reopen => {
                drop(log);
                log = Log::open(dir, config.clone(), now_ms).expect("reopen");
            }
            Op::Crash(torn_write) => {
                std::mem::forget(log);
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .open(newest_log_file(dir))
                    .expect("open newest .log");
                file.write_all(&torn_write).expect("torn write");
                drop(file);
                log = Log::open(dir, config.clone(), now_ms).expect("reopen after crash");
            }
        }
        check(&log, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn log_matches_in_memory_model(
        segment_bytes in 300u64..2000,
        index_interval_bytes in prop_oneof![Just(0u32), 64u32..1024],
        flush_messages in prop_oneof![Just(u64::MAX), 1u64..10],
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes,
            flush_messages,
            retention_ms: -1,
            ..LogConfig::default()
        };
        run(dir.path(), config, ops)?;
    }
}

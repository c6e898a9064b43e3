//! Criterion benchmarks for the partition log's hot paths: appending batches of 16 × 1 KiB
//! records, an offset index lookup in a 100k-entry index, and validating a 16 KiB batch.
//!
//! Measurement times are short so `cargo bench -- --test` (CI) and a full run stay quick.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tributary::log::{build_batch, validate_batch, KeyValue, Log, LogConfig, OffsetIndex};

const RECORDS_PER_BATCH: usize = 16;
const RECORD_BYTES: usize = 1024;

fn batch_16k() -> Vec<u8> {
    let value = vec![0x5a_u8; RECORD_BYTES];
    let records: Vec<KeyValue<'_>> = (0..RECORDS_PER_BATCH)
        .map(|_| (Some(&b"key"[..]), Some(&value[..])))
        .collect();
    build_batch(0, 1_700_000_000_000, &records)
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    // Small segments and byte retention keep the disk footprint bounded however long the
    // measurement runs; rolls and deletions are part of what is measured, as in production.
    let config = LogConfig {
        segment_bytes: 64 << 20,
        retention_bytes: 256 << 20,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, 0).expect("open log");
    let mut batch = batch_16k();
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    let mut appended = 0u64;
    group.bench_function("append_16x1KiB_batch", |b| {
        b.iter(|| {
            // The same buffer is appended again and again: append only rewrites its base
            // offset, which the CRC does not cover.
            let info = log.append_as_leader(&mut batch, 0).expect("append");
            appended += 1;
            if appended % 1024 == 0 {
                log.apply_retention(0).expect("retention");
            }
            black_box(info)
        })
    });
    group.finish();
}

fn offset_index_lookup(c: &mut Criterion) {
    const ENTRIES: i64 = 100_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut index =
        OffsetIndex::open(&dir.path().join("00000000000000000000.index"), 0).expect("index");
    for i in 1..=ENTRIES {
        index.append(i * 16, u32::try_from(i * 4096).unwrap_or(u32::MAX - 1));
    }
    let mut group = c.benchmark_group("log");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    group.bench_function("offset_index_lookup_100k", |b| {
        b.iter(|| {
            // xorshift: spread targets over the whole index without a rand dependency.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let target = (state % (ENTRIES as u64 * 16)) as i64;
            black_box(index.lookup(black_box(target)))
        })
    });
    group.finish();
}

fn validate(c: &mut Criterion) {
    let batch = batch_16k();
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    group.bench_function("validate_batch_16KiB", |b| {
        b.iter(|| black_box(validate_batch(black_box(&batch)).expect("valid")))
    });
    group.finish();
}

criterion_group!(benches, append, offset_index_lookup, validate);
criterion_main!(benches);

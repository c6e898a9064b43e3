//! Tests of compaction through `Log::compact`.

use std::path::Path;

use super::*;
use crate::log::batch::{build_batch, validate_batch, KeyValue, BATCH_HEADER_SIZE};
use crate::log::partition_log::{Log, RECOVERY_POINT_FILE};
use crate::log::segment::segment_file_path;

/// Every append call rolls first (any non-empty active segment is "full"), so each call
/// makes its own segment.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 1,
        retention_ms: -1,
        index_interval_bytes: 0,
        delete_retention_ms: 1000,
        ..LogConfig::default()
    }
}

fn kv<'a>(key: Option<&'a str>, value: Option<&'a str>) -> KeyValue<'a> {
    (key.map(str::as_bytes), value.map(str::as_bytes))
}

/// Appends one segment's worth: the given batches in one append call.
fn append(log: &mut Log, batches: &[Vec<u8>]) {
    let mut bytes = batches.concat();
    log.append_as_leader(&mut bytes, 0).unwrap();
}

/// Re-encodes `batch` with an edited header (records section unchanged).
fn reencode(batch: &[u8], edit: impl FnOnce(&mut BatchHeader)) -> Vec<u8> {
    let mut header = BatchHeader::parse(batch).unwrap();
    edit(&mut header);
    encode_batch(&header, &batch[BATCH_HEADER_SIZE..])
}

/// (base offset, bytes) of every batch a fetch from `offset` returns.
fn read_batches(log: &Log, offset: i64) -> Vec<(i64, Vec<u8>)> {
    let data = log.read(offset, usize::MAX, i64::MAX).unwrap();
    let mut rest = &data.records[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let header = BatchHeader::parse(rest).unwrap();
        out.push((header.base_offset, rest[..header.total_size()].to_vec()));
        rest = &rest[header.total_size()..];
    }
    out
}

/// (offset, key, value) of every record from `offset`, batches validated on the way.
fn read_records(log: &Log, offset: i64) -> Vec<(i64, Option<String>, Option<String>)> {
    let text = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8(b.clone()).unwrap());
    read_batches(log, offset)
        .iter()
        .flat_map(|(_, bytes)| {
            validate_batch(bytes).unwrap();
            decode_records(bytes).unwrap()
        })
        .map(|r| (r.offset, text(&r.key), text(&r.value)))
        .collect()
}

fn rec(offset: i64, key: &str, value: Option<&str>) -> (i64, Option<String>, Option<String>) {
    (offset, Some(key.to_string()), value.map(str::to_string))
}

/// seg 0: k1=a@0 k3=c@1 k2=b@2 k4=d@3 | seg 4: k2=B@4 k5=e@5 | seg 6: k1=A@6 | active: k5=E@7
fn repeated_keys_log(dir: &Path) -> Log {
    let mut log = Log::open(dir, config(), 0).unwrap();
    append(
        &mut log,
        &[build_batch(
            0,
            100,
            &[
                kv(Some("k1"), Some("a")),
                kv(Some("k3"), Some("c")),
                kv(Some("k2"), Some("b")),
                kv(Some("k4"), Some("d")),
            ],
        )],
    );
    append(
        &mut log,
        &[build_batch(
            0,
            200,
            &[kv(Some("k2"), Some("B")), kv(Some("k5"), Some("e"))],
        )],
    );
    append(
        &mut log,
        &[build_batch(0, 300, &[kv(Some("k1"), Some("A"))])],
    );
    append(
        &mut log,
        &[build_batch(0, 400, &[kv(Some("k5"), Some("E"))])],
    );
    assert_eq!(log.segment_count(), 4);
    log
}

fn compacted_repeated_keys() -> Vec<(i64, Option<String>, Option<String>)> {
    vec![
        rec(1, "k3", Some("c")),
        rec(3, "k4", Some("d")),
        rec(4, "k2", Some("B")),
        rec(5, "k5", Some("e")),
        rec(6, "k1", Some("A")),
        rec(7, "k5", Some("E")),
    ]
}

#[test]
fn compaction_keeps_the_latest_record_per_key_at_its_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = repeated_keys_log(dir.path());
    let active_path = log.segments()[3].log_path().to_path_buf();
    let active_before = std::fs::read(&active_path).unwrap();

    let stats = log.compact(0).unwrap();

    assert_eq!(stats.segments_read, 3);
    assert_eq!(
        stats.segments_cleaned, 1,
        "only the first segment loses records"
    );
    assert_eq!(stats.superseded_records_removed, 2);
    assert_eq!(stats.records_removed(), 2);
    assert_eq!(stats.keys, 5);
    assert_eq!(read_records(&log, 0), compacted_repeated_keys());
    // k3@1 and k4@3 are not adjacent: one batch each; the untouched batches stay as they were.
    let bases: Vec<i64> = read_batches(&log, 0).iter().map(|(b, _)| *b).collect();
    assert_eq!(bases, vec![1, 3, 4, 6, 7]);
    // Timestamps survive the rebuild (build_batch gives base + index).
    let first = decode_records(&read_batches(&log, 0)[0].1).unwrap();
    assert_eq!(first[0].timestamp, 101);
    let second = decode_records(&read_batches(&log, 0)[1].1).unwrap();
    assert_eq!(second[0].timestamp, 103);

    assert_eq!(std::fs::read(&active_path).unwrap(), active_before);
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), 8);
    assert_eq!(log.segment_count(), 4);
    assert!(
        !segment_file_path(dir.path(), 0, ".log.cleaned").exists(),
        "no leftovers"
    );

    // Appends go on at the log end; a second pass over the same segments changes nothing.
    append(
        &mut log,
        &[build_batch(0, 500, &[kv(Some("k9"), Some("z"))])],
    );
    assert_eq!(log.log_end_offset(), 9);
    let stats = log.compact(0).unwrap();
    assert_eq!(stats.segments_cleaned, 1, "k5@5 is now superseded by k5@7");
    assert_eq!(read_records(&log, 4)[0], rec(4, "k2", Some("B")));
    assert_eq!(read_records(&log, 5)[0], rec(6, "k1", Some("A")));
}

#[test]
fn fetch_at_a_compacted_away_offset_returns_the_next_surviving_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = repeated_keys_log(dir.path());
    log.compact(0).unwrap();
    assert_eq!(read_records(&log, 0)[0], rec(1, "k3", Some("c")));
    assert_eq!(read_records(&log, 2)[0], rec(3, "k4", Some("d")));
    // max_bytes = 1 still returns one whole batch (KIP-74), the next surviving one.
    let data = log.read(2, 1, i64::MAX).unwrap();
    assert_eq!(BatchHeader::parse(&data.records).unwrap().base_offset, 3);
}

#[test]
fn compacted_log_reopens_with_the_same_contents_even_when_fully_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = repeated_keys_log(dir.path());
    log.compact(0).unwrap();
    log.close().unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(read_records(&log, 0), compacted_repeated_keys());
    drop(log);
    // Without a recovery point every segment is validated batch by batch: the rebuilt
    // batches must pass, or recovery would truncate them.
    std::fs::remove_file(dir.path().join(RECOVERY_POINT_FILE)).unwrap();
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(read_records(&log, 0), compacted_repeated_keys());
    assert_eq!(log.log_end_offset(), 8);
}

#[test]
fn crash_before_the_swap_leaves_the_old_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = repeated_keys_log(dir.path());
    let before = read_records(&log, 0);
    drop(log);
    // A cleaner that died while writing: partial `.cleaned` files next to the old segment,
    // whose indexes were already removed (step 1 of the swap).
    for suffix in [".log.cleaned", ".index.cleaned", ".timeindex.cleaned"] {
        std::fs::write(segment_file_path(dir.path(), 0, suffix), b"partial").unwrap();
    }
    for suffix in [".index", ".timeindex"] {
        std::fs::remove_file(segment_file_path(dir.path(), 0, suffix)).unwrap();
    }
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(read_records(&log, 0), before);
    for suffix in [".log.cleaned", ".index.cleaned", ".timeindex.cleaned"] {
        assert!(!segment_file_path(dir.path(), 0, suffix).exists());
    }
    // And the cleaner runs fine afterwards.
    log.compact(0).unwrap();
    assert_eq!(read_records(&log, 0), compacted_repeated_keys());
}

#[test]
fn crash_between_the_renames_loads_the_new_segment_and_rebuilds_its_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = repeated_keys_log(dir.path());
    log.compact(0).unwrap();
    drop(log);
    // The new `.log` is in place but its indexes are still `.cleaned` (step 3 not done).
    for suffix in [".index", ".timeindex"] {
        let path = segment_file_path(dir.path(), 0, suffix);
        std::fs::rename(&path, format!("{}.cleaned", path.display())).unwrap();
    }
    let log = Log::open(dir.path(), config(), 0).unwrap();
    assert_eq!(read_records(&log, 0), compacted_repeated_keys());
    assert_eq!(read_records(&log, 2)[0], rec(3, "k4", Some("d")));
}

#[test]
fn tombstones_are_kept_until_delete_retention_ms_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    append(&mut log, &[build_batch(0, 0, &[kv(Some("k1"), Some("a"))])]);
    append(
        &mut log,
        &[build_batch(
            0,
            0,
            &[
                kv(Some("k2"), Some("b")),
                kv(Some("k1"), None),
                kv(Some("k2"), Some("c")),
            ],
        )],
    );
    append(&mut log, &[build_batch(0, 0, &[kv(Some("k3"), Some("x"))])]);
    let modified_ms = log.segments()[1].last_modified_ms();
    assert!(modified_ms > 0);

    // Young tombstone: the value it deletes goes, the tombstone stays.
    let stats = log.compact(modified_ms + 1000).unwrap();
    assert_eq!(stats.tombstones_removed, 0);
    assert_eq!(stats.superseded_records_removed, 2);
    assert_eq!(
        read_records(&log, 0),
        vec![
            rec(2, "k1", None),
            rec(3, "k2", Some("c")),
            rec(4, "k3", Some("x"))
        ]
    );
    assert_eq!(
        log.segments()[1].last_modified_ms(),
        modified_ms,
        "a rewritten segment keeps its modification time"
    );

    // delete.retention.ms (1000) later it goes too.
    let stats = log.compact(modified_ms + 1001).unwrap();
    assert_eq!(stats.tombstones_removed, 1);
    assert_eq!(
        read_records(&log, 0),
        vec![rec(3, "k2", Some("c")), rec(4, "k3", Some("x"))]
    );
}

#[test]
fn keyless_records_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    append(
        &mut log,
        &[build_batch(
            0,
            0,
            &[
                kv(None, Some("x")),
                kv(Some("k"), Some("a")),
                kv(None, Some("y")),
            ],
        )],
    );
    append(&mut log, &[build_batch(0, 0, &[kv(None, Some("active"))])]);
    let stats = log.compact(0).unwrap();
    assert_eq!(stats.keyless_records_removed, 2);
    assert_eq!(
        read_records(&log, 0),
        vec![
            rec(1, "k", Some("a")),
            (3, None, Some("active".to_string()))
        ],
        "the active segment keeps its keyless record"
    );
}

#[test]
fn compressed_and_idempotent_batches_are_kept_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let plain = build_batch(
        0,
        0,
        &[kv(Some("k1"), Some("a")), kv(Some("k2"), Some("b"))],
    );
    // "gzip" over a plain records section: never decompressed, so never noticed.
    let compressed = reencode(
        &build_batch(0, 0, &[kv(Some("k1"), Some("z")), kv(None, Some("n"))]),
        |h| h.attributes |= 1,
    );
    let idempotent = reencode(
        &build_batch(0, 0, &[kv(Some("k2"), Some("i")), kv(None, Some("n"))]),
        |h| {
            h.producer_id = 7;
            h.producer_epoch = 0;
            h.base_sequence = 0;
        },
    );
    append(&mut log, &[plain, compressed, idempotent]); // offsets 0-1, 2-3, 4-5
    append(
        &mut log,
        &[build_batch(
            0,
            0,
            &[kv(Some("k1"), Some("A")), kv(Some("k2"), Some("B"))],
        )],
    ); // 6-7
    append(&mut log, &[build_batch(0, 0, &[kv(Some("k3"), Some("x"))])]);
    let before = read_batches(&log, 0);

    let stats = log.compact(0).unwrap();

    assert_eq!(stats.batches_kept_whole, 2);
    assert_eq!(stats.superseded_records_removed, 2, "k1@0 and k2@1");
    let after = read_batches(&log, 0);
    let bases: Vec<i64> = after.iter().map(|(b, _)| *b).collect();
    assert_eq!(bases, vec![2, 4, 6, 8]);
    assert_eq!(after[0], before[1], "compressed batch byte for byte");
    assert_eq!(after[1], before[2], "idempotent batch byte for byte");
    assert_eq!(after[2], before[3]);
}

#[test]
fn compact_below_leaves_segments_above_the_high_watermark_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = repeated_keys_log(dir.path());
    let before = read_records(&log, 0);
    // Only segment 0 lies below 4; its keys are distinct, and the newer k1/k2 above the
    // high watermark may still be truncated, so they supersede nothing.
    let stats = log.compact_below(0, 4).unwrap();
    assert_eq!(stats.segments_read, 1);
    assert_eq!(stats.segments_cleaned, 0);
    assert_eq!(read_records(&log, 0), before);
    // A log with only an active segment has nothing to clean.
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    append(&mut log, &[build_batch(0, 0, &[kv(Some("k"), Some("a"))])]);
    assert_eq!(log.compact(0).unwrap(), CleanStats::default());
}

//! Model-based property test of the partition log: random sequences of appends (with small
//! segments, so they roll), `truncate_to`, retention by bytes, `DeleteRecords`, flushes,
//! close-and-reopen and simulated `kill -9` (the `Log` is leaked without running any
//! destructor, and a torn write is left at the end of the newest `.log`), checked after
//! every step against a plain in-memory model of (offset, leader epoch, key, value) batches
//! plus the log start and end offsets, the high watermark and the leader epoch cache.
//!
//! Replication rides along: appends carry a leader epoch that grows now and then (every
//! truncation stands for a leader change to a replica that lacked the tail), and a second
//! log, the follower, catches up now and then the way a fetcher would: cut its divergent
//! tail with `end_offset_for_epoch` (KIP-279), start over at the leader's log start if it
//! fell behind it, then `append_as_follower` what the leader's reads return. Afterwards it
//! must hold exactly the leader's batches, epochs included.
//!
//! ```text
//! ops ──▶ leader Log ◀──check──▶ Model (batches, lso, leo, hw, epoch cache)
//!            │ read
//!            ▼
//!        follower Log ──check──▶ same batches and epochs as the leader
//! ```

use std::io::Write;
use std::path::Path;

use proptest::prelude::*;
use tributary::log::{
    build_batch, decode_records, BatchHeader, Error, KeyValue, Log, LogConfig, UNDEFINED_EPOCH,
};

type Kv = (Option<Vec<u8>>, Option<Vec<u8>>);

#[derive(Debug, Clone)]
enum Op {
    /// One batch of 1..5 records in the current leader epoch; through `append_as_leader`
    /// (which uses the latest cached epoch) when the flag is set and that is the same epoch.
    Append(Vec<Kv>, bool),
    /// A new leader that had everything: the epoch grows by 1..=3.
    BumpEpoch(i32),
    /// Truncate to `leo * frac`, rounded down, as a new leader that lacked the tail: the epoch
    /// grows by one.
    Truncate(f64),
    /// `set_high_watermark(leo * frac)`, which may be out of range on either side.
    SetHighWatermark(f64),
    /// The follower catches up, fetching at most this many bytes at a time.
    Replicate(usize),
    /// Delete `leader-epoch-checkpoint` and reopen: the cache is rebuilt from the batches.
    LoseEpochCheckpoint,
    /// Apply retention with this `retention.bytes`.
    RetainBytes(u64),
    /// DeleteRecords up to `lso + (leo - lso) * frac`.
    DeleteRecords(f64),
    /// `flush_and_checkpoint`: the recovery point and the high watermark are checkpointed.
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
        8 => (proptest::collection::vec(kv(), 1..=5), any::<bool>())
            .prop_map(|(records, plain)| Op::Append(records, plain)),
        1 => (1..=3i32).prop_map(Op::BumpEpoch),
        1 => (0.0..=1.0f64).prop_map(Op::Truncate),
        1 => (-0.2..1.2f64).prop_map(Op::SetHighWatermark),
        2 => prop_oneof![Just(1usize), 100usize..2000, Just(usize::MAX)].prop_map(Op::Replicate),
        1 => Just(Op::LoseEpochCheckpoint),
        1 => (0u64..3000).prop_map(Op::RetainBytes),
        1 => (0.0..=1.0f64).prop_map(Op::DeleteRecords),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => torn_write().prop_map(Op::Crash),
    ]
}

/// What the log should hold: contiguous batches, the log start and end offsets, the high
/// watermark and the leader epoch cache.
#[derive(Debug, Default)]
struct Model {
    /// (base offset, leader epoch, records), in offset order.
    batches: Vec<(i64, i32, Vec<Kv>)>,
    log_start_offset: i64,
    log_end_offset: i64,
    /// Epoch of the next appends.
    epoch: i32,
    high_watermark: i64,
    /// Value of the last `flush_and_checkpoint`.
    checkpointed_high_watermark: Option<i64>,
    /// (epoch, start offset), following the cache's rules.
    epoch_cache: Vec<(i32, i64)>,
}

impl Model {
    fn append(&mut self, records: Vec<Kv>) -> i64 {
        let base = self.log_end_offset;
        self.log_end_offset += records.len() as i64;
        self.batches.push((base, self.epoch, records));
        self.assign_epoch(self.epoch, base);
        base
    }

    /// `LeaderEpochCache::assign`: newer epochs only, never starting before the latest entry;
    /// a newer epoch at the latest entry's start replaces it.
    fn assign_epoch(&mut self, epoch: i32, start_offset: i64) {
        match self.epoch_cache.last() {
            Some(&(latest, start)) if epoch <= latest || start_offset < start => {}
            Some(&(_, start)) if start == start_offset => {
                self.epoch_cache.pop();
                self.epoch_cache.push((epoch, start_offset));
            }
            _ => self.epoch_cache.push((epoch, start_offset)),
        }
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
            self.high_watermark = offset;
            self.epoch_cache.clear();
            return;
        }
        let keep = self
            .batches
            .iter()
            .position(|(base, _, records)| base + records.len() as i64 > offset)
            .expect("some batch holds offsets >= offset < log end offset");
        self.log_end_offset = self.batches[keep].0;
        self.batches.truncate(keep);
        self.log_start_offset = self.log_start_offset.min(self.log_end_offset);
        self.high_watermark = self.high_watermark.min(self.log_end_offset);
        let end = self.log_end_offset;
        self.epoch_cache.retain(|&(_, start)| start < end);
    }

    /// The log start offset moved up to `offset` (retention, `DeleteRecords`).
    fn advance_log_start(&mut self, offset: i64) {
        if offset <= self.log_start_offset {
            return;
        }
        self.log_start_offset = offset;
        self.high_watermark = self.high_watermark.max(offset);
        // `LeaderEpochCache::truncate_from_start`.
        if let Some(floor) = self.epoch_cache.iter().rposition(|&(_, s)| s <= offset) {
            self.epoch_cache.drain(..floor);
            self.epoch_cache[0].1 = offset;
        }
        // Every entry keeps a batch: none may start at the log end.
        let end = self.log_end_offset;
        self.epoch_cache.retain(|&(_, start)| start < end);
    }

    fn set_high_watermark(&mut self, hw: i64) {
        let clamped = hw.clamp(self.log_start_offset, self.log_end_offset);
        self.high_watermark = self.high_watermark.max(clamped);
    }

    /// What `Log::open` makes of the high watermark checkpoint.
    fn reopen(&mut self) {
        self.high_watermark = self
            .checkpointed_high_watermark
            .unwrap_or(self.log_start_offset)
            .min(self.log_end_offset)
            .max(self.log_start_offset);
    }

    /// Visible records: offsets >= log start offset.
    fn records(&self) -> Vec<(i64, Kv)> {
        self.batches
            .iter()
            .flat_map(|(base, _, records)| {
                records
                    .iter()
                    .enumerate()
                    .map(move |(i, kv)| (base + i as i64, kv.clone()))
            })
            .filter(|(offset, _)| *offset >= self.log_start_offset)
            .collect()
    }

    /// (base offset, epoch) of the batches that hold visible records.
    fn batch_epochs(&self) -> Vec<(i64, i32)> {
        self.batches
            .iter()
            .filter(|(base, _, records)| base + records.len() as i64 > self.log_start_offset)
            .map(|(base, epoch, _)| (*base, *epoch))
            .collect()
    }

    fn is_batch_boundary(&self, offset: i64) -> bool {
        offset == self.log_end_offset || self.batches.iter().any(|(base, _, _)| *base == offset)
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

/// (base offset, leader epoch) of every batch a read from the log start returns.
fn read_batch_epochs(log: &Log) -> Vec<(i64, i32)> {
    let data = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX)
        .expect("read from the log start offset");
    let mut out = Vec::new();
    let mut bytes = &data.records[..];
    while !bytes.is_empty() {
        let header = BatchHeader::parse(bytes).expect("batch header");
        out.push((header.base_offset, header.partition_leader_epoch));
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

/// What replication relies on: every visible batch at or after the first cache entry lies in
/// the range the cache gives its epoch, and the latest epoch ends at the log end offset.
fn check_epoch_cache(log: &Log) -> Result<(), TestCaseError> {
    let entries = log.epoch_entries();
    for pair in entries.windows(2) {
        prop_assert!(
            pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1,
            "{:?}",
            entries
        );
    }
    for (base, epoch) in read_batch_epochs(log) {
        let Some(&(floor_epoch, _)) = entries.iter().rev().find(|&&(_, s)| s <= base) else {
            continue;
        };
        prop_assert_eq!(floor_epoch, epoch, "batch at {} in {:?}", base, entries);
        let (found, end) = log.end_offset_for_epoch(epoch);
        prop_assert_eq!(found, epoch);
        prop_assert!(
            end > base,
            "epoch {} ends at {} before batch {}",
            epoch,
            end,
            base
        );
    }
    if let Some(&(latest, _)) = entries.last() {
        prop_assert_eq!(
            log.end_offset_for_epoch(latest + 1),
            (latest, log.log_end_offset())
        );
    }
    Ok(())
}

fn check(log: &Log, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.log_start_offset(), model.log_start_offset);
    prop_assert_eq!(log.log_end_offset(), model.log_end_offset);
    prop_assert_eq!(log.high_watermark(), model.high_watermark);
    let expected = model.records();
    prop_assert_eq!(&read_everything(log), &expected);
    prop_assert_eq!(&read_batch_by_batch(log), &expected);
    prop_assert_eq!(read_batch_epochs(log), model.batch_epochs());
    prop_assert_eq!(log.epoch_entries(), model.epoch_cache.clone());
    check_epoch_cache(log)
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

/// The follower's side of replication, as a fetcher does it: cut the divergent tail
/// (KIP-279), start over at the leader's log start if the follower fell below it, then fetch
/// at the log end offset until caught up, and move the log start up to the leader's.
fn catch_up(leader: &Log, follower: &mut Log, max_bytes: usize) -> Result<(), TestCaseError> {
    // Divergence: ask the leader where the follower's latest epoch ended there.
    for round in 0.. {
        prop_assert!(round < 10, "truncation does not converge");
        let Some(latest) = follower.latest_epoch() else {
            break;
        };
        let (leader_epoch, leader_end) = leader.end_offset_for_epoch(latest);
        let target = if leader_epoch == UNDEFINED_EPOCH {
            // The leader knows no epoch this old: everything from its first epoch on differs.
            leader
                .epoch_entries()
                .first()
                .map_or(leader.log_start_offset(), |&(_, start)| start)
        } else {
            let (follower_epoch, follower_end) = follower.end_offset_for_epoch(leader_epoch);
            if follower_epoch == UNDEFINED_EPOCH {
                follower.epoch_entries()[0].1
            } else {
                leader_end.min(follower_end)
            }
        };
        if target >= follower.log_end_offset() {
            break;
        }
        follower.truncate_to(target).expect("follower truncate");
    }
    if follower.log_end_offset() > leader.log_end_offset() {
        // No epoch to compare (the follower's cache is empty), and the leader's log is
        // shorter: Kafka's fetcher answers OFFSET_OUT_OF_RANGE this way.
        follower
            .truncate_to(leader.log_end_offset())
            .expect("follower truncate to the leader's end");
    }
    if follower.log_end_offset() < leader.log_start_offset() {
        follower
            .truncate_fully_and_start_at(leader.log_start_offset())
            .expect("follower restart");
    }
    while follower.log_end_offset() < leader.log_end_offset() {
        let data = leader
            .read(follower.log_end_offset(), max_bytes, i64::MAX)
            .expect("leader read at the follower's log end offset");
        let info = match follower.append_as_follower(&data.records) {
            // After DeleteRecords the leader's first batch may start below its log start
            // offset. A follower holding nothing at or above that log start restarts at the
            // batch (Kafka's `Partition.appendRecordsToFollowerOrFutureReplica` does the same
            // for an empty follower).
            Err(Error::UnexpectedAppendOffset { base_offset, .. })
                if base_offset < follower.log_end_offset()
                    && follower.log_end_offset() <= leader.log_start_offset() =>
            {
                follower
                    .truncate_fully_and_start_at(base_offset)
                    .expect("follower restart at the leader's first batch");
                follower.append_as_follower(&data.records)
            }
            other => other,
        }
        .expect("follower append");
        prop_assert!(info.num_records > 0);
    }
    if follower.log_start_offset() < leader.log_start_offset() {
        follower
            .delete_records_before(leader.log_start_offset())
            .expect("follower log start");
    }
    prop_assert_eq!(follower.log_start_offset(), leader.log_start_offset());
    prop_assert_eq!(follower.log_end_offset(), leader.log_end_offset());
    prop_assert_eq!(read_everything(follower), read_everything(leader));
    prop_assert_eq!(read_batch_epochs(follower), read_batch_epochs(leader));
    check_epoch_cache(follower)?;
    // Where an epoch with visible batches ended, the answer a leader gives its followers,
    // must not depend on which of the two answers. (Entries without batches may differ: a
    // rebuilt cache can hold a floor entry at the log start that the other never had.)
    for (_, epoch) in read_batch_epochs(leader) {
        prop_assert_eq!(
            follower.end_offset_for_epoch(epoch),
            leader.end_offset_for_epoch(epoch),
            "epoch {}",
            epoch
        );
    }
    Ok(())
}

fn run(
    dir: &Path,
    follower_dir: &Path,
    config: LogConfig,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut now_ms = 1_000_000;
    let mut log = Log::open(dir, config.clone(), now_ms).expect("open");
    let mut follower = Log::open(follower_dir, config.clone(), now_ms).expect("open follower");
    let mut model = Model::default();
    check(&log, &model)?;
    for op in ops {
        now_ms += 10;
        match op {
            Op::Append(records, plain) => {
                let refs: Vec<KeyValue<'_>> = records
                    .iter()
                    .map(|(k, v)| (k.as_deref(), v.as_deref()))
                    .collect();
                let mut batch = build_batch(0, now_ms, &refs);
                let latest = model.epoch_cache.last().map_or(0, |&(epoch, _)| epoch);
                let info = if plain && latest == model.epoch {
                    log.append_as_leader(&mut batch, now_ms)
                } else {
                    log.append_as_leader_with_epoch(&mut batch, now_ms, model.epoch)
                }
                .expect("append");
                let base = model.append(records);
                prop_assert_eq!(info.base_offset, base);
                prop_assert_eq!(info.last_offset, model.log_end_offset - 1);
            }
            Op::BumpEpoch(by) => model.epoch += by,
            Op::Truncate(frac) => {
                let offset = (model.log_end_offset as f64 * frac).floor() as i64;
                if offset < model.log_start_offset {
                    // A leader never restarts below its own log start; a follower could not
                    // tell such a log from its own without epochs in common. Start the
                    // follower over too.
                    follower
                        .truncate_fully_and_start_at(0)
                        .expect("follower reset");
                }
                log.truncate_to(offset).expect("truncate");
                model.truncate_to(offset);
                model.epoch += 1;
            }
            Op::SetHighWatermark(frac) => {
                let hw = (model.log_end_offset as f64 * frac).floor() as i64;
                log.set_high_watermark(hw);
                model.set_high_watermark(hw);
            }
            Op::Replicate(max_bytes) => catch_up(&log, &mut follower, max_bytes)?,
            Op::LoseEpochCheckpoint => {
                drop(log);
                std::fs::remove_file(dir.join("leader-epoch-checkpoint")).ok();
                log = Log::open(dir, config.clone(), now_ms).expect("reopen");
                model.reopen();
                // The rebuild sees only the batches still on disk, so it may know a floor
                // entry the history-based model dropped (or the reverse): check the rules
                // on what it rebuilt, then adopt it.
                check_epoch_cache(&log)?;
                model.epoch_cache = log.epoch_entries();
                if let Some(&(latest, _)) = model.epoch_cache.last() {
                    model.epoch = model.epoch.max(latest);
                }
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
                model.advance_log_start(after);
            }
            Op::DeleteRecords(frac) => {
                let span = (model.log_end_offset - model.log_start_offset) as f64;
                let offset = model.log_start_offset + (span * frac).floor() as i64;
                let low_watermark = log.delete_records_before(offset).expect("delete records");
                model.advance_log_start(offset);
                prop_assert_eq!(low_watermark, model.log_start_offset);
                prop_assert!(log.delete_records_before(model.log_end_offset + 1).is_err());
            }
            Op::Flush => {
                log.flush_and_checkpoint().expect("flush");
                prop_assert_eq!(log.recovery_point(), model.log_end_offset);
                model.checkpointed_high_watermark = Some(model.high_watermark);
            }
            Op::Reopen => {
                drop(log);
                log = Log::open(dir, config.clone(), now_ms).expect("reopen");
                model.reopen();
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
                model.reopen();
            }
        }
        check(&log, &model)?;
    }
    catch_up(&log, &mut follower, usize::MAX)
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
        let follower_dir = tempfile::tempdir().expect("temp dir");
        let config = LogConfig {
            segment_bytes,
            index_interval_bytes,
            flush_messages,
            retention_ms: -1,
            ..LogConfig::default()
        };
        run(dir.path(), follower_dir.path(), config, ops)?;
    }
}

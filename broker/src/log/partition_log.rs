//! [`Log`]: the log of one partition, a directory of [`LogSegment`]s (Kafka's `UnifiedLog`
//! and `LocalLog` folded together).
//!
//! ```text
//! append_as_leader ──validate──▶ assign offsets, stamp epoch ──▶ maybe roll ──▶ active segment
//! append_as_follower ──validate, offsets as fetched──▶ roll per batch ──▶ active segment
//! read ──floor(base offset)──▶ segment ──index + scan──▶ whole batches, raw bytes
//! apply_retention / delete_records_before ──▶ delete oldest segments, advance log start
//! open ──▶ load segments below the recovery point, recover the rest (always the last)
//!      ──▶ producer state: latest snapshot at or below the log end, replay the batches after it
//! ```
//!
//! Idempotent producers (KIP-98): `append_as_leader` checks every batch against the
//! [`ProducerStateManager`] before writing anything; a retried batch is answered with the
//! offsets it got the first time ([`AppendInfo::duplicate`]). The state is snapshotted to
//! `<offset>.snapshot` on every roll (named by the new segment's base offset) and on a clean
//! close, so recovery replays at most the batches after the latest snapshot.
//!
//! Replication (KIP-101, KIP-279): every batch carries the epoch of the leader that appended
//! it, and the [`LeaderEpochCache`] (`leader-epoch-checkpoint`) remembers where each epoch
//! started, so a follower can find where its log diverges from the leader's
//! ([`Log::end_offset_for_epoch`]) and [`Log::truncate_to`] there. The cache is assigned
//! before batches are written and truncated after the log is, so after a crash it is at or
//! ahead of the log, never behind, and `open` cuts what runs ahead. The high watermark lives
//! here too and is checkpointed to `high-watermark-checkpoint` with the recovery point.
//!
//! The log is single-writer: mutating calls take `&mut self`, reads take `&self`; the
//! caller wraps it in a lock. All file work is blocking; call it from a blocking context.
//! See `docs/design/log.md` for the on-disk layout, recovery and retention rules.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::log::batch::{
    set_base_offset, set_partition_leader_epoch, split_batches_summary, BatchSummary,
};
use crate::log::cleaner::{self, CleanStats};
use crate::log::error::{Error, Result};
use crate::log::leader_epoch::{LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use crate::log::producer_state::{
    delete_snapshots_after, delete_snapshots_older_than, read_latest_snapshot, Check,
    ProducerStateManager,
};
use crate::log::segment::{
    LogSegment, INDEX_FILE_SUFFIX, LOG_FILE_SUFFIX, MAX_RELATIVE_OFFSET, TIME_INDEX_FILE_SUFFIX,
};

/// File holding the log start offset, so `DeleteRecords` survives a restart.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// File holding the recovery point: every batch below it is on disk (fsynced).
pub const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
/// File holding the high watermark (just the number), written with the recovery point by
/// [`Log::flush_and_checkpoint`]. Kafka keeps one `replication-offset-checkpoint` per log
/// directory; like our other checkpoints, ours is per partition.
pub const HIGH_WATERMARK_FILE: &str = "high-watermark-checkpoint";
/// Present only between a clean shutdown and the next open: the log was fully flushed, so
/// the open trusts the last segment instead of validating it batch by batch (Kafka's
/// `.kafka_cleanshutdown`). Structural checks of its tail still run.
pub const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Suffixes of files a crash may leave behind; `open` removes them.
const STRAY_SUFFIXES: [&str; 4] = [".tmp", ".deleted", ".cleaned", ".swap"];
/// Version line of the checkpoint files (Kafka's checkpoint files start with one too).
const CHECKPOINT_VERSION: &str = "0";

/// Per-partition log settings, named after Kafka's topic configs. `Default` is Kafka's
/// defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when an append would make the active segment larger.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment is older than this and not empty.
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose largest timestamp is older; -1 = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is larger; -1 = unlimited.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes between two offset index entries.
    pub index_interval_bytes: u32,
    /// `flush.messages`: fsync after this many appended records; `u64::MAX` = never by count.
    pub flush_messages: u64,
    /// `flush.ms`: fsync when the oldest unflushed append is this old; `i64::MAX` = never.
    pub flush_ms: i64,
    /// `max.message.bytes`: the largest record batch accepted.
    pub max_message_bytes: u32,
    /// `delete.retention.ms`: how long compaction keeps a tombstone (a record with a null
    /// value) after its segment was last modified.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        const WEEK_MS: i64 = 7 * 24 * 60 * 60 * 1000;
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: WEEK_MS,
            retention_ms: WEEK_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            flush_messages: u64::MAX,
            flush_ms: i64::MAX,
            max_message_bytes: 1_048_588,
            delete_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// Largest batch max timestamp of the append.
    pub max_timestamp: i64,
    /// Log start offset after the append (for the produce response).
    pub log_start_offset: i64,
    /// Records appended; 0 for a duplicate.
    pub num_records: u64,
    /// True if the batches were retries of batches already in the log (an idempotent
    /// producer resending after a lost response): nothing was written, and the offsets are
    /// the ones the original batches got.
    pub duplicate: bool,
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchData {
    /// Whole record batches as stored, contiguous; may be empty.
    pub records: Bytes,
    /// Log start offset at the time of the read.
    pub log_start_offset: i64,
    /// Log end offset at the time of the read.
    pub log_end_offset: i64,
}

/// The log of one partition.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, never empty; the last one is the active segment.
    segments: Vec<LogSegment>,
    /// First offset visible to consumers; persisted in `log-start-offset`.
    log_start_offset: i64,
    /// Offset the next appended record gets.
    log_end_offset: i64,
    /// Every batch below this offset has been fsynced.
    recovery_point: i64,
    /// Value last written to `recovery-point-offset-checkpoint`.
    checkpointed_recovery_point: i64,
    /// Records appended since the last fsync.
    unflushed_messages: u64,
    /// Time of the oldest append not yet fsynced.
    first_unflushed_append_ms: Option<i64>,
    /// Idempotent-producer state after every batch below `log_end_offset`.
    producer_state: ProducerStateManager,
    /// Where each leader epoch starts; persisted in `leader-epoch-checkpoint`, at or ahead of
    /// the log on disk.
    leader_epoch_cache: LeaderEpochCache,
    /// Offsets below it are replicated to the whole ISR and visible to consumers; always in
    /// `[log_start_offset, log_end_offset]`. The replication layer advances it.
    high_watermark: i64,
    /// Value last written to `high-watermark-checkpoint`, `None` if the file is missing.
    checkpointed_high_watermark: Option<i64>,
}

impl Log {
    /// Opens the log in `dir` (creating the directory if missing) and recovers it: stray
    /// files are removed, segments at or after the recovery point (always including the
    /// last) are validated batch by batch and truncated at the first invalid one, and any
    /// index that fails its sanity checks is rebuilt.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log> {
        fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        let entries = fs::read_dir(dir).map_err(Error::io("listing", dir))?;
        for entry in entries {
            let entry = entry.map_err(Error::io("listing", dir))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if STRAY_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                tracing::info!(file = %path.display(), "removing stray file");
                fs::remove_file(&path).map_err(Error::io("removing", &path))?;
            } else if let Some(base) = parse_segment_name(&name, LOG_FILE_SUFFIX) {
                bases.push(base);
            } else if let Some(base) = parse_segment_name(&name, INDEX_FILE_SUFFIX)
                .or_else(|| parse_segment_name(&name, TIME_INDEX_FILE_SUFFIX))
            {
                index_files.push((base, path));
            }
        }
        bases.sort_unstable();
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                tracing::info!(file = %path.display(), "removing index without a segment");
                fs::remove_file(&path).map_err(Error::io("removing", &path))?;
            }
        }

        let start_checkpoint = read_checkpoint(dir, LOG_START_OFFSET_FILE)?;
        let recovery_checkpoint = read_checkpoint(dir, RECOVERY_POINT_FILE)?.unwrap_or(0);
        let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean_shutdown = clean_marker.exists();
        let interval = config.index_interval_bytes;
        let mut segments: Vec<LogSegment> = Vec::with_capacity(bases.len().max(1));
        let mut recovered = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let is_last = next_base.is_none();
            let below_recovery_point =
                clean_shutdown || next_base.is_some_and(|next| next <= recovery_checkpoint);
            let path = dir.join(format!("{base:020}{LOG_FILE_SUFFIX}"));
            if below_recovery_point {
                let segment = LogSegment::load(dir, base, interval, next_base, now_ms)
                    .map_err(Error::io("loading segment", &path))?;
                segments.push(segment);
                continue;
            }
            let (segment, outcome) = LogSegment::open_and_recover(dir, base, interval, now_ms)
                .map_err(Error::io("recovering segment", &path))?;
            recovered.push(segments.len());
            segments.push(segment);
            if outcome.truncated_bytes > 0 && !is_last {
                // Everything after a hole is unreachable: drop the later segments (Kafka's
                // LogLoader does the same).
                for &later in &bases[i + 1..] {
                    tracing::warn!(
                        base_offset = later,
                        "deleting segment after a truncated one"
                    );
                    for suffix in [LOG_FILE_SUFFIX, INDEX_FILE_SUFFIX, TIME_INDEX_FILE_SUFFIX] {
                        let p = dir.join(format!("{later:020}{suffix}"));
                        remove_if_exists(&p)?;
                    }
                }
                break;
            }
        }
        if segments.is_empty() {
            let base = start_checkpoint.unwrap_or(0).max(0);
            let segment = LogSegment::create(dir, base, interval, now_ms)
                .map_err(Error::io("creating segment in", dir))?;
            segments.push(segment);
        }
        // Recovered segments were possibly truncated and had their indexes rebuilt: make that
        // durable before claiming a recovery point at the log end.
        for &i in &recovered {
            let segment = &mut segments[i];
            let path = segment.log_path().to_path_buf();
            segment.flush().map_err(Error::io("flushing", path))?;
        }

        if clean_shutdown {
            // From here on appends may happen: a crash must not find the marker.
            fs::remove_file(&clean_marker).map_err(Error::io("removing", &clean_marker))?;
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(Error::io("syncing", dir))?;
        }

        let first_base = segments[0].base_offset();
        let log_end_offset = segments[segments.len() - 1].next_offset();
        let log_start_offset = start_checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end_offset);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset,
            log_end_offset,
            recovery_point: log_end_offset,
            checkpointed_recovery_point: recovery_checkpoint,
            unflushed_messages: 0,
            first_unflushed_append_ms: None,
            producer_state: ProducerStateManager::new(),
            leader_epoch_cache: LeaderEpochCache::new(dir),
            high_watermark: log_start_offset,
            checkpointed_high_watermark: None,
        };
        log.load_producer_state()?;
        log.load_leader_epoch_cache()?;
        if start_checkpoint != Some(log_start_offset) {
            write_checkpoint(&log.dir, LOG_START_OFFSET_FILE, log_start_offset)?;
        }
        log.checkpoint_recovery_point()?;
        let hw_checkpoint = read_high_watermark(&log.dir)?;
        log.checkpointed_high_watermark = hw_checkpoint;
        log.high_watermark = hw_checkpoint
            .unwrap_or(log_start_offset)
            .min(log_end_offset)
            .max(log_start_offset);
        tracing::debug!(
            dir = %log.dir.display(),
            log_start_offset,
            log_end_offset,
            high_watermark = log.high_watermark,
            latest_leader_epoch = log.leader_epoch_cache.latest_epoch(),
            segments = log.segments.len(),
            "opened log"
        );
        Ok(log)
    }

    /// Validates every batch in `records` (one or more, as a producer sent them), then
    /// assigns offsets from the log end offset by rewriting each batch's base offset and
    /// appends the bytes unchanged otherwise. Nothing is appended if any batch is invalid.
    /// Batches are stamped with the latest leader epoch in the cache, or 0 for a log that
    /// has none (a single broker leads its partitions in epoch 0, which is what Metadata
    /// reports); [`Log::append_as_leader_with_epoch`] names the epoch.
    pub fn append_as_leader(&mut self, records: &mut [u8], now_ms: i64) -> Result<AppendInfo> {
        let leader_epoch = self.leader_epoch_cache.latest_epoch().unwrap_or(0);
        self.append_as_leader_with_epoch(records, now_ms, leader_epoch)
    }

    /// [`Log::append_as_leader`] for the leader of `leader_epoch`: every batch's
    /// `partitionLeaderEpoch` is set to it (outside the CRC, so nothing is recomputed), and a
    /// new epoch is recorded in the leader epoch cache as starting at the first offset it
    /// appends. An epoch older than the cache's latest is refused with
    /// [`Error::StaleLeaderEpoch`]: another broker has led the partition since.
    pub fn append_as_leader_with_epoch(
        &mut self,
        records: &mut [u8],
        now_ms: i64,
        leader_epoch: i32,
    ) -> Result<AppendInfo> {
        self.check_leader_epoch(leader_epoch)?;
        let mut batches = split_batches_summary(records)
            .map_err(|(position, source)| Error::InvalidBatch { position, source })?;
        for (_, summary) in &batches {
            let batch_bytes = summary.header.total_size();
            if batch_bytes > self.config.max_message_bytes as usize {
                return Err(Error::MessageTooLarge {
                    batch_bytes,
                    max_message_bytes: self.config.max_message_bytes,
                });
            }
        }
        if let Some(info) = self.check_producer_state(&batches, now_ms)? {
            return Ok(info);
        }
        let base_offset = self.log_end_offset;
        let mut next_offset = base_offset;
        let mut max_timestamp = -1;
        let mut num_records = 0u64;
        for (position, summary) in &mut batches {
            set_base_offset(&mut records[*position..], next_offset);
            set_partition_leader_epoch(&mut records[*position..], leader_epoch);
            summary.header.base_offset = next_offset;
            summary.header.partition_leader_epoch = leader_epoch;
            next_offset = summary.header.next_offset();
            max_timestamp = max_timestamp.max(summary.header.max_timestamp);
            // records_count >= 1 was validated.
            num_records += summary.header.records_count as u64;
        }
        self.maybe_roll(records.len() as u64, next_offset - 1, now_ms)?;
        // Before the data: the cache may run ahead of the log after a crash, never behind it.
        self.leader_epoch_cache.assign(leader_epoch, base_offset)?;
        let active = self.active_segment_mut();
        let path = active.log_path().to_path_buf();
        if let Err(e) = active.append(records, &batches, now_ms) {
            self.undo_epoch_assignments();
            return Err(Error::io("appending to", path)(e));
        }
        self.log_end_offset = next_offset;
        for (_, summary) in &batches {
            self.producer_state
                .update(&summary.header, summary.header.base_offset, now_ms);
        }
        self.unflushed_messages += num_records;
        self.first_unflushed_append_ms.get_or_insert(now_ms);
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            max_timestamp,
            log_start_offset: self.log_start_offset,
            num_records,
            duplicate: false,
        })
    }

    /// Appends batches fetched from the leader, whose offsets and leader epochs are already
    /// assigned and are kept as they are. `records` must be whole batches (a fetch response's
    /// records), the first starting exactly at the log end offset and each following batch
    /// right after the previous one; otherwise [`Error::UnexpectedAppendOffset`] and nothing
    /// is appended. Empty `records` append nothing.
    ///
    /// Every batch is validated as a leader append validates it (structure and CRC; the
    /// leader applied `max.message.bytes` already). The producer state is updated the way
    /// recovery replays the log, without the sequence checks, so this replica deduplicates
    /// an idempotent producer's retries should it become leader. Each batch's epoch is
    /// assigned in the leader epoch cache at its base offset. Rolls are decided batch by
    /// batch, so a follower fed the leader's batches cuts its segments where the leader did.
    /// The broker's wall clock stands in for the append time (`segment.ms`, `flush.ms`).
    pub fn append_as_follower(&mut self, records: &[u8]) -> Result<AppendInfo> {
        self.append_replicated(records, false)
    }

    /// [`Log::append_as_follower`] for a leader whose log has holes: batches must start at
    /// or after the log end offset and each at or after the previous one's end, but may skip
    /// offsets. Compaction removes batches and leaves such holes (Kafka's follower accepts
    /// them the same way), so a follower that catches up on a compacted partition must use
    /// this; the strict variant catches a fetcher that appends at the wrong offset.
    pub fn append_as_follower_with_gaps(&mut self, records: &[u8]) -> Result<AppendInfo> {
        self.append_replicated(records, true)
    }

    fn append_replicated(&mut self, records: &[u8], allow_gaps: bool) -> Result<AppendInfo> {
        if records.is_empty() {
            return Ok(AppendInfo {
                base_offset: self.log_end_offset,
                last_offset: self.log_end_offset - 1,
                max_timestamp: -1,
                log_start_offset: self.log_start_offset,
                num_records: 0,
                duplicate: false,
            });
        }
        let batches = split_batches_summary(records)
            .map_err(|(position, source)| Error::InvalidBatch { position, source })?;
        let mut expected_offset = self.log_end_offset;
        for (position, summary) in &batches {
            let base_offset = summary.header.base_offset;
            let continues = if allow_gaps {
                base_offset >= expected_offset
            } else {
                base_offset == expected_offset
            };
            if !continues {
                return Err(Error::UnexpectedAppendOffset {
                    dir: self.dir.clone(),
                    position: *position,
                    expected_offset,
                    base_offset,
                });
            }
            expected_offset = summary.header.next_offset();
        }
        let now_ms = self.segments_created_fallback_ms();
        // An entry at the log end has no batch: this replica became leader and appended
        // nothing before losing the leadership. The leader's batches decide that range now
        // (Kafka's `truncateTo` clears such an entry for the same reason).
        self.leader_epoch_cache
            .truncate_from_end(self.log_end_offset)?;
        // Before the data, as for a leader append.
        self.leader_epoch_cache.assign_all(
            batches
                .iter()
                .map(|(_, s)| (s.header.partition_leader_epoch, s.header.base_offset)),
        )?;
        if let Err(e) = self.write_replicated(records, &batches, now_ms) {
            self.undo_epoch_assignments();
            return Err(e);
        }
        if self.unflushed_messages >= self.config.flush_messages {
            self.flush()?;
        }
        let first = &batches[0].1.header;
        let last = &batches[batches.len() - 1].1.header;
        Ok(AppendInfo {
            base_offset: first.base_offset,
            last_offset: last.last_offset(),
            max_timestamp: batches
                .iter()
                .map(|(_, s)| s.header.max_timestamp)
                .max()
                .unwrap_or(-1),
            log_start_offset: self.log_start_offset,
            // records_count >= 1 was validated.
            num_records: batches
                .iter()
                .map(|(_, s)| s.header.records_count as u64)
                .sum(),
            duplicate: false,
        })
    }

    /// Writes validated follower batches in runs that fit the active segment, rolling before
    /// each run as a leader would before each of these batches. The log end offset, producer
    /// state and flush counters follow each run, so a failed write leaves the log consistent
    /// with what was written before it.
    fn write_replicated(
        &mut self,
        records: &[u8],
        batches: &[(usize, BatchSummary)],
        now_ms: i64,
    ) -> Result<()> {
        let mut first = 0;
        while first < batches.len() {
            let (start, summary) = batches[first];
            let mut run_bytes = summary.header.total_size() as u64;
            self.maybe_roll(run_bytes, summary.header.last_offset(), now_ms)?;
            let active = self.active_segment();
            let mut end = first + 1;
            while let Some((_, next)) = batches.get(end) {
                let new_size = active.size() + run_bytes + next.header.total_size() as u64;
                let fits = new_size <= self.config.segment_bytes
                    && new_size <= u64::from(u32::MAX)
                    && next.header.last_offset() - active.base_offset() <= MAX_RELATIVE_OFFSET;
                if !fits {
                    break;
                }
                run_bytes += next.header.total_size() as u64;
                end += 1;
            }
            let run: Vec<(usize, BatchSummary)> = batches[first..end]
                .iter()
                .map(|&(position, summary)| (position - start, summary))
                .collect();
            // `run_bytes` sums sizes of batches inside `records`, so it fits in usize.
            let bytes = &records[start..start + run_bytes as usize];
            let active = self.active_segment_mut();
            let path = active.log_path().to_path_buf();
            active
                .append(bytes, &run, now_ms)
                .map_err(Error::io("appending to", path))?;
            for (_, summary) in &run {
                let header = summary.header;
                self.log_end_offset = header.next_offset();
                self.producer_state
                    .load_from_batches([(header, header.base_offset)]);
                // records_count >= 1 was validated.
                self.unflushed_messages += header.records_count as u64;
            }
            self.first_unflushed_append_ms.get_or_insert(now_ms);
            first = end;
        }
        Ok(())
    }

    /// After a failed write: drops the epochs assigned for it (entries at or past the log
    /// end offset). A failure here is logged only; the write's error is the one to report,
    /// and the next open truncates the file the same way.
    fn undo_epoch_assignments(&mut self) {
        if let Err(e) = self
            .leader_epoch_cache
            .truncate_from_end(self.log_end_offset)
        {
            tracing::error!(
                dir = %self.dir.display(),
                error = %e,
                "cannot undo a leader epoch assignment after a failed append"
            );
        }
    }

    /// The idempotent-producer checks of an append, before anything is written: `Ok(None)`
    /// to go on and append, `Ok(Some(info))` for a retry of batches already in the log
    /// (answered with their original offsets), `Err` for a sequence or epoch error. Later
    /// batches of one request are checked against the state after the earlier ones. As in
    /// Kafka's `analyzeAndValidateProducerState`, the first duplicate decides for the whole
    /// request; clients send one batch per partition, so there is nothing else to decide.
    fn check_producer_state(
        &self,
        batches: &[(usize, crate::log::batch::BatchSummary)],
        now_ms: i64,
    ) -> Result<Option<AppendInfo>> {
        let mut scratch: Option<ProducerStateManager> = None;
        let mut next_offset = self.log_end_offset;
        for (i, (_, summary)) in batches.iter().enumerate() {
            let header = &summary.header;
            let state = scratch.as_ref().unwrap_or(&self.producer_state);
            let check = state.check(header).map_err(|source| Error::Producer {
                dir: self.dir.clone(),
                source,
            })?;
            match check {
                Check::Append => {
                    let base_offset = next_offset;
                    next_offset += i64::from(header.last_offset_delta) + 1;
                    if i + 1 < batches.len() && header.producer_id >= 0 {
                        scratch
                            .get_or_insert_with(|| self.producer_state.clone())
                            .update(header, base_offset, now_ms);
                    }
                }
                Check::Duplicate {
                    base_offset,
                    last_offset,
                    timestamp,
                } => {
                    tracing::debug!(
                        dir = %self.dir.display(),
                        producer_id = header.producer_id,
                        base_sequence = header.base_sequence,
                        base_offset,
                        "duplicate batch from an idempotent producer; appending nothing"
                    );
                    return Ok(Some(AppendInfo {
                        base_offset,
                        last_offset,
                        max_timestamp: timestamp,
                        log_start_offset: self.log_start_offset,
                        num_records: 0,
                        duplicate: true,
                    }));
                }
            }
        }
        Ok(None)
    }

    /// Rebuilds the producer state from disk: deletes snapshots above the log end offset,
    /// loads the latest remaining one (or starts empty), and replays the headers of every
    /// batch after it (Kafka's `UnifiedLog.rebuildProducerState`).
    fn load_producer_state(&mut self) -> Result<()> {
        delete_snapshots_after(&self.dir, self.log_end_offset)?;
        let first_base = self.segments[0].base_offset();
        let (from, state) = match read_latest_snapshot(&self.dir)? {
            Some((offset, state)) => (offset.max(first_base), state),
            None => (first_base, ProducerStateManager::new()),
        };
        self.producer_state = state;
        let mut replayed = 0u64;
        let first = self
            .segments
            .partition_point(|s| s.base_offset() <= from)
            .saturating_sub(1);
        for segment in &self.segments[first..] {
            let located = segment
                .translate_offset(from)
                .map_err(Error::io("reading", segment.log_path()))?;
            let Some((mut position, _)) = located else {
                continue;
            };
            while let Some(header) = segment
                .read_header_at(position)
                .map_err(Error::io("reading", segment.log_path()))?
            {
                if header.base_offset >= from {
                    self.producer_state
                        .load_from_batches([(header, header.base_offset)]);
                    replayed += 1;
                }
                position += header.total_size() as u64;
            }
        }
        tracing::debug!(
            dir = %self.dir.display(),
            snapshot_offset = from,
            replayed_batches = replayed,
            producers = self.producer_state.len(),
            "loaded producer state"
        );
        Ok(())
    }

    /// Loads `leader-epoch-checkpoint`, or rebuilds it from the batch headers if it is
    /// missing or unreadable, then moves its start up to the log start offset (the file may
    /// predate the last `DeleteRecords`) and drops every entry at or past the log end (the
    /// file is written before the batches, and recovery may have cut a torn tail): every
    /// entry left has a batch.
    fn load_leader_epoch_cache(&mut self) -> Result<()> {
        match LeaderEpochCache::load(&self.dir)? {
            Some(cache) => self.leader_epoch_cache = cache,
            None => self.rebuild_leader_epoch_cache()?,
        }
        self.leader_epoch_cache
            .truncate_from_start(self.log_start_offset)?;
        self.leader_epoch_cache
            .truncate_from_end(self.log_end_offset)?;
        Ok(())
    }

    /// Kafka's rebuild from the log: the epoch of every batch header, oldest first, assigned
    /// at its base offset (only the 61-byte headers are read). Persisted when the log has
    /// batches, so the next open does not scan again; an empty log writes nothing.
    fn rebuild_leader_epoch_cache(&mut self) -> Result<()> {
        let mut assignments: Vec<(i32, i64)> = Vec::new();
        let mut batches = 0u64;
        for segment in &self.segments {
            let mut position = 0;
            while let Some(header) = segment
                .read_header_at(position)
                .map_err(Error::io("reading", segment.log_path()))?
            {
                if assignments.last().map(|&(epoch, _)| epoch)
                    != Some(header.partition_leader_epoch)
                {
                    assignments.push((header.partition_leader_epoch, header.base_offset));
                }
                batches += 1;
                position += header.total_size() as u64;
            }
        }
        let mut cache = LeaderEpochCache::new(&self.dir);
        cache.assign_all_in_memory(assignments);
        if batches > 0 {
            cache.persist()?;
            tracing::info!(
                dir = %self.dir.display(),
                batches,
                entries = cache.entries().len(),
                "rebuilt the leader epoch cache from the log"
            );
        }
        self.leader_epoch_cache = cache;
        Ok(())
    }

    /// Records that `leader_epoch` starts at `start_offset`, normally the log end offset when
    /// this replica becomes leader (Kafka's `maybeAssignEpochStartOffset` in `makeLeader`),
    /// so followers asking where the previous epoch ended get this offset even before the
    /// new leader appends. Ignored if the epoch is already the latest; an older one is
    /// refused with [`Error::StaleLeaderEpoch`], since epochs in a log never go backwards.
    ///
    /// Such an entry has no batch until the first append of the epoch. Becoming a follower
    /// again ([`Log::append_as_follower`], or [`Log::truncate_to`] at or past the log end)
    /// removes it, and so does the next `open` (which keeps only entries with batches).
    pub fn assign_epoch(&mut self, leader_epoch: i32, start_offset: i64) -> Result<()> {
        self.check_leader_epoch(leader_epoch)?;
        self.leader_epoch_cache.assign(leader_epoch, start_offset)?;
        Ok(())
    }

    /// Refuses an epoch older than the cache's latest: the caller has been replaced as leader.
    fn check_leader_epoch(&self, leader_epoch: i32) -> Result<()> {
        match self.leader_epoch_cache.latest_epoch() {
            Some(latest_epoch) if leader_epoch < latest_epoch => Err(Error::StaleLeaderEpoch {
                dir: self.dir.clone(),
                leader_epoch,
                latest_epoch,
            }),
            _ => Ok(()),
        }
    }

    /// The newest leader epoch that appended to this log (or was assigned), `None` if none.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.leader_epoch_cache.latest_epoch()
    }

    /// Kafka's `OffsetsForLeaderEpoch` answer: the largest epoch at or below `epoch` that this
    /// log knows, and the offset where it ended (the start of the next epoch, or the log end
    /// offset for the latest). `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)` = (-1, -1) when
    /// `epoch` is undefined or older than every epoch the log knows.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.leader_epoch_cache
            .end_offset_for(epoch, self.log_end_offset)
            .unwrap_or((UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET))
    }

    /// The leader epoch cache as (epoch, start offset) pairs, oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.leader_epoch_cache
            .entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    /// Offsets below the high watermark are replicated to every in-sync replica; consumers
    /// read up to it (callers pass it as `max_offset`).
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Advances the high watermark to `hw`, clamped to `[log_start_offset, log_end_offset]`.
    /// It never moves back here: a lower value is ignored (a follower may learn an older one
    /// from a late response). Only truncation lowers it. A single replica sets it to the log
    /// end offset after each append.
    pub fn set_high_watermark(&mut self, hw: i64) {
        let clamped = hw.clamp(self.log_start_offset, self.log_end_offset);
        self.high_watermark = self.high_watermark.max(clamped);
    }

    /// The idempotent-producer state (for inspection and tests).
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producer_state
    }

    /// Rolls if the append would overflow `segment.bytes` or the relative offset range, or if
    /// the active segment is older than `segment.ms`; an empty segment is never rolled.
    fn maybe_roll(&mut self, append_bytes: u64, last_offset: i64, now_ms: i64) -> Result<()> {
        let active = self.active_segment();
        if active.is_empty() {
            return Ok(());
        }
        let new_size = active.size() + append_bytes;
        let full = new_size > self.config.segment_bytes || new_size > u64::from(u32::MAX);
        let expired = now_ms.saturating_sub(active.created_ms()) > self.config.segment_ms;
        let offset_overflow = last_offset - active.base_offset() > MAX_RELATIVE_OFFSET;
        if full || expired || offset_overflow {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment (final time index entry, fsync) and starts a new one at the
    /// log end offset. Everything below it is then durable, so the recovery point moves there.
    fn roll(&mut self, now_ms: i64) -> Result<()> {
        let new_base = self.log_end_offset;
        let active = self.active_segment_mut();
        let path = active.log_path().to_path_buf();
        active
            .on_become_inactive()
            .map_err(Error::io("flushing", path))?;
        let segment = LogSegment::create(
            &self.dir,
            new_base,
            self.config.index_interval_bytes,
            now_ms,
        )
        .map_err(Error::io("creating segment in", &self.dir))?;
        self.segments.push(segment);
        // The state now covers exactly the batches below the new segment: snapshot it under
        // the segment's base offset, so recovery replays at most the active segment.
        self.producer_state.write_snapshot(&self.dir, new_base)?;
        self.recovery_point = new_base;
        self.unflushed_messages = 0;
        self.first_unflushed_append_ms = None;
        tracing::debug!(dir = %self.dir.display(), base_offset = new_base, "rolled segment");
        self.checkpoint_recovery_point()
    }

    /// Reads whole batches from `fetch_offset`: at most `max_bytes` (but always at least one
    /// batch if one is available, KIP-74), only batches entirely below `max_offset` (the
    /// high watermark for consumers, the log end offset for followers). The first batch may
    /// start before `fetch_offset`; clients skip the records below it.
    pub fn read(&self, fetch_offset: i64, max_bytes: usize, max_offset: i64) -> Result<FetchData> {
        self.read_batches(fetch_offset, max_bytes, max_offset, true)
    }

    /// [`Log::read`] with the KIP-74 exception optional: with `min_one_batch` false, a first
    /// batch larger than `max_bytes` is not returned (Kafka's `minOneMessage`, which a fetch
    /// grants only to the first partition that has data).
    pub fn read_batches(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<FetchData> {
        if fetch_offset < self.log_start_offset || fetch_offset > self.log_end_offset {
            return Err(self.out_of_range(fetch_offset));
        }
        let mut out: Vec<u8> = Vec::new();
        if fetch_offset < self.log_end_offset && fetch_offset < max_offset {
            let first = self
                .segments
                .partition_point(|s| s.base_offset() <= fetch_offset)
                .saturating_sub(1);
            let mut remaining = max_bytes;
            let mut start = true;
            for segment in &self.segments[first..] {
                let position = if start {
                    match segment
                        .translate_offset(fetch_offset)
                        .map_err(Error::io("reading", segment.log_path()))?
                    {
                        Some((position, _)) => position,
                        None => {
                            start = false;
                            continue;
                        }
                    }
                } else {
                    0
                };
                start = false;
                let (bytes, reached_end) = segment
                    .read(
                        position,
                        remaining,
                        max_offset,
                        min_one_batch && out.is_empty(),
                    )
                    .map_err(Error::io("reading", segment.log_path()))?;
                remaining = remaining.saturating_sub(bytes.len());
                if out.is_empty() {
                    out = bytes;
                } else {
                    out.extend_from_slice(&bytes);
                }
                if !reached_end || remaining == 0 {
                    break;
                }
            }
        }
        Ok(FetchData {
            records: Bytes::from(out),
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
        })
    }

    /// The earliest offset at or after the log start offset whose record timestamp is >=
    /// `timestamp`, with that timestamp (ListOffsets by time). For compressed batches the
    /// answer is the batch's base offset and max timestamp. Kafka's special timestamps
    /// (-1 latest, -2 earliest, -3 max) are the caller's business.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        for segment in &self.segments {
            if segment.max_timestamp() < timestamp || segment.next_offset() <= self.log_start_offset
            {
                continue;
            }
            let found = segment
                .find_offset_by_timestamp(timestamp, self.log_start_offset)
                .map_err(Error::io("searching", segment.log_path()))?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// (offset, timestamp) of the record with the largest timestamp, the earliest on ties
    /// (ListOffsets `MAX_TIMESTAMP`, KIP-734). Compressed batches answer with their last
    /// offset.
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for segment in &self.segments {
            let ts = segment.max_timestamp();
            if ts >= 0 && best.is_none_or(|(_, best_ts)| ts > best_ts) {
                best = Some((segment.offset_of_max_timestamp(), ts));
            }
        }
        best
    }

    /// `DeleteRecords`: moves the log start offset up to `offset` (persisted) and deletes the
    /// segments entirely below it. Returns the new log start offset (the low watermark).
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        if offset > self.log_end_offset || offset < 0 {
            return Err(self.out_of_range(offset));
        }
        if offset > self.log_start_offset {
            self.set_log_start_offset(offset)?;
            self.delete_log_start_breached_segments()?;
        }
        Ok(self.log_start_offset)
    }

    /// Retention: deletes the oldest segments whose largest timestamp is more than
    /// `retention.ms` old, then the oldest segments while the log exceeds `retention.bytes`,
    /// then segments entirely below the log start offset. The active segment is rolled first
    /// when it must go too, so the log always keeps one (possibly empty) segment. Returns the
    /// number of segments deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.apply_retention_below(now_ms, self.log_end_offset)
    }

    /// [`Log::apply_retention`], deleting only segments entirely below `high_watermark` (Kafka
    /// never lets retention remove records consumers have not been allowed to see).
    pub fn apply_retention_below(&mut self, now_ms: i64, high_watermark: i64) -> Result<usize> {
        let mut deleted = 0;
        if self.config.retention_ms >= 0 {
            let retention_ms = self.config.retention_ms;
            let n = self.count_deletable(high_watermark, |segment, _| {
                now_ms.saturating_sub(segment.largest_timestamp()) > retention_ms
            });
            deleted += self.delete_oldest_segments(n, now_ms)?;
        }
        if self.config.retention_bytes >= 0 {
            let retention_bytes = self.config.retention_bytes as u64;
            let mut excess = self.size_bytes().saturating_sub(retention_bytes);
            let n = self.count_deletable(high_watermark, |segment, _| {
                if excess >= segment.size() {
                    excess -= segment.size();
                    true
                } else {
                    false
                }
            });
            deleted += self.delete_oldest_segments(n, now_ms)?;
        }
        deleted += self.delete_log_start_breached_segments()?;
        Ok(deleted)
    }

    /// How many of the oldest segments satisfy `predicate` in a row, stopping at an empty
    /// active segment and at segments not entirely below `high_watermark` (Kafka's
    /// `UnifiedLog.deletableSegments`).
    fn count_deletable(
        &self,
        high_watermark: i64,
        mut predicate: impl FnMut(&LogSegment, Option<&LogSegment>) -> bool,
    ) -> usize {
        let mut n = 0;
        for (i, segment) in self.segments.iter().enumerate() {
            let next = self.segments.get(i + 1);
            let upper = next.map_or(self.log_end_offset, LogSegment::base_offset);
            let last_and_empty = next.is_none() && segment.is_empty();
            if last_and_empty || upper > high_watermark || !predicate(segment, next) {
                break;
            }
            n += 1;
        }
        n
    }

    fn delete_log_start_breached_segments(&mut self) -> Result<usize> {
        let log_start_offset = self.log_start_offset;
        let n = self.count_deletable(i64::MAX, |_, next| {
            next.is_some_and(|next| next.base_offset() <= log_start_offset)
        });
        // The predicate never holds for the active segment, so no roll is needed.
        self.delete_oldest_segments(n, i64::MIN)
    }

    /// Deletes the `n` oldest segments, rolling first if that is all of them, and moves the
    /// log start offset to the new first segment if it was below it. The log start offset is
    /// persisted before any file goes, so a crash in between only leaves extra files.
    fn delete_oldest_segments(&mut self, n: usize, now_ms: i64) -> Result<usize> {
        if n == 0 {
            return Ok(0);
        }
        if n == self.segments.len() {
            self.roll(now_ms)?;
        }
        let new_first_base = self.segments[n].base_offset();
        if new_first_base > self.log_start_offset {
            self.set_log_start_offset(new_first_base)?;
        }
        for segment in self.segments.drain(..n) {
            let path = segment.log_path().to_path_buf();
            tracing::info!(segment = %path.display(), "deleting segment");
            segment
                .delete_files(&self.dir)
                .map_err(Error::io("deleting", path))?;
        }
        // Snapshots of deleted segments describe batches no longer in the log; one at the new
        // first segment's base offset (or later) stays, so recovery need not replay from it.
        delete_snapshots_older_than(&self.dir, self.segments[0].base_offset())?;
        Ok(n)
    }

    /// Compaction (`cleanup.policy=compact`): keeps only the latest record per key in the
    /// inactive segments, drops keyless records and expired tombstones, and keeps offsets
    /// (see `cleaner`). The active segment is never touched. Each changed segment is
    /// rewritten to `.cleaned` files, fsynced and renamed into place.
    pub fn compact(&mut self, now_ms: i64) -> Result<CleanStats> {
        self.compact_below(now_ms, self.log_end_offset)
    }

    /// [`Log::compact`], cleaning only segments entirely below `high_watermark`: a record
    /// above it may still be truncated away, so it must not supersede an older one (Kafka
    /// stops at the first uncleanable offset for the same reason).
    pub fn compact_below(&mut self, now_ms: i64, high_watermark: i64) -> Result<CleanStats> {
        let count = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset() <= high_watermark)
            .count();
        cleaner::clean(&self.dir, &mut self.segments, count, &self.config, now_ms)
    }

    /// Fsyncs every segment holding unflushed data and moves the recovery point to the log
    /// end offset.
    pub fn flush(&mut self) -> Result<()> {
        let recovery_point = self.recovery_point;
        let count = self.segments.len();
        for (i, segment) in self.segments.iter_mut().enumerate() {
            if i + 1 == count || segment.next_offset() > recovery_point {
                let path = segment.log_path().to_path_buf();
                segment.flush().map_err(Error::io("flushing", path))?;
            }
        }
        self.recovery_point = self.log_end_offset;
        self.unflushed_messages = 0;
        self.first_unflushed_append_ms = None;
        Ok(())
    }

    /// The `flush.ms` policy: flushes if the oldest unflushed append is at least `flush.ms`
    /// old. Returns whether it flushed. Meant for a periodic background task.
    pub fn flush_if_due(&mut self, now_ms: i64) -> Result<bool> {
        let due = self
            .first_unflushed_append_ms
            .is_some_and(|first| now_ms.saturating_sub(first) >= self.config.flush_ms);
        if due {
            self.flush()?;
        }
        Ok(due)
    }

    /// Removes every batch whose last offset is >= `offset`. A batch that holds `offset` goes
    /// whole, so the new log end offset is that batch's base offset (<= `offset`); replication
    /// truncates at batch boundaries, where the two agree. Below the log start offset the log
    /// is emptied and restarts at `offset` (Kafka's `truncateFullyAndStartAt`).
    ///
    /// The leader epoch cache loses the entries that start at or after the new end, and the
    /// high watermark comes down to it if it was above. At or past the log end nothing is
    /// removed, but an epoch entry at the log end (assigned with no batch after it) still
    /// goes, as in Kafka: it belongs to a leadership that appended nothing.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset >= self.log_end_offset {
            self.leader_epoch_cache
                .truncate_from_end(self.log_end_offset)?;
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset.max(0));
        }
        while self.segments.len() > 1 && self.active_segment().base_offset() > offset {
            if let Some(segment) = self.segments.pop() {
                let path = segment.log_path().to_path_buf();
                segment
                    .delete_files(&self.dir)
                    .map_err(Error::io("deleting", path))?;
            }
        }
        let active = self.active_segment_mut();
        let path = active.log_path().to_path_buf();
        active
            .truncate_to(offset)
            .map_err(Error::io("truncating", path))?;
        self.log_end_offset = self.active_segment().next_offset();
        if self.log_end_offset < self.log_start_offset {
            self.set_log_start_offset(self.log_end_offset)?;
        }
        self.high_watermark = self.high_watermark.min(self.log_end_offset);
        // After the data, so that a crash leaves the cache ahead of the log, never behind.
        self.leader_epoch_cache
            .truncate_from_end(self.log_end_offset)?;
        // Kafka's `truncateAndReload`: the exact state at the new end is the latest snapshot
        // at or below it plus a replay of the batches after it.
        self.load_producer_state()?;
        self.after_truncation()
    }

    /// Empties the log and restarts it at `offset`, which becomes the log start offset, the
    /// log end offset and the high watermark (Kafka's `truncateFullyAndStartAt`). Every
    /// segment, producer state snapshot and leader epoch entry goes. A follower whose fetch
    /// offset fell below the leader's log start offset starts over there; `offset` may be
    /// above the current log end.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(self.out_of_range(offset));
        }
        self.leader_epoch_cache.clear()?;
        self.set_log_start_offset(offset)?;
        for segment in self.segments.drain(..) {
            let path = segment.log_path().to_path_buf();
            segment
                .delete_files(&self.dir)
                .map_err(Error::io("deleting", path))?;
        }
        let now_ms = self.segments_created_fallback_ms();
        let segment =
            LogSegment::create(&self.dir, offset, self.config.index_interval_bytes, now_ms)
                .map_err(Error::io("creating segment in", &self.dir))?;
        self.segments.push(segment);
        self.log_end_offset = offset;
        self.high_watermark = offset;
        delete_snapshots_older_than(&self.dir, i64::MAX)?;
        self.producer_state = ProducerStateManager::new();
        // Nothing below `offset` is left to recover; the old value may even lie below it.
        self.recovery_point = offset;
        self.unflushed_messages = 0;
        self.first_unflushed_append_ms = None;
        self.after_truncation()
    }

    /// A creation time for a segment made outside an append (no clock passed in): the wall
    /// clock. Only `segment.ms` rolling reads it.
    fn segments_created_fallback_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// The recovery point may not stay above the new end: later appends below the old value
    /// would otherwise escape recovery after a crash.
    fn after_truncation(&mut self) -> Result<()> {
        self.recovery_point = self.recovery_point.min(self.log_end_offset);
        self.checkpoint_recovery_point()
    }

    /// Replaces the configuration; takes effect from the next append or retention pass.
    pub fn update_config(&mut self, config: LogConfig) {
        for segment in &mut self.segments {
            segment.set_index_interval_bytes(config.index_interval_bytes);
        }
        self.config = config;
    }

    /// Fsyncs everything and writes the recovery point and the clean-shutdown marker: the
    /// clean way to close a log.
    pub fn close(mut self) -> Result<()> {
        self.close_cleanly()
    }

    /// Fsyncs everything and writes the recovery point, so the next open scans only the
    /// active segment, and the high watermark.
    pub fn flush_and_checkpoint(&mut self) -> Result<()> {
        self.flush()?;
        self.checkpoint_recovery_point()?;
        self.checkpoint_high_watermark()
    }

    /// The last act on a log before the process exits cleanly: fsync, checkpoint, and leave
    /// the clean-shutdown marker so the next open skips validating the active segment.
    /// Appending afterwards is a bug.
    pub fn close_cleanly(&mut self) -> Result<()> {
        self.flush_and_checkpoint()?;
        // The next open then loads this snapshot and replays nothing.
        self.producer_state
            .write_snapshot(&self.dir, self.log_end_offset)?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(Error::io("creating", &marker))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("syncing", &self.dir))
    }

    /// Closes the log and removes its directory.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        fs::remove_dir_all(&dir).map_err(Error::io("removing", dir))
    }

    /// First offset visible to consumers.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }

    /// Every batch below this offset is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Total bytes of all segments' `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(LogSegment::size).sum()
    }

    /// Number of segments, including the active one.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &[LogSegment] {
        &self.segments
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    fn active_segment(&self) -> &LogSegment {
        // `segments` is never empty: open creates one and every removal keeps or adds one.
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_segment_mut(&mut self) -> &mut LogSegment {
        // See `active_segment`.
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    fn out_of_range(&self, requested: i64) -> Error {
        Error::OffsetOutOfRange {
            requested,
            log_start_offset: self.log_start_offset,
            log_end_offset: self.log_end_offset,
            dir: self.dir.clone(),
        }
    }

    /// Persists and sets the log start offset. Moving it up (retention, `DeleteRecords`)
    /// also moves the leader epoch cache's start and keeps the high watermark at or above it.
    fn set_log_start_offset(&mut self, offset: i64) -> Result<()> {
        write_checkpoint(&self.dir, LOG_START_OFFSET_FILE, offset)?;
        let moved_up = offset > self.log_start_offset;
        self.log_start_offset = offset;
        if moved_up {
            self.high_watermark = self.high_watermark.max(offset);
            self.leader_epoch_cache.truncate_from_start(offset)?;
            // Everything deleted: the entry moved to the log end has no batch any more, and
            // the next open would drop it; drop it now so the cache does not depend on that.
            self.leader_epoch_cache
                .truncate_from_end(self.log_end_offset)?;
        }
        Ok(())
    }

    fn checkpoint_high_watermark(&mut self) -> Result<()> {
        if self.checkpointed_high_watermark != Some(self.high_watermark) {
            let text = format!("{}\n", self.high_watermark);
            write_file_atomically(&self.dir, HIGH_WATERMARK_FILE, text.as_bytes())?;
            self.checkpointed_high_watermark = Some(self.high_watermark);
        }
        Ok(())
    }

    fn checkpoint_recovery_point(&mut self) -> Result<()> {
        if self.checkpointed_recovery_point != self.recovery_point {
            write_checkpoint(&self.dir, RECOVERY_POINT_FILE, self.recovery_point)?;
            self.checkpointed_recovery_point = self.recovery_point;
        }
        Ok(())
    }
}

/// `00000000000000000042.log` → 42.
fn parse_segment_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", path)(e)),
        _ => Ok(()),
    }
}

/// Writes `0\n<value>\n` to `<dir>/<name>` atomically (see [`write_file_atomically`]).
fn write_checkpoint(dir: &Path, name: &str, value: i64) -> Result<()> {
    write_file_atomically(
        dir,
        name,
        format!("{CHECKPOINT_VERSION}\n{value}\n").as_bytes(),
    )
}

/// Replaces `<dir>/<name>` with `contents` so that a crash leaves the old file or the new one,
/// never a torn one: write `<name>.tmp`, fsync it, rename it over the file, fsync the
/// directory. `open` removes a leftover `.tmp`.
pub(crate) fn write_file_atomically(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(Error::io("creating", &tmp))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(Error::io("writing", &tmp))?;
    fs::rename(&tmp, &path).map_err(Error::io("renaming", &tmp))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing", dir))
}

/// Reads `high-watermark-checkpoint`; `None` if it is missing. An unreadable value is
/// treated as missing (with a warning) rather than refusing the log as the other
/// checkpoints do: a lower high watermark is always safe (consumers wait until replication
/// advances it again), while refusing the log would take the partition offline.
fn read_high_watermark(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(HIGH_WATERMARK_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => String::new(),
        Err(e) => return Err(Error::io("reading", path)(e)),
    };
    match text.trim().parse::<i64>() {
        Ok(hw) if hw >= 0 => Ok(Some(hw)),
        _ => {
            tracing::warn!(file = %path.display(), "unreadable high watermark checkpoint; ignoring it");
            Ok(None)
        }
    }
}

/// Reads a checkpoint written by [`write_checkpoint`]; `None` if the file does not exist.
fn read_checkpoint(dir: &Path, name: &str) -> Result<Option<i64>> {
    let path = dir.join(name);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading", path)(e)),
    };
    let mut lines = text.lines();
    let corrupt = |reason: String| Error::CorruptCheckpoint {
        path: path.clone(),
        reason,
    };
    match lines.next() {
        Some(CHECKPOINT_VERSION) => {}
        other => return Err(corrupt(format!("unknown version line {other:?}"))),
    }
    let value = lines
        .next()
        .ok_or_else(|| corrupt("missing value".to_string()))?;
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|e| corrupt(format!("bad value {value:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{build_batch, decode_records, encode_batch, BatchHeader, Record};
    use crate::log::kafka_code;
    use crate::log::segment::segment_file_path;

    fn small_config() -> LogConfig {
        LogConfig {
            segment_bytes: 1024,
            index_interval_bytes: 128,
            retention_ms: -1,
            ..LogConfig::default()
        }
    }

    /// Appends one batch of `count` records with `value_bytes`-byte values at time `ts`.
    fn append(log: &mut Log, count: usize, value_bytes: usize, ts: i64) -> AppendInfo {
        let value = vec![b'v'; value_bytes];
        let records: Vec<_> = (0..count).map(|_| (None, Some(&value[..]))).collect();
        let mut batch = build_batch(0, ts, &records);
        log.append_as_leader(&mut batch, ts).unwrap()
    }

    fn read_all_records(log: &Log) -> Vec<Record> {
        let data = log
            .read(log.log_start_offset(), usize::MAX, i64::MAX)
            .unwrap();
        decode_all(&data.records)
    }

    fn decode_all(mut bytes: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let header = BatchHeader::parse(bytes).unwrap();
            out.extend(decode_records(&bytes[..header.total_size()]).unwrap());
            bytes = &bytes[header.total_size()..];
        }
        out
    }

    fn offsets(records: &[Record]) -> Vec<i64> {
        records.iter().map(|r| r.offset).collect()
    }

    #[test]
    fn append_assigns_offsets_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        let a = build_batch(0, 10, &[(Some(b"k"), Some(b"a")), (None, Some(b"b"))]);
        let b = build_batch(0, 20, &[(None, Some(b"c"))]);
        let mut both = [a, b].concat();
        let info = log.append_as_leader(&mut both, 0).unwrap();
        assert_eq!(
            info,
            AppendInfo {
                base_offset: 0,
                last_offset: 2,
                max_timestamp: 20,
                log_start_offset: 0,
                num_records: 3,
                duplicate: false,
            }
        );
        let info = append(&mut log, 2, 5, 30);
        assert_eq!((info.base_offset, info.last_offset), (3, 4));
        assert_eq!(log.log_end_offset(), 5);
        let records = read_all_records(&log);
        assert_eq!(offsets(&records), vec![0, 1, 2, 3, 4]);
        assert_eq!(records[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(records[2].value.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn invalid_or_oversized_batches_append_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            max_message_bytes: 200,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config, 0).unwrap();
        let good = build_batch(0, 0, &[(None, Some(b"ok"))]);
        let mut bad = build_batch(0, 0, &[(None, Some(b"bad"))]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let mut both = [good.clone(), bad].concat();
        let err = log.append_as_leader(&mut both, 0).unwrap_err();
        assert!(
            matches!(err, Error::InvalidBatch { position, .. } if position == good.len()),
            "{err:?}"
        );
        assert_eq!(err.kafka_error_code(), kafka_code::CORRUPT_MESSAGE);
        assert_eq!(log.log_end_offset(), 0);
        assert_eq!(log.size_bytes(), 0);

        let mut big = build_batch(0, 0, &[(None, Some(&[0u8; 300][..]))]);
        let err = log.append_as_leader(&mut big, 0).unwrap_err();
        assert!(matches!(
            err,
            Error::MessageTooLarge {
                max_message_bytes: 200,
                ..
            }
        ));
        assert_eq!(err.kafka_error_code(), kafka_code::MESSAGE_TOO_LARGE);

        let err = log.append_as_leader(&mut [], 0).unwrap_err();
        assert_eq!(err.kafka_error_code(), kafka_code::INVALID_RECORD);
        assert_eq!(log.log_end_offset(), 0);
    }

    #[test]
    fn rolls_on_segment_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for _ in 0..10 {
            append(&mut log, 2, 200, 0); // ~480 bytes per batch: two per 1 KiB segment
        }
        assert_eq!(log.segment_count(), 5);
        for segment in log.segments() {
            assert!(segment.size() <= 1024, "{}", segment.size());
        }
        let bases: Vec<i64> = log.segments().iter().map(LogSegment::base_offset).collect();
        assert_eq!(bases, vec![0, 4, 8, 12, 16]);
        assert!(segment_file_path(dir.path(), 16, ".log").exists());
        assert!(segment_file_path(dir.path(), 16, ".timeindex").exists());
        // Rolling fsyncs the old segment and checkpoints the recovery point.
        assert_eq!(log.recovery_point(), 16);
        assert_eq!(
            read_checkpoint(dir.path(), RECOVERY_POINT_FILE).unwrap(),
            Some(16)
        );
    }

    #[test]
    fn a_batch_larger_than_segment_bytes_gets_its_own_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        append(&mut log, 1, 2000, 0);
        append(&mut log, 1, 2000, 0);
        assert_eq!(log.segment_count(), 2);
        assert_eq!(offsets(&read_all_records(&log)), vec![0, 1]);
    }

    #[test]
    fn rolls_on_segment_ms_only_when_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_ms: 1000,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config, 0).unwrap();
        let mut batch = build_batch(0, 0, &[(None, Some(b"x"))]);
        // Empty active segment: no roll however old it is.
        log.append_as_leader(&mut batch.clone(), 5000).unwrap();
        assert_eq!(log.segment_count(), 1);
        log.append_as_leader(&mut batch, 5500).unwrap();
        assert_eq!(
            log.segment_count(),
            1,
            "created at 0, but it was empty at 5000"
        );
        // The segment was created at 0 and is now 6001 ms old.
        let mut batch = build_batch(0, 0, &[(None, Some(b"y"))]);
        log.append_as_leader(&mut batch, 6001).unwrap();
        assert_eq!(log.segment_count(), 2);
        assert_eq!(log.segments()[1].base_offset(), 2);
        let mut batch = build_batch(0, 0, &[(None, Some(b"z"))]);
        log.append_as_leader(&mut batch, 7001).unwrap();
        assert_eq!(log.segment_count(), 2, "new segment is exactly 1000 ms old");
    }

    #[test]
    fn reads_across_segments_from_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for i in 0..12 {
            append(&mut log, 3, 100, i);
        }
        assert!(log.segment_count() > 3);
        let leo = log.log_end_offset();
        assert_eq!(leo, 36);
        for fetch in 0..leo {
            let data = log.read(fetch, usize::MAX, i64::MAX).unwrap();
            let records = decode_all(&data.records);
            let first_batch_base = fetch - fetch % 3;
            assert_eq!(
                offsets(&records),
                (first_batch_base..leo).collect::<Vec<_>>(),
                "fetch {fetch}"
            );
            assert_eq!(data.log_end_offset, leo);
        }
    }

    #[test]
    fn read_at_log_end_is_empty_and_beyond_is_out_of_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        let data = log.read(0, 1000, i64::MAX).unwrap();
        assert!(data.records.is_empty());
        append(&mut log, 2, 10, 0);
        let data = log.read(2, 1000, i64::MAX).unwrap();
        assert!(data.records.is_empty());
        assert_eq!(data.log_end_offset, 2);
        let err = log.read(3, 1000, i64::MAX).unwrap_err();
        assert!(matches!(
            err,
            Error::OffsetOutOfRange {
                requested: 3,
                log_start_offset: 0,
                log_end_offset: 2,
                ..
            }
        ));
        assert_eq!(err.kafka_error_code(), kafka_code::OFFSET_OUT_OF_RANGE);
        assert!(matches!(
            log.read(-1, 1000, i64::MAX),
            Err(Error::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn max_bytes_is_honored_except_for_the_first_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        for _ in 0..5 {
            append(&mut log, 1, 100, 0);
        }
        let batch_size = log.size_bytes() as usize / 5;
        // Smaller than one batch: the first batch anyway (KIP-74).
        let data = log.read(0, 10, i64::MAX).unwrap();
        assert_eq!(data.records.len(), batch_size);
        // Room for 2.5 batches: two whole batches.
        let data = log.read(1, batch_size * 5 / 2, i64::MAX).unwrap();
        assert_eq!(offsets(&decode_all(&data.records)), vec![1, 2]);
        // max_offset (a high watermark) cuts first: nothing at or after it.
        let data = log.read(1, usize::MAX, 3).unwrap();
        assert_eq!(offsets(&decode_all(&data.records)), vec![1, 2]);
        let data = log.read(3, usize::MAX, 3).unwrap();
        assert!(data.records.is_empty());
        let data = log.read(0, 0, 1).unwrap();
        assert_eq!(offsets(&decode_all(&data.records)), vec![0]);
    }

    #[test]
    fn max_offset_excludes_a_batch_that_straddles_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append(&mut log, 3, 10, 0);
        append(&mut log, 3, 10, 0);
        let data = log.read(0, usize::MAX, 4).unwrap();
        assert_eq!(offsets(&decode_all(&data.records)), vec![0, 1, 2]);
        let data = log.read(3, usize::MAX, 4).unwrap();
        assert!(data.records.is_empty());
    }

    #[test]
    fn retention_by_time_deletes_whole_expired_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            retention_ms: 1000,
            ..small_config()
        };
        let mut log = Log::open(dir.path(), config, 0).unwrap();
        // Two segments with timestamps around 100, one around 5000.
        for ts in [100, 100, 100, 100, 5000, 5000] {
            append(&mut log, 2, 200, ts);
        }
        assert_eq!(log.segment_count(), 3);
        assert_eq!(
            log.apply_retention(1000).unwrap(),
            0,
            "nothing older than 1000 ms"
        );
        assert_eq!(log.apply_retention(1200).unwrap(), 2);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), 8);
        assert!(!segment_file_path(dir.path(), 0, ".log").exists());
        assert_eq!(
            offsets(&read_all_records(&log)),
            (8..12).collect::<Vec<_>>()
        );
        assert!(matches!(
            log.read(0, 100, i64::MAX),
            Err(Error::OffsetOutOfRange { .. })
        ));
        // Everything expired: the active segment is rolled, then deleted; one empty segment
        // remains at the log end.
        assert_eq!(log.apply_retention(10_000).unwrap(), 1);
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.log_start_offset(), 12);
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(log.size_bytes(), 0);
        assert_eq!(append(&mut log, 1, 1, 20_000).base_offset, 12);
        drop(log);
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (12, 13));
    }

    #[test]
    fn retention_by_bytes_deletes_oldest_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for _ in 0..10 {
            append(&mut log, 2, 200, 0);
        }
        let segment_size = log.segments()[0].size();
        assert_eq!(log.segment_count(), 5);
        let mut config = small_config();
        config.retention_bytes = (segment_size * 3) as i64;
        log.update_config(config);
        assert_eq!(log.apply_retention(0).unwrap(), 2);
        assert_eq!(log.segment_count(), 3);
        assert_eq!(log.log_start_offset(), 8);
        assert!(log.size_bytes() <= segment_size * 3);
        // Below the high watermark only.
        let mut config = small_config();
        config.retention_bytes = 0;
        log.update_config(config);
        assert_eq!(log.apply_retention_below(0, 13).unwrap(), 1);
        assert_eq!(log.log_start_offset(), 12);
        assert_eq!(log.apply_retention(0).unwrap(), 2);
        assert_eq!(log.log_start_offset(), 20);
        assert_eq!(log.segment_count(), 1);
    }

    #[test]
    fn delete_records_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for _ in 0..6 {
            append(&mut log, 2, 200, 0);
        }
        assert_eq!(log.segment_count(), 3);
        assert_eq!(log.delete_records_before(5).unwrap(), 5);
        assert_eq!(log.segment_count(), 2, "segment [0, 4) deleted");
        assert_eq!(log.delete_records_before(3).unwrap(), 5, "never moves back");
        let err = log.delete_records_before(13).unwrap_err();
        assert!(matches!(err, Error::OffsetOutOfRange { requested: 13, .. }));
        // The batch [4, 5] is returned whole; the client skips offset 4.
        let data = log.read(5, usize::MAX, i64::MAX).unwrap();
        assert_eq!(decode_all(&data.records)[0].offset, 4);
        drop(log);
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.log_start_offset(), 5);
        assert_eq!(log.log_end_offset(), 12);
        assert!(log.read(4, 100, i64::MAX).is_err());
        assert_eq!(log.delete_records_before(12).unwrap(), 12);
        assert_eq!(log.segment_count(), 1, "the active segment stays");
        assert!(log.read(12, 100, i64::MAX).unwrap().records.is_empty());
    }

    /// Appends 3 batches, returns the .log size after the 2nd and the path of the .log.
    fn three_batches(dir: &Path) -> (u64, PathBuf) {
        let mut log = Log::open(dir, LogConfig::default(), 0).unwrap();
        append(&mut log, 2, 50, 0);
        append(&mut log, 2, 50, 0);
        let size_after_two = log.size_bytes();
        append(&mut log, 2, 50, 0);
        drop(log);
        (size_after_two, segment_file_path(dir, 0, ".log"))
    }

    fn assert_recovered_to_four(dir: &Path, size_after_two: u64) {
        let mut log = Log::open(dir, LogConfig::default(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 4);
        assert_eq!(log.size_bytes(), size_after_two);
        assert_eq!(offsets(&read_all_records(&log)), vec![0, 1, 2, 3]);
        assert_eq!(append(&mut log, 1, 5, 0).base_offset, 4);
        drop(log);
        let log = Log::open(dir, LogConfig::default(), 0).unwrap();
        assert_eq!(offsets(&read_all_records(&log)), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn recovery_truncates_a_flipped_byte_in_the_last_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (size_after_two, path) = three_batches(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x40;
        fs::write(&path, &bytes).unwrap();
        assert_recovered_to_four(dir.path(), size_after_two);
    }

    #[test]
    fn recovery_truncates_a_half_written_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (size_after_two, path) = three_batches(dir.path());
        let len = fs::metadata(&path).unwrap().len();
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(len - 20).unwrap();
        drop(file);
        assert_recovered_to_four(dir.path(), size_after_two);
    }

    #[test]
    fn recovery_truncates_trailing_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let (_, path) = three_batches(dir.path());
        let clean_len = fs::metadata(&path).unwrap().len();
        for garbage in [&[0u8; 7][..], &[0xff; 100][..], &[0u8; 200][..]] {
            let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
            file.write_all(garbage).unwrap();
            drop(file);
            let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
            assert_eq!(log.log_end_offset(), 6);
            assert_eq!(log.size_bytes(), clean_len);
            assert_eq!(offsets(&read_all_records(&log)), (0..6).collect::<Vec<_>>());
        }
    }

    #[test]
    fn recovery_point_limits_which_segments_are_scanned_and_bad_indexes_are_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            index_interval_bytes: 0,
            ..small_config()
        };
        let mut log = Log::open(dir.path(), config.clone(), 0).unwrap();
        for i in 0..8 {
            append(&mut log, 1, 300, i);
        }
        assert_eq!(log.segment_count(), 4);
        let expected = read_all_records(&log);
        drop(log);
        // Segment 0 is below the recovery point: its indexes are loaded if sane.
        let index = segment_file_path(dir.path(), 0, ".index");
        let timeindex = segment_file_path(dir.path(), 0, ".timeindex");
        assert!(fs::metadata(&index).unwrap().len() > 0);
        let good_index = fs::read(&index).unwrap();

        fs::remove_file(&index).unwrap();
        let log = Log::open(dir.path(), config.clone(), 0).unwrap();
        assert_eq!(read_all_records(&log), expected);
        assert_eq!(fs::read(&index).unwrap(), good_index, "rebuilt identically");
        for fetch in 0..8 {
            let first = decode_all(&log.read(fetch, 1, i64::MAX).unwrap().records);
            assert_eq!(first[0].offset, fetch);
        }
        drop(log);

        // Corrupt: point the last entry past the end of the log.
        let mut bad = good_index.clone();
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
        fs::write(&index, &bad).unwrap();
        let log = Log::open(dir.path(), config.clone(), 0).unwrap();
        assert_eq!(read_all_records(&log), expected);
        assert_eq!(fs::read(&index).unwrap(), good_index);
        drop(log);

        // A half entry and a garbage time index.
        let mut bad = good_index.clone();
        bad.pop();
        fs::write(&index, &bad).unwrap();
        fs::write(&timeindex, [0xffu8; 12]).unwrap();
        let log = Log::open(dir.path(), config, 0).unwrap();
        assert_eq!(read_all_records(&log), expected);
        assert_eq!(fs::read(&index).unwrap(), good_index);
        assert_eq!(log.offset_for_timestamp(1).unwrap(), Some((1, 1)));
    }

    #[test]
    fn open_removes_stray_files_and_keeps_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append(&mut log, 2, 10, 0);
        drop(log);
        for name in [
            "00000000000000000000.log.deleted",
            "00000000000000000007.index.swap",
            "log-start-offset.tmp",
            "00000000000000000042.index",
        ] {
            fs::write(dir.path().join(name), b"junk").unwrap();
        }
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 2);
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                "00000000000000000000.index",
                "00000000000000000000.log",
                "00000000000000000000.timeindex",
                crate::log::leader_epoch::LEADER_EPOCH_CHECKPOINT_FILE,
                LOG_START_OFFSET_FILE,
                RECOVERY_POINT_FILE,
            ]
        );
    }

    #[test]
    fn offset_for_timestamp_finds_the_earliest_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        // Batches of 3 records with timestamps 1000*i + 0..3, out of order for i = 2.
        for base_ts in [0, 1000, 500, 3000, 4000, 5000] {
            append(&mut log, 3, 150, base_ts);
        }
        assert!(log.segment_count() > 1);
        assert_eq!(log.offset_for_timestamp(-1).unwrap(), Some((0, 0)));
        assert_eq!(log.offset_for_timestamp(1).unwrap(), Some((1, 1)));
        assert_eq!(log.offset_for_timestamp(3).unwrap(), Some((3, 1000)));
        assert_eq!(log.offset_for_timestamp(1001).unwrap(), Some((4, 1001)));
        assert_eq!(log.offset_for_timestamp(1003).unwrap(), Some((9, 3000)));
        assert_eq!(log.offset_for_timestamp(5002).unwrap(), Some((17, 5002)));
        assert_eq!(log.offset_for_timestamp(5003).unwrap(), None);
        assert_eq!(log.max_timestamp_offset(), Some((17, 5002)));
        // Not below the log start offset.
        log.delete_records_before(10).unwrap();
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((10, 3001)));
        // Survives a reopen (time indexes loaded or rebuilt).
        drop(log);
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.offset_for_timestamp(1003).unwrap(), Some((10, 3001)));
        assert_eq!(log.max_timestamp_offset(), Some((17, 5002)));
        // Without a recovery point every segment is recovered (indexes rebuilt); the next
        // open loads them, and must still know each segment's largest timestamp.
        let expected: Vec<i64> = log
            .segments()
            .iter()
            .map(LogSegment::max_timestamp)
            .collect();
        assert_eq!(expected, vec![3002, 4002, 5002]);
        drop(log);
        fs::remove_file(dir.path().join(RECOVERY_POINT_FILE)).unwrap();
        for _ in 0..2 {
            let log = Log::open(dir.path(), small_config(), 0).unwrap();
            let maxima: Vec<i64> = log
                .segments()
                .iter()
                .map(LogSegment::max_timestamp)
                .collect();
            assert_eq!(maxima, expected);
            assert_eq!(log.offset_for_timestamp(1002).unwrap(), Some((10, 3001)));
            assert_eq!(log.max_timestamp_offset(), Some((17, 5002)));
        }
    }

    #[test]
    fn offset_for_timestamp_answers_compressed_batches_with_their_base_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append(&mut log, 2, 10, 100);
        let plain = build_batch(0, 200, &[(None, Some(b"a")), (None, Some(b"b"))]);
        let mut header = BatchHeader::parse(&plain).unwrap();
        header.attributes = 1; // gzip; the payload is opaque to the log
        let mut compressed = encode_batch(&header, b"opaque compressed bytes");
        log.append_as_leader(&mut compressed, 0).unwrap();
        assert_eq!(log.offset_for_timestamp(150).unwrap(), Some((2, 201)));
        assert_eq!(log.max_timestamp_offset(), Some((3, 201)));
        let data = log.read(2, 1000, i64::MAX).unwrap();
        assert_eq!(&data.records[16..], &compressed[16..], "stored unchanged");
        assert_eq!(&data.records[8..12], &compressed[8..12]);
        let stored = BatchHeader::parse(&data.records).unwrap();
        assert_eq!(stored.partition_leader_epoch, 0, "stamped by the leader");
    }

    #[test]
    fn truncate_to_drops_whole_batches_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for _ in 0..8 {
            append(&mut log, 2, 200, 0);
        }
        assert_eq!(log.segment_count(), 4);
        log.truncate_to(9).unwrap(); // inside batch [8, 9]
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(
            log.segment_count(),
            3,
            "segment at 8 emptied, later ones deleted"
        );
        assert_eq!(offsets(&read_all_records(&log)), (0..8).collect::<Vec<_>>());
        assert_eq!(append(&mut log, 1, 1, 0).base_offset, 8);
        log.truncate_to(6).unwrap(); // batch boundary
        assert_eq!(log.log_end_offset(), 6);
        assert!(log.recovery_point() <= 6);
        drop(log);
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(offsets(&read_all_records(&log)), (0..6).collect::<Vec<_>>());
        // Below the log start offset: start over there.
        log.delete_records_before(4).unwrap();
        log.truncate_to(2).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (2, 2));
        assert_eq!(log.segment_count(), 1);
        assert_eq!(append(&mut log, 1, 1, 0).base_offset, 2);
    }

    #[test]
    fn flush_policies_advance_the_recovery_point() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush_messages: 5,
            flush_ms: 100,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config, 0).unwrap();
        append(&mut log, 3, 1, 1000);
        assert_eq!(log.recovery_point(), 0);
        append(&mut log, 2, 1, 1000);
        assert_eq!(log.recovery_point(), 5, "flush.messages reached");
        append(&mut log, 1, 1, 2000);
        assert!(!log.flush_if_due(2099).unwrap());
        assert!(log.flush_if_due(2100).unwrap());
        assert_eq!(log.recovery_point(), 6);
        assert!(!log.flush_if_due(5000).unwrap(), "nothing left to flush");
        log.close().unwrap();
        assert_eq!(
            read_checkpoint(dir.path(), RECOVERY_POINT_FILE).unwrap(),
            Some(6)
        );
    }

    /// Flips the last byte of the active segment's `.log`: a CRC mismatch in the last batch
    /// that leaves its structure intact.
    fn flip_last_byte(dir: &Path, base_offset: i64) {
        let path = segment_file_path(dir, base_offset, LOG_FILE_SUFFIX);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
    }

    #[test]
    fn clean_shutdown_skips_validating_the_active_segment_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        for ts in [1000, 3000, 2000] {
            append(&mut log, 2, 10, ts);
        }
        let max_timestamp = log.max_timestamp_offset();
        log.close().unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());

        // After a clean shutdown the open trusts the tail: a CRC flip goes unnoticed, which
        // is how we can tell the batch-by-batch validation was skipped.
        flip_last_byte(dir.path(), 0);
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(
            log.max_timestamp_offset(),
            max_timestamp,
            "the tail's newest timestamp is known without a time index entry"
        );
        assert!(
            !dir.path().join(CLEAN_SHUTDOWN_FILE).exists(),
            "the marker is consumed by the open"
        );
        // A crash now (no close): the next open validates again and cuts the bad batch.
        drop(log);
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(
            log.log_end_offset(),
            4,
            "the corrupt last batch is truncated"
        );
    }

    #[test]
    fn read_batches_without_min_one_stops_at_max_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append(&mut log, 1, 1000, 0);
        let whole = log.read_batches(0, 10, i64::MAX, true).unwrap();
        assert!(whole.records.len() > 1000, "KIP-74: one whole batch");
        let none = log.read_batches(0, 10, i64::MAX, false).unwrap();
        assert!(
            none.records.is_empty(),
            "no exception without min_one_batch"
        );
    }

    #[test]
    fn delete_removes_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topic-0");
        let mut log = Log::open(&path, LogConfig::default(), 0).unwrap();
        append(&mut log, 1, 1, 0);
        log.delete().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn corrupt_checkpoint_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOG_START_OFFSET_FILE), b"0\nnot a number\n").unwrap();
        let err = Log::open(dir.path(), LogConfig::default(), 0).unwrap_err();
        assert!(matches!(err, Error::CorruptCheckpoint { .. }));
    }

    /// One uncompressed batch of `count` records from idempotent producer `producer_id`.
    fn idempotent_batch(producer_id: i64, epoch: i16, base_sequence: i32, count: usize) -> Vec<u8> {
        let value = b"v".to_vec();
        let records: Vec<_> = (0..count).map(|_| (None, Some(&value[..]))).collect();
        let plain = build_batch(0, 1_000, &records);
        let mut header = BatchHeader::parse(&plain).unwrap();
        header.producer_id = producer_id;
        header.producer_epoch = epoch;
        header.base_sequence = base_sequence;
        encode_batch(&header, &plain[61..])
    }

    fn append_idempotent(
        log: &mut Log,
        epoch: i16,
        base_sequence: i32,
        count: usize,
    ) -> Result<AppendInfo> {
        let mut batch = idempotent_batch(7, epoch, base_sequence, count);
        log.append_as_leader(&mut batch, 1_000)
    }

    #[test]
    fn duplicate_batches_return_the_original_offsets_and_append_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append(&mut log, 2, 5, 0);
        let first = append_idempotent(&mut log, 0, 0, 3).unwrap();
        assert_eq!(
            (first.base_offset, first.last_offset, first.duplicate),
            (2, 4, false)
        );
        let again = append_idempotent(&mut log, 0, 0, 3).unwrap();
        assert!(again.duplicate);
        assert_eq!(
            (again.base_offset, again.last_offset, again.num_records),
            (2, 4, 0)
        );
        assert_eq!(log.log_end_offset(), 5);
        let next = append_idempotent(&mut log, 0, 3, 1).unwrap();
        assert_eq!((next.base_offset, next.duplicate), (5, false));
    }

    #[test]
    fn sequence_gaps_and_old_epochs_are_refused_with_their_codes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append_idempotent(&mut log, 0, 0, 2).unwrap();
        let gap = append_idempotent(&mut log, 0, 5, 1).unwrap_err();
        assert_eq!(
            gap.kafka_error_code(),
            kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        append_idempotent(&mut log, 1, 0, 1).unwrap();
        let fenced = append_idempotent(&mut log, 0, 2, 1).unwrap_err();
        assert_eq!(
            fenced.kafka_error_code(),
            kafka_code::INVALID_PRODUCER_EPOCH
        );
        assert_eq!(log.log_end_offset(), 3);
    }

    #[test]
    fn a_request_with_one_bad_batch_appends_none_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        let mut two = [idempotent_batch(7, 0, 0, 2), idempotent_batch(7, 0, 2, 1)].concat();
        assert_eq!(log.append_as_leader(&mut two, 0).unwrap().last_offset, 2);
        let mut bad = [idempotent_batch(7, 0, 3, 1), idempotent_batch(7, 0, 9, 1)].concat();
        let e = log.append_as_leader(&mut bad, 0).unwrap_err();
        assert_eq!(
            e.kafka_error_code(),
            kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER
        );
        assert_eq!(log.log_end_offset(), 3);
    }

    #[test]
    fn producer_state_survives_clean_close_crash_and_rolls() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for seq in 0..40 {
            append_idempotent(&mut log, 0, seq * 2, 2).unwrap();
        }
        assert!(log.segment_count() > 2, "the test needs rolls");
        let snapshots = crate::log::producer_state::list_snapshot_offsets(dir.path()).unwrap();
        assert!(!snapshots.is_empty(), "a roll writes a snapshot");
        let batches = |log: &Log| log.producer_state().producer(7).unwrap().batches.clone();
        let state = batches(&log);
        // A crash: no clean close, the state comes from the last roll's snapshot and a replay.
        drop(log);
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        // A replayed batch has no append time, so only the batches are compared.
        assert_eq!(batches(&log), state);
        assert!(append_idempotent(&mut log, 0, 78, 2).unwrap().duplicate);
        log.close().unwrap();
        assert!(dir.path().join("00000000000000000080.snapshot").exists());
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(batches(&log), state);
        assert!(append_idempotent(&mut log, 0, 76, 2).unwrap().duplicate);
        assert!(!append_idempotent(&mut log, 0, 80, 2).unwrap().duplicate);
    }

    #[test]
    fn truncation_reloads_the_producer_state_of_the_new_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for seq in 0..40 {
            append_idempotent(&mut log, 0, seq * 2, 2).unwrap();
        }
        log.truncate_to(30).unwrap();
        assert_eq!(log.log_end_offset(), 30);
        let snapshots = crate::log::producer_state::list_snapshot_offsets(dir.path()).unwrap();
        assert!(snapshots.iter().all(|&o| o <= 30), "{snapshots:?}");
        // Sequence 30 is next again; 28 is the last batch kept, so a duplicate.
        assert!(append_idempotent(&mut log, 0, 28, 2).unwrap().duplicate);
        assert_eq!(
            append_idempotent(&mut log, 0, 30, 2).unwrap().base_offset,
            30
        );
    }

    #[test]
    fn retention_deletes_snapshots_of_deleted_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for seq in 0..40 {
            append_idempotent(&mut log, 0, seq * 2, 2).unwrap();
        }
        let before = crate::log::producer_state::list_snapshot_offsets(dir.path()).unwrap();
        log.delete_records_before(60).unwrap();
        let first_base = log.segments()[0].base_offset();
        let after = crate::log::producer_state::list_snapshot_offsets(dir.path()).unwrap();
        assert!(after.len() < before.len(), "{before:?} → {after:?}");
        assert!(after.iter().all(|&o| o >= first_base), "{after:?}");
    }

    // ---- Replication: leader epochs, follower appends, high watermark ----

    use crate::log::leader_epoch::LEADER_EPOCH_CHECKPOINT_FILE;

    /// Appends one batch of `count` 10-byte records as the leader of `epoch`.
    fn append_with_epoch(log: &mut Log, count: usize, epoch: i32) -> AppendInfo {
        let value = [b'e'; 10];
        let records: Vec<_> = (0..count).map(|_| (None, Some(&value[..]))).collect();
        let mut batch = build_batch(0, 1_000, &records);
        log.append_as_leader_with_epoch(&mut batch, 1_000, epoch)
            .unwrap()
    }

    /// (base offset, leader epoch) of every stored batch from the log start.
    fn batch_epochs(log: &Log) -> Vec<(i64, i32)> {
        let data = log
            .read(log.log_start_offset(), usize::MAX, i64::MAX)
            .unwrap();
        let mut out = Vec::new();
        let mut bytes = &data.records[..];
        while !bytes.is_empty() {
            let header = BatchHeader::parse(bytes).unwrap();
            out.push((header.base_offset, header.partition_leader_epoch));
            bytes = &bytes[header.total_size()..];
        }
        out
    }

    /// Fetches from `leader` into `follower` `max_bytes` at a time until it has caught up.
    fn replicate(leader: &Log, follower: &mut Log, max_bytes: usize) {
        while follower.log_end_offset() < leader.log_end_offset() {
            let data = leader
                .read(follower.log_end_offset(), max_bytes, i64::MAX)
                .unwrap();
            follower.append_as_follower(&data.records).unwrap();
        }
    }

    /// Name → bytes of the files in `dir` whose name ends with one of `suffixes`.
    fn files_ending_with(dir: &Path, suffixes: &[&str]) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter_map(|e| {
                let name = e.file_name().into_string().unwrap();
                suffixes
                    .iter()
                    .any(|s| name.ends_with(s))
                    .then(|| (name, fs::read(e.path()).unwrap()))
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn leader_appends_stamp_epochs_and_end_offset_for_epoch_finds_where_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.latest_epoch(), None);
        assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
        append_with_epoch(&mut log, 2, 0);
        append_with_epoch(&mut log, 3, 0);
        let epoch_3 = append_with_epoch(&mut log, 2, 3);
        assert_eq!(epoch_3.base_offset, 5);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 5)]);
        assert_eq!(log.latest_epoch(), Some(3));
        assert_eq!(batch_epochs(&log), vec![(0, 0), (2, 0), (5, 3)]);
        // Epoch 1 never appended: the answer is epoch 0, which ended where epoch 3 started.
        assert_eq!(log.end_offset_for_epoch(1), (0, 5));
        assert_eq!(log.end_offset_for_epoch(0), (0, 5));
        assert_eq!(log.end_offset_for_epoch(3), (3, 7));
        assert_eq!(log.end_offset_for_epoch(9), (3, 7));
        assert_eq!(log.end_offset_for_epoch(-1), (-1, -1));

        // A deposed leader's append is refused and appends nothing.
        let mut batch = build_batch(0, 0, &[(None, Some(b"late"))]);
        let err = log
            .append_as_leader_with_epoch(&mut batch, 0, 2)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::StaleLeaderEpoch {
                    leader_epoch: 2,
                    latest_epoch: 3,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.kafka_error_code(), kafka_code::NOT_LEADER_OR_FOLLOWER);
        assert_eq!(log.log_end_offset(), 7);
        // The plain leader append goes on in the latest epoch.
        append(&mut log, 1, 1, 0);
        assert_eq!(batch_epochs(&log).last(), Some(&(7, 3)));
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 5)]);
        // The cache survives a reopen.
        drop(log);
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 5)]);
        assert_eq!(log.end_offset_for_epoch(2), (0, 5));
    }

    #[test]
    fn a_single_broker_leads_in_epoch_zero() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append(&mut log, 2, 1, 0);
        append(&mut log, 1, 1, 0);
        assert_eq!(log.epoch_entries(), vec![(0, 0)]);
        assert_eq!(batch_epochs(&log), vec![(0, 0), (2, 0)]);
        assert_eq!(log.end_offset_for_epoch(0), (0, 3));
    }

    /// Leader appends, one batch per request as clients send them, in three epochs, with
    /// plain and idempotent batches and enough data for several rolls.
    fn leader_history(log: &mut Log) {
        let mut sequence = 0;
        for i in 0..30 {
            let epoch = match i {
                0..=9 => 0,
                10..=19 => 2,
                _ => 5,
            };
            if i % 3 == 0 {
                let mut batch = idempotent_batch(7, 0, sequence, 3);
                sequence += 3;
                log.append_as_leader_with_epoch(&mut batch, 1_000, epoch)
                    .unwrap();
            } else {
                let value = vec![b'x'; 40 + i * 7];
                let records: Vec<_> = (0..1 + i % 4).map(|_| (None, Some(&value[..]))).collect();
                let mut batch = build_batch(0, 2_000 + i as i64, &records);
                log.append_as_leader_with_epoch(&mut batch, 1_000, epoch)
                    .unwrap();
            }
        }
    }

    #[test]
    fn follower_append_reproduces_the_leaders_segments_epochs_and_producer_state() {
        let leader_dir = tempfile::tempdir().unwrap();
        let mut leader = Log::open(leader_dir.path(), small_config(), 0).unwrap();
        leader_history(&mut leader);
        assert!(leader.segment_count() > 3, "the test needs rolls");
        for max_bytes in [1, 700, usize::MAX] {
            let follower_dir = tempfile::tempdir().unwrap();
            let mut follower = Log::open(follower_dir.path(), small_config(), 0).unwrap();
            assert_eq!(
                follower.append_as_follower(&[]).unwrap().num_records,
                0,
                "empty is a no-op"
            );
            replicate(&leader, &mut follower, max_bytes);
            assert_eq!(follower.log_end_offset(), leader.log_end_offset());
            assert_eq!(follower.epoch_entries(), leader.epoch_entries());
            assert_eq!(follower.epoch_entries(), vec![(0, 0), (2, 25), (5, 53)]);
            for epoch in -1..7 {
                assert_eq!(
                    follower.end_offset_for_epoch(epoch),
                    leader.end_offset_for_epoch(epoch),
                    "epoch {epoch}"
                );
            }
            let producer = |log: &Log| log.producer_state().producer(7).unwrap().clone();
            assert_eq!(producer(&follower).batches, producer(&leader).batches);
            assert_eq!(producer(&follower).last_seq(), Some(29));
            // A retry of the last idempotent batch is a duplicate on the follower too.
            let mut retry = idempotent_batch(7, 0, 27, 3);
            let info = follower
                .append_as_leader_with_epoch(&mut retry, 0, 5)
                .unwrap();
            assert!(info.duplicate, "max_bytes {max_bytes}");

            follower.close_cleanly().unwrap();
            leader.flush_and_checkpoint().unwrap();
            let data_files = [".log", ".index", ".timeindex", LEADER_EPOCH_CHECKPOINT_FILE];
            assert_eq!(
                files_ending_with(follower_dir.path(), &data_files),
                files_ending_with(leader_dir.path(), &data_files),
                "max_bytes {max_bytes}"
            );
        }
    }

    #[test]
    fn follower_append_keeps_idempotent_state_across_a_crash() {
        let leader_dir = tempfile::tempdir().unwrap();
        let mut leader = Log::open(leader_dir.path(), small_config(), 0).unwrap();
        leader_history(&mut leader);
        let follower_dir = tempfile::tempdir().unwrap();
        let mut follower = Log::open(follower_dir.path(), small_config(), 0).unwrap();
        replicate(&leader, &mut follower, 500);
        let expected = leader.producer_state().producer(7).unwrap().batches.clone();
        drop(follower);
        let mut follower = Log::open(follower_dir.path(), small_config(), 0).unwrap();
        assert_eq!(
            follower.producer_state().producer(7).unwrap().batches,
            expected
        );
        assert_eq!(follower.epoch_entries(), leader.epoch_entries());
        // Promoted, it continues the producer's sequence.
        let mut next = idempotent_batch(7, 0, 30, 1);
        let info = follower
            .append_as_leader_with_epoch(&mut next, 0, 6)
            .unwrap();
        assert_eq!(info.base_offset, leader.log_end_offset());
        let mut gap = idempotent_batch(7, 0, 40, 1);
        assert_eq!(
            follower
                .append_as_leader_with_epoch(&mut gap, 0, 6)
                .unwrap_err()
                .kafka_error_code(),
            kafka_code::OUT_OF_ORDER_SEQUENCE_NUMBER
        );
    }

    #[test]
    fn non_contiguous_follower_appends_are_refused_and_append_nothing() {
        let leader_dir = tempfile::tempdir().unwrap();
        let mut leader = Log::open(leader_dir.path(), LogConfig::default(), 0).unwrap();
        for epoch in [0, 0, 1, 1] {
            append_with_epoch(&mut leader, 2, epoch);
        }
        let batch_at = |offset: i64| leader.read(offset, 1, i64::MAX).unwrap().records;
        let follower_dir = tempfile::tempdir().unwrap();
        let mut follower = Log::open(follower_dir.path(), LogConfig::default(), 0).unwrap();
        follower.append_as_follower(&batch_at(0)).unwrap();
        let state = |log: &Log| (log.log_end_offset(), log.size_bytes(), log.epoch_entries());
        let before = state(&follower);

        let unexpected = |err: Error| match err {
            Error::UnexpectedAppendOffset {
                position,
                expected_offset,
                base_offset,
                ..
            } => (position, expected_offset, base_offset),
            other => panic!("unexpected error {other:?}"),
        };
        // A gap before the first batch.
        let err = follower.append_as_follower(&batch_at(4)).unwrap_err();
        assert_eq!(unexpected(err), (0, 2, 4));
        // An overlap.
        let err = follower.append_as_follower(&batch_at(0)).unwrap_err();
        assert_eq!(unexpected(err), (0, 2, 0));
        // A gap between two batches: the first one, though it fits, is not appended either.
        let two = [batch_at(2), batch_at(6)].concat();
        let err = follower.append_as_follower(&two).unwrap_err();
        assert_eq!(unexpected(err), (batch_at(2).len(), 4, 6));
        assert_eq!(state(&follower), before);
        // A corrupt batch.
        let mut corrupt = batch_at(2).to_vec();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let err = follower.append_as_follower(&corrupt).unwrap_err();
        assert_eq!(err.kafka_error_code(), kafka_code::CORRUPT_MESSAGE);
        assert_eq!(state(&follower), before);

        // The variant for compacted leaders takes holes but still refuses going back.
        let err = follower
            .append_as_follower_with_gaps(&batch_at(0))
            .unwrap_err();
        assert_eq!(unexpected(err), (0, 2, 0));
        let info = follower.append_as_follower_with_gaps(&two).unwrap();
        assert_eq!(
            (info.base_offset, info.last_offset, info.num_records),
            (2, 7, 4)
        );
        assert_eq!(follower.log_end_offset(), 8);
        assert_eq!(batch_epochs(&follower), vec![(0, 0), (2, 0), (6, 1)]);
        assert_eq!(follower.epoch_entries(), vec![(0, 0), (1, 6)]);
    }

    #[test]
    fn truncation_keeps_the_epoch_cache_and_high_watermark_in_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        for epoch in [0, 0, 1, 1, 2, 2] {
            append_with_epoch(&mut log, 2, epoch);
        }
        log.set_high_watermark(12);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 4), (2, 8)]);
        // A follower told that epoch 1 ended at 6 on the leader.
        log.truncate_to(6).unwrap();
        assert_eq!(log.log_end_offset(), 6);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 4)]);
        assert_eq!(log.high_watermark(), 6);
        assert_eq!(log.end_offset_for_epoch(2), (1, 6));
        // Re-appended in a later epoch.
        append_with_epoch(&mut log, 3, 4);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 4), (4, 6)]);
        assert_eq!(log.end_offset_for_epoch(3), (1, 6));
        drop(log);
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 4), (4, 6)]);
        // Truncating past the end changes nothing.
        log.truncate_to(100).unwrap();
        assert_eq!(log.epoch_entries(), vec![(0, 0), (1, 4), (4, 6)]);

        // Retention moves the first epoch's start up with the log start offset.
        log.delete_records_before(5).unwrap();
        assert_eq!(log.epoch_entries(), vec![(1, 5), (4, 6)]);
        assert_eq!(
            log.high_watermark(),
            5,
            "not checkpointed, so 0, then the log start"
        );
        log.delete_records_before(7).unwrap();
        assert_eq!(log.epoch_entries(), vec![(4, 7)]);
        assert_eq!(log.high_watermark(), 7);
        drop(log);
        let mut log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!(log.epoch_entries(), vec![(4, 7)]);

        // Below the log start offset: everything goes.
        log.truncate_to(3).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (3, 3));
        assert!(log.epoch_entries().is_empty());
        assert_eq!(log.high_watermark(), 3);
        // A follower whose fetch offset fell below the leader's log start starts over there.
        log.truncate_fully_and_start_at(40).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.high_watermark()
            ),
            (40, 40, 40)
        );
        assert!(log.recovery_point() <= 40);
        assert!(log.truncate_fully_and_start_at(-1).is_err());
        let mut leader_batch = build_batch(40, 0, &[(None, Some(b"a"))]);
        crate::log::batch::set_partition_leader_epoch(&mut leader_batch, 9);
        log.append_as_follower(&leader_batch).unwrap();
        assert_eq!(log.epoch_entries(), vec![(9, 40)]);
        drop(log);
        let log = Log::open(dir.path(), small_config(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 41));
        assert_eq!(log.epoch_entries(), vec![(9, 40)]);
    }

    #[test]
    fn a_crash_with_a_torn_tail_leaves_the_epoch_cache_consistent_with_the_batches() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append_with_epoch(&mut log, 2, 0);
        append_with_epoch(&mut log, 2, 0);
        append_with_epoch(&mut log, 2, 3);
        append_with_epoch(&mut log, 2, 3);
        append_with_epoch(&mut log, 2, 5);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4), (5, 8)]);
        // kill -9: no destructor runs, and the last batch (the only one of epoch 5) is torn.
        std::mem::forget(log);
        flip_last_byte(dir.path(), 0);
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.log_end_offset(), 8);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4)]);
        assert_eq!(log.end_offset_for_epoch(5), (3, 8));
        drop(log);

        // Without the file the cache is rebuilt from the batch headers, identically.
        let checkpoint = dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE);
        let good = fs::read(&checkpoint).unwrap();
        fs::remove_file(&checkpoint).unwrap();
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4)]);
        assert_eq!(
            fs::read(&checkpoint).unwrap(),
            good,
            "rewritten after the rebuild"
        );
        drop(log);
        // So is a corrupt file.
        fs::write(&checkpoint, b"0\n7\ngarbage\n").unwrap();
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4)]);
        assert_eq!(fs::read(&checkpoint).unwrap(), good);
        drop(log);
        // A file ahead of the log (assigned, then the crash came before the batch was
        // written) is cut back to the log end.
        fs::write(&checkpoint, b"0\n4\n0 0\n3 4\n5 8\n6 9\n").unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4)]);
        assert_eq!(fs::read(&checkpoint).unwrap(), good);
        // And the log goes on in a new epoch.
        append_with_epoch(&mut log, 1, 6);
        assert_eq!(log.epoch_entries(), vec![(0, 0), (3, 4), (6, 8)]);
    }

    #[test]
    fn the_high_watermark_is_clamped_checkpointed_and_lowered_only_by_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let hw_file = dir.path().join(HIGH_WATERMARK_FILE);
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.high_watermark(), 0);
        for _ in 0..5 {
            append(&mut log, 2, 1, 0);
        }
        log.set_high_watermark(20);
        assert_eq!(log.high_watermark(), 10, "clamped to the log end offset");
        log.set_high_watermark(4);
        assert_eq!(log.high_watermark(), 10, "never moves back");
        // Not checkpointed before flush_and_checkpoint: a crash reopens at the log start.
        drop(log);
        assert!(!hw_file.exists());
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.high_watermark(), 0);
        log.set_high_watermark(7);
        log.flush_and_checkpoint().unwrap();
        assert_eq!(fs::read_to_string(&hw_file).unwrap(), "7\n");
        drop(log);
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.high_watermark(), 7);
        // Truncation lowers it; the checkpoint follows at the next clean close.
        log.truncate_to(4).unwrap();
        assert_eq!(log.high_watermark(), 4);
        log.close_cleanly().unwrap();
        drop(log);
        assert_eq!(fs::read_to_string(&hw_file).unwrap(), "4\n");
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.high_watermark(), 4);
        // A checkpoint above the log end (the tail was lost) is clamped on open.
        append(&mut log, 2, 1, 0);
        log.set_high_watermark(6);
        log.flush_and_checkpoint().unwrap();
        log.truncate_to(4).unwrap();
        drop(log);
        assert_eq!(fs::read_to_string(&hw_file).unwrap(), "6\n");
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.high_watermark(), 4);
        drop(log);
        // An unreadable checkpoint is ignored (a lower high watermark is always safe).
        fs::write(&hw_file, b"garbage").unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.high_watermark(), 0);
        // Below the log start offset it cannot be.
        log.delete_records_before(3).unwrap();
        assert_eq!(log.high_watermark(), 3);
        log.set_high_watermark(1);
        assert_eq!(log.high_watermark(), 3);
    }

    #[test]
    fn a_new_leader_records_its_epoch_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        append_with_epoch(&mut log, 3, 1);
        // Becomes leader of epoch 4 at the log end: a follower still in epoch 1 learns that
        // it ended at 3 before any batch of epoch 4 exists.
        log.assign_epoch(4, log.log_end_offset()).unwrap();
        assert_eq!(log.epoch_entries(), vec![(1, 0), (4, 3)]);
        assert_eq!(log.end_offset_for_epoch(1), (1, 3));
        assert_eq!(log.end_offset_for_epoch(4), (4, 3));
        assert!(matches!(
            log.assign_epoch(2, 3),
            Err(Error::StaleLeaderEpoch {
                leader_epoch: 2,
                latest_epoch: 4,
                ..
            })
        ));
        log.assign_epoch(4, 3).unwrap();
        assert_eq!(append_with_epoch(&mut log, 1, 4).base_offset, 3);
        assert_eq!(log.epoch_entries(), vec![(1, 0), (4, 3)]);

        // Leader of epoch 6, then demoted before appending: the entry without batches goes
        // when the replica acts as a follower.
        log.assign_epoch(6, log.log_end_offset()).unwrap();
        assert_eq!(log.latest_epoch(), Some(6));
        log.truncate_to(log.log_end_offset()).unwrap();
        assert_eq!(log.epoch_entries(), vec![(1, 0), (4, 3)]);
        log.assign_epoch(6, log.log_end_offset()).unwrap();
        let mut from_leader = build_batch(4, 0, &[(None, Some(b"f"))]);
        crate::log::batch::set_partition_leader_epoch(&mut from_leader, 5);
        log.append_as_follower(&from_leader).unwrap();
        assert_eq!(log.epoch_entries(), vec![(1, 0), (4, 3), (5, 4)]);
        // And an open drops it too.
        log.assign_epoch(7, log.log_end_offset()).unwrap();
        drop(log);
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.epoch_entries(), vec![(1, 0), (4, 3), (5, 4)]);
    }
}

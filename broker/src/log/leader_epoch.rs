//! [`LeaderEpochCache`]: which leader epoch wrote which offsets of a partition (Kafka's
//! `LeaderEpochFileCache`, KIP-101 and KIP-279).
//!
//! ```text
//! offset     0  1  2  3  4  5  6  7  8  | 9 = log end offset
//! epoch      0  0  0  2  2  3  3  3  3  |
//!
//! cache      (epoch 0, start 0)  (epoch 2, start 3)  (epoch 3, start 5)
//!
//! end_offset_for(0) = (0, 3)    end_offset_for(1) = (0, 3)    end_offset_for(2) = (2, 5)
//! end_offset_for(3) = (3, 9)    end_offset_for(7) = (3, 9)    end_offset_for(-1) = None
//! ```
//!
//! Every batch carries the epoch of the leader that appended it (`partitionLeaderEpoch`). The
//! cache keeps, per epoch, the offset of the first batch it wrote, so a follower that rejoins
//! can ask the leader where its last epoch ended and cut a divergent tail before fetching,
//! instead of truncating to its high watermark (the data-loss cases of KIP-101).
//!
//! Entries strictly increase in both epoch and start offset. The cache is persisted in
//! `leader-epoch-checkpoint` in the partition directory, in Kafka's text format (a version
//! line `0`, a line with the entry count, then one `epoch start_offset` line per entry),
//! rewritten atomically (`.tmp`, fsync, rename, fsync of the directory) whenever it changes.
//!
//! The `Log` keeps the file *at or ahead of* its data: it assigns epochs before it writes the
//! batches, and truncates the cache after it truncates the log. A crash therefore leaves
//! entries at or past the log end at worst, which `Log::open` removes with
//! [`LeaderEpochCache::truncate_from_end`]; a missing or unreadable file is rebuilt from the
//! batch headers. Every entry thus starts at a batch, except the one a new leader records
//! at its log end before its first append (`Log::assign_epoch`).

use std::fs;
use std::path::{Path, PathBuf};

use crate::log::error::{Error, Result};
use crate::log::partition_log::write_file_atomically;

/// Name of the checkpoint file in the partition directory (Kafka's).
pub const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
/// Kafka's `UNDEFINED_EPOCH`: no epoch known (also the epoch of a batch no leader stamped).
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`: no end offset known.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;
/// Version line of the checkpoint file.
const CHECKPOINT_VERSION: &str = "0";

/// One cache entry: `epoch` wrote the offsets from `start_offset` up to the next entry's
/// start offset (or the log end offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// Offset of the first batch that epoch appended.
    pub start_offset: i64,
}

/// The leader epoch cache of one partition. See the module doc.
#[derive(Debug, Clone)]
pub struct LeaderEpochCache {
    /// The partition directory, which holds [`LEADER_EPOCH_CHECKPOINT_FILE`].
    dir: PathBuf,
    /// Strictly increasing in both fields.
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache for the partition in `dir`; nothing is written until it changes.
    pub fn new(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    /// Loads the checkpoint file of `dir`. `Ok(None)` if it is missing, or if it does not
    /// parse or breaks the ordering rules (logged): the caller then rebuilds the cache from
    /// the batch headers, which hold the same information. Other I/O errors are returned.
    pub fn load(dir: &Path) -> Result<Option<LeaderEpochCache>> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT_FILE);
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading", path)(e)),
        };
        match parse_checkpoint(&text) {
            Ok(entries) => Ok(Some(LeaderEpochCache {
                dir: dir.to_path_buf(),
                entries,
            })),
            Err(reason) => {
                tracing::warn!(
                    file = %path.display(),
                    %reason,
                    "unreadable leader epoch checkpoint; rebuilding it from the log"
                );
                Ok(None)
            }
        }
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry.
    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The newest epoch, `None` if the cache is empty.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` and persists the change. Returns whether
    /// the cache changed. See [`LeaderEpochCache::assign_all`] for the rules.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool> {
        self.assign_all([(epoch, start_offset)])
    }

    /// Applies several assignments in order and persists once, if anything changed. An
    /// assignment is ignored if its epoch is undefined (negative) or not newer than the latest
    /// one, or if it starts before the latest entry; a newer epoch at the latest entry's own
    /// start offset replaces that entry (the previous leader appended nothing). If the file
    /// cannot be written the cache is left as it was, so an append that fails here leaves no
    /// trace.
    pub fn assign_all(
        &mut self,
        assignments: impl IntoIterator<Item = (i32, i64)>,
    ) -> Result<bool> {
        let before = self.entries.clone();
        let changed = self.assign_all_in_memory(assignments);
        if changed {
            if let Err(e) = self.persist() {
                self.entries = before;
                return Err(e);
            }
        }
        Ok(changed)
    }

    /// [`LeaderEpochCache::assign_all`] without writing the file (a rebuild writes once at
    /// the end).
    pub(crate) fn assign_all_in_memory(
        &mut self,
        assignments: impl IntoIterator<Item = (i32, i64)>,
    ) -> bool {
        let mut changed = false;
        for (epoch, start_offset) in assignments {
            changed |= self.assign_in_memory(epoch, start_offset);
        }
        changed
    }

    fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let Some(latest) = self.latest_entry() else {
            self.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
            return true;
        };
        if epoch <= latest.epoch || start_offset < latest.start_offset {
            if epoch < latest.epoch || (epoch > latest.epoch && start_offset < latest.start_offset)
            {
                tracing::warn!(
                    dir = %self.dir.display(),
                    epoch,
                    start_offset,
                    latest_epoch = latest.epoch,
                    latest_start_offset = latest.start_offset,
                    "ignoring a leader epoch assignment that would go backwards"
                );
            }
            return false;
        }
        if start_offset == latest.start_offset {
            self.entries.pop();
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Kafka's `endOffsetFor`: for the largest cached epoch at or below `epoch`, that epoch and
    /// the offset where it ended, which is the next entry's start offset, or `log_end_offset`
    /// if it is the latest epoch. `None` (Kafka's `UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET`)
    /// when `epoch` is undefined or below every cached epoch, and when the cache is empty.
    ///
    /// Kafka answers a request below the first entry with the first entry's start offset;
    /// we answer undefined, so a follower falls back to the leader's log start rather than
    /// trust an offset the leader cannot vouch for.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        if epoch < 0 {
            return None;
        }
        let floor = self.entries.partition_point(|e| e.epoch <= epoch);
        let found = self.entries.get(floor.checked_sub(1)?)?;
        let end = self
            .entries
            .get(floor)
            .map_or(log_end_offset, |next| next.start_offset);
        Some((found.epoch, end))
    }

    /// Removes the entries that start at or after `end_offset` (the log was truncated there)
    /// and persists the change. Returns whether anything changed. The in-memory cache follows
    /// the log even when the file cannot be written, since the data is gone already; a stale
    /// file only holds entries past the log end, which the next open removes.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<bool> {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        if keep == self.entries.len() {
            return Ok(false);
        }
        self.entries.truncate(keep);
        self.persist()?;
        Ok(true)
    }

    /// The log start offset moved up to `start_offset` (retention, `DeleteRecords`): drops the
    /// entries wholly below it and moves the start of the epoch that holds it up to it, then
    /// persists the change. Returns whether anything changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<bool> {
        let floor = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(first_kept) = floor.checked_sub(1) else {
            return Ok(false);
        };
        if first_kept == 0 && self.entries[0].start_offset == start_offset {
            return Ok(false);
        }
        self.entries.drain(..first_kept);
        self.entries[0].start_offset = start_offset;
        self.persist()?;
        Ok(true)
    }

    /// Forgets every entry (the log was emptied) and persists that.
    pub fn clear(&mut self) -> Result<()> {
        self.entries.clear();
        self.persist()
    }

    /// Writes the entries to the checkpoint file atomically.
    pub fn persist(&self) -> Result<()> {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        write_file_atomically(&self.dir, LEADER_EPOCH_CHECKPOINT_FILE, text.as_bytes())
    }
}

/// Parses Kafka's checkpoint text and checks the ordering rules.
fn parse_checkpoint(bytes: &[u8]) -> std::result::Result<Vec<EpochEntry>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut lines = text.lines();
    match lines.next() {
        Some(CHECKPOINT_VERSION) => {}
        other => return Err(format!("unknown version line {other:?}")),
    }
    let count_line = lines.next().ok_or("missing entry count")?;
    let count: usize = count_line
        .trim()
        .parse()
        .map_err(|e| format!("bad entry count {count_line:?}: {e}"))?;
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for line in lines.by_ref().take(count) {
        let mut fields = line.split_whitespace();
        let (Some(epoch), Some(start_offset), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("malformed entry {line:?}"));
        };
        let entry = EpochEntry {
            epoch: epoch
                .parse()
                .map_err(|e| format!("bad epoch in {line:?}: {e}"))?,
            start_offset: start_offset
                .parse()
                .map_err(|e| format!("bad start offset in {line:?}: {e}"))?,
        };
        if entry.epoch < 0 || entry.start_offset < 0 {
            return Err(format!("negative value in {line:?}"));
        }
        if let Some(prev) = entries.last() {
            if entry.epoch <= prev.epoch || entry.start_offset <= prev.start_offset {
                return Err(format!("entry {line:?} does not follow {prev:?}"));
            }
        }
        entries.push(entry);
    }
    if entries.len() != count {
        return Err(format!(
            "{count} entries announced, {} found",
            entries.len()
        ));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("trailing lines after the entries".to_string());
    }
    Ok(entries)
}

#[cfg(test)]
#[path = "leader_epoch_test.rs"]
mod tests;

//! One partition hosted on this broker: its log and its role in replication.
//!
//! ```text
//!            metadata image (controller)            follower fetches (gRPC)
//!                     │ become_leader / become_follower        │ fetch_for_follower
//!                     ▼                                        ▼
//! Produce ──> Partition { Mutex<Inner { log, role }>, high watermark: watch } ──> Fetch
//!  (leader)        │                                        (consumers: up to the HW)
//!                  └── role = Leader { isr, follower progress } | Follower { leader } | None
//! ```
//!
//! Everything about a partition sits behind one mutex, so an append, a read, a follower's
//! progress and the high watermark it moves are seen together, and a leadership change
//! cannot slip between a role check and an append. The lock is held for one operation on
//! the blocking pool, never across an `.await`.
//!
//! High watermark (Kafka's rule): the leader's HW is the smallest log end offset over the
//! in-sync replicas (itself included). Consumers read only below it, acks=all producers are
//! answered once it covers their batch, and followers learn it from fetch responses.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use uuid::Uuid;

use crate::log::{AppendInfo, FetchData, Log};
use crate::server::replica_manager::ApiError;

/// How far a follower has come, as the leader sees it.
#[derive(Debug, Clone, Default)]
pub struct FollowerProgress {
    /// The follower's log end offset: the offset it last fetched from. -1 until it fetched.
    pub log_end_offset: i64,
    /// When the follower last fetched up to the leader's log end (Kafka's
    /// `lastCaughtUpTimeMs`); it leaves the ISR once this is older than
    /// `replica.lag.time.max.ms`.
    pub last_caught_up_ms: i64,
    last_fetch_ms: i64,
    leader_end_at_last_fetch: i64,
}

/// What this broker does for the partition.
#[derive(Debug, Clone)]
pub enum Role {
    /// Hosted (a replica) but neither leading nor following: the partition has no leader.
    Offline,
    Leader(LeaderState),
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

#[derive(Debug, Clone)]
pub struct LeaderState {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    /// The committed ISR, as the controller last told.
    pub isr: Vec<i32>,
    /// Log end offset when this leadership began: a follower must reach it before it may
    /// rejoin the ISR (Kafka's `leaderEpochStartOffset`).
    pub epoch_start_offset: i64,
    pub followers: BTreeMap<i32, FollowerProgress>,
    /// An ISR change sent to the controller and not yet seen in the image.
    pub pending_isr: Option<Vec<i32>>,
}

impl LeaderState {
    /// The ISR the high watermark is computed over: while an expansion is in flight the new
    /// member already counts (Kafka's "maximal ISR"), which can only hold the HW back.
    fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending_isr {
            for r in pending {
                if !isr.contains(r) {
                    isr.push(*r);
                }
            }
        }
        isr
    }
}

#[derive(Debug)]
pub struct Inner {
    /// `None` once the partition is deleted or moved off this broker.
    pub log: Option<Log>,
    pub role: Role,
}

/// One partition replica on this broker.
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub topic_id: Uuid,
    pub broker_id: i32,
    inner: Mutex<Inner>,
    /// The high watermark, and a wake-up for anyone waiting on it (acks=all producers).
    /// Also bumped on role changes so waiters re-check their leadership.
    hw: watch::Sender<i64>,
}

/// A locked, live partition log.
pub struct LogGuard<'a>(MutexGuard<'a, Inner>);

impl std::ops::Deref for LogGuard<'_> {
    type Target = Log;
    fn deref(&self) -> &Log {
        // A LogGuard is only built around a present log (see `Partition::log`).
        self.0.log.as_ref().expect("LogGuard holds a log")
    }
}

impl std::ops::DerefMut for LogGuard<'_> {
    fn deref_mut(&mut self) -> &mut Log {
        self.0.log.as_mut().expect("LogGuard holds a log")
    }
}

/// What a follower's fetch gets for one partition (see the `Replica` gRPC service).
#[derive(Debug, Default)]
pub struct FollowerFetchResult {
    pub error: i16,
    pub message: String,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub records: Bytes,
    pub diverging: Option<(i32, i64)>,
    /// An ISR expansion the leader should ask the controller for.
    pub expand_isr: Option<IsrChange>,
}

/// An ISR change to propose to the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// Why a leader's append was not confirmed by the in-sync replicas
/// ([`Partition::wait_replicated`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReplicated {
    /// This broker no longer leads the partition in the epoch of the append: the records
    /// may be truncated away.
    LeadershipLost,
    /// The in-sync replicas did not all fetch the records in time.
    TimedOut,
    /// Replicated, but the ISR shrank below `min.insync.replicas` meanwhile (Kafka's
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    IsrShrank,
}

impl Partition {
    pub fn new(topic: &str, index: i32, topic_id: Uuid, broker_id: i32, log: Log) -> Partition {
        let hw = log.high_watermark();
        Partition {
            topic: topic.to_string(),
            index,
            topic_id,
            broker_id,
            inner: Mutex::new(Inner {
                log: Some(log),
                role: Role::Offline,
            }),
            hw: watch::channel(hw).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held means a broken invariant in the log; carrying on
        // with that state could corrupt data, so it propagates.
        self.inner.lock().expect("partition lock poisoned")
    }

    /// The partition's log, whatever the role, or `None` once deleted or moved away.
    pub fn log(&self) -> Option<LogGuard<'_>> {
        let guard = self.lock();
        guard.log.is_some().then(|| LogGuard(guard))
    }

    pub fn role(&self) -> Role {
        self.lock().role.clone()
    }

    /// The leader's log for a client request, or the error a client expects when this
    /// broker does not lead the partition (it refreshes its metadata and retries).
    pub fn leader_log(&self) -> Result<(LogGuard<'_>, i32), ApiError> {
        let guard = self.lock();
        if guard.log.is_none() {
            return Err(self.deleted_error());
        }
        match &guard.role {
            Role::Leader(l) => {
                let epoch = l.leader_epoch;
                Ok((LogGuard(guard), epoch))
            }
            _ => Err(self.not_leader()),
        }
    }

    pub fn not_leader(&self) -> ApiError {
        ApiError::new(
            ResponseError::NotLeaderOrFollower,
            format!(
                "broker {} is not the leader of {}-{}",
                self.broker_id, self.topic, self.index
            ),
        )
    }

    pub fn deleted_error(&self) -> ApiError {
        ApiError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("{}-{} is not hosted on this broker", self.topic, self.index),
        )
    }

    pub fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }

    pub fn subscribe_hw(&self) -> watch::Receiver<i64> {
        self.hw.subscribe()
    }

    /// Wakes whoever waits on the high watermark, e.g. after a role change.
    pub fn poke(&self) {
        self.hw.send_modify(|_| {});
    }

    /// The current leader epoch when leading, for acks=all waiters to notice a change.
    pub fn leader_epoch_if_leader(&self) -> Option<i32> {
        match &self.lock().role {
            Role::Leader(l) => Some(l.leader_epoch),
            _ => None,
        }
    }

    /// Whether this broker leads the partition, has other replicas, and none of them has
    /// fetched from it for `window_ms`: with no controller heartbeat getting through either
    /// (see `BrokerContext::cut_off_leader`), it is cut off, and the others have most
    /// likely elected a new leader. A partition without followers is never cut off by this
    /// test: nothing would tell it.
    pub fn followers_silent(&self, now_ms: i64, window_ms: i64) -> bool {
        match &self.lock().role {
            Role::Leader(l) => {
                !l.followers.is_empty()
                    && l.followers
                        .values()
                        .all(|f| now_ms - f.last_fetch_ms > window_ms)
            }
            _ => false,
        }
    }

    /// Current ISR size when leading.
    pub fn isr_len(&self) -> Option<usize> {
        match &self.lock().role {
            Role::Leader(l) => Some(l.isr.len()),
            _ => None,
        }
    }

    /// Produce on the leader. With acks=all the ISR must have at least `min_isr` members
    /// (NOT_ENOUGH_REPLICAS otherwise, nothing appended). Returns the append and the leader
    /// epoch it was written in.
    pub fn append_as_leader(
        &self,
        records: &mut [u8],
        now_ms: i64,
        acks_all: bool,
        min_isr: usize,
    ) -> Result<(AppendInfo, i32), ApiError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(log) = inner.log.as_mut() else {
            return Err(self.deleted_error());
        };
        let Role::Leader(leader) = &mut inner.role else {
            return Err(self.not_leader());
        };
        if acks_all && leader.isr.len() < min_isr {
            return Err(ApiError::new(
                ResponseError::NotEnoughReplicas,
                format!(
                    "{}-{}: the in-sync replica set {:?} has fewer than min.insync.replicas={min_isr} members",
                    self.topic, self.index, leader.isr
                ),
            ));
        }
        let epoch = leader.leader_epoch;
        let info = log
            .append_as_leader_with_epoch(records, now_ms, epoch)
            .map_err(|e| ApiError {
                code: e.kafka_error_code(),
                message: e.to_string(),
            })?;
        let hw = advance_hw(self.broker_id, log, leader);
        drop(guard);
        if let Some(hw) = hw {
            self.hw.send_replace(hw);
        }
        Ok((info, epoch))
    }

    /// A client's read on the leader: never past the high watermark.
    pub fn read_for_consumer(
        &self,
        fetch_offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        current_leader_epoch: i32,
    ) -> Result<(FetchData, i64), ApiError> {
        let (log, epoch) = self.leader_log()?;
        check_epoch(current_leader_epoch, epoch)?;
        let hw = log.high_watermark();
        let data = log
            .read_batches(fetch_offset, max_bytes, hw, min_one_batch)
            .map_err(|e| ApiError {
                code: e.kafka_error_code(),
                message: e.to_string(),
            })?;
        Ok((data, hw))
    }

    /// Serves a follower's fetch (leader side): checks the epoch, detects a divergent
    /// follower log, reads up to the log end, records the follower's progress, and moves
    /// the high watermark.
    #[allow(clippy::too_many_arguments)]
    pub fn fetch_for_follower(
        &self,
        replica_id: i32,
        fetch_offset: i64,
        current_leader_epoch: i32,
        last_fetched_epoch: i32,
        max_bytes: usize,
        now_ms: i64,
    ) -> FollowerFetchResult {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let error = |e: ApiError| FollowerFetchResult {
            error: e.code,
            message: e.message,
            ..Default::default()
        };
        let Some(log) = inner.log.as_mut() else {
            return error(self.deleted_error());
        };
        let Role::Leader(leader) = &mut inner.role else {
            return error(self.not_leader());
        };
        if let Err(e) = check_epoch(current_leader_epoch, leader.leader_epoch) {
            return error(e);
        }
        if !leader.replicas.contains(&replica_id) {
            return error(ApiError::new(
                ResponseError::NotLeaderOrFollower,
                format!(
                    "broker {replica_id} is not a replica of {}-{}",
                    self.topic, self.index
                ),
            ));
        }
        let log_end = log.log_end_offset();
        let mut result = FollowerFetchResult {
            log_start_offset: log.log_start_offset(),
            log_end_offset: log_end,
            ..Default::default()
        };
        // KIP-595 style divergence check: does the follower's last epoch end where ours does?
        if last_fetched_epoch >= 0 {
            let (epoch, end) = log.end_offset_for_epoch(last_fetched_epoch);
            if epoch < last_fetched_epoch || end < fetch_offset {
                result.diverging = Some((epoch, end));
                result.high_watermark = log.high_watermark();
                return result;
            }
        }
        if fetch_offset < log.log_start_offset() || fetch_offset > log_end {
            result.error = ResponseError::OffsetOutOfRange.code();
            result.message = format!(
                "fetch offset {fetch_offset} is outside [{}, {log_end}]",
                log.log_start_offset()
            );
            result.high_watermark = log.high_watermark();
            return result;
        }
        // Progress first: the follower holds everything below `fetch_offset`.
        let progress = leader.followers.entry(replica_id).or_default();
        if fetch_offset >= log_end {
            progress.last_caught_up_ms = now_ms;
        } else if fetch_offset >= progress.leader_end_at_last_fetch {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.log_end_offset = fetch_offset;
        progress.last_fetch_ms = now_ms;
        progress.leader_end_at_last_fetch = log_end;
        let hw_moved = advance_hw(self.broker_id, log, leader);
        let hw = log.high_watermark();
        // A follower out of the ISR that has caught up to the HW and to the start of this
        // leadership rejoins (through the controller).
        if !leader.isr.contains(&replica_id)
            && leader.pending_isr.is_none()
            && fetch_offset >= hw
            && fetch_offset >= leader.epoch_start_offset
        {
            let mut new_isr = leader.isr.clone();
            new_isr.push(replica_id);
            new_isr.sort_by_key(|r| leader.replicas.iter().position(|x| x == r));
            leader.pending_isr = Some(new_isr.clone());
            result.expand_isr = Some(IsrChange {
                topic: self.topic.clone(),
                partition: self.index,
                leader_epoch: leader.leader_epoch,
                partition_epoch: leader.partition_epoch,
                new_isr,
            });
        }
        match log.read_batches(fetch_offset, max_bytes.max(1), log_end, true) {
            Ok(data) => result.records = data.records,
            Err(e) => {
                result.error = e.kafka_error_code();
                result.message = e.to_string();
            }
        }
        result.high_watermark = hw;
        drop(guard);
        if let Some(hw) = hw_moved {
            self.hw.send_replace(hw);
        }
        result
    }

    /// acks=all: waits until the high watermark passes `last_offset`, an append made in
    /// `leader_epoch`, while this broker still leads the partition in that epoch; gives up
    /// at `deadline`.
    pub async fn wait_replicated(
        &self,
        last_offset: i64,
        leader_epoch: i32,
        min_isr: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), NotReplicated> {
        let mut hw = self.subscribe_hw();
        loop {
            hw.borrow_and_update();
            // The high watermark first, the role second: a high watermark read while this
            // broker still leads in the append's epoch is that leader's, never one a
            // follower took from a new leader after truncating the append away.
            let high_watermark = self.high_watermark();
            if self.leader_epoch_if_leader() != Some(leader_epoch) {
                return Err(NotReplicated::LeadershipLost);
            }
            if high_watermark > last_offset {
                return match self.isr_len() {
                    Some(n) if n < min_isr => Err(NotReplicated::IsrShrank),
                    _ => Ok(()),
                };
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return Err(NotReplicated::TimedOut),
                changed = hw.changed() => {
                    // The sender lives in this partition; it cannot be gone while we hold it.
                    if changed.is_err() {
                        return Err(NotReplicated::LeadershipLost);
                    }
                }
            }
        }
    }

    /// ISR members that have not caught up for `max_lag_ms`: the shrink to propose.
    pub fn isr_shrink(&self, now_ms: i64, max_lag_ms: i64) -> Option<IsrChange> {
        let mut guard = self.lock();
        let Role::Leader(leader) = &mut guard.role else {
            return None;
        };
        if leader.pending_isr.is_some() {
            return None;
        }
        let log_end = guard.log.as_ref()?.log_end_offset();
        let Role::Leader(leader) = &mut guard.role else {
            return None;
        };
        let lagging: Vec<i32> = leader
            .isr
            .iter()
            .copied()
            .filter(|r| *r != self.broker_id)
            .filter(|r| {
                let p = leader.followers.get(r).cloned().unwrap_or_default();
                p.log_end_offset < log_end && now_ms - p.last_caught_up_ms > max_lag_ms
            })
            .collect();
        if lagging.is_empty() {
            return None;
        }
        let new_isr: Vec<i32> = leader
            .isr
            .iter()
            .copied()
            .filter(|r| !lagging.contains(r))
            .collect();
        leader.pending_isr = Some(new_isr.clone());
        Some(IsrChange {
            topic: self.topic.clone(),
            partition: self.index,
            leader_epoch: leader.leader_epoch,
            partition_epoch: leader.partition_epoch,
            new_isr,
        })
    }

    /// The controller refused or lost an ISR change: allow a new proposal.
    pub fn clear_pending_isr(&self, partition_epoch: i32) {
        if let Role::Leader(leader) = &mut self.lock().role {
            if leader.partition_epoch == partition_epoch {
                leader.pending_isr = None;
            }
        }
    }

    /// Applies the partition's record from a newly committed metadata image. Returns true
    /// when the role changed (so fetchers must be updated).
    pub fn apply_record(
        &self,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: &[i32],
        isr: &[i32],
        now_ms: i64,
    ) -> bool {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(log) = inner.log.as_mut() else {
            return false;
        };
        let mut changed = false;
        let mut hw_moved = None;
        if leader == self.broker_id {
            match &mut inner.role {
                Role::Leader(state) if state.leader_epoch == leader_epoch => {
                    // Same leadership: an ISR or replica change committed.
                    if state.partition_epoch != partition_epoch {
                        state.partition_epoch = partition_epoch;
                        state.isr = isr.to_vec();
                        state.replicas = replicas.to_vec();
                        state.pending_isr = None;
                        state.followers.retain(|r, _| replicas.contains(r));
                        hw_moved = advance_hw(self.broker_id, log, state);
                    }
                }
                _ => {
                    let epoch_start_offset = log.log_end_offset();
                    // The new epoch starts at our log end (Kafka's leaderEpochStartOffset): a
                    // follower asking for an older epoch's end learns where it diverges even
                    // before anything is appended in this one.
                    if let Err(e) = log.assign_epoch(leader_epoch, epoch_start_offset) {
                        tracing::error!(
                            topic = %self.topic, partition = self.index, error = %e,
                            "cannot record the new leader epoch"
                        );
                    }
                    let followers = replicas
                        .iter()
                        .filter(|r| **r != self.broker_id)
                        .map(|r| {
                            (
                                *r,
                                FollowerProgress {
                                    log_end_offset: -1,
                                    // Followers get a full lag period to show up.
                                    last_caught_up_ms: now_ms,
                                    last_fetch_ms: now_ms,
                                    leader_end_at_last_fetch: epoch_start_offset,
                                },
                            )
                        })
                        .collect();
                    let mut state = LeaderState {
                        leader_epoch,
                        partition_epoch,
                        replicas: replicas.to_vec(),
                        isr: isr.to_vec(),
                        epoch_start_offset,
                        followers,
                        pending_isr: None,
                    };
                    hw_moved = advance_hw(self.broker_id, log, &mut state);
                    inner.role = Role::Leader(state);
                    changed = true;
                    tracing::info!(
                        topic = %self.topic, partition = self.index, leader_epoch,
                        log_end_offset = epoch_start_offset, ?isr,
                        "became leader"
                    );
                }
            }
        } else {
            let new_role = if leader < 0 {
                Role::Offline
            } else {
                Role::Follower {
                    leader,
                    leader_epoch,
                }
            };
            let same = match (&inner.role, &new_role) {
                (
                    Role::Follower {
                        leader: a,
                        leader_epoch: x,
                    },
                    Role::Follower {
                        leader: b,
                        leader_epoch: y,
                    },
                ) => a == b && x == y,
                (Role::Offline, Role::Offline) => true,
                _ => false,
            };
            if !same {
                tracing::info!(
                    topic = %self.topic, partition = self.index, leader, leader_epoch,
                    "became follower"
                );
                inner.role = new_role;
                changed = true;
            }
        }
        drop(guard);
        match hw_moved {
            Some(hw) => {
                self.hw.send_replace(hw);
            }
            None if changed => self.poke(),
            None => {}
        }
        changed
    }

    /// Follower side: appends what the leader sent and takes its high watermark.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        records: &[u8],
        leader_hw: i64,
        leader_log_start: i64,
    ) -> Result<bool, ApiError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(log) = inner.log.as_mut() else {
            return Err(self.deleted_error());
        };
        match inner.role {
            Role::Follower {
                leader_epoch: e, ..
            } if e == leader_epoch => {}
            _ => return Err(self.not_leader()),
        }
        let storage = |e: crate::log::Error| ApiError {
            code: e.kafka_error_code(),
            message: e.to_string(),
        };
        let appended = !records.is_empty();
        if appended {
            // After DeleteRecords in the middle of a batch, the leader's first batch starts
            // below its log start: an empty follower restarts its log at that batch.
            if log.log_end_offset() == log.log_start_offset() {
                if let Ok(header) = crate::log::BatchHeader::parse(records) {
                    if header.base_offset < log.log_end_offset() {
                        log.truncate_fully_and_start_at(header.base_offset)
                            .map_err(storage)?;
                    }
                }
            }
            // Offsets may skip forward (a compacted leader has holes), never back.
            log.append_as_follower_with_gaps(records).map_err(storage)?;
        }
        if leader_log_start > log.log_start_offset() && leader_log_start <= log.log_end_offset() {
            log.delete_records_before(leader_log_start)
                .map_err(storage)?;
        }
        let before = log.high_watermark();
        log.set_high_watermark(leader_hw.min(log.log_end_offset()));
        let after = log.high_watermark();
        drop(guard);
        if after != before {
            self.hw.send_replace(after);
        }
        Ok(appended || after != before)
    }

    /// Follower side: the leader says our log diverges after `epoch`; cut it back to where
    /// the two agree (at most `end_offset`), Kafka's KIP-101/595 truncation.
    pub fn truncate_diverging(&self, epoch: i32, end_offset: i64) -> Result<i64, ApiError> {
        let mut guard = self.lock();
        let Some(log) = guard.log.as_mut() else {
            return Err(self.deleted_error());
        };
        let target = if epoch < 0 {
            // The leader has no epoch as old as ours: keep only what was committed.
            log.high_watermark()
        } else {
            let (our_epoch, our_end) = log.end_offset_for_epoch(epoch);
            if our_epoch == epoch {
                our_end.min(end_offset)
            } else {
                our_end.min(end_offset).max(0)
            }
        };
        let before = log.log_end_offset();
        log.truncate_to(target).map_err(|e| ApiError {
            code: e.kafka_error_code(),
            message: e.to_string(),
        })?;
        let after = log.log_end_offset();
        if after < before {
            tracing::warn!(
                topic = %self.topic, partition = self.index, from = before, to = after,
                "truncated a divergent log tail"
            );
        }
        Ok(after)
    }

    /// Follower side: our fetch offset is below the leader's log start (retention ran
    /// there, or we start empty): restart our log at the leader's start.
    pub fn restart_log_at(&self, offset: i64) -> Result<(), ApiError> {
        let mut guard = self.lock();
        let Some(log) = guard.log.as_mut() else {
            return Err(self.deleted_error());
        };
        log.truncate_fully_and_start_at(offset)
            .map_err(|e| ApiError {
                code: e.kafka_error_code(),
                message: e.to_string(),
            })
    }

    /// What a follower sends: fetch offset and last fetched epoch.
    pub fn follower_fetch_state(&self) -> Option<(i64, i32)> {
        let guard = self.lock();
        let log = guard.log.as_ref()?;
        Some((log.log_end_offset(), log.latest_epoch().unwrap_or(-1)))
    }

    /// Removes the log: the topic was deleted or the replica moved away. Later lookups
    /// find nothing.
    pub fn delete(&self) -> Result<(), crate::log::Error> {
        let log = {
            let mut guard = self.lock();
            guard.role = Role::Offline;
            guard.log.take()
        };
        self.poke();
        match log {
            Some(log) => log.delete(),
            None => Ok(()),
        }
    }
}

/// Recomputes the leader's high watermark: the smallest log end offset over the (maximal)
/// ISR. Returns the new value when it moved.
fn advance_hw(me: i32, log: &mut Log, leader: &mut LeaderState) -> Option<i64> {
    let mut hw = log.log_end_offset();
    for r in leader.maximal_isr() {
        if r == me {
            continue;
        }
        let end = leader
            .followers
            .get(&r)
            .map(|p| p.log_end_offset)
            .unwrap_or(-1);
        hw = hw.min(end);
    }
    let before = log.high_watermark();
    if hw > before {
        log.set_high_watermark(hw);
        return Some(log.high_watermark());
    }
    None
}

/// KIP-320: a request naming a leader epoch must match ours.
fn check_epoch(requested: i32, current: i32) -> Result<(), ApiError> {
    if requested < 0 || requested == current {
        Ok(())
    } else if requested < current {
        Err(ApiError::new(
            ResponseError::FencedLeaderEpoch,
            format!("leader epoch {requested} is older than the current {current}"),
        ))
    } else {
        Err(ApiError::new(
            ResponseError::UnknownLeaderEpoch,
            format!("leader epoch {requested} is newer than the current {current}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{build_batch, LogConfig};

    fn partition(dir: &std::path::Path, me: i32) -> Partition {
        let log = Log::open(&dir.join("t-0"), LogConfig::default(), 0).unwrap();
        Partition::new("t", 0, Uuid::new_v4(), me, log)
    }

    fn append(p: &Partition, n: usize) -> AppendInfo {
        let values: Vec<Vec<u8>> = (0..n).map(|i| i.to_string().into_bytes()).collect();
        let kvs: Vec<_> = values.iter().map(|v| (None, Some(v.as_slice()))).collect();
        let mut batch = build_batch(0, 0, &kvs);
        p.append_as_leader(&mut batch, 0, false, 1).unwrap().0
    }

    #[test]
    fn a_caught_up_follower_outside_the_isr_is_proposed_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), 1);
        assert!(p.apply_record(1, 1, 0, &[0, 1, 2], &[1, 2], 0));
        append(&p, 10);
        // Broker 2 is in the ISR: its fetch at the log end moves the HW.
        let r = p.fetch_for_follower(2, 1, 1, 1, 1 << 20, 0);
        assert_eq!(r.error, 0, "{}", r.message);
        assert_eq!(p.high_watermark(), 1);
        let r = p.fetch_for_follower(2, 10, 1, 1, 1 << 20, 0);
        assert_eq!(r.error, 0, "{}", r.message);
        assert_eq!(r.high_watermark, 10);
        assert_eq!(p.high_watermark(), 10);
        assert!(r.expand_isr.is_none());
        // Broker 0 is not: once it reaches the HW it is proposed, once.
        let r = p.fetch_for_follower(0, 5, 1, 1, 1 << 20, 0);
        assert!(r.expand_isr.is_none());
        let r = p.fetch_for_follower(0, 10, 1, 1, 1 << 20, 0);
        assert_eq!(
            r.expand_isr.as_ref().map(|c| c.new_isr.clone()),
            Some(vec![0, 1, 2]),
            "{r:?}"
        );
        let r = p.fetch_for_follower(0, 10, 1, 1, 1 << 20, 0);
        assert!(r.expand_isr.is_none(), "proposed twice");
    }

    #[test]
    fn acks_all_is_refused_below_min_isr_and_the_hw_waits_for_the_isr() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), 0);
        p.apply_record(0, 3, 0, &[0, 1], &[0], 0);
        let mut batch = build_batch(0, 0, &[(None, Some(b"v"))]);
        let e = p.append_as_leader(&mut batch, 0, true, 2).unwrap_err();
        assert_eq!(e.code, ResponseError::NotEnoughReplicas.code());
        p.apply_record(0, 3, 1, &[0, 1], &[0, 1], 0);
        let (info, epoch) = p.append_as_leader(&mut batch, 0, true, 2).unwrap();
        assert_eq!((info.base_offset, epoch), (0, 3));
        assert_eq!(p.high_watermark(), 0, "the follower has not fetched yet");
        p.fetch_for_follower(1, 1, 3, 3, 1 << 20, 0);
        assert_eq!(p.high_watermark(), 1);
    }

    #[test]
    fn a_follower_with_a_divergent_tail_is_told_where_to_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path(), 1);
        p.apply_record(1, 0, 0, &[0, 1], &[0, 1], 0);
        append(&p, 5);
        // A new leadership (epoch 2) starts at offset 5.
        p.apply_record(1, 2, 1, &[0, 1], &[1], 0);
        append(&p, 3);
        // The old leader has epoch 0 up to offset 9: it diverges after offset 5.
        let r = p.fetch_for_follower(0, 9, 2, 0, 1 << 20, 0);
        assert_eq!(r.diverging, Some((0, 5)));
        assert!(r.records.is_empty());
    }
}

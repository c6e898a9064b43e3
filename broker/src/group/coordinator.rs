//! The group coordinator driver (Kafka's `GroupCoordinator` and `GroupMetadataManager`):
//! owns the [`Group`]s this broker coordinates with their committed offsets, parks
//! JoinGroup and SyncGroup requests until the membership core answers them, runs the
//! timers, and stores offsets and group metadata in the internal topic `__consumer_offsets`.
//!
//! ```text
//! handler ──join/sync──> GroupCoordinator ──Group::join/sync──> (outcome, effects)
//!    ▲                        │  Pending: park a oneshot per member id
//!    └──── oneshot ◄──────────┘  effects: answer the parked requests
//! timer task: sleep until the earliest next_deadline_ms (or a wake-up) ─> Group::tick
//! every change that must survive a restart ─> records appended to __consumer_offsets
//! ```
//!
//! Records are uncompressed and keyed per group (`{"group":..}`) or per committed offset
//! (`{"group":..,"topic":..,"partition":..}`, JSON), so compaction of the topic keeps only
//! the latest per key; a deleted group or offset leaves a tombstone. A group's partition is
//! Kafka's `abs(groupId.hashCode) % offsets.topic.num.partitions`, and its coordinator is
//! that partition's leader.
//!
//! # Coordinatorship follows partition leadership
//!
//! ```text
//!  metadata image applied ──leadership_changed──> reconcile with every hosted partition:
//!    led here in epoch e, not owned ──> Loading{e} ──read the log (blocking pool)──> Active{e}
//!    owned but no longer led in e   ──> dropped: its groups unloaded, parked requests
//!                                       answered NOT_COORDINATOR, timers forget them
//!  group request ──> leads the group's partition? no: NOT_COORDINATOR (16)
//!                    owned Active in that same epoch? no: COORDINATOR_LOAD_IN_PROGRESS (14)
//! ```
//!
//! Groups in memory are exactly those of `Active` partitions: a load installs them when it
//! ends, an unload drops them, and requests create groups only after the check above. The
//! leader epoch ties both together, so a leadership lost and regained between two images
//! this broker saw still reloads the partition.
//!
//! # Writes are replicated before clients hear of them
//!
//! Appends happen inside the coordinator lock (one small write to the page cache, no fsync),
//! which keeps the log in the order of the in-memory changes. Kafka appends with acks=all:
//! a client is answered only once the partition's high watermark covers the write, which
//! the async methods wait for after the lock is released, for at most
//! `offsets.commit.timeout.ms` ([`CoordinatorConfig::offsets_commit_timeout`]). A committed
//! offset stays pending (invisible to OffsetFetch, Kafka's `pendingOffsetCommits`) until
//! then, so no client reads an offset that a failover could still take back. SyncGroup is
//! answered once the group record with the new assignment is replicated. Group records
//! written elsewhere (joins, leaves, timers) are not waited for: whatever follows them in
//! the partition's log waits for a high watermark that covers them too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::membership::{
    Effect, Group, GroupConfig, GroupState, JoinOutcome, JoinRequest, JoinResponse, LeaveResponse,
    Member, MemberIdentity, Protocol, SyncOutcome, SyncRequest, SyncResponse,
};
use crate::controller::topic_config::TopicConfigs;
use crate::log::batch::{build_batch, decode_records, split_batches};
use crate::server::config::BrokerConfig;
use crate::server::partition::{NotReplicated, Partition};
use crate::server::replica_manager::{min_insync_replicas, now_ms, ApiError, ReplicaManager};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a group request waits for its partition's groups to finish loading (after a
/// leadership change or at start) before it is answered COORDINATOR_LOAD_IN_PROGRESS.
pub const LOAD_WAIT: Duration = Duration::from_secs(2);

/// Kafka error codes used here.
use super::membership::error_code::{
    COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, NONE, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const MESSAGE_TOO_LARGE: i16 = 10;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
/// The broker leads the group's partition but is still reading its groups; retry here.
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// The broker does not lead the group's partition; find the coordinator again.
pub const NOT_COORDINATOR: i16 = 16;
const RECORD_LIST_TOO_LARGE: i16 = 18;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
const KAFKA_STORAGE_ERROR: i16 = 56;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// The key of a record in `__consumer_offsets`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum RecordKey {
    // The offset key comes first: untagged deserialisation tries variants in order, and a
    // group key would also match the first field of an offset key.
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

/// The stored metadata of a group: enough to answer DescribeGroups and to let the members
/// carry on with their generation after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupRecord {
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    members: Vec<MemberRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MemberRecord {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    /// The member's metadata for the group's protocol.
    metadata: Vec<u8>,
    assignment: Vec<u8>,
}

impl GroupRecord {
    fn of(group: &Group) -> GroupRecord {
        let protocol = group.protocol_name().unwrap_or_default().to_string();
        GroupRecord {
            generation_id: group.generation_id(),
            protocol_type: group.protocol_type().map(str::to_string),
            protocol_name: group.protocol_name().map(str::to_string),
            leader_id: group.leader_id().map(str::to_string),
            members: group
                .members()
                .map(|m| MemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    metadata: m.metadata(&protocol).to_vec(),
                    assignment: m.assignment.to_vec(),
                })
                .collect(),
        }
    }

    fn restore(self, group_id: &str, config: GroupConfig, now_ms: i64) -> Group {
        let protocol_type = self.protocol_type.clone().unwrap_or_default();
        let protocol_name = self.protocol_name.clone().unwrap_or_default();
        let members = self
            .members
            .into_iter()
            .map(|m| Member {
                member_id: m.member_id,
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: protocol_type.clone(),
                protocols: vec![Protocol {
                    name: protocol_name.clone(),
                    metadata: Bytes::from(m.metadata),
                }],
                assignment: Bytes::from(m.assignment),
                last_heartbeat_ms: now_ms,
                is_new: false,
                awaiting_join: false,
                awaiting_sync: false,
            })
            .collect();
        Group::restore(
            group_id,
            config,
            self.generation_id,
            self.protocol_type,
            self.protocol_name,
            self.leader_id,
            members,
            now_ms,
        )
    }
}

/// Identifies one append to a `__consumer_offsets` partition: the leader epoch it was
/// written in and the offset of its last record.
type WriteId = (i32, i64);

/// Records appended to the leader's log of a `__consumer_offsets` partition, not yet known
/// to be on every in-sync replica.
#[derive(Debug, Clone)]
struct Appended {
    partition: Arc<Partition>,
    leader_epoch: i32,
    last_offset: i64,
    /// The topic's `min.insync.replicas`, for Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND check.
    min_isr: usize,
}

impl Appended {
    fn id(&self) -> WriteId {
        (self.leader_epoch, self.last_offset)
    }
}

/// The error code for an OffsetCommit, OffsetDelete or DeleteGroups client whose write was
/// not replicated (Kafka's `GroupMetadataManager.storeOffsets` mapping: a timeout stays
/// REQUEST_TIMED_OUT).
fn offsets_error(e: NotReplicated) -> i16 {
    match e {
        NotReplicated::LeadershipLost => NOT_COORDINATOR,
        NotReplicated::TimedOut => REQUEST_TIMED_OUT,
        NotReplicated::IsrShrank => COORDINATOR_NOT_AVAILABLE,
    }
}

/// The error code for a SyncGroup client (Kafka's `storeGroup` mapping, where a timeout
/// becomes COORDINATOR_NOT_AVAILABLE).
fn group_error(e: NotReplicated) -> i16 {
    match e {
        NotReplicated::LeadershipLost => NOT_COORDINATOR,
        NotReplicated::TimedOut | NotReplicated::IsrShrank => COORDINATOR_NOT_AVAILABLE,
    }
}

/// Waits until the high watermark of the write's partition passes the write, while this
/// broker still leads the partition in the write's epoch; gives up at `deadline`.
async fn replicated(write: &Appended, deadline: Instant) -> Result<(), NotReplicated> {
    let outcome = write
        .partition
        .wait_replicated(
            write.last_offset,
            write.leader_epoch,
            write.min_isr,
            deadline,
        )
        .await;
    if let Err(e) = outcome {
        let partition = &write.partition;
        tracing::warn!(
            partition = partition.index,
            last_offset = write.last_offset,
            high_watermark = partition.high_watermark(),
            isr = ?partition.isr_len(),
            reason = ?e,
            "a write to {OFFSETS_TOPIC} was not replicated"
        );
    }
    outcome
}

/// Kafka's mapping of a failed append to `__consumer_offsets` onto what group clients
/// understand (`GroupMetadataManager.storeOffsets` and `storeGroup`).
fn append_error(group_id: &str, e: &ApiError) -> i16 {
    match e.code {
        UNKNOWN_TOPIC_OR_PARTITION | NOT_ENOUGH_REPLICAS | NOT_ENOUGH_REPLICAS_AFTER_APPEND => {
            COORDINATOR_NOT_AVAILABLE
        }
        NOT_LEADER_OR_FOLLOWER => NOT_COORDINATOR,
        MESSAGE_TOO_LARGE | RECORD_LIST_TOO_LARGE => INVALID_COMMIT_OFFSET_SIZE,
        code => {
            tracing::error!(group = group_id, code, error = %e.message, "cannot write to {OFFSETS_TOPIC}");
            if code == KAFKA_STORAGE_ERROR {
                NOT_COORDINATOR
            } else {
                code
            }
        }
    }
}

/// One group with what the driver keeps beside its membership.
#[derive(Debug)]
struct GroupEntry {
    group: Group,
    /// Committed offsets that are replicated (or were loaded): what OffsetFetch shows.
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// When each offset was committed (its record's timestamp after a load).
    committed_at: HashMap<(String, i32), i64>,
    /// Offsets appended and not yet replicated, with the append that carries each (Kafka's
    /// `pendingOffsetCommits`). They move to `offsets` once replicated, and are dropped if
    /// the append fails or a newer commit of the same partition takes over.
    pending_offsets: HashMap<(String, i32), (WriteId, CommittedOffset)>,
    /// Since when the group has been `Empty` (its last group record's timestamp after a
    /// load); `None` while it has members or has never been written as empty.
    empty_since: Option<i64>,
    /// Parked JoinGroup requests by member id; a second JoinGroup of a member replaces (and
    /// so ends) the first.
    parked_joins: HashMap<String, oneshot::Sender<JoinResponse>>,
    parked_syncs: HashMap<String, oneshot::Sender<SyncResponse>>,
    /// The group record last written, to write only changes.
    stored: Option<GroupRecord>,
    /// The error of the last attempt to write the group record, if it failed: SyncGroup
    /// answers it instead of an assignment that was not stored.
    store_error: Option<i16>,
    /// The group's latest append: SyncGroup is answered once it is replicated.
    last_write: Option<Appended>,
}

impl GroupEntry {
    fn new(group: Group) -> GroupEntry {
        GroupEntry {
            group,
            offsets: BTreeMap::new(),
            committed_at: HashMap::new(),
            pending_offsets: HashMap::new(),
            empty_since: None,
            parked_joins: HashMap::new(),
            parked_syncs: HashMap::new(),
            stored: None,
            store_error: None,
            last_write: None,
        }
    }

    fn route(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::JoinResponse {
                    member_id,
                    response,
                } => {
                    if let Some(tx) = self.parked_joins.remove(&member_id) {
                        // The requester may have gone away; nothing to do then.
                        let _ = tx.send(response);
                    }
                }
                Effect::SyncResponse {
                    member_id,
                    response,
                } => {
                    if let Some(tx) = self.parked_syncs.remove(&member_id) {
                        let _ = tx.send(response);
                    }
                }
            }
        }
    }

    /// Answers every parked request with `code`: the group is being unloaded.
    fn answer_parked(&mut self, code: i16) {
        for (member_id, tx) in self.parked_joins.drain() {
            let _ = tx.send(JoinResponse::error(member_id, code));
        }
        for (_, tx) in self.parked_syncs.drain() {
            let _ = tx.send(SyncResponse::error(code));
        }
    }
}

/// How far this broker has taken over one `__consumer_offsets` partition it leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// Led here in `leader_epoch`; its groups are being read from the log.
    Loading { leader_epoch: i32 },
    /// Led here in `leader_epoch` with its groups in memory: its groups' requests are served.
    Active { leader_epoch: i32 },
}

impl Ownership {
    fn leader_epoch(self) -> i32 {
        match self {
            Ownership::Loading { leader_epoch } | Ownership::Active { leader_epoch } => {
                leader_epoch
            }
        }
    }
}

/// Everything behind the coordinator lock.
#[derive(Debug, Default)]
struct State {
    /// The groups of the `Active` partitions, by group id.
    groups: HashMap<String, GroupEntry>,
    /// The `__consumer_offsets` partitions this broker leads, by index.
    owned: HashMap<i32, Ownership>,
}

/// What the coordinator needs from the broker configuration.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub group: GroupConfig,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes`.
    pub offsets_topic_segment_bytes: u64,
    /// `offset.metadata.max.bytes`: the longest metadata string a commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes` in ms: how long an empty group's offsets are kept.
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `offsets.commit.timeout.ms`: how long a write to `__consumer_offsets` may take to
    /// reach every in-sync replica before the client is told to retry.
    pub offsets_commit_timeout: Duration,
}

impl CoordinatorConfig {
    /// The coordinator's settings out of the broker's configuration.
    pub fn from_broker(config: &BrokerConfig) -> CoordinatorConfig {
        CoordinatorConfig {
            group: config.group.clone(),
            offsets_topic_num_partitions: config.offsets_topic_num_partitions,
            offsets_topic_segment_bytes: config.offsets_topic_segment_bytes,
            offset_metadata_max_bytes: config.offset_metadata_max_bytes,
            offsets_retention_ms: config.offsets_retention_ms,
            offsets_retention_check_interval_ms: config.offsets_retention_check_interval_ms,
            offsets_commit_timeout: Duration::from_millis(config.offsets_commit_timeout_ms),
        }
    }
}

/// The groups this broker coordinates.
#[derive(Debug)]
pub struct GroupCoordinator {
    replicas: Arc<ReplicaManager>,
    config: CoordinatorConfig,
    state: Mutex<State>,
    /// Woken when a request may have moved the earliest group deadline; the timer task then
    /// recomputes how long to sleep.
    wake: Notify,
    /// Bumped whenever a partition is taken over, loaded or given up, for async requests
    /// that wait for a load to finish.
    ownership: watch::Sender<u64>,
    /// Notified on the same occasions, for the requests whose handlers cannot await
    /// (Heartbeat, LeaveGroup, OffsetFetch, ListGroups, DescribeGroups).
    ownership_changed: Condvar,
}

/// Kafka's partition for a group: `Utils.abs(groupId.hashCode()) % partitions`.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    let hash = group_id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    // Kafka's Utils.abs maps i32::MIN to 0.
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions
}

/// Runs blocking work (appends under the coordinator lock, log reads) on the blocking pool.
/// A panic inside is a broken invariant and is propagated.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl GroupCoordinator {
    pub fn new(replicas: Arc<ReplicaManager>, config: CoordinatorConfig) -> GroupCoordinator {
        GroupCoordinator {
            replicas,
            config,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            ownership: watch::channel(0).0,
            ownership_changed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Poisoning means a panic while a group changed: a broken invariant.
        self.state.lock().expect("group coordinator lock poisoned")
    }

    /// Tells whoever waits for a load that ownership changed.
    fn ownership_moved(&self) {
        self.ownership.send_modify(|n| *n = n.wrapping_add(1));
        self.ownership_changed.notify_all();
    }

    /// Locks the state once `ready` holds of it, or after [`LOAD_WAIT`]: for the handlers
    /// that cannot await, a request for a partition being loaded waits for the load as the
    /// async ones do. The wait blocks the calling thread, so on a runtime worker it runs
    /// under `block_in_place` (the runtime moves its other tasks away); a current-thread
    /// runtime cannot spare its thread, and gets the state at once.
    fn lock_when(&self, ready: impl Fn(&State) -> bool) -> MutexGuard<'_, State> {
        let state = self.lock();
        if ready(&state) {
            return state;
        }
        drop(state);
        let wait = || {
            let deadline = std::time::Instant::now() + LOAD_WAIT;
            let mut state = self.lock();
            while !ready(&state) {
                let now = std::time::Instant::now();
                if now >= deadline {
                    break;
                }
                state = self
                    .ownership_changed
                    .wait_timeout(state, deadline - now)
                    .expect("group coordinator lock poisoned")
                    .0;
            }
            state
        };
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::CurrentThread) => self.lock(),
            Ok(_) => tokio::task::block_in_place(wait),
            Err(_) => wait(),
        }
    }

    /// The state, once `group_id`'s partition is no longer loading (or after [`LOAD_WAIT`]).
    fn lock_for(&self, group_id: &str) -> MutexGuard<'_, State> {
        self.lock_when(|state| {
            self.coordinating(state, group_id) != Err(COORDINATOR_LOAD_IN_PROGRESS)
        })
    }

    /// `__consumer_offsets`' configuration: compacted, uncompressed.
    pub fn offsets_topic_configs(&self) -> TopicConfigs {
        let mut configs = TopicConfigs::new();
        configs.insert("cleanup.policy".into(), "compact".into());
        configs.insert(
            "segment.bytes".into(),
            self.config.offsets_topic_segment_bytes.to_string(),
        );
        configs
    }

    /// Whether this broker coordinates `group_id` right now: it leads the group's partition
    /// and has loaded it in that same leader epoch. NOT_COORDINATOR sends the client back
    /// to FindCoordinator; COORDINATOR_LOAD_IN_PROGRESS makes it retry here.
    fn coordinating(&self, state: &State, group_id: &str) -> Result<(), i16> {
        let topic = self.replicas.topic(OFFSETS_TOPIC).ok_or(NOT_COORDINATOR)?;
        let index = partition_for(group_id, topic.record.partitions);
        let leader_epoch = topic
            .partition(index)
            .and_then(|p| p.leader_epoch_if_leader())
            .ok_or(NOT_COORDINATOR)?;
        match state.owned.get(&index) {
            Some(Ownership::Active { leader_epoch: e }) if *e == leader_epoch => Ok(()),
            // Loading, or led but not taken over yet (the image was applied a moment ago),
            // or taken over in an older epoch that is about to be reloaded.
            _ => Err(COORDINATOR_LOAD_IN_PROGRESS),
        }
    }

    /// [`GroupCoordinator::coordinating`] for requests about a group that may not exist:
    /// before `__consumer_offsets` exists no group exists anywhere, which any broker can
    /// say, so tools asking a bootstrap broker about an unknown group hear that it does not
    /// exist instead of being sent to a coordinator nobody is yet.
    fn coordinating_or_absent(&self, state: &State, group_id: &str) -> Result<(), i16> {
        match self.coordinating(state, group_id) {
            Err(_) if self.replicas.topic(OFFSETS_TOPIC).is_none() => Ok(()),
            checked => checked,
        }
    }

    /// Waits until this broker coordinates `group_id` (its partition is loaded), for at most
    /// `timeout`; returns the last answer of the check (NONE, NOT_COORDINATOR or
    /// COORDINATOR_LOAD_IN_PROGRESS). FindCoordinator uses it so that clients that follow
    /// the protocol do not run into a load that is about to finish.
    pub async fn wait_coordinating(&self, group_id: &str, timeout: Duration) -> i16 {
        let deadline = Instant::now() + timeout;
        let mut changes = self.ownership.subscribe();
        loop {
            changes.borrow_and_update();
            let code = {
                let state = self.lock();
                self.coordinating(&state, group_id).err().unwrap_or(NONE)
            };
            if code != COORDINATOR_LOAD_IN_PROGRESS {
                return code;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return code,
                changed = changes.changed() => {
                    if changed.is_err() {
                        return code;
                    }
                }
            }
        }
    }

    /// Appends records for `group_id` to its partition of `__consumer_offsets`, which this
    /// broker must lead, with acks=all's ISR check. `None` when there is nothing to write.
    fn append(
        &self,
        group_id: &str,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<Option<Appended>, i16> {
        if records.is_empty() {
            return Ok(None);
        }
        let topic = self.replicas.topic(OFFSETS_TOPIC).ok_or(NOT_COORDINATOR)?;
        let index = partition_for(group_id, topic.record.partitions);
        let partition = topic.partition(index).ok_or(NOT_COORDINATOR)?.clone();
        let min_isr = min_insync_replicas(self.replicas.config(), &topic);
        let now = now_ms();
        let kvs: Vec<_> = records
            .iter()
            .map(|(k, v)| (Some(k.as_slice()), v.as_deref()))
            .collect();
        let mut batch = build_batch(0, now, &kvs);
        let (info, leader_epoch) = partition
            .append_as_leader(&mut batch, now, true, min_isr)
            .map_err(|e| append_error(group_id, &e))?;
        // Wakes the fetchers of the followers, which move the high watermark.
        self.replicas.notify_appended();
        Ok(Some(Appended {
            partition,
            leader_epoch,
            last_offset: info.last_offset,
            min_isr,
        }))
    }

    /// Writes the group record if it changed since the last write. Only `Stable` and `Empty`
    /// groups are written, as Kafka does: a rebalance in progress is not worth restoring.
    /// Not waited for here; see [`GroupCoordinator::confirm_stored`].
    fn store_group(&self, group_id: &str, entry: &mut GroupEntry) {
        if entry.group.state() == GroupState::Empty {
            entry.empty_since.get_or_insert_with(now_ms);
        } else {
            entry.empty_since = None;
        }
        if !matches!(entry.group.state(), GroupState::Stable | GroupState::Empty) {
            return;
        }
        let record = GroupRecord::of(&entry.group);
        if entry.stored.as_ref() == Some(&record) {
            return;
        }
        let key = group_key(group_id);
        // A GroupRecord always serialises.
        let value = serde_json::to_vec(&record).expect("group record serialises");
        match self.append(group_id, &[(key, Some(value))]) {
            Ok(written) => {
                entry.stored = Some(record);
                entry.store_error = None;
                if written.is_some() {
                    entry.last_write = written;
                }
            }
            Err(code) => entry.store_error = Some(code),
        }
    }

    /// A SyncGroup answer goes out once the group record holding the assignment is
    /// replicated (Kafka stores the group before it answers the members). Any append of
    /// the group at least as late as that record will do: the high watermark covers
    /// everything below it.
    async fn confirm_stored(&self, group_id: &str, response: SyncResponse) -> SyncResponse {
        if response.error_code != NONE {
            return response;
        }
        let write = {
            let state = self.lock();
            if let Err(code) = self.coordinating(&state, group_id) {
                return SyncResponse::error(code);
            }
            let Some(entry) = state.groups.get(group_id) else {
                return response;
            };
            if let Some(code) = entry.store_error {
                return SyncResponse::error(code);
            }
            entry.last_write.clone()
        };
        let Some(write) = write else {
            return response;
        };
        match replicated(&write, Instant::now() + self.config.offsets_commit_timeout).await {
            Ok(()) => response,
            Err(e) => SyncResponse::error(group_error(e)),
        }
    }

    /// Follows leadership of `__consumer_offsets` partitions after a metadata image was
    /// applied: takes over (and loads, on the blocking pool) the partitions now led here,
    /// and gives up the others, whose groups are dropped (their new coordinator loads
    /// them). The two lists only say that something moved: what is owned is reconciled
    /// with the role of every hosted partition, which also catches a leadership lost and
    /// regained between two images that this broker did not see apart.
    pub fn leadership_changed(
        self: &Arc<Self>,
        became_leader: &[Arc<Partition>],
        lost: &[(String, i32)],
    ) {
        let gained = became_leader
            .iter()
            .filter(|p| p.topic == OFFSETS_TOPIC)
            .count();
        let lost = lost.iter().filter(|(t, _)| t == OFFSETS_TOPIC).count();
        if gained + lost > 0 {
            tracing::debug!(gained, lost, "{OFFSETS_TOPIC} leaderships moved");
        }
        self.reconcile();
    }

    /// Brings `owned` in line with the partitions this broker leads now. Returns the
    /// partitions it took over, whose load it has started.
    fn reconcile(self: &Arc<Self>) -> Vec<i32> {
        let topic = self.replicas.topic(OFFSETS_TOPIC);
        let leading: HashMap<i32, i32> = topic
            .iter()
            .flat_map(|t| t.partitions())
            .filter_map(|p| p.leader_epoch_if_leader().map(|e| (p.index, e)))
            .collect();
        let count = topic.as_ref().map(|t| t.record.partitions);
        let mut state = self.lock();
        let State { groups, owned } = &mut *state;
        let mut given_up: Vec<i32> = owned
            .iter()
            .filter(|(index, o)| leading.get(index) != Some(&o.leader_epoch()))
            .map(|(index, _)| *index)
            .collect();
        given_up.sort_unstable();
        for index in &given_up {
            owned.remove(index);
        }
        let mut unloaded = 0;
        groups.retain(|group_id, entry| {
            let keep = count.is_some_and(|n| owned.contains_key(&partition_for(group_id, n)));
            if !keep {
                entry.answer_parked(NOT_COORDINATOR);
                unloaded += 1;
            }
            keep
        });
        let mut taken: Vec<(i32, i32)> = leading
            .into_iter()
            .filter(|(index, _)| !owned.contains_key(index))
            .collect();
        taken.sort_unstable();
        for (index, leader_epoch) in &taken {
            owned.insert(
                *index,
                Ownership::Loading {
                    leader_epoch: *leader_epoch,
                },
            );
        }
        drop(state);
        if !given_up.is_empty() {
            tracing::info!(partitions = ?given_up, groups = unloaded, "no longer coordinator for these {OFFSETS_TOPIC} partitions");
            // The timer task may be sleeping towards a deadline of a dropped group.
            self.wake.notify_one();
        }
        if given_up.is_empty() && taken.is_empty() {
            return Vec::new();
        }
        self.ownership_moved();
        if !taken.is_empty() {
            tracing::debug!(partitions = ?taken.iter().map(|(i, _)| *i).collect::<Vec<_>>(), "loading groups of {OFFSETS_TOPIC} partitions now led here");
            let me = self.clone();
            let work = taken.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let partitions = work.len();
                for (index, leader_epoch) in work {
                    me.load_partition(index, leader_epoch);
                }
                tracing::info!(
                    partitions,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loaded groups of {OFFSETS_TOPIC} partitions now led here"
                );
            });
        }
        taken.into_iter().map(|(index, _)| index).collect()
    }

    /// Reads the groups of partition `index` (taken over in `leader_epoch`) from its log
    /// and installs them, unless the partition was given up meanwhile. The log is read
    /// without the coordinator lock: nothing writes to the partition while it is loading,
    /// since every request for its groups is refused until the load ends. Blocking.
    fn load_partition(&self, index: i32, leader_epoch: i32) {
        let started = std::time::Instant::now();
        let read = self.read_partition(index);
        let mut state = self.lock();
        if state.owned.get(&index) != Some(&Ownership::Loading { leader_epoch }) {
            // Given up (or taken over again in a newer epoch) while it was read.
            return;
        }
        match read {
            Ok((loaded, records)) => {
                let groups = loaded.len();
                state.groups.extend(loaded);
                state
                    .owned
                    .insert(index, Ownership::Active { leader_epoch });
                drop(state);
                tracing::debug!(
                    partition = index,
                    leader_epoch,
                    groups,
                    records,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loaded groups from {OFFSETS_TOPIC}"
                );
            }
            Err(e) => {
                // Not owned, so its groups' requests get COORDINATOR_LOAD_IN_PROGRESS while
                // this broker leads it; the next applied image tries the load again.
                state.owned.remove(&index);
                drop(state);
                tracing::error!(
                    partition = index,
                    error = %e,
                    "cannot load groups from {OFFSETS_TOPIC}; will retry on the next metadata change"
                );
            }
        }
        // Loaded groups may have deadlines (restored members' sessions).
        self.wake.notify_one();
        self.ownership_moved();
    }

    /// Rebuilds the groups and offsets stored in partition `index` of `__consumer_offsets`
    /// from its log, up to its log end. Returns them with the number of records read.
    /// Blocking; takes the partition lock for one read at a time.
    fn read_partition(
        &self,
        index: i32,
    ) -> Result<(HashMap<String, GroupEntry>, u64), crate::log::Error> {
        let mut groups = HashMap::new();
        let mut records = 0u64;
        let Some(partition) = self
            .replicas
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.partition(index).cloned())
        else {
            return Ok((groups, records));
        };
        let now = now_ms();
        let Some((mut offset, end)) = partition
            .log()
            .map(|log| (log.log_start_offset(), log.log_end_offset()))
        else {
            return Ok((groups, records));
        };
        while offset < end {
            let data = match partition.log() {
                Some(log) => log.read(offset, 1 << 20, end)?,
                None => break,
            };
            let batches =
                split_batches(&data.records).map_err(|source| crate::log::Error::InvalidBatch {
                    position: 0,
                    source,
                })?;
            if batches.is_empty() {
                break;
            }
            for (position, header) in batches {
                offset = header.next_offset();
                let bytes = &data.records[position..position + header.total_size()];
                let Ok(decoded) = decode_records(bytes) else {
                    tracing::warn!(
                        partition = index,
                        base_offset = header.base_offset,
                        "skipping an undecodable (compressed?) batch in {OFFSETS_TOPIC}"
                    );
                    continue;
                };
                for record in decoded {
                    records += 1;
                    self.apply(&mut groups, record.key, record.value, now, record.timestamp);
                }
            }
        }
        groups.retain(|_, e| {
            e.group.state() != GroupState::Empty || !e.offsets.is_empty() || e.stored.is_some()
        });
        Ok((groups, records))
    }

    fn apply(
        &self,
        groups: &mut HashMap<String, GroupEntry>,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        now: i64,
        timestamp: i64,
    ) {
        let Some(key) = key.and_then(|k| serde_json::from_slice::<RecordKey>(&k).ok()) else {
            return;
        };
        match key {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                let entry = groups.entry(group.clone()).or_insert_with(|| {
                    GroupEntry::new(Group::new(group, self.config.group.clone()))
                });
                match value.and_then(|v| serde_json::from_slice::<CommittedOffset>(&v).ok()) {
                    Some(committed) => {
                        entry
                            .committed_at
                            .insert((topic.clone(), partition), timestamp);
                        entry.offsets.insert((topic, partition), committed);
                    }
                    None => {
                        entry.committed_at.remove(&(topic.clone(), partition));
                        entry.offsets.remove(&(topic, partition));
                    }
                }
            }
            RecordKey::Group { group } => {
                match value.and_then(|v| serde_json::from_slice::<GroupRecord>(&v).ok()) {
                    Some(record) => {
                        let restored =
                            record
                                .clone()
                                .restore(&group, self.config.group.clone(), now);
                        let entry = groups.entry(group).or_insert_with(|| {
                            GroupEntry::new(Group::new("", self.config.group.clone()))
                        });
                        entry.empty_since =
                            (restored.state() == GroupState::Empty).then_some(timestamp);
                        entry.group = restored;
                        entry.stored = Some(record);
                    }
                    None => {
                        groups.remove(&group);
                    }
                }
            }
        }
    }

    /// JoinGroup: answered at once or when the join phase completes.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResponse {
        let wait_ms = u64::try_from(request.rebalance_timeout_ms.max(request.session_timeout_ms))
            .unwrap_or(0)
            + 5_000;
        let requester = request.member_id.clone();
        self.wait_coordinating(group_id, LOAD_WAIT).await;
        let rx = {
            let mut state = self.lock();
            if let Err(code) = self.coordinating(&state, group_id) {
                return JoinResponse::error(requester, code);
            }
            let entry = state.groups.entry(group_id.to_string()).or_insert_with(|| {
                GroupEntry::new(Group::new(group_id, self.config.group.clone()))
            });
            let mut generated = None;
            let mut suffix = || {
                let s = uuid::Uuid::new_v4().to_string();
                generated = Some(s.clone());
                s
            };
            let client_id = request.client_id.clone();
            let known_member = request.member_id.clone();

            let (outcome, effects) = entry.group.join(request, now_ms(), &mut suffix);
            let rx = match outcome {
                JoinOutcome::Respond(response) => {
                    entry.route(effects);
                    self.store_group(group_id, entry);
                    drop(state);
                    self.wake.notify_one();
                    return response;
                }
                JoinOutcome::Pending => {
                    let member_id = match generated {
                        Some(suffix) if known_member.is_empty() => {
                            format!("{client_id}-{suffix}")
                        }
                        _ => known_member,
                    };
                    let (tx, rx) = oneshot::channel();
                    entry.parked_joins.insert(member_id, tx);
                    rx
                }
            };
            entry.route(effects);
            self.store_group(group_id, entry);
            rx
        };
        self.wake.notify_one();
        match tokio::time::timeout(Duration::from_millis(wait_ms), rx).await {
            Ok(Ok(response)) => response,
            // Replaced by a newer JoinGroup of the same member, or never completed.
            _ => JoinResponse::error(requester, REBALANCE_IN_PROGRESS),
        }
    }

    /// SyncGroup: the leader's assignment answers every parked member, once the group
    /// record holding it is replicated.
    pub async fn sync(&self, group_id: &str, request: SyncRequest) -> SyncResponse {
        self.wait_coordinating(group_id, LOAD_WAIT).await;
        let answered = {
            let mut state = self.lock();
            if let Err(code) = self.coordinating(&state, group_id) {
                return SyncResponse::error(code);
            }
            let Some(entry) = state.groups.get_mut(group_id) else {
                return SyncResponse::error(UNKNOWN_MEMBER_ID);
            };
            let member_id = request.member_id.clone();
            let (outcome, effects) = entry.group.sync(request, now_ms());
            // The leader's SyncGroup completes the rebalance: the group record with the
            // assignment is appended before any member hears of it, and each answer waits
            // for it to be replicated (under this lock nobody reads `last_write` before it
            // is set).
            match outcome {
                SyncOutcome::Respond(response) => {
                    self.store_group(group_id, entry);
                    entry.route(effects);
                    Ok(response)
                }
                SyncOutcome::Pending => {
                    let (tx, rx) = oneshot::channel();
                    entry.parked_syncs.insert(member_id, tx);
                    self.store_group(group_id, entry);
                    entry.route(effects);
                    Err(rx)
                }
            }
        };
        self.wake.notify_one();
        let response = match answered {
            Ok(response) => response,
            Err(rx) => match tokio::time::timeout(Duration::from_secs(300), rx).await {
                Ok(Ok(response)) => response,
                _ => SyncResponse::error(REBALANCE_IN_PROGRESS),
            },
        };
        self.confirm_stored(group_id, response).await
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        let mut state = self.lock_for(group_id);
        if let Err(code) = self.coordinating(&state, group_id) {
            return code;
        }
        match state.groups.get_mut(group_id) {
            Some(entry) => {
                entry
                    .group
                    .heartbeat(member_id, group_instance_id, generation_id, now_ms())
            }
            None => UNKNOWN_MEMBER_ID,
        }
    }

    pub fn leave(&self, group_id: &str, leaving: &[MemberIdentity]) -> Result<LeaveResponse, i16> {
        let mut state = self.lock_for(group_id);
        self.coordinating(&state, group_id)?;
        let Some(entry) = state.groups.get_mut(group_id) else {
            return Err(UNKNOWN_MEMBER_ID);
        };
        let (response, effects) = entry.group.leave(leaving, now_ms());
        entry.route(effects);
        self.store_group(group_id, entry);
        drop(state);
        self.wake.notify_one();
        Ok(response)
    }

    /// OffsetCommit: checks the member and generation, appends every offset, and answers
    /// once the append is replicated. Returns the error code of each `(topic, partition)`
    /// in order.
    pub async fn commit(
        self: &Arc<Self>,
        group_id: String,
        member_id: String,
        group_instance_id: Option<String>,
        generation_id: i32,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Vec<i16> {
        self.wait_coordinating(&group_id, LOAD_WAIT).await;
        let me = self.clone();
        let id = group_id.clone();
        let (mut codes, written) = blocking(move || {
            me.append_offsets(
                &id,
                &member_id,
                group_instance_id.as_deref(),
                generation_id,
                offsets,
            )
        })
        .await;
        let Some((write, keys)) = written else {
            return codes;
        };
        let outcome = replicated(&write, Instant::now() + self.config.offsets_commit_timeout).await;
        {
            let mut state = self.lock();
            if let Some(entry) = state.groups.get_mut(&group_id) {
                let now = now_ms();
                for key in keys {
                    let Some((pending_id, _)) = entry.pending_offsets.get(&key) else {
                        continue;
                    };
                    // A newer commit of the partition took over; it settles the key itself.
                    if *pending_id != write.id() {
                        continue;
                    }
                    let Some((_, committed)) = entry.pending_offsets.remove(&key) else {
                        continue;
                    };
                    if outcome.is_ok() {
                        entry.committed_at.insert(key.clone(), now);
                        entry.offsets.insert(key, committed);
                    }
                }
            }
        }
        if let Err(e) = outcome {
            let code = offsets_error(e);
            for c in codes.iter_mut().filter(|c| **c == NONE) {
                *c = code;
            }
        }
        codes
    }

    /// The locked half of [`GroupCoordinator::commit`]: validates, appends, and records the
    /// accepted offsets as pending. Returns the codes so far and the append with the keys
    /// it carries.
    #[allow(clippy::type_complexity)]
    fn append_offsets(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> (Vec<i16>, Option<(Appended, Vec<(String, i32)>)>) {
        let mut state = self.lock();
        if let Err(code) = self.coordinating(&state, group_id) {
            return (vec![code; offsets.len()], None);
        }
        let entry = state
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| GroupEntry::new(Group::new(group_id, self.config.group.clone())));
        if let Err(code) = entry
            .group
            .can_commit(member_id, generation_id, group_instance_id)
        {
            return (vec![code; offsets.len()], None);
        }
        if !member_id.is_empty() {
            // A commit also proves the member alive; its error code is the commit's business.
            let _ = entry
                .group
                .heartbeat(member_id, group_instance_id, generation_id, now_ms());
        }
        let mut codes = Vec::with_capacity(offsets.len());
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for (topic, partition, committed) in offsets {
            let exists = self
                .replicas
                .topic(&topic)
                .is_some_and(|t| (0..t.record.partitions).contains(&partition));
            if !exists {
                codes.push(UNKNOWN_TOPIC_OR_PARTITION);
                continue;
            }
            if committed
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > self.config.offset_metadata_max_bytes)
            {
                // Kafka rejects only this partition; the others are still committed.
                codes.push(OFFSET_METADATA_TOO_LARGE);
                continue;
            }
            codes.push(NONE);
            records.push((
                offset_key(group_id, &topic, partition),
                // A CommittedOffset always serialises.
                Some(serde_json::to_vec(&committed).expect("offset serialises")),
            ));
            accepted.push((topic, partition, committed));
        }
        let write = match self.append(group_id, &records) {
            Ok(Some(write)) => write,
            Ok(None) => return (codes, None),
            Err(code) => {
                let codes = codes
                    .into_iter()
                    .map(|c| if c == NONE { code } else { c })
                    .collect();
                return (codes, None);
            }
        };
        entry.last_write = Some(write.clone());
        let mut keys = Vec::with_capacity(accepted.len());
        for (topic, partition, committed) in accepted {
            let key = (topic, partition);
            entry
                .pending_offsets
                .insert(key.clone(), (write.id(), committed));
            keys.push(key);
        }
        (codes, Some((write, keys)))
    }

    /// OffsetFetch: the committed (replicated) offset of each requested partition (all of
    /// them for `None`), -1 where there is none; an error code when this broker does not
    /// coordinate the group.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, i16> {
        let state = self.lock_for(group_id);
        self.coordinating_or_absent(&state, group_id)?;
        let offsets = state.groups.get(group_id).map(|e| &e.offsets);
        Ok(match partitions {
            Some(wanted) => wanted
                .into_iter()
                .map(|(t, p)| {
                    let c = offsets.and_then(|o| o.get(&(t.clone(), p)).cloned());
                    (t, p, c)
                })
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|((t, p), c)| (t.clone(), *p, Some(c.clone())))
                .collect(),
        })
    }

    /// OffsetDelete. Only an empty group's offsets can be deleted; for a group with members
    /// every partition answers GROUP_SUBSCRIBED_TO_TOPIC (Kafka checks the subscription of
    /// each topic; this does not parse the consumer protocol). Answered once the tombstones
    /// are replicated.
    pub async fn delete_offsets(
        self: &Arc<Self>,
        group_id: String,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<i16>, i16> {
        self.wait_coordinating(&group_id, LOAD_WAIT).await;
        let me = self.clone();
        let (codes, written) = blocking(move || -> Result<_, i16> {
            let mut state = me.lock();
            me.coordinating_or_absent(&state, &group_id)?;
            let Some(entry) = state.groups.get_mut(&group_id) else {
                return Err(GROUP_ID_NOT_FOUND);
            };
            if entry.group.state() != GroupState::Empty {
                return Ok((vec![GROUP_SUBSCRIBED_TO_TOPIC; partitions.len()], None));
            }
            let records: Vec<_> = partitions
                .iter()
                .filter(|(t, p)| {
                    let key = (t.clone(), *p);
                    entry.offsets.contains_key(&key) || entry.pending_offsets.contains_key(&key)
                })
                .map(|(t, p)| (offset_key(&group_id, t, *p), None))
                .collect();
            let written = me.append(&group_id, &records)?;
            for (t, p) in &partitions {
                let key = (t.clone(), *p);
                entry.committed_at.remove(&key);
                entry.offsets.remove(&key);
                entry.pending_offsets.remove(&key);
            }
            if written.is_some() {
                entry.last_write.clone_from(&written);
            }
            Ok((vec![NONE; partitions.len()], written))
        })
        .await?;
        if let Some(write) = written {
            replicated(&write, Instant::now() + self.config.offsets_commit_timeout)
                .await
                .map_err(offsets_error)?;
        }
        Ok(codes)
    }

    /// ListGroups: `(group id, protocol type, state)` of every live group this broker
    /// coordinates; COORDINATOR_LOAD_IN_PROGRESS while a partition it leads is loading (the
    /// list would miss its groups), as Kafka answers.
    pub fn list(&self) -> Result<Vec<(String, String, GroupState)>, i16> {
        let loading = |state: &State| {
            state
                .owned
                .values()
                .any(|o| matches!(o, Ownership::Loading { .. }))
        };
        let state = self.lock_when(|state| !loading(state));
        if loading(&state) {
            return Err(COORDINATOR_LOAD_IN_PROGRESS);
        }
        let mut listed: Vec<_> = state
            .groups
            .iter()
            .filter(|(_, e)| e.group.state() != GroupState::Dead)
            .map(|(id, e)| {
                let protocol_type = e.group.protocol_type().unwrap_or_default().to_string();
                (id.clone(), protocol_type, e.group.state())
            })
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listed)
    }

    /// How many live groups this broker coordinates, by state (those of partitions still
    /// loading left out), for the metrics: one short look under the lock, never waiting for
    /// a load as [`list`](Self::list) does. States without a group are left out.
    pub fn group_counts(&self) -> Vec<(GroupState, usize)> {
        let state = self.lock();
        let mut counts: Vec<(GroupState, usize)> = Vec::new();
        for entry in state.groups.values() {
            let group_state = entry.group.state();
            if group_state == GroupState::Dead {
                continue;
            }
            match counts.iter_mut().find(|(s, _)| *s == group_state) {
                Some((_, n)) => *n += 1,
                None => counts.push((group_state, 1)),
            }
        }
        counts.sort_by_key(|(s, _)| *s as u8);
        counts
    }

    /// DescribeGroups for one group: a copy of it, `None` if unknown; an error code when
    /// this broker does not coordinate it.
    pub fn describe(&self, group_id: &str) -> Result<Option<Group>, i16> {
        let state = self.lock_for(group_id);
        self.coordinating_or_absent(&state, group_id)?;
        Ok(state.groups.get(group_id).map(|e| e.group.clone()))
    }

    /// DeleteGroups for one group: only an empty group goes, with its offsets. Answered once
    /// the tombstones are replicated.
    pub async fn delete_group(self: &Arc<Self>, group_id: String) -> i16 {
        self.wait_coordinating(&group_id, LOAD_WAIT).await;
        let me = self.clone();
        let written = blocking(move || -> Result<_, i16> {
            let mut state = me.lock();
            me.coordinating_or_absent(&state, &group_id)?;
            let Some(entry) = state.groups.get_mut(&group_id) else {
                return Err(GROUP_ID_NOT_FOUND);
            };
            entry.group.delete()?;
            let mut records: Vec<_> = entry
                .offsets
                .keys()
                .chain(entry.pending_offsets.keys())
                .map(|(t, p)| (offset_key(&group_id, t, *p), None))
                .collect();
            records.push((group_key(&group_id), None));
            let written = me.append(&group_id, &records)?;
            state.groups.remove(&group_id);
            Ok(written)
        })
        .await;
        match written {
            Err(code) => code,
            Ok(None) => NONE,
            Ok(Some(write)) => {
                match replicated(&write, Instant::now() + self.config.offsets_commit_timeout).await
                {
                    Ok(()) => NONE,
                    Err(e) => offsets_error(e),
                }
            }
        }
    }

    /// Removes the committed offsets that have outlived `offsets.retention.ms` at `now_ms`
    /// (tombstoning them in `__consumer_offsets`), then every empty group left without
    /// offsets (tombstoning its group record). Returns the number of offsets removed. Only
    /// groups this broker coordinates are in memory, so only they expire here; the
    /// tombstones are not waited for.
    pub fn expire_offsets(&self, now_ms: i64) -> usize {
        let retention_ms = self.config.offsets_retention_ms;
        let mut state = self.lock();
        let mut removed = 0;
        let mut gone = Vec::new();
        for (group_id, entry) in state.groups.iter_mut() {
            if entry.group.state() == GroupState::Empty && entry.empty_since.is_none() {
                // Never written as empty (e.g. created by a standalone commit).
                entry.empty_since = Some(now_ms);
            }
            let expired: Vec<(String, i32)> = expired_offsets(
                entry.group.state(),
                entry.group.protocol_type().is_some(),
                entry.empty_since,
                entry.offsets.keys().map(|k| {
                    let at = entry.committed_at.get(k).copied().unwrap_or(now_ms);
                    (k, at)
                }),
                now_ms,
                retention_ms,
            )
            .into_iter()
            // A commit on its way settles the key; Kafka skips those too.
            .filter(|k| !entry.pending_offsets.contains_key(k))
            .collect();
            if !expired.is_empty() {
                let records: Vec<_> = expired
                    .iter()
                    .map(|(t, p)| (offset_key(group_id, t, *p), None))
                    .collect();
                match self.append(group_id, &records) {
                    Ok(written) => {
                        if written.is_some() {
                            entry.last_write = written;
                        }
                    }
                    Err(_) => continue,
                }
                for key in &expired {
                    entry.offsets.remove(key);
                    entry.committed_at.remove(key);
                }
                removed += expired.len();
                tracing::info!(
                    group = group_id.as_str(),
                    offsets = expired.len(),
                    "expired committed offsets"
                );
            }
            if entry.group.state() == GroupState::Empty
                && entry.offsets.is_empty()
                && entry.pending_offsets.is_empty()
                && entry.parked_joins.is_empty()
                && entry.parked_syncs.is_empty()
                && self
                    .append(group_id, &[(group_key(group_id), None)])
                    .is_ok()
            {
                gone.push(group_id.clone());
            }
        }
        for group_id in gone {
            tracing::info!(group = group_id.as_str(), "removed empty group");
            state.groups.remove(&group_id);
        }
        removed
    }

    /// Runs [`GroupCoordinator::expire_offsets`] every
    /// `offsets.retention.check.interval.ms` until `shutdown`.
    pub async fn run_offset_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        let interval = Duration::from_millis(self.config.offsets_retention_check_interval_ms);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            self.expire_offsets(now_ms());
        }
    }

    /// Fires group timers (session timeouts, join phases) until `shutdown`. Groups of a
    /// partition given up are dropped from memory, so their timers go with them.
    pub async fn run_timers(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = self
                .lock()
                .groups
                .values()
                .filter_map(|e| e.group.next_deadline_ms())
                .min();
            let sleep_ms = next.map_or(60_000, |at| (at - now_ms()).clamp(0, 60_000));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => continue,
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
            }
            let now = now_ms();
            let mut state = self.lock();
            let ids: Vec<String> = state
                .groups
                .iter()
                .filter(|(_, e)| e.group.next_deadline_ms().is_some_and(|at| at <= now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                if let Some(entry) = state.groups.get_mut(&id) {
                    let effects = entry.group.tick(now);
                    entry.route(effects);
                    self.store_group(&id, entry);
                }
            }
        }
    }
}

/// The keys among `offsets` (each with its commit time) that have expired at `now_ms`, as
/// Kafka decides since KIP-211: never while the group has members; for an empty group that
/// has had members (it has a protocol type), `retention_ms` after it became empty; for
/// offsets committed without any membership, `retention_ms` after each one's commit.
fn expired_offsets<'a>(
    state: GroupState,
    has_protocol_type: bool,
    empty_since: Option<i64>,
    offsets: impl Iterator<Item = (&'a (String, i32), i64)>,
    now_ms: i64,
    retention_ms: i64,
) -> Vec<(String, i32)> {
    if state != GroupState::Empty {
        return Vec::new();
    }
    offsets
        .filter(|(_, committed_at)| {
            let since = match (has_protocol_type, empty_since) {
                (true, Some(empty_since)) => empty_since,
                _ => *committed_at,
            };
            now_ms >= since.saturating_add(retention_ms)
        })
        .map(|(k, _)| k.clone())
        .collect()
}

fn group_key(group_id: &str) -> Vec<u8> {
    // Serialising strings cannot fail.
    serde_json::to_vec(&RecordKey::Group {
        group: group_id.to_string(),
    })
    .expect("key serialises")
}

fn offset_key(group_id: &str, topic: &str, partition: i32) -> Vec<u8> {
    serde_json::to_vec(&RecordKey::Offset {
        group: group_id.to_string(),
        topic: topic.to_string(),
        partition,
    })
    .expect("key serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_kafka() {
        // Java: "".hashCode() == 0, "a".hashCode() == 97, "ab".hashCode() == 3105.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        assert_eq!(partition_for("ab", 50), 3105 % 50);
        assert!((0..50).contains(&partition_for("test-group", 50)));
    }

    #[test]
    fn keys_round_trip() {
        let k: RecordKey = serde_json::from_slice(&offset_key("g", "t", 3)).unwrap();
        assert!(matches!(k, RecordKey::Offset { partition: 3, .. }));
        let k: RecordKey = serde_json::from_slice(&group_key("g")).unwrap();
        assert!(matches!(k, RecordKey::Group { .. }));
    }

    #[test]
    fn offsets_expire_as_in_kip_211() {
        let a = ("t".to_string(), 0);
        let b = ("t".to_string(), 1);
        let offsets = || [(&a, 1_000), (&b, 5_000)].into_iter();
        let retention = 10_000;
        // A group with members never loses its offsets, however old.
        for state in [
            GroupState::Stable,
            GroupState::PreparingRebalance,
            GroupState::CompletingRebalance,
        ] {
            assert!(expired_offsets(state, true, None, offsets(), 1 << 40, retention).is_empty());
        }
        // An emptied consumer group: counted from when it became empty, for every offset.
        let empty = GroupState::Empty;
        assert!(
            expired_offsets(empty, true, Some(20_000), offsets(), 29_999, retention).is_empty()
        );
        assert_eq!(
            expired_offsets(empty, true, Some(20_000), offsets(), 30_000, retention),
            vec![a.clone(), b.clone()]
        );
        // Standalone commits: each offset from its own commit.
        assert!(expired_offsets(empty, false, Some(0), offsets(), 10_999, retention).is_empty());
        assert_eq!(
            expired_offsets(empty, false, Some(0), offsets(), 11_000, retention),
            vec![a.clone()]
        );
        assert_eq!(
            expired_offsets(empty, false, Some(0), offsets(), 15_000, retention),
            vec![a, b]
        );
    }

    // ---- Coordinatorship across leadership changes, on a real ReplicaManager ----

    use crate::controller::{MetadataImage, TopicRecord};
    use crate::server::config::BrokerConfig;

    /// A ReplicaManager of broker 0 in `dir`, and a coordinator on it.
    fn broker0(dir: &std::path::Path) -> (Arc<ReplicaManager>, Arc<GroupCoordinator>) {
        let config = BrokerConfig {
            broker_id: 0,
            log_dir: dir.to_path_buf(),
            ..Default::default()
        };
        let replicas = Arc::new(ReplicaManager::new(Arc::new(config.clone())));
        let coordinator = Arc::new(GroupCoordinator::new(
            replicas.clone(),
            CoordinatorConfig {
                group: GroupConfig::default(),
                offsets_topic_num_partitions: 2,
                offsets_topic_segment_bytes: 1 << 20,
                offset_metadata_max_bytes: 4096,
                offsets_retention_ms: i64::MAX / 2,
                offsets_retention_check_interval_ms: 60_000,
                offsets_commit_timeout: Duration::from_secs(5),
            },
        ));
        (replicas, coordinator)
    }

    /// One partition's `(replicas, isr, leader, leader_epoch)`.
    type Placement<'a> = (&'a [i32], &'a [i32], i32, i32);

    /// Applies an image in which `__consumer_offsets` and the data topic `t` (3 partitions,
    /// on broker 0 only) have the given placements, then tells the coordinator (if given),
    /// as the broker's image follower does.
    fn apply(
        replicas: &ReplicaManager,
        coordinator: Option<&Arc<GroupCoordinator>>,
        index: u64,
        placements: &[Placement<'_>],
    ) {
        let topic = |name: &str, id: u128, placements: &[Placement<'_>]| -> TopicRecord {
            // Built from JSON so that fields added to the records later get their defaults.
            let assignments: Vec<_> = placements
                .iter()
                .map(|(replicas, isr, leader, leader_epoch)| {
                    serde_json::json!({
                        "replicas": replicas, "isr": isr, "leader": leader,
                        "leader_epoch": leader_epoch, "partition_epoch": leader_epoch,
                    })
                })
                .collect();
            serde_json::from_value(serde_json::json!({
                "name": name,
                "topic_id": uuid::Uuid::from_u128(id),
                "partitions": placements.len(),
                "configs": {},
                "assignments": assignments,
            }))
            .expect("topic record")
        };
        let mut image = MetadataImage::default();
        image.topics.insert(
            OFFSETS_TOPIC.to_string(),
            topic(OFFSETS_TOPIC, 1, placements),
        );
        let data: Placement<'_> = (&[0], &[0], 0, 1);
        image
            .topics
            .insert("t".to_string(), topic("t", 2, &[data; 3]));
        let changes = replicas.apply_image(index, Arc::new(image));
        if let Some(coordinator) = coordinator {
            coordinator.leadership_changed(&changes.became_leader, &changes.lost_leadership);
        }
    }

    /// A group id whose partition (of 2) is `partition`.
    fn group_on(partition: i32, prefix: &str) -> String {
        (0..)
            .map(|i| format!("{prefix}-{i}"))
            .find(|g| partition_for(g, 2) == partition)
            .expect("some group id hashes there")
    }

    fn offset(n: i64) -> CommittedOffset {
        CommittedOffset {
            offset: n,
            leader_epoch: -1,
            metadata: None,
        }
    }

    /// A standalone commit (no member, no generation) of one offset of `t-0`.
    async fn commit(coordinator: &Arc<GroupCoordinator>, group: &str, n: i64) -> Vec<i16> {
        coordinator
            .commit(
                group.to_string(),
                String::new(),
                None,
                -1,
                vec![("t".to_string(), 0, offset(n))],
            )
            .await
    }

    fn fetched(coordinator: &GroupCoordinator, group: &str) -> Result<Option<i64>, i16> {
        coordinator
            .fetch_offsets(group, Some(vec![("t".to_string(), 0)]))
            .map(|o| o[0].2.as_ref().map(|c| c.offset))
    }

    async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn partition(replicas: &ReplicaManager, index: i32) -> Arc<Partition> {
        replicas
            .topic(OFFSETS_TOPIC)
            .and_then(|t| t.partition(index).cloned())
            .expect("hosted")
    }

    fn log_end(replicas: &ReplicaManager, index: i32) -> i64 {
        partition(replicas, index)
            .log()
            .map_or(-1, |l| l.log_end_offset())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_follow_leadership_and_wait_for_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let (replicas, coordinator) = broker0(dir.path());
        let mine = group_on(0, "mine");
        let theirs = group_on(1, "theirs");
        let (led, other): (Placement<'_>, Placement<'_>) =
            ((&[0], &[0], 0, 1), (&[1, 0], &[1, 0], 1, 1));

        // Led here but not taken over yet (the image is applied, the coordinator not told):
        // a request waits LOAD_WAIT for the load, then is told to retry.
        apply(&replicas, None, 1, &[led, other]);
        let asked = Instant::now();
        assert_eq!(
            coordinator.heartbeat(&mine, "m", None, 1),
            COORDINATOR_LOAD_IN_PROGRESS
        );
        assert!(asked.elapsed() >= LOAD_WAIT);
        assert_eq!(coordinator.reconcile(), vec![0]);
        assert_eq!(
            coordinator
                .wait_coordinating(&mine, Duration::from_secs(10))
                .await,
            NONE
        );
        // Another broker leads the other partition.
        assert_eq!(
            coordinator
                .wait_coordinating(&theirs, Duration::from_secs(10))
                .await,
            NOT_COORDINATOR
        );
        assert_eq!(
            commit(&coordinator, &theirs, 1).await,
            vec![NOT_COORDINATOR]
        );
        assert_eq!(
            coordinator.describe(&theirs).map(|g| g.is_some()),
            Err(NOT_COORDINATOR)
        );

        assert_eq!(commit(&coordinator, &mine, 42).await, vec![NONE]);
        assert_eq!(fetched(&coordinator, &mine), Ok(Some(42)));
        let listed: Vec<String> = coordinator
            .list()
            .unwrap()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        assert_eq!(listed, vec![mine.clone()]);

        // Leadership moves to broker 1: the group is dropped, requests go elsewhere.
        apply(
            &replicas,
            Some(&coordinator),
            2,
            &[(&[0, 1], &[0, 1], 1, 2), other],
        );
        assert_eq!(fetched(&coordinator, &mine), Err(NOT_COORDINATOR));
        assert!(coordinator.lock().groups.is_empty());
        assert_eq!(coordinator.list(), Ok(Vec::new()));

        // And back: the group and its offset are loaded from the log again.
        apply(
            &replicas,
            Some(&coordinator),
            3,
            &[(&[0, 1], &[0], 0, 3), other],
        );
        assert_eq!(
            coordinator
                .wait_coordinating(&mine, Duration::from_secs(10))
                .await,
            NONE
        );
        assert_eq!(fetched(&coordinator, &mine), Ok(Some(42)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leadership_lost_and_regained_unseen_reloads_the_partition() {
        let dir = tempfile::tempdir().unwrap();
        let (replicas, coordinator) = broker0(dir.path());
        let mine = group_on(0, "mine");
        let other: Placement<'_> = (&[0], &[0], 0, 1);
        apply(
            &replicas,
            Some(&coordinator),
            1,
            &[(&[0], &[0], 0, 1), other],
        );
        coordinator
            .wait_coordinating(&mine, Duration::from_secs(10))
            .await;
        assert_eq!(commit(&coordinator, &mine, 7).await, vec![NONE]);
        // Epoch 1 to epoch 5 in one image: became_leader does not list it, yet the
        // ownership of epoch 1 is stale.
        apply(
            &replicas,
            Some(&coordinator),
            2,
            &[(&[0], &[0], 0, 5), other],
        );
        assert_eq!(
            coordinator
                .wait_coordinating(&mine, Duration::from_secs(10))
                .await,
            NONE
        );
        assert_eq!(
            coordinator.lock().owned.get(&0),
            Some(&Ownership::Active { leader_epoch: 5 })
        );
        assert_eq!(fetched(&coordinator, &mine), Ok(Some(7)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_is_answered_and_visible_only_once_the_isr_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let (replicas, coordinator) = broker0(dir.path());
        let mine = group_on(0, "mine");
        let other: Placement<'_> = (&[1], &[1], 1, 1);
        // Broker 1 is an in-sync follower: the high watermark waits for its fetches.
        apply(
            &replicas,
            Some(&coordinator),
            1,
            &[(&[0, 1], &[0, 1], 0, 1), other],
        );
        assert_eq!(
            coordinator
                .wait_coordinating(&mine, Duration::from_secs(10))
                .await,
            NONE
        );
        let pending = tokio::spawn({
            let coordinator = coordinator.clone();
            let mine = mine.clone();
            async move { commit(&coordinator, &mine, 10).await }
        });
        wait_until("the commit to be appended", || log_end(&replicas, 0) == 1).await;
        assert!(!pending.is_finished(), "answered before replication");
        assert_eq!(
            fetched(&coordinator, &mine),
            Ok(None),
            "an unreplicated offset is visible"
        );
        // The follower fetches from offset 1: it holds the commit.
        let fetch = partition(&replicas, 0).fetch_for_follower(1, 1, 1, -1, 1 << 20, now_ms());
        assert_eq!(fetch.error, NONE, "{}", fetch.message);
        assert_eq!(pending.await.unwrap(), vec![NONE]);
        assert_eq!(fetched(&coordinator, &mine), Ok(Some(10)));

        // A commit in flight when leadership moves away: NOT_COORDINATOR, and it stays
        // invisible.
        let pending = tokio::spawn({
            let coordinator = coordinator.clone();
            let mine = mine.clone();
            async move { commit(&coordinator, &mine, 20).await }
        });
        wait_until("the second commit to be appended", || {
            log_end(&replicas, 0) == 2
        })
        .await;
        assert_eq!(fetched(&coordinator, &mine), Ok(Some(10)));
        apply(
            &replicas,
            Some(&coordinator),
            2,
            &[(&[0, 1], &[0, 1], 1, 2), other],
        );
        assert_eq!(pending.await.unwrap(), vec![NOT_COORDINATOR]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parked_joins_are_answered_not_coordinator_when_the_partition_moves() {
        let dir = tempfile::tempdir().unwrap();
        let (replicas, coordinator) = broker0(dir.path());
        let mine = group_on(0, "mine");
        let other: Placement<'_> = (&[0], &[0], 0, 1);
        apply(
            &replicas,
            Some(&coordinator),
            1,
            &[(&[0, 1], &[0], 0, 1), other],
        );
        coordinator
            .wait_coordinating(&mine, Duration::from_secs(10))
            .await;
        // The first member of a new group waits out group.initial.rebalance.delay.ms (3 s).
        let join = tokio::spawn({
            let coordinator = coordinator.clone();
            let mine = mine.clone();
            async move {
                let request = JoinRequest {
                    member_id: String::new(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: String::new(),
                    protocol_type: "consumer".into(),
                    protocols: vec![Protocol {
                        name: "range".into(),
                        metadata: Bytes::new(),
                    }],
                    session_timeout_ms: 10_000,
                    rebalance_timeout_ms: 10_000,
                    require_known_member_id: false,
                };
                coordinator.join(&mine, request).await
            }
        });
        wait_until("the join to be parked", || {
            coordinator
                .lock()
                .groups
                .get(&mine)
                .is_some_and(|e| e.parked_joins.len() == 1)
        })
        .await;
        apply(
            &replicas,
            Some(&coordinator),
            2,
            &[(&[0, 1], &[1], 1, 2), other],
        );
        let response = join.await.unwrap();
        assert_eq!(response.error_code, NOT_COORDINATOR);
        assert!(coordinator.lock().groups.is_empty());
    }
}

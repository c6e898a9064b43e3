//! The group coordinator driver (Kafka's `GroupCoordinator` and `GroupMetadataManager`):
//! owns every [`Group`] of this broker with its committed offsets, parks JoinGroup and
//! SyncGroup requests until the membership core answers them, runs the timers, and stores
//! offsets and group metadata in the internal topic `__consumer_offsets`.
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
//! the latest per key; a deleted group or offset leaves a tombstone. On start,
//! [`GroupCoordinator::load`] replays every partition of the topic. The single broker leads
//! every partition, so one coordinator owns them all; a group's partition is Kafka's
//! `abs(groupId.hashCode) % offsets.topic.num.partitions`.
//!
//! Appends happen inside the coordinator lock: each is one small write to the page cache
//! (no fsync), and holding the lock keeps the log in the order of the in-memory changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, Notify};
use tokio_util::sync::CancellationToken;

use super::membership::{
    Effect, Group, GroupConfig, GroupState, JoinOutcome, JoinRequest, JoinResponse, LeaveResponse,
    Member, MemberIdentity, Protocol, SyncOutcome, SyncRequest, SyncResponse,
};
use crate::controller::topic_config::TopicConfigs;
use crate::log::batch::{build_batch, decode_records, split_batches};
use crate::server::replica_manager::{now_ms, ReplicaManager};

/// The internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka error codes used here.
use super::membership::error_code::{
    COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, NONE, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
};
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
const KAFKA_STORAGE_ERROR: i16 = 56;
const NOT_COORDINATOR: i16 = 16;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;

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

/// One group with what the driver keeps beside its membership.
#[derive(Debug)]
struct GroupEntry {
    group: Group,
    offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// When each offset was committed (its record's timestamp after a restart).
    committed_at: HashMap<(String, i32), i64>,
    /// Since when the group has been `Empty` (its last group record's timestamp after a
    /// restart); `None` while it has members or has never been written as empty.
    empty_since: Option<i64>,
    /// Parked JoinGroup requests by member id; a second JoinGroup of a member replaces (and
    /// so ends) the first.
    parked_joins: HashMap<String, oneshot::Sender<JoinResponse>>,
    parked_syncs: HashMap<String, oneshot::Sender<SyncResponse>>,
    /// The group record last written, to write only changes.
    stored: Option<GroupRecord>,
}

impl GroupEntry {
    fn new(group: Group) -> GroupEntry {
        GroupEntry {
            group,
            offsets: BTreeMap::new(),
            committed_at: HashMap::new(),
            empty_since: None,
            parked_joins: HashMap::new(),
            parked_syncs: HashMap::new(),
            stored: None,
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
}

/// Every group of this broker.
#[derive(Debug)]
pub struct GroupCoordinator {
    replicas: Arc<ReplicaManager>,
    config: CoordinatorConfig,
    groups: Mutex<HashMap<String, GroupEntry>>,
    /// Woken when a request may have moved the earliest group deadline; the timer task then
    /// recomputes how long to sleep.
    wake: Notify,
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

impl GroupCoordinator {
    pub fn new(replicas: Arc<ReplicaManager>, config: CoordinatorConfig) -> GroupCoordinator {
        GroupCoordinator {
            replicas,
            config,
            groups: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, GroupEntry>> {
        // Poisoning means a panic while a group changed: a broken invariant.
        self.groups.lock().expect("group coordinator lock poisoned")
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

    /// Ok when `__consumer_offsets` exists (it is created through the controller by
    /// FindCoordinator).
    pub fn ensure_offsets_topic(&self) -> Result<(), i16> {
        if self.replicas.topic(OFFSETS_TOPIC).is_some() {
            Ok(())
        } else {
            Err(COORDINATOR_NOT_AVAILABLE)
        }
    }

    /// Appends records for `group_id` to its partition of `__consumer_offsets`, which this
    /// broker must lead.
    fn append(&self, group_id: &str, records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), i16> {
        if records.is_empty() {
            return Ok(());
        }
        self.ensure_offsets_topic()?;
        let topic = self
            .replicas
            .topic(OFFSETS_TOPIC)
            .ok_or(COORDINATOR_NOT_AVAILABLE)?;
        let index = partition_for(group_id, topic.record.partitions);
        let partition = topic.partition(index).ok_or(NOT_COORDINATOR)?;
        let now = now_ms();
        let kvs: Vec<_> = records
            .iter()
            .map(|(k, v)| (Some(k.as_slice()), v.as_deref()))
            .collect();
        let mut batch = build_batch(0, now, &kvs);
        match partition.append_as_leader(&mut batch, now, false, 1) {
            Ok(_) => {}
            Err(e) if e.code == NOT_LEADER_OR_FOLLOWER => return Err(NOT_COORDINATOR),
            Err(e) => {
                tracing::error!(group = group_id, error = %e.message, "cannot write to {OFFSETS_TOPIC}");
                return Err(KAFKA_STORAGE_ERROR);
            }
        }
        self.replicas.notify_appended();
        Ok(())
    }

    /// Writes the group record if it changed since the last write. Only `Stable` and `Empty`
    /// groups are written, as Kafka does: a rebalance in progress is not worth restoring.
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
        if self.append(group_id, &[(key, Some(value))]).is_ok() {
            entry.stored = Some(record);
        }
    }

    /// Follows leadership of `__consumer_offsets` partitions: groups of a partition this
    /// broker now leads are loaded from it (on the blocking pool); groups of one it no
    /// longer leads are dropped, their new coordinator loads them.
    pub fn leadership_changed(
        self: &Arc<Self>,
        became_leader: &[Arc<crate::server::partition::Partition>],
        lost: &[(String, i32)],
    ) {
        let lost: Vec<i32> = lost
            .iter()
            .filter(|(t, _)| t == OFFSETS_TOPIC)
            .map(|(_, p)| *p)
            .collect();
        if !lost.is_empty() {
            if let Some(topic) = self.replicas.topic(OFFSETS_TOPIC) {
                let n = topic.record.partitions;
                let mut groups = self.lock();
                groups.retain(|id, _| !lost.contains(&partition_for(id, n)));
            }
            tracing::info!(partitions = ?lost, "no longer coordinator for these {OFFSETS_TOPIC} partitions");
        }
        let gained: Vec<i32> = became_leader
            .iter()
            .filter(|p| p.topic == OFFSETS_TOPIC)
            .map(|p| p.index)
            .collect();
        if gained.is_empty() {
            return;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = me.load_partitions(&gained) {
                tracing::error!(error = %e, "cannot load groups from {OFFSETS_TOPIC}");
            }
        });
    }

    /// Rebuilds groups and offsets from every hosted partition of `__consumer_offsets`.
    /// Blocking.
    pub fn load(&self) -> Result<(), crate::log::Error> {
        let Some(topic) = self.replicas.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let all: Vec<i32> = topic.partitions().map(|p| p.index).collect();
        self.load_partitions(&all)
    }

    /// Rebuilds the groups of the given `__consumer_offsets` partitions from their logs,
    /// replacing what memory held for them. Blocking.
    pub fn load_partitions(&self, indices: &[i32]) -> Result<(), crate::log::Error> {
        let Some(topic) = self.replicas.topic(OFFSETS_TOPIC) else {
            return Ok(());
        };
        let now = now_ms();
        let n = topic.record.partitions;
        let mut groups = self.lock();
        groups.retain(|id, _| !indices.contains(&partition_for(id, n)));
        let mut records = 0u64;
        for partition in topic.partitions().filter(|p| indices.contains(&p.index)) {
            let Some(log) = partition.log() else {
                continue;
            };
            let mut offset = log.log_start_offset();
            let end = log.log_end_offset();
            while offset < end {
                let data = log.read(offset, 1 << 20, end)?;
                let batches = split_batches(&data.records).map_err(|source| {
                    crate::log::Error::InvalidBatch {
                        position: 0,
                        source,
                    }
                })?;
                if batches.is_empty() {
                    break;
                }
                for (position, header) in batches {
                    offset = header.next_offset();
                    let bytes = &data.records[position..position + header.total_size()];
                    let Ok(decoded) = decode_records(bytes) else {
                        tracing::warn!(
                            partition = partition.index,
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
        }
        groups.retain(|_, e| {
            e.group.state() != GroupState::Empty || !e.offsets.is_empty() || e.stored.is_some()
        });
        tracing::info!(groups = groups.len(), records, "loaded {OFFSETS_TOPIC}");
        Ok(())
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
        let rx = {
            let mut groups = self.lock();
            let entry = groups.entry(group_id.to_string()).or_insert_with(|| {
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
                    drop(groups);
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

    /// SyncGroup: the leader's assignment answers every parked member.
    pub async fn sync(&self, group_id: &str, request: SyncRequest) -> SyncResponse {
        let rx = {
            let mut groups = self.lock();
            let Some(entry) = groups.get_mut(group_id) else {
                return SyncResponse::error(UNKNOWN_MEMBER_ID);
            };
            let member_id = request.member_id.clone();
            let (outcome, effects) = entry.group.sync(request, now_ms());
            let rx = match outcome {
                SyncOutcome::Respond(response) => {
                    entry.route(effects);
                    self.store_group(group_id, entry);
                    return response;
                }
                SyncOutcome::Pending => {
                    let (tx, rx) = oneshot::channel();
                    entry.parked_syncs.insert(member_id, tx);
                    rx
                }
            };
            // Kafka stores the group with its assignment before answering the SyncGroups.
            self.store_group(group_id, entry);
            entry.route(effects);
            rx
        };
        self.wake.notify_one();
        match tokio::time::timeout(Duration::from_secs(300), rx).await {
            Ok(Ok(response)) => response,
            _ => SyncResponse::error(REBALANCE_IN_PROGRESS),
        }
    }

    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        let mut groups = self.lock();
        match groups.get_mut(group_id) {
            Some(entry) => {
                entry
                    .group
                    .heartbeat(member_id, group_instance_id, generation_id, now_ms())
            }
            None => UNKNOWN_MEMBER_ID,
        }
    }

    pub fn leave(&self, group_id: &str, leaving: &[MemberIdentity]) -> Result<LeaveResponse, i16> {
        let mut groups = self.lock();
        let Some(entry) = groups.get_mut(group_id) else {
            return Err(UNKNOWN_MEMBER_ID);
        };
        let (response, effects) = entry.group.leave(leaving, now_ms());
        entry.route(effects);
        self.store_group(group_id, entry);
        drop(groups);
        self.wake.notify_one();
        Ok(response)
    }

    /// OffsetCommit: checks the member and generation, then stores every offset. Returns
    /// the error code of each `(topic, partition)` in order.
    pub fn commit(
        &self,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Vec<i16> {
        let mut groups = self.lock();
        let entry = groups
            .entry(group_id.to_string())
            .or_insert_with(|| GroupEntry::new(Group::new(group_id, self.config.group.clone())));
        if let Err(code) = entry
            .group
            .can_commit(member_id, generation_id, group_instance_id)
        {
            return vec![code; offsets.len()];
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
                .is_some_and(|t| t.partition(partition).is_some());
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
        if let Err(code) = self.append(group_id, &records) {
            return codes
                .into_iter()
                .map(|c| if c == NONE { code } else { c })
                .collect();
        }
        let now = now_ms();
        for (topic, partition, committed) in accepted {
            entry.committed_at.insert((topic.clone(), partition), now);
            entry.offsets.insert((topic, partition), committed);
        }
        codes
    }

    /// OffsetFetch: the committed offset of each requested partition (all of them for
    /// `None`), -1 where there is none.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let groups = self.lock();
        let offsets = groups.get(group_id).map(|e| &e.offsets);
        match partitions {
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
        }
    }

    /// OffsetDelete. Only an empty group's offsets can be deleted; for a group with members
    /// every partition answers GROUP_SUBSCRIBED_TO_TOPIC (Kafka checks the subscription of
    /// each topic; this does not parse the consumer protocol).
    pub fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        let mut groups = self.lock();
        let Some(entry) = groups.get_mut(group_id) else {
            return Err(GROUP_ID_NOT_FOUND);
        };
        if entry.group.state() != GroupState::Empty {
            return Ok(vec![GROUP_SUBSCRIBED_TO_TOPIC; partitions.len()]);
        }
        let records: Vec<_> = partitions
            .iter()
            .filter(|(t, p)| entry.offsets.contains_key(&(t.clone(), *p)))
            .map(|(t, p)| (offset_key(group_id, t, *p), None))
            .collect();
        self.append(group_id, &records)?;
        for (t, p) in partitions {
            entry.committed_at.remove(&(t.clone(), *p));
            entry.offsets.remove(&(t.clone(), *p));
        }
        Ok(vec![NONE; partitions.len()])
    }

    /// ListGroups: `(group id, protocol type, state)` of every live group.
    pub fn list(&self) -> Vec<(String, String, GroupState)> {
        let mut listed: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, e)| e.group.state() != GroupState::Dead)
            .map(|(id, e)| {
                let protocol_type = e.group.protocol_type().unwrap_or_default().to_string();
                (id.clone(), protocol_type, e.group.state())
            })
            .collect();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        listed
    }

    /// DescribeGroups for one group: a copy of it, `None` if unknown.
    pub fn describe(&self, group_id: &str) -> Option<Group> {
        self.lock().get(group_id).map(|e| e.group.clone())
    }

    /// DeleteGroups for one group: only an empty group goes, with its offsets.
    pub fn delete_group(&self, group_id: &str) -> i16 {
        let mut groups = self.lock();
        let Some(entry) = groups.get_mut(group_id) else {
            return GROUP_ID_NOT_FOUND;
        };
        if let Err(code) = entry.group.delete() {
            return code;
        }
        let mut records: Vec<_> = entry
            .offsets
            .keys()
            .map(|(t, p)| (offset_key(group_id, t, *p), None))
            .collect();
        records.push((group_key(group_id), None));
        if let Err(code) = self.append(group_id, &records) {
            return code;
        }
        groups.remove(group_id);
        NONE
    }

    /// Removes the committed offsets that have outlived `offsets.retention.ms` at `now_ms`
    /// (tombstoning them in `__consumer_offsets`), then every empty group left without
    /// offsets (tombstoning its group record). Returns the number of offsets removed.
    pub fn expire_offsets(&self, now_ms: i64) -> usize {
        let retention_ms = self.config.offsets_retention_ms;
        let mut groups = self.lock();
        let mut removed = 0;
        let mut gone = Vec::new();
        for (group_id, entry) in groups.iter_mut() {
            if entry.group.state() == GroupState::Empty && entry.empty_since.is_none() {
                // Never written as empty (e.g. created by a standalone commit).
                entry.empty_since = Some(now_ms);
            }
            let expired = expired_offsets(
                entry.group.state(),
                entry.group.protocol_type().is_some(),
                entry.empty_since,
                entry.offsets.keys().map(|k| {
                    let at = entry.committed_at.get(k).copied().unwrap_or(now_ms);
                    (k, at)
                }),
                now_ms,
                retention_ms,
            );
            if !expired.is_empty() {
                let records: Vec<_> = expired
                    .iter()
                    .map(|(t, p)| (offset_key(group_id, t, *p), None))
                    .collect();
                if self.append(group_id, &records).is_err() {
                    continue;
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
            groups.remove(&group_id);
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

    /// Fires group timers (session timeouts, join phases) until `shutdown`.
    pub async fn run_timers(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let next = self
                .lock()
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
            let mut groups = self.lock();
            let ids: Vec<String> = groups
                .iter()
                .filter(|(_, e)| e.group.next_deadline_ms().is_some_and(|at| at <= now))
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                if let Some(entry) = groups.get_mut(&id) {
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
}

//! The cluster metadata image and the commands that change it.
//!
//! The image is the state machine of the controller's Raft log: every voter applies the
//! same committed [`Command`]s in the same order with [`apply`], so every copy of the image
//! is the same at the same log index. `apply` is therefore pure and deterministic: no
//! clock, no randomness, no I/O. Whatever needs those (topic ids, placement against the
//! live brokers, timestamps) is decided by the active controller *before* it proposes the
//! command, in [`super::prepare`].
//!
//! ```text
//! Kafka request ──> prepare(image, request) ──> Command ──Raft──> apply(image, command)
//!   (any broker,     (active controller:          (JSON in      (every voter, in log
//!    forwarded)       validation, placement)       the log)       order) ──> Outcome
//! ```
//!
//! What `apply` keeps true of every partition (the tests check it after every command of
//! long random sequences): the ISR is non-empty, a subset of `replicas`, and in replica
//! order; the leader is in the ISR or is [`NO_LEADER`]; a fenced broker stays in an ISR
//! only as its last member (and then nothing leads: Kafka's rule, so that the partition
//! comes back without losing acknowledged writes when that broker does); leaders are
//! elected cleanly only, from the ISR in replica order, among brokers that are unfenced
//! and not shutting down.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::TopicConfigs;

/// No leader: every replica in the ISR is fenced or gone.
pub const NO_LEADER: i32 = -1;

/// A broker as registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRecord {
    pub id: i32,
    /// Random per process start: a registration with a new incarnation is a restart.
    pub incarnation: Uuid,
    /// Kafka listener that Metadata advertises to clients.
    pub host: String,
    pub port: i32,
    /// `broker.rack`, for rack-aware placement.
    pub rack: Option<String>,
    /// `host:port` of the broker's gRPC listener (replication and controller RPCs).
    pub rpc_addr: String,
    /// Fenced brokers lead nothing and are left out of Metadata responses.
    pub fenced: bool,
    /// In a controlled shutdown: gets no new leaderships or ISR places.
    pub shutting_down: bool,
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// Every replica, the preferred leader first. During a reassignment this is the union
    /// of the old and the target replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas, the leader among them.
    pub isr: Vec<i32>,
    /// [`NO_LEADER`] when no replica in the ISR can lead.
    pub leader: i32,
    /// Bumped on every leader change (including to and from [`NO_LEADER`]).
    pub leader_epoch: i32,
    /// Bumped on every change of this record (leader, ISR, replicas).
    pub partition_epoch: i32,
    /// Reassignment in progress: replicas being added (not yet in sync) ...
    #[serde(default)]
    pub adding_replicas: Vec<i32>,
    /// ... and replicas to drop once every adding replica is in the ISR.
    #[serde(default)]
    pub removing_replicas: Vec<i32>,
}

/// One topic as the metadata knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    pub topic_id: Uuid,
    /// Number of partitions; always `assignments.len()` once assignments are known.
    pub partitions: i32,
    pub configs: TopicConfigs,
    /// Per partition, by index.
    #[serde(default)]
    pub assignments: Vec<PartitionRecord>,
}

/// The whole metadata: cluster id, brokers, topics, and producer id allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: String,
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerRecord>,
    pub topics: BTreeMap<String, TopicRecord>,
    /// End (exclusive) of the last block of producer ids handed to a broker for
    /// `InitProducerId` (Kafka's `ProducerIdsRecord.nextProducerId`). Blocks are committed
    /// before any id from them is used, so ids never repeat.
    #[serde(default)]
    pub next_producer_id_block: i64,
}

/// A change to the image, as committed in the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Sets the cluster id; the first command of a new cluster. Ignored once one is set.
    InitCluster {
        cluster_id: String,
    },
    /// A broker (re)starting. A new incarnation of a known broker replaces the old record
    /// and leaves it fenced until its first heartbeat after registration unfences it.
    RegisterBroker {
        broker: BrokerRecord,
    },
    /// Silent past `broker.session.timeout.ms` (or stopped): it leads nothing, leaves every
    /// ISR it is not the last member of, and partitions it led get leaders from their ISR.
    FenceBroker {
        id: i32,
    },
    /// Heartbeating again: partitions without a leader whose ISR holds it get it as leader.
    UnfenceBroker {
        id: i32,
    },
    /// SIGTERM: move every leadership of `id` to another ISR member and take it out of
    /// ISRs with other members, as for fencing, but it keeps heartbeating until done.
    ControlledShutdown {
        id: i32,
    },
    /// Kafka's UnregisterBroker (KIP-631): a broker that is gone for good (a cluster scaled
    /// down) leaves the metadata, so Metadata and DescribeCluster stop naming it. Refused
    /// while it heartbeats (unfenced) or while any partition still names it as a replica.
    UnregisterBroker {
        id: i32,
    },
    /// A new topic, fully placed by the controller.
    CreateTopic {
        topic: TopicRecord,
    },
    DeleteTopic {
        name: String,
    },
    /// New partitions appended to a topic, each given as its replica list.
    CreatePartitions {
        name: String,
        new_assignments: Vec<Vec<i32>>,
    },
    /// Replaces a topic's configuration overrides.
    SetTopicConfigs {
        name: String,
        configs: TopicConfigs,
    },
    /// A partition leader's ISR change (Kafka's AlterPartition). Refused unless
    /// `leader_epoch` and `partition_epoch` match the record (the leader acted on what it
    /// knew), and unless every added replica is unfenced. Completes a reassignment whose
    /// adding replicas are all in the new ISR.
    AlterPartition {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    /// Leader elections: `preferred` moves leadership to the first replica when it is in
    /// the ISR and unfenced; otherwise a partition without a leader gets one from its ISR.
    ElectLeaders {
        partitions: Vec<(String, i32)>,
        preferred: bool,
    },
    /// Starts a reassignment to `target` replicas, or cancels one (`None`).
    Reassign {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Hands the next block of producer ids to a broker.
    AllocateProducerIds {
        broker_id: i32,
    },
}

/// What a successful [`apply`] reports back to whoever proposed the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    /// `[start, end)` of a block of producer ids.
    ProducerIds {
        start: i64,
        end: i64,
    },
    /// The topic id of a created or deleted topic.
    Topic {
        topic_id: Uuid,
    },
}

/// A refused command: a Kafka error code and a message for the client. The image is left
/// exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (error code {code})")]
pub struct CommandError {
    pub code: i16,
    pub message: String,
}

impl CommandError {
    /// A refusal with Kafka's `code` and a message for the client.
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        CommandError {
            code: code.code(),
            message: message.into(),
        }
    }
}

impl MetadataImage {
    /// One partition's record, if the topic and the partition exist.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionRecord> {
        let index = usize::try_from(partition).ok()?;
        self.topics.get(topic)?.assignments.get(index)
    }

    /// Registered brokers that are not fenced (Metadata shows these), in id order. Brokers
    /// in a controlled shutdown are still live; see [`MetadataImage::is_eligible`].
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRecord> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Whether `broker_id` may lead or join an ISR: registered, unfenced and not in a
    /// controlled shutdown (Kafka's `ClusterControlManager.isActive`).
    pub fn is_eligible(&self, broker_id: i32) -> bool {
        eligible(&self.brokers, broker_id)
    }

    /// Partitions with a reassignment in progress, by topic name and partition index.
    pub fn reassignments(&self) -> Vec<(String, i32, &PartitionRecord)> {
        self.partitions()
            .filter(|(_, _, p)| p.is_reassigning())
            .map(|(topic, index, p)| (topic.to_string(), index, p))
            .collect()
    }

    /// Every partition in topic-name and index order.
    pub fn partitions(&self) -> impl Iterator<Item = (&str, i32, &PartitionRecord)> {
        self.topics.values().flat_map(|t| {
            t.assignments
                .iter()
                .enumerate()
                .map(move |(i, p)| (t.name.as_str(), i as i32, p))
        })
    }
}

impl PartitionRecord {
    /// A record carrying only its replicas, as proposed for a new partition; `apply` sets
    /// the ISR and leader.
    pub fn unplaced(replicas: Vec<i32>) -> PartitionRecord {
        PartitionRecord {
            replicas,
            isr: Vec::new(),
            leader: NO_LEADER,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    /// A reassignment is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// The replicas this partition ends up with: `replicas` without the ones being
    /// removed, in the requested order (a reassignment stores the target first).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }
}

/// Applies one committed command to the image.
///
/// Every check runs before the first change, so a refused command leaves the image exactly
/// as it was. Partition records follow one rule wherever they change (see `commit`):
/// a new leader bumps `leader_epoch`, any change bumps `partition_epoch`, and an unchanged
/// record keeps both, so replaying an idempotent command writes nothing.
pub fn apply(image: &mut MetadataImage, command: &Command) -> Result<Outcome, CommandError> {
    match command {
        Command::InitCluster { cluster_id } => {
            if image.cluster_id.is_empty() {
                image.cluster_id = cluster_id.clone();
            }
            Ok(Outcome::Done)
        }
        Command::RegisterBroker { broker } => register_broker(image, broker),
        Command::FenceBroker { id } => {
            known_broker(image, *id)?;
            fence_broker(image, *id);
            Ok(Outcome::Done)
        }
        Command::UnfenceBroker { id } => unfence_broker(image, *id),
        Command::ControlledShutdown { id } => controlled_shutdown(image, *id),
        Command::UnregisterBroker { id } => unregister_broker(image, *id),
        Command::CreateTopic { topic } => create_topic(image, topic),
        Command::DeleteTopic { name } => {
            let topic = image
                .topics
                .remove(name)
                .ok_or_else(|| unknown_topic(name))?;
            Ok(Outcome::Topic {
                topic_id: topic.topic_id,
            })
        }
        Command::CreatePartitions {
            name,
            new_assignments,
        } => create_partitions(image, name, new_assignments),
        Command::SetTopicConfigs { name, configs } => {
            let topic = image
                .topics
                .get_mut(name)
                .ok_or_else(|| unknown_topic(name))?;
            topic.configs = configs.clone();
            Ok(Outcome::Done)
        }
        Command::AlterPartition {
            topic,
            partition,
            leader,
            leader_epoch,
            partition_epoch,
            new_isr,
        } => alter_partition(
            image,
            topic,
            *partition,
            *leader,
            *leader_epoch,
            *partition_epoch,
            new_isr,
        ),
        Command::ElectLeaders {
            partitions,
            preferred,
        } => {
            elect_leaders(image, partitions, *preferred);
            Ok(Outcome::Done)
        }
        Command::Reassign {
            topic,
            partition,
            target,
        } => reassign(image, topic, *partition, target.as_deref()),
        Command::AllocateProducerIds { broker_id } => {
            let start = image.next_producer_id_block;
            let end = start
                .checked_add(super::PRODUCER_ID_BLOCK_SIZE)
                .ok_or_else(|| {
                    CommandError::new(
                        ResponseError::InvalidRequest,
                        format!("producer ids are exhausted (broker {broker_id} asked for a block at {start})"),
                    )
                })?;
            image.next_producer_id_block = end;
            Ok(Outcome::ProducerIds { start, end })
        }
    }
}

fn eligible(brokers: &BTreeMap<i32, BrokerRecord>, id: i32) -> bool {
    brokers
        .get(&id)
        .is_some_and(|b| !b.fenced && !b.shutting_down)
}

/// Kafka's clean election: the first replica, in `replicas` order, that is in the ISR and
/// eligible; [`NO_LEADER`] when there is none.
fn elect(brokers: &BTreeMap<i32, BrokerRecord>, record: &PartitionRecord) -> i32 {
    record
        .replicas
        .iter()
        .copied()
        .find(|r| record.isr.contains(r) && eligible(brokers, *r))
        .unwrap_or(NO_LEADER)
}

/// `members` in the order of `replicas` (the ISR is kept in replica order so that equal
/// ISRs compare equal).
fn in_replica_order(replicas: &[i32], members: &[i32]) -> Vec<i32> {
    replicas
        .iter()
        .copied()
        .filter(|r| members.contains(r))
        .collect()
}

/// Stores `next` in `slot` with the epoch rule: `leader_epoch` + 1 when the leader
/// changed, `partition_epoch` + 1 when anything changed, nothing when nothing changed.
/// Handlers build `next` from a clone and never touch the epochs themselves.
fn commit(slot: &mut PartitionRecord, mut next: PartitionRecord) {
    next.leader_epoch = slot.leader_epoch;
    next.partition_epoch = slot.partition_epoch;
    if next == *slot {
        return;
    }
    if next.leader != slot.leader {
        next.leader_epoch += 1;
    }
    next.partition_epoch += 1;
    *slot = next;
}

fn unknown_topic(name: &str) -> CommandError {
    CommandError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name:?} does not exist"),
    )
}

fn known_broker(image: &MetadataImage, id: i32) -> Result<&BrokerRecord, CommandError> {
    image.brokers.get(&id).ok_or_else(|| {
        CommandError::new(
            ResponseError::BrokerNotAvailable,
            format!("broker {id} is not registered"),
        )
    })
}

fn register_broker(
    image: &mut MetadataImage,
    broker: &BrokerRecord,
) -> Result<Outcome, CommandError> {
    if broker.id < 0 {
        return Err(CommandError::new(
            ResponseError::InvalidRequest,
            format!("broker id {} is negative", broker.id),
        ));
    }
    match image.brokers.get_mut(&broker.id) {
        Some(known) if known.incarnation == broker.incarnation => {
            // The same process registering again (a retried RPC): new endpoints at most.
            known.host = broker.host.clone();
            known.port = broker.port;
            known.rack = broker.rack.clone();
            known.rpc_addr = broker.rpc_addr.clone();
            return Ok(Outcome::Done);
        }
        Some(known) if !known.fenced => {
            // A restart the controller has not noticed yet: the old process is gone, so
            // what it led must move before the new one, with an empty page cache and
            // possibly a truncated log, is trusted with anything.
            fence_broker(image, broker.id);
        }
        _ => {}
    }
    image.brokers.insert(
        broker.id,
        BrokerRecord {
            fenced: true,
            shutting_down: false,
            ..broker.clone()
        },
    );
    Ok(Outcome::Done)
}

/// Fences a registered broker (checked by the caller). It leaves every ISR it is not the
/// last member of: Kafka keeps the last member so that, when it comes back, the partition
/// can have a leader again without losing acknowledged writes.
fn fence_broker(image: &mut MetadataImage, id: i32) {
    if let Some(broker) = image.brokers.get_mut(&id) {
        broker.fenced = true;
    }
    let brokers = &image.brokers;
    for partition in image
        .topics
        .values_mut()
        .flat_map(|t| t.assignments.iter_mut())
    {
        if !partition.isr.contains(&id) && partition.leader != id {
            continue;
        }
        let mut next = partition.clone();
        if next.isr.len() > 1 {
            next.isr.retain(|r| *r != id);
        }
        if next.leader == id {
            next.leader = elect(brokers, &next);
        }
        commit(partition, next);
    }
}

fn unfence_broker(image: &mut MetadataImage, id: i32) -> Result<Outcome, CommandError> {
    known_broker(image, id)?;
    if let Some(broker) = image.brokers.get_mut(&id) {
        broker.fenced = false;
    }
    let brokers = &image.brokers;
    for partition in image
        .topics
        .values_mut()
        .flat_map(|t| t.assignments.iter_mut())
    {
        if partition.leader != NO_LEADER
            || !partition.isr.contains(&id)
            || !partition.replicas.contains(&id)
        {
            continue;
        }
        let mut next = partition.clone();
        next.leader = elect(brokers, &next);
        commit(partition, next);
    }
    Ok(Outcome::Done)
}

/// Moves leaderships away from `id` and takes it out of ISRs, but only where that costs
/// nothing: a partition whose ISR is `id` alone keeps it as leader until it is fenced.
/// Applying it again moves whatever became movable since (an ISR that grew).
/// Removes a fenced broker that no partition names (see [`Command::UnregisterBroker`]).
fn unregister_broker(image: &mut MetadataImage, id: i32) -> Result<Outcome, CommandError> {
    let Some(broker) = image.brokers.get(&id) else {
        return Err(CommandError::new(
            ResponseError::BrokerIdNotRegistered,
            format!("broker {id} is not registered"),
        ));
    };
    if !broker.fenced {
        return Err(CommandError::new(
            ResponseError::InvalidRequest,
            format!("broker {id} is alive (heartbeating): stop it before unregistering it"),
        ));
    }
    let holding: Vec<String> = image
        .partitions()
        .filter(|(_, _, p)| {
            p.replicas.contains(&id)
                || p.adding_replicas.contains(&id)
                || p.removing_replicas.contains(&id)
        })
        .map(|(topic, partition, _)| format!("{topic}-{partition}"))
        .collect();
    if !holding.is_empty() {
        let shown: Vec<&str> = holding.iter().take(5).map(String::as_str).collect();
        return Err(CommandError::new(
            ResponseError::InvalidRequest,
            format!(
                "broker {id} still holds replicas of {} partitions ({}{}): reassign them \
                 before unregistering it",
                holding.len(),
                shown.join(", "),
                if holding.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
        ));
    }
    image.brokers.remove(&id);
    Ok(Outcome::Done)
}

fn controlled_shutdown(image: &mut MetadataImage, id: i32) -> Result<Outcome, CommandError> {
    known_broker(image, id)?;
    if let Some(broker) = image.brokers.get_mut(&id) {
        broker.shutting_down = true;
    }
    let brokers = &image.brokers;
    for partition in image
        .topics
        .values_mut()
        .flat_map(|t| t.assignments.iter_mut())
    {
        if !partition.isr.contains(&id) {
            continue;
        }
        let mut next = partition.clone();
        if next.leader == id {
            // `id` is no longer eligible, so this picks another ISR member or none.
            let successor = elect(brokers, &next);
            if successor == NO_LEADER {
                continue;
            }
            next.leader = successor;
            next.isr.retain(|r| *r != id);
        } else if next.leader != NO_LEADER && next.isr.len() > 1 {
            next.isr.retain(|r| *r != id);
        }
        commit(partition, next);
    }
    Ok(Outcome::Done)
}

/// Checks one replica list of a new partition: non-empty, distinct, registered brokers.
fn check_replicas(
    brokers: &BTreeMap<i32, BrokerRecord>,
    replicas: &[i32],
    what: &dyn Fn() -> String,
) -> Result<(), CommandError> {
    let invalid = |reason: String| {
        CommandError::new(
            ResponseError::InvalidReplicaAssignment,
            format!("{}: {reason}", what()),
        )
    };
    if replicas.is_empty() {
        return Err(invalid("no replicas".into()));
    }
    for (i, r) in replicas.iter().enumerate() {
        if replicas[..i].contains(r) {
            return Err(invalid(format!("broker {r} is listed twice")));
        }
        if !brokers.contains_key(r) {
            return Err(invalid(format!("broker {r} is not registered")));
        }
    }
    Ok(())
}

/// Records of new partitions: ISR = the eligible replicas, leader = the first of them.
/// The ISR and leader are decided here rather than trusted from the command so that they
/// match the broker states at the command's place in the log.
fn new_partitions(
    brokers: &BTreeMap<i32, BrokerRecord>,
    topic: &str,
    first_index: usize,
    assignments: &[Vec<i32>],
) -> Result<Vec<PartitionRecord>, CommandError> {
    assignments
        .iter()
        .enumerate()
        .map(|(i, replicas)| {
            let index = first_index + i;
            check_replicas(brokers, replicas, &|| format!("partition {topic}-{index}"))?;
            let isr: Vec<i32> = replicas
                .iter()
                .copied()
                .filter(|r| eligible(brokers, *r))
                .collect();
            let leader = *isr.first().ok_or_else(|| {
                CommandError::new(
                    ResponseError::BrokerNotAvailable,
                    format!(
                        "partition {topic}-{index}: none of the replicas {replicas:?} is unfenced and not shutting down"
                    ),
                )
            })?;
            Ok(PartitionRecord {
                replicas: replicas.clone(),
                isr,
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
        })
        .collect()
}

fn create_topic(image: &mut MetadataImage, topic: &TopicRecord) -> Result<Outcome, CommandError> {
    super::validate_topic_name(&topic.name)
        .map_err(|reason| CommandError::new(ResponseError::InvalidTopicException, reason))?;
    if image.topics.contains_key(&topic.name) {
        return Err(CommandError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", topic.name),
        ));
    }
    if topic.topic_id.is_nil() {
        return Err(CommandError::new(
            ResponseError::InvalidRequest,
            format!("topic {:?} has the nil topic id", topic.name),
        ));
    }
    if let Some(other) = image.topics.values().find(|t| t.topic_id == topic.topic_id) {
        return Err(CommandError::new(
            ResponseError::TopicAlreadyExists,
            format!(
                "topic id {} of {:?} is already used by topic {:?}",
                topic.topic_id, topic.name, other.name
            ),
        ));
    }
    if topic.assignments.is_empty() || topic.partitions as usize != topic.assignments.len() {
        return Err(CommandError::new(
            ResponseError::InvalidPartitions,
            format!(
                "topic {:?} has {} partitions but {} replica assignments",
                topic.name,
                topic.partitions,
                topic.assignments.len()
            ),
        ));
    }
    let replica_lists: Vec<Vec<i32>> = topic
        .assignments
        .iter()
        .map(|p| p.replicas.clone())
        .collect();
    let assignments = new_partitions(&image.brokers, &topic.name, 0, &replica_lists)?;
    image.topics.insert(
        topic.name.clone(),
        TopicRecord {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            partitions: topic.partitions,
            configs: topic.configs.clone(),
            assignments,
        },
    );
    Ok(Outcome::Topic {
        topic_id: topic.topic_id,
    })
}

fn create_partitions(
    image: &mut MetadataImage,
    name: &str,
    new_assignments: &[Vec<i32>],
) -> Result<Outcome, CommandError> {
    let topic = image.topics.get(name).ok_or_else(|| unknown_topic(name))?;
    let current = topic.assignments.len();
    let total = current + new_assignments.len();
    if new_assignments.is_empty() || i32::try_from(total).is_err() {
        return Err(CommandError::new(
            ResponseError::InvalidPartitions,
            format!(
                "topic {name:?} has {current} partitions; {} more cannot be added",
                new_assignments.len()
            ),
        ));
    }
    let added = new_partitions(&image.brokers, name, current, new_assignments)?;
    let topic = image
        .topics
        .get_mut(name)
        .ok_or_else(|| unknown_topic(name))?;
    topic.assignments.extend(added);
    topic.partitions = total as i32;
    Ok(Outcome::Done)
}

fn partition_index(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
) -> Result<usize, CommandError> {
    image
        .partition(topic, partition)
        .map(|_| partition as usize)
        .ok_or_else(|| {
            CommandError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("partition {topic}-{partition} does not exist"),
            )
        })
}

/// Completes a reassignment once every adding replica is in the ISR: the removed replicas
/// leave `replicas` and the ISR. Stays pending when that would leave the partition without
/// an ISR member, or without a leader because the leader is removed and no remaining ISR
/// member can take over (waiting costs nothing; completing would make it unavailable).
fn try_complete_reassignment(brokers: &BTreeMap<i32, BrokerRecord>, record: &mut PartitionRecord) {
    if !record.is_reassigning()
        || !record
            .adding_replicas
            .iter()
            .all(|r| record.isr.contains(r))
    {
        return;
    }
    let target = record.target_replicas();
    let isr = in_replica_order(&target, &record.isr);
    if isr.is_empty() {
        return;
    }
    let leader = if target.contains(&record.leader) {
        record.leader
    } else {
        match target
            .iter()
            .copied()
            .find(|r| isr.contains(r) && eligible(brokers, *r))
        {
            Some(leader) => leader,
            None => return,
        }
    };
    record.replicas = target;
    record.isr = isr;
    record.leader = leader;
    record.adding_replicas.clear();
    record.removing_replicas.clear();
}

#[allow(clippy::too_many_arguments)]
fn alter_partition(
    image: &mut MetadataImage,
    topic: &str,
    partition: i32,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: &[i32],
) -> Result<Outcome, CommandError> {
    let index = partition_index(image, topic, partition)?;
    let current = &image.topics[topic].assignments[index];
    let tp = format!("{topic}-{partition}");
    if leader == NO_LEADER || leader != current.leader || leader_epoch != current.leader_epoch {
        return Err(CommandError::new(
            ResponseError::FencedLeaderEpoch,
            format!(
                "AlterPartition for {tp} from leader {leader} in epoch {leader_epoch}, but the leader is {} in epoch {}",
                current.leader, current.leader_epoch
            ),
        ));
    }
    if partition_epoch != current.partition_epoch {
        return Err(CommandError::new(
            ResponseError::InvalidUpdateVersion,
            format!(
                "AlterPartition for {tp} is based on partition epoch {partition_epoch}, but it is {}",
                current.partition_epoch
            ),
        ));
    }
    let invalid = |reason: String| {
        CommandError::new(
            ResponseError::InvalidRequest,
            format!("AlterPartition for {tp}: new ISR {new_isr:?} {reason}"),
        )
    };
    if !new_isr.contains(&leader) {
        return Err(invalid(format!("does not contain the leader {leader}")));
    }
    for (i, r) in new_isr.iter().enumerate() {
        if new_isr[..i].contains(r) {
            return Err(invalid(format!("lists broker {r} twice")));
        }
        if !current.replicas.contains(r) {
            return Err(invalid(format!(
                "holds broker {r}, which is not among the replicas {:?}",
                current.replicas
            )));
        }
        if !current.isr.contains(r) && !eligible(&image.brokers, *r) {
            return Err(CommandError::new(
                ResponseError::IneligibleReplica,
                format!("AlterPartition for {tp}: broker {r} cannot join the ISR: it is fenced, shutting down or not registered"),
            ));
        }
    }
    let mut next = current.clone();
    next.isr = in_replica_order(&next.replicas, new_isr);
    // A leader in a controlled shutdown hands over as soon as the ISR has someone who can
    // take over, as Kafka's PartitionChangeBuilder does; otherwise its shutdown would wait
    // for a ControlledShutdown command that was already applied.
    if !eligible(&image.brokers, next.leader) {
        let successor = elect(&image.brokers, &next);
        if successor != NO_LEADER {
            next.leader = successor;
        }
    }
    try_complete_reassignment(&image.brokers, &mut next);
    commit(
        &mut image
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic(topic))?
            .assignments[index],
        next,
    );
    Ok(Outcome::Done)
}

/// Elections that cannot happen are skipped: the command only carries the controller's
/// wish, and the image may have moved on since it was proposed.
fn elect_leaders(image: &mut MetadataImage, partitions: &[(String, i32)], preferred: bool) {
    let brokers = &image.brokers;
    for (topic, partition) in partitions {
        let Some(record) = usize::try_from(*partition)
            .ok()
            .and_then(|i| image.topics.get_mut(topic)?.assignments.get_mut(i))
        else {
            continue;
        };
        let mut next = record.clone();
        if preferred {
            match next.replicas.first() {
                Some(&first) if next.isr.contains(&first) && eligible(brokers, first) => {
                    next.leader = first;
                }
                _ => continue,
            }
        } else if next.leader == NO_LEADER {
            next.leader = elect(brokers, &next);
        }
        commit(record, next);
    }
}

fn reassign(
    image: &mut MetadataImage,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
) -> Result<Outcome, CommandError> {
    let index = partition_index(image, topic, partition)?;
    let current = &image.topics[topic].assignments[index];
    let tp = format!("{topic}-{partition}");
    let mut next = current.clone();
    match target {
        Some(target) => {
            check_replicas(&image.brokers, target, &|| format!("reassignment of {tp}"))?;
            // Against the replicas before any reassignment in progress: an earlier adding
            // replica kept by the new target still has to catch up, one left out is simply
            // dropped (it never held anything the partition relies on).
            let original: Vec<i32> = current
                .replicas
                .iter()
                .copied()
                .filter(|r| !current.adding_replicas.contains(r))
                .collect();
            let removing: Vec<i32> = original
                .iter()
                .copied()
                .filter(|r| !target.contains(r))
                .collect();
            next.adding_replicas = target
                .iter()
                .copied()
                .filter(|r| !original.contains(r))
                .collect();
            next.replicas = target.iter().chain(&removing).copied().collect();
            next.removing_replicas = removing;
        }
        None => {
            if !current.is_reassigning() {
                return Err(CommandError::new(
                    ResponseError::NoReassignmentInProgress,
                    format!("no reassignment of {tp} is in progress"),
                ));
            }
            // The original replica set; its order before the reassignment is not kept
            // (as in Kafka, the target's order wins for the replicas it shares).
            next.replicas
                .retain(|r| !current.adding_replicas.contains(r));
            next.adding_replicas.clear();
            next.removing_replicas.clear();
        }
    }
    next.isr = in_replica_order(&next.replicas, &current.isr);
    if next.isr.is_empty() {
        return Err(CommandError::new(
            ResponseError::InvalidReplicaAssignment,
            format!(
                "{tp}: replicas {:?} would hold none of the in-sync replicas {:?}",
                next.replicas, current.isr
            ),
        ));
    }
    if next.leader != NO_LEADER && !next.replicas.contains(&next.leader) {
        next.leader = elect(&image.brokers, &next);
        if next.leader == NO_LEADER {
            return Err(CommandError::new(
                ResponseError::EligibleLeadersNotAvailable,
                format!(
                    "{tp}: dropping leader {} leaves no eligible in-sync replica to lead",
                    current.leader
                ),
            ));
        }
    }
    try_complete_reassignment(&image.brokers, &mut next);
    commit(
        &mut image
            .topics
            .get_mut(topic)
            .ok_or_else(|| unknown_topic(topic))?
            .assignments[index],
        next,
    );
    Ok(Outcome::Done)
}

#[cfg(test)]
#[path = "image_test.rs"]
mod tests;

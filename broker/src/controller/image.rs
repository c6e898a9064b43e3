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

use std::collections::BTreeMap;

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

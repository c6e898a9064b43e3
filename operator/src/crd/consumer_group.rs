//! `ConsumerGroup`: a Kafka consumer group, observed (state, members, committed offsets and
//! lag per partition) and optionally reset to earliest, latest, a timestamp or explicit
//! offsets once it has no members.
//!
//! ```yaml
//! apiVersion: tributary.dev/v1alpha1
//! kind: ConsumerGroup
//! metadata: { name: payments }
//! spec:
//!   clusterRef: { name: main }
//!   reset: { to: Timestamp, timestamp: "2026-05-01T12:00:00Z", topics: [orders] }
//! ```

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ClusterRef, Condition};

/// The group to observe, and the reset to apply to it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "ConsumerGroup",
    namespaced,
    status = "ConsumerGroupStatus",
    shortname = "tcg",
    category = "tributary",
    doc = "A Kafka consumer group: its state, members and lag, and declarative offset resets",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(name = "Group", type_ = "string", json_path = ".status.groupId"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(name = "Lag", type_ = "integer", json_path = ".status.totalLag"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("has(self.groupId) == has(oldSelf.groupId) && (!has(self.groupId) || self.groupId == oldSelf.groupId)").message("groupId cannot be changed: create another ConsumerGroup"),
    validation = Rule::new("self.clusterRef == oldSelf.clusterRef").message("clusterRef cannot be changed")
)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupSpec {
    /// The `Cluster` whose brokers coordinate the group.
    pub cluster_ref: ClusterRef,
    /// The Kafka `group.id`, when it differs from `metadata.name`. Cannot be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub group_id: Option<String>,
    /// Moves the group's committed offsets, once per change of this field and only while the
    /// group has no members (until then the `ResetPending` condition says why it waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset: Option<OffsetReset>,
    /// Seconds between two refreshes of the status (state, members, lag). Default: the
    /// operator's `--group-refresh-interval` (10 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub refresh_interval_seconds: Option<i32>,
}

/// Where to move a group's committed offsets.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("self.to != 'Timestamp' || has(self.timestamp)").message("reset.to Timestamp needs reset.timestamp, in RFC 3339 (2026-05-01T12:00:00Z)"),
    validation = Rule::new("self.to == 'Timestamp' || !has(self.timestamp)").message("reset.timestamp goes with reset.to Timestamp only"),
    validation = Rule::new("self.to != 'Offsets' || (has(self.offsets) && size(self.offsets) > 0)").message("reset.to Offsets needs reset.offsets: a list of topic, partition and offset"),
    validation = Rule::new("self.to == 'Offsets' || !has(self.offsets) || size(self.offsets) == 0").message("reset.offsets goes with reset.to Offsets only"),
    validation = Rule::new("self.to != 'Offsets' || !has(self.topics) || size(self.topics) == 0").message("reset.topics does not go with reset.to Offsets: the offsets name their topics")
)]
#[serde(rename_all = "camelCase")]
pub struct OffsetReset {
    /// `Earliest` (the log start), `Latest` (the log end), `Timestamp` (the first offset at or
    /// after `timestamp`, else the log end) or `Offsets` (the listed offsets, clamped to the
    /// log's start and end, as `kafka-consumer-groups --reset-offsets` does).
    pub to: ResetTarget,
    /// For `Timestamp`: an RFC 3339 date and time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(r"self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$')").message("reset.timestamp is an RFC 3339 date and time such as 2026-05-01T12:00:00Z"))]
    pub timestamp: Option<String>,
    /// The topics to reset. Empty: every topic the group has committed offsets for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 249), regex(pattern = super::TOPIC_NAME_PATTERN)))]
    pub topics: Vec<String>,
    /// For `Offsets`: the offset of each partition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10000))]
    pub offsets: Vec<PartitionOffset>,
    /// Any string; change it to apply the same reset again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub id: Option<String>,
}

/// What a reset moves the offsets to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ResetTarget {
    /// The log start offset of each partition.
    Earliest,
    /// The log end offset of each partition.
    Latest,
    /// The first offset whose timestamp is at or after `timestamp`.
    Timestamp,
    /// The offsets listed in `offsets`.
    Offsets,
}

/// One partition's offset in an explicit reset.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PartitionOffset {
    /// The topic.
    #[schemars(length(min = 1, max = 249), regex(pattern = super::TOPIC_NAME_PATTERN))]
    pub topic: String,
    /// The partition.
    #[schemars(range(min = 0))]
    pub partition: i32,
    /// The offset the group resumes at.
    #[schemars(range(min = 0))]
    pub offset: i64,
}

/// What the operator last saw of the group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the status below is current, or why not: `ClusterUnreachable`) and, when a
    /// reset is asked for, `ResetPending` (`GroupHasMembers`, `ResetFailed`, or `False` with
    /// `ResetApplied`).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The Kafka `group.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Kafka's group state: `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`
    /// or `Dead` (no such group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// How many members the group has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i32>,
    /// The members and the partitions assigned to each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Per partition with a committed offset: that offset, the log end offset and the lag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets: Vec<PartitionLag>,
    /// The sum of the partitions' lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_lag: Option<i64>,
    /// When the brokers were last asked (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<String>,
    /// The reset last applied, as a fingerprint of `spec.reset`; a reset whose fingerprint
    /// matches is not applied again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_reset: Option<String>,
    /// When that reset was applied (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_reset_time: Option<String>,
}

/// One member of the group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `client.id`.
    pub client_id: String,
    /// The host it connects from.
    pub host: String,
    /// Its `group.instance.id` (static membership), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_instance_id: Option<String>,
    /// Its partitions, as `topic-partition`.
    #[serde(default)]
    pub assignment: Vec<String>,
}

/// One partition's position and lag.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset.
    pub committed_offset: i64,
    /// The partition's log end offset (high watermark), if it could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_end_offset: Option<i64>,
    /// `logEndOffset - committedOffset`, never below 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
}

impl ConsumerGroup {
    /// The Kafka `group.id`: `spec.groupId`, or else `metadata.name`.
    pub fn group_id(&self) -> String {
        self.spec
            .group_id
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

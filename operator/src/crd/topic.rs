//! `Topic`: one Kafka topic of a `Cluster`, created and kept at its spec through the Kafka
//! admin API.
//!
//! ```yaml
//! apiVersion: tributary.dev/v1alpha1
//! kind: Topic
//! metadata: { name: orders }
//! spec:
//!   clusterRef: { name: main }
//!   partitions: 6
//!   replicationFactor: 3
//!   config: { retention.ms: 86400000, cleanup.policy: delete, min.insync.replicas: 2 }
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::{ClusterRef, Condition};

/// The desired state of a Kafka topic.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    shortname = "tt",
    category = "tributary",
    doc = "A Kafka topic of a Tributary (or any Kafka-compatible) cluster",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef.name"),
    printcolumn(name = "Topic", type_ = "string", json_path = ".status.topicName"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".status.partitions"),
    printcolumn(name = "RF", type_ = "integer", json_path = ".status.replicationFactor"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("has(self.spec.topicName) || size(self.metadata.name) <= 249").message("metadata.name is longer than the 249 characters Kafka allows in a topic name: set spec.topicName")
)]
#[x_kube(
    validation = Rule::new("has(self.topicName) == has(oldSelf.topicName) && (!has(self.topicName) || self.topicName == oldSelf.topicName)").message("topicName cannot be changed: Kafka cannot rename a topic"),
    validation = Rule::new("self.clusterRef == oldSelf.clusterRef").message("clusterRef cannot be changed: a topic cannot move to another cluster")
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// The `Cluster` whose brokers hold the topic.
    pub cluster_ref: ClusterRef,
    /// The Kafka topic name, when it differs from `metadata.name` (which Kubernetes restricts
    /// to lower case). Cannot be changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    #[x_kube(validation = Rule::new(super::TOPIC_NAME_RULE).message(super::TOPIC_NAME_MESSAGE))]
    pub topic_name: Option<String>,
    /// Number of partitions. Can be raised, never lowered: Kafka cannot remove partitions.
    #[schemars(range(min = 1, max = 100000))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("partitions cannot be decreased: Kafka cannot remove partitions from a topic"))]
    pub partitions: i32,
    /// Copies of each partition. Omitted: the brokers' `default.replication.factor`. A change
    /// moves replicas by partition reassignment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub replication_factor: Option<i32>,
    /// Topic configs with Kafka's names (`retention.ms`, `cleanup.policy`,
    /// `min.insync.replicas`, `segment.bytes`, ...), as strings, numbers or booleans. Configs
    /// not listed keep the brokers' defaults; a config set on the topic by another tool and
    /// not listed here is removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // No CEL rule on the keys: the API server cannot type values that preserve unknown
    // fields, so a misspelt name is refused by the brokers (`InvalidConfig` in the status).
    #[schemars(extend("maxProperties" = 128))]
    pub config: BTreeMap<String, ConfigValue>,
    /// What deleting the resource does to the Kafka topic: `Delete` (the default) deletes
    /// it, `Retain` leaves it and its data in place.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// What deleting a `Topic` resource does to the topic.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the Kafka topic and its data.
    #[default]
    Delete,
    /// Leave the Kafka topic as it is.
    Retain,
}

/// One topic config value as written in YAML: a string, a number or a boolean. Kafka takes
/// every config as a string, so `86400000`, `"86400000"` and `true` are all fine; a list or
/// an object is reported as `InvalidConfig` in the status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(transparent)]
pub struct ConfigValue(pub serde_json::Value);

impl ConfigValue {
    /// The value as Kafka takes it, or `None` for a list, an object or null.
    pub fn to_kafka(&self) -> Option<String> {
        match &self.0 {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

impl From<&str> for ConfigValue {
    fn from(s: &str) -> Self {
        ConfigValue(serde_json::Value::String(s.to_string()))
    }
}

impl JsonSchema for ConfigValue {
    fn schema_name() -> Cow<'static, str> {
        "ConfigValue".into()
    }

    fn inline_schema() -> bool {
        true
    }

    // A structural schema cannot say "string, number or boolean" (no anyOf of types), so
    // the value is left open here and checked by the operator.
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
    }
}

/// What the operator last saw of the topic.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the topic matches the spec) and `Reconciling` (a change is under way), with
    /// reasons such as `PartitionDecreaseRejected`, `ReplicationFactorTooHigh`,
    /// `ClusterUnreachable`, `InvalidConfig` or `TopicClaimed`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The Kafka topic name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic id the brokers gave the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Partitions the topic has now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Replicas of the topic's first partition now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// Partitions whose in-sync replicas are fewer than their replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub under_replicated_partitions: Option<i32>,
    /// Per partition: leader, replicas and in-sync replicas.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partition_status: Vec<PartitionStatus>,
}

/// One partition as the brokers describe it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStatus {
    /// The partition number.
    pub partition: i32,
    /// The broker that leads it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<i32>,
    /// Its replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Its in-sync replicas.
    pub isr: Vec<i32>,
}

impl Topic {
    /// The Kafka topic name: `spec.topicName`, or else `metadata.name`.
    pub fn kafka_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .unwrap_or_else(|| self.metadata.name.clone().unwrap_or_default())
    }
}

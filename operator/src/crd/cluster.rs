//! `Cluster`: the brokers that `Topic` and `ConsumerGroup` resources refer to.
//!
//! For now a `Cluster` names a Kafka-compatible cluster the operator does not run (Tributary
//! outside Kubernetes, or Apache Kafka) through `spec.external.bootstrapServers`; the
//! operator reports whether it is reachable, its brokers and its controller. Running brokers
//! as a StatefulSet comes with the fields for it.
//!
//! ```yaml
//! apiVersion: tributary.dev/v1alpha1
//! kind: Cluster
//! metadata: { name: main }
//! spec:
//!   external: { bootstrapServers: "kafka-0.example:9092,kafka-1.example:9092" }
//! ```

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// The desired state of a cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "tcl",
    category = "tributary",
    doc = "A Kafka-compatible cluster whose topics and consumer groups this operator manages",
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".spec.external.bootstrapServers"
    ),
    printcolumn(name = "Brokers", type_ = "integer", json_path = ".status.brokerCount"),
    printcolumn(
        name = "Controller",
        type_ = "integer",
        json_path = ".status.controllerId"
    ),
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
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// A cluster that runs outside this operator's care, reached at its bootstrap servers.
    pub external: ExternalCluster,
}

/// Where an external cluster's brokers are.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalCluster {
    /// Comma-separated `host:port` of one or more brokers, as a Kafka client's
    /// `bootstrap.servers`.
    #[x_kube(validation = Rule::new(r"self.matches('^ *([A-Za-z0-9._-]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5}( *, *([A-Za-z0-9._-]+|\\[[0-9A-Fa-f:.]+\\]):[0-9]{1,5})* *$')").message("bootstrapServers is a comma-separated list of host:port, such as kafka-0.kafka:9092,kafka-1.kafka:9092"))]
    #[schemars(length(min = 1, max = 1024))]
    pub bootstrap_servers: String,
}

/// What the operator last saw of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the brokers answer (`ClusterReachable`) or not (`ClusterUnreachable`).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The cluster id the brokers report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The broker that is the active controller, if the brokers name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_id: Option<i32>,
    /// How many brokers the cluster has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_count: Option<i32>,
    /// Its brokers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brokers: Vec<BrokerStatus>,
}

/// One broker of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// `broker.id`.
    pub id: i32,
    /// The host it advertises.
    pub host: String,
    /// The port it advertises.
    pub port: i32,
    /// Its rack, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Whether the controller has fenced it (it stopped heartbeating).
    #[serde(default)]
    pub fenced: bool,
}

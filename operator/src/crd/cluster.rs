//! `Cluster`: the brokers that `Topic` and `ConsumerGroup` resources refer to, in one of two
//! forms (exactly one is set; the API server refuses both or neither):
//!
//! - `spec.external.bootstrapServers`: a Kafka-compatible cluster the operator does not run
//!   (Tributary outside Kubernetes, or Apache Kafka); the operator reports whether it is
//!   reachable, its brokers and its controller.
//! - `spec.brokers` (the managed form): the operator runs that many Tributary brokers as a
//!   StatefulSet, with a ConfigMap, a headless and a bootstrap Service and a
//!   PodDisruptionBudget (built by `crate::resources`), and reports their readiness.
//!
//! ```yaml
//! apiVersion: tributary.dev/v1alpha1
//! kind: Cluster
//! metadata: { name: main }
//! spec:
//!   external: { bootstrapServers: "kafka-0.example:9092,kafka-1.example:9092" }
//! ---
//! apiVersion: tributary.dev/v1alpha1
//! kind: Cluster
//! metadata: { name: events }
//! spec:
//!   brokers: 3
//!   voters: 3
//!   storage: { size: 50Gi, storageClassName: fast-ssd }
//!   config: { log.retention.ms: "604800000" }
//! ```
//!
//! What the API server can check alone is checked there (CEL rules below): the form, the
//! bounds, voters in {1, 3, 5} and at most the broker count, voters and storage unchanged
//! after creation, no operator-owned broker property in `config`. The operator checks the
//! same again (`crate::resources::ManagedCluster::new`) and reports `InvalidSpec` if an
//! object got past admission (a CRD applied without its rules, say).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Broker properties the operator sets for each broker; `spec.config` cannot set them.
pub const OPERATOR_OWNED_KEYS: &[&str] = &[
    "node.id",
    "broker.id",
    "log.dirs",
    "log.dir",
    "listeners",
    "advertised.listeners",
    "controller.quorum.voters",
    "controller.listener",
    "controller.advertised.listener",
    "http.listener",
];

/// Pod labels the operator sets and selects its pods by; `spec.podTemplate.labels` cannot
/// set them.
pub const OPERATOR_OWNED_LABELS: &[&str] = &[
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
];

/// The annotation that makes the operator reach a managed cluster's brokers at other
/// addresses than its bootstrap Service (`host:port,...`): for an operator running outside
/// the Kubernetes network, such as in tests.
pub const BOOTSTRAP_OVERRIDE_ANNOTATION: &str = "tributary.dev/bootstrap-override";

/// Default Kafka listener port.
pub const DEFAULT_KAFKA_PORT: i32 = 9092;
/// Default gRPC (Raft, controller, replication) port: the broker's own
/// `DEFAULT_CONTROLLER_PORT` (`controller.listener` of a non-voter), so every broker of a
/// managed cluster, voter or not, listens where the broker expects.
pub const DEFAULT_CONTROLLER_PORT: i32 = 9093;
/// Default HTTP port of `/healthz`, `/readyz` and `/metrics` (`http.listener`).
pub const DEFAULT_HTTP_PORT: i32 = 9644;
/// Default volume size of each broker.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";

/// The desired state of a cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "tributary.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "tcl",
    category = "tributary",
    doc = "A Kafka-compatible cluster whose topics and consumer groups this operator manages: external (reached at its bootstrap servers) or managed (Tributary brokers the operator runs as a StatefulSet)",
    printcolumn(
        name = "Bootstrap",
        type_ = "string",
        json_path = ".status.bootstrapServers"
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
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("!has(self.spec.brokers) || (size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))").message("a managed Cluster's name is at most 52 characters of lower-case letters, digits and '-', starting with a letter: its Services and pods are named after it")
)]
#[x_kube(
    validation = Rule::new("has(self.external) != has(self.brokers)").message("set exactly one of external (brokers the operator does not run, at their bootstrapServers) and brokers (the number of brokers the operator runs)"),
    validation = Rule::new("has(self.brokers) || !(has(self.voters) || has(self.image) || has(self.imagePullPolicy) || has(self.storage) || has(self.resources) || has(self.config) || has(self.podTemplate) || has(self.listeners))").message("voters, image, imagePullPolicy, storage, resources, config, podTemplate and listeners describe brokers the operator runs: they go with brokers, not with external"),
    validation = Rule::new("!has(self.brokers) || !has(self.voters) || self.voters <= self.brokers").message("voters cannot exceed brokers: the voters are the brokers of pods 0 to voters-1"),
    validation = Rule::new("has(self.external) == has(oldSelf.external)").message("a Cluster cannot switch between external and managed (brokers): create another Cluster"),
    validation = Rule::new("!has(self.brokers) || !has(oldSelf.brokers) || (has(self.voters) ? self.voters : (self.brokers >= 3 ? 3 : 1)) == (has(oldSelf.voters) ? oldSelf.voters : (oldSelf.brokers >= 3 ? 3 : 1))").message("voters cannot be changed after creation (unset, it is 3 with 3 or more brokers and 1 otherwise, so brokers cannot cross 3 then): the metadata quorum is formed once"),
    validation = Rule::new("has(self.storage) == has(oldSelf.storage)").message("storage cannot be changed after creation: a StatefulSet's volume claim templates are immutable"),
    validation = Rule::new("(has(self.listeners) ? self.listeners.controllerPort : 9093) == (has(oldSelf.listeners) ? oldSelf.listeners.controllerPort : 9093)").message("listeners.controllerPort cannot be changed after creation: it is part of every voter's address in the metadata quorum")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// A cluster that runs outside this operator's care, reached at its bootstrap servers.
    /// Exclusive with `brokers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalCluster>,
    /// Managed form: how many Tributary brokers the operator runs (pods `<name>-0` to
    /// `<name>-<brokers-1>`, broker ids their ordinals). Exclusive with `external`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub brokers: Option<i32>,
    /// Voters of the metadata quorum: the brokers of pods 0 to voters-1; the others join as
    /// non-voters. 1, 3 or 5, at most `brokers`. Default: 3 with 3 or more brokers, else 1.
    /// Cannot be changed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("self == 1 || self == 3 || self == 5").message("voters is 1, 3 or 5: a majority of 2 is 2 and of 4 is 3, so such quorums tolerate no more failed voters than 1 or 3"),
        validation = Rule::new("self == oldSelf").message("voters cannot be changed after creation: the metadata quorum is formed once")
    )]
    pub voters: Option<i32>,
    /// The broker image. Default: `ghcr.io/tributary-dev/tributary:<operator version>`, the
    /// broker release of the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// When the kubelet pulls the image. Default: Kubernetes' (`Always` for `:latest`, else
    /// `IfNotPresent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,
    /// Each broker's data volume (a PersistentVolumeClaim per pod). Cannot be changed after
    /// creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storage cannot be changed after creation: a StatefulSet's volume claim templates are immutable"))]
    pub storage: Option<Storage>,
    /// CPU and memory of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Broker properties with Kafka's names (`log.retention.ms`, `num.partitions`, ...), as
    /// strings. The operator owns the listeners, `log.dirs`, `node.id` and the quorum;
    /// `default.replication.factor`, `min.insync.replicas` and
    /// `offsets.topic.replication.factor` have defaults that follow the broker count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    // One rule per key (a lookup, constant cost) rather than one over the map's keys, whose
    // length the API server cannot bound; `OPERATOR_OWNED_KEYS` lists the same keys.
    #[x_kube(
        validation = Rule::new("!('node.id' in self)").message("config cannot set node.id: the operator sets it for each broker"),
        validation = Rule::new("!('broker.id' in self)").message("config cannot set broker.id: the operator sets it for each broker"),
        validation = Rule::new("!('log.dirs' in self)").message("config cannot set log.dirs: the operator sets it for each broker"),
        validation = Rule::new("!('log.dir' in self)").message("config cannot set log.dir: the operator sets it for each broker"),
        validation = Rule::new("!('listeners' in self)").message("config cannot set listeners: the operator sets it for each broker"),
        validation = Rule::new("!('advertised.listeners' in self)").message("config cannot set advertised.listeners: the operator sets it for each broker"),
        validation = Rule::new("!('controller.quorum.voters' in self)").message("config cannot set controller.quorum.voters: the operator sets it for each broker"),
        validation = Rule::new("!('controller.listener' in self)").message("config cannot set controller.listener: the operator sets it for each broker"),
        validation = Rule::new("!('controller.advertised.listener' in self)").message("config cannot set controller.advertised.listener: the operator sets it for each broker"),
        validation = Rule::new("!('http.listener' in self)").message("config cannot set http.listener: the operator sets it for each broker")
    )]
    pub config: BTreeMap<String, String>,
    /// What the broker pods get besides what the operator sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<PodTemplate>,
    /// The brokers' ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Listeners>,
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

/// `imagePullPolicy` of the broker container.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ImagePullPolicy::Always => "Always",
            ImagePullPolicy::IfNotPresent => "IfNotPresent",
            ImagePullPolicy::Never => "Never",
        }
    }
}

/// Each broker's PersistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// Volume size, a Kubernetes quantity such as `10Gi`.
    #[serde(default = "default_storage_size")]
    #[schemars(default = "default_storage_size", length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("storage.size is a positive Kubernetes quantity such as 10Gi"))]
    pub size: String,
    /// The StorageClass of the claims. Default: the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    DEFAULT_STORAGE_SIZE.to_string()
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// What the broker pods get besides what the operator sets. Labels and annotations are
/// added to the operator's own, which win on a clash (a label the operator selects by is
/// refused here).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Node and pod affinity of the broker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the broker pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// How the broker pods spread across zones or nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Annotations added to the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub annotations: BTreeMap<String, String>,
    /// Labels added to the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(
        validation = Rule::new("!('app.kubernetes.io/name' in self)").message("podTemplate.labels cannot set app.kubernetes.io/name: the operator selects its pods by it"),
        validation = Rule::new("!('app.kubernetes.io/instance' in self)").message("podTemplate.labels cannot set app.kubernetes.io/instance: the operator selects its pods by it"),
        validation = Rule::new("!('app.kubernetes.io/component' in self)").message("podTemplate.labels cannot set app.kubernetes.io/component: the operator selects its pods by it"),
        validation = Rule::new("!('app.kubernetes.io/managed-by' in self)").message("podTemplate.labels cannot set app.kubernetes.io/managed-by: the operator selects its pods by it")
    )]
    pub labels: BTreeMap<String, String>,
    /// The pods' node selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub node_selector: BTreeMap<String, String>,
    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

/// The brokers' ports; each listens on every interface of its pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("self.kafkaPort != self.controllerPort && self.kafkaPort != self.httpPort && self.controllerPort != self.httpPort").message("listeners.kafkaPort, controllerPort and httpPort must differ")
)]
#[serde(rename_all = "camelCase")]
pub struct Listeners {
    /// The Kafka protocol (`listeners`), also the bootstrap Service's port.
    #[serde(default = "default_kafka_port")]
    #[schemars(default = "default_kafka_port", range(min = 1, max = 65535))]
    pub kafka_port: i32,
    /// gRPC between brokers: Raft, controller requests, replication
    /// (`controller.listener`). Cannot be changed after creation.
    #[serde(default = "default_controller_port")]
    #[schemars(default = "default_controller_port", range(min = 1, max = 65535))]
    pub controller_port: i32,
    /// HTTP: `/healthz`, `/readyz` (the probes) and `/metrics` (`http.listener`).
    #[serde(default = "default_http_port")]
    #[schemars(default = "default_http_port", range(min = 1, max = 65535))]
    pub http_port: i32,
}

fn default_kafka_port() -> i32 {
    DEFAULT_KAFKA_PORT
}

fn default_controller_port() -> i32 {
    DEFAULT_CONTROLLER_PORT
}

fn default_http_port() -> i32 {
    DEFAULT_HTTP_PORT
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            kafka_port: DEFAULT_KAFKA_PORT,
            controller_port: DEFAULT_CONTROLLER_PORT,
            http_port: DEFAULT_HTTP_PORT,
        }
    }
}

impl ClusterSpec {
    /// An external cluster's spec.
    pub fn external(bootstrap_servers: impl Into<String>) -> Self {
        ClusterSpec {
            external: Some(ExternalCluster {
                bootstrap_servers: bootstrap_servers.into(),
            }),
            ..ClusterSpec::default()
        }
    }

    /// A managed cluster's spec with `brokers` brokers and every other field at its default.
    pub fn managed(brokers: i32) -> Self {
        ClusterSpec {
            brokers: Some(brokers),
            ..ClusterSpec::default()
        }
    }
}

impl Cluster {
    /// Where Kafka clients (the operator's admin client among them) reach the brokers:
    /// `spec.external.bootstrapServers`; for a managed cluster the
    /// [`BOOTSTRAP_OVERRIDE_ANNOTATION`] if set, else its bootstrap Service,
    /// `<name>-bootstrap.<namespace>.svc:<kafkaPort>`.
    pub fn bootstrap_servers(&self) -> String {
        if let Some(external) = &self.spec.external {
            return external.bootstrap_servers.clone();
        }
        if let Some(address) = self.bootstrap_override() {
            return address;
        }
        self.service_bootstrap_servers()
    }

    /// The bootstrap Service's address of a managed cluster (what `status.bootstrapServers`
    /// says); for an external cluster its bootstrap servers.
    pub fn service_bootstrap_servers(&self) -> String {
        if let Some(external) = &self.spec.external {
            return external.bootstrap_servers.clone();
        }
        let name = self.metadata.name.as_deref().unwrap_or_default();
        let namespace = self.metadata.namespace.as_deref().unwrap_or("default");
        let port = self.spec.listeners.unwrap_or_default().kafka_port;
        format!("{name}-bootstrap.{namespace}.svc:{port}")
    }

    /// The [`BOOTSTRAP_OVERRIDE_ANNOTATION`] of a managed cluster, when set and not blank.
    pub fn bootstrap_override(&self) -> Option<String> {
        self.spec.brokers?;
        self.metadata
            .annotations
            .as_ref()?
            .get(BOOTSTRAP_OVERRIDE_ANNOTATION)
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
    }

    /// Whether the operator runs this cluster's brokers.
    pub fn is_managed(&self) -> bool {
        self.spec.brokers.is_some()
    }
}

/// What the operator last saw of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: external, the brokers answer (`ClusterReachable`) or not
    /// (`ClusterUnreachable`); managed, every broker pod is ready and the brokers answer
    /// (`BrokersReady`), or not yet (`BrokersStarting`, `ClusterUnreachable`), or the spec
    /// cannot be run (`InvalidSpec`). `Reconciling` (managed): the brokers are not all
    /// ready yet.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Where clients reach the brokers: the external bootstrap servers, or the managed
    /// cluster's bootstrap Service (`<name>-bootstrap.<namespace>.svc:<kafkaPort>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// Managed: the broker pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_brokers: Option<i32>,
    /// Managed: the ids of the brokers whose pods are ready (a pod's ordinal is its broker
    /// id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_ids: Vec<i32>,
    /// The cluster id the brokers report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The broker that is the active controller, if the brokers name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_id: Option<i32>,
    /// How many brokers the cluster reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_count: Option<i32>,
    /// The brokers the cluster reports.
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

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    /// The CEL rules of the schema at `path` (property names from the spec down).
    fn rules(path: &[&str]) -> Vec<String> {
        let crd = serde_json::to_value(Cluster::crd()).expect("CRD serializes");
        let mut schema =
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        for p in path {
            schema = &schema["properties"][p];
        }
        schema["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["rule"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn every_operator_owned_key_and_label_has_its_admission_rule() {
        let config = rules(&["config"]);
        for key in OPERATOR_OWNED_KEYS {
            assert!(
                config.contains(&format!("!('{key}' in self)")),
                "{key}: {config:?}"
            );
        }
        assert_eq!(config.len(), OPERATOR_OWNED_KEYS.len());
        let labels = rules(&["podTemplate", "labels"]);
        for label in OPERATOR_OWNED_LABELS {
            assert!(
                labels.contains(&format!("!('{label}' in self)")),
                "{label}: {labels:?}"
            );
        }
        assert_eq!(labels.len(), OPERATOR_OWNED_LABELS.len());
    }

    #[test]
    fn bootstrap_is_external_override_or_service() {
        let mut external = Cluster::new("main", ClusterSpec::external("k:9092"));
        external.metadata.namespace = Some("ns".into());
        external.metadata.annotations = Some(BTreeMap::from([(
            BOOTSTRAP_OVERRIDE_ANNOTATION.to_string(),
            "127.0.0.1:1".to_string(),
        )]));
        assert_eq!(external.bootstrap_servers(), "k:9092");

        let mut managed = Cluster::new("main", ClusterSpec::managed(3));
        managed.metadata.namespace = Some("ns".into());
        assert_eq!(managed.bootstrap_servers(), "main-bootstrap.ns.svc:9092");
        managed.metadata.annotations = Some(BTreeMap::from([(
            BOOTSTRAP_OVERRIDE_ANNOTATION.to_string(),
            " 127.0.0.1:1,127.0.0.1:2 ".to_string(),
        )]));
        assert_eq!(managed.bootstrap_servers(), "127.0.0.1:1,127.0.0.1:2");
        assert_eq!(
            managed.service_bootstrap_servers(),
            "main-bootstrap.ns.svc:9092"
        );
    }
}

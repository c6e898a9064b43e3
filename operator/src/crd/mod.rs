//! The custom resources: `Cluster`, `Topic` and `ConsumerGroup` in API group
//! [`GROUP`], version `v1alpha1`, all namespaced, all in the `tributary` category.
//!
//! The types are plain serde structs; `CustomResource` and `KubeSchema` derive the CRDs
//! (OpenAPI schema plus CEL rules in `x-kubernetes-validations`) that `crdgen` writes to
//! `crds/`. What the API server can check on its own (ranges, Kafka's topic-name rules,
//! a partition count that never goes down, a reset target that is well formed) is checked
//! there, at admission, so a bad spec never reaches the operator.

// `printcolumn(...)` and `validation = ...` repeat keys inside kube's derive attributes, which
// clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod cluster;
pub mod condition;
pub mod consumer_group;
pub mod topic;

pub use cluster::{Cluster, ClusterSpec, ClusterStatus};
pub use condition::Condition;
pub use consumer_group::{ConsumerGroup, ConsumerGroupSpec, ConsumerGroupStatus};
pub use topic::{Topic, TopicSpec, TopicStatus};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every Tributary resource.
pub const GROUP: &str = "tributary.dev";
/// The version every resource is served and stored at.
pub const VERSION: &str = "v1alpha1";

/// A reference to the `Cluster` resource, in the same namespace, whose brokers hold a topic or
/// a group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Name of a `Cluster` in this resource's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The CEL rule that a Kafka topic name satisfies: Kafka's `Topic.validate` (1 to 249
/// characters of ASCII letters, digits, `.`, `_` and `-`, and neither `.` nor `..`).
pub const TOPIC_NAME_RULE: &str =
    "size(self) <= 249 && self.matches('^[a-zA-Z0-9._-]+$') && self != '.' && self != '..'";
/// [`TOPIC_NAME_RULE`] as an OpenAPI `pattern` (RE2 has no look-ahead, hence the three
/// branches that keep out `.` and `..`), for lists, where a CEL rule per item would exceed
/// the API server's cost budget.
pub const TOPIC_NAME_PATTERN: &str =
    r"^([a-zA-Z0-9_-][a-zA-Z0-9._-]*|\.[a-zA-Z0-9_-][a-zA-Z0-9._-]*|\.\.[a-zA-Z0-9._-]+)$";
/// The message that goes with [`TOPIC_NAME_RULE`].
pub const TOPIC_NAME_MESSAGE: &str = "a Kafka topic name is 1 to 249 characters of ASCII letters, digits, '.', '_' and '-', and is neither '.' nor '..'";

/// Every CRD as `(file name, YAML)`: `<plural>.<group>.yaml`, the layout of `crds/`.
pub fn crd_files() -> Result<Vec<(String, String)>, serde_saphyr::SerializeError> {
    use kube::CustomResourceExt;
    [Cluster::crd(), Topic::crd(), ConsumerGroup::crd()]
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            Ok((name, serde_saphyr::to_string(&crd)?))
        })
        .collect()
}

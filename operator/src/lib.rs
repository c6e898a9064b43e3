//! The Tributary operator: Kubernetes resources in; broker StatefulSets, Kafka topics and
//! group state out.
//!
//! ```text
//! crd/         the resources (Cluster, Topic, ConsumerGroup) and their CRD schemas
//! plan/        pure planning: spec + what the brokers report -> what to change
//! resources/   pure desired-state builders of a managed Cluster's Kubernetes objects
//!              (ConfigMap, Services, StatefulSet, PodDisruptionBudget)
//! controller/  one kube-runtime controller per resource: read, plan, act, write status
//! ```
//!
//! Each controller is a thin async shell around a pure planner, so the decisions are unit
//! tested without an API server or brokers, and the shell is tested against a real
//! kube-apiserver with real brokers behind it (`operator/tests/`).

pub mod controller;
pub mod crd;
pub mod leader;
pub mod plan;
pub mod resources;
pub mod telemetry;

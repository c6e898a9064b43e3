//! Pure desired-state builders for a managed `Cluster`: Cluster in, Kubernetes objects out,
//! no I/O, so every field that matters is unit tested here and the controller only applies
//! what these return.
//!
//! ```text
//! Cluster ──ManagedCluster::new──> ManagedCluster (spec checked, defaults resolved, names)
//!                                     │
//!   broker_config::render ───────────>├─> broker.properties (stable order) ──sha256──┐
//!   configmap::config_map ───────────>├─> ConfigMap   <name>-config                   │
//!   services::headless_service ──────>├─> Service     <name>-brokers (headless)       │
//!   services::bootstrap_service ─────>├─> Service     <name>-bootstrap (ClusterIP)    │
//!   statefulset::stateful_set ───────>├─> StatefulSet <name>  (pod template annotated ◄┘
//!   pdb::pod_disruption_budget ──────>└─> PodDisruptionBudget <name>   with the hash)
//! ```
//!
//! One module per object kind; this one holds what they share: the resolved spec
//! ([`ManagedCluster`]), the names, the labels and the owner reference. Every object carries
//! the four `app.kubernetes.io` labels and an owner reference to the Cluster with
//! `controller: true`, so kube-controller-manager's garbage collector deletes them with it
//! (`blockOwnerDeletion` is left unset: setting it needs the `clusters/finalizers` update
//! right under the `OwnerReferencesPermissionEnforcement` admission plugin, and nothing here
//! uses foreground deletion).

pub mod broker_config;
pub mod configmap;
pub mod pdb;
pub mod services;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::crd::cluster::{
    Cluster, ImagePullPolicy, Listeners, PodTemplate, Storage, OPERATOR_OWNED_KEYS,
    OPERATOR_OWNED_LABELS,
};

/// The image repository of the broker; the default tag is the operator's own version.
pub const DEFAULT_IMAGE_REPOSITORY: &str = "ghcr.io/tributary-dev/tributary";

/// The longest name of a managed Cluster: the StatefulSet's pods carry a
/// `controller-revision-hash` label of the name plus 11 characters, and a label value has
/// at most 63.
pub const MAX_NAME_LEN: usize = 52;

/// The operator's value of `app.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "tributary-operator";

/// Why a managed spec cannot be run: reported as `Ready=False`, reason `InvalidSpec`. The
/// API server refuses these at admission already; this is the operator's own check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// A managed Cluster with its spec checked and its defaults resolved: what every builder
/// reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedCluster {
    /// `metadata.name`: the StatefulSet's name and the prefix of every other object's.
    pub name: String,
    pub namespace: String,
    /// The controller owner reference every object carries.
    pub owner: OwnerReference,
    pub brokers: i32,
    /// Brokers 0..voters-1 form the metadata quorum.
    pub voters: i32,
    pub image: String,
    pub image_pull_policy: Option<ImagePullPolicy>,
    pub listeners: Listeners,
    pub storage: Storage,
    pub resources: Option<ResourceRequirements>,
    /// `spec.config`, the user's broker properties.
    pub config: BTreeMap<String, String>,
    pub pod_template: PodTemplate,
}

impl ManagedCluster {
    /// The same cluster with `replicas` brokers: what the StatefulSet runs while a
    /// scale-down is under way or refused (`replicas` above `brokers`).
    pub fn running(&self, replicas: i32) -> ManagedCluster {
        ManagedCluster {
            brokers: replicas,
            ..self.clone()
        }
    }

    /// Checks a managed Cluster's spec and resolves its defaults. `Ok(None)` for an external
    /// cluster.
    pub fn new(cluster: &Cluster) -> Result<Option<ManagedCluster>, InvalidSpec> {
        let spec = &cluster.spec;
        let Some(brokers) = spec.brokers else {
            return Ok(None);
        };
        let bad = |message: String| Err(InvalidSpec(message));
        if spec.external.is_some() {
            return bad("set exactly one of external and brokers".into());
        }
        let name = cluster.metadata.name.clone().unwrap_or_default();
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return bad(format!(
                "a managed Cluster's name is 1 to {MAX_NAME_LEN} characters (the StatefulSet's pods are named after it); {name:?} has {}",
                name.len()
            ));
        }
        let Some(namespace) = cluster.metadata.namespace.clone() else {
            return bad(format!("Cluster {name} has no namespace"));
        };
        let Some(uid) = cluster.metadata.uid.clone() else {
            return bad(format!(
                "Cluster {name} has no uid (it does not come from the API server)"
            ));
        };
        if !(1..=64).contains(&brokers) {
            return bad(format!("brokers is 1 to 64, not {brokers}"));
        }
        let voters = spec.voters.unwrap_or(default_voters(brokers));
        if ![1, 3, 5].contains(&voters) {
            return bad(format!("voters is 1, 3 or 5, not {voters}"));
        }
        if voters > brokers {
            return bad(format!(
                "voters ({voters}) cannot exceed brokers ({brokers})"
            ));
        }
        let owned: Vec<&str> = OPERATOR_OWNED_KEYS
            .iter()
            .copied()
            .filter(|k| spec.config.contains_key(*k))
            .collect();
        if !owned.is_empty() {
            return bad(format!(
                "config cannot set broker properties the operator sets for each broker: {}",
                owned.join(", ")
            ));
        }
        for (key, value) in &spec.config {
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            {
                return bad(format!(
                    "config key {key:?} is not a broker property name (letters, digits, '.', '_', '-')"
                ));
            }
            if value.contains(['\n', '\r']) {
                return bad(format!("config value of {key} spans several lines"));
            }
        }
        let listeners = spec.listeners.unwrap_or_default();
        let ports = [
            listeners.kafka_port,
            listeners.controller_port,
            listeners.http_port,
        ];
        if ports.iter().any(|p| !(1..=65535).contains(p))
            || ports[0] == ports[1]
            || ports[0] == ports[2]
            || ports[1] == ports[2]
        {
            return bad(format!(
                "listeners.kafkaPort, controllerPort and httpPort are distinct ports from 1 to 65535, not {ports:?}"
            ));
        }
        let pod_template = spec.pod_template.clone().unwrap_or_default();
        if let Some(label) = OPERATOR_OWNED_LABELS
            .iter()
            .find(|l| pod_template.labels.contains_key(**l))
        {
            return bad(format!(
                "podTemplate.labels cannot set {label}: the operator selects its pods by it"
            ));
        }
        let owner = OwnerReference {
            api_version: Cluster::api_version(&()).into_owned(),
            kind: Cluster::kind(&()).into_owned(),
            name: name.clone(),
            uid,
            controller: Some(true),
            block_owner_deletion: None,
        };
        Ok(Some(ManagedCluster {
            name,
            namespace,
            owner,
            brokers,
            voters,
            image: spec.image.clone().unwrap_or_else(default_image),
            image_pull_policy: spec.image_pull_policy,
            listeners,
            storage: spec.storage.clone().unwrap_or_default(),
            resources: spec.resources.clone(),
            config: spec.config.clone(),
            pod_template,
        }))
    }

    /// The ConfigMap holding `broker.properties`.
    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }

    /// The headless Service that gives each pod its DNS name.
    pub fn headless_service_name(&self) -> String {
        format!("{}-brokers", self.name)
    }

    /// The ClusterIP Service clients bootstrap from.
    pub fn bootstrap_service_name(&self) -> String {
        format!("{}-bootstrap", self.name)
    }

    /// The StatefulSet (and the PodDisruptionBudget).
    pub fn stateful_set_name(&self) -> String {
        self.name.clone()
    }

    /// The stable DNS name of the pod of broker `id`:
    /// `<name>-<id>.<name>-brokers.<namespace>.svc`.
    pub fn pod_host(&self, id: i32) -> String {
        format!(
            "{}-{id}.{}.{}.svc",
            self.name,
            self.headless_service_name(),
            self.namespace
        )
    }

    /// The bootstrap Service's `host:port`.
    pub fn bootstrap_servers(&self) -> String {
        format!(
            "{}.{}.svc:{}",
            self.bootstrap_service_name(),
            self.namespace,
            self.listeners.kafka_port
        )
    }

    /// The labels the operator selects its pods by.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        [
            ("app.kubernetes.io/name", "tributary"),
            ("app.kubernetes.io/instance", self.name.as_str()),
            ("app.kubernetes.io/component", "broker"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The labels of every object: the selector labels and `managed-by`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/managed-by".into(), MANAGED_BY.into());
        labels
    }

    /// `selector_labels` as a label selector string, for listing the pods.
    pub fn selector(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Metadata of an owned object named `name`.
    pub fn metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// `voters` when unset: 3 with 3 or more brokers, else 1 (the CRD's transition rule repeats
/// this).
pub fn default_voters(brokers: i32) -> i32 {
    if brokers >= 3 {
        3
    } else {
        1
    }
}

/// The broker image when `spec.image` is unset: the release of the operator's version.
pub fn default_image() -> String {
    format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"))
}

/// Lower-case hex SHA-256 of `parts`, each followed by a NUL byte so that moving text from
/// one part to the next changes the hash.
pub fn sha256_hex(parts: &[&str]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::cluster::ClusterSpec;

    /// A managed Cluster as the API server returns it: namespace and uid set.
    pub fn cluster(name: &str, spec: ClusterSpec) -> Cluster {
        let mut cluster = Cluster::new(name, spec);
        cluster.metadata.namespace = Some("team-a".into());
        cluster.metadata.uid = Some("0f1e2d3c-uid".into());
        cluster.metadata.generation = Some(1);
        cluster
    }

    pub fn managed(spec: ClusterSpec) -> ManagedCluster {
        ManagedCluster::new(&cluster("main", spec))
            .expect("valid spec")
            .expect("managed")
    }

    fn invalid(spec: ClusterSpec) -> String {
        ManagedCluster::new(&cluster("main", spec))
            .expect_err("invalid spec")
            .0
    }

    #[test]
    fn external_clusters_have_no_managed_form() {
        assert_eq!(
            ManagedCluster::new(&cluster("main", ClusterSpec::external("k:9092"))),
            Ok(None)
        );
    }

    #[test]
    fn defaults_are_resolved() {
        let m = managed(ClusterSpec::managed(3));
        assert_eq!(m.voters, 3);
        assert_eq!(
            m.image,
            format!(
                "ghcr.io/tributary-dev/tributary:{}",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(m.listeners, Listeners::default());
        assert_eq!(
            (
                m.listeners.kafka_port,
                m.listeners.controller_port,
                m.listeners.http_port
            ),
            (9092, 9093, 9644)
        );
        assert_eq!(m.storage.size, "10Gi");
        assert_eq!(managed(ClusterSpec::managed(1)).voters, 1);
        assert_eq!(managed(ClusterSpec::managed(2)).voters, 1);
        assert_eq!(managed(ClusterSpec::managed(7)).voters, 3);
    }

    #[test]
    fn names_and_dns() {
        let m = managed(ClusterSpec::managed(3));
        assert_eq!(m.config_map_name(), "main-config");
        assert_eq!(m.headless_service_name(), "main-brokers");
        assert_eq!(m.bootstrap_service_name(), "main-bootstrap");
        assert_eq!(m.stateful_set_name(), "main");
        assert_eq!(m.pod_host(2), "main-2.main-brokers.team-a.svc");
        assert_eq!(m.bootstrap_servers(), "main-bootstrap.team-a.svc:9092");
    }

    #[test]
    fn labels_and_owner_reference() {
        let m = managed(ClusterSpec::managed(3));
        let meta = m.metadata("x".into());
        let labels = meta.labels.expect("labels");
        assert_eq!(labels["app.kubernetes.io/name"], "tributary");
        assert_eq!(labels["app.kubernetes.io/instance"], "main");
        assert_eq!(labels["app.kubernetes.io/component"], "broker");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "tributary-operator");
        assert_eq!(labels.len(), 4);
        let owners = meta.owner_references.expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].api_version, "tributary.dev/v1alpha1");
        assert_eq!(owners[0].kind, "Cluster");
        assert_eq!(owners[0].name, "main");
        assert_eq!(owners[0].uid, "0f1e2d3c-uid");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            m.selector(),
            "app.kubernetes.io/component=broker,app.kubernetes.io/instance=main,app.kubernetes.io/name=tributary"
        );
    }

    #[test]
    fn invalid_specs_are_named() {
        let spec = |f: fn(&mut ClusterSpec)| {
            let mut s = ClusterSpec::managed(3);
            f(&mut s);
            s
        };
        assert!(invalid(spec(|s| s.voters = Some(2))).contains("voters is 1, 3 or 5"));
        assert!(invalid(spec(|s| s.voters = Some(5))).contains("cannot exceed brokers"));
        assert!(invalid(spec(|s| s.brokers = Some(65))).contains("brokers is 1 to 64"));
        assert!(invalid(spec(|s| {
            s.config.insert("node.id".into(), "7".into());
            s.config.insert("log.dirs".into(), "/x".into());
        }))
        .contains("node.id, log.dirs"));
        assert!(invalid(spec(|s| {
            s.config.insert("bad key=1".into(), "7".into());
        }))
        .contains("not a broker property name"));
        assert!(invalid(spec(|s| {
            s.config
                .insert("log.retention.ms".into(), "1\nnode.id=4".into());
        }))
        .contains("several lines"));
        assert!(invalid(spec(|s| {
            s.listeners = Some(Listeners {
                kafka_port: 9092,
                controller_port: 9092,
                http_port: 9644,
            })
        }))
        .contains("distinct ports"));
        assert!(invalid(spec(|s| {
            let mut t = PodTemplate::default();
            t.labels
                .insert("app.kubernetes.io/instance".into(), "other".into());
            s.pod_template = Some(t);
        }))
        .contains("app.kubernetes.io/instance"));
        assert!(
            invalid(spec(|s| s.external = ClusterSpec::external("k:1").external))
                .contains("exactly one")
        );
        let long = ManagedCluster::new(&cluster(&"a".repeat(53), ClusterSpec::managed(1)))
            .expect_err("too long");
        assert!(long.0.contains("1 to 52 characters"));
    }

    #[test]
    fn hash_depends_on_every_part_and_their_boundaries() {
        let a = sha256_hex(&["ab", "c"]);
        assert_eq!(a.len(), 64);
        assert_eq!(a, sha256_hex(&["ab", "c"]));
        assert_ne!(a, sha256_hex(&["a", "bc"]));
        assert_ne!(a, sha256_hex(&["ab", "d"]));
    }
}

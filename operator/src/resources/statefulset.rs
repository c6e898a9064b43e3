//! The StatefulSet `<name>`: one pod per broker, `<name>-0` to `<name>-<brokers-1>`, whose
//! ordinal is its broker id.
//!
//! - `podManagementPolicy: Parallel`: every broker starts at once; with `OrderedReady`
//!   pod 1 would wait for pod 0 to be ready, which it cannot be before a quorum exists.
//! - `updateStrategy: OnDelete`: a changed pod template restarts nothing by itself; the
//!   operator will choose the restart order (non-voters first, the active controller last).
//!   The template's [`CONFIG_HASH_ANNOTATION`] (SHA-256 of `broker.properties` and the
//!   image) tells which pods run an outdated configuration.
//! - A PersistentVolumeClaim `data-<name>-<i>` per broker from the `data` template, kept
//!   when the Cluster is deleted or scaled down (Kubernetes' `Retain`): data is never
//!   deleted implicitly.
//! - The container runs `/usr/local/bin/tributary broker --config /etc/tributary/broker.properties
//!   -o advertised.listeners=PLAINTEXT://$(POD_NAME).<headless>:<port>
//!   -o controller.advertised.listener=$(POD_NAME).<headless>:<port>`; the kubelet expands
//!   `$(POD_NAME)` from the container's environment (the downward API's `metadata.name`).
//!   The broker id is `TRIBUTARY_NODE_ID`, from the pod's `apps.kubernetes.io/pod-index`
//!   label (set by the StatefulSet controller): the broker reads `TRIBUTARY_*` variables as
//!   settings, and the pod's host name is not needed.
//! - Probes on the broker's HTTP listener: readiness `/readyz`, liveness `/healthz`, and a
//!   startup probe on `/healthz` allowing 10 minutes (log recovery after a crash) before
//!   liveness counts.
//! - Non-root, read-only root file system, no capabilities, RuntimeDefault seccomp, no
//!   ServiceAccount token (brokers do not call the API server); `/tmp` is an `emptyDir`.
//! - `spec.podTemplate` adds affinity, tolerations, spread constraints, node selector,
//!   priority class, labels and annotations; the operator's labels and annotations win.
//!   Without an affinity, brokers prefer distinct nodes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecurityContext, Volume, VolumeMount,
    VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::broker_config::{
    render, termination_grace_period_seconds, CONFIG_DIR, CONFIG_FILE, DATA_MOUNT,
};
use super::services::{CONTROLLER_PORT_NAME, HTTP_PORT_NAME, KAFKA_PORT_NAME};
use super::{sha256_hex, ManagedCluster};

/// The pod template annotation with the SHA-256 of `broker.properties` and the image: a pod
/// whose value differs from the StatefulSet's runs an outdated configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "tributary.dev/config-hash";
/// The broker binary in the image (`docker/broker.Dockerfile` installs it there).
pub const BROKER_BINARY: &str = "/usr/local/bin/tributary";
/// The broker container's name.
pub const CONTAINER: &str = "broker";
/// The volume claim template (and volume) name of the broker's data.
pub const DATA_VOLUME: &str = "data";
/// The user and group the broker runs as (distroless `nonroot`).
pub const RUN_AS: i64 = 65532;

/// [`CONFIG_HASH_ANNOTATION`]'s value for `m`.
pub fn config_hash(m: &ManagedCluster) -> String {
    sha256_hex(&[&render(m), &m.image])
}

/// The downward API path of the pod's ordinal, which the StatefulSet controller puts in a
/// label of every pod it creates.
const POD_INDEX_FIELD: &str = "metadata.labels['apps.kubernetes.io/pod-index']";

/// The broker's command-line arguments (after `tributary`).
pub fn args(m: &ManagedCluster) -> Vec<String> {
    let pod_host = format!(
        "$(POD_NAME).{}.{}.svc",
        m.headless_service_name(),
        m.namespace
    );
    vec![
        "broker".into(),
        "--config".into(),
        format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        "-o".into(),
        format!(
            "advertised.listeners=PLAINTEXT://{pod_host}:{}",
            m.listeners.kafka_port
        ),
        "-o".into(),
        format!(
            "controller.advertised.listener={pod_host}:{}",
            m.listeners.controller_port
        ),
    ]
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(HTTP_PORT_NAME.into()),
            scheme: Some("HTTP".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(3),
        failure_threshold: Some(failure_threshold),
        ..Probe::default()
    }
}

fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: port,
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

fn broker_container(m: &ManagedCluster) -> Container {
    Container {
        name: CONTAINER.into(),
        image: Some(m.image.clone()),
        image_pull_policy: m.image_pull_policy.map(|p| p.as_str().to_string()),
        // The image's entry point, named rather than inherited, so the command line is the
        // same whatever ENTRYPOINT an image sets; an absolute path needs no PATH.
        command: Some(vec![BROKER_BINARY.into()]),
        args: Some(args(m)),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("TRIBUTARY_NODE_ID", POD_INDEX_FIELD),
        ]),
        ports: Some(vec![
            container_port(KAFKA_PORT_NAME, m.listeners.kafka_port),
            container_port(CONTROLLER_PORT_NAME, m.listeners.controller_port),
            container_port(HTTP_PORT_NAME, m.listeners.http_port),
        ]),
        readiness_probe: Some(http_probe("/readyz", 5, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 6)),
        // 120 x 5 s: a broker recovering its logs after a crash may take minutes.
        startup_probe: Some(http_probe("/healthz", 5, 120)),
        resources: m.resources.clone(),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_MOUNT.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// Brokers prefer distinct nodes, so one node failure takes down one broker.
fn default_affinity(m: &ManagedCluster) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(m.selector_labels()),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

fn pod_template(m: &ManagedCluster) -> PodTemplateSpec {
    let overrides = &m.pod_template;
    let mut labels = overrides.labels.clone();
    labels.extend(m.labels());
    let mut annotations = overrides.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash(m));
    let non_empty = |map: &BTreeMap<String, String>| Some(map.clone()).filter(|m| !m.is_empty());
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![broker_container(m)],
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(termination_grace_period_seconds(m)),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..SeccompProfile::default()
                }),
                ..PodSecurityContext::default()
            }),
            volumes: Some(vec![
                Volume {
                    name: "config".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: m.config_map_name(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "tmp".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Volume::default()
                },
            ]),
            affinity: Some(
                overrides
                    .affinity
                    .clone()
                    .unwrap_or_else(|| default_affinity(m)),
            ),
            tolerations: non_empty_vec(&overrides.tolerations),
            topology_spread_constraints: non_empty_vec(&overrides.topology_spread_constraints),
            node_selector: non_empty(&overrides.node_selector),
            priority_class_name: overrides.priority_class_name.clone(),
            ..PodSpec::default()
        }),
    }
}

/// `Some(v)` unless `v` is empty: an empty list is left out of the applied object.
fn non_empty_vec<T: Clone>(v: &[T]) -> Option<Vec<T>> {
    Some(v.to_vec()).filter(|v| !v.is_empty())
}

fn volume_claim_template(m: &ManagedCluster) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(m.labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: m.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(m.storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

pub fn stateful_set(m: &ManagedCluster) -> StatefulSet {
    stateful_set_with_replicas(m, m.brokers)
}

/// The StatefulSet with `replicas` pods: more than `spec.brokers` while the brokers being
/// removed by a scale-down still hold replicas (see `plan::brokers::plan_scale`).
pub fn stateful_set_with_replicas(m: &ManagedCluster, replicas: i32) -> StatefulSet {
    StatefulSet {
        metadata: m.metadata(m.stateful_set_name()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(m.headless_service_name()),
            selector: LabelSelector {
                match_labels: Some(m.selector_labels()),
                ..LabelSelector::default()
            },
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".into()),
                    when_scaled: Some("Retain".into()),
                },
            ),
            template: pod_template(m),
            volume_claim_templates: Some(vec![volume_claim_template(m)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::cluster::{ClusterSpec, ImagePullPolicy, PodTemplate, Storage};
    use crate::resources::tests::managed;
    use k8s_openapi::api::core::v1::{NodeAffinity, Toleration, TopologySpreadConstraint};

    fn pod_spec(s: &StatefulSet) -> &PodSpec {
        s.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    fn container(s: &StatefulSet) -> &Container {
        &pod_spec(s).containers[0]
    }

    fn annotations(s: &StatefulSet) -> BTreeMap<String, String> {
        s.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default()
    }

    #[test]
    fn runs_one_pod_per_broker_in_parallel_restarted_on_delete() {
        let m = managed(ClusterSpec::managed(3));
        let s = stateful_set(&m);
        assert_eq!(s.metadata.name.as_deref(), Some("main"));
        assert_eq!(s.metadata.labels, Some(m.labels()));
        let owners = s.metadata.owner_references.as_ref().expect("owners");
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].controller),
            ("Cluster", Some(true))
        );
        let spec = s.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("main-brokers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            spec.update_strategy
                .as_ref()
                .and_then(|u| u.type_.as_deref()),
            Some("OnDelete")
        );
        assert_eq!(spec.selector.match_labels, Some(m.selector_labels()));
        let retention = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .expect("retention");
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
        assert_eq!(
            stateful_set(&managed(ClusterSpec::managed(5)))
                .spec
                .unwrap()
                .replicas,
            Some(5)
        );
    }

    #[test]
    fn the_container_runs_the_broker_with_its_pod_addresses() {
        let m = managed(ClusterSpec::managed(3));
        let s = stateful_set(&m);
        let c = container(&s);
        assert_eq!(c.name, "broker");
        assert_eq!(
            c.command.as_deref(),
            Some(&["/usr/local/bin/tributary".to_string()][..])
        );
        assert_eq!(
            c.args.clone().unwrap(),
            [
                "broker",
                "--config",
                "/etc/tributary/broker.properties",
                "-o",
                "advertised.listeners=PLAINTEXT://$(POD_NAME).main-brokers.team-a.svc:9092",
                "-o",
                "controller.advertised.listener=$(POD_NAME).main-brokers.team-a.svc:9093",
            ]
        );
        let env: Vec<(String, String)> = c
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value_from.unwrap().field_ref.unwrap().field_path))
            .collect();
        assert_eq!(
            env,
            [
                ("POD_NAME".into(), "metadata.name".into()),
                ("POD_NAMESPACE".into(), "metadata.namespace".into()),
                (
                    "TRIBUTARY_NODE_ID".into(),
                    "metadata.labels['apps.kubernetes.io/pod-index']".into()
                ),
            ]
        );
        let ports: Vec<(String, i32)> = c
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.container_port))
            .collect();
        assert_eq!(
            ports,
            [
                ("kafka".into(), 9092),
                ("controller".into(), 9093),
                ("http".into(), 9644)
            ]
        );
        assert_eq!(c.image.as_deref(), Some(m.image.as_str()));
        assert_eq!(c.image_pull_policy, None);
    }

    #[test]
    fn probes_use_the_http_port() {
        let s = stateful_set(&managed(ClusterSpec::managed(3)));
        let c = container(&s);
        let get = |p: &Option<Probe>| {
            let p = p.as_ref().expect("probe");
            let h = p.http_get.as_ref().expect("httpGet");
            (
                h.path.clone().unwrap(),
                h.port.clone(),
                p.failure_threshold,
                p.period_seconds,
            )
        };
        let http = IntOrString::String("http".into());
        assert_eq!(
            get(&c.readiness_probe),
            ("/readyz".into(), http.clone(), Some(3), Some(5))
        );
        assert_eq!(
            get(&c.liveness_probe),
            ("/healthz".into(), http.clone(), Some(6), Some(10))
        );
        let (path, port, failures, period) = get(&c.startup_probe);
        assert_eq!((path.as_str(), port), ("/healthz", http));
        // At least five minutes before liveness takes over.
        assert!(failures.unwrap() * period.unwrap() >= 300);
    }

    #[test]
    fn runs_as_non_root_with_a_read_only_root() {
        let s = stateful_set(&managed(ClusterSpec::managed(3)));
        let pod = pod_spec(&s);
        let psc = pod.security_context.as_ref().expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65532));
        assert_eq!(psc.fs_group, Some(65532));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            Some("RuntimeDefault")
        );
        let csc = container(&s)
            .security_context
            .as_ref()
            .expect("container security context");
        assert_eq!(csc.read_only_root_filesystem, Some(true));
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.run_as_non_root, Some(true));
        assert_eq!(
            csc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.termination_grace_period_seconds, Some(60));
    }

    #[test]
    fn volumes_config_read_only_and_data_from_the_claim_template() {
        let mut spec = ClusterSpec::managed(3);
        spec.storage = Some(Storage {
            size: "50Gi".into(),
            storage_class_name: Some("fast".into()),
        });
        let s = stateful_set(&managed(spec));
        let mounts: Vec<(String, String, Option<bool>)> = container(&s)
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .map(|v| (v.name, v.mount_path, v.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                ("data".into(), "/var/lib/tributary".into(), None),
                ("config".into(), "/etc/tributary".into(), Some(true)),
                ("tmp".into(), "/tmp".into(), None),
            ]
        );
        let volumes = pod_spec(&s).volumes.clone().unwrap();
        assert_eq!(
            volumes[0].config_map.as_ref().map(|c| c.name.as_str()),
            Some("main-config")
        );
        let vct = &s
            .spec
            .as_ref()
            .unwrap()
            .volume_claim_templates
            .as_ref()
            .unwrap()[0];
        assert_eq!(vct.metadata.name.as_deref(), Some("data"));
        let pvc = vct.spec.as_ref().unwrap();
        assert_eq!(pvc.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            pvc.access_modes.as_deref(),
            Some(&["ReadWriteOnce".to_string()][..])
        );
        assert_eq!(
            pvc.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
            Quantity("50Gi".into())
        );
    }

    #[test]
    fn overrides_are_merged_and_the_operators_keys_win() {
        let mut template = PodTemplate::default();
        template.labels.insert("team".into(), "payments".into());
        template
            .annotations
            .insert("prometheus.io/scrape".into(), "true".into());
        template
            .annotations
            .insert(CONFIG_HASH_ANNOTATION.into(), "mine".into());
        template.node_selector.insert("disk".into(), "ssd".into());
        template.priority_class_name = Some("high".into());
        template.tolerations = vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("kafka".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        }];
        template.topology_spread_constraints = vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            ..TopologySpreadConstraint::default()
        }];
        let affinity = Affinity {
            node_affinity: Some(NodeAffinity::default()),
            ..Affinity::default()
        };
        template.affinity = Some(affinity.clone());
        let mut spec = ClusterSpec::managed(3);
        spec.pod_template = Some(template);
        spec.image = Some("registry.local/tributary:dev".into());
        spec.image_pull_policy = Some(ImagePullPolicy::Always);
        let m = managed(spec);
        let s = stateful_set(&m);
        let meta = s.spec.as_ref().unwrap().template.metadata.clone().unwrap();
        let labels = meta.labels.unwrap();
        assert_eq!(labels["team"], "payments");
        assert_eq!(labels["app.kubernetes.io/instance"], "main");
        let ann = meta.annotations.unwrap();
        assert_eq!(ann["prometheus.io/scrape"], "true");
        assert_eq!(ann[CONFIG_HASH_ANNOTATION], config_hash(&m));
        let pod = pod_spec(&s);
        assert_eq!(pod.node_selector.as_ref().unwrap()["disk"], "ssd");
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        assert_eq!(
            pod.tolerations.as_ref().unwrap()[0].key.as_deref(),
            Some("dedicated")
        );
        assert_eq!(pod.topology_spread_constraints.as_ref().unwrap().len(), 1);
        assert_eq!(pod.affinity, Some(affinity));
        let c = container(&s);
        assert_eq!(c.image.as_deref(), Some("registry.local/tributary:dev"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    }

    #[test]
    fn without_overrides_brokers_prefer_distinct_nodes() {
        let m = managed(ClusterSpec::managed(3));
        let s = stateful_set(&m);
        let pod = pod_spec(&s);
        let term = &pod
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .expect("preferred anti-affinity")[0];
        assert_eq!(
            term.pod_affinity_term.topology_key,
            "kubernetes.io/hostname"
        );
        assert_eq!(
            term.pod_affinity_term
                .label_selector
                .as_ref()
                .and_then(|l| l.match_labels.clone()),
            Some(m.selector_labels())
        );
        assert_eq!(pod.tolerations, None);
        assert_eq!(pod.node_selector, None);
    }

    #[test]
    fn the_hash_follows_config_and_image_and_nothing_else() {
        let base = managed(ClusterSpec::managed(3));
        let hash = annotations(&stateful_set(&base))[CONFIG_HASH_ANNOTATION].clone();
        assert_eq!(hash.len(), 64);
        assert_eq!(
            annotations(&stateful_set(&base))[CONFIG_HASH_ANNOTATION],
            hash
        );

        let mut config = base.clone();
        config
            .config
            .insert("log.retention.ms".into(), "1000".into());
        assert_ne!(config_hash(&config), hash);
        let mut image = base.clone();
        image.image = "other:1".into();
        assert_ne!(config_hash(&image), hash);
        // More brokers beyond the voters change neither the file nor the image.
        let mut scaled = base.clone();
        scaled.brokers = 4;
        assert_eq!(config_hash(&scaled), hash);
        let mut labelled = base.clone();
        labelled.pod_template.labels.insert("a".into(), "b".into());
        assert_eq!(config_hash(&labelled), hash);
    }
}

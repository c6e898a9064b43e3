//! Managed Clusters against a real kube-apiserver and kube-controller-manager: the operator
//! (as a process) applies the ConfigMap, Services, StatefulSet and PodDisruptionBudget,
//! kube-controller-manager's StatefulSet controller makes the Pods (which stay Pending: no
//! kubelet runs here) and its garbage collector deletes everything with the Cluster. Where a
//! test needs ready brokers, it plays the kubelet's part for readiness only: it marks the
//! Pods ready and points the Cluster at real brokers (`tributary dev`) through the
//! `tributary.dev/bootstrap-override` annotation.

mod common;

use std::time::Duration;

use common::{refusal, wait_for, wait_until, Bed, Brokers, Operator, NS};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use tributary_operator::crd::cluster::{Cluster, ClusterSpec, BOOTSTRAP_OVERRIDE_ANNOTATION};
use tributary_operator::crd::condition::find;
use tributary_operator::crd::topic::{DeletionPolicy, Topic, TopicSpec};
use tributary_operator::crd::ClusterRef;

const WAIT: Duration = Duration::from_secs(60);
const HASH: &str = "tributary.dev/config-hash";

fn phase(phase: &str) {
    eprintln!("--- {phase}");
}

/// The Ready condition's (status, reason) once the status describes the latest spec.
async fn ready(api: &Api<Cluster>, name: &str) -> Option<(String, String)> {
    let c = api.get_opt(name).await.ok()??;
    let status = c.status.as_ref()?;
    if status.observed_generation != c.metadata.generation {
        return None;
    }
    let ready = find(&status.conditions, "Ready")?;
    Some((ready.status.clone(), ready.reason.clone()))
}

async fn wait_reason(api: &Api<Cluster>, name: &str, reason: &str) -> anyhow::Result<Cluster> {
    wait_until(
        &format!("Cluster {name} reason {reason}"),
        WAIT,
        || async {
            match ready(api, name).await {
                Some((_, r)) if r == reason => api.get_opt(name).await.ok().flatten(),
                _ => None,
            }
        },
        || async {
            format!(
                "{:?}",
                api.get_opt(name).await.ok().flatten().map(|c| c.status)
            )
        },
    )
    .await
}

async fn exists<K>(api: &Api<K>, name: &str) -> anyhow::Result<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{name} to exist"), WAIT, || async {
        api.get_opt(name).await.ok().flatten()
    })
    .await
}

fn owned_by(meta: &kube::api::ObjectMeta, cluster: &Cluster) -> bool {
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter().any(|r| {
            r.kind == "Cluster"
                && r.name == cluster.name_any()
                && Some(&r.uid) == cluster.metadata.uid.as_ref()
                && r.controller == Some(true)
        })
    })
}

fn template_hash(sts: &StatefulSet) -> String {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(HASH).cloned())
        .unwrap_or_default()
}

fn properties(cm: &ConfigMap) -> String {
    cm.data
        .as_ref()
        .and_then(|d| d.get("broker.properties").cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_cluster_runs_as_a_statefulset_from_creation_to_deletion() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let _operator = Operator::start(&bed.env, "op-0", &[])?;
    let client = bed.client.clone();
    let clusters: Api<Cluster> = Api::namespaced(client.clone(), NS);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);

    phase("create: every owned object, owned by the Cluster");
    let mut spec = ClusterSpec::managed(3);
    spec.config
        .insert("log.retention.ms".into(), "604800000".into());
    let cluster = bed.managed_cluster("tributary", spec, &[]).await?;

    let cm = exists(&config_maps, "tributary-config").await?;
    assert!(owned_by(&cm.metadata, &cluster), "{:?}", cm.metadata);
    let props = properties(&cm);
    for line in [
        "log.retention.ms=604800000",
        "log.dirs=/var/lib/tributary/data",
        "listeners=PLAINTEXT://0.0.0.0:9092",
        "controller.listener=0.0.0.0:9093",
        "http.listener=0.0.0.0:9644",
        "controller.quorum.voters=0@tributary-0.tributary-brokers.default.svc:9093,1@tributary-1.tributary-brokers.default.svc:9093,2@tributary-2.tributary-brokers.default.svc:9093",
        "default.replication.factor=3",
        "min.insync.replicas=2",
    ] {
        assert!(props.lines().any(|l| l == line), "{line} missing from:\n{props}");
    }

    let headless = exists(&services, "tributary-brokers").await?;
    assert!(owned_by(&headless.metadata, &cluster));
    let spec = headless.spec.expect("spec");
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    let ports: Vec<i32> = spec
        .ports
        .unwrap_or_default()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [9092, 9093]);
    let bootstrap = exists(&services, "tributary-bootstrap").await?;
    assert!(owned_by(&bootstrap.metadata, &cluster));
    let spec = bootstrap.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert!(spec.cluster_ip.is_some_and(|ip| ip != "None"));

    let pdb = exists(&pdbs, "tributary").await?;
    assert!(owned_by(&pdb.metadata, &cluster));
    assert_eq!(
        pdb.spec.and_then(|s| s.max_unavailable),
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );

    let sts = exists(&sets, "tributary").await?;
    assert!(owned_by(&sts.metadata, &cluster));
    let spec = sts.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("tributary-brokers"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy.and_then(|u| u.type_).as_deref(),
        Some("OnDelete")
    );
    let pod_spec = spec.template.spec.clone().expect("pod spec");
    let container = &pod_spec.containers[0];
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        probe_path(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );
    assert_eq!(
        probe_path(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        probe_path(&container.startup_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        spec.volume_claim_templates
            .as_ref()
            .map(|v| v[0].name_any()),
        Some("data".into())
    );
    let first_hash = template_hash(&sts);
    assert_eq!(first_hash.len(), 64);

    phase("kube-controller-manager makes the pods; the status says the brokers are starting");
    wait_until(
        "pods tributary-0..2",
        WAIT,
        || async {
            let names: Vec<String> = pods
                .list(&Default::default())
                .await
                .ok()?
                .items
                .iter()
                .map(|p| p.name_any())
                .collect();
            ["tributary-0", "tributary-1", "tributary-2"]
                .iter()
                .all(|n| names.iter().any(|m| m == n))
                .then_some(())
        },
        || async {
            format!(
                "{:?}",
                pods.list(&Default::default()).await.map(|l| l.items.len())
            )
        },
    )
    .await?;
    let c = wait_reason(&clusters, "tributary", "BrokersStarting").await?;
    let status = c.status.expect("status");
    assert_eq!(status.ready_brokers, Some(0));
    assert_eq!(status.observed_generation, c.metadata.generation);
    assert_eq!(
        status.bootstrap_servers.as_deref(),
        Some("tributary-bootstrap.default.svc:9092")
    );
    let reconciling = find(&status.conditions, "Reconciling").expect("Reconciling");
    assert_eq!(reconciling.status, "True");

    phase("a config change rewrites the ConfigMap and the pod template's hash");
    clusters
        .patch(
            "tributary",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"config": {"log.retention.ms": "3600000"}}})),
        )
        .await?;
    wait_until(
        "the new retention in the ConfigMap",
        WAIT,
        || async {
            let cm = config_maps.get_opt("tributary-config").await.ok()??;
            properties(&cm)
                .lines()
                .any(|l| l == "log.retention.ms=3600000")
                .then_some(())
        },
        || async {
            format!(
                "{:?}",
                config_maps
                    .get_opt("tributary-config")
                    .await
                    .ok()
                    .flatten()
                    .map(|c| properties(&c))
            )
        },
    )
    .await?;
    let second_hash = wait_for("a new pod template hash", WAIT, || async {
        let sts = sets.get_opt("tributary").await.ok()??;
        let hash = template_hash(&sts);
        (hash != first_hash).then_some(hash)
    })
    .await?;
    assert_eq!(second_hash.len(), 64);
    // OnDelete: the running pods are left as they are.
    let pod = pods.get("tributary-0").await?;
    let pod_hash = pod.annotations().get(HASH).cloned().unwrap_or_default();
    assert_eq!(pod_hash, first_hash);

    phase("brokers: 5 scales the StatefulSet");
    clusters
        .patch(
            "tributary",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"brokers": 5}})),
        )
        .await?;
    wait_for("StatefulSet replicas 5", WAIT, || async {
        let sts = sets.get_opt("tributary").await.ok()??;
        (sts.spec?.replicas == Some(5)).then_some(())
    })
    .await?;
    exists(&pods, "tributary-4").await?;
    let c = wait_reason(&clusters, "tributary", "BrokersStarting").await?;
    let message = find(&c.status.expect("status").conditions, "Ready")
        .expect("Ready")
        .message
        .clone();
    assert_eq!(message, "0 of 5 brokers ready");

    phase("delete: the garbage collector removes every owned object");
    clusters
        .delete("tributary", &DeleteParams::default())
        .await?;
    wait_until(
        "the owned objects to be gone",
        WAIT,
        || async {
            let gone = config_maps
                .get_opt("tributary-config")
                .await
                .ok()?
                .is_none()
                && services.get_opt("tributary-brokers").await.ok()?.is_none()
                && services
                    .get_opt("tributary-bootstrap")
                    .await
                    .ok()?
                    .is_none()
                && sets.get_opt("tributary").await.ok()?.is_none()
                && pdbs.get_opt("tributary").await.ok()?.is_none();
            gone.then_some(())
        },
        || async {
            format!(
                "configmap {:?}, statefulset {:?}",
                config_maps
                    .get_opt("tributary-config")
                    .await
                    .map(|c| c.is_some()),
                sets.get_opt("tributary").await.map(|s| s.is_some())
            )
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_rejects_invalid_managed_clusters_with_clear_messages() -> anyhow::Result<()>
{
    let bed = Bed::start().await?;
    let api: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    let create = |name: &str, spec: ClusterSpec| {
        let api = api.clone();
        let cluster = Cluster::new(name, spec);
        async move { api.create(&PostParams::default(), &cluster).await }
    };
    let with = |f: fn(&mut ClusterSpec)| {
        let mut spec = ClusterSpec::managed(3);
        f(&mut spec);
        spec
    };

    let message = refusal(create("v2", with(|s| s.voters = Some(2))).await);
    assert!(message.contains("voters is 1, 3 or 5"), "{message}");
    let message = refusal(create("v5", with(|s| s.voters = Some(5))).await);
    assert!(
        message.contains("voters cannot exceed brokers"),
        "{message}"
    );
    let message = refusal(
        create(
            "both",
            with(|s| s.external = ClusterSpec::external("kafka:9092").external),
        )
        .await,
    );
    assert!(message.contains("set exactly one of external"), "{message}");
    let message = refusal(create("neither", ClusterSpec::default()).await);
    assert!(message.contains("set exactly one of external"), "{message}");
    let message = refusal(
        create(
            "owned",
            with(|s| {
                s.config.insert("node.id".into(), "4".into());
                s.config.insert("log.retention.ms".into(), "1".into());
            }),
        )
        .await,
    );
    assert!(
        message.contains("config cannot set node.id: the operator sets it for each broker"),
        "{message}"
    );
    let message = refusal(create("zero", with(|s| s.brokers = Some(0))).await);
    assert!(message.contains("spec.brokers"), "{message}");
    let message = refusal(
        create(
            "size",
            with(|s| {
                s.storage = Some(tributary_operator::crd::cluster::Storage {
                    size: "lots".into(),
                    storage_class_name: None,
                })
            }),
        )
        .await,
    );
    assert!(
        message.contains("storage.size is a positive Kubernetes quantity"),
        "{message}"
    );
    let message = refusal(
        create(
            "label",
            with(|s| {
                let mut t = tributary_operator::crd::cluster::PodTemplate::default();
                t.labels
                    .insert("app.kubernetes.io/instance".into(), "x".into());
                s.pod_template = Some(t);
            }),
        )
        .await,
    );
    assert!(
        message.contains("podTemplate.labels cannot set"),
        "{message}"
    );
    let message = refusal(
        create(
            "external-with-voters",
            ClusterSpec {
                voters: Some(1),
                ..ClusterSpec::external("kafka:9092")
            },
        )
        .await,
    );
    assert!(
        message.contains("they go with brokers, not with external"),
        "{message}"
    );
    let message = refusal(create(&"a".repeat(53), ClusterSpec::managed(1)).await);
    assert!(message.contains("at most 52 characters"), "{message}");

    // Transitions: voters (explicit or by default), storage and the form stay.
    create("main", with(|s| s.voters = Some(3))).await?;
    let patch = |body: serde_json::Value| {
        let api = api.clone();
        async move {
            api.patch("main", &PatchParams::default(), &Patch::Merge(body))
                .await
        }
    };
    let message = refusal(patch(serde_json::json!({"spec": {"voters": 1}})).await);
    assert!(
        message.contains("voters cannot be changed after creation"),
        "{message}"
    );
    // Unset, voters is 3 with 3 brokers: the same quorum, so this is allowed...
    patch(serde_json::json!({"spec": {"voters": null}})).await?;
    // ...but 2 brokers would make the default 1.
    let message = refusal(patch(serde_json::json!({"spec": {"brokers": 2}})).await);
    assert!(
        message.contains("voters cannot be changed after creation"),
        "{message}"
    );
    let message = refusal(patch(serde_json::json!({"spec": {"storage": {"size": "20Gi"}}})).await);
    assert!(
        message.contains("storage cannot be changed after creation"),
        "{message}"
    );
    let message = refusal(
        patch(serde_json::json!({"spec": {"brokers": null, "voters": null, "external": {"bootstrapServers": "k:9092"}}}))
            .await,
    );
    assert!(
        message.contains("cannot switch between external and managed"),
        "{message}"
    );
    let message =
        refusal(patch(serde_json::json!({"spec": {"listeners": {"controllerPort": 19093}}})).await);
    assert!(
        message.contains("controllerPort cannot be changed"),
        "{message}"
    );
    // What may change does.
    patch(serde_json::json!({"spec": {"brokers": 5, "config": {"num.partitions": "6"}, "listeners": {"kafkaPort": 19092}}}))
        .await?;

    // The chart's example is a valid managed Cluster.
    let example =
        tributary_e2e_kit::repo_root().join("charts/tributary/examples/cluster-managed.yaml");
    let out = bed.dry_run_apply(&example)?;
    assert!(out.contains("created (server dry run)"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_pods_and_answering_brokers_make_a_managed_cluster_ready() -> anyhow::Result<()> {
    let bed = Bed::start().await?;
    let brokers = Brokers::start(3)?;
    let _operator = Operator::start(&bed.env, "op-0", &[])?;
    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
    let topics: Api<Topic> = Api::namespaced(bed.client.clone(), NS);

    phase("a managed Cluster whose operator reaches the brokers through the override");
    bed.managed_cluster(
        "main",
        ClusterSpec::managed(3),
        &[(BOOTSTRAP_OVERRIDE_ANNOTATION, &brokers.bootstrap)],
    )
    .await?;
    wait_reason(&clusters, "main", "BrokersStarting").await?;

    phase("a Topic of the managed Cluster is created at the override address");
    topics
        .create(
            &PostParams::default(),
            &Topic::new(
                "orders",
                TopicSpec {
                    cluster_ref: ClusterRef {
                        name: "main".into(),
                    },
                    topic_name: None,
                    partitions: 3,
                    replication_factor: Some(3),
                    config: Default::default(),
                    deletion_policy: DeletionPolicy::Delete,
                },
            ),
        )
        .await?;
    wait_until(
        "Topic orders Ready",
        WAIT,
        || async {
            let t = topics.get_opt("orders").await.ok()??;
            let ready = find(&t.status?.conditions, "Ready")?.clone();
            (ready.reason == "TopicReady").then_some(())
        },
        || async {
            format!(
                "{:?}",
                topics
                    .get_opt("orders")
                    .await
                    .ok()
                    .flatten()
                    .and_then(|t| t.status)
            )
        },
    )
    .await?;

    phase("the pods turn ready (the test plays the kubelet): BrokersReady");
    for i in 0..3 {
        let name = format!("main-{i}");
        exists(&pods, &name).await?;
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        pods.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                ]}}),
            ),
        )
        .await?;
    }
    let c = wait_reason(&clusters, "main", "BrokersReady").await?;
    let status = c.status.expect("status");
    assert_eq!(status.ready_brokers, Some(3));
    assert_eq!(status.broker_ids, [0, 1, 2]);
    assert_eq!(status.broker_count, Some(3));
    assert!(status.controller_id.is_some(), "{status:?}");
    assert_eq!(
        status.bootstrap_servers.as_deref(),
        Some("main-bootstrap.default.svc:9092")
    );
    let reconciling = find(&status.conditions, "Reconciling").expect("Reconciling");
    assert_eq!(reconciling.status, "False");
    Ok(())
}

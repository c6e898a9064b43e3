//! A scale-down of a managed `Cluster` that its topics cannot survive (3 brokers to 1 with
//! a topic of 3 replicas) is refused, with the reason in the Cluster's status, and nothing
//! is removed; putting the brokers back clears the refusal. Run for real: the pod runner
//! plays the kubelet with real `tributary` processes and the operator runs as a process
//! inside the runner's DNS view; with `TRIBUTARY_E2E_KUBECONFIG` set, on that cluster with
//! its operator and kubelets (`common::Platform`).

mod common;

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use common::{
    client_config, cluster_with_topic, ensure_exactly, leader_and_in_sync, operated, produce,
    wait_condition, Platform,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::FutureProducer;
use tributary_operator::crd::cluster::{Cluster, ClusterSpec};

const WAIT: Duration = Duration::from_secs(120);
const CLUSTER: &str = "refusal";
const TOPIC: &str = "refunds";
const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_below_the_replication_factor_is_refused_in_status() -> Result<()> {
    operated(CLUSTER, "refusal", refused_scale_down).await
}

async fn refused_scale_down(p: &Platform) -> Result<()> {
    // One voter, so that the brokers may go down to one as far as the quorum goes.
    let spec = ClusterSpec {
        voters: Some(1),
        ..ClusterSpec::managed(3)
    };
    let bootstrap = cluster_with_topic(p, CLUSTER, spec, (TOPIC, PARTITIONS), WAIT).await?;
    let producer: FutureProducer =
        p.in_cluster(|| client_config(&bootstrap, &[("acks", "all")]).create())??;
    produce(&producer, TOPIC, 0..100).await?;

    let clusters: Api<Cluster> = p.api();
    clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"brokers": 1}})),
        )
        .await?;
    let refused = wait_condition(
        &clusters,
        CLUSTER,
        ("Scaling", "False", Some("ReplicationFactorTooHigh")),
        WAIT,
    )
    .await?;
    let scaling = refused
        .status
        .as_ref()
        .and_then(|s| tributary_operator::crd::condition::find(&s.conditions, "Scaling"))
        .context("Scaling condition")?;
    ensure!(
        scaling.message.contains(TOPIC) && scaling.message.contains("3 replicas"),
        "the refusal does not say why: {}",
        scaling.message
    );
    // Nothing was removed: three pods, three brokers, every message readable.
    let stateful_sets: Api<StatefulSet> = p.api();
    let replicas = stateful_sets
        .get(CLUSTER)
        .await?
        .spec
        .and_then(|s| s.replicas);
    ensure!(
        replicas == Some(3),
        "the StatefulSet has {replicas:?} replicas"
    );
    let status = refused.status.context("status")?;
    ensure!(
        status.ready_brokers == Some(3),
        "ready brokers {:?}",
        status.ready_brokers
    );
    let (_, in_sync) = leader_and_in_sync(&producer, TOPIC, 0)?;
    ensure!(in_sync, "a partition lost replicas after the refusal");

    // Back to 3: the refusal is gone.
    clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"brokers": 3}})),
        )
        .await?;
    wait_condition(
        &clusters,
        CLUSTER,
        ("Scaling", "False", Some("BrokersMatchSpec")),
        WAIT,
    )
    .await?;
    let consumer: StreamConsumer = p.in_cluster(|| {
        client_config(
            &bootstrap,
            &[("group.id", "check"), ("enable.auto.commit", "false")],
        )
        .create()
    })??;
    ensure_exactly(
        &consumer,
        TOPIC,
        PARTITIONS,
        100,
        "after the refused scale-down",
    )
    .await
}

//! Failures of a managed `Cluster`'s brokers, run for real (the pod runner plays the
//! kubelet with real `tributary` processes, the operator runs as a process inside the
//! runner's DNS view): the pod leading a partition is deleted, then the process of the next
//! leader is SIGKILLed, while an acks=all producer writes, and no acknowledged message is
//! lost; a ConsumerGroup resource follows a group of the operated Cluster and resets it.
//! And a scale-down the topics cannot survive is refused, with the reason in the status.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use common::{
    client_config, ensure_exactly, operated, produce, topic, wait_condition, wait_ready,
    wait_until, Bed, Writer, NS,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tributary_e2e_kit::PodRunner;
use tributary_operator::crd::cluster::{Cluster, ClusterSpec};
use tributary_operator::crd::consumer_group::ConsumerGroup;
use tributary_operator::crd::topic::Topic;

const WAIT: Duration = Duration::from_secs(120);
const CLUSTER: &str = "main";
const TOPIC: &str = "payments";
const PARTITIONS: i32 = 3;

/// Creates `CLUSTER` from `spec` and a Topic `TOPIC` with replication factor 3 on it; waits
/// for both to be Ready and returns the bootstrap address.
async fn cluster_with_topic(bed: &Bed, spec: ClusterSpec) -> Result<String> {
    bed.managed_cluster(CLUSTER, spec, &[]).await?;
    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    let cluster = wait_ready(&clusters, CLUSTER, WAIT).await?;
    let topics: Api<Topic> = Api::namespaced(bed.client.clone(), NS);
    topics
        .create(
            &PostParams::default(),
            &topic(TOPIC, CLUSTER, PARTITIONS, 3),
        )
        .await?;
    wait_ready(&topics, TOPIC, WAIT).await?;
    cluster
        .status
        .and_then(|s| s.bootstrap_servers)
        .context("status.bootstrapServers")
}

/// The leader of `TOPIC`'s `partition`, and whether every partition's ISR is full, as the
/// brokers' Metadata says.
fn leader_and_in_sync(producer: &FutureProducer, partition: i32) -> Result<(i32, bool)> {
    let metadata = producer
        .client()
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))?;
    let topic = metadata.topics().first().context("no topic in Metadata")?;
    let leader = topic
        .partitions()
        .iter()
        .find(|p| p.id() == partition)
        .context("no such partition")?
        .leader();
    let in_sync = topic
        .partitions()
        .iter()
        .all(|p| p.leader() >= 0 && p.isr().len() == p.replicas().len());
    Ok((leader, in_sync))
}

/// Waits until pod `name` is a different pod than `uid` (when given) or has restarted its
/// container more than `restarts` times, is Ready, and every ISR is full again.
async fn wait_back(
    pods: &Api<Pod>,
    producer: &FutureProducer,
    name: &str,
    uid: Option<&str>,
    restarts: i32,
) -> Result<()> {
    let restarts_of = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0)
    };
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    wait_until(
        &format!("{name} back, Ready, and every ISR full"),
        WAIT,
        || async {
            let pod = pods.get_opt(name).await.ok()??;
            let replaced = match uid {
                Some(uid) => pod.uid().as_deref() != Some(uid),
                None => restarts_of(&pod) > restarts,
            };
            let (_, in_sync) = leader_and_in_sync(producer, 0).ok()?;
            (replaced && ready(&pod) && pod.metadata.deletion_timestamp.is_none() && in_sync)
                .then_some(())
        },
        || async {
            format!(
                "pod {:?}, metadata {:?}",
                pods.get_opt(name).await.ok().flatten().map(|p| (
                    p.uid(),
                    restarts_of(&p),
                    ready(&p)
                )),
                leader_and_in_sync(producer, 0).ok()
            )
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_leader_deleted_or_killed_loses_no_acknowledged_write() -> Result<()> {
    operated(CLUSTER, "failover", failover).await
}

async fn failover(bed: &Bed, runner: &PodRunner) -> Result<()> {
    let bootstrap = cluster_with_topic(bed, ClusterSpec::managed(3)).await?;
    let producer: FutureProducer = runner.with_cluster_dns(|| {
        client_config(
            &bootstrap,
            &[("acks", "all"), ("enable.idempotence", "true")],
        )
        .create()
    })??;
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
    let mut writer = Writer::start(&producer, TOPIC, None, 0);
    writer.wait_acked(0, 200, WAIT).await?;

    // The pod leading partition 0 is deleted: its broker gets SIGTERM, hands its
    // leaderships over, and the StatefulSet re-creates the pod on the same volume.
    let (leader, _) = leader_and_in_sync(&producer, 0)?;
    let name = format!("{CLUSTER}-{leader}");
    let uid = pods.get(&name).await?.uid().context("uid")?;
    let before = writer.acked();
    pods.delete(&name, &DeleteParams::default()).await?;
    writer.wait_acked(before, 200, WAIT).await?;
    wait_back(&pods, &producer, &name, Some(&uid), 0).await?;
    eprintln!(
        "deleted {name} (leader of partition 0): {} acknowledged meanwhile",
        writer.acked() - before
    );

    // The process of the pod leading partition 0 now is SIGKILLed: no controlled shutdown;
    // the runner restarts the container, as a kubelet would.
    let (leader, _) = leader_and_in_sync(&producer, 0)?;
    let name = format!("{CLUSTER}-{leader}");
    let before = writer.acked();
    runner.kill(&name)?;
    writer.wait_acked(before, 200, WAIT).await?;
    wait_back(&pods, &producer, &name, None, 0).await?;
    eprintln!(
        "killed {name}'s broker (leader of partition 0): {} acknowledged meanwhile",
        writer.acked() - before
    );
    let before = writer.acked();
    writer.wait_acked(before, 100, WAIT).await?;
    let written = writer.stop().await?;

    // Every acknowledged message is there, each once (the producer is idempotent).
    let consumer: StreamConsumer = runner.with_cluster_dns(|| {
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
        written.acked,
        "after the failovers",
    )
    .await?;
    drop(consumer);

    consumer_group_flow(bed, runner, &bootstrap, written.acked).await
}

/// Part 1's ConsumerGroup flow on the operated Cluster: the status shows a group's members
/// and its real lag; a reset to the earliest offsets waits for the group to be empty, then
/// is applied, once.
async fn consumer_group_flow(
    bed: &Bed,
    runner: &PodRunner,
    bootstrap: &str,
    messages: usize,
) -> Result<()> {
    const GROUP: &str = "billing";
    let groups: Api<ConsumerGroup> = Api::namespaced(bed.client.clone(), NS);
    groups
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "tributary.dev/v1alpha1",
                "kind": "ConsumerGroup",
                "metadata": {"name": GROUP},
                "spec": {"clusterRef": {"name": CLUSTER}},
            }))?,
        )
        .await?;

    // A member reads half of every partition and commits.
    let member: BaseConsumer = runner.with_cluster_dns(|| {
        client_config(
            bootstrap,
            &[
                ("group.id", GROUP),
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
            ],
        )
        .create()
    })??;
    member.subscribe(&[TOPIC])?;
    let mut ends = Vec::new();
    for p in 0..PARTITIONS {
        ends.push(
            member
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))?
                .1,
        );
    }
    let half: Vec<i64> = ends.iter().map(|e| e / 2).collect();
    let mut commits = TopicPartitionList::new();
    for (p, offset) in half.iter().enumerate() {
        commits.add_partition_offset(TOPIC, p as i32, Offset::Offset(*offset))?;
    }
    // Joined (the assignment is in) before committing as a member.
    let deadline = std::time::Instant::now() + WAIT;
    while member.assignment()?.count() == 0 {
        ensure!(
            std::time::Instant::now() < deadline,
            "the member got no assignment"
        );
        let _ = member.poll(Duration::from_millis(100));
    }
    member.commit(&commits, CommitMode::Sync)?;
    let lag: i64 = ends.iter().zip(&half).map(|(e, h)| e - h).sum();

    // The status shows one member and the real lag; poll the member meanwhile so it stays
    // in the group.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Nothing is committed from here: the lag stays as committed above.
                let _ = member.poll(Duration::from_millis(100));
            }
            member.unsubscribe();
        })
    };
    let observed = wait_until(
        "the ConsumerGroup status to show the member and the lag",
        WAIT,
        || async {
            let s = groups.get_opt(GROUP).await.ok()??.status?;
            (s.member_count == Some(1) && s.total_lag == Some(lag)).then_some(s)
        },
        || async {
            format!(
                "{:?}",
                groups.get_opt(GROUP).await.ok().flatten().map(|g| g.status)
            )
        },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.join().expect("the member's thread");
    let observed = observed?;
    ensure!(
        observed.state.as_deref() == Some("Stable"),
        "group state {:?}",
        observed.state
    );

    // With the member gone, a reset to the earliest offsets is applied.
    groups
        .patch(
            GROUP,
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"spec": {"reset": {"to": "Earliest", "topics": [TOPIC]}}}),
            ),
        )
        .await?;
    let reset = wait_until(
        "the reset to be applied",
        WAIT,
        || async {
            let s = groups.get_opt(GROUP).await.ok()??.status?;
            let applied = tributary_operator::crd::condition::find(&s.conditions, "ResetPending")
                .is_some_and(|c| c.status == "False" && c.reason == "ResetApplied");
            (applied && s.total_lag == Some(messages as i64)).then_some(s)
        },
        || async {
            format!(
                "{:?}",
                groups.get_opt(GROUP).await.ok().flatten().map(|g| g.status)
            )
        },
    )
    .await?;
    ensure!(
        reset.offsets.len() == PARTITIONS as usize
            && reset.offsets.iter().all(|o| o.committed_offset == 0),
        "offsets after the reset: {:?}",
        reset.offsets
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_down_below_the_replication_factor_is_refused_in_status() -> Result<()> {
    operated(CLUSTER, "refusal", refused_scale_down).await
}

async fn refused_scale_down(bed: &Bed, runner: &PodRunner) -> Result<()> {
    // One voter, so that the brokers may go down to one as far as the quorum goes.
    let spec = ClusterSpec {
        voters: Some(1),
        ..ClusterSpec::managed(3)
    };
    let bootstrap = cluster_with_topic(bed, spec).await?;
    let producer: FutureProducer =
        runner.with_cluster_dns(|| client_config(&bootstrap, &[("acks", "all")]).create())??;
    produce(&producer, TOPIC, 0..100).await?;

    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
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
    let stateful_sets: Api<StatefulSet> = Api::namespaced(bed.client.clone(), NS);
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
    let (_, in_sync) = leader_and_in_sync(&producer, 0)?;
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
    let consumer: StreamConsumer = runner.with_cluster_dns(|| {
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

//! Failures of a managed `Cluster`'s brokers, run for real (the pod runner plays the
//! kubelet with real `tributary` processes, the operator runs as a process inside the
//! runner's DNS view): the pod leading a partition is deleted, then the process of the next
//! leader is SIGKILLed, while an acks=all producer writes, and no acknowledged message is
//! lost; a ConsumerGroup resource follows a group of the operated Cluster and resets it.
//!
//! With `TRIBUTARY_E2E_KUBECONFIG` set, the same runs on that cluster, with its operator and
//! its kubelets (`common::Platform`); there the broker is not SIGKILLed but its pod deleted
//! with a 1 s grace period.

mod common;

use std::time::Duration;

use anyhow::{ensure, Context as _, Result};
use common::{
    client_config, cluster_with_topic, ensure_exactly, leader_and_in_sync, operated, wait_until,
    Platform, Writer,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tributary_operator::controller::cluster::pod_is_ready;
use tributary_operator::crd::cluster::ClusterSpec;
use tributary_operator::crd::consumer_group::ConsumerGroup;

const WAIT: Duration = Duration::from_secs(120);
const CLUSTER: &str = "failover";
const TOPIC: &str = "payments";
const PARTITIONS: i32 = 3;

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
    wait_until(
        &format!("{name} back, Ready, and every ISR full"),
        WAIT,
        || async {
            let pod = pods.get_opt(name).await.ok()??;
            let replaced = match uid {
                Some(uid) => pod.uid().as_deref() != Some(uid),
                None => restarts_of(&pod) > restarts,
            };
            let (_, in_sync) = leader_and_in_sync(producer, TOPIC, 0).ok()?;
            (replaced && pod_is_ready(&pod) && in_sync).then_some(())
        },
        || async {
            format!(
                "pod {:?}, metadata {:?}",
                pods.get_opt(name).await.ok().flatten().map(|p| (
                    p.uid(),
                    restarts_of(&p),
                    pod_is_ready(&p)
                )),
                leader_and_in_sync(producer, TOPIC, 0).ok()
            )
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_leader_deleted_or_killed_loses_no_acknowledged_write() -> Result<()> {
    operated(CLUSTER, "failover", failover).await
}

async fn failover(p: &Platform) -> Result<()> {
    let bootstrap = cluster_with_topic(
        p,
        CLUSTER,
        ClusterSpec::managed(3),
        (TOPIC, PARTITIONS),
        WAIT,
    )
    .await?;
    let producer: FutureProducer = p.in_cluster(|| {
        client_config(
            &bootstrap,
            &[("acks", "all"), ("enable.idempotence", "true")],
        )
        .create()
    })??;
    let pods: Api<Pod> = p.api();
    let mut writer = Writer::start(&producer, TOPIC, None, 0);
    writer.wait_acked(0, 200, WAIT).await?;

    // The pod leading partition 0 is deleted: its broker gets SIGTERM, hands its
    // leaderships over, and the StatefulSet re-creates the pod on the same volume.
    let (leader, _) = leader_and_in_sync(&producer, TOPIC, 0)?;
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

    // The broker of the pod leading partition 0 now is killed: SIGKILL, no controlled
    // shutdown, and the runner restarts the container as a kubelet would (on an existing
    // cluster: the pod deleted with a 1 s grace period, see `Platform::kill_broker`).
    let (leader, _) = leader_and_in_sync(&producer, TOPIC, 0)?;
    let name = format!("{CLUSTER}-{leader}");
    let before = writer.acked();
    let replaced = p.kill_broker(&name).await?;
    writer.wait_acked(before, 200, WAIT).await?;
    wait_back(&pods, &producer, &name, replaced.as_deref(), 0).await?;
    eprintln!(
        "killed {name}'s broker (leader of partition 0): {} acknowledged meanwhile",
        writer.acked() - before
    );
    let before = writer.acked();
    writer.wait_acked(before, 100, WAIT).await?;
    let written = writer.stop().await?;

    // Every acknowledged message is there, each once (the producer is idempotent).
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
        written.acked,
        "after the failovers",
    )
    .await?;
    drop(consumer);

    consumer_group_flow(p, &bootstrap, written.acked).await
}

/// Part 1's ConsumerGroup flow on the operated Cluster: the status shows a group's members
/// and its real lag; a reset to the earliest offsets waits for the group to be empty, then
/// is applied, once.
async fn consumer_group_flow(p: &Platform, bootstrap: &str, messages: usize) -> Result<()> {
    const GROUP: &str = "billing";
    let groups: Api<ConsumerGroup> = p.api();
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
    let member: BaseConsumer = p.in_cluster(|| {
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

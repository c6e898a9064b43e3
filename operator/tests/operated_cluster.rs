//! A managed `Cluster` run for real: the operator (a process) applies the StatefulSet, the
//! test kit's pod runner plays the kubelet and runs each pod as a real `tributary broker`
//! process, and Kafka clients reach the brokers through the bootstrap Service's DNS name.
//! The operator is started inside the runner's DNS view, as it would run inside the
//! cluster, so it finds the brokers through `status.bootstrapServers` with no override.
//! Then a broker setting changes, and the operator restarts the brokers one at a time while
//! an acks=all producer writes; then the Cluster grows to 5 brokers, which get replicas,
//! and shrinks back to 3, whose leaving brokers are drained first.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use common::{wait_until, Bed, Operator, NS};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tributary_e2e_kit::{broker_binary, PodRunner, RunnerOptions};
use tributary_operator::crd::cluster::{Cluster, ClusterSpec};
use tributary_operator::crd::condition::find;
use tributary_operator::crd::topic::{DeletionPolicy, Topic, TopicSpec};
use tributary_operator::crd::ClusterRef;

const WAIT: Duration = Duration::from_secs(120);
const CLUSTER: &str = "main";
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const MESSAGES: usize = 300;

/// The Ready condition's (status, reason, message) once the status describes the latest
/// generation.
fn ready_of(
    status: Option<&Vec<tributary_operator::crd::Condition>>,
) -> Option<(String, String, String)> {
    let ready = find(status?, "Ready")?;
    Some((
        ready.status.clone(),
        ready.reason.clone(),
        ready.message.clone(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_cluster_runs_brokers_that_clients_and_topics_use() -> Result<()> {
    let bed = Bed::start().await?;
    let runner = PodRunner::start(
        &bed.env,
        RunnerOptions::new(NS, broker_binary()?)
            .selector(&format!("app.kubernetes.io/instance={CLUSTER}")),
    )?;
    let result = scenario(&bed, &runner).await;
    if result.is_err() {
        runner.print_logs(80);
    }
    result
}

async fn scenario(bed: &Bed, runner: &PodRunner) -> Result<()> {
    // Inside the runner's DNS view, as a pod of the cluster would be.
    let _operator = runner.with_cluster_dns(|| Operator::start(&bed.env, "operated", &[]))??;
    bed.managed_cluster(CLUSTER, ClusterSpec::managed(3), &[])
        .await?;

    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    let ready = wait_until(
        "the managed Cluster to be Ready",
        WAIT,
        || async {
            let c = clusters.get_opt(CLUSTER).await.ok()??;
            let status = c.status.as_ref()?;
            (status.observed_generation == c.metadata.generation
                && ready_of(Some(&status.conditions)).is_some_and(|(s, _, _)| s == "True"))
            .then_some(c)
        },
        || async {
            format!(
                "{:?}",
                clusters
                    .get_opt(CLUSTER)
                    .await
                    .ok()
                    .flatten()
                    .map(|c| c.status)
            )
        },
    )
    .await?;
    let status = ready.status.context("status")?;
    let bootstrap = status
        .bootstrap_servers
        .clone()
        .context("bootstrapServers")?;
    assert_eq!(bootstrap, format!("{CLUSTER}-bootstrap.{NS}.svc:9092"));
    assert_eq!(status.ready_brokers, Some(3), "{status:?}");
    assert!(
        status.controller_id.is_some_and(|c| (0..3).contains(&c)),
        "{status:?}"
    );

    // A Topic on the operated Cluster becomes a topic on its brokers.
    let topics: Api<Topic> = Api::namespaced(bed.client.clone(), NS);
    topics
        .create(
            &PostParams::default(),
            &Topic::new(
                TOPIC,
                TopicSpec {
                    cluster_ref: ClusterRef {
                        name: CLUSTER.into(),
                    },
                    topic_name: None,
                    partitions: PARTITIONS,
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
            let t = topics.get_opt(TOPIC).await.ok()??;
            let status = t.status.as_ref()?;
            ready_of(Some(&status.conditions))
                .is_some_and(|(s, _, _)| s == "True")
                .then_some(())
        },
        || async {
            format!(
                "{:?}",
                topics.get_opt(TOPIC).await.ok().flatten().map(|t| t.status)
            )
        },
    )
    .await?;

    // Produce with acks=all and read everything back, through the bootstrap Service.
    let config = |extra: &[(&str, &str)]| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &bootstrap)
            .set("socket.timeout.ms", "10000");
        for (k, v) in extra {
            c.set(*k, *v);
        }
        c
    };
    let producer: FutureProducer = runner.with_cluster_dns(|| {
        config(&[("acks", "all"), ("enable.idempotence", "true")]).create()
    })??;
    for i in 0..MESSAGES {
        let value = format!("message {i}");
        producer
            .send(
                FutureRecord::to(TOPIC)
                    .key(&format!("k{i}"))
                    .payload(&value),
                Duration::from_secs(60),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing message {i}: {e}"))?;
    }
    let consumer: StreamConsumer = runner.with_cluster_dns(|| {
        config(&[("group.id", "operated"), ("enable.auto.commit", "false")]).create()
    })??;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < MESSAGES {
        let left = deadline.saturating_duration_since(Instant::now());
        let message =
            tokio::time::timeout(left, rdkafka::consumer::StreamConsumer::recv(&consumer))
                .await
                .with_context(|| format!("consumed {} of {MESSAGES} messages", seen.len()))??;
        seen.insert(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
    }
    let want: BTreeSet<String> = (0..MESSAGES).map(|i| format!("message {i}")).collect();
    ensure!(seen == want, "consumed other messages than were produced");

    roll_under_load(bed, runner, &producer, consumer, &bootstrap).await?;
    scale_out_and_in(bed, runner, &producer, &bootstrap).await
}

/// Which brokers hold replicas of `TOPIC`, and whether every partition's ISR is full, as
/// the brokers' Metadata says.
fn placement(producer: &FutureProducer) -> Result<(BTreeSet<i32>, bool)> {
    use rdkafka::producer::Producer;
    let metadata = producer
        .client()
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))?;
    let topic = metadata.topics().first().context("no topic in Metadata")?;
    let mut holders = BTreeSet::new();
    let mut in_sync = true;
    for p in topic.partitions() {
        holders.extend(p.replicas().iter().copied());
        in_sync &= p.isr().len() == p.replicas().len();
    }
    Ok((holders, in_sync))
}

/// 3 -> 5 brokers: the new ones get replicas; 5 -> 3: the two leaving are drained before
/// their pods go, and every message is still there.
async fn scale_out_and_in(
    bed: &Bed,
    runner: &PodRunner,
    producer: &FutureProducer,
    bootstrap: &str,
) -> Result<()> {
    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    let stateful_sets: Api<StatefulSet> = Api::namespaced(bed.client.clone(), NS);
    let scaling_settled = |c: &Cluster| {
        c.status
            .as_ref()
            .and_then(|s| find(&s.conditions, "Scaling"))
            .is_some_and(|r| r.status == "False" && r.reason == "BrokersMatchSpec")
    };
    for (brokers, want) in [
        (5, (0..5).collect::<BTreeSet<i32>>()),
        (3, (0..3).collect()),
    ] {
        clusters
            .patch(
                CLUSTER,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"brokers": brokers}})),
            )
            .await?;
        wait_until(
            &format!("{brokers} brokers holding {TOPIC}'s replicas on {want:?}"),
            WAIT * 2,
            || async {
                let c = clusters.get_opt(CLUSTER).await.ok()??;
                let s = stateful_sets.get_opt(CLUSTER).await.ok()??;
                let (holders, in_sync) = placement(producer).ok()?;
                (c.status.as_ref()?.ready_brokers == Some(brokers)
                    && scaling_settled(&c)
                    && s.spec?.replicas == Some(brokers)
                    && holders == want
                    && in_sync)
                    .then_some(())
            },
            || async {
                format!(
                    "placement {:?}, status {:?}",
                    placement(producer).ok(),
                    clusters
                        .get_opt(CLUSTER)
                        .await
                        .ok()
                        .flatten()
                        .map(|c| c.status)
                )
            },
        )
        .await?;
        eprintln!("scaled to {brokers}: replicas on {want:?}");
    }

    // Nothing was lost on the way: every message written so far is still there.
    let consumer: StreamConsumer = runner.with_cluster_dns(|| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("group.id", "after-scaling")
            .set("enable.auto.commit", "false");
        c.create()
    })??;
    let mut assignment = TopicPartitionList::new();
    let mut total = 0i64;
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(TOPIC, p, Offset::Beginning)?;
        let (low, high) = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        ensure!(low == 0, "partition {p} starts at {low}");
        total += high;
    }
    consumer.assign(&assignment)?;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (seen.len() as i64) < total {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .with_context(|| format!("consumed {} of {total} after scaling", seen.len()))??;
        seen.insert(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
    }
    let want: BTreeSet<String> = (0..total as usize)
        .map(|i| format!("message {i}"))
        .collect();
    ensure!(
        seen == want,
        "after scaling, the partitions hold other messages"
    );
    Ok(())
}

/// A broker setting changes: the operator restarts the brokers one at a time (never two
/// down at once), each with its new configuration, while an acks=all producer keeps
/// writing; no delivery fails, and every acknowledged message is read back.
async fn roll_under_load(
    bed: &Bed,
    runner: &PodRunner,
    producer: &FutureProducer,
    consumer: StreamConsumer,
    bootstrap: &str,
) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(bed.client.clone(), NS);
    let uids = |list: &[Pod]| -> BTreeMap<String, String> {
        list.iter()
            .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
            .collect()
    };
    let selector = format!("app.kubernetes.io/instance={CLUSTER}");
    let before = uids(
        &pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items,
    );
    ensure!(before.len() == 3, "pods before the roll: {before:?}");

    // Keep writing through the roll, from another task.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let producer = producer.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked = 0usize;
            let mut i = MESSAGES;
            while !stop.load(Ordering::Relaxed) {
                let value = format!("message {i}");
                producer
                    .send(
                        FutureRecord::to(TOPIC)
                            .key(&format!("k{i}"))
                            .payload(&value),
                        Duration::from_secs(60),
                    )
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("producing message {i} in the roll: {e}"))?;
                acked += 1;
                i += 1;
            }
            anyhow::Ok(acked)
        })
    };

    let clusters: Api<Cluster> = Api::namespaced(bed.client.clone(), NS);
    clusters
        .patch(
            CLUSTER,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"config": {"log.retention.ms": "3600000"}}})),
        )
        .await?;

    // Poll until every pod is a new one, running the new template, and ready; meanwhile
    // never two brokers down at once.
    let deadline = Instant::now() + WAIT * 3;
    let mut most_down = 0usize;
    loop {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await?
            .items;
        let ready = list
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
            })
            .count();
        most_down = most_down.max(3usize.saturating_sub(ready));
        let now = uids(&list);
        let all_new = now.len() == 3 && now.iter().all(|(name, uid)| before.get(name) != Some(uid));
        let c = clusters.get(CLUSTER).await?;
        let rolled = c
            .status
            .as_ref()
            .and_then(|s| find(&s.conditions, "Rolling"))
            .is_some_and(|r| r.status == "False" && r.reason == "UpToDate");
        if all_new && ready == 3 && rolled {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the roll did not finish: pods {now:?} (before {before:?}), {ready} ready, status {:?}",
            c.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        most_down <= 1,
        "{most_down} brokers were down at once during the roll"
    );
    let exits: Vec<_> = ["main-0", "main-1", "main-2"]
        .iter()
        .flat_map(|pod| runner.exits(pod))
        .collect();
    ensure!(
        exits.iter().all(|e| e.exit_code == 0),
        "a broker did not stop cleanly on SIGTERM: {exits:?}"
    );

    stop.store(true, Ordering::Relaxed);
    let acked = writer.await??;
    ensure!(acked > 0, "nothing was written during the roll");
    let total = MESSAGES + acked;
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // A new consumer: the first one's connections were cut by the restarts, which
    // librdkafka reports (transport failures) before it reconnects.
    drop(consumer);
    let consumer: StreamConsumer = runner.with_cluster_dns(|| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("group.id", "after-roll")
            .set("enable.auto.commit", "false");
        c.create()
    })??;
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(TOPIC, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    while seen.len() < total {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .with_context(|| {
                format!("consumed {} of {total} messages after the roll", seen.len())
            })??;
        seen.insert(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
    }
    let want: BTreeSet<String> = (0..total).map(|i| format!("message {i}")).collect();
    ensure!(
        seen == want,
        "after the roll, consumed other messages than were acknowledged"
    );
    eprintln!("roll: {acked} messages acknowledged during it, at most {most_down} broker down");
    Ok(())
}

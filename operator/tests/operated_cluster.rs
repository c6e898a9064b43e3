//! A managed `Cluster` run for real: the operator (a process) applies the StatefulSet, the
//! test kit's pod runner plays the kubelet and runs each pod as a real `tributary broker`
//! process, and Kafka clients reach the brokers through the bootstrap Service's DNS name.
//! The operator is started inside the runner's DNS view, as it would run inside the
//! cluster, so it finds the brokers through `status.bootstrapServers` with no override.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use common::{wait_until, Bed, Operator, NS};
use kube::api::{Api, PostParams};
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
    Ok(())
}

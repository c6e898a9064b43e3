//! A managed `Cluster` run for real: the operator (a process) applies the StatefulSet, the
//! test kit's pod runner plays the kubelet and runs each pod as a real `tributary broker`
//! process, and Kafka clients reach the brokers through the bootstrap Service's DNS name.
//! The operator is started inside the runner's DNS view, as it would run inside the
//! cluster, so it finds the brokers through `status.bootstrapServers` with no override.
//! Then a broker setting changes, and the operator restarts the brokers one at a time while
//! an acks=all producer writes and a consumer group reads; then the Cluster grows to 5
//! brokers, which get replicas, and shrinks back to 3, whose leaving brokers are drained
//! first.
//!
//! With `TRIBUTARY_E2E_KUBECONFIG` set, the same runs on that cluster, with its operator and
//! its kubelets (`common::Platform`; on kind, from a Job: `scripts/kind-e2e.sh test`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use common::{
    client_config, ensure_all, ensure_exactly, operated, produce, read_back, topic, wait_for,
    wait_ready, wait_until, Platform, Writer,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;
use rdkafka::Message;
use tributary_operator::controller::cluster::pod_is_ready;
use tributary_operator::crd::cluster::{Cluster, ClusterSpec};
use tributary_operator::crd::condition::find;
use tributary_operator::crd::topic::Topic;

const WAIT: Duration = Duration::from_secs(120);
const CLUSTER: &str = "main";
const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const MESSAGES: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_cluster_runs_brokers_that_clients_and_topics_use() -> Result<()> {
    operated(CLUSTER, "operated", scenario).await
}

async fn scenario(p: &Platform) -> Result<()> {
    p.managed_cluster(CLUSTER, ClusterSpec::managed(3)).await?;

    let clusters: Api<Cluster> = p.api();
    let ready = wait_ready(&clusters, CLUSTER, WAIT).await?;
    let status = ready.status.context("status")?;
    let bootstrap = status
        .bootstrap_servers
        .clone()
        .context("bootstrapServers")?;
    assert_eq!(
        bootstrap,
        format!("{CLUSTER}-bootstrap.{}.svc:9092", p.namespace())
    );
    assert_eq!(status.ready_brokers, Some(3), "{status:?}");
    assert!(
        status.controller_id.is_some_and(|c| (0..3).contains(&c)),
        "{status:?}"
    );

    // A Topic on the operated Cluster becomes a topic on its brokers.
    let topics: Api<Topic> = p.api();
    topics
        .create(
            &PostParams::default(),
            &topic(TOPIC, CLUSTER, PARTITIONS, 3),
        )
        .await?;
    wait_ready(&topics, TOPIC, WAIT).await?;

    // Produce with acks=all and read everything back, through the bootstrap Service.
    let producer: FutureProducer = p.in_cluster(|| {
        client_config(
            &bootstrap,
            &[("acks", "all"), ("enable.idempotence", "true")],
        )
        .create()
    })??;
    produce(&producer, TOPIC, 0..MESSAGES).await?;
    let consumer: StreamConsumer = p.in_cluster(|| {
        client_config(
            &bootstrap,
            &[("group.id", "operated"), ("enable.auto.commit", "false")],
        )
        .create()
    })??;
    let seen = read_back(&consumer, TOPIC, PARTITIONS, MESSAGES, WAIT).await?;
    ensure_all(&seen, MESSAGES, "before the roll")?;
    drop(consumer);

    let written = roll_under_load(p, &producer, &bootstrap, MESSAGES).await?;
    scale_out_and_in(p, &producer, &bootstrap, written).await
}

/// Which brokers hold replicas of `TOPIC`, whether every partition's ISR is full, and
/// which brokers Metadata lists (every registered one, fenced ones included), as the brokers'
/// Metadata says.
fn placement(producer: &FutureProducer) -> Result<(BTreeSet<i32>, bool, BTreeSet<i32>)> {
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
    let listed = metadata.brokers().iter().map(|b| b.id()).collect();
    Ok((holders, in_sync, listed))
}

/// 3 -> 5 brokers: the new ones get replicas; 5 -> 3: the two leaving are drained before
/// their pods go, then unregistered, so Metadata lists the three left; and every one of the
/// `written` messages is still there.
async fn scale_out_and_in(
    p: &Platform,
    producer: &FutureProducer,
    bootstrap: &str,
    written: usize,
) -> Result<()> {
    let clusters: Api<Cluster> = p.api();
    let stateful_sets: Api<StatefulSet> = p.api();
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
                let (holders, in_sync, listed) = placement(producer).ok()?;
                (c.status.as_ref()?.ready_brokers == Some(brokers)
                    && scaling_settled(&c)
                    && s.spec?.replicas == Some(brokers)
                    && holders == want
                    && in_sync
                    && listed == want)
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
    let consumer: StreamConsumer = p.in_cluster(|| {
        client_config(
            bootstrap,
            &[
                ("group.id", "after-scaling"),
                ("enable.auto.commit", "false"),
            ],
        )
        .create()
    })??;
    ensure_exactly(&consumer, TOPIC, PARTITIONS, written, "after scaling").await
}

/// Counts a group consumer's assignments and the errors librdkafka reports to it.
#[derive(Default)]
struct GroupWatch {
    assignments: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl ClientContext for GroupWatch {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors
            .lock()
            .unwrap()
            .push(format!("{error} ({reason})"));
    }
}

impl ConsumerContext for GroupWatch {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.assignments.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether a client error is the notice of a connection a stopping broker closed, which
/// librdkafka reports before it reconnects, rather than a failure.
fn is_cut_connection(error: &str) -> bool {
    error.contains("Broker transport failure") || error.contains("Disconnected")
}

/// A broker setting changes: the operator restarts the brokers one at a time (never two
/// down at once), each with its new configuration, while an acks=all producer keeps
/// writing and a consumer group reads; no delivery fails, the group is not rebalanced
/// over and over, and every acknowledged message is read back. Returns how many messages
/// the topic holds after it.
async fn roll_under_load(
    p: &Platform,
    producer: &FutureProducer,
    bootstrap: &str,
    written: usize,
) -> Result<usize> {
    let pods: Api<Pod> = p.api();
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

    // A consumer group member reading through the roll, committing as it goes.
    let group: Arc<StreamConsumer<GroupWatch>> = Arc::new(p.in_cluster(|| {
        client_config(
            bootstrap,
            &[
                ("group.id", "through-the-roll"),
                ("auto.offset.reset", "earliest"),
                ("auto.commit.interval.ms", "200"),
            ],
        )
        .create_with_context(GroupWatch::default())
    })??);
    group.subscribe(&[TOPIC])?;
    let consumed = Arc::new(Mutex::new(BTreeSet::new()));
    let reader = {
        let group = group.clone();
        let consumed = consumed.clone();
        tokio::spawn(async move {
            loop {
                match group.recv().await {
                    Ok(m) => {
                        consumed.lock().unwrap().insert(
                            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                        );
                    }
                    Err(e) if is_cut_connection(&e.to_string()) => {
                        group.context().errors.lock().unwrap().push(e.to_string())
                    }
                    Err(e) => return Err(anyhow::anyhow!("the group consumer failed: {e}")),
                }
            }
        })
    };
    // The group has its assignment before the roll starts.
    wait_for("the group's first assignment", WAIT, || async {
        (group.context().assignments.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await?;

    // Keep writing through the roll, from another task.
    let writer = Writer::start(producer, TOPIC, None, written);

    let clusters: Api<Cluster> = p.api();
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
        let ready = list.iter().filter(|pod| pod_is_ready(pod)).count();
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
    // Where the test sees how the brokers' processes ended (here), each stopped with 0.
    let exits: Vec<_> = ["main-0", "main-1", "main-2"]
        .iter()
        .filter_map(|pod| p.exits(pod))
        .flatten()
        .collect();
    ensure!(
        exits.iter().all(|e| e.exit_code == 0),
        "a broker did not stop cleanly on SIGTERM: {exits:?}"
    );

    let acked = writer.stop().await?.acked;
    ensure!(acked > 0, "nothing was written during the roll");
    let total = written + acked;

    // The group read everything (at least once), without a rebalance storm: one
    // assignment at the start, and at most one more per restarted broker (a member whose
    // coordinator moved may have to join again).
    wait_until(
        "the group to read every acknowledged message",
        WAIT,
        || async {
            if reader.is_finished() {
                return Some(());
            }
            (consumed.lock().unwrap().len() >= total).then_some(())
        },
        || async { format!("{} of {total}", consumed.lock().unwrap().len()) },
    )
    .await?;
    if reader.is_finished() {
        reader.await??;
        unreachable!("the reader only ends with an error");
    }
    reader.abort();
    ensure_all(
        &consumed.lock().unwrap(),
        total,
        "the group, through the roll",
    )?;
    let assignments = group.context().assignments.load(Ordering::Relaxed);
    let errors = group.context().errors.lock().unwrap().clone();
    ensure!(
        assignments <= 4,
        "the group was assigned its partitions {assignments} times in a roll of 3 brokers"
    );
    ensure!(
        errors.iter().all(|e| is_cut_connection(e)),
        "the group consumer saw errors other than cut connections: {errors:?}"
    );

    // A new consumer reads every acknowledged message.
    let consumer: StreamConsumer = p.in_cluster(|| {
        client_config(
            bootstrap,
            &[("group.id", "after-roll"), ("enable.auto.commit", "false")],
        )
        .create()
    })??;
    ensure_exactly(&consumer, TOPIC, PARTITIONS, total, "after the roll").await?;
    eprintln!(
        "roll: {acked} messages acknowledged during it, at most {most_down} broker down; \
         group assigned {assignments} times, {} cut-connection notices",
        errors.len()
    );
    Ok(total)
}

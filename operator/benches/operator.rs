//! How long the operator takes to turn resources into Kafka state, against doing the same
//! through the admin API directly, in one run on one machine (a real kube-apiserver, three
//! real brokers, the operator binary):
//!
//! - Topic applied -> first acks=all write acknowledged, against CreateTopics -> the same;
//! - `partitions` raised -> first acks=all write to a new partition acknowledged, against
//!   CreatePartitions -> the same;
//! - 200 Topics applied at once -> all Ready, against 200 CreateTopics -> all led;
//! - the operator's RSS after that.
//!
//! ```text
//! cargo build --release -p tributary
//! cargo bench -p tributary-operator --bench operator -- [TRIALS] [TOPICS]
//! ```

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{wait_for, Bed, Brokers, Operator, NS};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tributary_admin::{Admin, NewTopic};
use tributary_operator::crd::condition::find;
use tributary_operator::crd::topic::{DeletionPolicy, Topic, TopicSpec};
use tributary_operator::crd::ClusterRef;

const WAIT: Duration = Duration::from_secs(120);

fn topic(name: &str, partitions: i32, rf: i32) -> Topic {
    Topic::new(
        name,
        TopicSpec {
            cluster_ref: ClusterRef {
                name: "main".into(),
            },
            topic_name: None,
            partitions,
            replication_factor: Some(rf),
            config: Default::default(),
            deletion_policy: DeletionPolicy::Delete,
        },
    )
}

/// Sends one acks=all record to `topic`/`partition` until one is acknowledged. A topic or
/// partition that does not exist yet fails the record; librdkafka refreshes its metadata
/// (every 100 ms here) and the next try goes out, so this measures when it starts to exist
/// to within about that.
async fn first_write(bootstrap: &str, topic: &str, partition: i32) -> Duration {
    let started = Instant::now();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        .set("topic.metadata.refresh.fast.interval.ms", "100")
        .set("topic.metadata.refresh.interval.ms", "100")
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let deadline = started + Duration::from_secs(60);
    loop {
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key("k")
            .payload("v");
        match producer.send(record, Duration::from_secs(60)).await {
            Ok(_) => break,
            // Not there yet: librdkafka refreshes its metadata and the next try sees it.
            Err((e, _)) if Instant::now() < deadline => {
                tracing_retry(&e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err((e, _)) => panic!("first write to {topic}-{partition} failed: {e}"),
        }
    }
    started.elapsed()
}

fn tracing_retry(e: &rdkafka::error::KafkaError) {
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        eprintln!("retrying: {e}");
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn all_ready(api: &Api<Topic>, prefix: &str, count: usize) -> bool {
    let Ok(list) = api.list(&ListParams::default()).await else {
        return false;
    };
    list.items
        .iter()
        .filter(|t| {
            t.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .filter(|t| {
            t.status
                .as_ref()
                .and_then(|s| find(&s.conditions, "Ready"))
                .is_some_and(|c| c.is_true())
        })
        .count()
        == count
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the numbers are the positional arguments.
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let trials = numbers.first().copied().unwrap_or(10);
    let many = numbers.get(1).copied().unwrap_or(200);

    let bed = Bed::start().await?;
    let brokers = Brokers::start(3)?;
    bed.cluster("main", &brokers.bootstrap).await?;
    // The operator's default intervals, as a user runs it.
    let operator = Operator::start(
        &bed.env,
        "bench",
        &[
            "--topic-resync-interval",
            "30s",
            "--group-refresh-interval",
            "10s",
            "--cluster-refresh-interval",
            "30s",
        ],
    )?;
    let admin = Admin::connect(&brokers.bootstrap).await?;
    let api: Api<Topic> = Api::namespaced(bed.client.clone(), NS);
    let b = &brokers.bootstrap;

    // Warm-up: the operator's first reconcile also connects it to the brokers.
    api.create(&PostParams::default(), &topic("warmup", 1, 3))
        .await?;
    first_write(b, "warmup", 0).await;

    let (mut applied, mut direct_create) = (Vec::new(), Vec::new());
    let (mut raised, mut direct_raise) = (Vec::new(), Vec::new());
    // A B A B: each trial does the operator's path and the direct one back to back.
    for i in 0..trials {
        let name = format!("op-{i}");
        let started = Instant::now();
        api.create(&PostParams::default(), &topic(&name, 3, 3))
            .await?;
        first_write(b, &name, 0).await;
        applied.push(started.elapsed());

        let name = format!("direct-{i}");
        let started = Instant::now();
        admin.create_topic(&NewTopic::new(&name, 3, 3)).await?;
        first_write(b, &name, 0).await;
        direct_create.push(started.elapsed());

        let name = format!("op-{i}");
        wait_for("Topic Ready before raising", WAIT, || async {
            api.get(&name)
                .await
                .ok()?
                .status
                .and_then(|s| find(&s.conditions, "Ready").cloned())
                .filter(|c| c.is_true())
        })
        .await?;
        let started = Instant::now();
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"partitions": 6}})),
        )
        .await?;
        first_write(b, &name, 5).await;
        raised.push(started.elapsed());

        let name = format!("direct-{i}");
        let started = Instant::now();
        admin.create_partitions(&name, 6).await?;
        first_write(b, &name, 5).await;
        direct_raise.push(started.elapsed());
    }

    // Many at once: the operator against the admin API creating as many.
    let started = Instant::now();
    for i in 0..many {
        api.create(
            &PostParams::default(),
            &topic(&format!("many-{i:03}"), 1, 3),
        )
        .await?;
    }
    wait_for("every Topic Ready", WAIT, || async {
        all_ready(&api, "many-", many).await.then_some(())
    })
    .await?;
    let many_ready = started.elapsed();
    let started = Instant::now();
    for i in 0..many {
        admin
            .create_topic(&NewTopic::new(format!("bulk-{i:03}"), 1, 3))
            .await?;
    }
    wait_for("every direct topic led", WAIT, || async {
        let topics = admin.describe_topics(None).await.ok()?;
        let led = topics
            .iter()
            .filter(|t| t.name.starts_with("bulk-"))
            .filter(|t| t.partitions.iter().all(|p| p.leader.is_some()))
            .count();
        (led == many).then_some(())
    })
    .await?;
    let many_direct = started.elapsed();

    let pid = operator.pid();
    let (rss, hwm) = (rss_kib(pid, "VmRSS:"), rss_kib(pid, "VmHWM:"));

    println!("| what | operator | direct admin API | ratio |");
    println!("|---|--:|--:|--:|");
    for (what, op, direct) in [
        (
            "Topic applied -> first acks=all write, median ms",
            median(applied.clone()),
            median(direct_create.clone()),
        ),
        (
            "partitions raised -> first write to a new partition, median ms",
            median(raised.clone()),
            median(direct_raise.clone()),
        ),
        (
            "max of the above over the trials, ms",
            applied
                .iter()
                .chain(&raised)
                .max()
                .copied()
                .unwrap_or_default(),
            direct_create
                .iter()
                .chain(&direct_raise)
                .max()
                .copied()
                .unwrap_or_default(),
        ),
    ] {
        println!(
            "| {what} | {:.0} | {:.0} | {:.2} |",
            ms(op),
            ms(direct),
            ms(op) / ms(direct)
        );
    }
    println!(
        "| {many} Topics applied at once -> all Ready, ms | {:.0} | {:.0} | {:.2} |",
        ms(many_ready),
        ms(many_direct),
        ms(many_ready) / ms(many_direct)
    );
    println!(
        "| operator RSS after that, MiB (peak) | {:.1} ({:.1}) | | |",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!(
        "\n{trials} trials; each trial runs the operator's path and the direct one back to back."
    );
    Ok(())
}

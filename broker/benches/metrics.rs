//! Criterion benchmarks for what metrics cost the broker: the per-request recording on the
//! hot path (one request counter and one latency histogram update by API key, alone and
//! with two threads recording the same API at once; the per-topic bytes and messages
//! counters of an append; the scan for error codes in a response), with a bare atomic add
//! as the baseline measured in the same run, and one `/metrics` scrape of a broker leading
//! 1,000 partitions (100 topics of 10), which walks every partition under its lock.
//!
//! Measurement times are short so `cargo bench -- --test` (CI) and a full run stay quick.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceResponse, ResponseKind};
use tributary::controller::{BrokerRecord, MetadataImage, PartitionRecord, TopicRecord};
use tributary::group::coordinator::{CoordinatorConfig, GroupCoordinator};
use tributary::metrics::{self, BrokerMetrics, StateCollector};
use tributary::server::config::BrokerConfig;
use tributary::server::replica_manager::ReplicaManager;

const TOPICS: usize = 100;
const PARTITIONS_PER_TOPIC: usize = 10;

fn recording(c: &mut Criterion) {
    let metrics = BrokerMetrics::new();
    let topic = metrics.topic("orders");
    let baseline = AtomicU64::new(0);
    let response = ResponseKind::Produce(ProduceResponse::default().with_responses(vec![
        TopicProduceResponse::default().with_partition_responses(vec![
            PartitionProduceResponse::default(),
        ]),
    ]));
    let mut group = c.benchmark_group("metrics");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    group.bench_function("baseline_atomic_add", |b| {
        b.iter(|| black_box(baseline.fetch_add(black_box(1), Ordering::Relaxed)))
    });
    group.bench_function("record_request", |b| {
        b.iter(|| {
            metrics.record_request(
                black_box(ApiKey::Produce),
                black_box(Duration::from_micros(420)),
                false,
            )
        })
    });
    group.bench_function("record_request_2_threads_same_api", |b| {
        // Both threads record Produce: the histogram's lock is shared, the worst case for
        // connections that all produce.
        b.iter_custom(|iters| {
            let started = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    s.spawn(|| {
                        for _ in 0..iters {
                            metrics.record_request(
                                black_box(ApiKey::Produce),
                                black_box(Duration::from_micros(420)),
                                false,
                            );
                        }
                    });
                }
            });
            started.elapsed()
        })
    });
    group.bench_function("topic_appended", |b| {
        b.iter(|| topic.appended(black_box(16_384), black_box(16)))
    });
    group.bench_function("carries_error_produce_1_partition", |b| {
        b.iter(|| black_box(metrics::carries_error(black_box(&response))))
    });
    group.finish();
}

/// A replica manager that leads 1,000 partitions (replicas 0, 1, 2; ISR 0, 1, so every
/// one is under-replicated), with a few bytes in each log.
fn broker_with_partitions(dir: &std::path::Path) -> Arc<ReplicaManager> {
    let config = BrokerConfig {
        broker_id: 0,
        log_dir: dir.to_path_buf(),
        ..Default::default()
    };
    let replicas = Arc::new(ReplicaManager::new(Arc::new(config)));
    let mut image = MetadataImage {
        cluster_id: "bench".into(),
        ..Default::default()
    };
    for id in 0..3 {
        image.brokers.insert(
            id,
            BrokerRecord {
                id,
                incarnation: if id == 0 {
                    replicas.incarnation()
                } else {
                    uuid::Uuid::new_v4()
                },
                host: "localhost".into(),
                port: 9092 + id,
                rack: None,
                rpc_addr: format!("localhost:{}", 9192 + id),
                fenced: false,
                shutting_down: false,
            },
        );
    }
    for t in 0..TOPICS {
        let name = format!("topic-{t:03}");
        let assignments = (0..PARTITIONS_PER_TOPIC)
            .map(|_| PartitionRecord {
                replicas: vec![0, 1, 2],
                isr: vec![0, 1],
                leader: 0,
                leader_epoch: 1,
                partition_epoch: 1,
                adding_replicas: Vec::new(),
                removing_replicas: Vec::new(),
            })
            .collect();
        image.topics.insert(
            name.clone(),
            TopicRecord {
                name,
                topic_id: uuid::Uuid::new_v4(),
                partitions: PARTITIONS_PER_TOPIC as i32,
                configs: BTreeMap::new(),
                assignments,
            },
        );
    }
    replicas.apply_image(1, Arc::new(image));
    let value = [7u8; 100];
    let batch = tributary::log::build_batch(0, 1_700_000_000_000, &[(None, Some(&value[..]))]);
    for partition in replicas.all_partitions() {
        let mut records = batch.clone();
        partition
            .append_as_leader(&mut records, 1_700_000_000_000, false, 1)
            .expect("append");
    }
    replicas
}

fn scrape(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let replicas = broker_with_partitions(dir.path());
    assert_eq!(
        replicas.all_partitions().len(),
        TOPICS * PARTITIONS_PER_TOPIC
    );
    let groups = Arc::new(groups_of(&replicas));
    let state = StateCollector::new(replicas.clone(), groups.clone(), || Some(0));
    let registry = metrics::registry(replicas.metrics(), state);
    let body = metrics::encode(&registry);
    assert!(body.contains("tributary_under_replicated_partitions 1000\n"));
    eprintln!(
        "one scrape of {} partitions: {} bytes, {} samples",
        TOPICS * PARTITIONS_PER_TOPIC,
        body.len(),
        body.lines().filter(|l| !l.starts_with('#')).count()
    );
    let mut group = c.benchmark_group("metrics");
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(20);
    group.bench_function("scrape_1000_partitions", |b| {
        b.iter(|| black_box(metrics::encode(&registry)))
    });
    group.bench_function("state_snapshot_1000_partitions", |b| {
        let state = StateCollector::new(replicas.clone(), groups.clone(), || Some(0));
        b.iter(|| black_box(state.snapshot()))
    });
    group.finish();
}

/// A group coordinator with the broker's default settings and no groups.
fn groups_of(replicas: &Arc<ReplicaManager>) -> GroupCoordinator {
    GroupCoordinator::new(
        replicas.clone(),
        CoordinatorConfig::from_broker(replicas.config()),
    )
}

criterion_group!(benches, recording, scrape);
criterion_main!(benches);

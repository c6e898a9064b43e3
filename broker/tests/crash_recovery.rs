//! Crash and restart: acknowledged writes survive `kill -9`, a damaged segment tail is
//! truncated on restart, and SIGTERM shuts down cleanly with exit status 0.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;

/// Checks a partition against what producers were told: every acknowledged
/// (offset → value) is there, offsets run 0..high watermark without gaps.
fn verify_acknowledged(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    acked: &BTreeMap<i64, Vec<u8>>,
) -> i64 {
    let (low, high) = watermarks(bootstrap, topic, partition);
    assert_eq!(low, 0, "{topic}-{partition}: log start offset");
    if let Some((&last, _)) = acked.last_key_value() {
        assert!(
            high > last,
            "{topic}-{partition}: high watermark {high} lost acknowledged offset {last}"
        );
    }
    let got = consume_partition(bootstrap, topic, partition, Offset::Beginning, high);
    for (n, m) in got.iter().enumerate() {
        assert_eq!(
            m.offset, n as i64,
            "{topic}-{partition}: offsets must be contiguous"
        );
    }
    assert_eq!(
        got.len() as i64,
        high,
        "{topic}-{partition}: every offset below the high watermark"
    );
    for (&offset, value) in acked {
        assert_eq!(
            got[offset as usize].value.as_deref(),
            Some(&value[..]),
            "{topic}-{partition}: acknowledged offset {offset} holds another value"
        );
    }
    high
}

#[test]
fn acks_all_messages_survive_kill_9() {
    const PARTITIONS: i32 = 2;
    let mut broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "durable",
        PARTITIONS,
        &[("segment.bytes", "65536")],
    );

    // Producer thread: unique sequential values until told to stop. Delivery reports are
    // collected by the producer's context.
    let producer = std::sync::Arc::new(producer(
        &bootstrap,
        &[
            ("acks", "all"),
            ("linger.ms", "2"),
            ("message.timeout.ms", "30000"),
            ("retries", "1000000"),
        ],
    ));
    let stop = stop_flag();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let producer = producer.clone();
        let stop = stop.clone();
        let sent = sent.clone();
        thread::spawn(move || {
            let mut seq = 0usize;
            while !is_set(&stop) {
                let value = format!("seq-{seq:08}");
                let key = format!("k{}", seq % 13);
                let record = BaseRecord::with_opaque_to("durable", seq)
                    .key(key.as_bytes())
                    .payload(value.as_bytes());
                match producer.send(record) {
                    Ok(()) => {
                        seq += 1;
                        sent.store(seq, Ordering::SeqCst);
                    }
                    // Queue full (or broker gone): back off briefly and retry.
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
                if seq % 200 == 0 {
                    // Keep the in-flight window small so that the crash lands mid-stream.
                    thread::sleep(Duration::from_millis(1));
                }
            }
        })
    };
    let deliveries = producer.context().deliveries.clone();
    let acked_ok = || {
        deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.error.is_none())
            .count()
    };
    wait_until(
        Duration::from_secs(40),
        "3000 messages are acknowledged",
        || acked_ok() >= 3000,
    );

    broker.kill9();
    let acked_at_kill = acked_ok();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let sent_total = sent.load(Ordering::SeqCst);
    assert!(
        sent_total > acked_at_kill,
        "the kill must land mid-stream ({sent_total} sent, {acked_at_kill} acked)"
    );

    broker.restart();
    let bootstrap = broker.bootstrap();
    // Messages still queued in the client are delivered to the restarted broker (same port)
    // or fail; either way each gets exactly one report.
    let _ = producer.flush(Duration::from_secs(40));
    let reports = deliveries.lock().unwrap().clone();
    assert!(reports.len() >= acked_ok().min(3000));

    let mut acked: BTreeMap<i32, BTreeMap<i64, Vec<u8>>> = BTreeMap::new();
    for d in reports.iter().filter(|d| d.error.is_none()) {
        let value = format!("seq-{:08}", d.id).into_bytes();
        let previous = acked
            .entry(d.partition)
            .or_default()
            .insert(d.offset, value);
        assert!(
            previous.is_none(),
            "offset {} of partition {} acknowledged twice",
            d.offset,
            d.partition
        );
    }
    assert!(acked.values().map(|m| m.len()).sum::<usize>() >= 3000);
    eprintln!(
        "sent {sent_total}, acked at kill {acked_at_kill}, reports {}, acknowledged {}",
        reports.len(),
        acked_ok()
    );

    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        let empty = BTreeMap::new();
        let high = verify_acknowledged(&bootstrap, "durable", p, acked.get(&p).unwrap_or(&empty));
        ends.insert(p, high);
    }
    // New produces continue at the log end.
    for p in 0..PARTITIONS {
        assert_eq!(
            produce_one(&bootstrap, "durable", p, b"k", b"after-restart"),
            ends[&p],
            "partition {p}"
        );
    }
}

#[test]
fn sigterm_exits_zero_and_keeps_acknowledged_data() {
    let mut broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "clean", 1, &[("segment.bytes", "16384")]);
    let producer = producer(&bootstrap, &[("acks", "all")]);
    let values: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("clean-{i}").into_bytes())
        .collect();
    for (i, v) in values.iter().enumerate() {
        send(
            &producer,
            BaseRecord::with_opaque_to("clean", i)
                .partition(0)
                .payload(&v[..]),
        );
    }
    let d = flush_deliveries(&producer, 1000);
    let acked: BTreeMap<i64, Vec<u8>> = d
        .iter()
        .map(|d| {
            assert!(d.error.is_none(), "delivery {}: {:?}", d.id, d.error);
            (d.offset, values[d.id].clone())
        })
        .collect();
    drop(producer);

    let status = broker.sigterm_and_wait();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must shut down with exit status 0 (got {status})"
    );
    broker.restart();
    let bootstrap = broker.bootstrap();
    assert_eq!(verify_acknowledged(&bootstrap, "clean", 0, &acked), 1000);
    assert_eq!(produce_one(&bootstrap, "clean", 0, b"k", b"more"), 1000);
    let status = broker.sigterm_and_wait();
    assert_eq!(status.code(), Some(0), "second SIGTERM exit status");
}

/// Produces 500 messages one per batch to `topic`-0 and stops the broker with SIGTERM;
/// returns the acknowledged values by offset.
fn fill_and_stop(broker: &mut TestBroker, topic: &str) -> BTreeMap<i64, Vec<u8>> {
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, topic, 1, &[("segment.bytes", "20000")]);
    // One message per batch, so the 500 messages span several 20 kB segments.
    let producer = producer(
        &bootstrap,
        &[
            ("acks", "all"),
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
        ],
    );
    let values: Vec<Vec<u8>> = (0..500)
        .map(|i| format!("{topic}-value-{i:05}").into_bytes())
        .collect();
    for (i, v) in values.iter().enumerate() {
        send(
            &producer,
            BaseRecord::with_opaque_to(topic, i)
                .partition(0)
                .payload(&v[..]),
        );
    }
    let d = flush_deliveries(&producer, 500);
    let acked = d
        .iter()
        .map(|d| {
            assert!(d.error.is_none(), "delivery {}: {:?}", d.id, d.error);
            (d.offset, values[d.id].clone())
        })
        .collect();
    drop(producer);
    let status = broker.sigterm_and_wait();
    assert!(status.success(), "exit status {status}");
    acked
}

fn active_segment(broker: &TestBroker, topic: &str) -> std::path::PathBuf {
    let logs = files_with_suffix(&broker.partition_dir(topic, 0), ".log");
    assert!(logs.len() >= 2, "expected several segments, found {logs:?}");
    logs.last().unwrap().clone()
}

#[test]
fn half_written_batch_and_garbage_at_segment_tail_are_truncated_on_restart() {
    let mut broker = TestBroker::start(&[]);
    let acked = fill_and_stop(&mut broker, "torn");
    let segment = active_segment(&broker, "torn");
    let clean_len = std::fs::metadata(&segment).unwrap().len();
    let bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() >= 61, "active segment holds at least one batch");
    // The first batch of the segment, cut in half, then random garbage: what a crash in
    // the middle of a write can leave behind.
    let batch_len = 12 + i32::from_be_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut tail = bytes[..batch_len / 2].to_vec();
    let mut garbage = bytes::BytesMut::new();
    put_garbage(&mut garbage, 300, 42);
    tail.extend_from_slice(&garbage);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&tail)
        .unwrap();
    // Lose the offset indexes as well: they must be rebuilt.
    for index in files_with_suffix(&broker.partition_dir("torn", 0), ".index") {
        std::fs::remove_file(index).unwrap();
    }

    broker.restart();
    let bootstrap = broker.bootstrap();
    assert_eq!(
        verify_acknowledged(&bootstrap, "torn", 0, &acked),
        500,
        "high watermark after recovery"
    );
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        clean_len,
        "recovery truncates the active segment at the first invalid batch"
    );
    // Reads by offset still work without the deleted index files (a seek into the middle).
    let m = first_message(&bootstrap, "torn", 0, Offset::Offset(321));
    assert_eq!((m.offset, m.value), (321, Some(acked[&321].clone())));
    assert_eq!(
        produce_one(&bootstrap, "torn", 0, b"k", b"after-recovery"),
        500
    );
    let m = first_message(&bootstrap, "torn", 0, Offset::Offset(500));
    assert_eq!(m.value.as_deref(), Some(&b"after-recovery"[..]));
}

#[test]
fn zero_filled_segment_tail_is_truncated_on_restart() {
    let mut broker = TestBroker::start(&[]);
    let acked = fill_and_stop(&mut broker, "zeros");
    let segment = active_segment(&broker, "zeros");
    let clean_len = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&[0u8; 4096])
        .unwrap();
    broker.restart();
    let bootstrap = broker.bootstrap();
    assert_eq!(verify_acknowledged(&bootstrap, "zeros", 0, &acked), 500);
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        clean_len,
        "zero tail truncated"
    );
    assert_eq!(produce_one(&bootstrap, "zeros", 0, b"k", b"next"), 500);
}

#[test]
fn broker_restarts_repeatedly_after_kill_9_without_losing_offsets() {
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "again", 1, &[]);
    let mut expected = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(50);
    for round in 0..3i64 {
        assert!(Instant::now() < deadline, "restarts took too long");
        let bootstrap = broker.bootstrap();
        for i in 0..20i64 {
            let value = format!("r{round}-{i}").into_bytes();
            let offset = produce_one(&bootstrap, "again", 0, b"k", &value);
            assert_eq!(offset, round * 20 + i, "offset after {round} restarts");
            expected.insert(offset, value);
        }
        broker.kill9();
        broker.restart();
    }
    verify_acknowledged(&broker.bootstrap(), "again", 0, &expected);
}

#[test]
fn topic_configs_and_partition_counts_survive_restart() {
    let mut broker = TestBroker::start(&[("auto.create.topics.enable", "false")]);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "cfg",
        3,
        &[("retention.ms", "4321000"), ("segment.bytes", "50000")],
    );
    produce_one(&bootstrap, "cfg", 2, b"k", b"v");
    broker.kill9();
    broker.restart();
    let bootstrap = broker.bootstrap();
    let admin = admin_client(&bootstrap);
    let results = block_on(admin.describe_configs(
        [&rdkafka::admin::ResourceSpecifier::Topic("cfg")],
        &admin_options(),
    ))
    .expect("DescribeConfigs");
    let resource = results[0].as_ref().expect("DescribeConfigs cfg");
    assert_eq!(
        resource
            .get("retention.ms")
            .and_then(|e| e.value.as_deref()),
        Some("4321000")
    );
    assert_eq!(
        resource
            .get("segment.bytes")
            .and_then(|e| e.value.as_deref()),
        Some("50000")
    );
    use rdkafka::consumer::Consumer;
    let md = consumer(&bootstrap)
        .fetch_metadata(Some("cfg"), OP_TIMEOUT)
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3);
    assert_eq!(watermarks(&bootstrap, "cfg", 2), (0, 1));
}

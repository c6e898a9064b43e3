//! librdkafka against a real broker process: keyed messages produced with every acks
//! level and every compression codec come back complete, in order per partition, at
//! contiguous offsets; ListOffsets answers earliest, latest, by timestamp and max timestamp.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;
const MESSAGES: usize = 300;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn key_of(i: usize) -> Vec<u8> {
    format!("key-{}", i % 17).into_bytes()
}

fn value_of(i: usize, codec: &str) -> Vec<u8> {
    // Repetitive so that the codecs actually compress; unique per message.
    format!("value-{i:06}-{codec}-{}", "tributary ".repeat(i % 7 + 1)).into_bytes()
}

/// Produces MESSAGES keyed messages with `acks` and `codec` into a fresh 3-partition topic,
/// then reads every partition back and checks content, order and offsets.
fn round_trip(acks: &str, codec: &str) {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    let topic = format!("rt-acks{}-{codec}", acks.replace('-', "m"));
    create_topic(&bootstrap, &topic, PARTITIONS, &[]);

    let producer = producer(
        &bootstrap,
        &[
            ("acks", acks),
            ("compression.type", codec),
            ("linger.ms", "20"),
            ("batch.num.messages", "50"),
        ],
    );
    let base_ts = now_ms() - 60_000;
    let values: Vec<Vec<u8>> = (0..MESSAGES).map(|i| value_of(i, codec)).collect();
    let keys: Vec<Vec<u8>> = (0..MESSAGES).map(key_of).collect();
    for i in 0..MESSAGES {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "seq",
                value: Some(&i.to_string()),
            })
            .insert(Header {
                key: "codec",
                value: Some(codec),
            })
            .insert(Header {
                key: "null-header",
                value: None::<&[u8]>,
            });
        send(
            &producer,
            BaseRecord::with_opaque_to(&topic, i)
                .key(&keys[i][..])
                .payload(&values[i][..])
                .timestamp(base_ts + i as i64)
                .headers(headers),
        );
    }
    let deliveries = flush_deliveries(&producer, MESSAGES);
    for d in &deliveries {
        assert!(
            d.error.is_none(),
            "delivery of message {} failed: {:?}",
            d.id,
            d.error
        );
    }
    let partition_of: HashMap<usize, i32> =
        deliveries.iter().map(|d| (d.id, d.partition)).collect();

    // Expected per partition: the message ids in produce order.
    let mut expected: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for i in 0..MESSAGES {
        expected.entry(partition_of[&i]).or_default().push(i);
    }
    assert!(
        expected.len() > 1,
        "17 keys should spread over more than one partition"
    );

    // With acks=0 nobody told us the offsets: wait until the log end offsets add up.
    wait_until(
        OP_TIMEOUT,
        "the latest offsets account for every message",
        || {
            (0..PARTITIONS)
                .map(|p| watermarks(&bootstrap, &topic, p).1)
                .sum::<i64>()
                == MESSAGES as i64
        },
    );

    let mut codecs = Vec::new();
    for p in 0..PARTITIONS {
        let ids = expected.get(&p).cloned().unwrap_or_default();
        let (low, high) = watermarks(&bootstrap, &topic, p);
        assert_eq!(
            (low, high),
            (0, ids.len() as i64),
            "watermarks of partition {p}"
        );
        if ids.is_empty() {
            continue;
        }
        let got = consume_partition(&bootstrap, &topic, p, Offset::Beginning, high);
        assert_eq!(got.len(), ids.len(), "partition {p}: message count");
        for (n, (m, &i)) in got.iter().zip(&ids).enumerate() {
            assert_eq!(
                m.offset, n as i64,
                "partition {p}: offsets must be contiguous from 0"
            );
            assert_eq!(
                m.key.as_deref(),
                Some(&keys[i][..]),
                "partition {p} offset {n}: key"
            );
            assert_eq!(
                m.value.as_deref(),
                Some(&values[i][..]),
                "partition {p} offset {n}: value (produce order within a partition)"
            );
            assert_eq!(
                m.timestamp,
                Some(base_ts + i as i64),
                "partition {p} offset {n}: timestamp"
            );
            assert_eq!(
                m.headers,
                vec![
                    ("seq".to_string(), Some(i.to_string().into_bytes())),
                    ("codec".to_string(), Some(codec.as_bytes().to_vec())),
                    ("null-header".to_string(), None),
                ],
                "partition {p} offset {n}: headers"
            );
        }
        codecs.extend(stored_codecs(&broker, &topic, p));
        if acks != "0" {
            for (n, &i) in ids.iter().enumerate() {
                let d = &deliveries[i];
                assert_eq!(d.offset, n as i64, "acknowledged offset of message {i}");
            }
        }
    }
    assert_stored_compression(&codecs, codec);
}

/// Codec of every batch stored in `topic`-`partition`, read back with a raw fetch (the
/// broker stores batches as the producer compressed them).
fn stored_codecs(broker: &TestBroker, topic: &str, partition: i32) -> Vec<Compression> {
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let data = raw.fetch(topic, partition, 0);
    assert_eq!(data.error_code, 0, "raw fetch of {topic}-{partition}");
    let mut records = data.records.expect("records in the fetch response");
    let batches =
        RecordBatchDecoder::decode_batch_info(&mut records).expect("decode batch headers");
    for b in &batches {
        assert_eq!(
            b.version, 2,
            "magic of the batch at {} of {topic}-{partition}",
            b.min_offset
        );
    }
    batches.iter().map(|b| b.compression).collect()
}

/// librdkafka sends a batch uncompressed when compressing would not make it smaller (tiny
/// batches), so the topic must hold only `codec` or uncompressed batches, and some `codec`.
fn assert_stored_compression(codecs: &[Compression], codec: &str) {
    let expected = match codec {
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        other => panic!("unknown codec {other}"),
    };
    assert!(
        codecs
            .iter()
            .all(|c| *c == expected || *c == Compression::None),
        "stored batches use another codec than {codec}: {codecs:?}"
    );
    assert!(
        codecs.contains(&expected),
        "no stored batch is compressed with {codec}: {codecs:?}"
    );
}

macro_rules! round_trip_tests {
    ($($name:ident: $acks:literal, $codec:literal;)*) => {
        $(
            #[test]
            fn $name() {
                round_trip($acks, $codec);
            }
        )*
    };
}

round_trip_tests! {
    keyed_messages_round_trip_with_acks_0_uncompressed: "0", "none";
    keyed_messages_round_trip_with_acks_0_gzip: "0", "gzip";
    keyed_messages_round_trip_with_acks_0_snappy: "0", "snappy";
    keyed_messages_round_trip_with_acks_0_lz4: "0", "lz4";
    keyed_messages_round_trip_with_acks_0_zstd: "0", "zstd";
    keyed_messages_round_trip_with_acks_1_uncompressed: "1", "none";
    keyed_messages_round_trip_with_acks_1_gzip: "1", "gzip";
    keyed_messages_round_trip_with_acks_1_snappy: "1", "snappy";
    keyed_messages_round_trip_with_acks_1_lz4: "1", "lz4";
    keyed_messages_round_trip_with_acks_1_zstd: "1", "zstd";
    keyed_messages_round_trip_with_acks_all_uncompressed: "all", "none";
    keyed_messages_round_trip_with_acks_all_gzip: "all", "gzip";
    keyed_messages_round_trip_with_acks_all_snappy: "all", "snappy";
    keyed_messages_round_trip_with_acks_all_lz4: "all", "lz4";
    keyed_messages_round_trip_with_acks_all_zstd: "all", "zstd";
}

#[test]
fn consume_from_a_middle_offset_starts_exactly_there() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "mid", 1, &[]);
    // One message per batch so that offset 37 is in the middle of the log, not a batch.
    let producer = producer(&bootstrap, &[("acks", "1"), ("linger.ms", "0")]);
    let values: Vec<Vec<u8>> = (0..100).map(|i| format!("m{i}").into_bytes()).collect();
    for (i, v) in values.iter().enumerate() {
        send(
            &producer,
            BaseRecord::with_opaque_to("mid", i)
                .partition(0)
                .payload(&v[..]),
        );
    }
    flush_deliveries(&producer, 100);
    let got = consume_partition(&bootstrap, "mid", 0, Offset::Offset(37), 100);
    assert_eq!(
        got[0].offset, 37,
        "first message returned for a fetch at 37"
    );
    assert_eq!(got.len(), 63);
    for m in &got {
        assert_eq!(m.value.as_deref(), Some(&values[m.offset as usize][..]));
    }
}

#[test]
fn consumer_waiting_at_log_end_receives_new_messages() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "tail", 1, &[]);
    produce_one(&bootstrap, "tail", 0, b"k", b"first");
    let consumer = consumer(&bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("tail", 0, Offset::Offset(1))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    // Nothing to read yet: a poll returns nothing (the broker long-polls the fetch).
    assert!(consumer
        .poll(Duration::from_millis(500))
        .and_then(|r| r.ok())
        .is_none());
    produce_one(&bootstrap, "tail", 0, b"k", b"second");
    let deadline = std::time::Instant::now() + OP_TIMEOUT;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "tailing consumer never got offset 1"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            use rdkafka::message::Message;
            assert_eq!(m.offset(), 1);
            assert_eq!(m.payload(), Some(&b"second"[..]));
            break;
        }
    }
}

#[test]
fn list_offsets_reports_earliest_latest_by_timestamp_and_max_timestamp() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "lo", 2, &[]);
    let producer = producer(&bootstrap, &[("acks", "all"), ("linger.ms", "0")]);
    let base_ts = now_ms() - 3_600_000;
    // Partition 0: 50 messages at base_ts + 10*i; partition 1: 20 messages.
    let payload = b"x".to_vec();
    for i in 0..50usize {
        send(
            &producer,
            BaseRecord::with_opaque_to("lo", i)
                .partition(0)
                .payload(&payload[..])
                .timestamp(base_ts + 10 * i as i64),
        );
    }
    for i in 0..20usize {
        send(
            &producer,
            BaseRecord::with_opaque_to("lo", 100 + i)
                .partition(1)
                .payload(&payload[..])
                .timestamp(base_ts + 10 * i as i64),
        );
    }
    let d = flush_deliveries(&producer, 70);
    assert!(d.iter().all(|d| d.error.is_none()), "deliveries: {d:?}");

    assert_eq!(watermarks(&bootstrap, "lo", 0), (0, 50));
    assert_eq!(watermarks(&bootstrap, "lo", 1), (0, 20));

    let consumer = consumer(&bootstrap);
    let mut query = TopicPartitionList::new();
    // Exactly a message's timestamp, between two timestamps, and past the last one.
    query
        .add_partition_offset("lo", 0, Offset::Offset(base_ts + 250))
        .unwrap();
    query
        .add_partition_offset("lo", 1, Offset::Offset(base_ts + 105))
        .unwrap();
    let answer = consumer
        .offsets_for_times(query, OP_TIMEOUT)
        .expect("offsets_for_times");
    let got: HashMap<i32, Offset> = answer
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    assert_eq!(
        got[&0],
        Offset::Offset(25),
        "first offset with timestamp >= base+250"
    );
    assert_eq!(
        got[&1],
        Offset::Offset(11),
        "first offset with timestamp >= base+105"
    );

    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset("lo", 0, Offset::Offset(base_ts + 10_000))
        .unwrap();
    let answer = consumer
        .offsets_for_times(query, OP_TIMEOUT)
        .expect("offsets_for_times");
    assert_eq!(
        answer.elements()[0].offset(),
        Offset::End,
        "timestamp after the last message"
    );

    // Raw ListOffsets for the exact Kafka fields, including max timestamp (-3).
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(raw.list_offsets("lo", 0, -2), (0, -1, 0), "earliest");
    let (code, _, latest) = raw.list_offsets("lo", 0, -1);
    assert_eq!((code, latest), (0, 50), "latest");
    let (code, ts, offset) = raw.list_offsets("lo", 0, base_ts + 250);
    assert_eq!((code, ts, offset), (0, base_ts + 250, 25), "by timestamp");
    let (code, ts, offset) = raw.list_offsets("lo", 0, base_ts + 10_000);
    assert_eq!((code, ts, offset), (0, -1, -1), "by timestamp past the end");
    let (code, ts, offset) = raw.list_offsets("lo", 1, -3);
    assert_eq!((code, ts, offset), (0, base_ts + 190, 19), "max timestamp");
}

#[test]
fn metadata_auto_creates_topics_with_num_partitions() {
    let broker = TestBroker::start(&[("num.partitions", "4")]);
    let bootstrap = broker.bootstrap();
    let producer = producer(&bootstrap, &[("acks", "1")]);
    send(
        &producer,
        BaseRecord::with_opaque_to("auto", 0)
            .key(&b"k"[..])
            .payload(&b"v"[..]),
    );
    let d = flush_deliveries(&producer, 1);
    assert!(
        d[0].error.is_none(),
        "produce to an auto-created topic: {:?}",
        d[0].error
    );
    let md = consumer(&bootstrap)
        .fetch_metadata(Some("auto"), OP_TIMEOUT)
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 4, "num.partitions=4");
    assert!(broker.partition_dir("auto", 3).is_dir());
}

#[test]
fn consume_from_the_middle_of_a_compressed_batch_skips_earlier_records() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "zmid", 1, &[]);
    // All 200 messages are queued before the first send, so they share a few big batches.
    let producer = producer(
        &bootstrap,
        &[
            ("acks", "1"),
            ("compression.type", "zstd"),
            ("linger.ms", "200"),
        ],
    );
    let values: Vec<Vec<u8>> = (0..200).map(|i| format!("z{i:04}").into_bytes()).collect();
    for (i, v) in values.iter().enumerate() {
        send(
            &producer,
            BaseRecord::with_opaque_to("zmid", i)
                .partition(0)
                .payload(&v[..]),
        );
    }
    flush_deliveries(&producer, 200);
    let got = consume_partition(&bootstrap, "zmid", 0, Offset::Offset(123), 200);
    assert_eq!(
        got[0].offset, 123,
        "records before the requested offset are not delivered"
    );
    assert_eq!(got.len(), 77);
    for m in &got {
        assert_eq!(m.value.as_deref(), Some(&values[m.offset as usize][..]));
    }
}

#[test]
fn message_just_under_message_max_bytes_round_trips() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "big", 1, &[]);
    // Default message.max.bytes is 1048588; a 1,000,000-byte value plus batch overhead fits.
    let value: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    // librdkafka's own default message.max.bytes is 1000000; match the broker's.
    let producer = producer(
        &bootstrap,
        &[
            ("acks", "all"),
            ("compression.type", "none"),
            ("message.max.bytes", "1048588"),
        ],
    );
    send(
        &producer,
        BaseRecord::with_opaque_to("big", 0)
            .partition(0)
            .key(&b"big"[..])
            .payload(&value[..]),
    );
    let d = flush_deliveries(&producer, 1);
    assert!(
        d[0].error.is_none(),
        "1 MB message refused: {:?}",
        d[0].error
    );
    let got = consume_partition(&bootstrap, "big", 0, Offset::Beginning, 1);
    assert_eq!(got[0].value.as_deref(), Some(&value[..]));
}

#[test]
fn fetch_returns_a_whole_first_batch_larger_than_partition_max_bytes() {
    // KIP-74: the first batch is returned even when it exceeds the fetch size limits, so
    // consumers can always make progress.
    let broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "wide", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let (code, _) = raw.produce("wide", 0, record_batch(1, 50_000).freeze(), 1);
    assert_eq!(code, 0);
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
    use kafka_protocol::messages::ApiKey;
    let version = raw.version(ApiKey::Fetch, 12);
    let req = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1000)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("wide"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_current_leader_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(1000)])]);
    let resp = raw.send(req, version);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let mut records = p.records.clone().expect("records");
    let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut records)
        .expect("a whole batch");
    assert_eq!(sets.len(), 1);
    assert_eq!(
        sets[0].records[0].value.as_ref().map(|v| v.len()),
        Some(50_000)
    );
}

#[test]
fn fetch_max_bytes_bounds_the_response_after_the_first_partition() {
    // KIP-74: only the first partition with data may exceed the response's max_bytes; a
    // later partition whose next batch does not fit the remaining budget returns nothing
    // (and the consumer fetches it next time).
    let broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "two", 2, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    for p in 0..2 {
        let (code, _) = raw.produce("two", p, record_batch(1, 10_000).freeze(), 1);
        assert_eq!(code, 0);
    }
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
    use kafka_protocol::messages::ApiKey;
    let version = raw.version(ApiKey::Fetch, 12);
    let partition = |p: i32| {
        FetchPartition::default()
            .with_partition(p)
            .with_fetch_offset(0)
            .with_current_leader_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(1 << 20)
    };
    let fetch = |raw: &mut RawClient, max_bytes: i32| {
        let req = FetchRequest::default()
            .with_max_wait_ms(100)
            .with_min_bytes(1)
            .with_max_bytes(max_bytes)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name("two"))
                .with_partitions(vec![partition(0), partition(1)])]);
        let resp = raw.send(req, version);
        resp.responses[0]
            .partitions
            .iter()
            .map(|p| {
                assert_eq!(p.error_code, 0);
                p.records.as_ref().map_or(0, |r| r.len())
            })
            .collect::<Vec<_>>()
    };
    let sizes = fetch(&mut raw, 15_000);
    assert!(
        sizes[0] > 10_000,
        "first partition gets its batch: {sizes:?}"
    );
    assert_eq!(sizes[1], 0, "second batch does not fit the rest: {sizes:?}");
    let sizes = fetch(&mut raw, 1 << 20);
    assert!(
        sizes[0] > 10_000 && sizes[1] > 10_000,
        "both fit: {sizes:?}"
    );
}

#[test]
fn fetch_long_polls_until_max_wait_or_new_data() {
    let broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "lp", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
    use kafka_protocol::messages::ApiKey;
    let version = raw.version(ApiKey::Fetch, 12);
    let fetch = |max_wait_ms: i32| {
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name("lp"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_current_leader_epoch(-1)
                    .with_log_start_offset(-1)
                    .with_partition_max_bytes(1 << 20)])])
    };
    // Empty log: the broker holds the fetch for about max_wait_ms.
    let started = std::time::Instant::now();
    let resp = raw.send(fetch(800), version);
    let waited = started.elapsed();
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
    assert!(
        waited >= Duration::from_millis(600),
        "fetch on an empty log returned after {waited:?}, max_wait 800 ms"
    );
    assert!(waited < Duration::from_secs(5), "fetch held for {waited:?}");

    // Data arriving during the wait completes the fetch early.
    let addr = broker.addr();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300)); // the scenario: data arrives mid-wait
        let mut w = RawClient::connect_negotiated(addr);
        w.produce("lp", 0, record_batch(1, 10).freeze(), 1)
    });
    let started = std::time::Instant::now();
    let resp = raw.send(fetch(8000), version);
    let waited = started.elapsed();
    assert_eq!(writer.join().unwrap().0, 0);
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(
        p.records.as_ref().is_some_and(|r| !r.is_empty()),
        "the long poll returned no data"
    );
    assert!(
        waited < Duration::from_secs(5),
        "fetch waited {waited:?} although data arrived after 300 ms"
    );
}

/// lz4 batches from another encoder (kafka-protocol's, over a raw connection) stored and
/// served unchanged, read back by librdkafka.
///
/// librdkafka producers compress with lz4 only when the broker's ApiVersions lists
/// FindCoordinator (`rdkafka_feature.c`, `RD_KAFKA_FEATURE_LZ4`); it does now, and the
/// `round_trip_tests!` cover librdkafka's own lz4. These keep a second encoder in the loop.
fn lz4_round_trip(acks: i16) {
    const BATCHES: usize = 10;
    const PER_BATCH: usize = 20;
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    let topic = format!("rt-lz4-acks{}", acks.to_string().replace('-', "m"));
    create_topic(&bootstrap, &topic, 1, &[]);
    let base_ts = now_ms() - 60_000;
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let mut sent = Vec::new();
    for b in 0..BATCHES {
        let records: Vec<(Vec<u8>, Vec<u8>, i64)> = (0..PER_BATCH)
            .map(|j| {
                let i = b * PER_BATCH + j;
                (key_of(i), value_of(i, "lz4"), base_ts + i as i64)
            })
            .collect();
        let batch = encode_records(&records, Compression::Lz4);
        let (error, base_offset) = raw.produce(&topic, 0, batch.freeze(), acks);
        assert_eq!(error, 0, "produce of lz4 batch {b}");
        assert_eq!(
            base_offset,
            (b * PER_BATCH) as i64,
            "base offset of batch {b}"
        );
        sent.extend(records);
    }
    let got = consume_partition(&bootstrap, &topic, 0, Offset::Beginning, sent.len() as i64);
    assert_eq!(got.len(), sent.len(), "message count");
    for (n, (m, (key, value, ts))) in got.iter().zip(&sent).enumerate() {
        assert_eq!(m.offset, n as i64, "offsets contiguous from 0");
        assert_eq!(m.key.as_deref(), Some(&key[..]), "key at {n}");
        assert_eq!(m.value.as_deref(), Some(&value[..]), "value at {n}");
        assert_eq!(m.timestamp, Some(*ts), "timestamp at {n}");
    }
    let codecs = stored_codecs(&broker, &topic, 0);
    assert!(
        !codecs.is_empty() && codecs.iter().all(|c| *c == Compression::Lz4),
        "stored codecs: {codecs:?}"
    );
}

#[test]
fn lz4_batches_round_trip_with_acks_1() {
    lz4_round_trip(1);
}

#[test]
fn lz4_batches_round_trip_with_acks_all() {
    lz4_round_trip(-1);
}

//! Idempotent producers end to end (KIP-98 without transactions): `InitProducerId`, duplicate
//! detection answered with the original offsets, sequence and epoch errors, duplicate
//! detection across SIGTERM and `kill -9` restarts, and a librdkafka idempotent producer
//! whose connections are cut mid-stream writing every message exactly once.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::proxy::Proxy;
use common::*;
use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, ProducerId};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rdkafka::producer::{BaseRecord, Producer};

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_REQUEST: i16 = 42;

/// InitProducerId without a transactional id; `current` is (producer_id, epoch) for a
/// KIP-360 epoch bump, `(-1, -1)` for a new producer. Returns (error, id, epoch).
fn init_producer_id(raw: &mut RawClient, current: (i64, i16)) -> (i16, i64, i16) {
    let version = raw.version(ApiKey::InitProducerId, 4);
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(current.0))
        .with_producer_epoch(current.1);
    let resp = raw.send(req, version);
    (resp.error_code, resp.producer_id.0, resp.producer_epoch)
}

fn new_producer_id(raw: &mut RawClient) -> (i64, i16) {
    let (error, id, epoch) = init_producer_id(raw, (-1, -1));
    assert_eq!(error, 0, "InitProducerId error");
    (id, epoch)
}

/// One idempotent batch of `values`, encoded by kafka-protocol with the producer fields set.
fn idempotent_batch(producer: (i64, i16), base_sequence: i32, values: &[&str]) -> Bytes {
    let now = 1_700_000_000_000;
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.0,
            producer_epoch: producer.1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: base_sequence + i as i32,
            timestamp: now,
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");
    buf.freeze()
}

fn log_end_offset(raw: &mut RawClient, topic: &str) -> i64 {
    let (error, _, offset) = raw.list_offsets(topic, 0, -1);
    assert_eq!(error, 0, "ListOffsets error");
    offset
}

/// Every (offset, value) of partition 0, read with raw fetches straight from the broker.
fn read_all(raw: &mut RawClient, topic: &str) -> Vec<(i64, Vec<u8>)> {
    let deadline = Instant::now() + OP_TIMEOUT;
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let p = raw.fetch(topic, 0, offset);
        assert_eq!(p.error_code, 0, "fetch error at offset {offset}");
        if offset >= p.high_watermark {
            return out;
        }
        let mut records = p.records.clone().unwrap_or_default();
        for set in RecordBatchDecoder::decode_all(&mut records).expect("decode fetched batches") {
            for r in set.records {
                if r.offset >= offset {
                    out.push((r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()));
                    offset = r.offset + 1;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "reading {topic} back took too long"
        );
    }
}

#[test]
fn init_producer_id_hands_out_new_ids_and_bumps_epochs() {
    let broker = TestBroker::start(&[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(raw.version(ApiKey::InitProducerId, 5), 5);
    let (a, epoch_a) = new_producer_id(&mut raw);
    let (b, epoch_b) = new_producer_id(&mut raw);
    assert!(a >= 0 && b >= 0 && a != b, "ids {a} and {b}");
    assert_eq!((epoch_a, epoch_b), (0, 0));
    // KIP-360: a producer naming its id and epoch gets the same id with the next epoch.
    assert_eq!(init_producer_id(&mut raw, (a, 0)), (0, a, 1));
    assert_eq!(init_producer_id(&mut raw, (a, 1)), (0, a, 2));
    // An exhausted epoch gets a new id.
    let (error, c, epoch_c) = init_producer_id(&mut raw, (a, i16::MAX - 1));
    assert_eq!(error, 0);
    assert!(c != a && c != b, "a new id, not {c}");
    assert_eq!(epoch_c, 0);
    // Transactions are not supported.
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(
            kafka_protocol::protocol::StrBytes::from_static_str("tx-1"),
        )))
        .with_transaction_timeout_ms(60_000);
    let resp = raw.send(req, 4);
    assert_eq!(resp.error_code, INVALID_REQUEST);
}

#[test]
fn a_resent_idempotent_batch_gets_its_original_offset_and_appends_nothing() {
    let broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "resend", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let producer = new_producer_id(&mut raw);
    let plain = record_batch(2, 10).freeze();
    assert_eq!(raw.produce("resend", 0, plain, -1), (0, 0));
    let batch = idempotent_batch(producer, 0, &["a", "b", "c"]);
    assert_eq!(raw.produce("resend", 0, batch.clone(), -1), (0, 2));
    assert_eq!(log_end_offset(&mut raw, "resend"), 5);
    // The same bytes again, as a client retrying after a lost response.
    assert_eq!(raw.produce("resend", 0, batch, -1), (0, 2));
    assert_eq!(log_end_offset(&mut raw, "resend"), 5);
    let next = idempotent_batch(producer, 3, &["d"]);
    assert_eq!(raw.produce("resend", 0, next, -1), (0, 5));
    let values: Vec<_> = read_all(&mut raw, "resend")
        .into_iter()
        .skip(2)
        .map(|(_, v)| String::from_utf8(v).unwrap())
        .collect();
    assert_eq!(values, ["a", "b", "c", "d"]);
}

#[test]
fn a_sequence_gap_is_out_of_order_sequence_number() {
    let broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "gap", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let producer = new_producer_id(&mut raw);
    assert_eq!(
        raw.produce("gap", 0, idempotent_batch(producer, 0, &["a", "b"]), -1),
        (0, 0)
    );
    let (error, base_offset) = raw.produce("gap", 0, idempotent_batch(producer, 3, &["d"]), -1);
    assert_eq!((error, base_offset), (OUT_OF_ORDER_SEQUENCE_NUMBER, -1));
    assert_eq!(log_end_offset(&mut raw, "gap"), 2);
    // The right sequence still goes in.
    assert_eq!(
        raw.produce("gap", 0, idempotent_batch(producer, 2, &["c"]), -1),
        (0, 2)
    );
}

#[test]
fn an_old_epoch_after_an_epoch_bump_is_invalid_producer_epoch() {
    let broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "fenced", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let (id, epoch) = new_producer_id(&mut raw);
    assert_eq!(
        raw.produce("fenced", 0, idempotent_batch((id, epoch), 0, &["a"]), -1),
        (0, 0)
    );
    let (error, bumped_id, bumped_epoch) = init_producer_id(&mut raw, (id, epoch));
    assert_eq!((error, bumped_id, bumped_epoch), (0, id, epoch + 1));
    // The new epoch starts over at sequence 0.
    assert_eq!(
        raw.produce(
            "fenced",
            0,
            idempotent_batch((id, bumped_epoch), 0, &["b"]),
            -1
        ),
        (0, 1)
    );
    let (error, _) = raw.produce("fenced", 0, idempotent_batch((id, epoch), 1, &["c"]), -1);
    assert_eq!(error, INVALID_PRODUCER_EPOCH);
    assert_eq!(log_end_offset(&mut raw, "fenced"), 2);
}

#[test]
fn duplicate_detection_and_producer_ids_survive_sigterm_and_kill_9() {
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "durable", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let producer = new_producer_id(&mut raw);
    let first = idempotent_batch(producer, 0, &["a", "b"]);
    assert_eq!(raw.produce("durable", 0, first.clone(), -1), (0, 0));

    // Clean shutdown: the state comes back from the snapshot written on close.
    let status = broker.sigterm_and_wait();
    assert!(status.success(), "SIGTERM exit status {status}");
    broker.restart();
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(raw.produce("durable", 0, first.clone(), -1), (0, 0));
    assert_eq!(log_end_offset(&mut raw, "durable"), 2);
    let second = idempotent_batch(producer, 2, &["c"]);
    assert_eq!(raw.produce("durable", 0, second.clone(), -1), (0, 2));
    let (other, _) = new_producer_id(&mut raw);

    // Crash: the state comes back from the snapshot plus a replay of the batches after it.
    broker.kill9();
    broker.restart();
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(raw.produce("durable", 0, second, -1), (0, 2));
    assert_eq!(raw.produce("durable", 0, first, -1), (0, 0));
    assert_eq!(log_end_offset(&mut raw, "durable"), 3);
    let (error, _) = raw.produce("durable", 0, idempotent_batch(producer, 9, &["x"]), -1);
    assert_eq!(error, OUT_OF_ORDER_SEQUENCE_NUMBER);
    // Producer ids never repeat across restarts.
    let (after_restart, _) = new_producer_id(&mut raw);
    assert!(
        after_restart > other && after_restart > producer.0,
        "id {after_restart} after ids {} and {other}",
        producer.0
    );
}

#[test]
fn idempotent_librdkafka_producer_writes_every_message_once_across_connection_cuts() {
    const N: usize = 20_000;
    /// At each of these, responses start being dropped; `LOST_RESPONSES_FOR` messages later,
    /// once some responses were lost, every connection is cut. The requests whose answers
    /// were lost were processed, so the producer's retries are duplicates.
    const CUTS: [usize; 5] = [2_000, 6_000, 10_000, 14_000, 18_000];
    const LOST_RESPONSES_FOR: usize = 500;
    let listener = Proxy::bind();
    let proxy_port = listener.local_addr().unwrap().port();
    let advertised = format!("PLAINTEXT://127.0.0.1:{proxy_port}");
    let broker = TestBroker::start(&[("advertised.listeners", &advertised)]);
    let proxy = Proxy::start(listener, broker.addr());
    let bootstrap = proxy.addr().to_string();
    create_topic(&bootstrap, "cuts", 1, &[]);

    let producer = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "120000"),
            ("request.timeout.ms", "5000"),
            ("batch.num.messages", "200"),
            ("linger.ms", "1"),
            ("retry.backoff.ms", "20"),
            ("reconnect.backoff.ms", "10"),
            ("reconnect.backoff.max.ms", "200"),
        ],
    );
    let deliveries = producer.context().deliveries.clone();
    let mut cut_connections = 0;
    let values: Vec<String> = (0..N).map(|i| format!("value-{i:06}")).collect();
    for (i, value) in values.iter().enumerate() {
        if CUTS.contains(&i) {
            // Let the stream make progress since the last cut, then lose responses.
            wait_until(Duration::from_secs(60), "deliveries progress", || {
                deliveries.lock().unwrap().len() >= i / 2
            });
            proxy.set_drop_responses(true);
        }
        if i >= LOST_RESPONSES_FOR && CUTS.contains(&(i - LOST_RESPONSES_FOR)) {
            let dropped = proxy.bytes_dropped();
            wait_until(Duration::from_secs(60), "a response is lost", || {
                proxy.bytes_dropped() > dropped
            });
            cut_connections += proxy.cut_all();
            proxy.set_drop_responses(false);
        }
        send(
            &producer,
            BaseRecord::with_opaque_to("cuts", i)
                .partition(0)
                .payload(value.as_bytes()),
        );
    }
    let _ = producer.flush(Duration::from_secs(120));
    wait_until(
        Duration::from_secs(120),
        "every message is delivered",
        || deliveries.lock().unwrap().len() >= N,
    );
    assert!(cut_connections > 0, "the test cut no connection");
    let delivered = deliveries.lock().unwrap().clone();
    let failed: Vec<_> = delivered.iter().filter(|d| d.error.is_some()).collect();
    assert!(
        failed.is_empty(),
        "failed deliveries: {:?}",
        &failed[..failed.len().min(5)]
    );
    let offsets: BTreeSet<i64> = delivered.iter().map(|d| d.offset).collect();
    assert_eq!(offsets.len(), N, "every message got its own offset");

    let mut raw = RawClient::connect_negotiated(broker.addr());
    let stored = read_all(&mut raw, "cuts");
    assert_eq!(stored.len(), N, "exactly N records in the log");
    for (i, (offset, value)) in stored.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(
            value,
            values[i].as_bytes(),
            "offset {offset} holds {:?}, expected {:?}",
            String::from_utf8_lossy(value),
            values[i]
        );
    }
    for d in &delivered {
        assert_eq!(stored[d.offset as usize].1, values[d.id].as_bytes());
    }
    eprintln!(
        "cut {cut_connections} connections; the proxy accepted {} in all",
        proxy.accepted()
    );
}

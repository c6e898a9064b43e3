//! Bad input from the network: malformed frames and requests, corrupt record batches and
//! requests the broker must refuse. Each case asserts Kafka's exact error code or that the
//! offending connection is closed, then that the broker process is still alive and still
//! serves a normal produce/consume.

mod common;

use std::io::Write;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;

const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const MESSAGE_TOO_LARGE: i16 = 10;
const UNSUPPORTED_VERSION: i16 = 35;

/// Byte offset of the magic byte and of the CRC in a v2 record batch header.
const MAGIC_OFFSET: usize = 16;

fn assert_closed(client: &mut RawClient, what: &str) {
    assert!(
        connection_closed(&mut client.stream, CLOSE_TIMEOUT),
        "broker kept the connection open after {what}"
    );
}

#[test]
fn api_versions_at_unsupported_version_answers_unsupported_version_in_v0_format() {
    let mut broker = TestBroker::start(&[]);
    let mut client = RawClient::connect(broker.addr());
    // Header v2 (what a client sends for ApiVersions v3+) with a version no broker knows.
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(i16::MAX)
        .with_correlation_id(77)
        .with_client_id(Some(StrBytes::from_static_str("tributary-it")));
    let mut payload = BytesMut::new();
    header.encode(&mut payload, 2).unwrap();
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("it"))
        .with_client_software_version(StrBytes::from_static_str("1"))
        .encode(&mut payload, 3)
        .unwrap();
    client.write_frame(&payload).unwrap();
    let mut frame = client
        .read_frame()
        .expect("ApiVersions must be answered, not dropped");
    let header = ResponseHeader::decode(&mut frame, 0).unwrap();
    assert_eq!(header.correlation_id, 77);
    let resp = ApiVersionsResponse::decode(&mut frame, 0).expect("response is ApiVersions v0");
    assert_eq!(resp.error_code, UNSUPPORTED_VERSION);
    assert!(
        resp.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::ApiVersions as i16),
        "the v0 error response must still list the supported api_keys, got {:?}",
        resp.api_keys
    );
    assert_broker_serves(&mut broker);
}

#[test]
fn request_at_unsupported_version_closes_the_connection() {
    let mut broker = TestBroker::start(&[]);
    let mut client = RawClient::connect(broker.addr());
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(999)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("tributary-it")));
    let mut payload = BytesMut::new();
    header.encode(&mut payload, 2).unwrap();
    payload.put_u8(0); // an empty topics array in compact encoding, then no tags
    payload.put_u8(0);
    client.write_frame(&payload).unwrap();
    assert_closed(&mut client, "Metadata v999");
    assert_broker_serves(&mut broker);
}

#[test]
fn frame_longer_than_socket_request_max_bytes_closes_only_that_connection() {
    // message.max.bytes (default 1048588) must stay below the frame limit.
    let mut broker = TestBroker::start(&[("socket.request.max.bytes", "2097152")]);
    let mut bystander = RawClient::connect_negotiated(broker.addr());
    let mut client = RawClient::connect(broker.addr());
    let mut frame = Vec::new();
    frame.extend_from_slice(&(4 * 1048576i32).to_be_bytes());
    frame.extend_from_slice(&[0u8; 64]);
    client.stream.write_all(&frame).unwrap();
    assert_closed(
        &mut client,
        "a 4 MiB length prefix with socket.request.max.bytes=2 MiB",
    );
    // The other connection is untouched.
    let md = bystander.metadata(None, false);
    assert_eq!(md.brokers.len(), 1);
    assert_broker_serves(&mut broker);
}

#[test]
fn default_socket_request_max_bytes_refuses_a_200_mib_frame() {
    let mut broker = TestBroker::start(&[]);
    let mut client = RawClient::connect(broker.addr());
    let mut frame = Vec::new();
    frame.extend_from_slice(&(200 * 1024 * 1024i32).to_be_bytes());
    frame.extend_from_slice(&[0u8; 64]);
    client.stream.write_all(&frame).unwrap();
    assert_closed(
        &mut client,
        "a 200 MiB length prefix (default limit 100 MiB)",
    );
    assert_broker_serves(&mut broker);
}

#[test]
fn negative_frame_length_closes_the_connection() {
    let mut broker = TestBroker::start(&[]);
    let mut client = RawClient::connect(broker.addr());
    client.stream.write_all(&(-5i32).to_be_bytes()).unwrap();
    client.stream.write_all(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    assert_closed(&mut client, "a negative length prefix");
    assert_broker_serves(&mut broker);
}

#[test]
fn unknown_api_key_closes_the_connection() {
    let mut broker = TestBroker::start(&[]);
    let mut client = RawClient::connect(broker.addr());
    let mut payload = BytesMut::new();
    payload.put_i16(0x7f7f); // api key
    payload.put_i16(0); // api version
    payload.put_i32(1); // correlation id
    payload.put_i16(-1); // null client id
    put_garbage(&mut payload, 32, 3);
    client.write_frame(&payload).unwrap();
    assert_closed(&mut client, "api key 0x7f7f");
    assert_broker_serves(&mut broker);
}

#[test]
fn random_garbage_frames_close_the_connection() {
    let mut broker = TestBroker::start(&[]);
    for seed in 1..=8u64 {
        let mut client = RawClient::connect(broker.addr());
        let mut payload = BytesMut::new();
        put_garbage(&mut payload, 16 + seed as usize * 13, seed);
        if i16::from_be_bytes([payload[0], payload[1]]) == ApiKey::ApiVersions as i16 {
            // ApiVersions at an unknown version is answered, not closed (tested above).
            continue;
        }
        client.write_frame(&payload).unwrap();
        assert_closed(&mut client, &format!("a garbage frame (seed {seed})"));
        broker.assert_alive();
    }
    // Garbage that is not even framed: the first four bytes read as a huge length.
    let mut client = RawClient::connect(broker.addr());
    client
        .stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_closed(&mut client, "an HTTP request");
    assert_broker_serves(&mut broker);
}

#[test]
fn truncated_request_body_closes_the_connection() {
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "t", 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    use kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    let version = client.version(ApiKey::Produce, 12);
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record_batch(5, 50).freeze()))])]);
    let payload = client.encode_request(&req, version);
    // The frame is self-consistent but the request inside it stops half way.
    let truncated = &payload[..payload.len() / 2];
    client.write_frame(truncated).unwrap();
    assert_closed(&mut client, "a Produce request cut in half");
    assert_eq!(
        watermarks(&broker.bootstrap(), "t", 0).1,
        0,
        "nothing may be appended"
    );
    assert_broker_serves(&mut broker);
}

#[test]
fn produce_with_wrong_crc_is_rejected_with_corrupt_message() {
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "t", 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let mut batch = record_batch(5, 50);
    let last = batch.len() - 1;
    batch[last] ^= 0xff; // inside the last record's value, covered by the CRC
    let (code, _) = client.produce("t", 0, batch.freeze(), 1);
    assert_eq!(
        code, CORRUPT_MESSAGE,
        "CRC mismatch must give CORRUPT_MESSAGE (2)"
    );
    // The connection stays usable and nothing was appended.
    let (code, offset) = client.produce("t", 0, record_batch(1, 10).freeze(), 1);
    assert_eq!(
        (code, offset),
        (0, 0),
        "a valid batch after the corrupt one lands at offset 0"
    );
    assert_broker_serves(&mut broker);
}

#[test]
fn produce_with_magic_other_than_2_is_rejected() {
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "t", 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    for magic in [0u8, 1, 3] {
        let mut batch = record_batch(3, 20);
        batch[MAGIC_OFFSET] = magic;
        let (code, _) = client.produce("t", 0, batch.freeze(), 1);
        assert_ne!(code, 0, "a batch with magic {magic} must be refused");
    }
    assert_eq!(
        watermarks(&broker.bootstrap(), "t", 0).1,
        0,
        "nothing may be appended"
    );
    assert_broker_serves(&mut broker);
}

#[test]
fn produce_with_batch_length_disagreeing_with_data_is_rejected() {
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "t", 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    // batchLength claims more bytes than the records field holds.
    let mut batch = record_batch(3, 20);
    let claimed = i32::from_be_bytes(batch[8..12].try_into().unwrap()) + 100;
    batch[8..12].copy_from_slice(&claimed.to_be_bytes());
    let (code, _) = client.produce("t", 0, batch.freeze(), 1);
    assert_ne!(
        code, 0,
        "a batch whose length field overruns the data must be refused"
    );
    assert_eq!(
        watermarks(&broker.bootstrap(), "t", 0).1,
        0,
        "nothing may be appended"
    );
    // Two valid batches followed by three stray bytes. Kafka ignores a trailing fragment
    // shorter than a batch header and trims it; refusing the request is also acceptable.
    // Either way the log must hold only whole, valid batches.
    let mut records = BytesMut::new();
    records.extend_from_slice(&record_batch(2, 10));
    records.extend_from_slice(&record_batch(3, 10));
    records.extend_from_slice(&[0, 0, 0]);
    let (code, _) = client.produce("t", 0, records.freeze(), 1);
    let high = watermarks(&broker.bootstrap(), "t", 0).1;
    if code == 0 {
        assert_eq!(high, 5, "accepted: both whole batches are appended");
        let p = client.fetch("t", 0, 0);
        assert_eq!(p.error_code, 0);
        let mut data = p.records.expect("fetched records");
        let sets = kafka_protocol::records::RecordBatchDecoder::decode_all(&mut data)
            .expect("the log holds only valid batches");
        let n: usize = sets.iter().map(|s| s.records.len()).sum();
        assert_eq!(n, 5);
        assert!(
            data.is_empty(),
            "no stray bytes were stored after the last batch"
        );
    } else {
        assert_eq!(high, 0, "refused: nothing may be appended");
    }
    assert_broker_serves(&mut broker);
}

#[test]
fn batch_larger_than_message_max_bytes_fails_with_message_too_large() {
    let mut broker = TestBroker::start(&[("message.max.bytes", "100000")]);
    create_topic(&broker.bootstrap(), "t", 1, &[]);
    // The client's own limit is raised so that it does send the oversized batch.
    let p = producer(
        &broker.bootstrap(),
        &[
            ("acks", "1"),
            ("message.max.bytes", "2000000"),
            ("compression.type", "none"),
        ],
    );
    let big = vec![7u8; 200_000];
    send(
        &p,
        BaseRecord::with_opaque_to("t", 0)
            .partition(0)
            .key(&b"k"[..])
            .payload(&big[..]),
    );
    let d = flush_deliveries(&p, 1);
    let err = d[0]
        .error
        .clone()
        .expect("a 200 kB batch over a 100 kB limit must fail");
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge),
        "expected MESSAGE_TOO_LARGE (10), got {err:?}"
    );
    // Same over the raw protocol, for the exact code.
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (code, _) = client.produce("t", 0, record_batch(1, 150_000).freeze(), 1);
    assert_eq!(code, MESSAGE_TOO_LARGE);
    assert_eq!(
        watermarks(&broker.bootstrap(), "t", 0).1,
        0,
        "nothing may be appended"
    );
    assert_broker_serves(&mut broker);
}

#[test]
fn topic_max_message_bytes_overrides_the_broker_limit() {
    let mut broker = TestBroker::start(&[]);
    create_topic(
        &broker.bootstrap(),
        "small",
        1,
        &[("max.message.bytes", "5000")],
    );
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (code, _) = client.produce("small", 0, record_batch(1, 10_000).freeze(), 1);
    assert_eq!(
        code, MESSAGE_TOO_LARGE,
        "10 kB batch vs max.message.bytes=5000"
    );
    let (code, offset) = client.produce("small", 0, record_batch(1, 1_000).freeze(), 1);
    assert_eq!((code, offset), (0, 0), "a 1 kB batch fits");
    assert_broker_serves(&mut broker);
}

#[test]
fn produce_to_unknown_topic_with_auto_create_off_fails_with_unknown_topic_or_partition() {
    let mut broker = TestBroker::start(&[("auto.create.topics.enable", "false")]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (code, _) = client.produce("nope", 0, record_batch(1, 10).freeze(), 1);
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION);

    let md = client.metadata(Some(&["nope"]), true);
    assert_eq!(md.topics.len(), 1);
    assert_eq!(
        md.topics[0].error_code, UNKNOWN_TOPIC_OR_PARTITION,
        "Metadata must not auto-create when auto.create.topics.enable=false"
    );

    // librdkafka surfaces it as a delivery error.
    let p = producer(
        &broker.bootstrap(),
        &[
            ("acks", "1"),
            ("message.timeout.ms", "8000"),
            ("topic.metadata.propagation.max.ms", "1000"),
        ],
    );
    send(
        &p,
        BaseRecord::with_opaque_to("nope", 0)
            .key(&b"k"[..])
            .payload(&b"v"[..]),
    );
    let d = flush_deliveries(&p, 1);
    let err = d[0]
        .error
        .clone()
        .expect("produce to a missing topic must fail");
    let code = err.rdkafka_error_code();
    assert!(
        matches!(
            code,
            Some(RDKafkaErrorCode::UnknownTopicOrPartition) | Some(RDKafkaErrorCode::UnknownTopic)
        ),
        "expected UNKNOWN_TOPIC_OR_PARTITION, got {err:?}"
    );
    assert!(!topic_names(&broker.bootstrap()).contains(&"nope".to_string()));
    assert_broker_serves(&mut broker);
}

#[test]
fn fetch_beyond_log_end_is_offset_out_of_range() {
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "t", 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let (code, _) = client.produce("t", 0, record_batch(5, 10).freeze(), 1);
    assert_eq!(code, 0);
    let p = client.fetch("t", 0, 1000);
    assert_eq!(
        p.error_code, OFFSET_OUT_OF_RANGE,
        "fetch at 1000 with log end 5"
    );
    let p = client.fetch("t", 0, 6);
    assert_eq!(p.error_code, OFFSET_OUT_OF_RANGE, "fetch at log end + 1");
    let p = client.fetch("t", 0, 5);
    assert_eq!(
        p.error_code, 0,
        "fetch at exactly the log end is valid (and empty)"
    );
    assert_eq!(p.high_watermark, 5);
    assert_broker_serves(&mut broker);
}

#[test]
fn list_offsets_and_fetch_on_missing_partition_are_unknown_topic_or_partition() {
    let mut broker = TestBroker::start(&[("auto.create.topics.enable", "false")]);
    create_topic(&broker.bootstrap(), "t", 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    for ts in [-1i64, -2] {
        let (code, _, _) = client.list_offsets("t", 7, ts);
        assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION, "ListOffsets t-7 at {ts}");
        let (code, _, _) = client.list_offsets("missing", 0, ts);
        assert_eq!(
            code, UNKNOWN_TOPIC_OR_PARTITION,
            "ListOffsets missing-0 at {ts}"
        );
    }
    assert_eq!(
        client.fetch("t", 7, 0).error_code,
        UNKNOWN_TOPIC_OR_PARTITION,
        "Fetch t-7"
    );
    assert_eq!(
        client.fetch("missing", 0, 0).error_code,
        UNKNOWN_TOPIC_OR_PARTITION,
        "Fetch missing-0"
    );
    let (code, _) = client.produce("t", 7, record_batch(1, 10).freeze(), 1);
    assert_eq!(code, UNKNOWN_TOPIC_OR_PARTITION, "Produce t-7");
    assert_broker_serves(&mut broker);
}

#[test]
fn acks_zero_produce_of_corrupt_batch_does_not_break_the_connection_for_others() {
    // With acks=0 there is no response; Kafka closes the connection on a produce error so
    // the client notices. Either way the broker must keep serving and append nothing.
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "t", 1, &[]);
    let mut client = RawClient::connect_negotiated(broker.addr());
    let mut batch = record_batch(2, 10);
    let last = batch.len() - 1;
    batch[last] ^= 0x55;
    let version = client.version(ApiKey::Produce, 12);
    use kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("t"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch)))])]);
    let payload = client.encode_request(&req, version);
    client.write_frame(&payload).unwrap();
    // A follow-up request on the same connection is handled after the produce (or finds
    // the connection closed, which is what Kafka does after a failed acks=0 produce).
    let md = kafka_protocol::messages::MetadataRequest::default().with_topics(Some(vec![]));
    let mv = client.version(ApiKey::Metadata, 12);
    let follow_up = client.encode_request(&md, mv);
    if client.write_frame(&follow_up).is_ok() {
        let _ = client.read_frame();
    }
    assert_eq!(
        watermarks(&broker.bootstrap(), "t", 0).1,
        0,
        "nothing may be appended"
    );
    assert_broker_serves(&mut broker);
}

#[test]
fn idle_connection_is_closed_after_connections_max_idle_ms() {
    let mut broker = TestBroker::start(&[("connections.max.idle.ms", "1000")]);
    let mut idle = RawClient::connect(broker.addr());
    assert_closed(&mut idle, "connections.max.idle.ms of silence");
    assert_broker_serves(&mut broker);
}

#[test]
fn produce_without_a_record_batch_is_invalid_record() {
    let mut broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "empty-produce", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let (code, _) = raw.produce("empty-produce", 0, Bytes::new(), 1);
    assert_eq!(code, 87, "INVALID_RECORD");
    assert_broker_serves(&mut broker);
}

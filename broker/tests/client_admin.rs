//! Admin operations through librdkafka's admin client (and raw requests where rdkafka has
//! no API): create topics and their error codes, configs, retention deleting segments,
//! DeleteRecords, CreatePartitions, DeleteTopics and DescribeCluster.

mod common;

use std::time::Duration;

use common::*;
use kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig, CreateTopicsRequest,
};
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig, IncrementalAlterConfigsRequest,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AlterConfig, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::producer::BaseRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

const INVALID_TOPIC_EXCEPTION: i16 = 17;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REPLICATION_FACTOR: i16 = 38;
const INVALID_CONFIG: i16 = 40;
const TOPIC_RESOURCE: i8 = 2;

/// Raw CreateTopics of one topic; returns its error code.
fn raw_create_topic(
    client: &mut RawClient,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> i16 {
    let version = client.version(ApiKey::CreateTopics, 7);
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(replication_factor)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let resp = client.send(req, version);
    assert_eq!(resp.topics.len(), 1);
    resp.topics[0].error_code
}

/// Current value of one topic config via DescribeConfigs (admin client).
fn describe_topic_config(bootstrap: &str, topic: &str, key: &str) -> Option<String> {
    let admin = admin_client(bootstrap);
    let results =
        block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &admin_options()))
            .expect("DescribeConfigs request");
    let resource = results[0]
        .as_ref()
        .unwrap_or_else(|e| panic!("DescribeConfigs {topic}: {e:?}"));
    resource.get(key).and_then(|e| e.value.clone())
}

fn alter_topic_configs(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let admin = admin_client(bootstrap);
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in configs {
        alter = alter.set(k, v);
    }
    let results = block_on(admin.alter_configs([&alter], &admin_options())).expect("AlterConfigs");
    if let Err((_, code)) = &results[0] {
        panic!("AlterConfigs {topic} {configs:?} failed with {code:?}");
    }
}

/// Produces `count` ~100-byte messages one per batch (linger 0, acks=all) to partition 0.
fn produce_small_batches(bootstrap: &str, topic: &str, count: usize) {
    let producer = producer(
        bootstrap,
        &[
            ("acks", "all"),
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
        ],
    );
    let value = [b'r'; 100];
    for i in 0..count {
        send(
            &producer,
            BaseRecord::with_opaque_to(topic, i)
                .partition(0)
                .payload(&value[..]),
        );
        if i % 50 == 49 {
            flush_deliveries(&producer, i + 1);
        }
    }
    let d = flush_deliveries(&producer, count);
    assert!(d.iter().all(|d| d.error.is_none()), "a delivery failed");
}

fn segment_count(broker: &TestBroker, topic: &str) -> usize {
    files_with_suffix(&broker.partition_dir(topic, 0), ".log").len()
}

#[test]
fn create_topic_through_admin_api_appears_in_metadata_and_on_disk() {
    let broker = TestBroker::start(&[]);
    create_topic(
        &broker.bootstrap(),
        "orders",
        3,
        &[("retention.ms", "123456")],
    );
    let md = consumer(&broker.bootstrap())
        .fetch_metadata(Some("orders"), OP_TIMEOUT)
        .unwrap();
    let topic = &md.topics()[0];
    assert_eq!(topic.name(), "orders");
    assert!(
        topic.error().is_none(),
        "metadata error {:?}",
        topic.error()
    );
    assert_eq!(topic.partitions().len(), 3);
    for p in topic.partitions() {
        assert_eq!(p.leader(), 0, "partition {} leader", p.id());
        assert!(
            broker.partition_dir("orders", p.id()).is_dir(),
            "partition {} directory",
            p.id()
        );
    }
    assert_eq!(
        describe_topic_config(&broker.bootstrap(), "orders", "retention.ms").as_deref(),
        Some("123456")
    );
}

#[test]
fn create_topics_refuses_invalid_requests_with_kafka_error_codes() {
    let broker = TestBroker::start(&[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(raw_create_topic(&mut raw, "dup", 1, 1, &[]), 0);
    assert_eq!(
        raw_create_topic(&mut raw, "dup", 1, 1, &[]),
        TOPIC_ALREADY_EXISTS,
        "existing topic"
    );
    assert_eq!(
        raw_create_topic(
            &mut raw,
            "forever",
            1,
            1,
            &[("retention.ms", "-1"), ("retention.bytes", "-1")]
        ),
        0,
        "-1 means unlimited retention"
    );
    assert_eq!(
        raw_create_topic(&mut raw, "rf3", 1, 3, &[]),
        INVALID_REPLICATION_FACTOR,
        "rf 3 on one broker"
    );
    assert_eq!(
        raw_create_topic(&mut raw, "zero", 0, 1, &[]),
        INVALID_PARTITIONS,
        "0 partitions"
    );
    assert_eq!(
        raw_create_topic(&mut raw, "neg", -7, 1, &[]),
        INVALID_PARTITIONS,
        "-7 partitions"
    );
    for bad in ["bad/name", "..", ".", "spaces are bad", &"x".repeat(250)] {
        assert_eq!(
            raw_create_topic(&mut raw, bad, 1, 1, &[]),
            INVALID_TOPIC_EXCEPTION,
            "topic name {bad:?}"
        );
    }
    for (k, v) in [
        ("retention.ms", "abc"),
        ("segment.bytes", "-5"),
        ("retention.bytes", "12x"),
        ("no.such.config", "1"),
        ("cleanup.policy", "nonsense"),
        ("max.message.bytes", "-1"),
    ] {
        assert_eq!(
            raw_create_topic(&mut raw, "cfg", 1, 1, &[(k, v)]),
            INVALID_CONFIG,
            "config {k}={v}"
        );
    }
    // None of the refused topics exists.
    let names = topic_names(&broker.bootstrap());
    for t in ["rf3", "zero", "neg", "cfg", "bad/name"] {
        assert!(
            !names.contains(&t.to_string()),
            "{t} must not have been created"
        );
    }

    // The admin client sees the same codes.
    let admin = admin_client(&broker.bootstrap());
    let dup = NewTopic::new("dup", 1, TopicReplication::Fixed(1));
    let rf = NewTopic::new("rf3b", 1, TopicReplication::Fixed(3));
    let cfg = NewTopic::new("cfgb", 1, TopicReplication::Fixed(1)).set("retention.ms", "soon");
    let results = block_on(admin.create_topics([&dup, &rf, &cfg], &admin_options())).unwrap();
    assert_eq!(
        results[0],
        Err(("dup".into(), RDKafkaErrorCode::TopicAlreadyExists))
    );
    assert_eq!(
        results[1],
        Err(("rf3b".into(), RDKafkaErrorCode::InvalidReplicationFactor))
    );
    assert_eq!(
        results[2],
        Err(("cfgb".into(), RDKafkaErrorCode::InvalidConfig))
    );
}

#[test]
fn alter_retention_ms_deletes_old_segments_and_advances_log_start() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "ret",
        1,
        &[("segment.bytes", "1024"), ("retention.ms", "86400000")],
    );
    produce_small_batches(&bootstrap, "ret", 200);
    let before = segment_count(&broker, "ret");
    assert!(
        before >= 10,
        "200 ~170-byte batches with segment.bytes=1024 made only {before} segments"
    );
    assert_eq!(watermarks(&bootstrap, "ret", 0), (0, 200));

    alter_topic_configs(
        &bootstrap,
        "ret",
        &[("segment.bytes", "1024"), ("retention.ms", "1")],
    );
    assert_eq!(
        describe_topic_config(&bootstrap, "ret", "retention.ms").as_deref(),
        Some("1")
    );

    wait_until(OP_TIMEOUT, "retention deletes old segments", || {
        segment_count(&broker, "ret") < before
    });
    wait_until(OP_TIMEOUT, "the log start offset advances", || {
        watermarks(&bootstrap, "ret", 0).0 > 0
    });
    let (low, high) = watermarks(&bootstrap, "ret", 0);
    assert_eq!(high, 200, "retention must not change the log end");
    assert!(low <= high);
    // retention.ms=1 may delete every record (Kafka rolls and deletes the active segment
    // too); with retention long again, a new write gives a consumer from the beginning
    // something to read.
    alter_topic_configs(
        &bootstrap,
        "ret",
        &[("segment.bytes", "1024"), ("retention.ms", "86400000")],
    );
    assert_eq!(
        produce_one(&bootstrap, "ret", 0, b"k", b"after"),
        200,
        "new writes continue at the log end"
    );
    let first = first_message(&bootstrap, "ret", 0, Offset::Beginning);
    let (low, _) = watermarks(&bootstrap, "ret", 0);
    assert_eq!(
        first.offset, low,
        "a consumer from the beginning starts at the log start offset"
    );
    // Segment files keep Kafka's names, and the log start offset lies in the first one.
    let low_now = watermarks(&bootstrap, "ret", 0).0;
    let bases: Vec<i64> = files_with_suffix(&broker.partition_dir("ret", 0), ".log")
        .iter()
        .map(|f| {
            let stem = f.file_stem().unwrap().to_str().unwrap();
            assert_eq!(stem.len(), 20, "segment file names are 20 digits: {stem}");
            stem.parse().expect("segment name is a base offset")
        })
        .collect();
    assert!(
        bases[0] <= low_now,
        "first segment base {} above log start {low_now}",
        bases[0]
    );
}

#[test]
fn alter_retention_bytes_deletes_oldest_segments() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "rb", 1, &[("segment.bytes", "1024")]);
    produce_small_batches(&bootstrap, "rb", 200);
    let before = segment_count(&broker, "rb");
    assert!(before >= 10, "only {before} segments");
    alter_topic_configs(
        &bootstrap,
        "rb",
        &[("segment.bytes", "1024"), ("retention.bytes", "3000")],
    );
    let total_bytes = || -> u64 {
        files_with_suffix(&broker.partition_dir("rb", 0), ".log")
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    wait_until(
        OP_TIMEOUT,
        "retention.bytes=3000 trims the log to about 3000 bytes",
        || total_bytes() <= 3000 + 1024 + 200,
    );
    assert!(segment_count(&broker, "rb") < before);
    assert!(
        segment_count(&broker, "rb") >= 1,
        "the active segment stays"
    );
    let (low, high) = watermarks(&bootstrap, "rb", 0);
    assert_eq!(high, 200);
    assert_eq!(
        first_message(&bootstrap, "rb", 0, Offset::Beginning).offset,
        low
    );
}

#[test]
fn incremental_alter_configs_sets_and_deletes_single_keys() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(
        &bootstrap,
        "inc",
        1,
        &[("segment.bytes", "4096"), ("retention.ms", "1000000")],
    );
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let version = raw.version(ApiKey::IncrementalAlterConfigs, 1);
    let op = |name: &str, operation: i8, value: Option<&str>| {
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.into()))
            .with_config_operation(operation)
            .with_value(value.map(|v| StrBytes::from_string(v.into())))
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_static_str("inc"))
            .with_configs(vec![
                op("retention.ms", 0, Some("7777")),
                op("segment.bytes", 1, None),
            ]),
    ]);
    let resp = raw.send(req, version);
    assert_eq!(
        resp.responses[0].error_code, 0,
        "{:?}",
        resp.responses[0].error_message
    );
    assert_eq!(
        describe_topic_config(&bootstrap, "inc", "retention.ms").as_deref(),
        Some("7777")
    );
    let seg = describe_topic_config(&bootstrap, "inc", "segment.bytes");
    assert_ne!(
        seg.as_deref(),
        Some("4096"),
        "DELETE must revert segment.bytes to the default"
    );

    // Invalid value: INVALID_CONFIG and nothing changes.
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_static_str("inc"))
            .with_configs(vec![op("retention.ms", 0, Some("-42x"))]),
    ]);
    let resp = raw.send(req, version);
    assert_eq!(resp.responses[0].error_code, INVALID_CONFIG);
    assert_eq!(
        describe_topic_config(&bootstrap, "inc", "retention.ms").as_deref(),
        Some("7777")
    );
}

#[test]
fn alter_configs_through_admin_client_with_invalid_value_changes_nothing() {
    // rdkafka 0.39's AlterConfigs future drops per-resource error codes (it returns Ok for
    // every resource), so the exact INVALID_CONFIG code is asserted by the raw test below;
    // here librdkafka drives the request and the config must be unchanged.
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "ac", 1, &[("retention.ms", "5000")]);
    let admin = admin_client(&bootstrap);
    for (k, v) in [
        ("retention.ms", "later"),
        ("no.such.key", "1"),
        ("segment.bytes", "-1"),
    ] {
        let alter = AlterConfig::new(ResourceSpecifier::Topic("ac")).set(k, v);
        block_on(admin.alter_configs([&alter], &admin_options())).expect("AlterConfigs round trip");
        assert_eq!(
            describe_topic_config(&bootstrap, "ac", "retention.ms").as_deref(),
            Some("5000"),
            "a refused AlterConfigs {k}={v} must not replace the topic's overrides"
        );
    }
    // A valid AlterConfigs through the admin client does apply.
    alter_topic_configs(&bootstrap, "ac", &[("retention.ms", "6000")]);
    assert_eq!(
        describe_topic_config(&bootstrap, "ac", "retention.ms").as_deref(),
        Some("6000")
    );
}

#[test]
fn alter_configs_with_invalid_value_is_invalid_config() {
    use kafka_protocol::messages::alter_configs_request::{
        AlterConfigsRequest, AlterConfigsResource as Resource, AlterableConfig as Entry,
    };
    let broker = TestBroker::start(&[]);
    create_topic(&broker.bootstrap(), "acr", 1, &[("retention.ms", "5000")]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let version = raw.version(ApiKey::AlterConfigs, 2);
    for (k, v) in [
        ("retention.ms", "later"),
        ("no.such.key", "1"),
        ("segment.bytes", "-1"),
    ] {
        let req = AlterConfigsRequest::default().with_resources(vec![Resource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_static_str("acr"))
            .with_configs(vec![Entry::default()
                .with_name(StrBytes::from_string(k.into()))
                .with_value(Some(StrBytes::from_string(v.into())))])]);
        let resp = raw.send(req, version);
        assert_eq!(
            resp.responses[0].error_code, INVALID_CONFIG,
            "AlterConfigs v{version} {k}={v}"
        );
    }
    assert_eq!(
        describe_topic_config(&broker.bootstrap(), "acr", "retention.ms").as_deref(),
        Some("5000")
    );
}

#[test]
fn delete_records_advances_log_start_and_survives_restart() {
    let mut broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "dr", 1, &[]);
    produce_small_batches(&bootstrap, "dr", 100);
    let admin = admin_client(&bootstrap);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("dr", 0, Offset::Offset(40))
        .unwrap();
    let result = block_on(admin.delete_records(&tpl, &admin_options())).expect("DeleteRecords");
    let e = &result.elements()[0];
    assert!(e.error().is_ok(), "DeleteRecords error {:?}", e.error());
    assert_eq!(
        e.offset(),
        Offset::Offset(40),
        "low watermark in the DeleteRecords response"
    );
    assert_eq!(watermarks(&bootstrap, "dr", 0), (40, 100));
    assert_eq!(
        first_message(&bootstrap, "dr", 0, Offset::Beginning).offset,
        40
    );

    // Beyond the high watermark: OFFSET_OUT_OF_RANGE, and nothing changes.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("dr", 0, Offset::Offset(500))
        .unwrap();
    let result = block_on(admin.delete_records(&tpl, &admin_options())).expect("DeleteRecords");
    let err = result.elements()[0]
        .error()
        .expect_err("deleting past the high watermark must fail");
    assert_eq!(
        err.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OffsetOutOfRange),
        "{err:?}"
    );
    assert_eq!(watermarks(&bootstrap, "dr", 0), (40, 100));

    let status = broker.sigterm_and_wait();
    assert!(status.success(), "graceful shutdown exit status {status}");
    broker.restart();
    let bootstrap = broker.bootstrap();
    assert_eq!(
        watermarks(&bootstrap, "dr", 0),
        (40, 100),
        "log start offset after restart"
    );
    let got = consume_partition(&bootstrap, "dr", 0, Offset::Beginning, 100);
    assert_eq!(got.first().map(|m| m.offset), Some(40));
    assert_eq!(got.len(), 60);
}

#[test]
fn create_partitions_grows_a_topic_and_refuses_to_shrink_it() {
    let broker = TestBroker::start(&[]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "grow", 1, &[]);
    let admin = admin_client(&bootstrap);
    let results =
        block_on(admin.create_partitions([&NewPartitions::new("grow", 3)], &admin_options()))
            .unwrap();
    assert_eq!(results[0], Ok("grow".to_string()));
    wait_until(OP_TIMEOUT, "metadata shows 3 partitions", || {
        consumer(&bootstrap)
            .fetch_metadata(Some("grow"), OP_TIMEOUT)
            .map(|md| md.topics()[0].partitions().len() == 3)
            .unwrap_or(false)
    });
    assert!(broker.partition_dir("grow", 2).is_dir());
    assert_eq!(
        produce_one(&bootstrap, "grow", 2, b"k", b"v"),
        0,
        "produce to the new partition 2"
    );

    let results =
        block_on(admin.create_partitions([&NewPartitions::new("grow", 2)], &admin_options()))
            .unwrap();
    assert_eq!(
        results[0],
        Err(("grow".to_string(), RDKafkaErrorCode::InvalidPartitions)),
        "shrink 3 -> 2"
    );
    let results =
        block_on(admin.create_partitions([&NewPartitions::new("nope", 2)], &admin_options()))
            .unwrap();
    assert_eq!(
        results[0],
        Err((
            "nope".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        )),
        "unknown topic"
    );
    let md = consumer(&bootstrap)
        .fetch_metadata(Some("grow"), OP_TIMEOUT)
        .unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3);
}

#[test]
fn delete_topic_removes_its_directories_and_metadata() {
    let broker = TestBroker::start(&[("auto.create.topics.enable", "false")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "gone", 2, &[]);
    create_topic(&bootstrap, "kept", 1, &[]);
    produce_one(&bootstrap, "gone", 0, b"k", b"v");
    produce_one(&bootstrap, "kept", 0, b"k", b"v");
    let admin = admin_client(&bootstrap);
    let results = block_on(admin.delete_topics(&["gone"], &admin_options())).unwrap();
    assert_eq!(results[0], Ok("gone".to_string()));
    wait_until(
        OP_TIMEOUT,
        "the topic's partition directories are gone",
        || {
            std::fs::read_dir(broker.log_dir())
                .unwrap()
                .filter_map(|e| e.ok())
                .all(|e| !e.file_name().to_string_lossy().starts_with("gone-"))
        },
    );
    wait_until(OP_TIMEOUT, "metadata no longer lists the topic", || {
        !topic_names(&bootstrap).contains(&"gone".to_string())
    });
    assert!(topic_names(&bootstrap).contains(&"kept".to_string()));
    assert!(broker.partition_dir("kept", 0).is_dir());

    let results = block_on(admin.delete_topics(&["gone"], &admin_options())).unwrap();
    assert_eq!(
        results[0],
        Err((
            "gone".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))
    );

    // The name can be reused and starts from offset 0.
    create_topic(&bootstrap, "gone", 1, &[]);
    assert_eq!(produce_one(&bootstrap, "gone", 0, b"k", b"again"), 0);
}

#[test]
fn describe_cluster_and_metadata_show_this_broker() {
    let broker = TestBroker::start(&[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let version = raw.version(ApiKey::DescribeCluster, 1);
    let resp = raw.send(DescribeClusterRequest::default(), version);
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.brokers.len(), 1);
    let b = &resp.brokers[0];
    assert_eq!(*b.broker_id, 0);
    assert_eq!(b.host.as_str(), "127.0.0.1");
    assert_eq!(b.port, broker.addr().port() as i32);
    assert_eq!(*resp.controller_id, 0);
    assert!(!resp.cluster_id.as_str().is_empty(), "cluster id");

    let md = consumer(&broker.bootstrap())
        .fetch_metadata(None, OP_TIMEOUT)
        .unwrap();
    assert_eq!(md.brokers().len(), 1);
    assert_eq!(md.brokers()[0].id(), 0);
    assert_eq!(md.brokers()[0].host(), "127.0.0.1");
    assert_eq!(md.brokers()[0].port(), broker.addr().port() as i32);
}

#[test]
fn advertised_listeners_and_broker_id_appear_in_describe_cluster_and_metadata() {
    // Reserve a port, then hand it to the broker explicitly.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listeners = format!("PLAINTEXT://127.0.0.1:{port}");
    let advertised = format!("PLAINTEXT://localhost:{port}");
    let broker = TestBroker::start(&[
        ("listeners", &listeners),
        ("advertised.listeners", &advertised),
        ("broker.id", "7"),
    ]);
    assert_eq!(broker.addr().port(), port);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let version = raw.version(ApiKey::DescribeCluster, 1);
    let resp = raw.send(DescribeClusterRequest::default(), version);
    assert_eq!(resp.brokers.len(), 1);
    assert_eq!(*resp.brokers[0].broker_id, 7);
    assert_eq!(resp.brokers[0].host.as_str(), "localhost");
    assert_eq!(resp.brokers[0].port, port as i32);
    let md = raw.metadata(None, false);
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(*md.brokers[0].node_id, 7);
    assert_eq!(md.brokers[0].host.as_str(), "localhost");
    assert_eq!(md.brokers[0].port, port as i32);
    // Partition leaders are the configured broker id; librdkafka follows the advertised name.
    create_topic(&broker.bootstrap(), "adv", 1, &[]);
    let md = raw.metadata(Some(&["adv"]), false);
    assert_eq!(*md.topics[0].partitions[0].leader_id, 7);
    assert_eq!(produce_one(&broker.bootstrap(), "adv", 0, b"k", b"v"), 0);
    let _ = Duration::ZERO;
}

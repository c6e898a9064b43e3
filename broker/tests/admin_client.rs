//! The `tributary-admin` client against real brokers: every `Admin` method on one broker,
//! then routing on three (ListOffsets to each partition's leader, group requests to each
//! group's coordinator, ListGroups to every broker) including after a broker is killed.
//!
//! Data is written and groups are joined with librdkafka, so the admin client is checked
//! against what a real client did. Each test drives the admin client on a multi-threaded
//! runtime of its own; every admin call is bounded by the client's request timeout.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::time::Duration;

use common::cluster::TestCluster;
use common::{base_config, flush_deliveries, producer, send, wait_until, TestBroker, OP_TIMEOUT};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseRecord;
use tributary_admin::kafka_protocol::messages::{ApiKey, MetadataRequest};
use tributary_admin::{
    Admin, AdminOptions, AlterConfigOp, ConfigSource, Connection, Election, ElectionType, Error,
    NewTopic, OffsetSpec, TopicPartition,
};

const GROUP_TIMEOUT: Duration = Duration::from_secs(40);
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs one admin call; bounded by the client's own timeouts and retry budgets.
fn run<F: Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn phase(name: &str) {
    eprintln!("==== phase: {name}");
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

/// Produces `counts[p]` messages to partition `p` of `topic` with acks=all.
fn produce(bootstrap: &str, topic: &str, counts: &[usize]) {
    let p = producer(bootstrap, &[("acks", "all")]);
    let mut id = 0;
    for (partition, count) in counts.iter().enumerate() {
        for _ in 0..*count {
            send(
                &p,
                BaseRecord::with_opaque_to(topic, id)
                    .partition(partition as i32)
                    .payload(b"v".as_slice()),
            );
            id += 1;
        }
    }
    for d in flush_deliveries(&p, id) {
        assert!(d.error.is_none(), "produce failed: {:?}", d.error);
    }
}

/// A group member subscribed to `topic`, polled until it is assigned `partitions`.
fn member(bootstrap: &str, group: &str, topic: &str, partitions: usize) -> BaseConsumer {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", group)
        .set("client.id", "admin-test-member")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("enable.partition.eof", "false");
    let c: BaseConsumer = config.create().expect("create consumer");
    c.subscribe(&[topic]).expect("subscribe");
    wait_until(
        GROUP_TIMEOUT,
        "the member is assigned its partitions",
        || {
            c.poll(Duration::from_millis(50));
            c.assignment().map(|a| a.count()).unwrap_or(0) == partitions
        },
    );
    c
}

fn kafka_name<T: std::fmt::Debug>(result: Result<T, Error>) -> &'static str {
    match result {
        Err(e) => e
            .kafka_name()
            .unwrap_or_else(|| panic!("not a Kafka error: {e}")),
        Ok(v) => panic!("expected a Kafka error, got Ok({v:?})"),
    }
}

#[test]
fn every_admin_method_against_one_broker() {
    let broker = TestBroker::start(&[("group.initial.rebalance.delay.ms", "200")]);
    let b = broker.bootstrap();
    let rt = runtime();

    phase("connect: unreachable brokers, then a bootstrap list with one");
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe port")
        .to_string();
    let err = run(&rt, Admin::connect(&dead)).expect_err("nothing listens there");
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(
        err.is_retriable() && err.to_string().contains(&dead),
        "{err}"
    );
    let options = AdminOptions {
        client_id: "admin-it".to_string(),
        request_timeout: Duration::from_secs(10),
    };
    let admin = run(&rt, Admin::connect_with(&format!("{dead},{b}"), options)).expect("connect");

    phase("describe_cluster");
    let cluster = run(&rt, admin.describe_cluster()).expect("describe_cluster");
    assert!(!cluster.cluster_id.is_empty(), "{cluster:?}");
    assert_eq!(cluster.controller_id, Some(0), "{cluster:?}");
    assert_eq!(cluster.brokers.len(), 1, "{cluster:?}");
    assert_eq!(cluster.brokers[0].addr(), b);
    assert!(!cluster.brokers[0].fenced);

    phase("create, validate, describe topics");
    let orders = NewTopic::new("orders", 3, 1).with_config("retention.ms", "86400000");
    let topic_id = run(&rt, admin.create_topic(&orders)).expect("create orders");
    assert!(!topic_id.is_nil());
    assert_eq!(
        kafka_name(run(&rt, admin.create_topic(&orders))),
        "TopicAlreadyExists"
    );
    let err = run(&rt, admin.create_topic(&orders)).expect_err("exists");
    assert_eq!(err.kafka_code(), Some(36));
    assert!(!err.is_retriable());
    assert!(
        err.to_string().starts_with("orders: TopicAlreadyExists"),
        "{err}"
    );
    let bad = NewTopic::new("bad-config", 1, 1).with_config("retention.ms", "abc");
    assert_eq!(
        kafka_name(run(&rt, admin.create_topic(&bad))),
        "InvalidConfig"
    );
    run(
        &rt,
        admin.create_topic_validate_only(&NewTopic::new("dry", 2, 1)),
    )
    .expect("validate");
    assert_eq!(
        run(&rt, admin.describe_topic("dry")).expect("describe"),
        None
    );

    let described = run(&rt, admin.describe_topic("orders"))
        .expect("describe")
        .expect("orders exists");
    assert_eq!(described.topic_id, topic_id);
    assert!(!described.internal);
    assert_eq!(described.replication_factor(), 1);
    let indexes: Vec<i32> = described.partitions.iter().map(|p| p.partition).collect();
    assert_eq!(indexes, [0, 1, 2]);
    for p in &described.partitions {
        assert_eq!(
            (p.leader, &p.replicas, &p.isr),
            (Some(0), &vec![0], &vec![0])
        );
        assert!(p.offline_replicas.is_empty());
    }
    let all = run(&rt, admin.describe_topics(None)).expect("describe all");
    assert!(all.iter().any(|t| t.name == "orders"), "{all:?}");
    let some = run(
        &rt,
        admin.describe_topics(Some(&["orders".to_string(), "nope".to_string()])),
    )
    .expect("unknown topics are absent, not an error");
    assert_eq!(
        some.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["orders"]
    );

    phase("create_partitions");
    run(&rt, admin.create_partitions("orders", 4)).expect("grow to 4");
    let grown = run(&rt, admin.describe_topic("orders")).expect("describe");
    assert_eq!(grown.map(|t| t.partitions.len()), Some(4));
    assert_eq!(
        kafka_name(run(&rt, admin.create_partitions("orders", 2))),
        "InvalidPartitions"
    );

    phase("topic configs");
    let configs = run(&rt, admin.describe_topic_configs("orders")).expect("configs");
    let retention = configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .expect("retention.ms listed");
    assert_eq!(retention.value.as_deref(), Some("86400000"));
    assert!(retention.is_topic_override());
    assert!(configs.windows(2).all(|w| w[0].name <= w[1].name), "sorted");
    run(
        &rt,
        admin.alter_topic_configs(
            "orders",
            &[
                AlterConfigOp::Set {
                    name: "segment.ms".into(),
                    value: "3600000".into(),
                },
                AlterConfigOp::Delete {
                    name: "retention.ms".into(),
                },
            ],
        ),
    )
    .expect("alter configs");
    let configs = run(&rt, admin.describe_topic_configs("orders")).expect("configs");
    let find = |name: &str| configs.iter().find(|c| c.name == name).cloned();
    assert_eq!(
        find("segment.ms").map(|c| (c.value, c.source)),
        Some((Some("3600000".into()), ConfigSource::DynamicTopic))
    );
    assert_eq!(
        find("retention.ms").map(|c| c.source),
        Some(ConfigSource::Default)
    );

    phase("list_offsets");
    produce(&b, "orders", &[5, 3, 0, 1]);
    let all_tps: Vec<TopicPartition> = (0..4).map(|p| tp("orders", p)).collect();
    let latest = run(&rt, admin.list_offsets(&all_tps, OffsetSpec::Latest)).expect("latest");
    assert_eq!(
        latest,
        BTreeMap::from([
            (tp("orders", 0), 5),
            (tp("orders", 1), 3),
            (tp("orders", 2), 0),
            (tp("orders", 3), 1),
        ])
    );
    let earliest = run(&rt, admin.list_offsets(&all_tps, OffsetSpec::Earliest)).expect("earliest");
    assert!(earliest.values().all(|o| *o == 0), "{earliest:?}");
    let at_epoch =
        run(&rt, admin.list_offsets(&all_tps, OffsetSpec::Timestamp(0))).expect("at epoch");
    assert!(at_epoch.values().all(|o| *o == 0), "{at_epoch:?}");
    // No record that late: the log end offset, as Kafka's reset-offsets does.
    let far = run(
        &rt,
        admin.list_offsets(&all_tps, OffsetSpec::Timestamp(32_503_680_000_000)),
    )
    .expect("in the future");
    assert_eq!(far, latest);
    assert_eq!(
        kafka_name(run(
            &rt,
            admin.list_offsets(&[tp("orders", 9)], OffsetSpec::Latest)
        )),
        "UnknownTopicOrPartition"
    );
    assert_eq!(
        kafka_name(run(
            &rt,
            admin.list_offsets(&[tp("nope", 0)], OffsetSpec::Latest)
        )),
        "UnknownTopicOrPartition"
    );

    phase("groups without members");
    assert_eq!(
        run(&rt, admin.describe_group("no-such-group")).expect("describe"),
        None
    );
    assert!(run(&rt, admin.group_offsets("no-such-group"))
        .expect("offsets")
        .is_empty());
    let offsets = BTreeMap::from([(tp("orders", 0), 2), (tp("orders", 1), 3)]);
    run(&rt, admin.alter_group_offsets("g-admin", &offsets)).expect("commit as admin");
    assert_eq!(
        run(&rt, admin.group_offsets("g-admin")).expect("offsets"),
        offsets
    );
    let group = run(&rt, admin.describe_group("g-admin"))
        .expect("describe")
        .expect("a group with offsets exists");
    assert!(group.members.is_empty(), "{group:?}");
    assert!(
        matches!(group.state.as_str(), "Empty" | "Dead"),
        "{group:?}"
    );
    let listed = run(&rt, admin.list_groups()).expect("list");
    assert!(listed.iter().any(|g| g.group_id == "g-admin"), "{listed:?}");

    phase("a group with a member");
    let consumer = member(&b, "g-live", "orders", 4);
    let live = run(&rt, admin.describe_group("g-live"))
        .expect("describe")
        .expect("exists");
    assert_eq!(live.state, "Stable");
    assert_eq!(live.protocol_type, "consumer");
    assert!(!live.protocol.is_empty());
    assert_eq!(live.members.len(), 1);
    assert_eq!(live.members[0].client_id, "admin-test-member");
    assert_eq!(live.members[0].assignment, all_tps, "assignment decoded");
    let refused = run(
        &rt,
        admin.alter_group_offsets("g-live", &BTreeMap::from([(tp("orders", 0), 0)])),
    );
    let name = kafka_name(refused);
    assert!(
        matches!(
            name,
            "UnknownMemberId" | "RebalanceInProgress" | "IllegalGeneration"
        ),
        "{name}"
    );
    assert_eq!(
        kafka_name(run(&rt, admin.delete_group("g-live"))),
        "NonEmptyGroup"
    );
    drop(consumer);
    wait_until(
        GROUP_TIMEOUT,
        "g-live is empty after its member left",
        || {
            run(&rt, admin.describe_group("g-live"))
                .ok()
                .flatten()
                .is_none_or(|g| g.members.is_empty())
        },
    );

    phase("delete_group");
    run(&rt, admin.delete_group("g-admin")).expect("delete an empty group");
    assert_eq!(
        run(&rt, admin.describe_group("g-admin")).expect("describe"),
        None
    );
    assert_eq!(
        kafka_name(run(&rt, admin.delete_group("g-admin"))),
        "GroupIdNotFound"
    );

    phase("reassignments and elections");
    assert!(run(&rt, admin.list_partition_reassignments())
        .expect("list")
        .is_empty());
    let results = run(
        &rt,
        admin.alter_partition_reassignments(&[
            (tp("orders", 0), Some(vec![0])),
            (tp("nope", 0), Some(vec![0])),
        ]),
    )
    .expect("alter");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].0, tp("orders", 0));
    assert!(results[0].1.is_ok(), "{results:?}");
    assert_eq!(
        results[1].1.as_ref().err().and_then(Error::kafka_name),
        Some("UnknownTopicOrPartition"),
        "{results:?}"
    );
    let cancelled = run(
        &rt,
        admin.alter_partition_reassignments(&[(tp("orders", 0), None)]),
    )
    .expect("cancel");
    assert_eq!(
        cancelled[0].1.as_ref().err().and_then(Error::kafka_name),
        Some("NoReassignmentInProgress")
    );
    let elected = run(&rt, admin.elect_preferred_leaders(Some(&all_tps))).expect("elect");
    assert_eq!(elected.len(), 4);
    assert!(elected.iter().all(|(_, r)| r.is_ok()), "{elected:?}");
    let detailed = run(
        &rt,
        admin.elect_leaders(ElectionType::Preferred, Some(&all_tps[..1])),
    )
    .expect("elect");
    assert!(
        matches!(detailed.as_slice(), [(_, Ok(Election::NotNeeded))]),
        "{detailed:?}"
    );
    let unknown = run(&rt, admin.elect_preferred_leaders(Some(&[tp("nope", 0)]))).expect("elect");
    assert_eq!(
        unknown[0].1.as_ref().err().and_then(Error::kafka_name),
        Some("UnknownTopicOrPartition")
    );

    phase("send_to_any and Connection");
    let (metadata, version) =
        run(&rt, admin.send_to_any(MetadataRequest::default())).expect("send_to_any");
    assert!(version >= 1 && metadata.brokers.len() == 1);
    let mut connection = run(&rt, Connection::connect(&b, "admin-it")).expect("connection");
    assert_eq!(connection.addr(), broker.addr());
    assert_eq!(
        connection.version(ApiKey::Metadata).expect("negotiated"),
        version
    );
    assert!(connection.version(ApiKey::Produce).is_err());
    let (metadata, _) = run(
        &rt,
        connection.send(MetadataRequest::default().with_topics(Some(Vec::new()))),
    )
    .expect("send");
    assert!(metadata.topics.is_empty());

    phase("shared between tasks");
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let admin = admin.clone();
            rt.spawn(async move {
                if i % 2 == 0 {
                    admin.describe_cluster().await.map(drop)
                } else {
                    admin
                        .list_offsets(&[TopicPartition::new("orders", 0)], OffsetSpec::Latest)
                        .await
                        .map(drop)
                }
            })
        })
        .collect();
    for handle in handles {
        run(&rt, handle).expect("task").expect("admin call");
    }

    phase("delete_topic");
    run(&rt, admin.delete_topic("orders")).expect("delete");
    wait_until(OP_TIMEOUT, "orders is gone", || {
        run(&rt, admin.describe_topic("orders")).is_ok_and(|t| t.is_none())
    });
    assert_eq!(
        kafka_name(run(&rt, admin.delete_topic("orders"))),
        "UnknownTopicOrPartition"
    );
}

#[test]
fn routes_to_leaders_and_coordinators_in_a_three_broker_cluster() {
    const TOPIC: &str = "routed";
    const GROUPS: usize = 6;
    let mut cluster = TestCluster::start(
        3,
        &[
            ("offsets.topic.num.partitions", "6"),
            ("offsets.topic.replication.factor", "2"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    let rt = runtime();
    // Only broker 0 is named: the client learns the others from Metadata.
    let admin = run(&rt, Admin::connect(&cluster.addr(0).to_string())).expect("connect");

    phase("describe_cluster");
    let described = run(&rt, admin.describe_cluster()).expect("describe_cluster");
    assert_eq!(
        described.brokers.iter().map(|b| b.id).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(described.brokers.iter().all(|b| !b.fenced), "{described:?}");
    assert!(described.controller_id.is_some());

    phase("leaders on every broker; ListOffsets reaches each");
    run(&rt, admin.create_topic(&NewTopic::new(TOPIC, 6, 2))).expect("create");
    for p in 0..6 {
        cluster.wait_for_leader(TOPIC, p, OP_TIMEOUT);
    }
    let topic = run(&rt, admin.describe_topic(TOPIC))
        .expect("describe")
        .expect("exists");
    let leaders: std::collections::BTreeSet<i32> =
        topic.partitions.iter().filter_map(|p| p.leader).collect();
    assert!(leaders.len() > 1, "leaders spread over brokers: {topic:?}");
    let counts = [3, 1, 4, 1, 5, 9];
    produce(&bootstrap, TOPIC, &counts);
    let tps: Vec<TopicPartition> = (0..6).map(|p| tp(TOPIC, p)).collect();
    let expected: BTreeMap<TopicPartition, i64> = tps
        .iter()
        .cloned()
        .zip(counts.iter().map(|c| *c as i64))
        .collect();
    assert_eq!(
        run(&rt, admin.list_offsets(&tps, OffsetSpec::Latest)).expect("latest"),
        expected
    );

    phase("each group at its coordinator; ListGroups asks every broker");
    let groups: Vec<String> = (0..GROUPS).map(|i| format!("routed-{i}")).collect();
    for (i, group) in groups.iter().enumerate() {
        let offsets = BTreeMap::from([(tp(TOPIC, (i % 6) as i32), i as i64)]);
        run(&rt, admin.alter_group_offsets(group, &offsets)).expect("commit");
    }
    for (i, group) in groups.iter().enumerate() {
        let offsets = run(&rt, admin.group_offsets(group)).expect("offsets");
        assert_eq!(
            offsets,
            BTreeMap::from([(tp(TOPIC, (i % 6) as i32), i as i64)])
        );
    }
    let listed: Vec<String> = run(&rt, admin.list_groups())
        .expect("list")
        .into_iter()
        .map(|g| g.group_id)
        .collect();
    for group in &groups {
        assert!(listed.contains(group), "{group} in {listed:?}");
    }
    let c = member(&bootstrap, "routed-live", TOPIC, 6);
    let live = run(&rt, admin.describe_group("routed-live"))
        .expect("describe")
        .expect("exists");
    assert_eq!(live.members.len(), 1);
    assert_eq!(live.members[0].assignment, tps);
    drop(c);

    phase("kill -9 a broker that leads partitions");
    let victim = topic
        .partitions
        .iter()
        .filter_map(|p| p.leader)
        .find(|l| *l != 0)
        .expect("a leader other than broker 0");
    cluster.kill9(victim);
    wait_until(
        FAILOVER_TIMEOUT,
        "ListOffsets answers from the new leaders",
        || run(&rt, admin.list_offsets(&tps, OffsetSpec::Latest)).is_ok_and(|o| o == expected),
    );
    wait_until(FAILOVER_TIMEOUT, "the killed broker is fenced", || {
        run(&rt, admin.describe_cluster())
            .is_ok_and(|c| c.brokers.iter().any(|b| b.id == victim && b.fenced))
    });
    wait_until(
        FAILOVER_TIMEOUT,
        "every group's offsets at its new coordinator",
        || {
            groups.iter().enumerate().all(|(i, group)| {
                run(&rt, admin.group_offsets(group)).is_ok_and(|offsets| {
                    offsets == BTreeMap::from([(tp(TOPIC, (i % 6) as i32), i as i64)])
                })
            })
        },
    );
    let listed = run(&rt, admin.list_groups()).expect("a fenced broker is skipped");
    for group in &groups {
        assert!(
            listed.iter().any(|g| &g.group_id == group),
            "{group} in {listed:?}"
        );
    }
}

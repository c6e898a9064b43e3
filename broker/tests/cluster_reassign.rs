//! Partition reassignment and leader elections on three real broker processes, through the
//! Kafka APIs a client sends (AlterPartitionReassignments, ListPartitionReassignments,
//! ElectLeaders): a replication-factor change that must keep every acknowledged message
//! when the original replica dies, a preferred leader taking its leadership back, and
//! Kafka's error codes for requests that cannot be carried out.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::cluster::TestCluster;
use common::{
    admin_client, admin_options, block_on, consume_partition, create_topic, flush_deliveries,
    producer, send, topic_name, wait_until, RawClient, OP_TIMEOUT,
};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::elect_leaders_request::{ElectLeadersRequest, TopicPartitions};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsRequest;
use kafka_protocol::messages::{ApiKey, BrokerId};
use kafka_protocol::ResponseError;
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reassignment of a few thousand small messages may take to complete.
const REASSIGN_TIMEOUT: Duration = Duration::from_secs(60);

/// One partition's answer: (topic, partition, error code, error message).
type PartitionAnswer = (String, i32, i16, Option<String>);

/// Sends AlterPartitionReassignments (the highest version both sides know) for `changes`:
/// a target replica list per partition, or `None` to cancel.
fn alter_reassignments(
    addr: SocketAddr,
    changes: &[(&str, i32, Option<&[i32]>)],
    allow_replication_factor_change: bool,
) -> Vec<PartitionAnswer> {
    let mut client = RawClient::connect_negotiated(addr);
    let version = client.version(ApiKey::AlterPartitionReassignments, 1);
    let topics = changes
        .iter()
        .map(|(topic, partition, target)| {
            ReassignableTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(*partition)
                    .with_replicas(
                        target.map(|t| t.iter().copied().map(BrokerId).collect()),
                    )])
        })
        .collect();
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(10_000)
        .with_allow_replication_factor_change(allow_replication_factor_change)
        .with_topics(topics);
    let response = client.send(request, version);
    assert_eq!(response.error_code, 0, "AlterPartitionReassignments");
    response
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect()
}

/// The error code of the single partition of an AlterPartitionReassignments.
fn alter_one(
    addr: SocketAddr,
    topic: &str,
    partition: i32,
    target: Option<&[i32]>,
    allow_replication_factor_change: bool,
) -> i16 {
    let answers = alter_reassignments(
        addr,
        &[(topic, partition, target)],
        allow_replication_factor_change,
    );
    assert_eq!(answers.len(), 1, "one answer per partition: {answers:?}");
    assert_eq!((answers[0].0.as_str(), answers[0].1), (topic, partition));
    answers[0].2
}

/// A reassignment in progress: (topic, partition, replicas, adding, removing).
type Ongoing = (String, i32, Vec<i32>, Vec<i32>, Vec<i32>);

/// Every reassignment in progress.
fn list_reassignments(addr: SocketAddr) -> Vec<Ongoing> {
    let mut client = RawClient::connect_negotiated(addr);
    let version = client.version(ApiKey::ListPartitionReassignments, 0);
    let response = client.send(
        ListPartitionReassignmentsRequest::default().with_topics(None),
        version,
    );
    assert_eq!(response.error_code, 0, "ListPartitionReassignments");
    let ids = |b: &[BrokerId]| b.iter().map(|b| b.0).collect::<Vec<_>>();
    response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    ids(&p.replicas),
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                )
            })
        })
        .collect()
}

/// Sends ElectLeaders v2 of `election_type` for `partitions` (`None`: every partition);
/// returns the top-level error code and the per-partition answers.
fn elect_leaders(
    addr: SocketAddr,
    election_type: i8,
    partitions: Option<&[(&str, i32)]>,
) -> (i16, Vec<PartitionAnswer>) {
    let mut client = RawClient::connect_negotiated(addr);
    let version = client.version(ApiKey::ElectLeaders, 2);
    assert_eq!(version, 2, "ElectLeaders v2 carries the election type");
    let request = ElectLeadersRequest::default()
        .with_election_type(election_type)
        .with_timeout_ms(10_000)
        .with_topic_partitions(partitions.map(|ps| {
            ps.iter()
                .map(|(topic, partition)| {
                    TopicPartitions::default()
                        .with_topic(topic_name(topic))
                        .with_partitions(vec![*partition])
                })
                .collect()
        }));
    let response = client.send(request, version);
    let answers = response
        .replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result.iter().map(|p| {
                (
                    t.topic.0.to_string(),
                    p.partition_id,
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect();
    (response.error_code, answers)
}

/// Produces `count` messages with acks=all to partition 0 (values "0", "1", ...) and panics
/// unless every one is acknowledged.
fn produce_acked(bootstrap: &str, topic: &str, count: usize) {
    let p = producer(bootstrap, &[("acks", "all")]);
    for id in 0..count {
        let value = id.to_string();
        send(
            &p,
            BaseRecord::with_opaque_to(topic, id)
                .partition(0)
                .payload(value.as_bytes()),
        );
    }
    let deliveries = flush_deliveries(&p, count);
    let failed: Vec<_> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    assert!(
        failed.is_empty(),
        "deliveries failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    for d in &deliveries {
        assert_eq!(
            d.offset, d.id as i64,
            "message {} landed at offset {}",
            d.id, d.offset
        );
    }
}

/// Reads partition 0 from the beginning and checks that it holds exactly "0".."count-1".
fn assert_holds_all(bootstrap: &str, topic: &str, count: usize) {
    let consumed = consume_partition(bootstrap, topic, 0, Offset::Beginning, count as i64);
    assert_eq!(consumed.len(), count, "messages in {topic}-0");
    for (i, m) in consumed.iter().enumerate() {
        assert_eq!(m.offset, i as i64);
        assert_eq!(
            m.value.as_deref(),
            Some(i.to_string().as_bytes()),
            "value at offset {i}"
        );
    }
}

/// The partition's replicas as broker `id`'s Metadata shows them, once it knows the
/// partition (a topic reaches each broker's metadata a moment after it is created).
fn replicas_of(cluster: &TestCluster, id: i32, topic: &str, partition: i32) -> Vec<i32> {
    let mut replicas = None;
    wait_until(
        OP_TIMEOUT,
        &format!("broker {id} knows {topic}-{partition}"),
        || {
            replicas = cluster
                .partition_seen_by(id, topic, partition)
                .map(|p| p.replicas);
            replicas.is_some()
        },
    );
    replicas.unwrap_or_default()
}

/// Waits until broker `id`'s Metadata shows `expected` as the partition's replicas.
fn wait_for_replicas(
    cluster: &TestCluster,
    id: i32,
    topic: &str,
    partition: i32,
    expected: &[i32],
) {
    wait_until(
        OP_TIMEOUT,
        &format!("broker {id} shows replicas {expected:?} for {topic}-{partition}"),
        || replicas_of(cluster, id, topic, partition) == expected,
    );
}

#[test]
fn a_topic_reassigned_from_one_replica_to_three_survives_kill9_of_the_original() {
    const TOPIC: &str = "grow-rf";
    const COUNT: usize = 5_000;
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]);
    let original = cluster.wait_for_leader(TOPIC, 0, OP_TIMEOUT);
    assert_eq!(replicas_of(&cluster, original, TOPIC, 0), vec![original]);
    produce_acked(&bootstrap, TOPIC, COUNT);

    phase("reassign to three replicas");
    let others: Vec<i32> = (0..3).filter(|id| *id != original).collect();
    let target = [original, others[0], others[1]];
    // Sent to a broker that does not host the partition: it forwards to the controller.
    let code = alter_one(cluster.addr(others[0]), TOPIC, 0, Some(&target), false);
    assert_eq!(
        code,
        ResponseError::InvalidReplicationFactor.code(),
        "a replication-factor change must be refused when the request does not allow it"
    );
    assert_eq!(
        alter_one(cluster.addr(others[0]), TOPIC, 0, Some(&target), true),
        0
    );
    let addr = cluster.addr(original);
    wait_until(REASSIGN_TIMEOUT, "the reassignment completes", || {
        list_reassignments(addr).is_empty()
    });
    wait_until(FAILOVER_TIMEOUT, "an ISR of all three replicas", || {
        cluster.isr_of(TOPIC, 0) == vec![0, 1, 2]
    });
    for id in 0..3 {
        wait_for_replicas(&cluster, id, TOPIC, 0, &target);
    }

    phase("kill -9 the original replica");
    cluster.kill9(original);
    wait_until(
        FAILOVER_TIMEOUT,
        "a leader other than the killed broker",
        || {
            cluster
                .leader_of(TOPIC, 0)
                .is_some_and(|leader| leader != original)
        },
    );
    assert_holds_all(&cluster.running_bootstrap(), TOPIC, COUNT);
}

#[test]
fn preferred_leader_election_moves_leadership_back_after_a_restart() {
    const TOPIC: &str = "elect";
    const COUNT: usize = 200;
    // Without the controller's own periodic preferred elections, only ElectLeaders moves
    // leadership back.
    let mut cluster = TestCluster::start(3, &[("auto.leader.rebalance.enable", "false")]);
    let bootstrap = cluster.bootstrap();
    let admin = admin_client(&bootstrap);
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3));
    let results = block_on(admin.create_topics([&topic], &admin_options())).expect("CreateTopics");
    assert!(results[0].is_ok(), "CreateTopics: {results:?}");
    wait_until(FAILOVER_TIMEOUT, "an ISR of all three replicas", || {
        cluster.isr_of(TOPIC, 0) == vec![0, 1, 2]
    });
    let preferred = replicas_of(&cluster, 0, TOPIC, 0)[0];
    assert_eq!(cluster.wait_for_leader(TOPIC, 0, OP_TIMEOUT), preferred);
    produce_acked(&bootstrap, TOPIC, COUNT);

    phase("kill -9 and restart the preferred leader");
    cluster.kill9(preferred);
    wait_until(FAILOVER_TIMEOUT, "another leader", || {
        cluster.leader_of(TOPIC, 0).is_some_and(|l| l != preferred)
    });
    cluster.restart(preferred);
    wait_until(
        FAILOVER_TIMEOUT,
        "the restarted broker back in the ISR",
        || cluster.isr_of(TOPIC, 0) == vec![0, 1, 2],
    );
    let interim = cluster.leader_of(TOPIC, 0);
    assert!(
        interim.is_some_and(|l| l != preferred),
        "leadership moved back without an election: {interim:?}"
    );

    phase("elect the preferred leader");
    let addr = cluster.addr(preferred);
    let (code, answers) = elect_leaders(addr, 0, Some(&[(TOPIC, 0)]));
    assert_eq!(code, 0);
    assert_eq!(answers, vec![(TOPIC.to_string(), 0, 0, None)]);
    wait_until(OP_TIMEOUT, "the preferred replica leads again", || {
        cluster.leader_of(TOPIC, 0) == Some(preferred)
    });
    // Done already: named explicitly it is ELECTION_NOT_NEEDED, and an election over
    // every partition leaves it out.
    let (_, answers) = elect_leaders(addr, 0, Some(&[(TOPIC, 0)]));
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].2, ResponseError::ElectionNotNeeded.code());
    let (code, answers) = elect_leaders(addr, 0, None);
    assert_eq!(code, 0);
    assert!(
        answers.iter().all(|a| a.0 != TOPIC),
        "an election over every partition lists {TOPIC}: {answers:?}"
    );
    let (_, answers) = elect_leaders(addr, 0, Some(&[("no-such-topic", 0)]));
    assert_eq!(answers[0].2, ResponseError::UnknownTopicOrPartition.code());

    phase("unclean elections are refused");
    let (code, answers) = elect_leaders(addr, 1, Some(&[(TOPIC, 0)]));
    assert_eq!(code, 0);
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].2, ResponseError::InvalidRequest.code());
    assert!(
        answers[0]
            .3
            .as_deref()
            .is_some_and(|m| m.contains("unclean leader election is not supported")),
        "{answers:?}"
    );
    let (code, _) = elect_leaders(addr, 1, None);
    assert_eq!(code, ResponseError::InvalidRequest.code());
    assert_eq!(cluster.wait_for_leader(TOPIC, 0, OP_TIMEOUT), preferred);
    assert_holds_all(&cluster.running_bootstrap(), TOPIC, COUNT);
}

#[test]
fn reassignments_that_cannot_be_done_get_kafka_error_codes() {
    const TOPIC: &str = "refusals";
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]);
    let original = cluster.wait_for_leader(TOPIC, 0, OP_TIMEOUT);
    let other = (0..3).find(|id| *id != original).unwrap();
    let addr = cluster.addr(other);

    assert_eq!(
        alter_one(addr, TOPIC, 0, Some(&[original, 7]), true),
        ResponseError::InvalidReplicaAssignment.code(),
        "a broker that is not registered"
    );
    assert_eq!(
        alter_one(addr, TOPIC, 0, Some(&[other, other]), true),
        ResponseError::InvalidReplicaAssignment.code(),
        "a broker listed twice"
    );
    assert_eq!(
        alter_one(addr, TOPIC, 0, None, true),
        ResponseError::NoReassignmentInProgress.code(),
        "a cancel without a reassignment"
    );
    assert_eq!(
        alter_one(addr, "no-such-topic", 0, Some(&[original]), true),
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        alter_one(addr, TOPIC, 3, Some(&[original]), true),
        ResponseError::UnknownTopicOrPartition.code()
    );
    // One request, one refused partition: the other is answered on its own.
    let answers = alter_reassignments(
        addr,
        &[
            (TOPIC, 0, Some(&[original][..])),
            (TOPIC, 9, Some(&[original][..])),
        ],
        true,
    );
    let codes: Vec<i16> = answers.iter().map(|a| a.2).collect();
    assert_eq!(
        codes,
        vec![0, ResponseError::UnknownTopicOrPartition.code()]
    );
    assert!(list_reassignments(addr).is_empty());

    phase("a reassignment onto a dead broker stays in progress until cancelled");
    let dead = (0..3).find(|id| *id != original && *id != other).unwrap();
    cluster.kill9(dead);
    assert_eq!(alter_one(addr, TOPIC, 0, Some(&[original, dead]), true), 0);
    // The dead broker cannot fetch, so it never joins the ISR and the move stays open.
    assert_eq!(
        list_reassignments(addr),
        vec![(
            TOPIC.to_string(),
            0,
            vec![original, dead],
            vec![dead],
            vec![]
        )]
    );
    assert_eq!(cluster.isr_of(TOPIC, 0), vec![original]);
    assert_eq!(alter_one(addr, TOPIC, 0, None, true), 0);
    assert!(list_reassignments(addr).is_empty());
    wait_for_replicas(&cluster, other, TOPIC, 0, &[original]);
    assert_eq!(
        alter_one(addr, TOPIC, 0, None, true),
        ResponseError::NoReassignmentInProgress.code()
    );
}

/// Names a phase of a test in its output (STYLE §7.7); the harness prints broker output
/// only on failure, so this goes to stderr, which the test runner captures.
fn phase(name: &str) {
    eprintln!("==== phase: {name}");
}

//! Consumer groups with librdkafka (`subscribe`) against a real broker process: partitions
//! shared out within a group and never held by two members at once, members that leave or
//! crash, manual and automatic commits surviving consumer and broker restarts, two groups on
//! one topic, and the coordinator's error codes for stale generations and unknown members.
//!
//! A crashed member is a child process (this test binary re-run on the ignored
//! `group_member_child` test) killed with SIGKILL: dropping an rdkafka consumer in-process
//! always sends LeaveGroup, so only a dead process leaves its session to time out.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

/// Broker settings for these tests: a short first-join delay keeps them fast.
const BROKER: &[(&str, &str)] = &[("group.initial.rebalance.delay.ms", "200")];
const GROUP_TIMEOUT: Duration = Duration::from_secs(40);

fn group_consumer(bootstrap: &str, group: &str, settings: &[(&str, &str)]) -> BaseConsumer {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    config.create().expect("create group consumer")
}

fn subscribed(
    bootstrap: &str,
    group: &str,
    topic: &str,
    settings: &[(&str, &str)],
) -> BaseConsumer {
    let c = group_consumer(bootstrap, group, settings);
    c.subscribe(&[topic]).expect("subscribe");
    c
}

fn assigned(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Produces `per_partition` messages to every partition; values are `p-{partition}-{n}`.
fn produce_each(bootstrap: &str, topic: &str, partitions: i32, per_partition: usize, from: usize) {
    let p = producer(bootstrap, &[("acks", "all")]);
    let mut id = 0;
    for partition in 0..partitions {
        for n in from..from + per_partition {
            let value = format!("p-{partition}-{n}");
            send(
                &p,
                BaseRecord::with_opaque_to(topic, id)
                    .partition(partition)
                    .payload(value.as_bytes()),
            );
            id += 1;
        }
    }
    for d in flush_deliveries(&p, id) {
        assert!(d.error.is_none(), "produce failed: {:?}", d.error);
    }
}

/// One read: (partition, offset).
type Read = (i32, i64);

/// Polls every consumer round-robin, committing each message synchronously if `commit`,
/// until `done`; asserts at every step that no partition is assigned to two members.
fn poll_group(
    consumers: &[&BaseConsumer],
    reads: &mut Vec<Vec<Read>>,
    commit: bool,
    what: &str,
    mut done: impl FnMut(&[&BaseConsumer], &[Vec<Read>]) -> bool,
) {
    let deadline = Instant::now() + GROUP_TIMEOUT;
    reads.resize(consumers.len(), Vec::new());
    loop {
        let mut owners: BTreeMap<i32, usize> = BTreeMap::new();
        for (i, c) in consumers.iter().enumerate() {
            for p in assigned(c) {
                if let Some(other) = owners.insert(p, i) {
                    panic!("partition {p} assigned to members {other} and {i} at once");
                }
            }
        }
        if done(consumers, reads) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}; reads {reads:?}"
        );
        for (i, c) in consumers.iter().enumerate() {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                reads[i].push((m.partition(), m.offset()));
                if commit {
                    c.commit_message(&m, CommitMode::Sync)
                        .expect("commit of a consumed message");
                }
            }
        }
    }
}

fn sizes(consumers: &[&BaseConsumer]) -> Vec<usize> {
    consumers.iter().map(|c| assigned(c).len()).collect()
}

#[test]
fn three_members_share_six_partitions_without_overlap() {
    let broker = TestBroker::start(BROKER);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "share", 6, &[]);
    let a = subscribed(&bootstrap, "g-share", "share", &[]);
    let b = subscribed(&bootstrap, "g-share", "share", &[]);
    let c = subscribed(&bootstrap, "g-share", "share", &[]);
    let members = [&a, &b, &c];
    let mut reads = Vec::new();
    poll_group(
        &members,
        &mut reads,
        false,
        "each member holds two partitions",
        |cs, _| sizes(cs) == [2, 2, 2],
    );
    produce_each(&bootstrap, "share", 6, 10, 0);
    poll_group(
        &members,
        &mut reads,
        false,
        "all 60 messages are read",
        |_, r| r.iter().map(Vec::len).sum::<usize>() >= 60,
    );
    let mut all: Vec<Read> = reads.iter().flatten().copied().collect();
    all.sort();
    let expected: Vec<Read> = (0..6).flat_map(|p| (0..10).map(move |o| (p, o))).collect();
    assert_eq!(
        all, expected,
        "every message read exactly once by the group"
    );
    for (i, member_reads) in reads.iter().enumerate() {
        let held = assigned(members[i]);
        assert!(
            member_reads.iter().all(|(p, _)| held.contains(p)),
            "member {i} read only its own partitions"
        );
    }
}

/// The child side of `members_that_leave_or_crash_hand_their_partitions_over`: a member
/// that commits each message and reports what it read on stdout, until it is killed.
#[test]
#[ignore = "run as a child process by another test"]
fn group_member_child() {
    let Ok(bootstrap) = std::env::var("TRIBUTARY_CHILD_BOOTSTRAP") else {
        return;
    };
    let c = subscribed(&bootstrap, "g-crash", "crash", &[]);
    loop {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            c.commit_message(&m, CommitMode::Sync)
                .expect("child commit");
            println!("CHILD-READ {} {}", m.partition(), m.offset());
        }
    }
}

struct ChildMember {
    child: Child,
    reads: Arc<Mutex<Vec<Read>>>,
}

impl ChildMember {
    fn spawn(bootstrap: &str) -> ChildMember {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "group_member_child", "--ignored", "--nocapture"])
            .env("TRIBUTARY_CHILD_BOOTSTRAP", bootstrap)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child member");
        let reads = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("child stdout");
        let sink = reads.clone();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let Some(rest) = line.strip_prefix("CHILD-READ ") else {
                    continue;
                };
                let mut it = rest.split(' ').map(|n| n.parse::<i64>().unwrap());
                let (p, o) = (it.next().unwrap(), it.next().unwrap());
                sink.lock().unwrap().push((p as i32, o));
            }
        });
        ChildMember { child, reads }
    }

    fn reads(&self) -> Vec<Read> {
        self.reads.lock().unwrap().clone()
    }
}

impl Drop for ChildMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every (partition, offset) below `per_partition` on six partitions, read exactly once in
/// total.
fn assert_read_once(reads: &[Read], per_partition: i64) {
    let mut all = reads.to_vec();
    all.sort();
    let expected: Vec<Read> = (0..6)
        .flat_map(|p| (0..per_partition).map(move |o| (p, o)))
        .collect();
    assert_eq!(
        all, expected,
        "every message read exactly once by the group"
    );
}

#[test]
fn members_that_leave_or_crash_hand_their_partitions_over() {
    const K: usize = 5;
    let broker = TestBroker::start(BROKER);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "crash", 6, &[]);
    let child = ChildMember::spawn(&bootstrap);
    let a = subscribed(&bootstrap, "g-crash", "crash", &[]);
    let b = subscribed(&bootstrap, "g-crash", "crash", &[]);
    let leaver = subscribed(&bootstrap, "g-crash", "crash", &[]);
    let mut reads = Vec::new();
    {
        let members = [&a, &b, &leaver];
        poll_group(
            &members,
            &mut reads,
            true,
            "four members share the partitions",
            |cs, _| {
                // The child holds what the three here do not.
                let s = sizes(cs);
                s.iter().all(|n| *n >= 1) && s.iter().sum::<usize>() < 6
            },
        );
        produce_each(&bootstrap, "crash", 6, K, 0);
        poll_group(
            &members,
            &mut reads,
            true,
            "the first messages are read",
            |_, r| r.iter().map(Vec::len).sum::<usize>() + child.reads().len() >= 6 * K,
        );
    }
    // A member leaves cleanly (close sends LeaveGroup): its partitions go to the others.
    let leaver_reads = reads.pop().unwrap();
    drop(leaver);
    let members = [&a, &b];
    poll_group(
        &members,
        &mut reads,
        true,
        "three members share the partitions",
        |cs, _| sizes(cs) == [2, 2],
    );
    produce_each(&bootstrap, "crash", 6, K, K);
    poll_group(
        &members,
        &mut reads,
        true,
        "the second messages are read",
        |_, r| {
            r.iter().map(Vec::len).sum::<usize>() + leaver_reads.len() + child.reads().len()
                >= 12 * K
        },
    );
    // The child crashes: its session times out and its partitions move to a and b, which
    // resume at what it committed.
    let crashed_at = Instant::now();
    let child_reads = child.reads();
    drop(child);
    poll_group(
        &members,
        &mut reads,
        true,
        "a and b hold every partition",
        |cs, _| sizes(cs) == [3, 3],
    );
    assert!(
        crashed_at.elapsed() < Duration::from_secs(20),
        "partitions of the crashed member moved within its session timeout (+ slack)"
    );
    produce_each(&bootstrap, "crash", 6, K, 2 * K);
    poll_group(
        &members,
        &mut reads,
        true,
        "a and b read everything",
        |_, r| {
            r.iter().map(Vec::len).sum::<usize>() + leaver_reads.len() + child_reads.len() >= 18 * K
        },
    );
    assert!(
        !leaver_reads.is_empty(),
        "the member that left had partitions"
    );
    assert!(!child_reads.is_empty(), "the crashed member had partitions");
    let mut all: Vec<Read> = reads.iter().flatten().copied().collect();
    all.extend(leaver_reads);
    all.extend(child_reads);
    assert_read_once(&all, 3 * K as i64);
}

fn committed(c: &BaseConsumer, topic: &str, partition: i32) -> Offset {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    c.committed_offsets(tpl, OP_TIMEOUT)
        .expect("committed offsets")
        .find_partition(topic, partition)
        .expect("partition in the answer")
        .offset()
}

/// Reads with a subscribed consumer until `n` messages arrived; returns their offsets.
fn read_n(c: &BaseConsumer, n: usize) -> Vec<i64> {
    let mut got = Vec::new();
    let deadline = Instant::now() + GROUP_TIMEOUT;
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages read",
            got.len()
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            got.push(m.offset());
        }
    }
    got
}

#[test]
fn manual_commit_then_restart_resumes_after_the_commit_and_redelivers_the_rest() {
    let broker = TestBroker::start(BROKER);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "manual", 1, &[]);
    produce_each(&bootstrap, "manual", 1, 20, 0);
    let c = subscribed(&bootstrap, "g-manual", "manual", &[]);
    assert_eq!(
        committed(&c, "manual", 0),
        Offset::Invalid,
        "nothing committed yet"
    );
    let got = read_n(&c, 10);
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("manual", 0, Offset::Offset(7))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    assert_eq!(committed(&c, "manual", 0), Offset::Offset(7));
    drop(c);
    // Offsets 7.. were read but not committed: they come again.
    let c = subscribed(&bootstrap, "g-manual", "manual", &[]);
    let got = read_n(&c, 13);
    assert_eq!(
        got,
        (7..20).collect::<Vec<_>>(),
        "resumed exactly at the commit"
    );
}

#[test]
fn auto_commit_commits_what_was_consumed() {
    let broker = TestBroker::start(BROKER);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "auto", 1, &[]);
    produce_each(&bootstrap, "auto", 1, 20, 0);
    let settings = [
        ("enable.auto.commit", "true"),
        ("auto.commit.interval.ms", "100"),
    ];
    let c = subscribed(&bootstrap, "g-auto", "auto", &settings);
    assert_eq!(read_n(&c, 20), (0..20).collect::<Vec<_>>());
    wait_until(GROUP_TIMEOUT, "auto-commit reaches offset 20", || {
        c.poll(Duration::from_millis(10));
        committed(&c, "auto", 0) == Offset::Offset(20)
    });
    drop(c);
    produce_each(&bootstrap, "auto", 1, 5, 20);
    let c = subscribed(&bootstrap, "g-auto", "auto", &settings);
    assert_eq!(read_n(&c, 5), (20..25).collect::<Vec<_>>());
}

#[test]
fn two_groups_on_one_topic_each_read_everything() {
    let broker = TestBroker::start(BROKER);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "fanout", 2, &[]);
    produce_each(&bootstrap, "fanout", 2, 15, 0);
    for group in ["g-one", "g-two"] {
        let c = subscribed(&bootstrap, group, "fanout", &[]);
        let mut reads = Vec::new();
        poll_group(&[&c], &mut reads, true, "the group read all 30", |_, r| {
            r[0].len() >= 30
        });
        let mut all = reads.remove(0);
        all.sort();
        let expected: Vec<Read> = (0..2).flat_map(|p| (0..15).map(move |o| (p, o))).collect();
        assert_eq!(all, expected, "{group} read everything once");
    }
}

fn fetch_committed(raw: &mut RawClient, group: &str, topic: &str, partition: i32) -> i64 {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(vec![partition])]));
    let v = raw.version(ApiKey::OffsetFetch, 7);
    let resp = raw.send(req, v);
    resp.topics[0].partitions[0].committed_offset
}

fn describe_state(raw: &mut RawClient, group: &str) -> (String, usize) {
    let v = raw.version(ApiKey::DescribeGroups, 5);
    let resp = raw.send(
        DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.into()))]),
        v,
    );
    let g = &resp.groups[0];
    (g.group_state.to_string(), g.members.len())
}

#[test]
fn broker_restart_keeps_committed_offsets_and_group_state() {
    let mut broker = TestBroker::start(BROKER);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "durable", 1, &[]);
    produce_each(&bootstrap, "durable", 1, 10, 0);
    // An empty group with offsets, and a stable group with one member.
    let c = subscribed(&bootstrap, "g-empty", "durable", &[]);
    read_n(&c, 4);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("durable", 0, Offset::Offset(4))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(c);
    let live = subscribed(&bootstrap, "g-live", "durable", &[]);
    read_n(&live, 6);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("durable", 0, Offset::Offset(6))
        .unwrap();
    live.commit(&tpl, CommitMode::Sync).expect("commit");

    for kill in [false, true] {
        if kill {
            broker.kill9();
        } else {
            assert!(broker.sigterm_and_wait().success(), "clean exit on SIGTERM");
        }
        broker.restart();
        let mut raw = RawClient::connect_negotiated(broker.addr());
        assert_eq!(fetch_committed(&mut raw, "g-empty", "durable", 0), 4);
        assert_eq!(fetch_committed(&mut raw, "g-live", "durable", 0), 6);
        assert_eq!(
            describe_state(&mut raw, "g-empty"),
            ("Empty".to_string(), 0)
        );
        let (state, members) = describe_state(&mut raw, "g-live");
        assert!(
            members == 1 && (state == "Stable" || state == "PreparingRebalance"),
            "g-live after restart: {state} with {members} members"
        );
    }
    // The live member carries on where it committed.
    produce_each(&bootstrap, "durable", 1, 2, 10);
    let mut rest = Vec::new();
    let deadline = Instant::now() + GROUP_TIMEOUT;
    while !rest.contains(&11) {
        assert!(Instant::now() < deadline, "live member read {rest:?}");
        if let Some(Ok(m)) = live.poll(Duration::from_millis(50)) {
            rest.push(m.offset());
        }
    }
    assert!(
        rest.iter().all(|o| *o >= 6),
        "nothing below the commit again: {rest:?}"
    );
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[test]
fn stale_generations_and_unknown_members_get_kafka_error_codes() {
    let broker = TestBroker::start(&[("group.initial.rebalance.delay.ms", "0")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "raw", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let group = GroupId(s("g-raw"));

    let find = raw.send(FindCoordinatorRequest::default().with_key(s("g-raw")), 3);
    assert_eq!(find.error_code, 0);
    assert_eq!(find.port, i32::from(broker.addr().port()));
    let txn = raw.send(
        FindCoordinatorRequest::default()
            .with_key(s("txn"))
            .with_key_type(1),
        3,
    );
    assert_eq!(txn.error_code, 42, "transactions: INVALID_REQUEST");

    let join = |raw: &mut RawClient, member: &str| {
        raw.send(
            JoinGroupRequest::default()
                .with_group_id(group.clone())
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(s(member))
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(bytes::Bytes::from_static(b"meta"))]),
            5,
        )
    };
    let first = join(&mut raw, "");
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = first.member_id.to_string();
    let joined = join(&mut raw, &member);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.to_string(), member);
    let synced = raw.send(
        SyncGroupRequest::default()
            .with_group_id(group.clone())
            .with_generation_id(1)
            .with_member_id(s(&member))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(bytes::Bytes::from_static(b"assigned"))]),
        3,
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"assigned");

    let commit = |raw: &mut RawClient, member: &str, generation: i32, topic: &str| {
        let resp = raw.send(
            OffsetCommitRequest::default()
                .with_group_id(group.clone())
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(member))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(3)])]),
            7,
        );
        resp.topics[0].partitions[0].error_code
    };
    assert_eq!(
        commit(&mut raw, &member, 0, "raw"),
        22,
        "ILLEGAL_GENERATION"
    );
    assert_eq!(
        commit(&mut raw, "nobody", 1, "raw"),
        25,
        "UNKNOWN_MEMBER_ID"
    );
    assert_eq!(
        commit(&mut raw, &member, 1, "no-such-topic"),
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        fetch_committed(&mut raw, "g-raw", "raw", 0),
        -1,
        "no commit stored yet"
    );
    assert_eq!(commit(&mut raw, &member, 1, "raw"), 0);
    assert_eq!(fetch_committed(&mut raw, "g-raw", "raw", 0), 3);

    let hb = |raw: &mut RawClient, member: &str, generation: i32| {
        raw.send(
            HeartbeatRequest::default()
                .with_group_id(group.clone())
                .with_generation_id(generation)
                .with_member_id(s(member)),
            4,
        )
        .error_code
    };
    assert_eq!(hb(&mut raw, &member, 1), 0);
    assert_eq!(hb(&mut raw, &member, 7), 22, "ILLEGAL_GENERATION");
    assert_eq!(hb(&mut raw, "nobody", 1), 25, "UNKNOWN_MEMBER_ID");

    let listed = raw.send(ListGroupsRequest::default(), 4);
    assert!(listed
        .groups
        .iter()
        .any(|g| g.group_id.0.as_str() == "g-raw" && g.group_state.as_str() == "Stable"));
    let delete = |raw: &mut RawClient| {
        raw.send(
            DeleteGroupsRequest::default().with_groups_names(vec![group.clone()]),
            2,
        )
        .results[0]
            .error_code
    };
    assert_eq!(delete(&mut raw), 68, "NON_EMPTY_GROUP");
    let left = raw.send(
        LeaveGroupRequest::default()
            .with_group_id(group.clone())
            .with_member_id(s(&member)),
        1,
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(describe_state(&mut raw, "g-raw").0, "Empty");
    assert_eq!(delete(&mut raw), 0);
    assert_eq!(delete(&mut raw), 69, "GROUP_ID_NOT_FOUND");
    assert_eq!(
        fetch_committed(&mut raw, "g-raw", "raw", 0),
        -1,
        "offsets deleted with the group"
    );
}

#[test]
fn offsets_topic_is_compacted_and_still_restores_the_latest_commit() {
    let mut broker = TestBroker::start(&[
        ("offsets.topic.num.partitions", "1"),
        ("offsets.topic.segment.bytes", "1000"),
    ]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "compacted", 1, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    const COMMITS: i64 = 200;
    for offset in 0..COMMITS {
        // Generation -1 and no member id: a group that only stores offsets.
        let resp = raw.send(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g-compact")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(topic_name("compacted"))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
            7,
        );
        assert_eq!(resp.topics[0].partitions[0].error_code, 0);
    }
    let dir = broker.partition_dir("__consumer_offsets", 0);
    let log_bytes = || -> u64 {
        files_with_suffix(&dir, ".log")
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    // Each commit is a batch of well over 100 bytes; compaction keeps about one per segment.
    wait_until(GROUP_TIMEOUT, "the offsets topic is compacted", || {
        log_bytes() < (COMMITS as u64) * 100 / 3
    });
    assert!(
        log_bytes() > 0,
        "the offsets partition holds the latest commit"
    );
    broker.restart();
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(
        fetch_committed(&mut raw, "g-compact", "compacted", 0),
        COMMITS - 1,
        "the latest commit survives compaction and restart"
    );
}

#[test]
fn oversized_commit_metadata_gets_offset_metadata_too_large() {
    let broker = TestBroker::start(&[("offset.metadata.max.bytes", "100")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "meta", 2, &[]);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    let partition = |p: i32, offset: i64, metadata: &str| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(p)
            .with_committed_offset(offset)
            .with_committed_metadata(Some(s(metadata)))
    };
    // Partition 0 carries 101 bytes of metadata, partition 1 exactly the limit.
    let resp = raw.send(
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g-meta")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("meta"))
                .with_partitions(vec![
                    partition(0, 3, &"x".repeat(101)),
                    partition(1, 4, &"y".repeat(100)),
                ])]),
        7,
    );
    let codes: Vec<(i32, i16)> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![(0, 12), (1, 0)],
        "OFFSET_METADATA_TOO_LARGE only for p0"
    );
    assert_eq!(
        fetch_committed(&mut raw, "g-meta", "meta", 0),
        -1,
        "the oversized commit was not stored"
    );
    assert_eq!(fetch_committed(&mut raw, "g-meta", "meta", 1), 4);
}

/// Counts the rebalance callbacks of a consumer: a revoke means it lost its partitions.
#[derive(Default)]
struct RebalanceCounter {
    revokes: std::sync::atomic::AtomicUsize,
    assigns: std::sync::atomic::AtomicUsize,
}

impl rdkafka::ClientContext for RebalanceCounter {}

impl rdkafka::consumer::ConsumerContext for RebalanceCounter {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if matches!(rebalance, rdkafka::consumer::Rebalance::Revoke(_)) {
            self.revokes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if matches!(rebalance, rdkafka::consumer::Rebalance::Assign(_)) {
            self.assigns
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn static_member(
    bootstrap: &str,
    instance: &str,
    session_ms: u64,
) -> BaseConsumer<RebalanceCounter> {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", "g-static")
        .set("group.instance.id", instance)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", session_ms.to_string())
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false");
    let c: BaseConsumer<RebalanceCounter> = config
        .create_with_context(RebalanceCounter::default())
        .expect("create static member");
    c.subscribe(&["static"]).expect("subscribe");
    c
}

fn static_assigned(c: &BaseConsumer<RebalanceCounter>) -> BTreeSet<i32> {
    c.assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

fn counts(c: &BaseConsumer<RebalanceCounter>) -> (usize, usize) {
    let ctx = c.context();
    (
        ctx.revokes.load(std::sync::atomic::Ordering::SeqCst),
        ctx.assigns.load(std::sync::atomic::Ordering::SeqCst),
    )
}

#[test]
fn static_member_rejoins_without_a_rebalance() {
    const SESSION_MS: u64 = 20_000;
    let broker = TestBroker::start(BROKER);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "static", 4, &[]);
    let a = static_member(&bootstrap, "inst-a", SESSION_MS);
    let b = static_member(&bootstrap, "inst-b", SESSION_MS);
    let deadline = Instant::now() + GROUP_TIMEOUT;
    loop {
        a.poll(Duration::from_millis(20));
        b.poll(Duration::from_millis(20));
        let (pa, pb) = (static_assigned(&a), static_assigned(&b));
        if pa.len() == 2 && pb.len() == 2 && pa.is_disjoint(&pb) {
            break;
        }
        assert!(Instant::now() < deadline, "no 2+2 split: {pa:?} {pb:?}");
    }
    let (a_partitions, b_partitions) = (static_assigned(&a), static_assigned(&b));
    let b_counts = counts(&b);
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(
        describe_state(&mut raw, "g-static"),
        ("Stable".to_string(), 2)
    );

    // A static member sends no LeaveGroup on close: its membership waits out the session.
    let closed = Instant::now();
    drop(a);
    assert_eq!(
        describe_state(&mut raw, "g-static"),
        ("Stable".to_string(), 2),
        "the closed static member is still a member"
    );
    let a = static_member(&bootstrap, "inst-a", SESSION_MS);
    let deadline = Instant::now() + GROUP_TIMEOUT;
    while static_assigned(&a) != a_partitions {
        b.poll(Duration::from_millis(20));
        a.poll(Duration::from_millis(20));
        assert_eq!(static_assigned(&b), b_partitions, "b kept its partitions");
        assert!(
            Instant::now() < deadline,
            "the restarted member did not get {a_partitions:?} back: {:?}",
            static_assigned(&a)
        );
    }
    assert!(
        closed.elapsed() < Duration::from_millis(SESSION_MS),
        "rejoined within the session timeout"
    );
    // Let b see any rebalance the rejoin might have started, then check it saw none.
    for _ in 0..20 {
        b.poll(Duration::from_millis(20));
        a.poll(Duration::from_millis(20));
    }
    assert_eq!(counts(&b), b_counts, "b was neither revoked nor reassigned");
    assert_eq!(static_assigned(&b), b_partitions);
    assert_eq!(
        describe_state(&mut raw, "g-static"),
        ("Stable".to_string(), 2)
    );
}

fn listed_groups(raw: &mut RawClient) -> Vec<String> {
    raw.send(ListGroupsRequest::default(), 4)
        .groups
        .iter()
        .map(|g| g.group_id.0.to_string())
        .collect()
}

#[test]
fn offsets_of_an_emptied_group_expire_after_retention_and_stay_gone() {
    let mut broker = TestBroker::start(&[
        ("group.initial.rebalance.delay.ms", "200"),
        ("offsets.retention.ms", "2000"),
        ("offsets.retention.check.interval.ms", "100"),
    ]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "expiring", 1, &[]);
    produce_each(&bootstrap, "expiring", 1, 5, 0);
    let c = subscribed(&bootstrap, "g-expiring", "expiring", &[]);
    read_n(&c, 5);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("expiring", 0, Offset::Offset(5))
        .unwrap();
    c.commit(&tpl, CommitMode::Sync).expect("commit");
    // While the group has a member its offsets outlive the retention.
    let until = Instant::now() + Duration::from_millis(3_000);
    while Instant::now() < until {
        c.poll(Duration::from_millis(50));
    }
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(fetch_committed(&mut raw, "g-expiring", "expiring", 0), 5);
    assert!(listed_groups(&mut raw).contains(&"g-expiring".to_string()));
    drop(c);
    wait_until(GROUP_TIMEOUT, "the emptied group's offsets expire", || {
        fetch_committed(&mut raw, "g-expiring", "expiring", 0) == -1
            && !listed_groups(&mut raw).contains(&"g-expiring".to_string())
    });
    assert!(broker.sigterm_and_wait().success(), "clean exit on SIGTERM");
    broker.restart();
    let mut raw = RawClient::connect_negotiated(broker.addr());
    assert_eq!(fetch_committed(&mut raw, "g-expiring", "expiring", 0), -1);
    assert!(!listed_groups(&mut raw).contains(&"g-expiring".to_string()));
}

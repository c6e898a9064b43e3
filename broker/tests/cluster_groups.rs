//! Consumer groups across a coordinator failover, on three real broker processes with
//! librdkafka consumers: the group's coordinator (the leader of its `__consumer_offsets`
//! partition) is killed with SIGKILL while two members consume and commit, or stopped with
//! SIGTERM after a standalone consumer committed; another broker takes the partition over,
//! loads the group, and the consumers carry on from what was committed.
//!
//! ```text
//!  producer ──acks=all──▶ orders (3 partitions, RF 3) ◀── member A ─┐ commit after
//!                                                     ◀── member B ─┘ processing
//!  coordinator of the group = leader of __consumer_offsets-p ──kill -9──▶ new leader loads p
//! ```
//!
//! The oracle: every commit a member saw acknowledged is at or below the final committed
//! offset (nothing committed is lost); every acknowledged produced message was consumed;
//! a member that gets a partition starts at an offset some member committed (at or above
//! every commit acknowledged before it got the partition), and within one assignment it
//! never skips an offset.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Buf;
use common::cluster::TestCluster;
use common::{
    admin_client, admin_options, base_config, block_on, producer, send, wait_for, Delivery,
    RawClient, TestProducer, OP_TIMEOUT,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, FindCoordinatorRequest, GroupId, OffsetFetchRequest,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(60);
/// `offsets.topic.num.partitions` of these clusters.
const OFFSETS_PARTITIONS: i32 = 6;

/// Three brokers; groups start rebalancing at once, and a small `__consumer_offsets` keeps
/// the start quick on two cores.
fn start_cluster() -> TestCluster {
    TestCluster::start(
        3,
        &[
            ("group.initial.rebalance.delay.ms", "0"),
            (
                "offsets.topic.num.partitions",
                &OFFSETS_PARTITIONS.to_string(),
            ),
        ],
    )
}

/// Creates [`TOPIC`] with replication factor 3 and `min.insync.replicas=2`.
fn create_topic(bootstrap: &str) {
    let admin = admin_client(bootstrap);
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(3))
        .set("min.insync.replicas", "2");
    let results = block_on(admin.create_topics([&topic], &admin_options()))
        .expect("CreateTopics request failed");
    if let Err((topic, code)) = &results[0] {
        panic!("CreateTopics {topic} failed with {code:?}");
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

// ---------------------------------------------------------------------------------------
// Raw group requests that tolerate a broker going away
// ---------------------------------------------------------------------------------------

/// Sends `req` and decodes the answer; `None` when the connection fails (the broker is
/// stopping or gone), where `RawClient::send` would panic.
fn try_send<R: Request>(client: &mut RawClient, req: R, version: i16) -> Option<R::Response> {
    let payload = client.encode_request(&req, version);
    client.write_frame(&payload).ok()?;
    let mut frame = client.read_frame().ok()?;
    ResponseHeader::decode(&mut frame, R::Response::header_version(version)).ok()?;
    let response = R::Response::decode(&mut frame, version).ok()?;
    (frame.remaining() == 0).then_some(response)
}

/// Connects to broker `id` if it is running.
fn raw_client(cluster: &mut TestCluster, id: i32) -> Option<RawClient> {
    if !cluster.broker(id).is_alive() {
        return None;
    }
    let addr = cluster.addr(id);
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    Some(RawClient::connect_negotiated(addr))
}

/// The broker FindCoordinator names for `group`, asking the running brokers in turn until
/// one names a coordinator; panics after [`FAILOVER_TIMEOUT`].
fn find_coordinator(cluster: &mut TestCluster, group: &str) -> i32 {
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    loop {
        for id in 0..cluster.len() as i32 {
            let Some(mut client) = raw_client(cluster, id) else {
                continue;
            };
            let request = FindCoordinatorRequest::default().with_key(s(group));
            if let Some(r) = try_send(&mut client, request, 3) {
                if r.error_code == 0 && cluster.broker(r.node_id.0).is_alive() {
                    return r.node_id.0;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator for {group} within {FAILOVER_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The committed offset of every partition of [`TOPIC`] for `group` (-1 where none), by
/// OffsetFetch from the group's coordinator; retried while the coordinator moves or loads.
/// Returns it with the coordinator that answered.
fn committed_offsets(cluster: &mut TestCluster, group: &str) -> (BTreeMap<i32, i64>, i32) {
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    loop {
        let coordinator = find_coordinator(cluster, group);
        if let Some(mut client) = raw_client(cluster, coordinator) {
            let request = OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partition_indexes((0..PARTITIONS).collect())]));
            let version = client.version(ApiKey::OffsetFetch, 7);
            if let Some(r) = try_send(&mut client, request, version) {
                let partitions: Vec<_> = r.topics.iter().flat_map(|t| &t.partitions).collect();
                if r.error_code == 0 && partitions.iter().all(|p| p.error_code == 0) {
                    let offsets = partitions
                        .iter()
                        .map(|p| (p.partition_index, p.committed_offset))
                        .collect();
                    return (offsets, coordinator);
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no OffsetFetch answer for {group} within {FAILOVER_TIMEOUT:?}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// What the group's coordinator says about the group, and the high watermarks of its
/// `__consumer_offsets` partitions there: for failure messages.
fn diagnose(cluster: &mut TestCluster, group: &str) -> String {
    let coordinator = find_coordinator(cluster, group);
    let Some(mut client) = raw_client(cluster, coordinator) else {
        return format!("coordinator {coordinator} is gone");
    };
    let described = try_send(
        &mut client,
        DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]),
        5,
    )
    .map(|r| {
        r.groups
            .iter()
            .map(|g| (g.error_code, g.group_state.to_string(), g.members.len()))
            .collect::<Vec<_>>()
    });
    let high_watermarks: Vec<(i32, i64)> = (0..OFFSETS_PARTITIONS)
        .map(|p| (p, client.list_offsets("__consumer_offsets", p, -1)))
        .filter(|(_, (code, _, _))| *code == 0)
        .map(|(p, (_, _, offset))| (p, offset))
        .collect();
    format!(
        "coordinator {coordinator} describes the group as (error, state, members) {described:?}; \
         high watermarks of the __consumer_offsets partitions it leads: {high_watermarks:?}"
    )
}

// ---------------------------------------------------------------------------------------
// The producer
// ---------------------------------------------------------------------------------------

/// Writes messages round-robin over the partitions (acks=all, idempotent) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    thread: Option<thread::JoinHandle<(TestProducer, usize)>>,
}

impl Load {
    fn start(bootstrap: &str) -> Load {
        let producer = producer(
            bootstrap,
            &[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("message.timeout.ms", "60000"),
                ("request.timeout.ms", "10000"),
                ("linger.ms", "5"),
            ],
        );
        let deliveries = producer.context().deliveries.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let value = sent.to_string();
                    send(
                        &producer,
                        BaseRecord::with_opaque_to(TOPIC, sent)
                            .partition(sent as i32 % PARTITIONS)
                            .payload(value.as_bytes()),
                    );
                    sent += 1;
                    // A rate limit (about 500 messages a second), not a wait for an event.
                    thread::sleep(Duration::from_millis(2));
                }
                (producer, sent)
            })
        };
        Load {
            stop,
            deliveries,
            thread: Some(thread),
        }
    }

    /// Stops sending, waits for every delivery report, and returns the acknowledged
    /// messages as (partition, offset).
    fn finish(mut self) -> BTreeSet<(i32, i64)> {
        self.stop.store(true, Ordering::Relaxed);
        let (producer, sent) = self.thread.take().unwrap().join().unwrap();
        let _ = producer.flush(Duration::from_secs(60));
        wait_for(Duration::from_secs(60), "every delivery report", || {
            self.deliveries.lock().unwrap().len() >= sent
        });
        let deliveries = self.deliveries.lock().unwrap();
        deliveries
            .iter()
            .filter(|d| d.error.is_none())
            .map(|d| (d.partition, d.offset))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The members
// ---------------------------------------------------------------------------------------

/// What happened in one member, each event stamped from one counter shared by all
/// threads, so that events of different members can be ordered.
#[derive(Debug, Default, Clone)]
struct MemberLog {
    /// (stamp, partitions) per assignment the member received.
    assignments: Vec<(u64, BTreeSet<i32>)>,
    /// How many times its partitions were taken away.
    revocations: usize,
    /// (assignment number, partition, offset) per message consumed.
    consumed: Vec<(usize, i32, i64)>,
    /// (stamp before sending, offsets) per commit attempted.
    attempted: Vec<(u64, BTreeMap<i32, i64>)>,
    /// (stamp after the answer, offsets) per commit acknowledged.
    acked: Vec<(u64, BTreeMap<i32, i64>)>,
}

/// Records assignments as librdkafka hands them over (inside `poll`).
struct MemberContext {
    log: Arc<Mutex<MemberLog>>,
    clock: Arc<AtomicU64>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Revoke(_)) {
            self.log.lock().unwrap().revocations += 1;
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let partitions = tpl.elements().iter().map(|e| e.partition()).collect();
            let stamp = self.clock.fetch_add(1, Ordering::SeqCst);
            self.log
                .lock()
                .unwrap()
                .assignments
                .push((stamp, partitions));
        }
    }
}

/// A group member on its own thread: subscribes, and after every few messages it has
/// processed commits the next offset of each partition it consumed from (manual commits).
struct Member {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<MemberLog>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, clock: Arc<AtomicU64>) -> Member {
        let log = Arc::new(Mutex::new(MemberLog::default()));
        let context = MemberContext {
            log: log.clone(),
            clock: clock.clone(),
        };
        let consumer: BaseConsumer<MemberContext> = base_config(bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "500")
            .set("fetch.wait.max.ms", "100")
            .set("enable.partition.eof", "false")
            .create_with_context(context)
            .expect("create group member");
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, log) = (stop.clone(), log.clone());
            thread::spawn(move || member_loop(&consumer, &stop, &log, &clock))
        };
        Member {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn log(&self) -> MemberLog {
        self.log.lock().unwrap().clone()
    }

    /// Stops the member after a last commit; dropping the consumer leaves the group.
    fn stop(mut self) -> MemberLog {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("member thread");
        self.log()
    }
}

/// Commits `next` (partition → next offset to read) synchronously and logs the attempt
/// and, if the coordinator acknowledged it, the acknowledgement.
fn commit(
    consumer: &BaseConsumer<MemberContext>,
    next: &BTreeMap<i32, i64>,
    log: &Mutex<MemberLog>,
    clock: &AtomicU64,
) {
    if next.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in next {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(*o))
            .expect("add offset");
    }
    let stamp = clock.fetch_add(1, Ordering::SeqCst);
    log.lock().unwrap().attempted.push((stamp, next.clone()));
    if consumer.commit(&tpl, CommitMode::Sync).is_ok() {
        let stamp = clock.fetch_add(1, Ordering::SeqCst);
        log.lock().unwrap().acked.push((stamp, next.clone()));
    }
}

fn member_loop(
    consumer: &BaseConsumer<MemberContext>,
    stop: &AtomicBool,
    log: &Mutex<MemberLog>,
    clock: &AtomicU64,
) {
    // The next offset of each partition consumed in the current assignment.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    // (assignments, revocations) seen so far: the assignment number and whether it ended.
    let mut seen = (0, 0);
    let mut uncommitted = 0;
    while !stop.load(Ordering::Relaxed) {
        let message = consumer.poll(Duration::from_millis(50));
        let now = {
            let log = log.lock().unwrap();
            (log.assignments.len(), log.revocations)
        };
        if now != seen {
            // Partitions taken away or handed over: what was consumed before is not ours
            // to commit any more (another member may have committed past it).
            seen = now;
            next.clear();
            uncommitted = 0;
        }
        let assignment = seen.0;
        let Some(Ok(m)) = message else {
            continue;
        };
        log.lock()
            .unwrap()
            .consumed
            .push((assignment, m.partition(), m.offset()));
        next.insert(m.partition(), m.offset() + 1);
        uncommitted += 1;
        if uncommitted >= 10 {
            commit(consumer, &next, log, clock);
            uncommitted = 0;
        }
    }
    commit(consumer, &next, log, clock);
}

/// The largest acknowledged commit of each partition over `logs`, among the commits
/// stamped before `before`.
fn max_acked(logs: &[MemberLog], before: u64) -> BTreeMap<i32, i64> {
    let mut max: BTreeMap<i32, i64> = BTreeMap::new();
    for (stamp, offsets) in logs.iter().flat_map(|l| &l.acked) {
        if *stamp < before {
            for (p, o) in offsets {
                let m = max.entry(*p).or_insert(*o);
                *m = (*m).max(*o);
            }
        }
    }
    max
}

/// The largest commit of each partition attempted (acknowledged or not) before `before`.
fn max_attempted(logs: &[MemberLog], before: u64) -> BTreeMap<i32, i64> {
    let mut max: BTreeMap<i32, i64> = BTreeMap::new();
    for (stamp, offsets) in logs.iter().flat_map(|l| &l.attempted) {
        if *stamp < before {
            for (p, o) in offsets {
                let m = max.entry(*p).or_insert(*o);
                *m = (*m).max(*o);
            }
        }
    }
    max
}

/// Every assignment of every member starts, per partition, at an offset some member
/// committed before it (or at 0 when none had): at or above every commit acknowledged
/// before the assignment, at or below the largest one attempted; and it reads on without
/// skipping an offset.
fn assert_resumed_without_skips(logs: &[MemberLog]) {
    for (member, log) in logs.iter().enumerate() {
        for (number, (stamp, partitions)) in log.assignments.iter().enumerate() {
            let acked = max_acked(logs, *stamp);
            let attempted = max_attempted(logs, *stamp);
            for p in partitions {
                let offsets: Vec<i64> = log
                    .consumed
                    .iter()
                    .filter(|(a, q, _)| *a == number + 1 && q == p)
                    .map(|(_, _, o)| *o)
                    .collect();
                let Some(first) = offsets.first() else {
                    continue;
                };
                let low = acked.get(p).copied().unwrap_or(0);
                let high = attempted.get(p).copied().unwrap_or(0);
                assert!(
                    (low..=high).contains(first),
                    "member {member}, assignment {number}: partition {p} started at {first}, \
                     not within [{low}, {high}] (acknowledged, attempted commits before it)"
                );
                for w in offsets.windows(2) {
                    assert!(
                        w[1] <= w[0] + 1,
                        "member {member}, assignment {number}: partition {p} skipped from {} to {}",
                        w[0],
                        w[1]
                    );
                }
            }
        }
    }
}

fn consumed(logs: &[MemberLog]) -> HashSet<(i32, i64)> {
    logs.iter()
        .flat_map(|l| l.consumed.iter().map(|(_, p, o)| (*p, *o)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn a_group_carries_on_across_kill9_of_its_coordinator_and_loses_no_commit() {
    const GROUP: &str = "g-failover";
    let mut cluster = start_cluster();
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap);
    let clock = Arc::new(AtomicU64::new(0));
    let load = Load::start(&bootstrap);
    let members = [
        Member::start(&bootstrap, GROUP, clock.clone()),
        Member::start(&bootstrap, GROUP, clock.clone()),
    ];
    let logs = || members.iter().map(Member::log).collect::<Vec<_>>();

    // Phase 1: both members hold partitions and commit.
    wait_for(OP_TIMEOUT * 2, "both members to consume and commit", || {
        let logs = logs();
        logs.iter()
            .all(|l| l.acked.len() >= 3 && !l.consumed.is_empty())
    });
    let coordinator = find_coordinator(&mut cluster, GROUP);
    let (before_kill, _) = committed_offsets(&mut cluster, GROUP);
    eprintln!("phase 1: coordinator {coordinator}, committed {before_kill:?}");

    // Phase 2: kill -9 the coordinator while they work.
    cluster.kill9(coordinator);
    let killed_at = clock.fetch_add(1, Ordering::SeqCst);
    let acked_before_kill = max_acked(&logs(), killed_at);
    let consumed_at_kill = consumed(&logs()).len();
    eprintln!(
        "phase 2: killed broker {coordinator}; acknowledged commits so far {acked_before_kill:?}, \
         {consumed_at_kill} messages consumed"
    );

    // Phase 3: the members find the new coordinator and commit there.
    wait_for(
        FAILOVER_TIMEOUT,
        "commits acknowledged after the kill",
        || {
            let logs = logs();
            let after: usize = logs
                .iter()
                .map(|l| l.acked.iter().filter(|(s, _)| *s > killed_at).count())
                .sum();
            after >= 6 && consumed(&logs).len() > consumed_at_kill + 100
        },
    );
    let produced = load.finish();
    eprintln!(
        "phase 3: the members commit again; {} messages acknowledged to the producer",
        produced.len()
    );
    wait_for(
        FAILOVER_TIMEOUT,
        "every acknowledged message consumed",
        || {
            let consumed = consumed(&logs());
            produced.iter().all(|m| consumed.contains(m))
        },
    );
    // Both stop at once, each with a last commit while the group is still whole.
    for m in &members {
        m.stop.store(true, Ordering::Relaxed);
    }
    let logs: Vec<MemberLog> = members.into_iter().map(Member::stop).collect();

    // Phase 4: the new coordinator holds at least every acknowledged commit.
    let (committed, new_coordinator) = committed_offsets(&mut cluster, GROUP);
    assert_ne!(
        new_coordinator, coordinator,
        "the killed broker still coordinates"
    );
    let acked_ever = max_acked(&logs, u64::MAX);
    eprintln!(
        "phase 4: coordinator {new_coordinator} has {committed:?}; acknowledged at most \
         {acked_ever:?}; assignments per member {:?}",
        logs.iter().map(|l| l.assignments.len()).collect::<Vec<_>>()
    );
    for p in 0..PARTITIONS {
        let committed = committed[&p];
        for (what, acked) in [
            ("before the kill", &acked_before_kill),
            ("during the run", &acked_ever),
        ] {
            let acked = acked.get(&p).copied().unwrap_or(-1);
            assert!(
                committed >= acked,
                "partition {p}: committed offset {committed} is below the commit {acked} \
                 acknowledged {what}"
            );
        }
        assert!(
            committed >= before_kill[&p],
            "partition {p}: committed offset went back from {} to {committed}",
            before_kill[&p]
        );
    }
    assert_resumed_without_skips(&logs);
}

#[test]
fn committed_offsets_survive_a_controlled_shutdown_of_the_coordinator() {
    const GROUP: &str = "g-standalone";
    const PER_PARTITION: i64 = 20;
    let mut cluster = start_cluster();
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap);
    let p = producer(&bootstrap, &[("acks", "all")]);
    let mut sent = 0;
    for partition in 0..PARTITIONS {
        for n in 0..PER_PARTITION {
            let value = format!("{partition}-{n}");
            send(
                &p,
                BaseRecord::with_opaque_to(TOPIC, sent)
                    .partition(partition)
                    .payload(value.as_bytes()),
            );
            sent += 1;
        }
    }
    for d in common::flush_deliveries(&p, sent) {
        assert!(d.error.is_none(), "produce failed: {:?}", d.error);
    }

    // A standalone consumer (assign, no subscription) commits an offset per partition.
    let expected: BTreeMap<i32, i64> = [(0, 5), (1, 11), (2, 17)].into();
    {
        let standalone: BaseConsumer = base_config(&bootstrap)
            .set("group.id", GROUP)
            .set("enable.auto.commit", "false")
            .create()
            .expect("create consumer");
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in &expected {
            tpl.add_partition_offset(TOPIC, *partition, Offset::Offset(*offset))
                .unwrap();
        }
        standalone.assign(&tpl).expect("assign");
        standalone
            .commit(&tpl, CommitMode::Sync)
            .expect("commit_sync");
    }
    let (committed, coordinator) = committed_offsets(&mut cluster, GROUP);
    assert_eq!(committed, expected);
    eprintln!("phase 1: committed {committed:?} at coordinator {coordinator}");

    // Controlled shutdown of the coordinator: the partition moves, the new leader loads it.
    let status = cluster.sigterm_and_wait(coordinator);
    assert!(
        status.success(),
        "broker {coordinator} exited with {status}"
    );
    let (committed, new_coordinator) = committed_offsets(&mut cluster, GROUP);
    assert_ne!(new_coordinator, coordinator);
    assert_eq!(committed, expected, "offsets from the new coordinator");
    eprintln!("phase 2: broker {coordinator} stopped; coordinator {new_coordinator} has them");

    // A new member of the group resumes exactly there.
    let member: BaseConsumer = base_config(&cluster.running_bootstrap())
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create group member");
    member.subscribe(&[TOPIC]).expect("subscribe");
    let mut read: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    let wanted: usize = expected
        .values()
        .map(|from| (PER_PARTITION - from) as usize)
        .sum();
    while read.values().map(Vec::len).sum::<usize>() < wanted {
        if Instant::now() >= deadline {
            panic!(
                "the new member read only {read:?} within {FAILOVER_TIMEOUT:?}; assignment {:?}; {}",
                member.assignment(),
                diagnose(&mut cluster, GROUP)
            );
        }
        if let Some(Ok(m)) = member.poll(Duration::from_millis(50)) {
            read.entry(m.partition()).or_default().push(m.offset());
        }
    }
    for (partition, from) in &expected {
        let want: Vec<i64> = (*from..PER_PARTITION).collect();
        assert_eq!(
            read.get(partition),
            Some(&want),
            "partition {partition}: the new member resumes at the committed offset {from}"
        );
    }
}

/// `tributary groups describe` and `groups list` work through any broker: the CLI finds the
/// group's coordinator, and lists the groups of every broker.
#[test]
fn the_groups_cli_finds_the_coordinator_from_any_broker() {
    let mut cluster = start_cluster();
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap);
    let mut config = common::base_config(&bootstrap);
    config
        .set("group.id", "cli-group")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(i64::from(p) + 7))
            .unwrap();
    }
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    while let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        assert!(Instant::now() < deadline, "commit never succeeded: {e}");
        thread::sleep(Duration::from_millis(100));
    }
    let coordinator = find_coordinator(&mut cluster, "cli-group");
    for id in 0..3 {
        let addr = cluster.addr(id).to_string();
        let run = |args: &[&str]| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
                .args(args)
                .args(["--bootstrap-server", &addr])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(
                out.status.success(),
                "{args:?} through broker {id} (coordinator {coordinator}): {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            stdout
        };
        let described = run(&["groups", "describe", "cli-group"]);
        for p in 0..PARTITIONS {
            let row = described
                .lines()
                .find(|l| {
                    let cols: Vec<&str> = l.split_whitespace().collect();
                    cols.first() == Some(&TOPIC) && cols.get(1) == Some(&p.to_string().as_str())
                })
                .unwrap_or_else(|| panic!("no row for {TOPIC}-{p}:\n{described}"));
            assert!(
                row.split_whitespace().any(|c| c == (p + 7).to_string()),
                "committed offset {} missing: {row}",
                p + 7
            );
        }
        let listed = run(&["groups", "list"]);
        assert!(listed.lines().any(|l| l.trim() == "cli-group"), "{listed}");
    }
}

//! Replication and failover on three real broker processes, with librdkafka producing and
//! consuming: kill -9 of a partition leader, of the controller, of a follower; a former
//! leader with an unreplicated tail coming back; an isolated leader that must not
//! acknowledge acks=all writes alone; a broker restarted with an empty data directory;
//! SIGTERM of a leader under load.
//!
//! Every test checks the same property at the end: each acknowledged message is in the
//! partition, once, in the order it was sent.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use common::cluster::{ClusterOptions, TestCluster};
use common::{
    admin_client, admin_options, block_on, consume_partition, encode_records, producer, send,
    wait_for, Delivery, RawClient, TestProducer, OP_TIMEOUT,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;

const TOPIC: &str = "replicated";
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// Creates `name` with one partition, replication factor 3 and `min.insync.replicas=2`.
fn create_replicated_topic(bootstrap: &str, name: &str) {
    let admin = admin_client(bootstrap);
    let topic = NewTopic::new(name, 1, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
    let results = block_on(admin.create_topics([&topic], &admin_options()))
        .expect("CreateTopics request failed");
    if let Err((topic, code)) = &results[0] {
        panic!("CreateTopics {topic} failed with {code:?}");
    }
}

/// The partition's leader once every running broker answers Metadata with the same
/// leader and epoch and an ISR of exactly `isr` (sorted). Asking each broker, not any one,
/// matters: a broker that was cut off answers from its own, older view until it catches up.
fn wait_for_agreement(cluster: &mut TestCluster, topic: &str, isr: &[i32]) -> i32 {
    let mut leader = -1;
    wait_for(
        FAILOVER_TIMEOUT,
        &format!("every running broker to report ISR {isr:?} and one leader"),
        || {
            let running: Vec<i32> = (0..3).filter(|id| cluster.broker(*id).is_alive()).collect();
            let views: Vec<_> = running
                .iter()
                .map(|id| cluster.partition_seen_by(*id, topic, 0))
                .collect();
            let Some(Some(first)) = views.first().cloned() else {
                return false;
            };
            let agreed = views.iter().all(|v| {
                v.as_ref().is_some_and(|v| {
                    let mut got = v.isr.clone();
                    got.sort_unstable();
                    v.leader == first.leader && v.leader_epoch == first.leader_epoch && got == isr
                })
            });
            if agreed {
                leader = first.leader.unwrap_or(-1);
            }
            agreed && leader >= 0
        },
    );
    leader
}

/// Waits until every running broker's Metadata names the same leader with a full ISR.
fn wait_for_full_isr(cluster: &mut TestCluster, topic: &str) -> i32 {
    wait_for_agreement(cluster, topic, &[0, 1, 2])
}

/// A producer writing 0, 1, 2, ... as values (acks=all, idempotent) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    thread: Option<thread::JoinHandle<(TestProducer, usize)>>,
}

impl Load {
    /// Sends values `first`, `first + 1`, ... (the delivery ids are the values).
    fn start(bootstrap: &str, topic: &str, first: usize) -> Load {
        let producer = producer(
            bootstrap,
            &[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("message.timeout.ms", "60000"),
                ("request.timeout.ms", "10000"),
                ("linger.ms", "2"),
            ],
        );
        let deliveries = producer.context().deliveries.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let topic = topic.to_string();
        let thread = {
            let stop = stop.clone();
            let deliveries = deliveries.clone();
            thread::spawn(move || {
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    // Keep at most 2,000 messages in flight: a rate limit, not a wait for
                    // any particular event.
                    if sent - deliveries.lock().unwrap().len() > 2_000 {
                        thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    let id = first + sent;
                    let value = id.to_string();
                    send(
                        &producer,
                        BaseRecord::with_opaque_to(&topic, id)
                            .partition(0)
                            .payload(value.as_bytes()),
                    );
                    sent += 1;
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

    fn acked(&self) -> usize {
        self.deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.error.is_none())
            .count()
    }

    fn wait_acked(&self, n: usize, timeout: Duration) {
        wait_for(timeout, &format!("{n} acknowledged messages"), || {
            self.acked() >= n
        });
    }

    /// Stops sending, waits for every delivery report and returns them.
    fn finish(mut self) -> Vec<Delivery> {
        self.stop.store(true, Ordering::Relaxed);
        let (producer, sent) = self.thread.take().unwrap().join().unwrap();
        let _ = producer.flush(Duration::from_secs(60));
        wait_for(Duration::from_secs(60), "every delivery report", || {
            self.deliveries.lock().unwrap().len() >= sent
        });
        let mut all = self.deliveries.lock().unwrap().clone();
        all.sort_by_key(|d| d.id);
        all
    }
}

/// Every acknowledged value is in the partition exactly once, and the values the partition
/// holds are in the order they were sent, without duplicates.
fn assert_acked_exactly_once(bootstrap: &str, topic: &str, deliveries: &[Delivery]) -> Vec<u64> {
    let acked: Vec<&Delivery> = deliveries.iter().filter(|d| d.error.is_none()).collect();
    assert!(!acked.is_empty(), "nothing was acknowledged");
    let end = acked.iter().map(|d| d.offset).max().unwrap() + 1;
    let consumed = consume_partition(bootstrap, topic, 0, Offset::Beginning, end);
    let values: Vec<u64> = consumed
        .iter()
        .map(|m| {
            String::from_utf8(m.value.clone().unwrap())
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let mut seen = HashSet::new();
    for v in &values {
        assert!(seen.insert(*v), "value {v} is in the partition twice");
    }
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "values are out of send order"
    );
    for d in &acked {
        assert!(
            seen.contains(&(d.id as u64)),
            "acknowledged message {} (offset {}) is missing",
            d.id,
            d.offset
        );
        let at = consumed.iter().find(|m| m.offset == d.offset);
        assert_eq!(
            at.and_then(|m| m.value.clone()),
            Some(d.id.to_string().into_bytes()),
            "offset {} holds another message than the one acknowledged there",
            d.offset
        );
    }
    values
}

fn controller_id(cluster: &mut TestCluster) -> i32 {
    for id in 0..3 {
        if !cluster.broker(id).is_alive() {
            continue;
        }
        let addr = cluster.addr(id);
        let md = RawClient::connect_negotiated(addr).metadata(Some(&[]), false);
        if md.controller_id.0 >= 0 {
            return md.controller_id.0;
        }
    }
    panic!("no broker names an active controller");
}

/// Kills `victim` with SIGKILL while the load runs, and checks that writes carry on.
fn kill_during_load(cluster: &mut TestCluster, victim: i32, old_leader: i32) {
    let load = Load::start(&cluster.bootstrap(), TOPIC, 0);
    load.wait_acked(2_000, OP_TIMEOUT);
    cluster.kill9(victim);
    let at_kill = load.acked();
    load.wait_acked(at_kill + 2_000, FAILOVER_TIMEOUT);
    let deliveries = load.finish();
    let failed: Vec<_> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    assert!(
        failed.is_empty(),
        "deliveries failed: {:?}",
        &failed[..failed.len().min(5)]
    );
    let leader = cluster.wait_for_leader(TOPIC, 0, FAILOVER_TIMEOUT);
    if victim == old_leader {
        assert_ne!(leader, victim, "the killed broker still leads");
    }
    assert_acked_exactly_once(&cluster.running_bootstrap(), TOPIC, &deliveries);
    // The cluster heals: the killed broker comes back into the ISR.
    cluster.restart(victim);
    wait_for_full_isr(cluster, TOPIC);
}

#[test]
fn acks_all_writes_survive_kill9_of_the_partition_leader() {
    let mut cluster = TestCluster::start(3, &[]);
    create_replicated_topic(&cluster.bootstrap(), TOPIC);
    let leader = wait_for_full_isr(&mut cluster, TOPIC);
    kill_during_load(&mut cluster, leader, leader);
}

#[test]
fn acks_all_writes_survive_kill9_of_the_active_controller() {
    let mut cluster = TestCluster::start(3, &[]);
    create_replicated_topic(&cluster.bootstrap(), TOPIC);
    let leader = wait_for_full_isr(&mut cluster, TOPIC);
    let controller = controller_id(&mut cluster);
    kill_during_load(&mut cluster, controller, leader);
    // A new controller took over.
    wait_for(FAILOVER_TIMEOUT, "a new active controller", || {
        controller_id(&mut cluster) != controller
    });
}

#[test]
fn a_killed_follower_catches_up_and_rejoins_the_isr() {
    let mut cluster = TestCluster::start(3, &[]);
    create_replicated_topic(&cluster.bootstrap(), TOPIC);
    let leader = wait_for_full_isr(&mut cluster, TOPIC);
    let follower = (0..3).find(|id| *id != leader).unwrap();

    let load = Load::start(&cluster.bootstrap(), TOPIC, 0);
    load.wait_acked(2_000, OP_TIMEOUT);
    cluster.kill9(follower);
    // The remaining two still satisfy min.insync.replicas=2.
    let rest: Vec<i32> = (0..3).filter(|id| *id != follower).collect();
    wait_for_agreement(&mut cluster, TOPIC, &rest);
    let at_shrink = load.acked();
    load.wait_acked(at_shrink + 2_000, FAILOVER_TIMEOUT);
    cluster.restart(follower);
    wait_for_full_isr(&mut cluster, TOPIC);
    let deliveries = load.finish();
    assert!(deliveries.iter().all(|d| d.error.is_none()));
    assert_acked_exactly_once(&cluster.running_bootstrap(), TOPIC, &deliveries);
    // The follower holds the same log as the leader. Leadership may have moved to it
    // meanwhile (a preferred-leader election, or a broker fenced on a loaded machine);
    // then it is compared with another member of the full ISR.
    let leader = wait_for_full_isr(&mut cluster, TOPIC);
    let other = if leader != follower {
        leader
    } else {
        (0..3).find(|id| *id != follower).unwrap()
    };
    assert_same_log(&mut cluster, follower, other);
}

#[test]
fn a_broker_restarted_with_an_empty_data_dir_replicates_everything_again() {
    let mut cluster = TestCluster::start(3, &[]);
    create_replicated_topic(&cluster.bootstrap(), TOPIC);
    let leader = wait_for_full_isr(&mut cluster, TOPIC);
    let load = Load::start(&cluster.bootstrap(), TOPIC, 0);
    load.wait_acked(5_000, OP_TIMEOUT);
    let deliveries = load.finish();
    let follower = (0..3).find(|id| *id != leader).unwrap();
    cluster.kill9(follower);
    cluster.restart_empty(follower);
    wait_for_full_isr(&mut cluster, TOPIC);
    assert_same_log(&mut cluster, follower, leader);
    assert_acked_exactly_once(&cluster.running_bootstrap(), TOPIC, &deliveries);
}

#[test]
fn sigterm_of_the_leader_costs_clients_no_errors() {
    let mut cluster = TestCluster::start(3, &[]);
    create_replicated_topic(&cluster.bootstrap(), TOPIC);
    let leader = wait_for_full_isr(&mut cluster, TOPIC);

    // A consumer that follows the partition and records every error it sees.
    let stop = Arc::new(AtomicBool::new(false));
    let consumer_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let consumed = Arc::new(Mutex::new(0usize));
    let reader = {
        let (stop, errors, consumed) = (stop.clone(), consumer_errors.clone(), consumed.clone());
        let bootstrap = cluster.bootstrap();
        thread::spawn(move || {
            use rdkafka::consumer::Consumer;
            let consumer = common::consumer(&bootstrap);
            let mut tpl = rdkafka::TopicPartitionList::new();
            tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
                .unwrap();
            consumer.assign(&tpl).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(_)) => *consumed.lock().unwrap() += 1,
                    // librdkafka reports the stopped broker's closed connection as a
                    // "Broker transport failure" notice and carries on; anything else is
                    // an error the application would have to handle.
                    Some(Err(rdkafka::error::KafkaError::MessageConsumption(
                        rdkafka::types::RDKafkaErrorCode::BrokerTransportFailure,
                    ))) => {}
                    Some(Err(e)) => errors.lock().unwrap().push(e.to_string()),
                    None => {}
                }
            }
        })
    };
    let load = Load::start(&cluster.bootstrap(), TOPIC, 0);
    load.wait_acked(2_000, OP_TIMEOUT);
    let status = cluster.sigterm_and_wait(leader);
    assert!(status.success(), "the stopped broker exited with {status}");
    let at_stop = load.acked();
    load.wait_acked(at_stop + 2_000, FAILOVER_TIMEOUT);
    let deliveries = load.finish();
    let acked = deliveries.iter().filter(|d| d.error.is_none()).count();
    wait_for(
        OP_TIMEOUT,
        "the consumer to read every acknowledged message",
        || *consumed.lock().unwrap() >= acked,
    );
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let failed: Vec<_> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    assert!(
        failed.is_empty(),
        "producer saw errors: {:?}",
        &failed[..failed.len().min(5)]
    );
    assert!(
        consumer_errors.lock().unwrap().is_empty(),
        "consumer saw errors: {:?}",
        consumer_errors.lock().unwrap()
    );
    assert_acked_exactly_once(&cluster.running_bootstrap(), TOPIC, &deliveries);
    // Restarted, the broker takes its preferred leadership back eventually; at least it
    // rejoins the ISR.
    cluster.restart(leader);
    wait_for_full_isr(&mut cluster, TOPIC);
}

/// Raw records with one value each, for writes that bypass librdkafka.
fn raw_batch(values: &[String]) -> Bytes {
    let records: Vec<(Vec<u8>, Vec<u8>, i64)> = values
        .iter()
        .map(|v| (Vec::new(), v.as_bytes().to_vec(), 0))
        .collect();
    encode_records(&records, kafka_protocol::records::Compression::None).freeze()
}

#[test]
fn an_isolated_leader_cannot_acknowledge_alone_and_its_tail_is_truncated_on_return() {
    let mut cluster = TestCluster::start_with_proxies(3, &[]);
    create_replicated_topic(&cluster.bootstrap(), TOPIC);
    let old_leader = wait_for_full_isr(&mut cluster, TOPIC);
    let load = Load::start(&cluster.bootstrap(), TOPIC, 0);
    load.wait_acked(1_000, OP_TIMEOUT);
    let before = load.finish();

    cluster.isolate(old_leader);
    let addr = cluster.addr(old_leader);
    let mut client = RawClient::connect_negotiated(addr);
    // acks=1 is answered by the leader alone: these records exist only on it. (Unless the
    // machine stalled this test for a whole session timeout: then the leader has already
    // stepped down, below, and refuses them.)
    let tail: Vec<String> = (0..20).map(|i| format!("tail-{i}")).collect();
    let (code, _) = client.produce(TOPIC, 0, raw_batch(&tail), 1);
    assert!(
        code == 0 || code == NOT_LEADER_OR_FOLLOWER,
        "acks=1 on the isolated leader answered {code}"
    );
    // acks=all cannot be: no follower can fetch from it. No split brain.
    let (code, _) = client.produce(TOPIC, 0, raw_batch(&["lost".to_string()]), -1);
    assert_ne!(
        code, 0,
        "an isolated leader acknowledged an acks=all write alone"
    );
    // A session timeout with no heartbeat through to the controller and no follower
    // fetching, the old leader knows it is cut off: it refuses writes, and closes a
    // connection that asks it for the partition's metadata, so a client that reaches it (it
    // stays reachable to clients) looks the leader up elsewhere instead of retrying here for
    // as long as the cut lasts.
    wait_for(FAILOVER_TIMEOUT, "the isolated leader to step down", || {
        client
            .produce(TOPIC, 0, raw_batch(&["tail-late".to_string()]), 1)
            .0
            == NOT_LEADER_OR_FOLLOWER
    });
    assert!(
        client.try_metadata(Some(&[TOPIC]), false).is_err(),
        "the cut-off broker answered Metadata for a partition it no longer leads"
    );

    // The majority elects a new leader and takes writes.
    let others: Vec<i32> = (0..3).filter(|id| *id != old_leader).collect();
    let majority = others
        .iter()
        .map(|id| cluster.addr(*id).to_string())
        .collect::<Vec<_>>()
        .join(",");
    wait_for(FAILOVER_TIMEOUT, "a new leader among the other two", || {
        others.iter().any(|id| {
            cluster
                .partition_seen_by(*id, TOPIC, 0)
                .and_then(|p| p.leader)
                .is_some_and(|l| l != old_leader)
        })
    });
    let load = Load::start(&majority, TOPIC, before.len());
    load.wait_acked(1_000, FAILOVER_TIMEOUT);
    let after = load.finish();

    cluster.heal(old_leader);
    let new_leader = wait_for_full_isr(&mut cluster, TOPIC);
    assert_ne!(
        new_leader, old_leader,
        "leadership went back without an election"
    );
    let all: Vec<Delivery> = before.iter().chain(after.iter()).cloned().collect();
    assert_acked_exactly_once(&cluster.running_bootstrap(), TOPIC, &all);
    // The old leader's log equals the new leader's: its tail is gone.
    let old_log = assert_same_log(&mut cluster, old_leader, new_leader);
    assert!(
        !old_log
            .iter()
            .any(|v| v.starts_with(b"tail-") || v.as_slice() == b"lost"),
        "the unreplicated tail survived on the old leader"
    );
}

/// Every record value in the log directory of `dir` up to its log end, read with the broker
/// stopped.
fn values_in_log(dir: &Path) -> Vec<Vec<u8>> {
    use tributary::log::{decode_records, split_batches, Log, LogConfig};
    let log = Log::open(dir, LogConfig::default(), 0).expect("open log");
    let end = log.log_end_offset();
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < end {
        let data = log.read(offset, 1 << 20, end).expect("read");
        let batches = split_batches(&data.records).expect("batches");
        if batches.is_empty() {
            break;
        }
        for (position, header) in batches {
            offset = header.next_offset();
            let bytes = &data.records[position..position + header.total_size()];
            for record in decode_records(bytes).expect("records") {
                out.push(record.value.map(|v| v.to_vec()).unwrap_or_default());
            }
        }
    }
    out
}

/// Stops `a` and `b` in turn (SIGTERM, so their logs are closed cleanly), compares their
/// logs of the partition, restarts them, and returns the values.
fn assert_same_log(cluster: &mut TestCluster, a: i32, b: i32) -> Vec<Vec<u8>> {
    assert_ne!(a, b, "comparing a broker's log with itself");
    // With no write in flight and both in the ISR, both hold everything up to the
    // leader's log end (an ISR member has fetched at least up to the high watermark).
    let mut logs = Vec::new();
    for id in [a, b] {
        let status = cluster.sigterm_and_wait(id);
        assert!(status.success(), "broker {id} exited with {status}");
        logs.push(values_in_log(&cluster.broker(id).partition_dir(TOPIC, 0)));
        cluster.restart(id);
    }
    assert_eq!(
        logs[0].len(),
        logs[1].len(),
        "broker {a} and broker {b} hold different numbers of records"
    );
    assert!(
        logs[0] == logs[1],
        "broker {a} and broker {b} hold different records"
    );
    logs.remove(0)
}

#[test]
fn topics_describe_asks_each_partition_leader_for_its_offsets() {
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    let admin = admin_client(&bootstrap);
    let topic = NewTopic::new("spread", 3, TopicReplication::Fixed(3));
    let results = block_on(admin.create_topics([&topic], &admin_options())).unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    for p in 0..3 {
        wait_for(FAILOVER_TIMEOUT, "a leader for every partition", || {
            cluster.leader_of("spread", p).is_some()
        });
    }
    // 1, 2 and 3 messages in partitions 0, 1 and 2; the leaders are spread over the brokers.
    let producer = producer(&bootstrap, &[("acks", "all")]);
    for p in 0..3 {
        for i in 0..=p {
            send(
                &producer,
                BaseRecord::with_opaque_to("spread", i as usize)
                    .partition(p)
                    .payload(b"x".as_slice()),
            );
        }
    }
    let deliveries = common::flush_deliveries(&producer, 6);
    assert!(
        deliveries.iter().all(|d| d.error.is_none()),
        "{deliveries:?}"
    );
    let leaders: HashSet<i32> = (0..3)
        .filter_map(|p| cluster.leader_of("spread", p))
        .collect();
    assert!(
        leaders.len() > 1,
        "placement put every leader on one broker: {leaders:?}"
    );

    // Asked through broker 0 only, the CLI still shows every partition's log end offset.
    let addr = cluster.addr(0).to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["topics", "describe", "spread", "--bootstrap-server", &addr])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (p, end) in [(0, 1), (1, 2), (2, 3)] {
        let row = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&p.to_string()))
            .unwrap_or_else(|| panic!("no row for partition {p}:\n{stdout}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols.last(), Some(&end.to_string().as_str()), "{stdout}");
    }
}

/// A broker that is not a quorum voter (broker 3 of four; 0, 1 and 2 vote) is a full
/// member otherwise: metadata changes sent to it are forwarded to the controller, it leads
/// a partition, its kill -9 fails that partition over without losing an acknowledged
/// write, and restarted it catches up from the metadata stream and rejoins the ISR.
#[test]
fn a_broker_that_is_not_a_voter_leads_fails_over_and_rejoins() {
    const OBSERVED: &str = "observed";
    let mut cluster = TestCluster::start_with(ClusterOptions::new(4).with_voters(3));
    // Created through broker 3 alone, with broker 3 as the preferred leader.
    let admin = admin_client(&cluster.addr(3).to_string());
    let topic = NewTopic::new(OBSERVED, 1, TopicReplication::Variable(&[&[3, 0, 1]]))
        .set("min.insync.replicas", "2");
    let results = block_on(admin.create_topics([&topic], &admin_options()))
        .expect("CreateTopics request failed");
    assert!(
        results[0].is_ok(),
        "CreateTopics through broker 3: {results:?}"
    );
    assert_eq!(wait_for_agreement(&mut cluster, OBSERVED, &[0, 1, 3]), 3);

    let load = Load::start(&cluster.bootstrap(), OBSERVED, 0);
    load.wait_acked(1_000, OP_TIMEOUT);
    cluster.kill9(3);
    let new_leader = wait_for_agreement(&mut cluster, OBSERVED, &[0, 1]);
    assert!([0, 1].contains(&new_leader), "leader {new_leader}");
    let acked = load.acked();
    load.wait_acked(acked + 1_000, OP_TIMEOUT);

    cluster.restart(3);
    wait_for_agreement(&mut cluster, OBSERVED, &[0, 1, 3]);
    let acked = load.acked();
    load.wait_acked(acked + 1_000, OP_TIMEOUT);
    let deliveries = load.finish();
    assert_acked_exactly_once(&cluster.running_bootstrap(), OBSERVED, &deliveries);
    // Broker 3 followed the quorum and never led it.
    let output = cluster.broker(3).output();
    assert!(
        output.contains("voter=false") && !output.contains("now the active controller"),
        "broker 3 acted as a voter:\n{output}"
    );
}

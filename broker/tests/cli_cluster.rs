//! `tributary cluster ...` against three real broker processes: the binary is run as a
//! child process and judged by its exit status and output, as a script would, and the
//! cluster is checked through Metadata and by consuming every message that was written.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use common::cluster::TestCluster;
use common::{
    admin_client, admin_options, block_on, consume_partition, create_topic, flush_deliveries,
    producer, send, wait_until, RawClient, OP_TIMEOUT,
};
use rdkafka::admin::{NewTopic, TopicReplication};
use rdkafka::producer::BaseRecord;
use rdkafka::Offset;

const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Passed as `--timeout-secs` to every `--wait`, so that a move that hangs fails the test.
const WAIT_SECS: &str = "90";

/// Runs `tributary cluster <args> --bootstrap-server <bootstrap>`; bounded by the CLI's
/// socket timeouts and `--timeout-secs`.
fn cluster_cli(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("cluster")
        .args(args)
        .args(["--bootstrap-server", bootstrap])
        .env_remove("TRIBUTARY_BOOTSTRAP_SERVER")
        .output()
        .expect("run tributary cluster")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the command and panics, showing its output, unless it exits 0; returns stdout.
#[track_caller]
fn ok(bootstrap: &str, args: &[&str]) -> String {
    let o = cluster_cli(bootstrap, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "tributary cluster {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// Runs the command and panics unless it exits 1; returns stderr.
#[track_caller]
fn fails(bootstrap: &str, args: &[&str]) -> String {
    let o = cluster_cli(bootstrap, args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "tributary cluster {args:?} should fail\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stderr)
}

/// The row of `describe`'s problem table for `topic`-`partition`, if it has one.
fn issue_row(describe: &str, topic: &str, partition: i32) -> Option<String> {
    describe
        .lines()
        .find(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 2 && cols[0] == topic && cols[1] == partition.to_string()
        })
        .map(str::to_string)
}

/// Produces `count` messages with acks=all to each of `partitions` of `topic` (values
/// "<partition>-<i>") and panics unless every one is acknowledged.
fn produce_acked(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    let p = producer(bootstrap, &[("acks", "all")]);
    for partition in 0..partitions {
        for i in 0..count {
            let value = format!("{partition}-{i}");
            send(
                &p,
                BaseRecord::with_opaque_to(topic, partition as usize * count + i)
                    .partition(partition)
                    .payload(value.as_bytes()),
            );
        }
    }
    let total = partitions as usize * count;
    let deliveries = flush_deliveries(&p, total);
    let failed: Vec<_> = deliveries.iter().filter(|d| d.error.is_some()).collect();
    assert!(
        failed.is_empty(),
        "deliveries failed: {:?}",
        &failed[..failed.len().min(5)]
    );
}

/// Reads every partition of `topic` from the beginning and checks that each holds exactly
/// what `produce_acked` wrote, in order.
fn assert_holds_all(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    for partition in 0..partitions {
        let consumed =
            consume_partition(bootstrap, topic, partition, Offset::Beginning, count as i64);
        assert_eq!(consumed.len(), count, "messages in {topic}-{partition}");
        for (i, m) in consumed.iter().enumerate() {
            assert_eq!(
                m.value.as_deref(),
                Some(format!("{partition}-{i}").as_bytes()),
                "{topic}-{partition} at offset {}",
                m.offset
            );
        }
    }
}

/// Every partition of the cluster as librdkafka's Metadata shows it: (topic, partition)
/// → replicas. `None` when no running broker answered.
fn all_replicas(cluster: &TestCluster) -> Option<BTreeMap<(String, i32), Vec<i32>>> {
    let md = cluster.metadata().ok()?;
    Some(
        md.topics()
            .iter()
            .flat_map(|t| {
                t.partitions()
                    .iter()
                    .map(|p| ((t.name().to_string(), p.id()), p.replicas().to_vec()))
            })
            .collect(),
    )
}

/// Replicas per broker over every partition of the cluster.
fn replica_counts(replicas: &BTreeMap<(String, i32), Vec<i32>>) -> BTreeMap<i32, usize> {
    let mut counts = BTreeMap::new();
    for r in replicas.values().flatten() {
        *counts.entry(*r).or_default() += 1;
    }
    counts
}

/// Has `__consumer_offsets` created now (a group coordinator lookup creates it), so that
/// it is in place, and in the plans, before replicas move: created later, it could land
/// on a broker that was just drained.
fn create_offsets_topic(cluster: &mut TestCluster) {
    use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};
    use kafka_protocol::protocol::StrBytes;
    let addr = cluster.addr(0);
    wait_until(OP_TIMEOUT, "a group coordinator is available", || {
        let mut client = RawClient::connect_negotiated(addr);
        // v3 names one key; v4 batches them.
        let version = client.version(ApiKey::FindCoordinator, 3);
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str("cli-cluster"))
            .with_key_type(0);
        client.send(request, version).error_code == 0
    });
}

fn phase(name: &str) {
    eprintln!("==== phase: {name}");
}

#[test]
fn reassign_through_the_cli_grows_the_replication_factor_and_survives_kill9() {
    const TOPIC: &str = "cli-grow";
    const COUNT: usize = 5_000;
    let mut cluster = TestCluster::start(3, &[]);
    let bootstrap = cluster.bootstrap();
    create_topic(&bootstrap, TOPIC, 1, &[]);
    let original = cluster.wait_for_leader(TOPIC, 0, OP_TIMEOUT);
    produce_acked(&bootstrap, TOPIC, 1, COUNT);

    phase("reassign to three replicas and wait");
    let others: Vec<i32> = (0..3).filter(|id| *id != original).collect();
    let target = format!("{original},{},{}", others[0], others[1]);
    let b = cluster.addr(others[0]).to_string();
    let out = ok(
        &b,
        &[
            "reassign",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--replicas",
            &target,
            "--wait",
            "--timeout-secs",
            WAIT_SECS,
        ],
    );
    assert!(
        out.contains(&format!(
            "Started the reassignment of {TOPIC}-0 to replicas {target}."
        )),
        "{out}"
    );
    assert!(out.contains("All 1 reassignment(s) completed"), "{out}");
    let listed = ok(&b, &["reassignments"]);
    assert_eq!(listed.trim(), "No partition reassignments in progress.");
    wait_until(FAILOVER_TIMEOUT, "an ISR of all three replicas", || {
        cluster.isr_of(TOPIC, 0) == vec![0, 1, 2]
    });
    let describe = ok(&b, &["describe"]);
    assert!(describe.contains("Controller: "), "{describe}");
    assert_eq!(issue_row(&describe, TOPIC, 0), None, "{describe}");
    for id in 0..3 {
        assert!(
            describe
                .lines()
                .any(|l| l.starts_with(&format!("{id} "))
                    && l.contains(&cluster.addr(id).to_string())),
            "broker {id} in\n{describe}"
        );
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
    let consumed = consume_partition(
        &cluster.running_bootstrap(),
        TOPIC,
        0,
        Offset::Beginning,
        COUNT as i64,
    );
    assert_eq!(consumed.len(), COUNT);
    for (i, m) in consumed.iter().enumerate() {
        assert_eq!(m.value.as_deref(), Some(format!("0-{i}").as_bytes()));
    }
    // The dead broker is still a replica: describe shows it fenced and the partition
    // under-replicated.
    let describe = ok(&b, &["describe"]);
    assert!(
        describe
            .lines()
            .any(|l| l.starts_with(&format!("{original} ")) && l.contains(" yes ")),
        "broker {original} fenced in\n{describe}"
    );
    let row = issue_row(&describe, TOPIC, 0).unwrap_or_default();
    assert!(row.contains("under-replicated"), "{describe}");
}

#[test]
fn drain_and_rebalance_move_replicas_off_and_back_onto_a_broker() {
    const VICTIM: i32 = 1;
    const COUNT: usize = 300;
    let topics = [("drain-a", 3), ("drain-b", 2)];
    // `__consumer_offsets` must be drainable too; with three brokers that needs two
    // replicas per partition.
    let mut cluster = TestCluster::start(
        3,
        &[
            ("offsets.topic.replication.factor", "2"),
            ("offsets.topic.num.partitions", "3"),
        ],
    );
    let bootstrap = cluster.bootstrap();
    let admin = admin_client(&bootstrap);
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(2)))
        .collect();
    let results =
        block_on(admin.create_topics(new_topics.iter(), &admin_options())).expect("CreateTopics");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    for (name, partitions) in topics {
        for p in 0..partitions {
            cluster.wait_for_leader(name, p, OP_TIMEOUT);
        }
        produce_acked(&bootstrap, name, partitions, COUNT);
    }
    create_offsets_topic(&mut cluster);
    for (name, partitions) in topics {
        assert_holds_all(&bootstrap, name, partitions, COUNT);
    }
    let before = all_replicas(&cluster).expect("metadata");
    assert!(
        replica_counts(&before).get(&VICTIM).copied().unwrap_or(0) > 0,
        "broker {VICTIM} holds nothing to drain: {before:?}"
    );

    phase("drain: dry run, then for real");
    let b = cluster.addr(0).to_string();
    let out = ok(&b, &["drain", &VICTIM.to_string(), "--dry-run"]);
    assert!(
        out.contains(&format!("off broker {VICTIM}")) && out.contains("Dry run"),
        "{out}"
    );
    let unchanged = all_replicas(&cluster).expect("metadata");
    assert!(
        replica_counts(&unchanged)
            .get(&VICTIM)
            .copied()
            .unwrap_or(0)
            > 0,
        "a dry run moved replicas"
    );
    let out = ok(
        &b,
        &[
            "drain",
            &VICTIM.to_string(),
            "--wait",
            "--timeout-secs",
            WAIT_SECS,
        ],
    );
    assert!(out.contains("completed"), "{out}");
    wait_until(
        FAILOVER_TIMEOUT,
        &format!("no partition lists broker {VICTIM}"),
        || {
            all_replicas(&cluster).is_some_and(|all| {
                !all.is_empty() && all.values().all(|replicas| !replicas.contains(&VICTIM))
            })
        },
    );
    for (name, partitions) in topics {
        assert_holds_all(&bootstrap, name, partitions, COUNT);
    }
    let again = ok(&b, &["drain", &VICTIM.to_string()]);
    assert!(again.contains("nothing to move"), "{again}");

    phase("stop the drained broker");
    let status = cluster.sigterm_and_wait(VICTIM);
    assert!(status.success(), "broker {VICTIM} exited with {status}");
    for (name, partitions) in topics {
        assert_holds_all(&cluster.running_bootstrap(), name, partitions, COUNT);
    }
    // The FENCED column of `describe` for broker `id`.
    let fenced_column = |describe: &str, id: i32| -> Option<String> {
        describe
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
    };
    wait_until(
        OP_TIMEOUT,
        "describe shows the stopped broker fenced",
        || fenced_column(&ok(&b, &["describe"]), VICTIM).as_deref() == Some("yes"),
    );

    phase("unregister it, then restart it: it registers again");
    let alive = fails(&b, &["unregister", "0"]);
    assert!(alive.contains("alive"), "{alive}");
    let out = ok(&b, &["unregister", &VICTIM.to_string()]);
    assert!(
        out.contains(&format!("Unregistered broker {VICTIM}")),
        "{out}"
    );
    wait_until(OP_TIMEOUT, "describe no longer lists the broker", || {
        fenced_column(&ok(&b, &["describe"]), VICTIM).is_none()
    });
    let unknown = fails(&b, &["unregister", &VICTIM.to_string()]);
    assert!(unknown.contains("not registered"), "{unknown}");

    phase("restart it empty-handed and rebalance");
    cluster.restart(VICTIM);
    wait_until(OP_TIMEOUT, "the restarted broker is live", || {
        fenced_column(&ok(&b, &["describe"]), VICTIM).as_deref() == Some("no")
    });
    let out = ok(&b, &["rebalance", "--dry-run"]);
    assert!(
        out.contains("Plan: reassign") && out.contains("Dry run"),
        "{out}"
    );
    let out = ok(&b, &["rebalance", "--wait", "--timeout-secs", WAIT_SECS]);
    assert!(out.contains("completed"), "{out}");
    wait_until(
        FAILOVER_TIMEOUT,
        "replicas spread over all three brokers",
        || {
            all_replicas(&cluster).is_some_and(|all| {
                let counts = replica_counts(&all);
                let min = (0..3).map(|id| counts.get(&id).copied().unwrap_or(0)).min();
                let max = (0..3).map(|id| counts.get(&id).copied().unwrap_or(0)).max();
                matches!((min, max), (Some(min), Some(max)) if min > 0 && max - min <= 1)
            })
        },
    );
    let again = ok(&b, &["rebalance"]);
    assert!(again.contains("nothing to move"), "{again}");
    for (name, partitions) in topics {
        assert_holds_all(&cluster.running_bootstrap(), name, partitions, COUNT);
    }
}

#[test]
fn elect_leaders_and_refusals_through_the_cli() {
    const TOPIC: &str = "cli-elect";
    // Only the CLI's election may move leadership back.
    let mut cluster = TestCluster::start(3, &[("auto.leader.rebalance.enable", "false")]);
    let bootstrap = cluster.bootstrap();
    let admin = admin_client(&bootstrap);
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(3));
    let results = block_on(admin.create_topics([&topic], &admin_options())).expect("CreateTopics");
    assert!(results[0].is_ok(), "{results:?}");
    wait_until(FAILOVER_TIMEOUT, "an ISR of all three replicas", || {
        cluster.isr_of(TOPIC, 0) == vec![0, 1, 2]
    });
    let preferred = cluster.wait_for_leader(TOPIC, 0, OP_TIMEOUT);

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
    let b = cluster.addr(preferred).to_string();
    let describe = ok(&b, &["describe"]);
    let row = issue_row(&describe, TOPIC, 0).unwrap_or_default();
    assert!(
        row.contains("not led by its preferred replica"),
        "{describe}"
    );

    phase("elect-leaders");
    let out = ok(&b, &["elect-leaders", "--topic", TOPIC]);
    assert!(
        out.contains(&format!("Elected the preferred leader of {TOPIC}-0.")),
        "{out}"
    );
    wait_until(OP_TIMEOUT, "the preferred replica leads again", || {
        cluster.leader_of(TOPIC, 0) == Some(preferred)
    });
    let out = ok(&b, &["elect-leaders", "--topic", TOPIC, "--partition", "0"]);
    assert!(
        out.contains("led by its preferred replica already"),
        "{out}"
    );
    ok(&b, &["elect-leaders"]);
    assert_eq!(issue_row(&ok(&b, &["describe"]), TOPIC, 0), None);

    phase("refusals exit 1 and name the Kafka error");
    let err = fails(
        &b,
        &[
            "reassign",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--replicas",
            "0,9",
        ],
    );
    assert!(err.contains("InvalidReplicaAssignment"), "{err}");
    let err = fails(
        &b,
        &["reassign", "--topic", TOPIC, "--partition", "0", "--cancel"],
    );
    assert!(err.contains("NoReassignmentInProgress"), "{err}");
    let err = fails(
        &b,
        &[
            "reassign",
            "--topic",
            "nope",
            "--partition",
            "0",
            "--replicas",
            "0",
        ],
    );
    assert!(err.contains("UnknownTopicOrPartition"), "{err}");
    let err = fails(&b, &["elect-leaders", "--topic", "nope"]);
    assert!(err.contains("UnknownTopicOrPartition"), "{err}");
    let err = fails(&b, &["drain", "9"]);
    assert!(err.contains("broker 9 is not in the cluster"), "{err}");
    // RF 3 on three brokers: there is nowhere to move broker 0's replica to.
    let err = fails(&b, &["drain", "0"]);
    assert!(err.contains("cannot drain broker 0"), "{err}");
    assert_eq!(
        ok(&b, &["reassignments"]).trim(),
        "No partition reassignments in progress."
    );
}

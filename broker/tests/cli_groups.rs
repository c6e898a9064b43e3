//! `tributary groups ...` against a real broker and real librdkafka consumers: the binary is
//! run as a child process and judged by its exit status, stdout and stderr.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};

const BROKER: &[(&str, &str)] = &[("group.initial.rebalance.delay.ms", "200")];
const GROUP_TIMEOUT: Duration = Duration::from_secs(40);
const TOPIC: &str = "orders";
const GROUP: &str = "g-cli";

fn groups(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("groups")
        .args(args)
        .args(["--bootstrap-server", bootstrap])
        .env_remove("TRIBUTARY_BOOTSTRAP_SERVER")
        .output()
        .expect("run tributary groups")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[track_caller]
fn ok(bootstrap: &str, args: &[&str]) -> String {
    let o = groups(bootstrap, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "tributary groups {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

#[track_caller]
fn fails(bootstrap: &str, args: &[&str]) -> String {
    let o = groups(bootstrap, args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "tributary groups {args:?} should fail\nstdout:\n{}\nstderr:\n{}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stderr)
}

/// `describe`'s partition rows: partition → (CURRENT-OFFSET, LOG-END-OFFSET, LAG).
fn offsets(describe: &str) -> BTreeMap<i32, (String, String, String)> {
    describe
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() >= 5 && c[0] == TOPIC)
        .map(|c| {
            (
                c[1].parse().expect("partition number"),
                (c[2].to_string(), c[3].to_string(), c[4].to_string()),
            )
        })
        .collect()
}

fn row(current: &str, end: &str, lag: &str) -> (String, String, String) {
    (current.into(), end.into(), lag.into())
}

/// The NEW-OFFSET column of a reset plan, by partition.
fn plan(out: &str) -> BTreeMap<i32, i64> {
    out.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() == 4 && c[0] == GROUP)
        .map(|c| {
            (
                c[2].parse().expect("partition"),
                c[3].parse().expect("offset"),
            )
        })
        .collect()
}

fn state_line(bootstrap: &str) -> String {
    ok(bootstrap, &["describe", GROUP])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn group_consumer(bootstrap: &str) -> BaseConsumer {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", GROUP)
        .set("client.id", "cli-test-consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .set("fetch.wait.max.ms", "100")
        .set("enable.partition.eof", "false");
    let c: BaseConsumer = config.create().expect("create group consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    c
}

/// Polls until `n` messages arrived; returns the first offset read from each partition.
fn first_offsets(c: &BaseConsumer, n: usize) -> BTreeMap<i32, i64> {
    let mut first = BTreeMap::new();
    let deadline = Instant::now() + GROUP_TIMEOUT;
    let mut got = 0;
    while got < n {
        assert!(Instant::now() < deadline, "only {got} of {n} messages read");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            first.entry(m.partition()).or_insert(m.offset());
            got += 1;
        }
    }
    first
}

#[test]
fn list_describe_and_reset_offsets_of_a_consumer_group() {
    let broker = TestBroker::start(BROKER);
    let b = broker.bootstrap();
    create_topic(&b, TOPIC, 2, &[]);
    let p = producer(&b, &[("acks", "all")]);
    for i in 0..20usize {
        send(
            &p,
            BaseRecord::with_opaque_to(TOPIC, i)
                .partition((i % 2) as i32)
                .payload(b"v".as_slice()),
        );
    }
    for d in flush_deliveries(&p, 20) {
        assert!(d.error.is_none(), "produce failed: {:?}", d.error);
    }

    // A member commits 10 on partition 0 and 4 on partition 1, then leaves.
    {
        let c = group_consumer(&b);
        wait_until(
            GROUP_TIMEOUT,
            "the consumer is assigned both partitions",
            || {
                c.poll(Duration::from_millis(50));
                c.assignment().map(|a| a.count()).unwrap_or(0) == 2
            },
        );
        let out = ok(&b, &["describe", GROUP]);
        assert!(out.contains("State: Stable"), "{out}");
        assert!(out.contains("cli-test-consumer"), "{out}");
        assert!(out.contains("orders(0,1)"), "assignment decoded:\n{out}");
        let err = fails(
            &b,
            &[
                "reset-offsets",
                GROUP,
                "--topic",
                TOPIC,
                "--to-earliest",
                "--execute",
            ],
        );
        assert!(
            err.contains("Stable") && err.contains("1 members") && err.contains("inactive"),
            "{err}"
        );

        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Offset(10))
            .expect("tpl");
        tpl.add_partition_offset(TOPIC, 1, Offset::Offset(4))
            .expect("tpl");
        c.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    wait_until(GROUP_TIMEOUT, "the group is empty after the close", || {
        state_line(&b).contains("State: Empty")
    });

    let list = ok(&b, &["list"]);
    assert!(list.lines().any(|l| l.trim() == GROUP), "{list}");

    let describe = ok(&b, &["describe", GROUP]);
    let expected_after_commit: BTreeMap<_, _> =
        [(0, row("10", "10", "0")), (1, row("4", "10", "6"))].into();
    assert_eq!(offsets(&describe), expected_after_commit, "{describe}");

    // A dry run (and a run without --execute) prints the plan and commits nothing.
    let out = ok(
        &b,
        &[
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-offset",
            "5",
            "--dry-run",
        ],
    );
    assert_eq!(plan(&out), [(0, 5), (1, 5)].into(), "{out}");
    let o = groups(
        &b,
        &[
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-offset",
            "50",
        ],
    );
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        plan(&text(&o.stdout)),
        [(0, 10), (1, 10)].into(),
        "clamped to the log end"
    );
    assert!(text(&o.stderr).contains("--execute"), "{}", text(&o.stderr));
    let out = ok(
        &b,
        &[
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-datetime",
            "1970-01-01T00:00:00Z",
            "--dry-run",
        ],
    );
    assert_eq!(plan(&out), [(0, 0), (1, 0)].into(), "{out}");
    let out = ok(
        &b,
        &[
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-datetime",
            "2999-01-01T00:00:00Z",
            "--dry-run",
        ],
    );
    assert_eq!(plan(&out), [(0, 10), (1, 10)].into(), "{out}");
    let out = ok(
        &b,
        &[
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-latest",
            "--dry-run",
        ],
    );
    assert_eq!(plan(&out), [(0, 10), (1, 10)].into(), "{out}");
    assert_eq!(
        offsets(&ok(&b, &["describe", GROUP])),
        expected_after_commit,
        "dry runs changed nothing"
    );

    let out = ok(
        &b,
        &[
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
            "--execute",
        ],
    );
    assert_eq!(plan(&out), [(0, 0), (1, 0)].into(), "{out}");
    let describe = ok(&b, &["describe", GROUP]);
    assert_eq!(
        offsets(&describe),
        [(0, row("0", "10", "10")), (1, row("0", "10", "10"))].into(),
        "{describe}"
    );

    // auto.offset.reset is latest, so reading from 0 proves the committed reset applies.
    let c = group_consumer(&b);
    assert_eq!(first_offsets(&c, 20), [(0, 0), (1, 0)].into());
}

#[test]
fn describe_of_an_unknown_group_says_it_does_not_exist() {
    let broker = TestBroker::start(BROKER);
    let b = broker.bootstrap();
    let err = fails(&b, &["describe", "no-such-group"]);
    assert!(
        err.contains("Consumer group 'no-such-group' does not exist"),
        "{err}"
    );
    let list = ok(&b, &["list"]);
    assert!(!list.contains("no-such-group"), "{list}");
}

//! `tributary topics ...` against a real broker: the binary is run as a child process and
//! judged by its exit status, stdout and stderr, as a script would.

mod common;
use common::*;

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `tributary topics <args> --bootstrap-server <bootstrap>`; bounded by the CLI's own
/// socket timeouts.
fn topics(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("topics")
        .args(args)
        .args(["--bootstrap-server", bootstrap])
        .env_remove("TRIBUTARY_BOOTSTRAP_SERVER")
        .output()
        .expect("run tributary topics")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the command and panics, showing its output, unless it exits 0; returns stdout.
#[track_caller]
fn ok(bootstrap: &str, args: &[&str]) -> String {
    let o = topics(bootstrap, args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "tributary topics {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs the command and panics unless it exits 1; returns stderr.
#[track_caller]
fn fails(bootstrap: &str, args: &[&str]) -> String {
    let o = topics(bootstrap, args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "tributary topics {args:?} should fail\nstdout:\n{}\nstderr:\n{}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

/// The partition rows of `describe` output: lines that start with a partition number.
fn partition_rows(describe: &str) -> Vec<Vec<String>> {
    describe
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|cols| cols.first().is_some_and(|c| c.parse::<i32>().is_ok()))
        .collect()
}

/// The VALUE column of `configs` output for `key`.
fn config_value(configs: &str, key: &str) -> Option<String> {
    configs.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&key)).then(|| cols[1].to_string())
    })
}

fn listed(bootstrap: &str, topic: &str) -> bool {
    ok(bootstrap, &["list"]).lines().any(|l| l.trim() == topic)
}

#[test]
fn topic_lifecycle_through_the_cli() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();

    let out = ok(
        &b,
        &[
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=86400000",
        ],
    );
    assert!(out.contains("orders"), "create output: {out}");
    assert!(listed(&b, "orders"), "list shows the new topic");

    let describe = ok(&b, &["describe", "orders"]);
    assert!(describe.contains("TopicId:"), "describe: {describe}");
    let rows = partition_rows(&describe);
    assert_eq!(rows.len(), 3, "three partitions in:\n{describe}");
    for (i, row) in rows.iter().enumerate() {
        // PARTITION LEADER REPLICAS ISR LOG_START_OFFSET LOG_END_OFFSET
        assert_eq!(
            row,
            &[&i.to_string(), "0", "0", "0", "0", "0"],
            "{describe}"
        );
    }

    let configs = ok(&b, &["configs", "orders"]);
    assert_eq!(
        config_value(&configs, "retention.ms").as_deref(),
        Some("86400000"),
        "{configs}"
    );
    assert!(
        configs
            .lines()
            .any(|l| l.starts_with("retention.ms") && l.contains("DYNAMIC_TOPIC_CONFIG")),
        "{configs}"
    );

    ok(&b, &["configs", "orders", "--set", "retention.ms=1000"]);
    let configs = ok(&b, &["configs", "orders"]);
    assert_eq!(
        config_value(&configs, "retention.ms").as_deref(),
        Some("1000"),
        "{configs}"
    );

    ok(&b, &["alter", "orders", "--partitions", "5"]);
    assert_eq!(partition_rows(&ok(&b, &["describe", "orders"])).len(), 5);

    let err = fails(&b, &["alter", "orders", "--partitions", "2"]);
    assert!(
        err.contains("InvalidPartitions") || err.contains("INVALID_PARTITIONS"),
        "{err}"
    );

    let err = fails(&b, &["create", "orders", "--partitions", "1"]);
    assert!(err.contains("TopicAlreadyExists"), "{err}");

    let err = fails(
        &b,
        &["create", "bad-config", "--config", "retention.ms=abc"],
    );
    assert!(err.contains("InvalidConfig"), "{err}");
    assert!(!listed(&b, "bad-config"), "a rejected topic is not created");

    ok(&b, &["delete", "orders"]);
    wait_until(OP_TIMEOUT, "orders is gone from `topics list`", || {
        !listed(&b, "orders")
    });
    let err = fails(&b, &["describe", "orders"]);
    assert!(err.contains("UnknownTopicOrPartition"), "{err}");
}

#[test]
fn configs_delete_reverts_to_the_default() {
    let broker = TestBroker::start(&[]);
    let b = broker.bootstrap();
    ok(&b, &["create", "events", "--config", "retention.ms=5000"]);
    ok(&b, &["configs", "events", "--delete", "retention.ms"]);
    let configs = ok(&b, &["configs", "events"]);
    let line = configs
        .lines()
        .find(|l| l.starts_with("retention.ms"))
        .unwrap_or_else(|| panic!("no retention.ms in\n{configs}"));
    assert!(line.contains("DEFAULT_CONFIG"), "{configs}");
}

#[test]
fn unreachable_bootstrap_server_fails_fast_with_a_clear_message() {
    // Bind and drop a listener: the port was free a moment ago and nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a probe port")
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let err = fails(&bootstrap, &["list"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        err.contains("cannot connect") && err.contains(&bootstrap),
        "{err}"
    );
}

//! The `commits` measurement: one consumer in a group committing offsets
//! (`OffsetCommit`) as fast as the broker acknowledges them.
//!
//! The consumer `subscribe`s and waits for its assignment, so the commits carry a
//! real generation and member id. Each commit is one request carrying one offset per
//! assigned partition (offsets cycle within each partition's watermarks). `--sync`
//! commits with `CommitMode::Sync`, one at a time, timing each; otherwise commits are
//! `Async` with at most `max_in_flight` outstanding, completions counted in the commit
//! callback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::report::JsonObject;
use crate::stats::{percentile_of_sorted, sorted};

#[derive(Debug, Clone)]
pub struct CommitOptions {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub commits: u64,
    pub sync: bool,
    pub max_in_flight: u64,
    pub assign_timeout: Duration,
    pub extra_config: Vec<(String, String)>,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

struct CommitContext(Arc<Counters>);

impl ClientContext for CommitContext {}

impl ConsumerContext for CommitContext {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        let counters = &self.0;
        if let Err(error) = result {
            counters.failed.fetch_add(1, Ordering::SeqCst);
            let mut first = counters
                .first_error
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            first.get_or_insert_with(|| error.to_string());
        }
        counters.completed.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone)]
pub struct CommitResult {
    pub mode: &'static str,
    pub partitions_per_commit: usize,
    pub commits: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    pub commits_per_s: f64,
    /// Sync only: per-commit latency in ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub max_in_flight: Option<u64>,
}

pub fn run(options: &CommitOptions) -> anyhow::Result<CommitResult> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap)
        .set("client.id", "tributary-bench-commits")
        .set("group.id", &options.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    for (key, value) in &options.extra_config {
        config.set(key, value);
    }
    let context = Arc::new(Counters::default());
    let consumer: BaseConsumer<CommitContext> = config
        .create_with_context(CommitContext(context.clone()))
        .context("creating the consumer")?;
    consumer
        .subscribe(&[&options.topic])
        .with_context(|| format!("subscribing to {}", options.topic))?;
    // Join the group (an empty group's first join waits for the broker's
    // group.initial.rebalance.delay.ms).
    let joining = Instant::now();
    let assignment = loop {
        let _ = consumer.poll(Duration::from_millis(50));
        let assignment = consumer.assignment().context("reading the assignment")?;
        if assignment.count() > 0 {
            break assignment;
        }
        if joining.elapsed() > options.assign_timeout {
            bail!("no assignment within {:?}", options.assign_timeout);
        }
    };
    eprintln!(
        "assigned {} partitions after {:.0} ms",
        assignment.count(),
        joining.elapsed().as_secs_f64() * 1e3
    );
    // Offsets to cycle through, per partition: within the watermarks.
    let mut partitions = Vec::new();
    for element in assignment.elements() {
        let (low, high) = consumer
            .fetch_watermarks(
                element.topic(),
                element.partition(),
                crate::admin::REQUEST_TIMEOUT,
            )
            .context("fetching watermarks")?;
        partitions.push((element.topic().to_string(), element.partition(), low, high));
    }
    let offsets_for = |i: u64| -> anyhow::Result<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (topic, partition, low, high) in &partitions {
            let span = (high - low).max(0) as u64 + 1;
            let offset = low + (i % span) as i64;
            list.add_partition_offset(topic, *partition, Offset::Offset(offset))
                .context("building the commit")?;
        }
        Ok(list)
    };

    let mut latencies_ms = Vec::new();
    let started = Instant::now();
    let mut errors = 0u64;
    let mut first_error = None;
    if options.sync {
        latencies_ms.reserve(options.commits as usize);
        for i in 0..options.commits {
            let list = offsets_for(i)?;
            let sent = Instant::now();
            let result = consumer.commit(&list, CommitMode::Sync);
            latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3);
            if let Err(error) = result {
                errors += 1;
                first_error.get_or_insert_with(|| error.to_string());
            }
        }
    } else {
        // librdkafka 2.x (via rdkafka 0.39) delivered no OFFSET_COMMIT event for these
        // explicit async commits against Tributary in our runs, so completions cannot be
        // counted from the callback. Instead: windows of `max_in_flight - 1` async
        // commits closed by one sync commit. Commits to the coordinator go out in order
        // on one connection and Kafka answers in order, so the sync commit's reply means
        // the whole window was answered; at most `max_in_flight` are outstanding.
        let window = options.max_in_flight.max(2);
        let mut issued = 0u64;
        while issued < options.commits {
            let list = offsets_for(issued)?;
            let last_of_window = (issued + 1) % window == 0 || issued + 1 == options.commits;
            let mode = if last_of_window {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            if let Err(error) = consumer.commit(&list, mode) {
                errors += 1;
                first_error.get_or_insert_with(|| error.to_string());
            }
            issued += 1;
            let _ = consumer.poll(Duration::ZERO);
        }
        errors += context.failed.load(Ordering::SeqCst);
        if first_error.is_none() {
            first_error = context
                .first_error
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let sorted_ms = sorted(&latencies_ms);
    Ok(CommitResult {
        mode: if options.sync { "sync" } else { "async" },
        partitions_per_commit: partitions.len(),
        commits: options.commits,
        errors,
        first_error,
        elapsed_s,
        commits_per_s: if elapsed_s > 0.0 {
            options.commits as f64 / elapsed_s
        } else {
            0.0
        },
        p50_ms: percentile_of_sorted(&sorted_ms, 50.0),
        p99_ms: percentile_of_sorted(&sorted_ms, 99.0),
        max_ms: percentile_of_sorted(&sorted_ms, 100.0),
        max_in_flight: (!options.sync).then_some(options.max_in_flight),
    })
}

fn fmt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.3}"))
}

pub fn markdown(results: &[CommitResult]) -> String {
    let mut out = String::from(
        "| mode | in flight | partitions/commit | commits | errors | s | commits/s | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.0} | {} | {} | {} |\n",
            r.mode,
            r.max_in_flight
                .map_or_else(|| "1".into(), |n| n.to_string()),
            r.partitions_per_commit,
            r.commits,
            r.errors,
            r.elapsed_s,
            r.commits_per_s,
            fmt_ms(r.p50_ms),
            fmt_ms(r.p99_ms),
            fmt_ms(r.max_ms),
        ));
    }
    out
}

pub fn json(result: &CommitResult) -> String {
    let mut json = JsonObject::new("commits");
    json.str("mode", result.mode)
        .opt_int("max_in_flight", result.max_in_flight)
        .int("partitions_per_commit", result.partitions_per_commit as u64)
        .int("commits", result.commits)
        .int("errors", result.errors)
        .opt_str("first_error", result.first_error.as_deref())
        .num("elapsed_s", result.elapsed_s)
        .num("commits_per_s", result.commits_per_s)
        .opt_num("p50_ms", result.p50_ms)
        .opt_num("p99_ms", result.p99_ms)
        .opt_num("max_ms", result.max_ms);
    json.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_latency_only_for_sync() {
        let sync = CommitResult {
            mode: "sync",
            partitions_per_commit: 6,
            commits: 100,
            errors: 0,
            first_error: None,
            elapsed_s: 0.5,
            commits_per_s: 200.0,
            p50_ms: Some(4.0),
            p99_ms: Some(9.5),
            max_ms: Some(12.0),
            max_in_flight: None,
        };
        let asynchronous = CommitResult {
            mode: "async",
            p50_ms: None,
            p99_ms: None,
            max_ms: None,
            max_in_flight: Some(64),
            ..sync.clone()
        };
        let table = markdown(&[sync.clone(), asynchronous.clone()]);
        assert!(table.contains("| sync | 1 | 6 | 100 | 0 | 0.50 | 200 | 4.000 | 9.500 | 12.000 |"));
        assert!(table.contains("| async | 64 | 6 | 100 | 0 | 0.50 | 200 | n/a | n/a | n/a |"));
        assert!(json(&asynchronous).contains("\"p50_ms\":null"));
        assert!(json(&sync).contains("\"p99_ms\":9.5"));
    }
}

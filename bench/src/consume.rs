//! The consume load: a librdkafka `BaseConsumer` polled in a tight loop, reading a
//! topic from the beginning of every partition.
//!
//! No consumer group is joined: partitions are `assign`ed directly and nothing is
//! committed, so a broker without group coordination can be measured. librdkafka's
//! `assign` still requires a `group.id` to be configured, so a throw-away one is set;
//! librdkafka may look up its coordinator in the background, and errors from that are
//! reported but do not stop the run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::procfs::BrokerProbe;
use crate::report::RunResult;
use crate::units::mb_per_s;

/// How many non-fatal poll errors are printed before going quiet.
const POLL_ERRORS_PRINTED: u64 = 5;

/// Everything one consume run needs.
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub label: String,
    pub bootstrap: String,
    pub topic: String,
    /// Stop after this many messages.
    pub messages: u64,
    /// Give up when no message arrives for this long.
    pub idle_timeout: Duration,
    /// Extra librdkafka properties (`-X key=value`), applied last.
    pub extra_config: Vec<(String, String)>,
}

/// Reads `options.messages` messages as fast as the broker serves them.
pub fn run(options: &ConsumeOptions, broker: Option<&BrokerProbe>) -> anyhow::Result<RunResult> {
    let partitions = crate::admin::partition_count(&options.bootstrap, &options.topic, false)?;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap)
        .set("client.id", "tributary-bench")
        // Required by librdkafka's assign(); never used to join or commit.
        .set(
            "group.id",
            format!("tributary-bench-{}-unused", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", (64 << 20).to_string())
        .set("max.partition.fetch.bytes", (16 << 20).to_string())
        .set("fetch.wait.max.ms", "100")
        .set("queued.min.messages", "1000000")
        .set("queued.max.messages.kbytes", (128 << 10).to_string());
    for (key, value) in &options.extra_config {
        config.set(key, value);
    }
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    // Connect before the clock starts.
    consumer
        .fetch_metadata(Some(&options.topic), crate::admin::REQUEST_TIMEOUT)
        .with_context(|| format!("consumer metadata for {}", options.topic))?;

    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(&options.topic, partition, Offset::Beginning)
            .context("building the assignment")?;
    }

    let watch = broker.map(BrokerProbe::watch).transpose()?;
    let started = Instant::now();
    consumer
        .assign(&assignment)
        .with_context(|| format!("assigning the partitions of {}", options.topic))?;
    let mut messages: u64 = 0;
    let mut bytes: u64 = 0;
    let mut poll_errors: u64 = 0;
    let mut last_progress = Instant::now();
    while messages < options.messages {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                messages += 1;
                bytes += message.payload_len() as u64;
                last_progress = Instant::now();
            }
            Some(Err(error)) => {
                if poll_errors < POLL_ERRORS_PRINTED {
                    eprintln!("consumer error (continuing): {error}");
                }
                poll_errors += 1;
            }
            None => {}
        }
        if last_progress.elapsed() >= options.idle_timeout {
            bail!(
                "no message from {} for {:?}: read {messages} of {}",
                options.topic,
                options.idle_timeout,
                options.messages
            );
        }
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let usage = watch.map(|watch| watch.finish()).transpose()?;
    // Unassign explicitly so dropping the consumer does not wait on group state.
    let _ = consumer.unassign();
    Ok(RunResult {
        label: options.label.clone(),
        kind: "consume",
        topic: options.topic.clone(),
        partitions,
        message_bytes: bytes.checked_div(messages).unwrap_or(0),
        acks: None,
        compression: None,
        rate_msgs_per_s: None,
        messages,
        bytes,
        elapsed_s,
        msgs_per_s: if elapsed_s > 0.0 {
            messages as f64 / elapsed_s
        } else {
            0.0
        },
        mb_per_s: mb_per_s(bytes, elapsed_s),
        latency: None,
        errors: 0,
        first_error: None,
        broker: usage,
    })
}

//! The produce load generator: a librdkafka `ThreadedProducer` whose delivery
//! callback records enqueue → delivery-report latency of every message in an HDR
//! histogram.
//!
//! ```text
//!  send loop ──BaseRecord(opaque = enqueue time ns)──► librdkafka queue ──► broker
//!                                                                             │
//!  LatencyContext::delivery ◄── delivery report (poll thread) ◄───────────────┘
//!     └─► histogram, delivered / failed counters
//! ```
//!
//! librdkafka does the batching (`linger.ms`, `batch.size`); its queue is bounded by
//! `queue.buffering.max.{messages,kbytes}`, and when it is full the send loop backs
//! off, so in-flight memory stays bounded whatever the broker's speed.
//!
//! Latency is measured from the moment librdkafka accepted the message. In a
//! saturating run (no `--rate`) that includes the time spent queued behind earlier
//! messages, so it mostly reflects queue depth; use `--rate` for latency figures. At a
//! fixed rate each message is stamped with its *scheduled* send time when the loop is
//! late, so a stalled broker shows up in the tail (no coordinated omission).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::payload::Payloads;
use crate::procfs::BrokerProbe;
use crate::report::{Latency, RunResult};
use crate::units::mb_per_s;

/// librdkafka's delivery timeout: a message not acknowledged by then is a failure.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many client errors (connection refused, ...) are printed before going quiet.
const CLIENT_ERRORS_PRINTED: u64 = 5;
/// Latencies above this (in µs) are clamped into the histogram's top bucket.
const LATENCY_MAX_US: u64 = 10 * 60 * 1_000_000;

/// `acks` as Kafka producers spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Acks {
    #[value(name = "0")]
    None,
    #[value(name = "1")]
    Leader,
    #[value(name = "all", alias = "-1")]
    All,
}

impl Acks {
    pub fn as_str(self) -> &'static str {
        match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        }
    }
}

/// `compression.type` values librdkafka accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Everything one produce run needs.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    pub label: String,
    pub bootstrap: String,
    pub topic: String,
    pub message_bytes: usize,
    /// Stop after this many messages...
    pub messages: Option<u64>,
    /// ...or after this long, whichever comes first.
    pub duration: Option<Duration>,
    pub acks: Acks,
    pub compression: Compression,
    /// Fixed send rate in messages per second; `None` sends as fast as possible.
    pub rate_msgs_per_s: Option<f64>,
    pub linger_ms: u32,
    pub batch_bytes: Option<u64>,
    /// Extra librdkafka properties (`-X key=value`), applied last.
    pub extra_config: Vec<(String, String)>,
}

/// Producer context: receives delivery reports on librdkafka's poll thread.
struct LatencyContext {
    /// Origin of the nanosecond timestamps carried in each message's opaque.
    origin: Instant,
    /// Enqueue → delivery latency of successful deliveries, in µs. Only the poll
    /// thread records, so the lock is uncontended until the run reads it.
    histogram: Mutex<Histogram<u64>>,
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Time of the latest delivery report, ns since `origin`: the run's end.
    last_report_ns: AtomicU64,
    first_failure: Mutex<Option<String>>,
    client_errors: AtomicU64,
}

impl LatencyContext {
    fn new(origin: Instant) -> anyhow::Result<Self> {
        Ok(Self {
            origin,
            histogram: Mutex::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                    .context("creating the latency histogram")?,
            ),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_report_ns: AtomicU64::new(0),
            first_failure: Mutex::new(None),
            client_errors: AtomicU64::new(0),
        })
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

impl ClientContext for LatencyContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let seen = self.client_errors.fetch_add(1, Ordering::Relaxed);
        if seen < CLIENT_ERRORS_PRINTED {
            eprintln!("librdkafka error: {error}: {reason}");
        }
    }
}

impl ProducerContext for LatencyContext {
    /// Enqueue (or scheduled) time in ns since `origin`; a `usize` needs no allocation.
    type DeliveryOpaque = usize;

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, enqueued_ns: usize) {
        let now_ns = self.now_ns();
        self.last_report_ns.fetch_max(now_ns, Ordering::Relaxed);
        match delivery_result {
            Ok(_) => {
                let latency_us = now_ns.saturating_sub(enqueued_ns as u64) / 1_000;
                if let Ok(mut histogram) = self.histogram.lock() {
                    histogram.saturating_record(latency_us.max(1));
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut first) = self.first_failure.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

fn producer_config(options: &ProduceOptions) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap)
        .set("client.id", "tributary-bench")
        .set("acks", options.acks.as_str())
        .set("compression.type", options.compression.as_str())
        .set("linger.ms", options.linger_ms.to_string())
        // Bounded in-flight memory: at most 32 MiB or 100k messages queued in the
        // client; enough to keep several 1 MB batches per partition in flight.
        .set("queue.buffering.max.messages", "100000")
        .set("queue.buffering.max.kbytes", "32768")
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        )
        // The broker under test may not implement InitProducerId yet.
        .set("enable.idempotence", "false");
    if let Some(batch_bytes) = options.batch_bytes {
        config.set("batch.size", batch_bytes.to_string());
    }
    for (key, value) in &options.extra_config {
        config.set(key, value);
    }
    config
}

/// Runs one produce load and returns its figures. Delivery failures are counted in
/// the result, not returned as `Err`; the caller decides the exit code.
pub fn run(options: &ProduceOptions, broker: Option<&BrokerProbe>) -> anyhow::Result<RunResult> {
    if options.messages.is_none() && options.duration.is_none() {
        bail!("a produce run needs --messages or --duration-s");
    }
    if let Some(rate) = options.rate_msgs_per_s {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of messages per second, got {rate}");
        }
    }
    // Fails fast, with a clear message, when the broker is unreachable.
    let partitions = crate::admin::partition_count(&options.bootstrap, &options.topic, true)?;

    let origin = Instant::now();
    let producer: ThreadedProducer<LatencyContext> = producer_config(options)
        .create_with_context(LatencyContext::new(origin)?)
        .context("creating the producer")?;
    // Connect to the partition leaders before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(&options.topic), crate::admin::REQUEST_TIMEOUT)
        .with_context(|| format!("producer metadata for {}", options.topic))?;

    let payloads = Payloads::new(options.message_bytes);
    let watch = broker.map(BrokerProbe::watch).transpose()?;
    let context = producer.context();
    let started_ns = context.now_ns();
    let deadline = options.duration.map(|duration| Instant::now() + duration);
    let mut sent: u64 = 0;
    loop {
        if options.messages.is_some_and(|limit| sent >= limit) {
            break;
        }
        // Checking the clock every message would cost more than the check is worth.
        if sent % 256 == 0 && deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            break;
        }
        let scheduled_ns = options
            .rate_msgs_per_s
            .map(|rate| started_ns + (sent as f64 * 1e9 / rate) as u64);
        if let Some(scheduled_ns) = scheduled_ns {
            let ahead_ns = scheduled_ns.saturating_sub(context.now_ns());
            // Sleeping for less than ~100 µs overshoots; send a little early instead.
            if ahead_ns > 100_000 {
                std::thread::sleep(Duration::from_nanos(ahead_ns));
            }
        }
        let stamp = |now_ns: u64| scheduled_ns.map_or(now_ns, |s| s.min(now_ns)) as usize;
        let mut record: BaseRecord<'_, (), [u8], usize> =
            BaseRecord::with_opaque_to(&options.topic, stamp(context.now_ns()))
                .payload(payloads.get(sent));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    // The client queue is full: wait for deliveries to drain it.
                    record = returned;
                    std::thread::sleep(Duration::from_micros(500));
                    record.delivery_opaque = stamp(context.now_ns());
                }
                Err((error, _)) => {
                    bail!("enqueueing message {sent} to {}: {error}", options.topic)
                }
            }
        }
        sent += 1;
    }
    producer
        .flush(Timeout::After(MESSAGE_TIMEOUT + Duration::from_secs(10)))
        .context("flushing the producer (messages still undelivered)")?;
    let usage = watch.map(|watch| watch.finish()).transpose()?;

    let delivered = context.delivered.load(Ordering::Relaxed);
    let failed = context.failed.load(Ordering::Relaxed);
    let end_ns = context
        .last_report_ns
        .load(Ordering::Relaxed)
        .max(started_ns);
    let elapsed_s = (end_ns - started_ns) as f64 / 1e9;
    let bytes = delivered * options.message_bytes as u64;
    let latency = {
        // A poisoned lock means the poll thread panicked mid-record; the histogram
        // itself is still consistent enough to report.
        let histogram = context
            .histogram
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (!histogram.is_empty()).then(|| Latency::from_histogram_us(&histogram))
    };
    let first_failure = context
        .first_failure
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    Ok(RunResult {
        label: options.label.clone(),
        kind: "produce",
        topic: options.topic.clone(),
        partitions,
        message_bytes: options.message_bytes as u64,
        acks: Some(options.acks.as_str()),
        compression: Some(options.compression.as_str()),
        rate_msgs_per_s: options.rate_msgs_per_s,
        messages: delivered,
        bytes,
        elapsed_s,
        msgs_per_s: if elapsed_s > 0.0 {
            delivered as f64 / elapsed_s
        } else {
            0.0
        },
        mb_per_s: mb_per_s(bytes, elapsed_s),
        latency,
        errors: failed + sent.saturating_sub(delivered + failed),
        first_error: first_failure,
        broker: usage,
    })
}

//! `failover`: how long acks=all writes stop when the partition leader is `kill -9`ed.
//!
//! ```text
//!  3 × tributary broker (cluster::LocalCluster), topic: 1 partition, RF 3, min.insync 2
//!  per trial:
//!    wait: every broker reports the partition led, ISR = all 3 replicas
//!    producer (acks=all, idempotent) ── one message every --interval-ms ──► leader L
//!    warm-up acks, then a pseudo-random pause (random phase vs. the heartbeats)
//!    t_kill ── kill -9 L
//!      ├─ Metadata poller ── raw Metadata v7 to both survivors every 10 ms ──►
//!      │     first answer naming a leader ≠ L        = detection
//!      └─ delivery callbacks: first success of a message enqueued after t_kill
//!                                                    = failover (what clients see)
//!    failover − detection = client recovery (metadata refresh, reconnect, retry,
//!                           plus the surviving follower switching to the new leader)
//!    restart L on its data, wait until the ISR has 3 members on every broker again
//! ```
//!
//! [`measure_kill`] is the measurement for one kill, independent of how the leader is
//! killed, so it is tested against librdkafka's mock cluster; [`run`] drives real
//! broker processes. Delivery failures are counted, never retried by hand:
//! `message.timeout.ms` is 60 s, so an idempotent producer should lose nothing.
//!
//! `--kill-controller` gives every trial a fresh topic whose first replica is the active
//! controller, so the kill costs a Raft election too. With `-X debug=...` the producer's
//! librdkafka log is printed (stamped relative to the kill) and parsed for when the
//! client itself moved the partition to the new leader. A restarted broker that is not
//! back in the ISR after 10 s gets a few writes ([`nudge`]), and the report says so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::cluster::LocalCluster;
use crate::payload::Payloads;
use crate::report::{Check, JsonObject, Verdict};
use crate::stats;
use crate::wire;

/// librdkafka's delivery timeout: far beyond any failover, so none should fail.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Interval of the Metadata poller: the resolution of the detection time.
const DETECTION_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Timeout of one poller request; a survivor that does not answer is skipped.
const DETECTION_REQUEST_TIMEOUT: Duration = Duration::from_millis(500);
/// The pause before each kill is drawn from `[0, KILL_JITTER)`: two heartbeat intervals
/// at the default `broker.heartbeat.interval.ms` (250), so kills land at random phases of
/// the victim's heartbeat timer instead of a fixed one.
const KILL_JITTER: Duration = Duration::from_millis(500);
/// How long the warm-up (producer start, first acknowledged messages) may take.
const WARMUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the producer may take to deliver its remaining messages after a trial.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(70);
/// How long a restarted broker may take to rejoin the ISR of an idle partition before
/// the run writes to it ([`nudge`]).
const REJOIN_WITHOUT_WRITES: Duration = Duration::from_secs(10);
/// Messages [`nudge`] writes.
const NUDGE_MESSAGES: usize = 10;
/// Targets from the issue: median and maximum of kill → first acknowledged new write.
pub const TARGET_MEDIAN_MS: f64 = 2_000.0;
pub const TARGET_MAX_MS: f64 = 5_000.0;

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct FailoverOptions {
    pub broker_binary: PathBuf,
    /// The cluster's directory is created in here.
    pub data_parent: PathBuf,
    pub keep_data: bool,
    /// `key=value` overrides for every broker, after the defaults.
    pub broker_overrides: Vec<String>,
    pub topic: String,
    pub trials: usize,
    /// Gap between two messages of the steady stream.
    pub send_interval: Duration,
    pub message_bytes: usize,
    pub linger_ms: u32,
    /// Acknowledged messages before the kill, so the producer is in its steady state.
    pub warmup_messages: u64,
    /// Give up on a trial (failover or detection) after this long.
    pub trial_timeout: Duration,
    /// Bound on restarting the victim and waiting for a full ISR (and on the first one).
    pub recovery_timeout: Duration,
    pub extra_config: Vec<(String, String)>,
    /// Make the partition leader the active controller in every trial (a fresh topic per
    /// trial whose first replica is the controller), so that each kill also costs a Raft
    /// election.
    pub kill_controller: bool,
}

/// One kill, as [`measure_kill`] sees it.
#[derive(Debug, Clone)]
pub struct ProbeSetup<'a> {
    pub bootstrap: &'a str,
    pub topic: &'a str,
    pub partition: i32,
    /// The partition leader that is about to be killed.
    pub victim: i32,
    /// Kafka addresses of the brokers that stay up, polled for the new leader.
    pub survivors: Vec<SocketAddr>,
    pub send_interval: Duration,
    pub message_bytes: usize,
    pub linger_ms: u32,
    pub warmup_messages: u64,
    /// Pause between the warm-up and the kill.
    pub kill_delay: Duration,
    /// Give up on the failover (detection and the first new acknowledged write) this
    /// long after the kill.
    pub timeout: Duration,
    pub extra_config: &'a [(String, String)],
}

/// What one kill cost, measured from the instant just before the signal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KillTimes {
    /// Until a survivor's Metadata names a leader other than the victim.
    pub detection: Option<Duration>,
    pub new_leader: Option<i32>,
    pub new_leader_epoch: Option<i32>,
    /// Until the first successful delivery report of a message enqueued after the kill.
    pub failover: Option<Duration>,
    /// Until the first successful delivery report of any message (retries of messages
    /// that were in flight at the kill usually come first).
    pub first_ack: Option<Duration>,
    pub sent: u64,
    pub delivered: u64,
    pub failed: u64,
    pub first_error: Option<String>,
    /// Errors librdkafka reported outside deliveries (connection refused, ...).
    pub client_errors: u64,
    /// Only with `-X debug=...` (which includes `broker` or `all`): until librdkafka's
    /// own metadata moved the partition to a leader other than the victim.
    pub client_saw_leader: Option<Duration>,
    /// Only with `-X debug=...`: whether librdkafka, after the kill, put the partition
    /// back on its internal broker ("Reverting from preferred replica"), which holds
    /// production until its next metadata scan.
    pub client_reverted: Option<bool>,
}

/// Producer context: delivery callbacks on librdkafka's poll thread.
struct ProbeContext {
    origin: Instant,
    /// ns since `origin` of the kill; `u64::MAX` until then.
    kill_ns: AtomicU64,
    /// ns of the first successful delivery after the kill; `u64::MAX` while none.
    first_ack_ns: AtomicU64,
    /// ns of the first successful delivery of a message enqueued after the kill.
    failover_ns: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    client_errors: AtomicU64,
    /// Print librdkafka's log lines, stamped relative to the kill (`-X debug=...` given).
    print_logs: bool,
    /// `"<topic> [<partition>]"`, how librdkafka's log lines name the partition.
    partition_name: String,
    victim: i32,
    /// ns of librdkafka's first log line after the kill that moves the partition to a
    /// leader other than the victim; `u64::MAX` while none.
    client_leader_ns: AtomicU64,
    /// Set when librdkafka logged, after the kill, that it reverted the partition to
    /// its internal broker.
    client_reverted: AtomicBool,
}

impl ProbeContext {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn elapsed_since_kill(&self, at_ns: &AtomicU64) -> Option<Duration> {
        let at = at_ns.load(Ordering::SeqCst);
        let kill = self.kill_ns.load(Ordering::SeqCst);
        (at != u64::MAX && kill != u64::MAX).then(|| Duration::from_nanos(at.saturating_sub(kill)))
    }
}

impl ClientContext for ProbeContext {
    /// Expected while the leader is down (connection refused, broker transport failure);
    /// counted, not printed, since the measurement is about when writes resume.
    fn error(&self, _error: KafkaError, _reason: &str) {
        self.client_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// With `-X debug=...` (e.g. `debug=metadata,msg,eos,broker`), librdkafka's lines go
    /// to stderr with the time relative to the kill, to see where a failover's time goes.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        if !self.print_logs {
            return;
        }
        let now = self.now_ns() as i128;
        let kill = self.kill_ns.load(Ordering::SeqCst);
        if kill != u64::MAX && now >= kill as i128 && fac == "BROKER" {
            if leader_change(log_message, &self.partition_name)
                .is_some_and(|leader| leader >= 0 && leader != self.victim)
            {
                self.client_leader_ns
                    .fetch_min(now as u64, Ordering::SeqCst);
            }
            if reverts_to_internal(log_message, &self.partition_name) {
                self.client_reverted.store(true, Ordering::SeqCst);
            }
        }
        let stamp = if kill == u64::MAX {
            "before kill".to_string()
        } else {
            format!("kill{:+.1}ms", (now - kill as i128) as f64 / 1e6)
        };
        eprintln!("[{stamp}] librdkafka {level:?} {fac}: {log_message}");
    }
}

impl ProducerContext for ProbeContext {
    /// Enqueue time, ns since `origin`.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, enqueued_ns: usize) {
        let now = self.now_ns();
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::SeqCst);
                let kill = self.kill_ns.load(Ordering::SeqCst);
                if kill != u64::MAX && now >= kill {
                    self.first_ack_ns.fetch_min(now, Ordering::SeqCst);
                    if enqueued_ns as u64 > kill {
                        self.failover_ns.fetch_min(now, Ordering::SeqCst);
                    }
                }
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut first) = self.first_failure.lock() {
                    first.get_or_insert_with(|| error.to_string());
                }
            }
        }
    }
}

fn producer_config(setup: &ProbeSetup<'_>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", setup.bootstrap)
        .set("client.id", "tributary-bench-failover")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", setup.linger_ms.to_string())
        .set(
            "message.timeout.ms",
            MESSAGE_TIMEOUT.as_millis().to_string(),
        );
    for (key, value) in setup.extra_config {
        config.set(key, value);
        if key == "debug" {
            // rdkafka passes on only lines at or below the configured level.
            config.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
        }
    }
    config
}

/// The new leader in a librdkafka `BROKER` debug line about `partition_name` such as
/// `[thrd:main]: failover [0]: leader 0 epoch 0 -> leader 1 epoch 1`.
pub fn leader_change(message: &str, partition_name: &str) -> Option<i32> {
    let marker = format!("{partition_name}: leader ");
    // The name must start the message or follow a space (`xfailover [0]` is another topic).
    let (at, _) = message
        .match_indices(marker.as_str())
        .find(|(at, _)| *at == 0 || message[..*at].ends_with(' '))?;
    let rest = &message[at + marker.len()..];
    let (_, after) = rest.split_once(" -> leader ")?;
    after.split_whitespace().next()?.parse().ok()
}

/// Whether a librdkafka `BROKER` debug line says the partition went back to the internal
/// broker: `[thrd:…]: Topic failover [0]: Reverting from preferred replica 1 to leader -1`.
pub fn reverts_to_internal(message: &str, partition_name: &str) -> bool {
    message.contains(&format!(
        "Topic {partition_name}: Reverting from preferred replica"
    ))
}

/// The leader named by the first survivor that names one other than `victim`, polled
/// every [`DETECTION_POLL_INTERVAL`] until `stop`; returns (ns since `origin`, leader,
/// leader epoch).
fn poll_new_leader(
    setup: &ProbeSetup<'_>,
    origin: Instant,
    stop: &AtomicBool,
) -> Option<(u64, i32, i32)> {
    while !stop.load(Ordering::SeqCst) {
        for addr in &setup.survivors {
            let Ok(md) = wire::metadata(*addr, setup.topic, DETECTION_REQUEST_TIMEOUT) else {
                continue;
            };
            if let Some(p) = md.partition(setup.partition) {
                if p.leader >= 0 && p.leader != setup.victim {
                    return Some((origin.elapsed().as_nanos() as u64, p.leader, p.leader_epoch));
                }
            }
        }
        std::thread::sleep(DETECTION_POLL_INTERVAL);
    }
    None
}

/// Runs a steady acks=all stream to the partition, calls `kill` (which returns the
/// instant just before the leader was killed), and measures detection and failover.
/// `Err` only for set-up failures (no producer, no warm-up); a failover that does not
/// happen within `setup.timeout` comes back as `None` times.
pub fn measure_kill(
    setup: &ProbeSetup<'_>,
    kill: impl FnOnce() -> anyhow::Result<Instant>,
) -> anyhow::Result<KillTimes> {
    let origin = Instant::now();
    let context = ProbeContext {
        origin,
        kill_ns: AtomicU64::new(u64::MAX),
        first_ack_ns: AtomicU64::new(u64::MAX),
        failover_ns: AtomicU64::new(u64::MAX),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_failure: Mutex::new(None),
        client_errors: AtomicU64::new(0),
        print_logs: setup.extra_config.iter().any(|(key, _)| key == "debug"),
        partition_name: format!("{} [{}]", setup.topic, setup.partition),
        victim: setup.victim,
        client_leader_ns: AtomicU64::new(u64::MAX),
        client_reverted: AtomicBool::new(false),
    };
    let producer: ThreadedProducer<ProbeContext> = producer_config(setup)
        .create_with_context(context)
        .context("creating the failover producer")?;
    let payloads = Payloads::new(setup.message_bytes);
    let stop_sending = AtomicBool::new(false);
    let stop_polling = AtomicBool::new(false);
    let sent = AtomicU64::new(0);

    std::thread::scope(|scope| -> anyhow::Result<KillTimes> {
        let sender = scope.spawn(|| -> anyhow::Result<()> {
            let context = producer.context();
            let started_ns = context.now_ns();
            let interval_ns = setup.send_interval.as_nanos() as u64;
            let mut n: u64 = 0;
            while !stop_sending.load(Ordering::SeqCst) {
                // A fixed schedule: the stream does not slow down while writes stall.
                let due_ns = started_ns + n * interval_ns;
                let ahead_ns = due_ns.saturating_sub(context.now_ns());
                if ahead_ns > 0 {
                    std::thread::sleep(Duration::from_nanos(ahead_ns));
                }
                let mut record: BaseRecord<'_, (), [u8], usize> =
                    BaseRecord::with_opaque_to(setup.topic, context.now_ns() as usize)
                        .partition(setup.partition)
                        .payload(payloads.get(n));
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            std::thread::sleep(Duration::from_millis(1));
                            record.delivery_opaque = context.now_ns() as usize;
                        }
                        Err((error, _)) => bail!("enqueueing message {n}: {error}"),
                    }
                }
                n += 1;
                sent.store(n, Ordering::SeqCst);
            }
            Ok(())
        });
        let context = producer.context();
        let outcome = (|| -> anyhow::Result<()> {
            let deadline = Instant::now() + WARMUP_TIMEOUT;
            while context.delivered.load(Ordering::SeqCst) < setup.warmup_messages {
                if sender.is_finished() {
                    bail!("the send loop stopped during the warm-up");
                }
                if context.failed.load(Ordering::SeqCst) > 0 || Instant::now() > deadline {
                    bail!(
                        "warm-up: {} of {} messages acknowledged within {:?}, {} failed ({})",
                        context.delivered.load(Ordering::SeqCst),
                        setup.warmup_messages,
                        WARMUP_TIMEOUT,
                        context.failed.load(Ordering::SeqCst),
                        context
                            .first_failure
                            .lock()
                            .map(|f| f.clone().unwrap_or_default())
                            .unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            // Pseudo-random phase relative to the victim's heartbeats; not a wait for
            // any event.
            std::thread::sleep(setup.kill_delay);
            Ok(())
        })();
        if let Err(e) = outcome {
            stop_sending.store(true, Ordering::SeqCst);
            return Err(e);
        }

        let killed_at = match kill() {
            Ok(at) => at,
            Err(e) => {
                stop_sending.store(true, Ordering::SeqCst);
                return Err(e.context("killing the leader"));
            }
        };
        context.kill_ns.store(
            killed_at.duration_since(origin).as_nanos() as u64,
            Ordering::SeqCst,
        );
        let poller = scope.spawn(|| poll_new_leader(setup, origin, &stop_polling));

        let deadline = killed_at + setup.timeout;
        while context.failover_ns.load(Ordering::SeqCst) == u64::MAX || !poller.is_finished() {
            if Instant::now() > deadline || sender.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        stop_sending.store(true, Ordering::SeqCst);
        stop_polling.store(true, Ordering::SeqCst);
        let detected = poller
            .join()
            .map_err(|_| anyhow::anyhow!("the Metadata poller panicked"))?;
        sender
            .join()
            .map_err(|_| anyhow::anyhow!("the send loop panicked"))??;
        // Undelivered messages at the deadline count as failures below.
        let _ = producer.flush(Timeout::After(FLUSH_TIMEOUT));

        let kill_ns = context.kill_ns.load(Ordering::SeqCst);
        let sent = sent.load(Ordering::SeqCst);
        let delivered = context.delivered.load(Ordering::SeqCst);
        let failed = context.failed.load(Ordering::SeqCst);
        Ok(KillTimes {
            detection: detected.map(|(at, _, _)| Duration::from_nanos(at.saturating_sub(kill_ns))),
            new_leader: detected.map(|(_, leader, _)| leader),
            new_leader_epoch: detected.map(|(_, _, epoch)| epoch),
            failover: context.elapsed_since_kill(&context.failover_ns),
            first_ack: context.elapsed_since_kill(&context.first_ack_ns),
            sent,
            delivered,
            failed: failed + sent.saturating_sub(delivered + failed),
            first_error: context
                .first_failure
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
            client_errors: context.client_errors.load(Ordering::SeqCst),
            client_saw_leader: context.elapsed_since_kill(&context.client_leader_ns),
            client_reverted: context
                .print_logs
                .then(|| context.client_reverted.load(Ordering::SeqCst)),
        })
    })
}

/// One trial of `run`.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub trial: usize,
    pub victim: i32,
    pub victim_was_controller: bool,
    pub leader_epoch_before: i32,
    pub times: KillTimes,
    /// From the restart of the victim until every broker reports a full ISR again.
    pub rejoin: Duration,
    /// The restarted broker rejoined the ISR only after new writes to the partition.
    pub rejoin_needed_write: bool,
}

impl Trial {
    pub fn failover_ms(&self) -> Option<f64> {
        self.times.failover.map(ms)
    }

    pub fn detection_ms(&self) -> Option<f64> {
        self.times.detection.map(ms)
    }

    /// Failover minus detection: what the client needed once the new leader was known.
    pub fn recovery_ms(&self) -> Option<f64> {
        Some(self.failover_ms()? - self.detection_ms()?)
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// The trials done, and the error that stopped the run early, if any.
pub struct Outcome {
    pub trials: Vec<Trial>,
    pub error: Option<anyhow::Error>,
}

/// Starts the cluster and runs the trials; prints progress on stderr. A failure part way
/// (e.g. a restarted broker that never rejoins the ISR) ends the run but keeps the trials
/// measured before it.
pub fn run(options: &FailoverOptions) -> Outcome {
    let mut trials = Vec::with_capacity(options.trials);
    let error = run_trials(options, &mut trials).err();
    Outcome { trials, error }
}

fn run_trials(options: &FailoverOptions, trials: &mut Vec<Trial>) -> anyhow::Result<()> {
    let mut cluster = LocalCluster::start(
        &options.broker_binary,
        3,
        &options.data_parent,
        "failover",
        &options.broker_overrides,
    )?;
    if options.keep_data {
        cluster.keep_directory();
        eprintln!("data and broker logs: {}", cluster.dir().display());
    }
    let bootstrap = cluster.bootstrap();
    if !options.kill_controller {
        crate::admin::create_topic_with(
            &bootstrap,
            &options.topic,
            1,
            3,
            &[("min.insync.replicas", "2")],
        )?;
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    for trial in 1..=options.trials {
        let topic = if options.kill_controller {
            let topic = format!("{}-{trial}", options.topic);
            let controller = wait_for_controller(&cluster, &topic, options.recovery_timeout)?;
            let mut replicas = vec![controller];
            replicas.extend((0..cluster.len() as i32).filter(|&id| id != controller));
            crate::admin::create_topic_assigned(
                &bootstrap,
                &topic,
                &[replicas],
                &[("min.insync.replicas", "2")],
            )?;
            topic
        } else {
            options.topic.clone()
        };
        let md = cluster
            .wait_fully_replicated(&topic, 1, options.recovery_timeout)
            .with_context(|| format!("before trial {trial}"))?;
        let partition = md.partition(0).context("partition 0 is missing")?;
        let victim = partition.leader;
        let survivors = (0..cluster.len() as i32)
            .filter(|&id| id != victim)
            .map(|id| cluster.broker(id).map(|b| b.kafka))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let setup = ProbeSetup {
            bootstrap: &bootstrap,
            topic: &topic,
            partition: 0,
            victim,
            survivors,
            send_interval: options.send_interval,
            message_bytes: options.message_bytes,
            linger_ms: options.linger_ms,
            warmup_messages: options.warmup_messages,
            kill_delay: crate::rebalance::jittered(
                Duration::ZERO,
                KILL_JITTER,
                seed ^ trial as u64,
            ),
            timeout: options.trial_timeout,
            extra_config: &options.extra_config,
        };
        // Wall-clock time of the kill, to find it in the brokers' logs.
        let mut killed_wall = None;
        let times = measure_kill(&setup, || {
            let at = cluster.kill9(victim)?;
            killed_wall = Some(std::time::SystemTime::now());
            Ok(at)
        })
        .with_context(|| format!("trial {trial}"))?;
        let restarted = Instant::now();
        cluster.restart(victim)?;
        let mut rejoin_needed_write = false;
        if cluster
            .wait_fully_replicated(&topic, 1, REJOIN_WITHOUT_WRITES)
            .is_err()
        {
            // Seen on an idle partition: the leader proposed the ISR expansion while the
            // restarted broker was still fenced, was refused, and never proposed again.
            // A new write makes the follower fetch, and the leader reconsider, again.
            eprintln!(
                "trial {trial}: broker {victim} not back in the ISR of {topic} after \
                 {REJOIN_WITHOUT_WRITES:?}; writing {NUDGE_MESSAGES} messages"
            );
            rejoin_needed_write = true;
            nudge(&bootstrap, &topic)?;
            cluster
                .wait_fully_replicated(&topic, 1, options.recovery_timeout)
                .with_context(|| format!("after trial {trial}, broker {victim} restarted"))?;
        }
        let result = Trial {
            trial,
            victim,
            victim_was_controller: md.controller_id == victim,
            leader_epoch_before: partition.leader_epoch,
            times,
            rejoin: restarted.elapsed(),
            rejoin_needed_write,
        };
        eprintln!(
            "trial {trial}/{}: killed broker {victim}{} at {} (unix s); failover {} ms, \
             detection {} ms",
            options.trials,
            if result.victim_was_controller {
                " (the controller)"
            } else {
                ""
            },
            killed_wall
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or("?".to_string(), |d| format!("{:.3}", d.as_secs_f64())),
            fmt_ms(result.failover_ms()),
            fmt_ms(result.detection_ms()),
        );
        trials.push(result);
    }
    Ok(())
}

/// Writes [`NUDGE_MESSAGES`] small messages (acks=all) to partition 0 of `topic`.
fn nudge(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "tributary-bench-nudge")
        .set("acks", "all")
        .create()
        .context("creating the nudge producer")?;
    for i in 0..NUDGE_MESSAGES {
        let payload = format!("nudge {i}");
        producer
            .send(
                BaseRecord::<(), [u8]>::to(topic)
                    .partition(0)
                    .payload(payload.as_bytes()),
            )
            .map_err(|(e, _)| anyhow::anyhow!("enqueueing a nudge message to {topic}: {e}"))?;
    }
    producer
        .flush(Timeout::After(Duration::from_secs(30)))
        .with_context(|| format!("flushing the nudge messages to {topic}"))
}

/// The active controller as the running brokers report it, polled until one names it.
fn wait_for_controller(
    cluster: &LocalCluster,
    topic: &str,
    timeout: Duration,
) -> anyhow::Result<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        // Any topic name works: an unknown one comes back with an error code.
        if let Ok(md) = cluster.metadata(topic) {
            if md.controller_id >= 0 {
                return Ok(md.controller_id);
            }
        }
        if Instant::now() > deadline {
            bail!("no broker named an active controller within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn fmt_ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
}

/// median, p90 (nearest rank) and max of some figures; `None` when there are none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

pub fn spread(samples: &[f64]) -> Option<Spread> {
    let summary = stats::summarize(samples)?;
    let sorted = stats::sorted(samples);
    Some(Spread {
        count: summary.count,
        median: summary.median,
        p90: stats::percentile_of_sorted(&sorted, 90.0)?,
        max: summary.max,
    })
}

/// The summary rows: (what, spread over the trials that have the figure).
pub fn summary_rows(trials: &[Trial]) -> Vec<(String, Option<Spread>)> {
    let collect = |f: &dyn Fn(&Trial) -> Option<f64>, filter: &dyn Fn(&Trial) -> bool| {
        trials
            .iter()
            .filter(|t| filter(t))
            .filter_map(f)
            .collect::<Vec<f64>>()
    };
    let all = |_: &Trial| true;
    vec![
        (
            "failover: kill → first acks=all ack of a message sent after the kill".into(),
            spread(&collect(&Trial::failover_ms, &all)),
        ),
        (
            "detection: kill → a survivor's Metadata names the new leader".into(),
            spread(&collect(&Trial::detection_ms, &all)),
        ),
        (
            "client recovery: failover − detection".into(),
            spread(&collect(&Trial::recovery_ms, &all)),
        ),
        (
            "failover, the killed leader was also the active controller".into(),
            spread(&collect(&Trial::failover_ms, &|t| t.victim_was_controller)),
        ),
        (
            "failover, the killed leader was not the controller".into(),
            spread(&collect(&Trial::failover_ms, &|t| !t.victim_was_controller)),
        ),
    ]
}

/// The targets: median and max failover, over every trial (a trial without a failover
/// within the timeout fails the max target).
pub fn checks(trials: &[Trial]) -> Vec<Check> {
    let failovers: Vec<f64> = trials.iter().filter_map(Trial::failover_ms).collect();
    let missing = trials.len() - failovers.len();
    let summary = spread(&failovers);
    let check = |target: &str, measured: Option<f64>, limit: f64, ok: bool| Check {
        target: target.to_string(),
        measured,
        unit: "ms",
        limit: format!("< {limit:.0}"),
        verdict: match measured {
            None => Verdict::NotMeasured("no trial failed over"),
            Some(_) if ok => Verdict::Pass,
            Some(_) => Verdict::Fail,
        },
    };
    let median = summary.map(|s| s.median);
    let max = summary.map(|s| s.max);
    vec![
        check(
            "failover median (kill -9 of the leader → first new write acknowledged)",
            median,
            TARGET_MEDIAN_MS,
            median.is_some_and(|m| m < TARGET_MEDIAN_MS) && missing == 0,
        ),
        check(
            "failover max",
            max,
            TARGET_MAX_MS,
            max.is_some_and(|m| m < TARGET_MAX_MS) && missing == 0,
        ),
    ]
}

/// The report: one row per trial, the summary and the targets.
pub fn markdown(options: &FailoverOptions, trials: &[Trial]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let overrides = if options.broker_overrides.is_empty() {
        "none (broker defaults)".to_string()
    } else {
        options.broker_overrides.join(" ")
    };
    let client = if options.extra_config.is_empty() {
        String::new()
    } else {
        let pairs: Vec<String> = options
            .extra_config
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("; client -X {}", pairs.join(" "))
    };
    let _ = writeln!(
        out,
        "failover: 3 brokers, topic {}{} (1 partition, RF 3, min.insync.replicas 2); one \
         {}-byte message every {:?}, acks=all, idempotent, linger.ms {}; broker overrides: \
         {}{client}\n",
        options.topic,
        if options.kill_controller {
            "-<trial>, a fresh topic per trial led by the active controller"
        } else {
            ""
        },
        options.message_bytes,
        options.send_interval,
        options.linger_ms,
        overrides
    );
    out.push_str(
        "| trial | killed leader | was controller | new leader | epoch | detection ms \
         | failover ms | client recovery ms | first ack (any) ms | sent | failed \
         | back in ISR s |\n|--:|--:|---|--:|---|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for t in trials {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} → {} | {} | {} | {} | {} | {} | {} | {:.1}{} |",
            t.trial,
            t.victim,
            if t.victim_was_controller { "yes" } else { "no" },
            t.times.new_leader.map_or("-".into(), |l| l.to_string()),
            t.leader_epoch_before,
            t.times
                .new_leader_epoch
                .map_or("-".into(), |e| e.to_string()),
            fmt_ms(t.detection_ms()),
            fmt_ms(t.failover_ms()),
            fmt_ms(t.recovery_ms()),
            fmt_ms(t.times.first_ack.map(ms)),
            t.times.sent,
            t.times.failed,
            t.rejoin.as_secs_f64(),
            if t.rejoin_needed_write {
                " (after a write)"
            } else {
                ""
            },
        );
    }
    out.push_str("\n| measure | trials | median ms | p90 ms | max ms |\n|---|--:|--:|--:|--:|\n");
    for (what, spread) in summary_rows(trials) {
        match spread {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "| {what} | {} | {:.0} | {:.0} | {:.0} |",
                    s.count, s.median, s.p90, s.max
                );
            }
            None => {
                let _ = writeln!(out, "| {what} | 0 | - | - | - |");
            }
        }
    }
    if trials.iter().any(|t| t.times.client_reverted.is_some()) {
        out.push_str(
            "\nlibrdkafka's view (from its debug log): \n\n| trial | detection ms | client saw \
             new leader ms | saw − detection ms | partition reverted to the internal broker \
             | failover ms |\n|--:|--:|--:|--:|---|--:|\n",
        );
        for t in trials {
            let saw = t.times.client_saw_leader.map(ms);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                t.trial,
                fmt_ms(t.detection_ms()),
                fmt_ms(saw),
                fmt_ms(saw.zip(t.detection_ms()).map(|(s, d)| s - d)),
                match t.times.client_reverted {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "-",
                },
                fmt_ms(t.failover_ms()),
            );
        }
        let reverted = trials
            .iter()
            .filter(|t| t.times.client_reverted == Some(true))
            .filter_map(Trial::failover_ms)
            .collect::<Vec<_>>();
        let kept = trials
            .iter()
            .filter(|t| t.times.client_reverted == Some(false))
            .filter_map(Trial::failover_ms)
            .collect::<Vec<_>>();
        for (what, samples) in [("reverted", &reverted), ("not reverted", &kept)] {
            if let Some(s) = spread(samples) {
                let _ = writeln!(
                    out,
                    "\nfailover when the partition was {what}: {} trials, median {:.0} ms, max {:.0} ms",
                    s.count, s.median, s.max
                );
            }
        }
    }
    let nudged = trials.iter().filter(|t| t.rejoin_needed_write).count();
    if nudged > 0 {
        let _ = writeln!(
            out,
            "\n{nudged} trial(s): the restarted broker was not back in the ISR {:?} after its \
             restart; it rejoined after {NUDGE_MESSAGES} new messages were written.",
            REJOIN_WITHOUT_WRITES
        );
    }
    let missing = trials.iter().filter(|t| t.times.failover.is_none()).count();
    if missing > 0 {
        let _ = writeln!(
            out,
            "\n{missing} trial(s) saw no acknowledged new write within {:?}.",
            options.trial_timeout
        );
    }
    out.push('\n');
    out.push_str(&crate::report::targets_table(&checks(trials)));
    out
}

/// One JSON object per trial, then one per summary row and target.
pub fn json_lines(trials: &[Trial]) -> Vec<String> {
    let mut lines = Vec::new();
    for t in trials {
        let mut json = JsonObject::new("failover_trial");
        json.int("trial", t.trial as u64)
            .int("killed_leader", t.victim as u64)
            .bool("killed_controller", t.victim_was_controller)
            .opt_int("new_leader", t.times.new_leader.map(|l| l as u64))
            .int("leader_epoch_before", t.leader_epoch_before as u64)
            .opt_int(
                "leader_epoch_after",
                t.times.new_leader_epoch.map(|e| e as u64),
            )
            .opt_num("detection_ms", t.detection_ms())
            .opt_num("failover_ms", t.failover_ms())
            .opt_num("client_recovery_ms", t.recovery_ms())
            .opt_num("first_ack_ms", t.times.first_ack.map(ms))
            .int("sent", t.times.sent)
            .int("delivered", t.times.delivered)
            .int("failed", t.times.failed)
            .opt_str("first_error", t.times.first_error.as_deref())
            .int("client_errors", t.times.client_errors)
            .opt_num("client_saw_leader_ms", t.times.client_saw_leader.map(ms));
        match t.times.client_reverted {
            Some(reverted) => json.bool("client_reverted_to_internal", reverted),
            None => json.null("client_reverted_to_internal"),
        };
        json.num("rejoin_s", t.rejoin.as_secs_f64())
            .bool("rejoin_needed_write", t.rejoin_needed_write);
        lines.push(json.finish());
    }
    for (what, spread) in summary_rows(trials) {
        let mut json = JsonObject::new("failover_summary");
        json.str("measure", &what)
            .int("trials", spread.map_or(0, |s| s.count as u64))
            .opt_num("median_ms", spread.map(|s| s.median))
            .opt_num("p90_ms", spread.map(|s| s.p90))
            .opt_num("max_ms", spread.map(|s| s.max));
        lines.push(json.finish());
    }
    lines.extend(checks(trials).iter().map(Check::to_json));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    fn trial(
        n: usize,
        controller: bool,
        detection_ms: Option<u64>,
        failover_ms: Option<u64>,
    ) -> Trial {
        Trial {
            trial: n,
            victim: 1,
            victim_was_controller: controller,
            leader_epoch_before: 3,
            times: KillTimes {
                detection: detection_ms.map(Duration::from_millis),
                new_leader: Some(2),
                new_leader_epoch: Some(4),
                failover: failover_ms.map(Duration::from_millis),
                first_ack: failover_ms.map(Duration::from_millis),
                sent: 1000,
                delivered: 1000,
                ..KillTimes::default()
            },
            rejoin: Duration::from_secs(2),
            rejoin_needed_write: false,
        }
    }

    #[test]
    fn librdkafka_leader_changes_and_reverts_are_recognised() {
        let name = "failover [0]";
        assert_eq!(
            leader_change(
                "[thrd:main]: failover [0]: leader 0 epoch 0 -> leader 1 epoch 1",
                name
            ),
            Some(1)
        );
        assert_eq!(
            leader_change("failover [0]: leader 1 epoch 1 -> leader -1 epoch -1", name),
            Some(-1)
        );
        assert_eq!(
            leader_change("failover [1]: leader 0 epoch 0 -> leader 1 epoch 1", name),
            None
        );
        assert_eq!(
            leader_change("failover [0]: delegate to broker x", name),
            None
        );
        assert!(reverts_to_internal(
            "Topic failover [0]: Reverting from preferred replica 1 to leader -1",
            name
        ));
        assert_eq!(
            leader_change(
                "[thrd:main]: xfailover [0]: leader 0 epoch 0 -> leader 1 epoch 1",
                name
            ),
            None
        );
        assert!(reverts_to_internal(
            "[thrd:127.0.0.1:41795/0]: Topic failover [0]: Reverting from preferred replica 1 to leader -1",
            name
        ));
        assert!(!reverts_to_internal(
            "Topic failover [0]: leaving broker",
            name
        ));
        assert!(!reverts_to_internal(
            "Topic other [0]: Reverting from preferred replica 1 to leader -1",
            name
        ));
    }

    #[test]
    fn spread_is_median_nearest_rank_p90_and_max() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = spread(&samples).unwrap();
        assert_eq!((s.count, s.median, s.p90, s.max), (20, 10.5, 18.0, 20.0));
        assert_eq!(spread(&[]), None);
    }

    #[test]
    fn recovery_is_failover_minus_detection_and_subsets_split_by_controller() {
        let trials = [
            trial(1, false, Some(1500), Some(1700)),
            trial(2, true, Some(2500), Some(2900)),
            trial(3, false, Some(1400), Some(1800)),
        ];
        assert_eq!(trials[0].recovery_ms(), Some(200.0));
        let rows = summary_rows(&trials);
        assert_eq!(rows[0].1.unwrap().median, 1800.0);
        assert_eq!(rows[1].1.unwrap().max, 2500.0);
        assert_eq!(rows[2].1.unwrap().median, 400.0);
        assert_eq!(rows[3].1.unwrap().count, 1);
        assert_eq!(rows[4].1.unwrap().count, 2);
        let checks = checks(&trials);
        assert_eq!(checks[0].verdict, Verdict::Pass, "median 1800 < 2000");
        assert_eq!(checks[1].verdict, Verdict::Pass, "max 2900 < 5000");
    }

    #[test]
    fn targets_fail_on_slow_or_missing_failovers() {
        let slow = [
            trial(1, false, Some(1900), Some(2100)),
            trial(2, false, None, Some(6000)),
        ];
        let c = checks(&slow);
        assert_eq!(
            (c[0].verdict.clone(), c[1].verdict.clone()),
            (Verdict::Fail, Verdict::Fail)
        );
        let missing = [
            trial(1, false, Some(100), Some(200)),
            trial(2, false, None, None),
        ];
        let c = checks(&missing);
        assert_eq!(c[0].measured, Some(200.0));
        assert_eq!(
            c[1].verdict,
            Verdict::Fail,
            "a trial without failover fails the max"
        );
        assert!(matches!(checks(&[])[0].verdict, Verdict::NotMeasured(_)));
        assert_eq!(trial(1, false, None, Some(5)).recovery_ms(), None);
    }

    #[test]
    fn report_has_a_row_per_trial_and_the_targets() {
        let options = FailoverOptions {
            broker_binary: PathBuf::from("tributary"),
            data_parent: PathBuf::from("/tmp"),
            keep_data: false,
            broker_overrides: Vec::new(),
            topic: "fo".into(),
            trials: 2,
            send_interval: Duration::from_millis(2),
            message_bytes: 100,
            linger_ms: 1,
            warmup_messages: 100,
            trial_timeout: Duration::from_secs(30),
            recovery_timeout: Duration::from_secs(60),
            extra_config: Vec::new(),
            kill_controller: false,
        };
        let mut trials = [
            trial(1, true, Some(1500), Some(1700)),
            trial(2, false, None, None),
        ];
        trials[1].rejoin_needed_write = true;
        let text = markdown(&options, &trials);
        assert!(
            text.contains("| 1 | 1 | yes | 2 | 3 → 4 | 1500 | 1700 | 200 |"),
            "{text}"
        );
        assert!(text.contains("| 2.0 (after a write) |"), "{text}");
        assert!(
            text.contains("1 trial(s): the restarted broker was not back in the ISR"),
            "{text}"
        );
        assert!(
            text.contains("1 trial(s) saw no acknowledged new write"),
            "{text}"
        );
        assert!(
            text.contains("| failover max | 1700.00 ms | < 5000 ms | FAIL |"),
            "{text}"
        );
        let json = json_lines(&trials);
        assert_eq!(json.len(), 2 + 5 + 2);
        assert!(json[0].contains("\"failover_ms\":1700"), "{}", json[0]);
        assert!(json[1].contains("\"failover_ms\":null"), "{}", json[1]);
    }

    /// The whole measurement against librdkafka's mock cluster: the "kill" takes broker 1
    /// down and, `delay` later, moves the leadership to broker 2, as a controller would
    /// after its session timeout.
    #[test]
    fn measures_detection_and_failover_on_a_mock_cluster() {
        let cluster = MockCluster::new(3).unwrap();
        cluster.create_topic("fo", 1, 3).unwrap();
        cluster.partition_leader("fo", 0, Some(1)).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let md = wire::metadata(
            bootstrap.split(',').next().unwrap().parse().unwrap(),
            "fo",
            Duration::from_secs(5),
        )
        .unwrap();
        let survivors = md
            .brokers
            .iter()
            .filter(|b| b.node_id != 1)
            .map(|b| format!("{}:{}", b.host, b.port).parse().unwrap())
            .collect::<Vec<SocketAddr>>();
        assert_eq!(survivors.len(), 2);
        let delay = Duration::from_millis(300);
        let setup = ProbeSetup {
            bootstrap: &bootstrap,
            topic: "fo",
            partition: 0,
            victim: 1,
            survivors,
            send_interval: Duration::from_millis(2),
            message_bytes: 50,
            linger_ms: 1,
            warmup_messages: 50,
            kill_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(20),
            extra_config: &[],
        };
        let times = measure_kill(&setup, || {
            let at = Instant::now();
            cluster.broker_down(1)?;
            // The simulated controller's detection delay, not a synchronization.
            std::thread::sleep(delay);
            cluster.partition_leader("fo", 0, Some(2))?;
            Ok(at)
        })
        .unwrap();
        let detection = times.detection.expect("the poller saw the new leader");
        let failover = times
            .failover
            .expect("a message sent after the kill was acknowledged");
        assert!(detection >= delay, "{times:?}");
        assert!(
            failover >= detection.saturating_sub(DETECTION_POLL_INTERVAL * 2),
            "{times:?}"
        );
        assert!(failover < setup.timeout, "{times:?}");
        assert!(times.first_ack.unwrap() <= failover, "{times:?}");
        assert_eq!(times.new_leader, Some(2));
        assert_eq!(times.failed, 0, "{times:?}");
        assert!(times.sent >= setup.warmup_messages);
        assert_eq!(times.delivered, times.sent);
    }

    #[test]
    fn a_failover_that_never_happens_times_out_without_times() {
        let cluster = MockCluster::new(3).unwrap();
        cluster.create_topic("stuck", 1, 3).unwrap();
        cluster.partition_leader("stuck", 0, Some(1)).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let setup = ProbeSetup {
            bootstrap: &bootstrap,
            topic: "stuck",
            partition: 0,
            victim: 1,
            survivors: Vec::new(),
            send_interval: Duration::from_millis(5),
            message_bytes: 10,
            linger_ms: 1,
            warmup_messages: 10,
            kill_delay: Duration::ZERO,
            timeout: Duration::from_millis(700),
            extra_config: &[("message.timeout.ms".to_string(), "3000".to_string())],
        };
        let times = measure_kill(&setup, || {
            let at = Instant::now();
            cluster.broker_down(1)?;
            Ok(at)
        })
        .unwrap();
        assert_eq!(times.detection, None);
        assert_eq!(times.failover, None);
        assert!(
            times.failed > 0,
            "messages to a dead leader time out: {times:?}"
        );
    }
}

//! The `rebalance` measurement: how long a consumer group takes to get every member
//! consuming again after a member joins or leaves.
//!
//! A producer thread trickles small messages round-robin to every partition. N
//! members (librdkafka `BaseConsumer`s, one thread each, `subscribe`d to the topic in
//! one group) record the time of every rebalance callback and of the first message
//! after each assignment. Then, per round:
//!
//! - JOIN: start one extra member at t0; the event ends when every member (the new one
//!   included) has had an assignment after t0 and has received a message since it.
//! - LEAVE: close the oldest member at t0 (`rd_kafka_consumer_close`: revoke, then a
//!   clean `LeaveGroup`); the event ends when every remaining member has had an
//!   assignment after t0 and a message since it.
//!
//! The measurement assumes an eager assignor (librdkafka's default
//! `partition.assignment.strategy` is `range,roundrobin`): every member gets a
//! revoke and an assign callback per rebalance. With `cooperative-sticky`, members
//! that keep their partitions get no callback, so it is refused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::report::JsonObject;
use crate::stats::{summarize, Summary};

/// Options of one `rebalance` run.
#[derive(Debug, Clone)]
pub struct RebalanceOptions {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub members: usize,
    pub rounds: usize,
    pub session_timeout_ms: u32,
    pub heartbeat_interval_ms: u32,
    /// Gap between two trickle messages (each to the next partition).
    pub trickle_interval: Duration,
    /// Pause in the steady state between two events.
    pub settle: Duration,
    /// Give up on an event (or the initial join) after this long.
    pub event_timeout: Duration,
    pub extra_config: Vec<(String, String)>,
}

/// What one member has seen, with timestamps.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemberView {
    pub last_revoke: Option<Instant>,
    pub last_assign: Option<Instant>,
    /// Partitions in the last assignment.
    pub assigned: usize,
    /// First message received after `last_assign`.
    pub first_message_after_assign: Option<Instant>,
    pub messages: u64,
}

/// When an event (join or leave at `t0`) completed, relative to t0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventTimes {
    /// Last member (of those present before t0) to get its revoke callback: how long
    /// the group took to notice (mostly the heartbeat timer).
    pub noticed: Option<Duration>,
    /// Last member to get its new assignment.
    pub assigned: Duration,
    /// Last member to receive a message after its new assignment.
    pub consuming: Duration,
}

/// The event started at `t0` is complete when every member in `views` has been
/// assigned after t0 and (unless it got no partitions) has received a message since.
/// `existing` marks the members that were in the group before t0.
pub fn event_complete(t0: Instant, views: &[(MemberView, bool)]) -> Option<EventTimes> {
    let mut noticed: Option<Duration> = None;
    let mut assigned = Duration::ZERO;
    let mut consuming = Duration::ZERO;
    for (view, existing) in views {
        let assign = view.last_assign.filter(|&at| at > t0)?;
        let consumed = if view.assigned == 0 {
            assign
        } else {
            view.first_message_after_assign?
        };
        assigned = assigned.max(assign - t0);
        consuming = consuming.max(consumed - t0);
        if *existing {
            if let Some(revoke) = view.last_revoke.filter(|&at| at > t0) {
                noticed = Some(noticed.unwrap_or_default().max(revoke - t0));
            }
        }
    }
    Some(EventTimes {
        noticed,
        assigned,
        consuming,
    })
}

struct MemberContext {
    view: Arc<Mutex<MemberView>>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let now = Instant::now();
        let mut view = lock(&self.view);
        match rebalance {
            Rebalance::Revoke(_) => view.last_revoke = Some(now),
            Rebalance::Assign(partitions) => {
                view.last_assign = Some(now);
                view.assigned = partitions.count();
                view.first_message_after_assign = None;
            }
            Rebalance::Error(error) => eprintln!("rebalance error: {error}"),
        }
    }
}

fn lock(view: &Mutex<MemberView>) -> std::sync::MutexGuard<'_, MemberView> {
    view.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Member {
    id: usize,
    view: Arc<Mutex<MemberView>>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<()>>,
}

impl Member {
    fn snapshot(&self) -> MemberView {
        *lock(&self.view)
    }

    /// Closes the consumer (revoke + LeaveGroup, in `BaseConsumer`'s drop) and waits.
    fn close(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("member {} panicked", self.id))?
    }
}

fn consumer_config(options: &RebalanceOptions, id: usize) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap)
        .set("client.id", format!("tributary-bench-member-{id}"))
        .set("group.id", &options.group)
        .set("session.timeout.ms", options.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            options.heartbeat_interval_ms.to_string(),
        )
        // Nothing committed: a partition's new owner starts at the log end and sees
        // the next trickle message, so "consuming again" is not a backlog read.
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "latest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    for (key, value) in &options.extra_config {
        config.set(key, value);
    }
    config
}

fn start_member(options: &RebalanceOptions, id: usize) -> anyhow::Result<Member> {
    let view = Arc::new(Mutex::new(MemberView::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let context = MemberContext { view: view.clone() };
    let consumer: BaseConsumer<MemberContext> = consumer_config(options, id)
        .create_with_context(context)
        .context("creating a group member")?;
    consumer
        .subscribe(&[&options.topic])
        .with_context(|| format!("subscribing to {}", options.topic))?;
    let thread_view = view.clone();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("member-{id}"))
        .spawn(move || {
            let mut errors = 0u32;
            while !thread_stop.load(Ordering::SeqCst) {
                match consumer.poll(Duration::from_millis(20)) {
                    Some(Ok(_message)) => {
                        let now = Instant::now();
                        let mut view = lock(&thread_view);
                        view.messages += 1;
                        if view.first_message_after_assign.is_none() && view.last_assign.is_some() {
                            view.first_message_after_assign = Some(now);
                        }
                    }
                    Some(Err(error)) => {
                        if errors < 5 {
                            eprintln!("member {id}: consumer error (continuing): {error}");
                        }
                        errors += 1;
                    }
                    None => {}
                }
            }
            // Dropping the consumer closes it: revoke, LeaveGroup, wait until closed.
            drop(consumer);
            Ok(())
        })
        .context("spawning a member thread")?;
    Ok(Member {
        id,
        view,
        stop,
        thread,
    })
}

/// Trickles one small message every `interval`, round-robin over the partitions.
fn start_trickle(
    options: &RebalanceOptions,
    partitions: i32,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<anyhow::Result<u64>>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &options.bootstrap)
        .set("client.id", "tributary-bench-trickle")
        .set("linger.ms", "0")
        .set("acks", "1");
    let producer: BaseProducer = config.create().context("creating the trickle producer")?;
    let topic = options.topic.clone();
    let interval = options.trickle_interval;
    let thread = std::thread::Builder::new()
        .name("trickle".into())
        .spawn(move || {
            let mut sent = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                let partition = (sent % partitions as u64) as i32;
                let payload = sent.to_le_bytes();
                // A full queue just skips a beat; the trickle is a signal, not a load.
                if producer
                    .send(
                        BaseRecord::<(), [u8]>::to(&topic)
                            .partition(partition)
                            .payload(&payload[..]),
                    )
                    .is_ok()
                {
                    sent += 1;
                }
                producer.poll(Duration::ZERO);
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
            let _ = producer.flush(Duration::from_secs(5));
            Ok(sent)
        })
        .context("spawning the trickle thread")?;
    Ok(thread)
}

/// Waits until the event started at `t0` completes for `members`.
fn wait_event(
    t0: Instant,
    members: &[Member],
    existing: &[bool],
    timeout: Duration,
) -> anyhow::Result<EventTimes> {
    loop {
        let views: Vec<(MemberView, bool)> = members
            .iter()
            .zip(existing)
            .map(|(member, &existing)| (member.snapshot(), existing))
            .collect();
        if let Some(times) = event_complete(t0, &views) {
            return Ok(times);
        }
        if t0.elapsed() > timeout {
            let states: Vec<String> = members
                .iter()
                .zip(&views)
                .map(|(member, (view, _))| {
                    format!(
                        "member {}: assigned after t0 {}, partitions {}, message since {}",
                        member.id,
                        view.last_assign.is_some_and(|at| at > t0),
                        view.assigned,
                        view.first_message_after_assign.is_some()
                    )
                })
                .collect();
            bail!(
                "the group did not settle within {timeout:?}: {}",
                states.join("; ")
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One measured event.
#[derive(Debug, Clone, Copy)]
pub struct EventSample {
    pub kind: &'static str,
    pub round: usize,
    pub members_after: usize,
    pub times: EventTimes,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct RebalanceResult {
    pub initial_join: EventTimes,
    pub samples: Vec<EventSample>,
    pub heartbeat_interval_ms: u32,
    pub session_timeout_ms: u32,
    pub assignment_strategy: String,
    pub trickle_interval: Duration,
}

/// `settle` plus a pseudo-random extra in `[0, spread)`, so that events do not start
/// at a fixed phase of the members' heartbeat timers (a constant settle time would
/// phase-lock t0 to the heartbeats and make the wait for the next heartbeat look
/// constant).
pub fn jittered(settle: Duration, spread: Duration, seed: u64) -> Duration {
    let spread_ns = spread.as_nanos() as u64;
    if spread_ns == 0 {
        return settle;
    }
    // splitmix64
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    settle + Duration::from_nanos(z % spread_ns)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

pub fn run(options: &RebalanceOptions) -> anyhow::Result<RebalanceResult> {
    let strategy = options
        .extra_config
        .iter()
        .rev()
        .find(|(key, _)| key == "partition.assignment.strategy")
        .map_or_else(|| "range,roundrobin".to_string(), |(_, v)| v.clone());
    if strategy.contains("cooperative") {
        bail!("partition.assignment.strategy={strategy}: only eager assignors are supported");
    }
    if options.members == 0 {
        bail!("--members must be at least 1");
    }
    let partitions = crate::admin::partition_count(&options.bootstrap, &options.topic, false)?;
    let trickle_stop = Arc::new(AtomicBool::new(false));
    let trickle = start_trickle(options, partitions, trickle_stop.clone())?;

    let mut next_id = 0;
    let mut members = Vec::new();
    let t0 = Instant::now();
    for _ in 0..options.members {
        members.push(start_member(options, next_id)?);
        next_id += 1;
    }
    let result = (|| {
        let everyone = vec![false; members.len()];
        // The first join of an empty group also waits for the broker's
        // group.initial.rebalance.delay.ms, so allow for it.
        let initial_join = wait_event(
            t0,
            &members,
            &everyone,
            options.event_timeout + Duration::from_secs(10),
        )
        .context("initial join")?;
        eprintln!(
            "{} members consuming after {:.0} ms (initial join)",
            members.len(),
            ms(initial_join.consuming)
        );
        let mut samples = Vec::new();
        let spread = Duration::from_millis(u64::from(options.heartbeat_interval_ms));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        for round in 1..=options.rounds {
            std::thread::sleep(jittered(options.settle, spread, seed ^ (2 * round as u64)));
            let existing: Vec<bool> = std::iter::repeat_n(true, members.len())
                .chain([false])
                .collect();
            let t0 = Instant::now();
            members.push(start_member(options, next_id)?);
            next_id += 1;
            let times = wait_event(t0, &members, &existing, options.event_timeout)
                .with_context(|| format!("round {round}: join"))?;
            eprintln!(
                "round {round}: join  {:>6.0} ms (noticed {:.0}, assigned {:.0})",
                ms(times.consuming),
                times.noticed.map_or(f64::NAN, ms),
                ms(times.assigned)
            );
            samples.push(EventSample {
                kind: "join",
                round,
                members_after: members.len(),
                times,
            });

            std::thread::sleep(jittered(
                options.settle,
                spread,
                seed ^ (2 * round as u64 + 1),
            ));
            let oldest = members.remove(0);
            let closed_id = oldest.id;
            let t0 = Instant::now();
            // Close on its own thread so the clock covers the group, not our join.
            let closer = std::thread::spawn(move || oldest.close());
            let existing = vec![true; members.len()];
            let times = wait_event(t0, &members, &existing, options.event_timeout)
                .with_context(|| format!("round {round}: leave of member {closed_id}"))?;
            closer
                .join()
                .map_err(|_| anyhow::anyhow!("closing member {closed_id} panicked"))??;
            eprintln!(
                "round {round}: leave {:>6.0} ms (noticed {:.0}, assigned {:.0})",
                ms(times.consuming),
                times.noticed.map_or(f64::NAN, ms),
                ms(times.assigned)
            );
            samples.push(EventSample {
                kind: "leave",
                round,
                members_after: members.len(),
                times,
            });
        }
        Ok(RebalanceResult {
            initial_join,
            samples,
            heartbeat_interval_ms: options.heartbeat_interval_ms,
            session_timeout_ms: options.session_timeout_ms,
            assignment_strategy: strategy.clone(),
            trickle_interval: options.trickle_interval,
        })
    })();
    for member in members {
        if let Err(error) = member.close() {
            eprintln!("closing a member: {error:#}");
        }
    }
    trickle_stop.store(true, Ordering::SeqCst);
    let _ = trickle.join();
    result
}

/// Summary of one event kind.
#[derive(Debug, Clone, Copy)]
pub struct KindSummary {
    pub kind: &'static str,
    pub consuming: Summary,
    pub assigned: Summary,
    pub noticed: Option<Summary>,
    /// `consuming` minus the heartbeat interval (the broker-independent floor).
    pub beyond_floor: Summary,
    /// `consuming` minus `noticed`, per sample.
    pub after_notice: Option<Summary>,
}

pub fn summarize_kind(result: &RebalanceResult, kind: &'static str) -> Option<KindSummary> {
    let samples: Vec<&EventSample> = result.samples.iter().filter(|s| s.kind == kind).collect();
    let consuming: Vec<f64> = samples.iter().map(|s| ms(s.times.consuming)).collect();
    let assigned: Vec<f64> = samples.iter().map(|s| ms(s.times.assigned)).collect();
    let noticed: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.times.noticed.map(ms))
        .collect();
    let floor = f64::from(result.heartbeat_interval_ms);
    let beyond: Vec<f64> = consuming.iter().map(|c| c - floor).collect();
    let after_notice: Vec<f64> = samples
        .iter()
        .filter_map(|s| s.times.noticed.map(|n| ms(s.times.consuming) - ms(n)))
        .collect();
    Some(KindSummary {
        kind,
        consuming: summarize(&consuming)?,
        assigned: summarize(&assigned)?,
        noticed: summarize(&noticed),
        beyond_floor: summarize(&beyond)?,
        after_notice: summarize(&after_notice),
    })
}

fn mmm(summary: Option<Summary>) -> String {
    summary.map_or_else(
        || "n/a".to_string(),
        |s| format!("{:.0} / {:.0} / {:.0}", s.min, s.median, s.max),
    )
}

/// The Markdown report: a summary per event kind, then every sample.
pub fn markdown(result: &RebalanceResult) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "assignor {}, session.timeout.ms {}, heartbeat.interval.ms {} (= the floor), trickle 1 msg / {} ms; initial join of an empty group {:.0} ms\n\n",
        result.assignment_strategy,
        result.session_timeout_ms,
        result.heartbeat_interval_ms,
        result.trickle_interval.as_millis(),
        ms(result.initial_join.consuming),
    ));
    out.push_str("| event | n | all consuming ms (min / median / max) | all assigned ms | last member noticed ms | consuming − heartbeat floor ms | consuming − noticed ms |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for kind in ["join", "leave"] {
        if let Some(s) = summarize_kind(result, kind) {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                s.kind,
                s.consuming.count,
                mmm(Some(s.consuming)),
                mmm(Some(s.assigned)),
                mmm(s.noticed),
                mmm(Some(s.beyond_floor)),
                mmm(s.after_notice),
            ));
        }
    }
    out.push_str("\n| round | event | members after | noticed ms | assigned ms | consuming ms |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for sample in &result.samples {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} |\n",
            sample.round,
            sample.kind,
            sample.members_after,
            sample
                .times
                .noticed
                .map_or_else(|| "n/a".into(), |n| format!("{:.0}", ms(n))),
            ms(sample.times.assigned),
            ms(sample.times.consuming),
        ));
    }
    out
}

/// One JSON object per sample, then one per event kind.
pub fn json_lines(result: &RebalanceResult) -> Vec<String> {
    let mut lines = Vec::new();
    for sample in &result.samples {
        let mut json = JsonObject::new("rebalance_event");
        json.str("event", sample.kind)
            .int("round", sample.round as u64)
            .int("members_after", sample.members_after as u64)
            .opt_num("noticed_ms", sample.times.noticed.map(ms))
            .num("assigned_ms", ms(sample.times.assigned))
            .num("consuming_ms", ms(sample.times.consuming));
        lines.push(json.finish());
    }
    for kind in ["join", "leave"] {
        if let Some(s) = summarize_kind(result, kind) {
            let mut json = JsonObject::new("rebalance_summary");
            json.str("event", kind)
                .int("samples", s.consuming.count as u64)
                .num("consuming_ms_min", s.consuming.min)
                .num("consuming_ms_median", s.consuming.median)
                .num("consuming_ms_max", s.consuming.max)
                .num("assigned_ms_median", s.assigned.median)
                .opt_num("noticed_ms_median", s.noticed.map(|n| n.median))
                .int(
                    "heartbeat_interval_ms",
                    u64::from(result.heartbeat_interval_ms),
                )
                .num("beyond_floor_ms_median", s.beyond_floor.median)
                .opt_num("after_notice_ms_median", s.after_notice.map(|n| n.median))
                .str("assignment_strategy", &result.assignment_strategy);
            lines.push(json.finish());
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(
        t0: Instant,
        revoke: Option<u64>,
        assign: Option<u64>,
        parts: usize,
        msg: Option<u64>,
    ) -> MemberView {
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        MemberView {
            last_revoke: revoke.map(at),
            last_assign: assign.map(at),
            assigned: parts,
            first_message_after_assign: msg.map(at),
            messages: 0,
        }
    }

    #[test]
    fn event_completes_when_everyone_is_assigned_and_consuming() {
        let base = Instant::now();
        let t0 = base + Duration::from_millis(1000);
        let views = [
            (view(base, Some(1300), Some(1500), 2, Some(1520)), true),
            (view(base, Some(1400), Some(1510), 2, Some(1600)), true),
            (view(base, None, Some(1505), 2, Some(1530)), false),
        ];
        let times = event_complete(t0, &views).unwrap();
        assert_eq!(times.noticed, Some(Duration::from_millis(400)));
        assert_eq!(times.assigned, Duration::from_millis(510));
        assert_eq!(times.consuming, Duration::from_millis(600));
    }

    #[test]
    fn an_assignment_before_t0_does_not_count() {
        let base = Instant::now();
        let t0 = base + Duration::from_millis(1000);
        let views = [
            (view(base, Some(1300), Some(1500), 2, Some(1520)), true),
            (view(base, Some(100), Some(200), 2, Some(300)), true),
        ];
        assert_eq!(event_complete(t0, &views), None);
    }

    #[test]
    fn an_assigned_member_must_have_consumed_unless_it_got_no_partitions() {
        let base = Instant::now();
        let t0 = base;
        let waiting = [(view(base, None, Some(50), 1, None), false)];
        assert_eq!(event_complete(t0, &waiting), None);
        let idle = [(view(base, None, Some(50), 0, None), false)];
        let times = event_complete(t0, &idle).unwrap();
        assert_eq!(times.consuming, Duration::from_millis(50));
        assert_eq!(times.noticed, None);
    }

    #[test]
    fn jitter_stays_within_the_spread_and_varies() {
        let settle = Duration::from_secs(1);
        let spread = Duration::from_millis(500);
        let values: Vec<Duration> = (0..100).map(|i| jittered(settle, spread, i)).collect();
        assert!(values.iter().all(|v| *v >= settle && *v < settle + spread));
        assert!(values.iter().any(|v| *v < settle + spread / 2));
        assert!(values.iter().any(|v| *v >= settle + spread / 2));
        assert_eq!(jittered(settle, Duration::ZERO, 7), settle);
    }

    #[test]
    fn summaries_subtract_the_heartbeat_floor() {
        let t = |ms: u64| Duration::from_millis(ms);
        let sample = |kind, consuming, noticed| EventSample {
            kind,
            round: 1,
            members_after: 3,
            times: EventTimes {
                noticed: Some(t(noticed)),
                assigned: t(consuming - 10),
                consuming: t(consuming),
            },
        };
        let result = RebalanceResult {
            initial_join: EventTimes {
                noticed: None,
                assigned: t(3000),
                consuming: t(3050),
            },
            samples: vec![
                sample("join", 700, 400),
                sample("join", 900, 450),
                sample("join", 800, 300),
                sample("leave", 600, 500),
            ],
            heartbeat_interval_ms: 500,
            session_timeout_ms: 6000,
            assignment_strategy: "range,roundrobin".into(),
            trickle_interval: t(2),
        };
        let join = summarize_kind(&result, "join").unwrap();
        assert_eq!(join.consuming.median, 800.0);
        assert_eq!(join.beyond_floor.median, 300.0);
        assert_eq!(join.beyond_floor.min, 200.0);
        assert_eq!(join.after_notice.unwrap().median, 450.0);
        let leave = summarize_kind(&result, "leave").unwrap();
        assert_eq!(leave.consuming.count, 1);
        assert!(summarize_kind(&result, "other").is_none());
        let text = markdown(&result);
        assert!(text.contains("| join | 3 | 700 / 800 / 900 |"));
        assert_eq!(json_lines(&result).len(), 6);
    }
}

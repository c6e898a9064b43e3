//! `tributary-bench`: a load generator for any Kafka-compatible broker, built on
//! librdkafka (the `rdkafka` crate) so the client is not the bottleneck.
//!
//! Subcommands:
//!
//! - `produce`: one producer run; msgs/s, MB/s, p50/p99/p999 latency, broker CPU/RSS.
//! - `consume`: read N messages from the beginning without a consumer group.
//! - `disk`: sequential-write bandwidth of a directory, with and without fsync, and
//!   the kernel's system CPU per GB of those writes (optionally after warming the
//!   page cache with `--warm-page-cache`).
//! - `rebalance`: consumer-group rebalance time when a member joins or leaves.
//! - `commits`: offset commits per second (and sync commit latency) in a group.
//! - `suite`: all of the above in one run, one report, PASS/FAIL against the targets.
//! - `failover`: starts a 3-broker cluster and measures, over several `kill -9`s of the
//!   partition leader, the time until acks=all writes are acknowledged again.
//! - `replication`: RF 3 acks=all on 3 brokers against RF 1 acks=1 on one broker, in the
//!   same run: producer throughput and fixed-rate latency, as ratios.
//!
//! Modules:
//!
//! - [`admin`]: topic creation/deletion and metadata through the Kafka admin API.
//! - [`produce`], [`consume`], [`disk`]: the measurements.
//! - [`procfs`]: the broker's CPU time and RSS from `/proc/<pid>`.
//! - [`payload`]: pseudo-random message bodies.
//! - [`report`]: result types, Markdown and JSON output, target checks.
//! - [`suite`]: the whole run.
//! - [`rebalance`], [`commits`]: the consumer-group measurements.
//! - [`cluster`]: broker processes on loopback (standalone or a quorum), kill, restart.
//! - [`wire`]: a raw Metadata request to one chosen broker (leader, ISR, controller).
//! - [`failover`], [`replication`]: the cluster measurements.
//! - [`stats`]: min / median / max and percentiles.
//! - [`units`]: size parsing (`512MiB`) and rate units.

mod admin;
mod cluster;
mod commits;
mod consume;
mod disk;
mod failover;
mod payload;
mod procfs;
mod produce;
mod rebalance;
mod replication;
mod report;
mod stats;
mod suite;
mod units;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::procfs::BrokerProbe;
use crate::produce::{Acks, Compression};
use crate::report::RunResult;

#[derive(Debug, Parser)]
#[command(name = "tributary-bench", version, about, long_about = None)]
struct Cli {
    /// Print one JSON object per result line instead of Markdown tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Produce messages and report throughput, latency and broker cost.
    Produce(ProduceArgs),
    /// Read messages from the beginning of a topic (no consumer group).
    Consume(ConsumeArgs),
    /// Measure the sequential-write bandwidth of a directory.
    Disk(DiskArgs),
    /// Run disk, produce and consume benchmarks and check the targets.
    Suite(SuiteArgs),
    /// Consumer-group rebalance time when a member joins or leaves.
    Rebalance(RebalanceArgs),
    /// Offset commits per second (and sync commit latency) from one group member.
    Commits(CommitsArgs),
    /// Start 3 brokers and time acks=all writes across `kill -9` of the partition leader.
    Failover(FailoverArgs),
    /// Throughput and latency of RF 3 acks=all (3 brokers) against RF 1 acks=1 (1 broker).
    Replication(ReplicationArgs),
}

/// Where the brokers of `failover` and `replication` come from and run.
#[derive(Debug, Args)]
struct LocalBrokerArgs {
    /// The `tributary` executable; by default the one next to this benchmark's executable.
    #[arg(long, env = "TRIBUTARY_BIN")]
    broker_bin: Option<PathBuf>,
    /// Directory in which each run's broker data directories are created (and removed).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    data_dir: PathBuf,
    /// Keep the data directories and broker logs after the run.
    #[arg(long)]
    keep_data: bool,
    /// A broker property KEY=VALUE for every broker, after the defaults; repeatable.
    #[arg(long = "override", value_name = "KEY=VALUE", value_parser = parse_override)]
    overrides: Vec<String>,
    /// Extra librdkafka property for the producers, KEY=VALUE; repeatable, applied last.
    #[arg(short = 'X', long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    extra_config: Vec<(String, String)>,
}

#[derive(Debug, Args)]
struct FailoverArgs {
    #[command(flatten)]
    brokers: LocalBrokerArgs,
    /// Number of kills; the killed broker is restarted and back in the ISR before the next.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Gap between two messages of the steady stream.
    #[arg(long, default_value_t = 2)]
    interval_ms: u64,
    /// Payload size of each message.
    #[arg(long, value_parser = units::parse_bytes, default_value = "100")]
    message_bytes: u64,
    /// librdkafka `linger.ms` of the producer.
    #[arg(long, default_value_t = 1)]
    linger_ms: u32,
    /// Messages acknowledged before each kill.
    #[arg(long, default_value_t = 250)]
    warmup_messages: u64,
    /// Give up on one failover after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    trial_timeout_s: f64,
    /// Bound on the restart of the killed broker until the ISR is full again.
    #[arg(long, default_value_t = 120.0)]
    recovery_timeout_s: f64,
    /// Topic name (with --kill-controller, the prefix of one topic per trial).
    #[arg(long, default_value = "failover")]
    topic: String,
    /// Kill the active controller: each trial creates a fresh topic whose preferred
    /// leader is the current controller, so the kill also costs a Raft election.
    #[arg(long)]
    kill_controller: bool,
}

#[derive(Debug, Args)]
struct ReplicationArgs {
    #[command(flatten)]
    brokers: LocalBrokerArgs,
    /// Rounds; each runs every measurement once per setup, alternating their order.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Messages of each throughput run.
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    #[arg(long, value_parser = units::parse_bytes, default_value = "1KiB")]
    message_bytes: u64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Rate of the latency runs, msgs/s.
    #[arg(long, default_value_t = 2_000.0)]
    rate: f64,
    /// Length of each latency run, seconds.
    #[arg(long, default_value_t = 10.0)]
    latency_duration_s: f64,
    /// librdkafka `linger.ms` of the throughput runs.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// librdkafka `linger.ms` of the latency runs.
    #[arg(long, default_value_t = 1)]
    latency_linger_ms: u32,
    #[command(flatten)]
    warm: WarmArgs,
}

#[derive(Debug, Args)]
struct RebalanceArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    topic: String,
    /// Create the topic first (replication factor 1); an existing topic is kept.
    #[arg(long)]
    create_topic: bool,
    /// Partitions for --create-topic.
    #[arg(long, default_value_t = 6, requires = "create_topic")]
    partitions: i32,
    /// Consumer group id; a fresh one per run by default.
    #[arg(long)]
    group: Option<String>,
    /// Members in the steady state (each round adds one, then closes the oldest).
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Rounds; each measures one join and one leave.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// librdkafka `session.timeout.ms` of every member.
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u32,
    /// librdkafka `heartbeat.interval.ms` of every member.
    #[arg(long, default_value_t = 500)]
    heartbeat_interval_ms: u32,
    /// Gap between two trickle messages (round-robin over the partitions).
    #[arg(long, default_value_t = 2)]
    trickle_interval_ms: u64,
    /// Pause between two events, in the steady state.
    #[arg(long, default_value_t = 1.0)]
    settle_s: f64,
    /// Give up on an event after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    event_timeout_s: f64,
}

#[derive(Debug, Args)]
struct CommitsArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    /// Number of commits (each one OffsetCommit covering every assigned partition).
    #[arg(long, default_value_t = 20_000)]
    commits: u64,
    /// Create the topic with this many partitions first (an existing topic is kept).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Commit with CommitMode::Sync, one at a time, and report latency percentiles.
    #[arg(long)]
    sync: bool,
    /// Async only: most commits outstanding at once.
    #[arg(long, default_value_t = 64)]
    max_in_flight: u64,
}

/// Options shared by every subcommand that talks to a broker.
#[derive(Debug, Args)]
struct ClientArgs {
    /// Any Kafka-compatible broker, HOST:PORT[,HOST:PORT...].
    #[arg(
        long,
        env = "TRIBUTARY_BENCH_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Process id of the broker, to report its CPU seconds and RSS from /proc.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Extra librdkafka property, KEY=VALUE; repeatable, applied last.
    #[arg(short = 'X', long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    extra_config: Vec<(String, String)>,
}

impl ClientArgs {
    fn broker_probe(&self) -> anyhow::Result<Option<BrokerProbe>> {
        self.broker_pid.map(BrokerProbe::new).transpose()
    }
}

/// librdkafka producer tuning shared by `produce` and `suite`.
#[derive(Debug, Args)]
struct ProducerTuning {
    /// librdkafka `compression.type` for produced batches.
    #[arg(long, value_enum, default_value = "none")]
    compression: Compression,
    /// librdkafka `linger.ms`: how long to wait to fill a batch.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// librdkafka `batch.size` (e.g. 1MiB); librdkafka's default when absent.
    #[arg(long, value_parser = units::parse_bytes)]
    batch_size: Option<u64>,
}

#[derive(Debug, Args)]
struct ProduceArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    topic: String,
    /// Create the topic first (replication factor 1); an existing topic is kept.
    #[arg(long)]
    create_topic: bool,
    /// Partitions for --create-topic.
    #[arg(long, default_value_t = 1, requires = "create_topic")]
    partitions: i32,
    /// Payload size of each message (e.g. 100, 1KiB).
    #[arg(long, value_parser = units::parse_bytes, default_value = "1024")]
    message_bytes: u64,
    /// Number of messages to produce (with --duration-s, whichever ends first).
    #[arg(long, required_unless_present = "duration_s")]
    messages: Option<u64>,
    /// Produce for this many seconds.
    #[arg(long)]
    duration_s: Option<f64>,
    #[arg(long, value_enum, default_value = "1")]
    acks: Acks,
    /// Fixed send rate in messages per second, for latency runs; unlimited if absent.
    #[arg(long)]
    rate: Option<f64>,
    #[command(flatten)]
    tuning: ProducerTuning,
}

#[derive(Debug, Args)]
struct ConsumeArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    topic: String,
    /// Number of messages to read.
    #[arg(long)]
    messages: u64,
    /// Fail when no message arrives for this many seconds.
    #[arg(long, default_value_t = 15.0)]
    idle_timeout_s: f64,
}

#[derive(Debug, Args)]
struct DiskArgs {
    /// Directory to measure (the broker's data directory).
    #[arg(long)]
    dir: PathBuf,
    /// How much to write in each pass.
    #[arg(long, value_parser = units::parse_bytes, default_value = "1GiB")]
    bytes: u64,
    #[command(flatten)]
    warm: WarmArgs,
}

/// `--warm-page-cache`, shared by `disk` and `suite`.
#[derive(Debug, Args)]
struct WarmArgs {
    /// Before anything else, write this many bytes of zeros to a temporary file in the
    /// data directory (1 MiB writes, no fsync) and delete it, so a fresh VM's guest
    /// memory is touched once and later figures show the steady state; 0 = off.
    #[arg(long, value_parser = units::parse_bytes, default_value = "0", value_name = "SIZE")]
    warm_page_cache: u64,
}

#[derive(Debug, Args)]
struct SuiteArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Prefix of the topics the suite creates (one per run, suffixed with the time).
    #[arg(long, default_value = "bench")]
    topic_prefix: String,
    /// The broker's data directory, for the disk bandwidth measurement.
    #[arg(long)]
    data_dir: PathBuf,
    #[command(flatten)]
    warm: WarmArgs,
    /// Bytes written by the disk measurement.
    #[arg(long, value_parser = units::parse_bytes, default_value = "1GiB")]
    disk_bytes: u64,
    /// Bytes to produce in each 1 KiB run.
    #[arg(long, value_parser = units::parse_bytes, default_value = "512MiB")]
    total_bytes: u64,
    /// Bytes to produce in each 100 B run.
    #[arg(long, value_parser = units::parse_bytes, default_value = "128MiB")]
    small_total_bytes: u64,
    /// Upper bound, in seconds, on each produce run.
    #[arg(long, default_value_t = 15.0)]
    duration_s: f64,
    /// Partitions of the extra 1 KiB acks=1 run; 0 skips it.
    #[arg(long, default_value_t = 4)]
    multi_partitions: i32,
    /// Seconds of each fixed-rate latency run (at half the measured rate); 0 skips them.
    #[arg(long, default_value_t = 5.0)]
    latency_duration_s: f64,
    /// Keep the suite's topics instead of deleting them at the end.
    #[arg(long)]
    keep_topics: bool,
    /// Do not call CreateTopics; rely on the broker auto-creating topics on first
    /// use (the partition count is then the broker's default).
    #[arg(long)]
    no_create_topics: bool,
    #[command(flatten)]
    tuning: ProducerTuning,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// A broker `--override`: `key=value` with a non-empty key, passed through as written.
fn parse_override(text: &str) -> Result<String, String> {
    parse_key_value(text).map(|(key, value)| format!("{key}={}", value.trim()))
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag} {value} is not a duration"))
}

/// Zero means "skip".
fn optional_seconds(value: f64, flag: &str) -> anyhow::Result<Option<Duration>> {
    Ok(Some(seconds(value, flag)?).filter(|d| !d.is_zero()))
}

fn message_bytes(value: u64) -> anyhow::Result<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&bytes| bytes > 0)
        .with_context(|| format!("--message-bytes {value} is out of range"))
}

fn print_run(run: &RunResult, json: bool) {
    if json {
        println!("{}", run.to_json(None));
    } else {
        println!("{}", report::runs_table(std::slice::from_ref(run), None));
        if let Some(error) = &run.first_error {
            println!("first delivery error: {error}");
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let json = cli.json;
    match cli.command {
        Command::Produce(args) => {
            let broker = args.client.broker_probe()?;
            if args.create_topic {
                admin::create_topic(&args.client.bootstrap, &args.topic, args.partitions)?;
            }
            let size = message_bytes(args.message_bytes)?;
            let options = produce::ProduceOptions {
                label: format!(
                    "produce {} acks={}",
                    units::format_bytes(args.message_bytes),
                    args.acks.as_str()
                ),
                bootstrap: args.client.bootstrap,
                topic: args.topic,
                message_bytes: size,
                messages: args.messages,
                duration: args
                    .duration_s
                    .map(|s| seconds(s, "--duration-s"))
                    .transpose()?,
                acks: args.acks,
                compression: args.tuning.compression,
                rate_msgs_per_s: args.rate,
                linger_ms: args.tuning.linger_ms,
                batch_bytes: args.tuning.batch_size,
                extra_config: args.client.extra_config,
            };
            let result = produce::run(&options, broker.as_ref())?;
            print_run(&result, json);
            if result.errors > 0 {
                eprintln!("error: {} messages failed delivery", result.errors);
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Consume(args) => {
            let broker = args.client.broker_probe()?;
            let options = consume::ConsumeOptions {
                label: "consume".into(),
                bootstrap: args.client.bootstrap,
                topic: args.topic,
                messages: args.messages,
                idle_timeout: seconds(args.idle_timeout_s, "--idle-timeout-s")?,
                extra_config: args.client.extra_config,
            };
            let result = consume::run(&options, broker.as_ref())?;
            print_run(&result, json);
        }
        Command::Disk(args) => {
            if args.warm.warm_page_cache > 0 {
                let warm = disk::warm_page_cache(&args.dir, args.warm.warm_page_cache)?;
                if json {
                    println!("{}", warm.to_json());
                } else {
                    println!("{}", report::warm_table(&warm));
                }
            }
            let result = disk::measure(&args.dir, args.bytes)?;
            if json {
                println!("{}", result.to_json());
            } else {
                println!("{}", report::disk_table(&result));
            }
        }
        Command::Suite(args) => {
            let options = suite::SuiteOptions {
                broker: args.client.broker_probe()?,
                bootstrap: args.client.bootstrap,
                topic_prefix: args.topic_prefix,
                data_dir: args.data_dir,
                warm_page_cache_bytes: args.warm.warm_page_cache,
                disk_bytes: args.disk_bytes,
                bytes_1k: args.total_bytes,
                bytes_100: args.small_total_bytes,
                run_duration_max: seconds(args.duration_s, "--duration-s")?,
                multi_partitions: Some(args.multi_partitions).filter(|&p| p > 0),
                latency_duration: optional_seconds(
                    args.latency_duration_s,
                    "--latency-duration-s",
                )?,
                compression: args.tuning.compression,
                linger_ms: args.tuning.linger_ms,
                batch_bytes: args.tuning.batch_size,
                extra_config: args.client.extra_config,
                keep_topics: args.keep_topics,
                create_topics: !args.no_create_topics,
                json,
            };
            suite::run(&options)?;
        }
        Command::Rebalance(args) => {
            if args.create_topic {
                admin::create_topic(&args.client.bootstrap, &args.topic, args.partitions)?;
            }
            let options = rebalance::RebalanceOptions {
                group: args
                    .group
                    .unwrap_or_else(|| format!("tributary-bench-rebalance-{}", std::process::id())),
                bootstrap: args.client.bootstrap,
                topic: args.topic,
                members: args.members,
                rounds: args.rounds,
                session_timeout_ms: args.session_timeout_ms,
                heartbeat_interval_ms: args.heartbeat_interval_ms,
                trickle_interval: Duration::from_millis(args.trickle_interval_ms.max(1)),
                settle: seconds(args.settle_s, "--settle-s")?,
                event_timeout: seconds(args.event_timeout_s, "--event-timeout-s")?,
                extra_config: args.client.extra_config,
            };
            let result = rebalance::run(&options)?;
            if json {
                for line in rebalance::json_lines(&result) {
                    println!("{line}");
                }
            } else {
                println!("{}", rebalance::markdown(&result));
            }
        }
        Command::Commits(args) => {
            if args.partitions > 0 {
                admin::create_topic(&args.client.bootstrap, &args.topic, args.partitions)?;
            }
            let options = commits::CommitOptions {
                bootstrap: args.client.bootstrap,
                topic: args.topic,
                group: args.group,
                commits: args.commits,
                sync: args.sync,
                max_in_flight: args.max_in_flight.max(1),
                assign_timeout: Duration::from_secs(30),
                extra_config: args.client.extra_config,
            };
            let result = commits::run(&options)?;
            if json {
                println!("{}", commits::json(&result));
            } else {
                println!("{}", commits::markdown(std::slice::from_ref(&result)));
            }
            if result.errors > 0 {
                eprintln!(
                    "error: {} commits failed; first: {}",
                    result.errors,
                    result.first_error.as_deref().unwrap_or("?")
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Failover(args) => {
            let interval = Duration::from_millis(args.interval_ms);
            if interval.is_zero() {
                anyhow::bail!("--interval-ms must be at least 1");
            }
            let options = failover::FailoverOptions {
                broker_binary: cluster::find_broker_binary(args.brokers.broker_bin.as_deref())?,
                data_parent: args.brokers.data_dir,
                keep_data: args.brokers.keep_data,
                broker_overrides: args.brokers.overrides,
                topic: args.topic,
                trials: args.trials,
                send_interval: interval,
                message_bytes: message_bytes(args.message_bytes)?,
                linger_ms: args.linger_ms,
                warmup_messages: args.warmup_messages,
                trial_timeout: seconds(args.trial_timeout_s, "--trial-timeout-s")?,
                recovery_timeout: seconds(args.recovery_timeout_s, "--recovery-timeout-s")?,
                extra_config: args.brokers.extra_config,
                kill_controller: args.kill_controller,
            };
            let failover::Outcome { trials, error } = failover::run(&options);
            if json {
                for line in failover::json_lines(&trials) {
                    println!("{line}");
                }
            } else {
                println!("{}", failover::markdown(&options, &trials));
            }
            if let Some(error) = error {
                eprintln!(
                    "error: the run stopped after {} of {} trials: {error:#}",
                    trials.len(),
                    options.trials
                );
                return Ok(ExitCode::FAILURE);
            }
            let failed: u64 = trials.iter().map(|t| t.times.failed).sum();
            let stuck = trials.iter().filter(|t| t.times.failover.is_none()).count();
            if failed > 0 || stuck > 0 {
                eprintln!(
                    "error: {failed} messages failed delivery; {stuck} trials saw no failover"
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Replication(args) => {
            if !(args.rate.is_finite() && args.rate > 0.0) {
                anyhow::bail!("--rate must be a positive number of messages per second");
            }
            let options = replication::ReplicationOptions {
                broker_binary: cluster::find_broker_binary(args.brokers.broker_bin.as_deref())?,
                data_parent: args.brokers.data_dir,
                keep_data: args.brokers.keep_data,
                broker_overrides: args.brokers.overrides,
                rounds: args.rounds.max(1),
                messages: args.messages,
                message_bytes: message_bytes(args.message_bytes)?,
                partitions: args.partitions.max(1),
                rate_msgs_per_s: args.rate,
                latency_duration: seconds(args.latency_duration_s, "--latency-duration-s")?,
                linger_ms: args.linger_ms,
                latency_linger_ms: args.latency_linger_ms,
                warm_page_cache_bytes: args.warm.warm_page_cache,
                extra_config: args.brokers.extra_config,
                json,
            };
            let runs = replication::run(&options)?;
            if json {
                for line in replication::json_lines(&runs) {
                    println!("{line}");
                }
            } else {
                println!("{}", replication::markdown(&options, &runs));
            }
            let failed: u64 = runs.iter().map(|r| r.result.errors).sum();
            if failed > 0 {
                for run in runs.iter().filter(|r| r.result.errors > 0) {
                    eprintln!(
                        "error: {}: {} messages failed delivery; first: {}",
                        run.result.label,
                        run.result.errors,
                        run.result.first_error.as_deref().unwrap_or("?")
                    );
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn produce_needs_messages_or_duration() {
        let base = ["tributary-bench", "produce", "--topic", "t"];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from([&base[..], &["--messages", "10"]].concat()).is_ok());
        assert!(Cli::try_parse_from([&base[..], &["--duration-s", "1.5"]].concat()).is_ok());
    }

    #[test]
    fn produce_parses_sizes_acks_and_passthrough_config() {
        let cli = Cli::try_parse_from([
            "tributary-bench",
            "--json",
            "produce",
            "--bootstrap",
            "kafka:9092",
            "--topic",
            "t",
            "--messages",
            "5",
            "--message-bytes",
            "1KiB",
            "--acks",
            "all",
            "--compression",
            "zstd",
            "--batch-size",
            "1MiB",
            "-X",
            "socket.nagle.disable=true",
        ])
        .unwrap();
        assert!(cli.json);
        let Command::Produce(args) = cli.command else {
            panic!("expected produce");
        };
        assert_eq!(args.message_bytes, 1024);
        assert_eq!(args.acks, Acks::All);
        assert_eq!(args.tuning.compression, Compression::Zstd);
        assert_eq!(args.tuning.batch_size, Some(1 << 20));
        assert_eq!(args.client.bootstrap, "kafka:9092");
        assert_eq!(
            args.client.extra_config,
            [("socket.nagle.disable".to_string(), "true".to_string())]
        );
    }

    #[test]
    fn warm_page_cache_is_off_by_default_and_takes_a_size() {
        let disk = |extra: &[&str]| {
            let cli = Cli::try_parse_from(
                [&["tributary-bench", "disk", "--dir", "/tmp"][..], extra].concat(),
            )
            .unwrap();
            let Command::Disk(args) = cli.command else {
                panic!("expected disk");
            };
            args.warm.warm_page_cache
        };
        assert_eq!(disk(&[]), 0);
        assert_eq!(disk(&["--warm-page-cache", "16GiB"]), 16 << 30);
        let cli = Cli::try_parse_from([
            "tributary-bench",
            "suite",
            "--data-dir",
            "/tmp/d",
            "--warm-page-cache",
            "1GiB",
        ])
        .unwrap();
        let Command::Suite(args) = cli.command else {
            panic!("expected suite");
        };
        assert_eq!(args.warm.warm_page_cache, 1 << 30);
    }

    #[test]
    fn group_subcommands_parse_with_defaults() {
        let cli = Cli::try_parse_from([
            "tributary-bench",
            "rebalance",
            "--topic",
            "t",
            "--create-topic",
        ])
        .unwrap();
        let Command::Rebalance(args) = cli.command else {
            panic!("expected rebalance");
        };
        assert_eq!((args.members, args.rounds, args.partitions), (3, 5, 6));
        assert_eq!(
            (args.session_timeout_ms, args.heartbeat_interval_ms),
            (6000, 500)
        );
        let cli = Cli::try_parse_from([
            "tributary-bench",
            "commits",
            "--topic",
            "t",
            "--group",
            "g",
            "--sync",
        ])
        .unwrap();
        let Command::Commits(args) = cli.command else {
            panic!("expected commits");
        };
        assert!(args.sync);
        assert_eq!((args.commits, args.partitions), (20_000, 6));
    }

    #[test]
    fn cluster_subcommands_parse_with_defaults() {
        let cli = Cli::try_parse_from(["tributary-bench", "failover", "--trials", "5"]).unwrap();
        let Command::Failover(args) = cli.command else {
            panic!("expected failover");
        };
        assert_eq!((args.trials, args.interval_ms, args.linger_ms), (5, 2, 1));
        assert_eq!(args.message_bytes, 100);
        assert!(args.brokers.overrides.is_empty());
        let cli = Cli::try_parse_from([
            "tributary-bench",
            "replication",
            "--override",
            "broker.session.timeout.ms = 900",
            "--broker-bin",
            "/x/tributary",
            "-X",
            "socket.nagle.disable=true",
        ])
        .unwrap();
        let Command::Replication(args) = cli.command else {
            panic!("expected replication");
        };
        assert_eq!(
            (args.rounds, args.messages, args.partitions),
            (3, 200_000, 3)
        );
        assert_eq!((args.rate, args.latency_duration_s), (2_000.0, 10.0));
        assert_eq!(args.message_bytes, 1024);
        assert_eq!(args.brokers.overrides, ["broker.session.timeout.ms=900"]);
        assert_eq!(args.brokers.broker_bin, Some(PathBuf::from("/x/tributary")));
        assert_eq!(args.brokers.extra_config.len(), 1);
        assert!(Cli::try_parse_from(["tributary-bench", "failover", "--override", "x"]).is_err());
    }

    #[test]
    fn key_value_needs_an_equals_sign_and_a_key() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn zero_seconds_skips_and_negative_is_an_error() {
        assert_eq!(optional_seconds(0.0, "--x").unwrap(), None);
        assert_eq!(
            optional_seconds(2.0, "--x").unwrap(),
            Some(Duration::from_secs(2))
        );
        assert!(seconds(-1.0, "--x").is_err());
    }
}

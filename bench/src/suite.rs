//! `suite`: every measurement the issue asks for, in one process and one run, ending
//! in one report.
//!
//! ```text
//!  [warm the page cache] ─► broker RSS idle
//!    ─► disk (fsync, page cache, kernel sys s/GB) ─► produce {100 B, 1 KiB} × {acks=1, all}
//!    ─► produce 1 KiB × N partitions ─► consume the 1 KiB acks=1 topic
//!    ─► fixed-rate latency runs (1 KiB, half the measured rate) ─► RSS after load
//!    ─► delete the topics ─► tables + PASS/FAIL against the targets
//! ```
//!
//! The disk step's page-cache pass also yields the kernel's system CPU per GB for a
//! page-cache write; the report subtracts it from the broker's CPU per GB (an
//! informational row) so the broker's own cost can be read apart from the kernel's.
//!
//! Each produce run writes a fresh topic, sized by bytes and capped by time, so the
//! whole suite finishes in bounded time (about two minutes with the defaults).

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::bail;

use crate::consume::{self, ConsumeOptions};
use crate::disk;
use crate::procfs::BrokerProbe;
use crate::produce::{self, Acks, Compression, ProduceOptions};
use crate::report::{self, RunResult, TargetInputs};
use crate::units::{format_bytes, MIB};

/// What `suite` was asked to do.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub bootstrap: String,
    pub topic_prefix: String,
    pub data_dir: PathBuf,
    /// Bytes of zeros to write and delete in `data_dir` before anything else; 0 = off.
    pub warm_page_cache_bytes: u64,
    pub broker: Option<BrokerProbe>,
    pub disk_bytes: u64,
    /// Bytes to produce in each 1 KiB run.
    pub bytes_1k: u64,
    /// Bytes to produce in each 100 B run.
    pub bytes_100: u64,
    /// Upper bound on the length of each produce run.
    pub run_duration_max: Duration,
    /// Partition count of the extra 1 KiB acks=1 run; `None` skips it.
    pub multi_partitions: Option<i32>,
    /// Length of each fixed-rate latency run; `None` skips them.
    pub latency_duration: Option<Duration>,
    pub compression: Compression,
    pub linger_ms: u32,
    pub batch_bytes: Option<u64>,
    pub extra_config: Vec<(String, String)>,
    pub keep_topics: bool,
    /// Create each topic through `CreateTopics`; when false, rely on the broker
    /// auto-creating topics on first use (for brokers without the admin API).
    pub create_topics: bool,
    pub json: bool,
}

/// Runs the suite and prints its report. Fails only on errors (unreachable broker,
/// delivery failures), never on a missed target.
pub fn run(options: &SuiteOptions) -> anyhow::Result<()> {
    let broker = options.broker.as_ref();
    let warm = if options.warm_page_cache_bytes > 0 {
        progress(&format!(
            "warming the page cache: writing and deleting {} in {}",
            format_bytes(options.warm_page_cache_bytes),
            options.data_dir.display()
        ));
        let warm = disk::warm_page_cache(&options.data_dir, options.warm_page_cache_bytes)?;
        progress(&format!(
            "warm-up: {:.1} s, {:.2} s system CPU",
            warm.elapsed_s, warm.sys_s
        ));
        Some(warm)
    } else {
        None
    };
    let rss_idle_bytes = broker.map(|b| b.memory()).transpose()?.map(|m| m.rss_bytes);

    progress(&format!(
        "disk: writing {} to {}",
        format_bytes(options.disk_bytes),
        options.data_dir.display()
    ));
    let disk = disk::measure(&options.data_dir, options.disk_bytes)?;
    let disk_fsync = Some(disk.fsync_mb_per_s);

    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut topics: Vec<String> = Vec::new();
    let produce_options =
        |label: String, message_bytes: usize, bytes: u64, acks: Acks, topic: String| {
            ProduceOptions {
                label,
                bootstrap: options.bootstrap.clone(),
                topic,
                message_bytes,
                messages: Some(bytes.div_ceil(message_bytes as u64)),
                duration: Some(options.run_duration_max),
                acks,
                compression: options.compression,
                rate_msgs_per_s: None,
                linger_ms: options.linger_ms,
                batch_bytes: options.batch_bytes,
                extra_config: options.extra_config.clone(),
            }
        };
    let produce_in = |topics: &mut Vec<String>,
                      opts: ProduceOptions,
                      partitions: i32|
     -> anyhow::Result<RunResult> {
        if options.create_topics {
            crate::admin::create_topic(&options.bootstrap, &opts.topic, partitions)?;
        }
        topics.push(opts.topic.clone());
        progress(&format!("{}: producing to {}", opts.label, opts.topic));
        let result = produce::run(&opts, broker)?;
        progress(&format!(
            "{}: {:.0} msgs/s, {:.1} MB/s, {} errors",
            result.label, result.msgs_per_s, result.mb_per_s, result.errors
        ));
        Ok(result)
    };

    let mut runs: Vec<RunResult> = Vec::new();
    for (message_bytes, bytes) in [(100usize, options.bytes_100), (1024, options.bytes_1k)] {
        for acks in [Acks::Leader, Acks::All] {
            let label = format!(
                "produce {} acks={}",
                format_bytes(message_bytes as u64),
                acks.as_str()
            );
            let topic = format!(
                "{}-{message_bytes}b-acks{}-{run_id}",
                options.topic_prefix,
                acks.as_str()
            );
            runs.push(produce_in(
                &mut topics,
                produce_options(label, message_bytes, bytes, acks, topic),
                1,
            )?);
        }
    }
    // Indexes into `runs` of the 1 KiB single-partition runs.
    let (kib_acks1, kib_acks_all) = (2, 3);

    if let Some(partitions) = options.multi_partitions {
        let label = format!("produce 1 KiB acks=1 × {partitions} partitions");
        let topic = format!(
            "{}-1024b-acks1-p{partitions}-{run_id}",
            options.topic_prefix
        );
        runs.push(produce_in(
            &mut topics,
            produce_options(label, 1024, options.bytes_1k, Acks::Leader, topic),
            partitions,
        )?);
    }

    let consume_source = runs[kib_acks1].clone();
    progress(&format!("consume: reading {} back", consume_source.topic));
    let consumed = consume::run(
        &ConsumeOptions {
            label: "consume 1 KiB (acks=1 topic)".into(),
            bootstrap: options.bootstrap.clone(),
            topic: consume_source.topic.clone(),
            messages: consume_source.messages,
            idle_timeout: Duration::from_secs(15),
            extra_config: options.extra_config.clone(),
        },
        broker,
    )?;
    progress(&format!(
        "consume: {:.0} msgs/s, {:.1} MB/s",
        consumed.msgs_per_s, consumed.mb_per_s
    ));
    runs.push(consumed);
    let consume_index = runs.len() - 1;

    if let Some(duration) = options.latency_duration {
        for index in [kib_acks1, kib_acks_all] {
            let source = &runs[index];
            let rate = (source.msgs_per_s / 2.0).max(1.0);
            let acks = if index == kib_acks1 {
                Acks::Leader
            } else {
                Acks::All
            };
            let label = format!("latency 1 KiB acks={} @ {rate:.0} msgs/s", acks.as_str());
            let topic = format!(
                "{}-1024b-acks{}-latency-{run_id}",
                options.topic_prefix,
                acks.as_str()
            );
            let mut opts = produce_options(label, 1024, u64::MAX / 2, acks, topic);
            opts.messages = None;
            opts.duration = Some(duration);
            opts.rate_msgs_per_s = Some(rate);
            let result = produce_in(&mut topics, opts, 1)?;
            runs.push(result);
        }
    }

    let rss_after_bytes = broker.map(|b| b.memory()).transpose()?;
    if !options.keep_topics {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(error) = crate::admin::delete_topics(&options.bootstrap, &names) {
            eprintln!("warning: could not delete the suite's topics: {error:#}");
        }
    }

    let checks = report::check_targets(&TargetInputs {
        disk_fsync_mb_per_s: disk_fsync,
        produce_1k: vec![&runs[kib_acks1], &runs[kib_acks_all]],
        consume: Some((&runs[consume_index], &runs[kib_acks1])),
        rss_idle_bytes,
        page_cache_sys_s_per_gb: disk.cached_sys_s_per_gb(),
        rss_peak_under_load_bytes: runs
            .iter()
            .filter_map(|r| r.broker.map(|b| b.rss_peak_bytes))
            .max(),
    });
    let hwm_bytes = rss_after_bytes.map(|m| m.hwm_bytes);
    let rss_after_bytes = rss_after_bytes.map(|m| m.rss_bytes);

    if options.json {
        if let Some(warm) = &warm {
            println!("{}", warm.to_json());
        }
        println!("{}", disk.to_json());
        for run in &runs {
            println!("{}", run.to_json(disk_fsync));
        }
        for check in &checks {
            println!("{}", check.to_json());
        }
        let mut summary = report::JsonObject::new("suite");
        summary
            .str("bootstrap", &options.bootstrap)
            .opt_int("broker_rss_idle_bytes", rss_idle_bytes)
            .opt_int("broker_rss_after_bytes", rss_after_bytes)
            .opt_int("broker_vm_hwm_bytes", hwm_bytes)
            .int("errors", runs.iter().map(|r| r.errors).sum())
            .bool(
                "no_target_failed",
                !checks.iter().any(|c| c.verdict == report::Verdict::Fail),
            );
        println!("{}", summary.finish());
    } else {
        println!(
            "## Tributary benchmark suite against {}\n",
            options.bootstrap
        );
        if let Some(warm) = &warm {
            println!("{}", report::warm_table(warm));
        }
        println!("{}", report::disk_table(&disk));
        println!("{}", report::runs_table(&runs, disk_fsync));
        let mib =
            |b: Option<u64>| b.map_or_else(|| "-".into(), |b| format!("{:.1} MiB", b as f64 / MIB));
        println!(
            "Broker RSS: idle before load {}, after load {}, lifetime peak (VmHWM) {}.\n",
            mib(rss_idle_bytes),
            mib(rss_after_bytes),
            mib(hwm_bytes)
        );
        println!("{}", report::targets_table(&checks));
    }

    let failed: Vec<&RunResult> = runs.iter().filter(|r| r.errors > 0).collect();
    if !failed.is_empty() {
        for run in &failed {
            eprintln!(
                "{}: {} messages failed delivery (first: {})",
                run.label,
                run.errors,
                run.first_error.as_deref().unwrap_or("not acknowledged")
            );
        }
        bail!("{} run(s) had delivery failures", failed.len());
    }
    Ok(())
}

fn progress(message: &str) {
    eprintln!("[suite] {message}");
}

#[cfg(test)]
mod tests {
    //! End-to-end runs against librdkafka's in-process mock cluster, which speaks the
    //! Kafka protocol well enough to exercise the producer, the group-less consumer and
    //! the admin client without a real broker.

    use super::*;
    use rdkafka::mocking::MockCluster;

    fn produce_options(bootstrap: &str, topic: &str, acks: Acks) -> ProduceOptions {
        ProduceOptions {
            label: "test".into(),
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            message_bytes: 100,
            messages: Some(2_000),
            duration: None,
            acks,
            compression: Compression::None,
            rate_msgs_per_s: None,
            linger_ms: 5,
            batch_bytes: None,
            extra_config: Vec::new(),
        }
    }

    #[test]
    fn produce_then_consume_round_trips_through_a_mock_cluster() {
        let cluster = MockCluster::new(1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        cluster.create_topic("rt", 2, 1).unwrap();
        let me = BrokerProbe::new(std::process::id()).unwrap();

        let produced =
            produce::run(&produce_options(&bootstrap, "rt", Acks::All), Some(&me)).unwrap();
        assert_eq!(produced.messages, 2_000);
        assert_eq!(produced.bytes, 200_000);
        assert_eq!(produced.errors, 0);
        assert_eq!(produced.partitions, 2);
        assert!(produced.latency.is_some());
        assert!(produced.broker.is_some());

        let consumed = consume::run(
            &ConsumeOptions {
                label: "test".into(),
                bootstrap: bootstrap.clone(),
                topic: "rt".into(),
                messages: 2_000,
                idle_timeout: Duration::from_secs(10),
                extra_config: Vec::new(),
            },
            None,
        )
        .unwrap();
        assert_eq!(consumed.messages, 2_000);
        assert_eq!(consumed.bytes, 200_000);
    }

    #[test]
    fn fixed_rate_run_takes_about_the_scheduled_time() {
        let cluster = MockCluster::new(1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        cluster.create_topic("rate", 1, 1).unwrap();
        let mut options = produce_options(&bootstrap, "rate", Acks::Leader);
        options.messages = Some(200);
        options.rate_msgs_per_s = Some(1_000.0);
        let result = produce::run(&options, None).unwrap();
        assert_eq!(result.messages, 200);
        assert!(result.elapsed_s >= 0.19, "elapsed {}", result.elapsed_s);
    }

    #[test]
    fn the_whole_suite_runs_against_a_mock_cluster() {
        let cluster = MockCluster::new(1).unwrap();
        let data_dir = std::env::temp_dir().join(format!("tributary-suite-{}", std::process::id()));
        let options = SuiteOptions {
            bootstrap: cluster.bootstrap_servers(),
            topic_prefix: "suite".into(),
            data_dir: data_dir.clone(),
            warm_page_cache_bytes: 1 << 20,
            broker: Some(BrokerProbe::new(std::process::id()).unwrap()),
            disk_bytes: 1 << 20,
            bytes_1k: 256 << 10,
            bytes_100: 64 << 10,
            run_duration_max: Duration::from_secs(10),
            multi_partitions: Some(2),
            latency_duration: Some(Duration::from_millis(300)),
            compression: Compression::Lz4,
            linger_ms: 1,
            batch_bytes: None,
            extra_config: Vec::new(),
            // The mock cluster has no DeleteTopics either; waiting for it to time out
            // would only slow the test down.
            keep_topics: true,
            // The mock cluster has no CreateTopics; it auto-creates topics instead.
            create_topics: false,
            json: true,
        };
        run(&options).unwrap();
        std::fs::remove_dir_all(&data_dir).unwrap();
    }
}

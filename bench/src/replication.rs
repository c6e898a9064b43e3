//! `replication`: what replication costs producers, measured against a baseline in the
//! same run: (a) one standalone broker, RF 1, acks=1, and (b) three brokers, RF 3,
//! acks=all, `min.insync.replicas=2`.
//!
//! ```text
//!  LocalCluster (1 broker, standalone)      LocalCluster (3 brokers, one quorum)
//!          ▲                                          ▲
//!          └──── produce::run, alternating a/b ───────┘
//!  round r (odd: a then b, even: b then a, so slow drift hits both alike):
//!    throughput: --messages × --message-bytes, as fast as they are acknowledged
//!    latency:    --rate msgs/s for --latency-duration-s; enqueue → delivery report
//!  every run on a fresh topic with --partitions partitions, created and fully
//!  replicated before the clock starts; CPU of all the setup's brokers from /proc
//!  report: each run, then per setup the median over the rounds and the ratio b/a
//! ```
//!
//! Both setups run for the whole benchmark; the one not being measured is idle
//! (heartbeats and follower long-polls only). The machine is noisy, so each figure is a
//! median of `--rounds` runs and the per-round ratios are shown next to the ratio of
//! medians.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::cluster::LocalCluster;
use crate::procfs::{clock_ticks_per_s, ticks_to_s, BrokerProbe, CpuTicks};
use crate::produce::{self, Acks, ProduceOptions};
use crate::report::{JsonObject, RunResult};
use crate::stats;
use crate::units::per_gb;

/// How long topic creation may take to reach a full ISR on every broker.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct ReplicationOptions {
    pub broker_binary: PathBuf,
    pub data_parent: PathBuf,
    pub keep_data: bool,
    pub broker_overrides: Vec<String>,
    pub rounds: usize,
    /// Messages of each throughput run.
    pub messages: u64,
    pub message_bytes: usize,
    pub partitions: i32,
    /// Fixed rate of each latency run, msgs/s.
    pub rate_msgs_per_s: f64,
    pub latency_duration: Duration,
    /// `linger.ms` of the throughput runs.
    pub linger_ms: u32,
    /// `linger.ms` of the latency runs (it adds to every latency figure).
    pub latency_linger_ms: u32,
    pub warm_page_cache_bytes: u64,
    pub extra_config: Vec<(String, String)>,
    pub json: bool,
}

/// The two setups compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// (a) one standalone broker, RF 1, acks=1.
    Single,
    /// (b) three brokers, RF 3, acks=all, min.insync.replicas=2.
    Replicated,
}

impl Setup {
    pub fn key(self) -> &'static str {
        match self {
            Setup::Single => "a",
            Setup::Replicated => "b",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Setup::Single => "(a) RF=1 acks=1, 1 broker",
            Setup::Replicated => "(b) RF=3 acks=all min.insync=2, 3 brokers",
        }
    }

    fn acks(self) -> Acks {
        match self {
            Setup::Single => Acks::Leader,
            Setup::Replicated => Acks::All,
        }
    }

    fn replication_factor(self) -> i32 {
        match self {
            Setup::Single => 1,
            Setup::Replicated => 3,
        }
    }

    fn topic_configs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Setup::Single => &[],
            Setup::Replicated => &[("min.insync.replicas", "2")],
        }
    }
}

/// Throughput (flat out) or latency (fixed rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Throughput,
    Latency,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Throughput => "throughput",
            Kind::Latency => "latency",
        }
    }
}

/// One produce run of the benchmark.
#[derive(Debug, Clone)]
pub struct Run {
    pub round: usize,
    pub setup: Setup,
    pub kind: Kind,
    pub result: RunResult,
    /// User + system CPU seconds of all the setup's brokers during the run.
    pub brokers_cpu_s: Option<f64>,
}

impl Run {
    pub fn brokers_cpu_s_per_gb(&self) -> Option<f64> {
        per_gb(self.brokers_cpu_s?, self.result.bytes)
    }
}

/// The order of the setups in `round` (1-based): a, b in odd rounds, b, a in even ones.
pub fn order(round: usize) -> [Setup; 2] {
    if round % 2 == 1 {
        [Setup::Single, Setup::Replicated]
    } else {
        [Setup::Replicated, Setup::Single]
    }
}

/// CPU ticks summed over processes.
fn total_ticks(probes: &[BrokerProbe]) -> anyhow::Result<CpuTicks> {
    let mut total = CpuTicks {
        utime_ticks: 0,
        stime_ticks: 0,
    };
    for probe in probes {
        let ticks = probe.cpu()?;
        total.utime_ticks += ticks.utime_ticks;
        total.stime_ticks += ticks.stime_ticks;
    }
    Ok(total)
}

/// Starts both setups and runs every round; prints progress on stderr.
pub fn run(options: &ReplicationOptions) -> anyhow::Result<Vec<Run>> {
    let start = |n: usize, label: &str| -> anyhow::Result<LocalCluster> {
        let mut cluster = LocalCluster::start(
            &options.broker_binary,
            n,
            &options.data_parent,
            label,
            &options.broker_overrides,
        )?;
        if options.keep_data {
            cluster.keep_directory();
            eprintln!(
                "{label}: data and broker logs in {}",
                cluster.dir().display()
            );
        }
        Ok(cluster)
    };
    let single = start(1, "rf1")?;
    let replicated = start(3, "rf3")?;
    if options.warm_page_cache_bytes > 0 {
        let warm = crate::disk::warm_page_cache(replicated.dir(), options.warm_page_cache_bytes)?;
        if options.json {
            println!("{}", warm.to_json());
        } else {
            println!("{}", crate::report::warm_table(&warm));
        }
    }
    let hz = clock_ticks_per_s();
    let mut runs = Vec::new();
    for round in 1..=options.rounds {
        for kind in [Kind::Throughput, Kind::Latency] {
            for setup in order(round) {
                let cluster = match setup {
                    Setup::Single => &single,
                    Setup::Replicated => &replicated,
                };
                let topic = format!("repl-{}-{}-r{round}", kind.as_str(), setup.key());
                let bootstrap = cluster.bootstrap();
                crate::admin::create_topic_with(
                    &bootstrap,
                    &topic,
                    options.partitions,
                    setup.replication_factor(),
                    setup.topic_configs(),
                )?;
                cluster.wait_fully_replicated(&topic, options.partitions, TOPIC_READY_TIMEOUT)?;
                let produce = ProduceOptions {
                    label: format!("round {round} {}: {}", setup.key(), kind.as_str()),
                    bootstrap,
                    topic: topic.clone(),
                    message_bytes: options.message_bytes,
                    messages: match kind {
                        Kind::Throughput => Some(options.messages),
                        Kind::Latency => None,
                    },
                    duration: match kind {
                        Kind::Throughput => None,
                        Kind::Latency => Some(options.latency_duration),
                    },
                    acks: setup.acks(),
                    compression: produce::Compression::None,
                    rate_msgs_per_s: match kind {
                        Kind::Throughput => None,
                        Kind::Latency => Some(options.rate_msgs_per_s),
                    },
                    linger_ms: match kind {
                        Kind::Throughput => options.linger_ms,
                        Kind::Latency => options.latency_linger_ms,
                    },
                    batch_bytes: None,
                    extra_config: options.extra_config.clone(),
                };
                let probes = cluster
                    .pids()
                    .into_iter()
                    .map(BrokerProbe::new)
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let before = total_ticks(&probes)?;
                let result = produce::run(&produce, None).with_context(|| {
                    format!("{} {} run, round {round}", setup.describe(), kind.as_str())
                })?;
                let used = total_ticks(&probes)?.since(before);
                let run = Run {
                    round,
                    setup,
                    kind,
                    result,
                    brokers_cpu_s: Some(
                        ticks_to_s(used.utime_ticks, hz) + ticks_to_s(used.stime_ticks, hz),
                    ),
                };
                eprintln!(
                    "round {round}/{} {} {}: {:.1} MB/s, p99 {} ms, {} errors",
                    options.rounds,
                    setup.describe(),
                    kind.as_str(),
                    run.result.mb_per_s,
                    run.result
                        .latency
                        .map_or("-".to_string(), |l| format!("{:.2}", l.p99_ms)),
                    run.result.errors
                );
                runs.push(run);
            }
        }
    }
    Ok(runs)
}

/// One line of the summary: the median per setup, their ratio b/a, and each round's
/// own ratio.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub measure: &'static str,
    pub single: Option<f64>,
    pub replicated: Option<f64>,
    pub ratio: Option<f64>,
    pub round_ratios: Vec<f64>,
}

/// The figure `value` of the runs of `kind`: medians per setup and ratios.
fn compare(
    runs: &[Run],
    kind: Kind,
    measure: &'static str,
    value: impl Fn(&Run) -> Option<f64>,
) -> Comparison {
    let of = |setup: Setup| -> Vec<(usize, f64)> {
        runs.iter()
            .filter(|r| r.kind == kind && r.setup == setup)
            .filter_map(|r| Some((r.round, value(r)?)))
            .collect()
    };
    let (single, replicated) = (of(Setup::Single), of(Setup::Replicated));
    let median = |values: &[(usize, f64)]| {
        stats::summarize(&values.iter().map(|(_, v)| *v).collect::<Vec<_>>()).map(|s| s.median)
    };
    let ratio = |b: f64, a: f64| (a > 0.0).then(|| b / a);
    let (a, b) = (median(&single), median(&replicated));
    Comparison {
        measure,
        single: a,
        replicated: b,
        ratio: a.zip(b).and_then(|(a, b)| ratio(b, a)),
        round_ratios: replicated
            .iter()
            .filter_map(|(round, b)| {
                let (_, a) = single.iter().find(|(r, _)| r == round)?;
                ratio(*b, *a)
            })
            .collect(),
    }
}

pub fn comparisons(runs: &[Run]) -> Vec<Comparison> {
    let latency =
        |f: fn(&crate::report::Latency) -> f64| move |r: &Run| r.result.latency.as_ref().map(f);
    vec![
        compare(runs, Kind::Throughput, "throughput MB/s", |r| {
            Some(r.result.mb_per_s)
        }),
        compare(runs, Kind::Throughput, "throughput msgs/s", |r| {
            Some(r.result.msgs_per_s)
        }),
        compare(
            runs,
            Kind::Throughput,
            "brokers' CPU s per GB produced (all brokers of the setup)",
            Run::brokers_cpu_s_per_gb,
        ),
        compare(runs, Kind::Latency, "latency p50 ms", latency(|l| l.p50_ms)),
        compare(runs, Kind::Latency, "latency p99 ms", latency(|l| l.p99_ms)),
        compare(runs, Kind::Latency, "latency max ms", latency(|l| l.max_ms)),
    ]
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// The report: every run, then the comparison.
pub fn markdown(options: &ReplicationOptions, runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replication: {} rounds; throughput runs {} × {} B, linger.ms {}; latency runs \
         {} msgs/s for {:?}, linger.ms {}; {} partitions per topic; idempotence off\n",
        options.rounds,
        options.messages,
        options.message_bytes,
        options.linger_ms,
        options.rate_msgs_per_s,
        options.latency_duration,
        options.latency_linger_ms,
        options.partitions
    );
    out.push_str(
        "| round | setup | run | acks | messages | s | msgs/s | MB/s | p50 ms | p99 ms \
         | max ms | errors | brokers CPU s | CPU s/GB |\n\
         |--:|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for run in runs {
        let r = &run.result;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} |",
            run.round,
            run.setup.describe(),
            run.kind.as_str(),
            r.acks.unwrap_or("-"),
            r.messages,
            r.elapsed_s,
            r.msgs_per_s,
            r.mb_per_s,
            fmt_opt(r.latency.map(|l| l.p50_ms), 2),
            fmt_opt(r.latency.map(|l| l.p99_ms), 2),
            fmt_opt(r.latency.map(|l| l.max_ms), 2),
            r.errors,
            fmt_opt(run.brokers_cpu_s, 2),
            fmt_opt(run.brokers_cpu_s_per_gb(), 2),
        );
    }
    let _ = writeln!(
        out,
        "\n| measure (median of the rounds) | {} | {} | b/a | b/a per round |\n|---|--:|--:|--:|---|",
        Setup::Single.describe(),
        Setup::Replicated.describe()
    );
    for c in comparisons(runs) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            c.measure,
            fmt_opt(c.single, 2),
            fmt_opt(c.replicated, 2),
            fmt_opt(c.ratio, 2),
            c.round_ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    out
}

/// One JSON object per run, then one per comparison.
pub fn json_lines(runs: &[Run]) -> Vec<String> {
    let mut lines = Vec::new();
    for run in runs {
        let mut json = JsonObject::new("replication_run");
        json.int("round", run.round as u64)
            .str("setup", run.setup.key())
            .str("kind", run.kind.as_str())
            .opt_num("brokers_cpu_s", run.brokers_cpu_s)
            .opt_num("brokers_cpu_s_per_gb", run.brokers_cpu_s_per_gb());
        lines.push(json.finish());
        lines.push(run.result.to_json(None));
    }
    for c in comparisons(runs) {
        let mut json = JsonObject::new("replication_comparison");
        json.str("measure", c.measure)
            .opt_num("a", c.single)
            .opt_num("b", c.replicated)
            .opt_num("ratio_b_over_a", c.ratio)
            .str(
                "round_ratios",
                &c.round_ratios
                    .iter()
                    .map(|r| format!("{r:.4}"))
                    .collect::<Vec<_>>()
                    .join(","),
            );
        lines.push(json.finish());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Latency;

    fn run(round: usize, setup: Setup, kind: Kind, mb_per_s: f64, p99_ms: f64) -> Run {
        Run {
            round,
            setup,
            kind,
            result: RunResult {
                label: "x".into(),
                kind: "produce",
                topic: "t".into(),
                partitions: 3,
                message_bytes: 1024,
                acks: Some(setup.acks().as_str()),
                compression: Some("none"),
                rate_msgs_per_s: None,
                messages: 1000,
                bytes: 1_000_000_000,
                elapsed_s: 1.0,
                msgs_per_s: 1000.0,
                mb_per_s,
                latency: Some(Latency {
                    p50_ms: p99_ms / 2.0,
                    p99_ms,
                    p999_ms: p99_ms,
                    max_ms: p99_ms * 2.0,
                }),
                errors: 0,
                first_error: None,
                broker: None,
            },
            brokers_cpu_s: Some(mb_per_s / 100.0),
        }
    }

    #[test]
    fn setups_alternate_between_rounds() {
        assert_eq!(order(1), [Setup::Single, Setup::Replicated]);
        assert_eq!(order(2), [Setup::Replicated, Setup::Single]);
        assert_eq!(order(3), order(1));
    }

    #[test]
    fn ratios_are_of_medians_and_per_round() {
        let runs = vec![
            run(1, Setup::Single, Kind::Throughput, 400.0, 0.0),
            run(1, Setup::Replicated, Kind::Throughput, 100.0, 0.0),
            run(2, Setup::Replicated, Kind::Throughput, 150.0, 0.0),
            run(2, Setup::Single, Kind::Throughput, 300.0, 0.0),
            run(3, Setup::Single, Kind::Throughput, 500.0, 0.0),
            run(3, Setup::Replicated, Kind::Throughput, 125.0, 0.0),
            run(1, Setup::Single, Kind::Latency, 1.0, 2.0),
            run(1, Setup::Replicated, Kind::Latency, 1.0, 6.0),
        ];
        let c = comparisons(&runs);
        assert_eq!(c[0].measure, "throughput MB/s");
        assert_eq!((c[0].single, c[0].replicated), (Some(400.0), Some(125.0)));
        assert_eq!(c[0].ratio, Some(125.0 / 400.0));
        assert_eq!(c[0].round_ratios, [0.25, 0.5, 0.25]);
        assert_eq!(c[2].single, Some(4.0), "4 CPU s over 1 GB");
        let p99 = c.iter().find(|c| c.measure == "latency p99 ms").unwrap();
        assert_eq!(p99.ratio, Some(3.0));
        assert_eq!(p99.round_ratios, [3.0]);
        let text = markdown(
            &ReplicationOptions {
                broker_binary: PathBuf::from("tributary"),
                data_parent: PathBuf::from("/tmp"),
                keep_data: false,
                broker_overrides: Vec::new(),
                rounds: 3,
                messages: 1000,
                message_bytes: 1024,
                partitions: 3,
                rate_msgs_per_s: 2000.0,
                latency_duration: Duration::from_secs(10),
                linger_ms: 5,
                latency_linger_ms: 1,
                warm_page_cache_bytes: 0,
                extra_config: Vec::new(),
                json: false,
            },
            &runs,
        );
        assert!(
            text.contains("| throughput MB/s | 400.00 | 125.00 | 0.31 | 0.25, 0.50, 0.25 |"),
            "{text}"
        );
        assert!(
            text.contains("| latency p99 ms | 2.00 | 6.00 | 3.00 | 3.00 |"),
            "{text}"
        );
        assert_eq!(json_lines(&runs).len(), 2 * runs.len() + c.len());
    }

    #[test]
    fn missing_figures_give_no_ratio() {
        let runs = vec![run(1, Setup::Replicated, Kind::Throughput, 100.0, 0.0)];
        let c = comparisons(&runs);
        assert_eq!((c[0].single, c[0].ratio), (None, None));
        assert!(c[0].round_ratios.is_empty());
        let mut zero = run(1, Setup::Single, Kind::Throughput, 0.0, 0.0);
        zero.result.mb_per_s = 0.0;
        let c = comparisons(&[
            zero,
            run(1, Setup::Replicated, Kind::Throughput, 100.0, 0.0),
        ]);
        assert_eq!(c[0].ratio, None, "no ratio against zero");
    }
}

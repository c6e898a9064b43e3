//! Results and how they are shown: one `RunResult` per produce or consume run, a
//! Markdown table for people, one JSON object per line for scripts (`--json`), and the
//! issue's targets as PASS/FAIL checks (plus informational rows without a verdict).
//!
//! Broker CPU is always shown split into user time (the broker's own code) and system
//! time (the kernel on its behalf), next to the total per GB.
//!
//! The target logic is pure (figures in, verdicts out) so it is unit-tested without a
//! broker.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::disk::{DiskResult, WarmResult};
use crate::procfs::BrokerUsage;
use crate::units::{per_gb, MIB};

/// Produce latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Reads percentiles from a histogram of microseconds.
    pub fn from_histogram_us(histogram: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1_000.0;
        Self {
            p50_ms: ms(histogram.value_at_quantile(0.50)),
            p99_ms: ms(histogram.value_at_quantile(0.99)),
            p999_ms: ms(histogram.value_at_quantile(0.999)),
            max_ms: ms(histogram.max()),
        }
    }
}

/// One produce or consume run.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub label: String,
    /// `"produce"` or `"consume"`.
    pub kind: &'static str,
    pub topic: String,
    pub partitions: i32,
    pub message_bytes: u64,
    pub acks: Option<&'static str>,
    pub compression: Option<&'static str>,
    pub rate_msgs_per_s: Option<f64>,
    /// Messages delivered (produce) or read (consume).
    pub messages: u64,
    /// Payload bytes delivered or read.
    pub bytes: u64,
    pub elapsed_s: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub latency: Option<Latency>,
    /// Messages that failed delivery or were never acknowledged.
    pub errors: u64,
    pub first_error: Option<String>,
    pub broker: Option<BrokerUsage>,
}

impl RunResult {
    /// Broker CPU seconds per GB moved, when the broker was watched.
    pub fn cpu_s_per_gb(&self) -> Option<f64> {
        per_gb(self.broker?.cpu_s(), self.bytes)
    }

    /// Broker user (own code) CPU seconds per GB moved.
    pub fn user_s_per_gb(&self) -> Option<f64> {
        per_gb(self.broker?.user_s, self.bytes)
    }

    /// Broker system (kernel) CPU seconds per GB moved.
    pub fn sys_s_per_gb(&self) -> Option<f64> {
        per_gb(self.broker?.sys_s, self.bytes)
    }

    pub fn to_json(&self, disk_fsync_mb_per_s: Option<f64>) -> String {
        let mut json = JsonObject::new("run");
        json.str("label", &self.label)
            .str("kind", self.kind)
            .str("topic", &self.topic)
            .int("partitions", self.partitions as u64)
            .int("message_bytes", self.message_bytes)
            .opt_str("acks", self.acks)
            .opt_str("compression", self.compression)
            .opt_num("rate_msgs_per_s", self.rate_msgs_per_s)
            .int("messages", self.messages)
            .int("bytes", self.bytes)
            .num("elapsed_s", self.elapsed_s)
            .num("msgs_per_s", self.msgs_per_s)
            .num("mb_per_s", self.mb_per_s)
            .opt_num(
                "disk_ratio",
                disk_fsync_mb_per_s.and_then(|disk| ratio(self.mb_per_s, disk)),
            )
            .opt_num("latency_p50_ms", self.latency.map(|l| l.p50_ms))
            .opt_num("latency_p99_ms", self.latency.map(|l| l.p99_ms))
            .opt_num("latency_p999_ms", self.latency.map(|l| l.p999_ms))
            .opt_num("latency_max_ms", self.latency.map(|l| l.max_ms))
            .int("errors", self.errors)
            .opt_str("first_error", self.first_error.as_deref())
            .opt_num("broker_cpu_s", self.broker.map(|b| b.cpu_s()))
            .opt_num("broker_user_s", self.broker.map(|b| b.user_s))
            .opt_num("broker_sys_s", self.broker.map(|b| b.sys_s))
            .opt_num("broker_cpu_s_per_gb", self.cpu_s_per_gb())
            .opt_num("broker_user_s_per_gb", self.user_s_per_gb())
            .opt_num("broker_sys_s_per_gb", self.sys_s_per_gb())
            .opt_int(
                "broker_rss_start_bytes",
                self.broker.map(|b| b.rss_start_bytes),
            )
            .opt_int(
                "broker_rss_peak_bytes",
                self.broker.map(|b| b.rss_peak_bytes),
            )
            .opt_int("broker_vm_hwm_bytes", self.broker.map(|b| b.hwm_bytes));
        json.finish()
    }
}

impl DiskResult {
    pub fn to_json(&self) -> String {
        let mut json = JsonObject::new("disk");
        json.str("dir", &self.dir.display().to_string())
            .int("bytes", self.bytes)
            .num("fsync_mb_per_s", self.fsync_mb_per_s)
            .num("fsync_s", self.fsync_s)
            .num("fsync_sys_s", self.fsync_sys_s)
            .opt_num("fsync_sys_s_per_gb", self.fsync_sys_s_per_gb())
            .num("cached_mb_per_s", self.cached_mb_per_s)
            .num("cached_s", self.cached_s)
            .num("cached_sys_s", self.cached_sys_s)
            .opt_num("cached_sys_s_per_gb", self.cached_sys_s_per_gb());
        json.finish()
    }
}

impl WarmResult {
    pub fn to_json(&self) -> String {
        let mut json = JsonObject::new("warm_page_cache");
        json.str("dir", &self.dir.display().to_string())
            .int("bytes", self.bytes)
            .num("elapsed_s", self.elapsed_s)
            .num("sys_s", self.sys_s)
            .opt_num("sys_s_per_gb", self.sys_s_per_gb());
        json.finish()
    }
}

/// `value / limit`, or `None` when the limit is not positive.
pub fn ratio(value: f64, limit: f64) -> Option<f64> {
    (limit > 0.0).then(|| value / limit)
}

/// A minimal JSON object writer; every value we emit is a string or a number.
pub struct JsonObject {
    out: String,
}

impl JsonObject {
    pub fn new(result: &str) -> Self {
        let mut json = Self {
            out: String::from("{"),
        };
        json.str("result", result);
        json
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(',');
        }
        write_json_string(&mut self.out, key);
        self.out.push(':');
    }

    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        write_json_string(&mut self.out, value);
        self
    }

    pub fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.str(key, value),
            None => self.null(key),
        }
    }

    pub fn int(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        // Writing to a String cannot fail.
        let _ = write!(self.out, "{value}");
        self
    }

    pub fn opt_int(&mut self, key: &str, value: Option<u64>) -> &mut Self {
        match value {
            Some(value) => self.int(key, value),
            None => self.null(key),
        }
    }

    /// Non-finite numbers have no JSON form and are written as `null`.
    pub fn num(&mut self, key: &str, value: f64) -> &mut Self {
        if !value.is_finite() {
            return self.null(key);
        }
        self.key(key);
        let _ = write!(self.out, "{}", (value * 1e6).round() / 1e6);
        self
    }

    pub fn opt_num(&mut self, key: &str, value: Option<f64>) -> &mut Self {
        match value {
            Some(value) => self.num(key, value),
            None => self.null(key),
        }
    }

    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.out.push_str(if value { "true" } else { "false" });
        self
    }

    pub fn null(&mut self, key: &str) -> &mut Self {
        self.key(key);
        self.out.push_str("null");
        self
    }

    pub fn finish(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

fn write_json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn fmt_opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

fn fmt_mib(bytes: Option<u64>) -> String {
    fmt_opt(bytes.map(|b| b as f64 / MIB), 1)
}

/// The Markdown table of runs, with each MB/s as a ratio of the disk's fsync bandwidth
/// when it was measured.
pub fn runs_table(runs: &[RunResult], disk_fsync_mb_per_s: Option<f64>) -> String {
    let mut out = String::new();
    out.push_str(
        "| run | partitions | acks | messages | s | msgs/s | MB/s | ÷ disk fsync \
         | p50 ms | p99 ms | p999 ms | max ms | errors | broker user s | broker sys s \
         | user s/GB | CPU s/GB | RSS start MiB | RSS peak MiB |\n",
    );
    out.push_str("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for run in runs {
        let disk_ratio = disk_fsync_mb_per_s.and_then(|disk| ratio(run.mb_per_s, disk));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.label,
            run.partitions,
            run.acks.unwrap_or("-"),
            run.messages,
            run.elapsed_s,
            run.msgs_per_s,
            run.mb_per_s,
            disk_ratio.map_or_else(|| "-".to_string(), |r| format!("{:.0}%", r * 100.0)),
            fmt_opt(run.latency.map(|l| l.p50_ms), 2),
            fmt_opt(run.latency.map(|l| l.p99_ms), 2),
            fmt_opt(run.latency.map(|l| l.p999_ms), 2),
            fmt_opt(run.latency.map(|l| l.max_ms), 2),
            run.errors,
            fmt_opt(run.broker.map(|b| b.user_s), 2),
            fmt_opt(run.broker.map(|b| b.sys_s), 2),
            fmt_opt(run.user_s_per_gb(), 2),
            fmt_opt(run.cpu_s_per_gb(), 2),
            fmt_mib(run.broker.map(|b| b.rss_start_bytes)),
            fmt_mib(run.broker.map(|b| b.rss_peak_bytes)),
        );
    }
    out
}

/// The Markdown table of a disk measurement; `sys s` is this process's system CPU
/// time for the pass, i.e. the kernel's cost of the write.
pub fn disk_table(disk: &DiskResult) -> String {
    format!(
        "| disk ({}) | bytes | s | MB/s | sys s | sys s/GB |\n|---|--:|--:|--:|--:|--:|\n\
         | write + fsync | {} | {:.2} | {:.1} | {:.2} | {} |\n\
         | write, page cache only | {} | {:.2} | {:.1} | {:.2} | {} |\n",
        disk.dir.display(),
        disk.bytes,
        disk.fsync_s,
        disk.fsync_mb_per_s,
        disk.fsync_sys_s,
        fmt_opt(disk.fsync_sys_s_per_gb(), 2),
        disk.bytes,
        disk.cached_s,
        disk.cached_mb_per_s,
        disk.cached_sys_s,
        fmt_opt(disk.cached_sys_s_per_gb(), 2),
    )
}

/// The Markdown table of a page-cache warm-up.
pub fn warm_table(warm: &WarmResult) -> String {
    format!(
        "| page-cache warm-up ({}) | bytes | s | sys s | sys s/GB |\n|---|--:|--:|--:|--:|\n\
         | write zeros, delete | {} | {:.2} | {:.2} | {} |\n",
        warm.dir.display(),
        warm.bytes,
        warm.elapsed_s,
        warm.sys_s,
        fmt_opt(warm.sys_s_per_gb(), 2),
    )
}

/// The outcome of one target check.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Fail,
    /// The figure could not be measured (e.g. no `--broker-pid`); says why.
    NotMeasured(&'static str),
    /// An informational figure with no limit: never passes or fails.
    Info,
}

impl Verdict {
    pub fn as_str(&self) -> &str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NotMeasured(_) => "n/a",
            Verdict::Info => "info",
        }
    }
}

/// One of the issue's targets, checked against a measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub target: String,
    pub measured: Option<f64>,
    pub unit: &'static str,
    pub limit: String,
    pub verdict: Verdict,
}

impl Check {
    /// Passes when `measured >= minimum`.
    pub fn at_least(
        target: impl Into<String>,
        measured: Result<f64, &'static str>,
        minimum: f64,
        unit: &'static str,
    ) -> Self {
        Self::compare(target, measured, unit, format!("≥ {minimum}"), |v| {
            v >= minimum
        })
    }

    /// Passes when `measured <= maximum`.
    pub fn at_most(
        target: impl Into<String>,
        measured: Result<f64, &'static str>,
        maximum: f64,
        unit: &'static str,
    ) -> Self {
        Self::compare(target, measured, unit, format!("≤ {maximum}"), |v| {
            v <= maximum
        })
    }

    /// A figure shown for context, with no limit and no PASS/FAIL.
    pub fn info(
        target: impl Into<String>,
        measured: Result<f64, &'static str>,
        unit: &'static str,
    ) -> Self {
        let (measured, verdict) = match measured {
            Ok(value) => (Some(value), Verdict::Info),
            Err(reason) => (None, Verdict::NotMeasured(reason)),
        };
        Self {
            target: target.into(),
            measured,
            unit,
            limit: "-".into(),
            verdict,
        }
    }

    fn compare(
        target: impl Into<String>,
        measured: Result<f64, &'static str>,
        unit: &'static str,
        limit: String,
        passes: impl Fn(f64) -> bool,
    ) -> Self {
        let (measured, verdict) = match measured {
            Ok(value) if passes(value) => (Some(value), Verdict::Pass),
            Ok(value) => (Some(value), Verdict::Fail),
            Err(reason) => (None, Verdict::NotMeasured(reason)),
        };
        Self {
            target: target.into(),
            measured,
            unit,
            limit,
            verdict,
        }
    }

    pub fn to_json(&self) -> String {
        let mut json = JsonObject::new("target");
        json.str("target", &self.target)
            .opt_num("measured", self.measured)
            .str("unit", self.unit)
            .str("limit", &self.limit)
            .str("verdict", self.verdict.as_str());
        if let Verdict::NotMeasured(reason) = &self.verdict {
            json.str("reason", reason);
        }
        json.finish()
    }
}

/// The figures the targets are judged on, as measured by `suite`.
#[derive(Debug, Clone, Default)]
pub struct TargetInputs<'a> {
    pub disk_fsync_mb_per_s: Option<f64>,
    /// 1 KiB, single-partition produce runs at full speed (acks=1, acks=all).
    pub produce_1k: Vec<&'a RunResult>,
    /// The consume run and the produce run that wrote the topic it read.
    pub consume: Option<(&'a RunResult, &'a RunResult)>,
    pub rss_idle_bytes: Option<u64>,
    /// The kernel's system CPU seconds per GB for page-cache writes, measured by the
    /// `disk` step of the same run.
    pub page_cache_sys_s_per_gb: Option<f64>,
    /// Highest broker RSS sampled during any load run.
    pub rss_peak_under_load_bytes: Option<u64>,
}

const NO_PID: &str = "no --broker-pid";
const NO_PAGE_CACHE_COST: &str = "page-cache write cost not measured";

/// Broker CPU s/GB minus the kernel's page-cache write cost in s/GB: roughly what the
/// broker itself costs per GB once the unavoidable copy into the page cache is
/// taken out.
pub fn cpu_net_of_page_cache(
    run: &RunResult,
    page_cache_sys_s_per_gb: Option<f64>,
) -> Result<f64, &'static str> {
    if run.broker.is_none() {
        return Err(NO_PID);
    }
    let cpu = run.cpu_s_per_gb().ok_or("nothing was produced")?;
    let kernel = page_cache_sys_s_per_gb.ok_or(NO_PAGE_CACHE_COST)?;
    Ok(cpu - kernel)
}

/// The issue's targets: 1 KiB produce ≥ 50% of disk fsync bandwidth, broker CPU
/// ≤ 1 core-second per GB ingested, consume ≥ 1.5× produce, broker RSS ≤ 50 MiB idle
/// and ≤ 256 MiB under load.
pub fn check_targets(inputs: &TargetInputs<'_>) -> Vec<Check> {
    let mut checks = Vec::new();
    for run in &inputs.produce_1k {
        let acks = run.acks.unwrap_or("?");
        let share = match inputs.disk_fsync_mb_per_s {
            Some(disk) => ratio(run.mb_per_s, disk).ok_or("disk bandwidth is zero"),
            None => Err("disk not measured"),
        };
        checks.push(Check::at_least(
            format!("1 KiB produce acks={acks} ÷ disk fsync bandwidth"),
            share,
            0.5,
            "ratio",
        ));
    }
    for run in &inputs.produce_1k {
        let acks = run.acks.unwrap_or("?");
        let cpu = if run.broker.is_some() {
            run.cpu_s_per_gb().ok_or("nothing was produced")
        } else {
            Err(NO_PID)
        };
        checks.push(Check::at_most(
            format!("broker CPU per GB ingested, 1 KiB acks={acks}"),
            cpu,
            1.0,
            "core-s/GB",
        ));
    }
    for run in &inputs.produce_1k {
        let acks = run.acks.unwrap_or("?");
        checks.push(Check::info(
            format!(
                "broker CPU per GB minus the kernel's page-cache write cost per GB \
                 (same run), 1 KiB acks={acks}"
            ),
            cpu_net_of_page_cache(run, inputs.page_cache_sys_s_per_gb),
            "core-s/GB",
        ));
    }
    let consume_ratio = match inputs.consume {
        Some((consume, produce)) => {
            ratio(consume.mb_per_s, produce.mb_per_s).ok_or("produce throughput is zero")
        }
        None => Err("consume not run"),
    };
    checks.push(Check::at_least(
        "consume MB/s ÷ produce MB/s (1 KiB topic)",
        consume_ratio,
        1.5,
        "ratio",
    ));
    let mib = |bytes: Option<u64>| bytes.map(|b| b as f64 / MIB).ok_or(NO_PID);
    checks.push(Check::at_most(
        "broker RSS idle (before load)",
        mib(inputs.rss_idle_bytes),
        50.0,
        "MiB",
    ));
    checks.push(Check::at_most(
        "broker RSS peak under load",
        mib(inputs.rss_peak_under_load_bytes),
        256.0,
        "MiB",
    ));
    checks
}

/// The Markdown table of target checks.
pub fn targets_table(checks: &[Check]) -> String {
    let mut out = String::from("| target | measured | limit | result |\n|---|--:|--:|---|\n");
    for check in checks {
        let measured = match (&check.verdict, check.measured) {
            (Verdict::NotMeasured(reason), _) => format!("({reason})"),
            (_, Some(value)) if check.unit == "ratio" => format!("{value:.2}"),
            (_, Some(value)) => format!("{value:.2} {}", check.unit),
            (_, None) => "-".to_string(),
        };
        let limit = if check.limit == "-" || check.unit == "ratio" {
            check.limit.clone()
        } else {
            format!("{} {}", check.limit, check.unit)
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            check.target,
            measured,
            limit,
            check.verdict.as_str()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(acks: &'static str, mb_per_s: f64, cpu_s: Option<f64>) -> RunResult {
        RunResult {
            label: format!("1 KiB acks={acks}"),
            kind: "produce",
            topic: "t".into(),
            partitions: 1,
            message_bytes: 1024,
            acks: Some(acks),
            compression: Some("none"),
            rate_msgs_per_s: None,
            messages: 1_000_000,
            bytes: 2_000_000_000,
            elapsed_s: 2_000.0 / mb_per_s,
            msgs_per_s: 1_000_000.0 / (2_000.0 / mb_per_s),
            mb_per_s,
            latency: None,
            errors: 0,
            first_error: None,
            // Halves, so user + sys adds back up to exactly `cpu_s`.
            broker: cpu_s.map(|cpu_s| BrokerUsage {
                user_s: cpu_s / 2.0,
                sys_s: cpu_s / 2.0,
                rss_start_bytes: 10 << 20,
                rss_peak_bytes: 100 << 20,
                hwm_bytes: 120 << 20,
            }),
        }
    }

    fn verdicts(checks: &[Check]) -> Vec<&str> {
        checks.iter().map(|c| c.verdict.as_str()).collect()
    }

    #[test]
    fn cpu_per_gb_divides_by_decimal_gigabytes() {
        assert_eq!(run("1", 100.0, Some(1.0)).cpu_s_per_gb(), Some(0.5));
        assert_eq!(run("1", 100.0, None).cpu_s_per_gb(), None);
    }

    #[test]
    fn user_and_sys_per_gb_add_up_to_the_total() {
        let mut split = run("1", 100.0, Some(1.0));
        split.broker = split.broker.map(|b| BrokerUsage {
            user_s: 0.3,
            sys_s: 1.7,
            ..b
        });
        // 2 GB moved: 0.3 s user, 1.7 s sys, 2.0 s in all.
        assert_eq!(split.user_s_per_gb(), Some(0.15));
        assert_eq!(split.sys_s_per_gb(), Some(0.85));
        assert_eq!(split.cpu_s_per_gb(), Some(1.0));
        let mut nothing = split.clone();
        nothing.bytes = 0;
        assert_eq!(nothing.user_s_per_gb(), None);
        assert_eq!(run("1", 100.0, None).user_s_per_gb(), None);
    }

    #[test]
    fn cpu_net_of_page_cache_subtracts_the_kernel_cost_per_gb() {
        // 3 s over 2 GB = 1.5 s/GB; the kernel's page-cache copy costs 0.5 s/GB.
        let measured = run("1", 100.0, Some(3.0));
        assert_eq!(cpu_net_of_page_cache(&measured, Some(0.5)), Ok(1.0));
        // A kernel cost above the broker's total shows as negative, not clamped.
        assert_eq!(cpu_net_of_page_cache(&measured, Some(2.0)), Ok(-0.5));
        assert_eq!(
            cpu_net_of_page_cache(&measured, None),
            Err(NO_PAGE_CACHE_COST)
        );
        assert_eq!(
            cpu_net_of_page_cache(&run("1", 100.0, None), Some(0.5)),
            Err(NO_PID)
        );
    }

    #[test]
    fn the_net_cpu_rows_are_informational_and_never_fail() {
        // 4 s/GB would fail the CPU target; the net row only reports 4 - 0.5.
        let heavy = run("all", 300.0, Some(8.0));
        let checks = check_targets(&TargetInputs {
            disk_fsync_mb_per_s: Some(500.0),
            produce_1k: vec![&heavy],
            page_cache_sys_s_per_gb: Some(0.5),
            ..TargetInputs::default()
        });
        assert_eq!(checks[1].verdict, Verdict::Fail);
        assert_eq!(checks[2].verdict, Verdict::Info);
        assert_eq!(checks[2].measured, Some(3.5));
        assert!(checks[2].target.contains("minus the kernel's page-cache"));
        let table = targets_table(&checks);
        assert!(table.contains("| 3.50 core-s/GB | - | info |"), "{table}");
        assert!(checks[2].to_json().contains(r#""verdict":"info""#));
    }

    #[test]
    fn every_target_passes_when_figures_are_inside_the_limits() {
        let acks1 = run("1", 300.0, Some(1.0));
        let acks_all = run("all", 250.0, Some(1.8));
        let consume = run("1", 500.0, Some(0.2));
        let checks = check_targets(&TargetInputs {
            disk_fsync_mb_per_s: Some(500.0),
            produce_1k: vec![&acks1, &acks_all],
            consume: Some((&consume, &acks1)),
            rss_idle_bytes: Some(20 << 20),
            page_cache_sys_s_per_gb: Some(0.2),
            rss_peak_under_load_bytes: Some(200 << 20),
        });
        assert_eq!(
            verdicts(&checks),
            ["PASS", "PASS", "PASS", "PASS", "info", "info", "PASS", "PASS", "PASS"]
        );
        assert_eq!(checks[0].measured, Some(0.6));
        assert_eq!(checks[2].measured, Some(0.5));
    }

    #[test]
    fn each_target_fails_on_its_own_figure() {
        let slow = run("all", 200.0, Some(2.2));
        let consume = run("1", 250.0, None);
        let checks = check_targets(&TargetInputs {
            disk_fsync_mb_per_s: Some(500.0),
            produce_1k: vec![&slow],
            consume: Some((&consume, &slow)),
            rss_idle_bytes: Some(51 << 20),
            page_cache_sys_s_per_gb: Some(0.2),
            rss_peak_under_load_bytes: Some(300 << 20),
        });
        // 0.4 of disk, 1.1 s/GB, 1.25× consume, 51 MiB idle, 300 MiB peak.
        assert_eq!(
            verdicts(&checks),
            ["FAIL", "FAIL", "info", "FAIL", "FAIL", "FAIL"]
        );
    }

    #[test]
    fn limits_are_inclusive() {
        let exact = run("1", 250.0, Some(2.0));
        let consume = run("1", 375.0, None);
        let checks = check_targets(&TargetInputs {
            disk_fsync_mb_per_s: Some(500.0),
            produce_1k: vec![&exact],
            consume: Some((&consume, &exact)),
            rss_idle_bytes: Some(50 << 20),
            page_cache_sys_s_per_gb: Some(0.2),
            rss_peak_under_load_bytes: Some(256 << 20),
        });
        assert_eq!(
            verdicts(&checks),
            ["PASS", "PASS", "info", "PASS", "PASS", "PASS"]
        );
    }

    #[test]
    fn missing_figures_are_not_measured_rather_than_failed() {
        let no_pid = run("1", 300.0, None);
        let checks = check_targets(&TargetInputs {
            produce_1k: vec![&no_pid],
            ..TargetInputs::default()
        });
        assert_eq!(verdicts(&checks), ["n/a"; 6]);
        assert_eq!(checks[1].verdict, Verdict::NotMeasured(NO_PID));
        assert!(targets_table(&checks).contains("(no --broker-pid)"));
    }

    #[test]
    fn json_lines_escape_strings_and_null_missing_numbers() {
        let mut json = JsonObject::new("x");
        json.str("s", "a\"b\\c\nd\u{1}")
            .num("n", 1.5)
            .num("inf", f64::INFINITY)
            .opt_int("none", None)
            .bool("b", true);
        assert_eq!(
            json.finish(),
            r#"{"result":"x","s":"a\"b\\c\nd\u0001","n":1.5,"inf":null,"none":null,"b":true}"#
        );
    }

    #[test]
    fn run_json_carries_the_disk_ratio() {
        let line = run("1", 250.0, Some(1.0)).to_json(Some(500.0));
        assert!(line.contains(r#""disk_ratio":0.5"#), "{line}");
        assert!(line.contains(r#""broker_cpu_s_per_gb":0.5"#), "{line}");
        assert!(line.contains(r#""broker_user_s":0.5"#), "{line}");
        assert!(line.contains(r#""broker_sys_s":0.5"#), "{line}");
        assert!(line.contains(r#""broker_user_s_per_gb":0.25"#), "{line}");
        assert!(line.contains(r#""broker_sys_s_per_gb":0.25"#), "{line}");
    }

    #[test]
    fn runs_table_has_one_row_per_run() {
        let runs = [run("1", 300.0, Some(1.0)), run("all", 200.0, None)];
        let table = runs_table(&runs, Some(400.0));
        assert_eq!(table.lines().count(), 4);
        assert!(table.contains("| 75% |"), "{table}");
        assert!(table.contains("| 50% |"), "{table}");
        assert!(
            table.contains("| broker user s | broker sys s | user s/GB | CPU s/GB |"),
            "{table}"
        );
        // 1 s over 2 GB: 0.50 user s, 0.50 sys s, 0.25 user s/GB, 0.50 CPU s/GB.
        assert!(table.contains("| 0.50 | 0.50 | 0.25 | 0.50 |"), "{table}");
        let columns = |line: &str| line.matches('|').count();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines.iter().all(|l| columns(l) == columns(lines[0])),
            "{table}"
        );
    }
}

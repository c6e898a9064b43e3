//! Watching the broker process through `/proc/<pid>`: CPU time (`stat`), resident
//! memory (`status`), and a sampler thread that records the peak RSS during a run.
//!
//! ```text
//!  BrokerProbe::watch ──► CpuTicks (before)      sampler thread: VmRSS every 100 ms
//!        run ...                                   └─► peak_rss_bytes
//!  BrokerWatch::finish ─► CpuTicks (after) ──► BrokerUsage { user_s, sys_s, rss peak, VmHWM }
//! ```
//!
//! CPU time is kept split into user time (the broker's own code) and system time (the
//! kernel working on its behalf, e.g. copying produced bytes into the page cache),
//! because on a VM the kernel's share varies a lot between runs. [`SelfCpu`] reads the
//! same figures for this process, so `disk` can measure the kernel's cost of a write.
//!
//! The broker may be any process on this machine (ours, Apache Kafka's JVM, Redpanda),
//! so nothing here assumes anything about it beyond Linux's procfs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};

/// How often the sampler reads VmRSS during a run.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// CPU time a process has consumed, in clock ticks (`utime`, `stime` from `stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
}

impl CpuTicks {
    /// Ticks consumed since `earlier` (zero rather than negative if the counters
    /// went backwards, which they do not for a live process).
    pub fn since(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks {
            utime_ticks: self.utime_ticks.saturating_sub(earlier.utime_ticks),
            stime_ticks: self.stime_ticks.saturating_sub(earlier.stime_ticks),
        }
    }
}

/// Reads and parses a `stat` file such as `/proc/self/stat`.
fn read_stat(path: &Path) -> anyhow::Result<CpuTicks> {
    let line =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_stat(&line)
}

/// CPU time of this process (all its threads), from `/proc/self/stat`.
#[derive(Debug, Clone, Copy)]
pub struct SelfCpu {
    clock_ticks_per_s: u64,
}

impl SelfCpu {
    pub fn new() -> Self {
        Self {
            clock_ticks_per_s: clock_ticks_per_s(),
        }
    }

    pub fn ticks(&self) -> anyhow::Result<CpuTicks> {
        read_stat(Path::new("/proc/self/stat"))
    }

    /// System (kernel) seconds this process has consumed since `start`.
    pub fn sys_s_since(&self, start: CpuTicks) -> anyhow::Result<f64> {
        let used = self.ticks()?.since(start);
        Ok(ticks_to_s(used.stime_ticks, self.clock_ticks_per_s))
    }
}

impl Default for SelfCpu {
    fn default() -> Self {
        Self::new()
    }
}

/// Clock ticks to seconds.
pub fn ticks_to_s(ticks: u64, clock_ticks_per_s: u64) -> f64 {
    ticks as f64 / clock_ticks_per_s.max(1) as f64
}

/// Parses `utime` and `stime` (fields 14 and 15) out of a `/proc/<pid>/stat` line.
///
/// Field 2, `comm`, is in parentheses and may itself contain spaces and `)`, so the
/// fields after it are found from the *last* `)` of the line (as `procps` does).
pub fn parse_stat(line: &str) -> anyhow::Result<CpuTicks> {
    let close = line
        .rfind(')')
        .context("stat line has no ')' closing the comm field")?;
    // After "comm)" come field 3 (state), 4 (ppid), ...; utime is field 14, so it is
    // index 11 counting from the state field.
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    if rest.len() < 13 {
        bail!("stat line has only {} fields after comm", rest.len());
    }
    let utime_ticks = rest[11]
        .parse()
        .with_context(|| format!("stat utime {:?} is not a number", rest[11]))?;
    let stime_ticks = rest[12]
        .parse()
        .with_context(|| format!("stat stime {:?} is not a number", rest[12]))?;
    Ok(CpuTicks {
        utime_ticks,
        stime_ticks,
    })
}

/// Memory figures from `/proc/<pid>/status`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStatus {
    /// Current resident set size (`VmRSS`).
    pub rss_bytes: u64,
    /// Peak resident set size over the process's life (`VmHWM`).
    pub hwm_bytes: u64,
}

/// Parses `VmRSS` and `VmHWM` (reported in kB, which procfs means as KiB).
pub fn parse_status(text: &str) -> anyhow::Result<MemoryStatus> {
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = text
            .lines()
            .find(|line| line.starts_with(name))
            .with_context(|| format!("status has no {name} line"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("status line {line:?} has no number"))?;
        Ok(kib * 1024)
    };
    Ok(MemoryStatus {
        rss_bytes: field("VmRSS:")?,
        hwm_bytes: field("VmHWM:")?,
    })
}

/// Parses the output of `getconf CLK_TCK`.
pub fn parse_clock_ticks(output: &str) -> Option<u64> {
    output.trim().parse().ok().filter(|&ticks: &u64| ticks > 0)
}

/// Clock ticks per second for `stat`'s CPU times: `getconf CLK_TCK`, else Linux's
/// universal 100 (the value every mainstream architecture's userspace ABI fixes).
pub fn clock_ticks_per_s() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| parse_clock_ticks(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or(100)
}

/// A handle on the broker process under test.
#[derive(Debug, Clone)]
pub struct BrokerProbe {
    pid: u32,
    clock_ticks_per_s: u64,
}

impl BrokerProbe {
    /// Checks that the process exists and is readable.
    pub fn new(pid: u32) -> anyhow::Result<Self> {
        let probe = Self {
            pid,
            clock_ticks_per_s: clock_ticks_per_s(),
        };
        probe
            .cpu()
            .with_context(|| format!("cannot read the broker process {pid} in /proc"))?;
        Ok(probe)
    }

    fn path(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    pub fn cpu(&self) -> anyhow::Result<CpuTicks> {
        read_stat(&self.path("stat"))
    }

    pub fn memory(&self) -> anyhow::Result<MemoryStatus> {
        let path = self.path("status");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        parse_status(&text)
    }

    /// Starts watching a run: records CPU now and samples RSS until `finish`.
    pub fn watch(&self) -> anyhow::Result<BrokerWatch> {
        let start_cpu = self.cpu()?;
        let start_memory = self.memory()?;
        let stop = Arc::new(AtomicBool::new(false));
        let peak_rss_bytes = Arc::new(AtomicU64::new(start_memory.rss_bytes));
        let sampler = {
            let probe = self.clone();
            let stop = Arc::clone(&stop);
            let peak = Arc::clone(&peak_rss_bytes);
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(memory) = probe.memory() {
                            peak.fetch_max(memory.rss_bytes, Ordering::Relaxed);
                        }
                        std::thread::sleep(RSS_SAMPLE_INTERVAL);
                    }
                })
                .context("spawning the RSS sampler thread")?
        };
        Ok(BrokerWatch {
            probe: self.clone(),
            start_cpu,
            start_memory,
            stop,
            peak_rss_bytes,
            sampler: Some(sampler),
        })
    }
}

/// An RSS sampler and CPU baseline for one run; `finish` ends it.
pub struct BrokerWatch {
    probe: BrokerProbe,
    start_cpu: CpuTicks,
    start_memory: MemoryStatus,
    /// Tells the sampler thread to exit.
    stop: Arc<AtomicBool>,
    /// Highest VmRSS the sampler has seen since the run started.
    peak_rss_bytes: Arc<AtomicU64>,
    sampler: Option<JoinHandle<()>>,
}

/// What the broker spent on one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrokerUsage {
    /// User time (utime) consumed during the run: the broker's own code.
    pub user_s: f64,
    /// System time (stime) consumed during the run: the kernel on the broker's
    /// behalf (syscalls, copies into the page cache, network stack).
    pub sys_s: f64,
    /// VmRSS when the run started.
    pub rss_start_bytes: u64,
    /// Highest VmRSS sampled during the run (and at its end).
    pub rss_peak_bytes: u64,
    /// VmHWM at the end of the run: the process's lifetime peak, which catches
    /// spikes shorter than the sampling interval.
    pub hwm_bytes: u64,
}

impl BrokerUsage {
    /// User + system seconds.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

impl BrokerWatch {
    pub fn finish(mut self) -> anyhow::Result<BrokerUsage> {
        self.stop_sampler();
        let end_cpu = self.probe.cpu()?;
        let end_memory = self.probe.memory()?;
        let used = end_cpu.since(self.start_cpu);
        let hz = self.probe.clock_ticks_per_s;
        Ok(BrokerUsage {
            user_s: ticks_to_s(used.utime_ticks, hz),
            sys_s: ticks_to_s(used.stime_ticks, hz),
            rss_start_bytes: self.start_memory.rss_bytes,
            rss_peak_bytes: self
                .peak_rss_bytes
                .load(Ordering::Relaxed)
                .max(end_memory.rss_bytes),
            hwm_bytes: end_memory.hwm_bytes,
        })
    }

    fn stop_sampler(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sampler) = self.sampler.take() {
            // The sampler never panics (it ignores read errors), so a join error
            // carries nothing worth reporting.
            let _ = sampler.join();
        }
    }
}

impl Drop for BrokerWatch {
    fn drop(&mut self) {
        self.stop_sampler();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_from_a_plain_stat_line() {
        let line = "4242 (tributary) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 104857600 2560 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 1024 0 0 0 17 1 0 0 0 0 0";
        let ticks = parse_stat(line).unwrap();
        assert_eq!(
            ticks,
            CpuTicks {
                utime_ticks: 250,
                stime_ticks: 75
            }
        );
    }

    #[test]
    fn comm_with_spaces_and_parentheses_does_not_shift_fields() {
        let line = "77 (my ) broker (x)) R 1 77 77 0 -1 4194560 10 0 0 0 \
                    9001 42 0 0 20 0 1 0 5 1000 10 18446744073709551615";
        let ticks = parse_stat(line).unwrap();
        assert_eq!(ticks.utime_ticks, 9001);
        assert_eq!(ticks.stime_ticks, 42);
    }

    #[test]
    fn truncated_or_garbled_stat_lines_are_errors() {
        assert!(parse_stat("77 tributary R 1 2 3").is_err());
        assert!(parse_stat("77 (tributary) R 1 77").is_err());
        assert!(parse_stat("77 (t) R 1 77 77 0 -1 0 0 0 0 0 x 1 0").is_err());
    }

    #[test]
    fn ticks_since_subtract_per_field_and_never_go_negative() {
        let before = CpuTicks {
            utime_ticks: 100,
            stime_ticks: 50,
        };
        let after = CpuTicks {
            utime_ticks: 130,
            stime_ticks: 250,
        };
        assert_eq!(
            after.since(before),
            CpuTicks {
                utime_ticks: 30,
                stime_ticks: 200
            }
        );
        assert_eq!(
            before.since(after),
            CpuTicks {
                utime_ticks: 0,
                stime_ticks: 0
            }
        );
        assert_eq!(ticks_to_s(250, 100), 2.5);
    }

    #[test]
    fn this_process_reads_its_own_system_time() {
        let me = SelfCpu::new();
        let start = me.ticks().unwrap();
        assert!(me.sys_s_since(start).unwrap() >= 0.0);
    }

    #[test]
    fn parses_rss_and_hwm_from_status() {
        let text = "Name:\ttributary\nVmPeak:\t  200000 kB\nVmHWM:\t   40960 kB\n\
                    VmRSS:\t   20480 kB\nThreads:\t9\n";
        let memory = parse_status(text).unwrap();
        assert_eq!(memory.rss_bytes, 20 * 1024 * 1024);
        assert_eq!(memory.hwm_bytes, 40 * 1024 * 1024);
        assert!(parse_status("Name:\tkthreadd\n").is_err());
    }

    #[test]
    fn clock_ticks_come_from_getconf_output() {
        assert_eq!(parse_clock_ticks("100\n"), Some(100));
        assert_eq!(parse_clock_ticks("0\n"), None);
        assert_eq!(parse_clock_ticks("undefined\n"), None);
    }

    #[test]
    fn watching_this_process_reports_usage() {
        let probe = BrokerProbe::new(std::process::id()).unwrap();
        let watch = probe.watch().unwrap();
        let usage = watch.finish().unwrap();
        assert!(usage.user_s >= 0.0 && usage.sys_s >= 0.0);
        assert_eq!(usage.cpu_s(), usage.user_s + usage.sys_s);
        assert!(usage.rss_peak_bytes >= usage.rss_start_bytes);
        assert!(usage.hwm_bytes > 0);
    }
}

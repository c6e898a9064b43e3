//! The physical limit: sequential-write bandwidth of the directory the broker's log
//! lives in, so every produce figure can be read as a fraction of what the disk can do,
//! and the kernel's CPU cost of such writes, so the broker's CPU can be read net of it.
//!
//! Two passes over a temporary file written with 1 MiB `write`s: one ending in
//! `fsync` (the time includes the fsync, so it measures the device), and one without
//! (the page cache). Each pass also records the system CPU time this process spent on
//! it (`stime` from `/proc/self/stat`): for the page-cache pass that is the kernel's
//! cost of copying bytes into the page cache, the same work a broker's `write(2)` of
//! produced records costs. The file is deleted after each pass.
//!
//! [`warm_page_cache`] writes and deletes a large file of zeros first, on request, so
//! that guest memory a VM has never used is touched once before anything is measured
//! (first touch of a guest page costs several times the steady-state copy).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::procfs::SelfCpu;
use crate::units::{format_bytes, mb_per_s, per_gb};

/// Size of each `write` call.
const WRITE_BYTES: usize = 1 << 20;

/// Result of `disk`.
#[derive(Debug, Clone)]
pub struct DiskResult {
    pub dir: PathBuf,
    pub bytes: u64,
    /// Write + fsync, in MB/s: the durable sequential-write bandwidth.
    pub fsync_mb_per_s: f64,
    pub fsync_s: f64,
    /// System CPU seconds this process spent on the write + fsync pass.
    pub fsync_sys_s: f64,
    /// Write without fsync, in MB/s: page-cache bandwidth.
    pub cached_mb_per_s: f64,
    pub cached_s: f64,
    /// System CPU seconds this process spent on the page-cache pass: the kernel's cost
    /// of copying `bytes` into the page cache.
    pub cached_sys_s: f64,
}

impl DiskResult {
    /// System seconds per decimal GB of the write + fsync pass.
    pub fn fsync_sys_s_per_gb(&self) -> Option<f64> {
        per_gb(self.fsync_sys_s, self.bytes)
    }

    /// System seconds per decimal GB of the page-cache pass: the kernel's cost of
    /// a page-cache write, to set against the broker's CPU per GB.
    pub fn cached_sys_s_per_gb(&self) -> Option<f64> {
        per_gb(self.cached_sys_s, self.bytes)
    }
}

/// Removes the scratch file even when a pass fails half-way.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// What one timed write pass cost.
struct Pass {
    elapsed_s: f64,
    sys_s: f64,
}

/// Measures `dir` by writing `bytes` twice (with and without fsync).
pub fn measure(dir: &Path, bytes: u64) -> anyhow::Result<DiskResult> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Incompressible-looking data, in case the filesystem compresses.
    let mut block = vec![0u8; WRITE_BYTES];
    crate::payload::fill_pseudo_random(&mut block, 0x5eed);

    let fsync = timed_write(dir, "fsync", bytes, &block, true)?;
    let cached = timed_write(dir, "cached", bytes, &block, false)?;
    // Let the kernel write the cached pass back before anything else is measured, so
    // it does not compete with the broker's own writes. `sync` runs in a child process,
    // so its CPU time is not in this process's stime.
    let _ = std::process::Command::new("sync").status();
    Ok(DiskResult {
        dir: dir.to_path_buf(),
        bytes,
        fsync_mb_per_s: mb_per_s(bytes, fsync.elapsed_s),
        fsync_s: fsync.elapsed_s,
        fsync_sys_s: fsync.sys_s,
        cached_mb_per_s: mb_per_s(bytes, cached.elapsed_s),
        cached_s: cached.elapsed_s,
        cached_sys_s: cached.sys_s,
    })
}

/// Writes `bytes` to a fresh file in `dir` and returns the seconds it took and the
/// system CPU seconds this process spent meanwhile. The file is deleted afterwards
/// (outside the measurement).
fn timed_write(
    dir: &Path,
    name: &str,
    bytes: u64,
    block: &[u8],
    fsync: bool,
) -> anyhow::Result<Pass> {
    let scratch = ScratchFile(dir.join(format!(
        ".tributary-bench-disk-{}-{name}",
        std::process::id()
    )));
    let mut file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    let cpu = SelfCpu::new();
    let cpu_start = cpu.ticks()?;
    let started = Instant::now();
    write_blocks(&mut file, &scratch.0, bytes, block)?;
    if fsync {
        file.sync_all()
            .with_context(|| format!("fsync of {}", scratch.0.display()))?;
    }
    let elapsed_s = started.elapsed().as_secs_f64();
    let sys_s = cpu.sys_s_since(cpu_start)?;
    drop(file);
    drop(scratch);
    Ok(Pass { elapsed_s, sys_s })
}

/// Writes `bytes` to `file` in `block`-sized `write`s.
fn write_blocks(file: &mut File, path: &Path, bytes: u64, block: &[u8]) -> anyhow::Result<()> {
    let mut remaining = bytes;
    while remaining > 0 {
        // `chunk` is at most `block.len()`, a usize, so the cast cannot truncate.
        let chunk = remaining.min(block.len() as u64) as usize;
        file.write_all(&block[..chunk])
            .with_context(|| format!("writing {}", path.display()))?;
        remaining -= chunk as u64;
    }
    Ok(())
}

/// Result of [`warm_page_cache`].
#[derive(Debug, Clone)]
pub struct WarmResult {
    pub dir: PathBuf,
    pub bytes: u64,
    /// Wall seconds to write the file and delete it.
    pub elapsed_s: f64,
    /// System CPU seconds this process spent writing and deleting it.
    pub sys_s: f64,
}

impl WarmResult {
    pub fn sys_s_per_gb(&self) -> Option<f64> {
        per_gb(self.sys_s, self.bytes)
    }
}

/// Writes `bytes` of zeros to a temporary file in `dir` with 1 MiB writes (no fsync)
/// and deletes it, so the page cache has touched that much guest memory before any
/// measurement: on a fresh VM the first touch of each page costs the host far more
/// than a page-cache copy, and would otherwise be billed to whatever runs first.
/// `dir` needs `bytes` of free space, since dirty pages may be written back before the
/// file is deleted.
pub fn warm_page_cache(dir: &Path, bytes: u64) -> anyhow::Result<WarmResult> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let block = vec![0u8; WRITE_BYTES];
    let scratch = ScratchFile(dir.join(format!(".tributary-bench-warm-{}", std::process::id())));
    let cpu = SelfCpu::new();
    let cpu_start = cpu.ticks()?;
    let started = Instant::now();
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    write_blocks(&mut file, &scratch.0, bytes, &block).with_context(|| {
        format!(
            "warming the page cache with {} (needs that much free space in {})",
            format_bytes(bytes),
            dir.display()
        )
    })?;
    drop(file);
    std::fs::remove_file(&scratch.0)
        .with_context(|| format!("deleting {}", scratch.0.display()))?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let sys_s = cpu.sys_s_since(cpu_start)?;
    Ok(WarmResult {
        dir: dir.to_path_buf(),
        bytes,
        elapsed_s,
        sys_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_small_write_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("tributary-bench-test-{}", std::process::id()));
        let result = measure(&dir, 3 * (1 << 20) + 17).unwrap();
        assert!(result.fsync_mb_per_s > 0.0);
        assert!(result.cached_mb_per_s > 0.0);
        assert!(result.cached_sys_s >= 0.0 && result.fsync_sys_s >= 0.0);
        assert!(result.cached_sys_s_per_gb().is_some());
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 0, "scratch files must be deleted");
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn warming_writes_and_deletes_its_file() {
        let dir = std::env::temp_dir().join(format!("tributary-bench-warm-{}", std::process::id()));
        let result = warm_page_cache(&dir, 2 * (1 << 20) + 5).unwrap();
        assert_eq!(result.bytes, 2 * (1 << 20) + 5);
        assert!(result.elapsed_s >= 0.0 && result.sys_s >= 0.0);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }

    #[test]
    fn sys_seconds_per_gb_use_decimal_gigabytes() {
        let result = DiskResult {
            dir: PathBuf::from("/x"),
            bytes: 2_000_000_000,
            fsync_mb_per_s: 100.0,
            fsync_s: 20.0,
            fsync_sys_s: 1.5,
            cached_mb_per_s: 1000.0,
            cached_s: 2.0,
            cached_sys_s: 1.0,
        };
        assert_eq!(result.cached_sys_s_per_gb(), Some(0.5));
        assert_eq!(result.fsync_sys_s_per_gb(), Some(0.75));
    }
}

//! The physical limit: sequential-write bandwidth of the directory the broker's log
//! lives in, so every produce figure can be read as a fraction of what the disk can do.
//!
//! Two passes over a temporary file written with 1 MiB `write`s: one ending in
//! `fsync` (the time includes the fsync, so it measures the device), and one without
//! (the page cache, for context). The file is deleted after each pass.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use crate::units::mb_per_s;

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
    /// Write without fsync, in MB/s: page-cache bandwidth.
    pub cached_mb_per_s: f64,
    pub cached_s: f64,
}

/// Removes the scratch file even when a pass fails half-way.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Measures `dir` by writing `bytes` twice (with and without fsync).
pub fn measure(dir: &Path, bytes: u64) -> anyhow::Result<DiskResult> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Incompressible-looking data, in case the filesystem compresses.
    let mut block = vec![0u8; WRITE_BYTES];
    crate::payload::fill_pseudo_random(&mut block, 0x5eed);

    let fsync_s = timed_write(dir, bytes, &block, true)?;
    let cached_s = timed_write(dir, bytes, &block, false)?;
    Ok(DiskResult {
        dir: dir.to_path_buf(),
        bytes,
        fsync_mb_per_s: mb_per_s(bytes, fsync_s),
        fsync_s,
        cached_mb_per_s: mb_per_s(bytes, cached_s),
        cached_s,
    })
}

/// Writes `bytes` to a fresh file in `dir` and returns the seconds it took.
fn timed_write(dir: &Path, bytes: u64, block: &[u8], fsync: bool) -> anyhow::Result<f64> {
    let path = dir.join(format!(
        ".tributary-bench-disk-{}-{}",
        std::process::id(),
        if fsync { "fsync" } else { "cached" }
    ));
    let scratch = ScratchFile(path);
    let mut file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&scratch.0)
        .with_context(|| format!("creating {}", scratch.0.display()))?;
    let started = Instant::now();
    let mut remaining = bytes;
    while remaining > 0 {
        let chunk = remaining.min(block.len() as u64) as usize;
        file.write_all(&block[..chunk])
            .with_context(|| format!("writing {}", scratch.0.display()))?;
        remaining -= chunk as u64;
    }
    if fsync {
        file.sync_all()
            .with_context(|| format!("fsync of {}", scratch.0.display()))?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(file);
    drop(scratch);
    if !fsync {
        // Let the kernel write the cached pass back before anything else is measured,
        // so it does not compete with the broker's own writes.
        let _ = std::process::Command::new("sync").status();
    }
    Ok(elapsed)
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
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 0, "scratch files must be deleted");
        std::fs::remove_dir(&dir).unwrap();
    }
}

//! Units: parsing human sizes (`512MiB`, `1GiB`, `100`) from the command line and
//! formatting rates for the report.
//!
//! Throughput figures in the report are decimal (1 MB = 10^6 bytes, 1 GB = 10^9
//! bytes), as disk vendors and Kafka's own perf tools report them; sizes given on the
//! command line may use either decimal (`kB`, `MB`, `GB`) or binary (`KiB`, `MiB`,
//! `GiB`) suffixes.

use anyhow::{bail, Context};

/// Bytes in one decimal megabyte, the unit of every MB/s figure.
pub const MB: f64 = 1e6;
/// Bytes in one decimal gigabyte, the unit of "CPU seconds per GB".
pub const GB: f64 = 1e9;
/// Bytes in one mebibyte, the unit of RSS figures (as `/proc` reports kB = KiB).
pub const MIB: f64 = 1024.0 * 1024.0;

/// Parses a byte size such as `1024`, `64k`, `512MiB`, `1GiB` or `1.5GB`.
///
/// A bare number is bytes. `k`/`m`/`g` without `B` are read as binary multiples,
/// like `dd` and most Kafka tooling do.
pub fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(split);
    if number.is_empty() {
        bail!("size {text:?} does not start with a number");
    }
    let value: f64 = number
        .parse()
        .with_context(|| format!("size {text:?} has an invalid number"))?;
    let multiplier: f64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1e3,
        "m" | "mib" => MIB,
        "mb" => 1e6,
        "g" | "gib" => 1024.0 * MIB,
        "gb" => 1e9,
        "t" | "tib" => 1024.0 * 1024.0 * MIB,
        "tb" => 1e12,
        other => bail!("size {text:?} has an unknown unit {other:?}"),
    };
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        bail!("size {text:?} is out of range");
    }
    if bytes.fract() != 0.0 {
        bail!("size {text:?} is not a whole number of bytes");
    }
    Ok(bytes as u64)
}

/// Formats a byte count for labels: `100 B`, `1 KiB`, `512 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `bytes / seconds` in MB/s; zero when no time passed.
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / MB / seconds
    } else {
        0.0
    }
}

/// `seconds` per decimal GB of `bytes` (CPU s/GB); `None` when nothing was moved.
pub fn per_gb(seconds: f64, bytes: u64) -> Option<f64> {
    (bytes > 0).then(|| seconds / (bytes as f64 / GB))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_suffixed_sizes() {
        assert_eq!(parse_bytes("100").unwrap(), 100);
        assert_eq!(parse_bytes("1024B").unwrap(), 1024);
        assert_eq!(parse_bytes("1KiB").unwrap(), 1024);
        assert_eq!(parse_bytes("64k").unwrap(), 64 * 1024);
        assert_eq!(parse_bytes("512MiB").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_bytes("512mib").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_bytes("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_bytes(" 2 MB ").unwrap(), 2_000_000);
    }

    #[test]
    fn rejects_malformed_sizes() {
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("12parsecs").is_err());
        assert!(parse_bytes("1.5").is_err());
        assert!(parse_bytes("1.2.3MiB").is_err());
    }

    #[test]
    fn formats_sizes_for_labels() {
        assert_eq!(format_bytes(100), "100 B");
        assert_eq!(format_bytes(1024), "1 KiB");
        assert_eq!(format_bytes(512 << 20), "512 MiB");
        assert_eq!(format_bytes(1536), "1.5 KiB");
    }

    #[test]
    fn rates_are_decimal_megabytes() {
        assert_eq!(mb_per_s(2_000_000, 2.0), 1.0);
        assert_eq!(mb_per_s(1, 0.0), 0.0);
    }

    #[test]
    fn per_gb_divides_by_decimal_gigabytes() {
        assert_eq!(per_gb(1.0, 2_000_000_000), Some(0.5));
        assert_eq!(per_gb(3.0, 1_000_000_000), Some(3.0));
        // 1 GiB is 1.073741824 GB.
        let per_gib = per_gb(2.0, 1 << 30).unwrap();
        assert!((per_gib - 2.0 / 1.073_741_824).abs() < 1e-12, "{per_gib}");
        assert_eq!(per_gb(1.0, 0), None);
    }
}

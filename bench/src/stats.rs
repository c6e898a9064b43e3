//! Small order statistics over a handful of samples (rebalance rounds, commit
//! latencies): min / median / max and nearest-rank percentiles.

/// min, median and max of a sample set, in the samples' unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

/// Summarises `samples` (any order; NaNs are ignored); `None` when there are none.
/// The median of an even count is the mean of the two middle values.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    let sorted = sorted(samples);
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    Some(Summary {
        count: n,
        min: sorted[0],
        median,
        max: sorted[n - 1],
    })
}

/// Nearest-rank percentile (`p` in 0..=100) of `samples`; `None` when there are none.
/// p=0 is the minimum, p=100 the maximum.
#[cfg(test)]
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let sorted = sorted(samples);
    percentile_of_sorted(&sorted, p)
}

/// As [`percentile`], for samples already sorted ascending (no NaNs).
pub fn percentile_of_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = p.clamp(0.0, 100.0);
    // Nearest rank: the smallest value with at least p% of samples at or below it.
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// `samples` without NaNs, sorted ascending.
pub fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_has_no_summary_or_percentile() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(summarize(&[f64::NAN]), None);
    }

    #[test]
    fn odd_count_median_is_the_middle_value() {
        let s = summarize(&[5.0, 1.0, 3.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                count: 3,
                min: 1.0,
                median: 3.0,
                max: 5.0
            }
        );
    }

    #[test]
    fn even_count_median_is_the_mean_of_the_middle_two() {
        let s = summarize(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!((s.min, s.max, s.count), (1.0, 10.0, 4));
    }

    #[test]
    fn single_sample() {
        let s = summarize(&[7.5]).unwrap();
        assert_eq!((s.min, s.median, s.max), (7.5, 7.5, 7.5));
        assert_eq!(percentile(&[7.5], 99.0), Some(7.5));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 99.5), Some(100.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&samples, 0.0), Some(1.0));
        assert_eq!(percentile(&samples, 150.0), Some(100.0));
        // Ten samples: p99 is the largest, p50 the fifth.
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&ten, 99.0), Some(10.0));
        assert_eq!(percentile(&ten, 50.0), Some(5.0));
    }

    #[test]
    fn nans_are_ignored() {
        let s = summarize(&[f64::NAN, 2.0, 1.0]).unwrap();
        assert_eq!((s.count, s.median), (2, 1.5));
    }
}

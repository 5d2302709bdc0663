//! Uncertainty: percentile bootstrap 95% intervals for a mean (seeded ChaCha8, ≥ 1,000 resamples),
//! paired bootstrap intervals for the difference of two systems on the same examples and for a ratio of
//! paired differences, and a two-sided paired sign-flip permutation test.
//!
//! Percentiles interpolate linearly between order statistics (numpy's default).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The q-quantile (0..=1) of sorted values, linear interpolation.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn interval(mut stats: Vec<f64>) -> (f64, f64) {
    stats.retain(|x| x.is_finite());
    stats.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    (percentile(&stats, 0.025), percentile(&stats, 0.975))
}

/// 95% percentile-bootstrap interval of the mean of `v`.
pub fn mean_ci(v: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let stats = (0..resamples).map(|_| (0..n).map(|_| v[rng.gen_range(0..n)]).sum::<f64>() / n as f64).collect();
    interval(stats)
}

/// 95% paired-bootstrap interval of mean(a − b).
pub fn diff_ci(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    mean_ci(&d, resamples, seed)
}

/// Point estimate and 95% paired-bootstrap interval of (mean(c) − mean(b)) / (mean(a) − mean(b)), the
/// share of the A−B gap that C recovers. Resamples whose A−B gap is zero are left out (the ratio is
/// undefined there); their count is returned.
pub fn recovery_ci(a: &[f64], b: &[f64], c: &[f64], resamples: usize, seed: u64) -> (f64, (f64, f64), usize) {
    let n = a.len();
    let point = (mean(c) - mean(b)) / (mean(a) - mean(b));
    if n == 0 {
        return (f64::NAN, (f64::NAN, f64::NAN), 0);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut stats = Vec::with_capacity(resamples);
    let mut undefined = 0;
    for _ in 0..resamples {
        let (mut sa, mut sb, mut sc) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let i = rng.gen_range(0..n);
            sa += a[i];
            sb += b[i];
            sc += c[i];
        }
        if (sa - sb).abs() < 1e-12 {
            undefined += 1;
        } else {
            stats.push((sc - sb) / (sa - sb));
        }
    }
    (point, interval(stats), undefined)
}

/// Two-sided p-value of a paired sign-flip permutation test on mean(a − b), with the +1 correction
/// (never exactly 0).
pub fn paired_permutation_p(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    if d.is_empty() {
        return f64::NAN;
    }
    let observed = mean(&d).abs();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut extreme = 0usize;
    for _ in 0..resamples {
        let s: f64 = d.iter().map(|&x| if rng.gen::<bool>() { x } else { -x }).sum::<f64>() / d.len() as f64;
        if s.abs() >= observed - 1e-12 {
            extreme += 1;
        }
    }
    (extreme + 1) as f64 / (resamples + 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_brackets_the_mean_and_is_seeded() {
        let v: Vec<f64> = (0..200).map(|i| (i % 7) as f64 / 7.0).collect();
        let (lo, hi) = mean_ci(&v, 1000, 1);
        let m = mean(&v);
        assert!(lo < m && m < hi && hi - lo < 0.2);
        assert_eq!(mean_ci(&v, 1000, 1), (lo, hi));
    }

    #[test]
    fn permutation_test_separates_real_from_null_differences() {
        let a: Vec<f64> = (0..300).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
        let b: Vec<f64> = (0..300).map(|i| if i % 2 == 0 { 1.0 } else { 0.0 }).collect();
        assert!(paired_permutation_p(&a, &b, 2000, 3) < 0.01);
        assert!(paired_permutation_p(&a, &a, 2000, 3) > 0.99);
        let (p, (lo, hi), _) = recovery_ci(&b, &a, &b, 1000, 4);
        assert!((p - 1.0).abs() < 1e-12 && lo <= 1.0 && hi >= 1.0);
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.025), 1.1);
    }
}

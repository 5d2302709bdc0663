//! The statistics the verdicts rest on: a cluster bootstrap for every interval, a one-sided paired
//! sign-flip permutation test that flips whole clusters (exact when few clusters differ), equivalence by
//! two one-sided tests, and the verdict rule.
//!
//! Test items are not independent: several CosmosQA questions share one context, so every resample and
//! every sign flip treats a *context* (a cluster) as the unit. A test set of singletons reduces both to the
//! familiar item-level procedures.
//!
//! # The verdict rule (version [`RULE_VERSION`])
//!
//! For a hypothesis "mean(d) is on side S of 0" with one-sided level α and equivalence margin δ, where
//! `d` are per-item paired differences, `ci` the cluster-bootstrap interval at level 1 − 2α and `p` the
//! one-sided sign-flip p-value in direction S:
//!
//! * **supported**: `ci` lies wholly on side S (excluding 0) **and** `p ≤ α`;
//! * **not supported**: `ci` lies wholly on the other side;
//! * **equivalent**: `ci` lies within (−δ, δ) — two one-sided tests at level α (Schuirmann's TOST,
//!   which the (1 − 2α) interval inside the margin is equivalent to);
//! * **inconclusive**: anything else.
//!
//! A study whose reference model does not beat the best trivial baseline (itself a supported one-sided
//! test) has no power to tell models apart: every hypothesis is then **not testable**.
//!
//! Percentiles interpolate linearly between order statistics (numpy's default).
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The version of the verdict rule above; recorded in the pre-registration and checked by `compare`.
pub const RULE_VERSION: &str = "hsx-verdict-rule/2";

/// Up to this many differing clusters the sign-flip test enumerates all 2^m sign vectors exactly.
pub const EXACT_MAX_CLUSTERS: usize = 20;

/// Items grouped into clusters (e.g. test questions by context). Every item belongs to one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Clusters {
    groups: Vec<Vec<usize>>,
    items: usize,
}

impl Clusters {
    /// Groups items by key; clusters are ordered by first appearance of their key.
    pub fn from_keys<K: Ord + Clone>(keys: &[K]) -> Self {
        let mut index: BTreeMap<K, usize> = BTreeMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let g = *index.entry(k.clone()).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(i);
        }
        Self { groups, items: keys.len() }
    }

    /// Every item its own cluster (the item-level procedures).
    pub fn singletons(n: usize) -> Self {
        Self { groups: (0..n).map(|i| vec![i]).collect(), items: n }
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn items(&self) -> usize {
        self.items
    }

    pub fn groups(&self) -> &[Vec<usize>] {
        &self.groups
    }
}

/// JSON has no NaN: serde_json writes a non-finite float as null. This reads such a null back as NaN
/// (`#[serde(deserialize_with = "nan_if_null")]`), so a recorded interval that was undefined (a ratio's,
/// when no resample defined it) reads back as it was written.
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// A two-sided interval at `level` (e.g. 0.95).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    #[serde(deserialize_with = "nan_if_null")]
    pub lo: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub hi: f64,
    pub level: f64,
}

impl Interval {
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// How an interval was resampled: recorded beside every interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resampling {
    pub resamples: usize,
    pub seed: u64,
}

/// The q-quantile of sorted values with numpy's linear interpolation: one implementation for every
/// interval in hsx.
pub use super::bootstrap::percentile;

pub fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn percentile_interval(mut stats: Vec<f64>, level: f64) -> Interval {
    stats.retain(|x| x.is_finite());
    stats.sort_by(|a, b| a.total_cmp(b));
    let tail = (1.0 - level) / 2.0;
    Interval { lo: percentile(&stats, tail), hi: percentile(&stats, 1.0 - tail), level }
}

/// Draws one cluster-bootstrap resample: as many clusters as there are, with replacement.
fn draw(rng: &mut ChaCha8Rng, clusters: &Clusters) -> Vec<usize> {
    let m = clusters.len();
    (0..m).map(|_| rng.gen_range(0..m)).collect()
}

/// Per-cluster sums and sizes of several aligned per-item series.
fn cluster_sums(series: &[&[f64]], clusters: &Clusters) -> (Vec<Vec<f64>>, Vec<f64>) {
    let sums =
        series.iter().map(|v| clusters.groups.iter().map(|g| g.iter().map(|&i| v[i]).sum::<f64>()).collect()).collect();
    let sizes = clusters.groups.iter().map(|g| g.len() as f64).collect();
    (sums, sizes)
}

/// Cluster-bootstrap percentile interval of the item mean of `v`: each resample draws as many clusters
/// as there are, with replacement, and takes the mean over all items of the drawn clusters.
pub fn cluster_mean_ci(v: &[f64], clusters: &Clusters, level: f64, r: Resampling) -> Interval {
    if v.is_empty() || clusters.is_empty() {
        return Interval { lo: f64::NAN, hi: f64::NAN, level };
    }
    let (sums, sizes) = cluster_sums(&[v], clusters);
    let mut rng = ChaCha8Rng::seed_from_u64(r.seed);
    let stats = (0..r.resamples)
        .map(|_| {
            let (mut s, mut n) = (0.0, 0.0);
            for c in draw(&mut rng, clusters) {
                s += sums[0][c];
                n += sizes[c];
            }
            s / n
        })
        .collect();
    percentile_interval(stats, level)
}

/// The bootstrap distribution of the ratio (mean c − mean b) / (mean a − mean b) under the cluster
/// bootstrap, with the count of resamples where the denominator is 0 (undefined; left out). The
/// interval is *conditional* on a defined ratio, which the caller must say when it prints it.
pub fn cluster_ratio_ci(
    a: &[f64],
    b: &[f64],
    c: &[f64],
    clusters: &Clusters,
    level: f64,
    r: Resampling,
) -> (Interval, usize) {
    let (sums, _) = cluster_sums(&[a, b, c], clusters);
    let mut rng = ChaCha8Rng::seed_from_u64(r.seed);
    let mut stats = Vec::with_capacity(r.resamples);
    let mut undefined = 0;
    for _ in 0..r.resamples {
        let (mut sa, mut sb, mut sc) = (0.0, 0.0, 0.0);
        for k in draw(&mut rng, clusters) {
            sa += sums[0][k];
            sb += sums[1][k];
            sc += sums[2][k];
        }
        if (sa - sb).abs() < 1e-12 {
            undefined += 1;
        } else {
            stats.push((sc - sb) / (sa - sb));
        }
    }
    (percentile_interval(stats, level), undefined)
}

/// The two-stage (hierarchical) bootstrap over training replicates and test clusters: each resample
/// draws `R` replicates with replacement, then as many clusters as there are with replacement (one
/// cluster draw for every drawn replicate: the design is paired), and calls `f` with each replicate's
/// weight (how often it was drawn, over `R`) and the cluster draw. One stream per resample: the
/// replicate draw, then the cluster draw.
fn hierarchical_draws(replicates: usize, clusters: &Clusters, r: Resampling, mut f: impl FnMut(&[f64], &[usize])) {
    let mut rng = ChaCha8Rng::seed_from_u64(r.seed);
    let mut weights = vec![0.0; replicates];
    for _ in 0..r.resamples {
        weights.iter_mut().for_each(|w| *w = 0.0);
        for _ in 0..replicates {
            weights[rng.gen_range(0..replicates)] += 1.0 / replicates as f64;
        }
        let draw = draw(&mut rng, clusters);
        f(&weights, &draw);
    }
}

/// Hierarchical percentile interval of the across-replicate item mean: `reps[j]` is replicate j's
/// per-item series (aligned with the test items). Each resample's statistic is the mean over the drawn
/// replicates of the mean over the drawn clusters' items ([`hierarchical_draws`]), so the interval covers
/// both the test-set sampling and the variance between training seeds. Its point estimate is the mean
/// of the per-item replicate means, [`replicate_mean`].
pub fn hierarchical_mean_ci(reps: &[&[f64]], clusters: &Clusters, level: f64, r: Resampling) -> Interval {
    if reps.is_empty() || reps[0].is_empty() || clusters.is_empty() {
        return Interval { lo: f64::NAN, hi: f64::NAN, level };
    }
    let (sums, sizes) = cluster_sums(reps, clusters);
    let mut stats = Vec::with_capacity(r.resamples);
    hierarchical_draws(reps.len(), clusters, r, |w, draw| {
        let (mut s, mut n) = (0.0, 0.0);
        for &c in draw {
            s += w.iter().zip(&sums).map(|(w, sj)| w * sj[c]).sum::<f64>();
            n += sizes[c];
        }
        stats.push(s / n);
    });
    percentile_interval(stats, level)
}

/// The hierarchical bootstrap of the recovery ratio (mean c − mean b) / (mean a − mean b), each mean
/// over the drawn replicates and clusters (replicate j of a, b and c drawn together), with the count of
/// undefined resamples (A−B = 0), as [`cluster_ratio_ci`].
pub fn hierarchical_ratio_ci(
    a: &[&[f64]],
    b: &[&[f64]],
    c: &[&[f64]],
    clusters: &Clusters,
    level: f64,
    r: Resampling,
) -> (Interval, usize) {
    let sums: Vec<Vec<Vec<f64>>> = [a, b, c].iter().map(|x| cluster_sums(x, clusters).0).collect();
    let reps = a.len();
    let mut stats = Vec::with_capacity(r.resamples);
    let mut undefined = 0;
    hierarchical_draws(reps, clusters, r, |w, draw| {
        let mut s = [0.0; 3];
        for &k in draw {
            for (t, series) in s.iter_mut().zip(&sums) {
                *t += w.iter().zip(series).map(|(w, sj)| w * sj[k]).sum::<f64>();
            }
        }
        if (s[0] - s[1]).abs() < 1e-12 {
            undefined += 1;
        } else {
            stats.push((s[2] - s[1]) / (s[0] - s[1]));
        }
    });
    (percentile_interval(stats, level), undefined)
}

/// The per-item mean over replicates (`reps[j][i]`: replicate j, item i).
pub fn replicate_mean(reps: &[&[f64]]) -> Vec<f64> {
    let n = reps.first().map_or(0, |v| v.len());
    (0..n).map(|i| reps.iter().map(|v| v[i]).sum::<f64>() / reps.len() as f64).collect()
}

/// A paired contrast across replicates: `reps[j]` is replicate j's per-item differences. The estimate
/// is the mean of the per-item replicate means; the interval is [`hierarchical_mean_ci`] (test-set
/// sampling and seed variance); the sign-flip test is [`sign_flip_test`] on the replicate-mean
/// differences with `test` (test-set sampling only: a verdict needs both).
pub fn hierarchical_contrast(
    reps: &[&[f64]],
    clusters: &Clusters,
    side: Side,
    rule: RuleParams,
    boot: Resampling,
    test: Resampling,
) -> Contrast {
    let d = replicate_mean(reps);
    Contrast {
        estimate: mean(&d),
        ci: hierarchical_mean_ci(reps, clusters, rule.interval_level(), boot),
        test: sign_flip_test(&d, clusters, side, test),
        side,
    }
}

/// Which side of zero a hypothesis puts mean(d) on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Greater,
    Less,
}

/// A one-sided sign-flip permutation test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SignFlip {
    /// One-sided p-value in the hypothesised direction.
    pub p: f64,
    /// Test items whose paired difference is not zero.
    pub k: usize,
    /// Clusters whose summed difference is not zero (the units that are flipped).
    pub clusters_differing: usize,
    /// Exact enumeration of all 2^m sign vectors, or Monte Carlo with `resamples` draws.
    pub exact: bool,
    pub resamples: usize,
}

/// One-sided paired sign-flip permutation test of mean(d) on `side` of 0: under the null each cluster's
/// summed difference is symmetric about 0, so its sign is flipped at random. Exact (p = share of all
/// 2^m sign vectors at least as extreme) when m ≤ [`EXACT_MAX_CLUSTERS`] clusters differ, else Monte
/// Carlo with the +1 correction (never exactly 0).
pub fn sign_flip_test(d: &[f64], clusters: &Clusters, side: Side, r: Resampling) -> SignFlip {
    let k = d.iter().filter(|x| **x != 0.0).count();
    let (sums, _) = cluster_sums(&[d], clusters);
    let s: Vec<f64> = sums[0].iter().copied().filter(|x| *x != 0.0).collect();
    let m = s.len();
    let orient = |t: f64| if side == Side::Greater { t } else { -t };
    let observed = orient(s.iter().sum::<f64>());
    // Ties within float noise count as extreme.
    let tol = 1e-9 * s.iter().map(|x| x.abs()).sum::<f64>().max(1.0);
    if m == 0 {
        return SignFlip { p: 1.0, k, clusters_differing: 0, exact: true, resamples: 0 };
    }
    if m <= EXACT_MAX_CLUSTERS {
        let total = 1u64 << m;
        let mut extreme = 0u64;
        for mask in 0..total {
            let t: f64 = s.iter().enumerate().map(|(j, x)| if mask >> j & 1 == 1 { -x } else { *x }).sum();
            if orient(t) >= observed - tol {
                extreme += 1;
            }
        }
        return SignFlip {
            p: extreme as f64 / total as f64,
            k,
            clusters_differing: m,
            exact: true,
            resamples: total as usize,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(r.seed);
    let mut extreme = 0usize;
    for _ in 0..r.resamples {
        let t: f64 = s.iter().map(|&x| if rng.gen::<bool>() { x } else { -x }).sum();
        if orient(t) >= observed - tol {
            extreme += 1;
        }
    }
    SignFlip {
        p: (extreme + 1) as f64 / (r.resamples + 1) as f64,
        k,
        clusters_differing: m,
        exact: false,
        resamples: r.resamples,
    }
}

/// The outcome of testing one hypothesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Supported,
    NotSupported,
    Equivalent,
    Inconclusive,
    NotTestable,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::NotSupported => "not supported",
            Verdict::Equivalent => "equivalent",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotTestable => "not testable",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The registered constants of the rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RuleParams {
    /// One-sided level α; intervals are at 1 − 2α.
    pub alpha: f64,
    /// Equivalence margin δ on the metric's scale.
    pub margin: f64,
}

impl RuleParams {
    pub fn interval_level(&self) -> f64 {
        1.0 - 2.0 * self.alpha
    }
}

/// The verdict rule of the module documentation, for a directional hypothesis.
pub fn directional_verdict(ci: Interval, test: &SignFlip, side: Side, rule: RuleParams) -> Verdict {
    let (toward, away) = match side {
        Side::Greater => (ci.lo > 0.0, ci.hi < 0.0),
        Side::Less => (ci.hi < 0.0, ci.lo > 0.0),
    };
    if toward && test.p <= rule.alpha {
        Verdict::Supported
    } else if away {
        Verdict::NotSupported
    } else if equivalent(ci, rule) {
        Verdict::Equivalent
    } else {
        Verdict::Inconclusive
    }
}

/// TOST at level α: the (1 − 2α) interval lies strictly inside (−δ, δ).
pub fn equivalent(ci: Interval, rule: RuleParams) -> bool {
    ci.lo > -rule.margin && ci.hi < rule.margin
}

/// Everything about one paired contrast mean(d): its estimate, clustered interval and one-sided test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Contrast {
    pub estimate: f64,
    pub ci: Interval,
    pub test: SignFlip,
    pub side: Side,
}

/// Estimates and tests mean(d) on `side` of zero with clustered resampling.
pub fn contrast(d: &[f64], clusters: &Clusters, side: Side, rule: RuleParams, r: Resampling) -> Contrast {
    Contrast {
        estimate: mean(d),
        ci: cluster_mean_ci(d, clusters, rule.interval_level(), r),
        test: sign_flip_test(d, clusters, side, r),
        side,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Resampling = Resampling { resamples: 10_000, seed: 7 };
    const RULE: RuleParams = RuleParams { alpha: 0.025, margin: 0.02 };

    fn ci(lo: f64, hi: f64) -> Interval {
        Interval { lo, hi, level: 0.95 }
    }

    fn test_with_p(p: f64) -> SignFlip {
        SignFlip { p, k: 10, clusters_differing: 10, exact: true, resamples: 1024 }
    }

    #[test]
    fn four_items_all_one_way_are_not_supported_at_alpha_0025() {
        // k = 4 differing items, all in the hypothesised direction: exact one-sided p = 1/16.
        let mut d = vec![0.0; 500];
        d[..4].copy_from_slice(&[0.5, 0.2, 0.7, 0.1]);
        let c = contrast(&d, &Clusters::singletons(500), Side::Greater, RULE, R);
        assert_eq!(c.test.k, 4);
        assert!(c.test.exact);
        assert_eq!(c.test.p, 1.0 / 16.0);
        // The percentile interval may well exclude 0 — the test is what keeps the verdict honest.
        assert_ne!(directional_verdict(c.ci, &c.test, Side::Greater, RULE), Verdict::Supported);
        // Six all one way: p = 1/64 < 0.025, and the interval excludes 0: supported.
        d[4] = 0.3;
        d[5] = 0.4;
        let c = contrast(&d, &Clusters::singletons(500), Side::Greater, RULE, R);
        assert_eq!(c.test.p, 1.0 / 64.0);
        assert!(c.ci.lo > 0.0, "{:?}", c.ci);
        assert_eq!(directional_verdict(c.ci, &c.test, Side::Greater, RULE), Verdict::Supported);
    }

    #[test]
    fn verdict_boundaries() {
        let g = Side::Greater;
        // Interval wholly above 0 and p ≤ α.
        assert_eq!(directional_verdict(ci(0.001, 0.05), &test_with_p(0.025), g, RULE), Verdict::Supported);
        // p just above α: not supported, even with the interval above 0.
        assert_eq!(directional_verdict(ci(0.001, 0.05), &test_with_p(0.0251), g, RULE), Verdict::Inconclusive);
        // An interval touching 0 is not wholly on either side.
        assert_eq!(directional_verdict(ci(0.0, 0.05), &test_with_p(0.001), g, RULE), Verdict::Inconclusive);
        // Wholly on the other side.
        assert_eq!(directional_verdict(ci(-0.05, -0.001), &test_with_p(0.99), g, RULE), Verdict::NotSupported);
        assert_eq!(directional_verdict(ci(0.001, 0.05), &test_with_p(0.99), Side::Less, RULE), Verdict::NotSupported);
        // Inside the margin on both sides: equivalent; touching the margin: inconclusive.
        assert_eq!(directional_verdict(ci(-0.019, 0.019), &test_with_p(0.4), g, RULE), Verdict::Equivalent);
        assert_eq!(directional_verdict(ci(-0.02, 0.019), &test_with_p(0.4), g, RULE), Verdict::Inconclusive);
        assert_eq!(directional_verdict(ci(-0.05, 0.05), &test_with_p(0.4), g, RULE), Verdict::Inconclusive);
    }

    #[test]
    fn clustered_interval_is_wider_when_clusters_are_homogeneous() {
        // 50 clusters of 8 identical values: really 50 observations, not 400.
        let v: Vec<f64> = (0..400).map(|i| ((i / 8) % 5) as f64 / 4.0).collect();
        let keys: Vec<usize> = (0..400).map(|i| i / 8).collect();
        let wide = cluster_mean_ci(&v, &Clusters::from_keys(&keys), 0.95, R);
        let narrow = cluster_mean_ci(&v, &Clusters::singletons(400), 0.95, R);
        let ratio = (wide.hi - wide.lo) / (narrow.hi - narrow.lo);
        assert!((2.4..3.3).contains(&ratio), "width ratio {ratio} (√8 ≈ 2.83 expected)");
        assert!(wide.contains(mean(&v)));
        assert_eq!(cluster_mean_ci(&v, &Clusters::from_keys(&keys), 0.95, R), wide, "not seeded");
    }

    #[test]
    fn sign_flip_flips_whole_clusters() {
        // Two clusters of five positive items: only 2^2 sign vectors; p = 1/4.
        let d = vec![0.1; 10];
        let keys: Vec<usize> = (0..10).map(|i| i / 5).collect();
        let t = sign_flip_test(&d, &Clusters::from_keys(&keys), Side::Greater, R);
        assert_eq!((t.k, t.clusters_differing, t.p), (10, 2, 0.25));
        // Monte Carlo beyond the exact limit, never exactly zero.
        let d: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { 0.3 } else { 0.1 }).collect();
        let t = sign_flip_test(&d, &Clusters::singletons(100), Side::Greater, R);
        assert!(!t.exact && t.p > 0.0 && t.p < 0.001, "{t:?}");
        let t = sign_flip_test(&d, &Clusters::singletons(100), Side::Less, R);
        assert!(t.p > 0.999, "{t:?}");
    }

    /// 100 clusters of 2 items; replicate j adds `shift[j]` to every item.
    fn replicated(shifts: &[f64]) -> (Vec<Vec<f64>>, Clusters) {
        let base: Vec<f64> = (0..200).map(|i| ((i * 7) % 11) as f64 / 10.0).collect();
        let reps = shifts.iter().map(|s| base.iter().map(|x| x + s).collect()).collect();
        (reps, Clusters::from_keys(&(0..200).map(|i| i / 2).collect::<Vec<_>>()))
    }

    #[test]
    fn hierarchical_interval_widens_with_seed_variance_only() {
        let width = |iv: Interval| iv.hi - iv.lo;
        // Agreeing replicates: the same series twice gives the one-replicate interval's width.
        let (reps, cl) = replicated(&[0.0, 0.0]);
        let refs: Vec<&[f64]> = reps.iter().map(Vec::as_slice).collect();
        let one = cluster_mean_ci(&reps[0], &cl, 0.95, R);
        let agree = hierarchical_mean_ci(&refs, &cl, 0.95, R);
        let r = width(agree) / width(one);
        assert!((0.9..1.1).contains(&r), "agreeing replicates: width ratio {r}");
        // Disagreeing replicates (one 0.2 above the other): much wider, and around the replicate mean.
        let (reps, cl) = replicated(&[0.0, 0.2]);
        let refs: Vec<&[f64]> = reps.iter().map(Vec::as_slice).collect();
        let disagree = hierarchical_mean_ci(&refs, &cl, 0.95, R);
        assert!(width(disagree) > 2.0 * width(one), "{disagree:?} vs {one:?}");
        let m = mean(&replicate_mean(&refs));
        assert!(disagree.contains(m) && (m - mean(&reps[0]) - 0.1).abs() < 1e-12);
        // Two replicates: a quarter of the resamples draw replicate 0 twice, a quarter replicate 1 twice.
        assert!(disagree.lo < mean(&reps[0]) && disagree.hi > mean(&reps[1]), "{disagree:?}");
        assert_eq!(hierarchical_mean_ci(&refs, &cl, 0.95, R), disagree, "not seeded");
    }

    #[test]
    fn hierarchical_ratio_is_the_ratio_of_replicate_means() {
        let (a, cl) = replicated(&[0.5, 0.5]);
        let (b, _) = replicated(&[0.0, 0.0]);
        let (c, _) = replicated(&[0.25, 0.25]);
        fn refs(v: &[Vec<f64>]) -> Vec<&[f64]> {
            v.iter().map(Vec::as_slice).collect()
        }
        let (iv, undefined) = hierarchical_ratio_ci(&refs(&a), &refs(&b), &refs(&c), &cl, 0.95, R);
        assert_eq!(undefined, 0);
        assert!((iv.lo - 0.5).abs() < 1e-9 && (iv.hi - 0.5).abs() < 1e-9, "{iv:?}");
    }

    #[test]
    fn ratio_interval_counts_undefined_resamples() {
        let a = vec![1.0, 0.0, 0.0, 0.0];
        let b = vec![0.0; 4];
        let c = vec![0.5, 0.0, 0.0, 0.0];
        let (iv, undefined) = cluster_ratio_ci(&a, &b, &c, &Clusters::singletons(4), 0.95, R);
        // P(item 0 never drawn in 4 draws) = (3/4)^4 ≈ 0.316.
        let share = undefined as f64 / R.resamples as f64;
        assert!((share - 0.316).abs() < 0.02, "{share}");
        assert_eq!((iv.lo, iv.hi), (0.5, 0.5));
    }
}

//! The pre-registered analysis, from per-item scores to verdicts: every model's and baseline's mean
//! with a clustered interval, the power check (does model A beat the best trivial baseline?), and each
//! hypothesis of the plan tested on every metric — the primary metric decides, the others are exploratory.
//!
//! Pure computation: the `compare` stage reads the scores, calls [`analyse`] with the plan from the
//! pre-registration, and writes the result; the report renders it.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::metrics::stats::{
    cluster_mean_ci, cluster_ratio_ci, contrast, directional_verdict, equivalent, hierarchical_contrast,
    hierarchical_mean_ci, hierarchical_ratio_ci, mean, replicate_mean, sign_flip_test, Clusters, Contrast, Interval,
    Resampling, RuleParams, Side, Verdict,
};
use crate::prereg::{AnalysisPlan, Claim, ContrastKind};

mod breakdown;
mod differences;
pub use breakdown::*;
pub use differences::*;

/// Per-item scores of one system (a model or a baseline), by metric key, aligned with the test split.
pub type Scores = BTreeMap<String, Vec<f64>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanSummary {
    pub system: String,
    pub metric: String,
    pub mean: f64,
    pub ci: Interval,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerCheck {
    pub metric: String,
    /// The baseline with the highest mean on the primary metric.
    pub best_baseline: String,
    /// Model A − that baseline, one-sided in A's favour.
    pub contrast: Contrast,
    pub verdict: Verdict,
    /// Whether A beat it (the verdict is *supported*): the hypotheses are testable.
    pub passed: bool,
}

/// The recovery ratio (C−B)/(A−B), reported only where H1 is supported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    #[serde(deserialize_with = "crate::metrics::stats::nan_if_null")]
    pub estimate: f64,
    /// Conditional on resamples where A−B ≠ 0.
    pub ci: Interval,
    pub undefined_resamples: usize,
    pub resamples: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HypothesisResult {
    pub id: String,
    pub statement: String,
    pub metric: String,
    /// The primary metric decides; the others are exploratory.
    pub primary: bool,
    pub contrast_label: String,
    pub contrast: Contrast,
    pub verdict: Verdict,
    pub ratio: Option<Ratio>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisResult {
    pub resample_unit: String,
    pub clusters: usize,
    pub items: usize,
    pub means: Vec<MeanSummary>,
    pub power: PowerCheck,
    pub hypotheses: Vec<HypothesisResult>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AnalysisError {
    #[error("no scores for {system} on metric {metric}")]
    Missing { system: String, metric: String },
    #[error("{system}'s {metric} has {got} items, the test split {expected}")]
    Length { system: String, metric: String, got: usize, expected: usize },
    #[error("no trivial baseline was scored")]
    NoBaseline,
    #[error("{system} has {got} replicates, the others {expected}")]
    Replicates { system: String, got: usize, expected: usize },
}

/// A seed per computation, so that adding one never shifts another's random stream.
fn sub_seed(seed: u64, tag: &str) -> u64 {
    let d = crate::canonical::sha256_hex(format!("{seed}/{tag}").as_bytes());
    u64::from_str_radix(&d[..16], 16).unwrap_or(seed)
}

/// Runs the plan on the scores. `models` holds A, B and C (and any other model, e.g. the zero-shot
/// base model "0"); `baselines` the trivial baselines; `clusters` groups the test items by the plan's
/// resampling unit; `seed` is the compare stage's seed.
pub fn analyse(
    plan: &AnalysisPlan,
    models: &BTreeMap<String, Scores>,
    baselines: &BTreeMap<String, Scores>,
    clusters: &Clusters,
    seed: u64,
) -> Result<AnalysisResult, AnalysisError> {
    let one: ReplicatedScores = models.iter().map(|(k, v)| (k.clone(), vec![v.clone()])).collect();
    analyse_replicated(plan, &one, baselines, clusters, seed)
}

/// Per-item scores of each system by replicate: `Vec` of one [`Scores`] for a system trained once (or
/// not trained: model 0, the baselines), of one per training seed for a replicated (fine-tuned) model,
/// in the order of the seeds. Replicate j of every replicated model shares training seed j.
pub type ReplicatedScores = BTreeMap<String, Vec<Scores>>;

/// What the across-replicate intervals and tests cover, as the compare entry records it.
pub const ACROSS_INTERVAL_METHOD: &str = "two-stage (hierarchical) percentile bootstrap: each resample draws the training replicates with replacement, then the test clusters with replacement (one cluster draw for all drawn replicates), and takes the mean over the drawn replicates of the mean over the drawn clusters' items; it covers test-set sampling and the variance between training seeds";
pub const ACROSS_TEST_METHOD: &str = "one-sided sign-flip permutation test on the per-item replicate-mean differences, flipping whole clusters; it covers test-set sampling only (the training seeds are fixed)";

/// The number of replicates of `models`: the most any system has (1 when none is replicated). Every
/// system must have 1 or that many.
pub fn replicate_count(models: &ReplicatedScores) -> Result<usize, AnalysisError> {
    let r = models.values().map(Vec::len).max().unwrap_or(1).max(1);
    for (system, v) in models {
        if v.len() != 1 && v.len() != r {
            return Err(AnalysisError::Replicates { system: system.clone(), got: v.len(), expected: r });
        }
    }
    Ok(r)
}

/// Replicate `j`'s scores of every system (a system trained once gives its one set to every replicate).
pub fn replicate(models: &ReplicatedScores, j: usize) -> BTreeMap<String, Scores> {
    models.iter().map(|(k, v)| (k.clone(), v[j.min(v.len() - 1)].clone())).collect()
}

/// The pre-registered analysis across training replicates. With one replicate it is the one-seed
/// analysis ([`analyse`]: cluster-bootstrap intervals, sign-flip tests). With several, on the same plan:
///
/// * every replicated model's mean is the mean of its per-item replicate means, with a
///   [`hierarchical_mean_ci`] interval (seed `replicates/mean/model/<system>/<metric>`); a system
///   trained once (model 0, the baselines) keeps [`analyse`]'s cluster-bootstrap mean and interval;
/// * the power check, every hypothesis contrast and the recovery ratio are [`hierarchical_contrast`]s
///   and [`hierarchical_ratio_ci`] of the per-replicate paired differences (seeds prefixed
///   `replicates/`); their sign-flip test runs on the replicate-mean differences;
/// * the verdict rule is [`analyse`]'s, on the hierarchical interval and that test: a verdict needs both.
pub fn analyse_replicated(
    plan: &AnalysisPlan,
    models: &ReplicatedScores,
    baselines: &BTreeMap<String, Scores>,
    clusters: &Clusters,
    seed: u64,
) -> Result<AnalysisResult, AnalysisError> {
    let reps = replicate_count(models)?;
    // One replicate: the one-seed analysis (cluster bootstrap, the original random streams). Several:
    // the two-stage bootstrap, with streams of their own (`replicates/…`).
    let one = reps == 1;
    let n = clusters.items();
    let metrics: Vec<String> =
        std::iter::once(plan.primary_metric.clone()).chain(plan.secondary_metrics.iter().cloned()).collect();
    for (system, sets) in models {
        for scores in sets {
            for (metric, v) in scores {
                if v.len() != n {
                    return Err(AnalysisError::Length {
                        system: system.clone(),
                        metric: metric.clone(),
                        got: v.len(),
                        expected: n,
                    });
                }
            }
        }
    }
    for (system, scores) in baselines {
        for (metric, v) in scores {
            if v.len() != n {
                return Err(AnalysisError::Length {
                    system: system.clone(),
                    metric: metric.clone(),
                    got: v.len(),
                    expected: n,
                });
            }
        }
    }
    // Replicate j's series of a system on a metric, for j in 0..reps (broadcast when trained once).
    let series = |system: &str, metric: &str| -> Result<Vec<&[f64]>, AnalysisError> {
        let sets = models
            .get(system)
            .ok_or_else(|| AnalysisError::Missing { system: system.into(), metric: metric.into() })?;
        (0..reps)
            .map(|j| {
                sets[j.min(sets.len() - 1)]
                    .get(metric)
                    .map(Vec::as_slice)
                    .ok_or_else(|| AnalysisError::Missing { system: system.into(), metric: metric.into() })
            })
            .collect()
    };
    let baseline = |system: &str, metric: &str| -> Result<&[f64], AnalysisError> {
        baselines
            .get(system)
            .and_then(|s| s.get(metric))
            .map(Vec::as_slice)
            .ok_or_else(|| AnalysisError::Missing { system: system.into(), metric: metric.into() })
    };
    let rule = RuleParams { alpha: plan.alpha, margin: plan.equivalence_margin };
    let level = rule.interval_level();
    let stream = |tag: &str| if one { sub_seed(seed, tag) } else { sub_seed(seed, &format!("replicates/{tag}")) };
    let boot = |tag: &str| Resampling { resamples: plan.bootstrap_resamples, seed: stream(tag) };
    let perm = |tag: &str| Resampling { resamples: plan.permutation_resamples, seed: stream(tag) };
    // A system scored once (a baseline, model 0, or any model of a one-replicate run): the one-seed
    // cluster bootstrap on its own stream, the same with or without replicates.
    let once_boot = |tag: &str| Resampling { resamples: plan.bootstrap_resamples, seed: sub_seed(seed, tag) };
    // A paired contrast of the per-replicate differences `d`: its interval, and the sign-flip test on
    // the replicate-mean differences.
    let paired = |d: &[&[f64]], side: Side, btag: &str, ptag: &str| -> Contrast {
        if one {
            let mut c = contrast(d[0], clusters, side, rule, boot(btag));
            c.test = sign_flip_test(d[0], clusters, side, perm(ptag));
            c
        } else {
            hierarchical_contrast(d, clusters, side, rule, boot(btag), perm(ptag))
        }
    };

    let mut means = Vec::new();
    for (system, sets) in models {
        for m in &metrics {
            if sets.iter().all(|s| s.contains_key(m)) {
                if sets.len() == 1 {
                    let v = &sets[0][m];
                    let ci = cluster_mean_ci(v, clusters, level, once_boot(&format!("mean/model/{system}/{m}")));
                    means.push(MeanSummary { system: system.clone(), metric: m.clone(), mean: mean(v), ci });
                } else {
                    let r: Vec<&[f64]> = sets.iter().map(|s| s[m].as_slice()).collect();
                    let ci = hierarchical_mean_ci(&r, clusters, level, boot(&format!("mean/model/{system}/{m}")));
                    means.push(MeanSummary {
                        system: system.clone(),
                        metric: m.clone(),
                        mean: mean(&replicate_mean(&r)),
                        ci,
                    });
                }
            }
        }
    }
    for (system, scores) in baselines {
        for m in &metrics {
            if let Some(v) = scores.get(m) {
                let ci = cluster_mean_ci(v, clusters, level, once_boot(&format!("mean/baseline/{system}/{m}")));
                means.push(MeanSummary { system: system.clone(), metric: m.clone(), mean: mean(v), ci });
            }
        }
    }

    // Power: A (across replicates) against the best baseline (trained once) on the primary metric.
    let pm = &plan.primary_metric;
    let mut best: Option<(String, f64)> = None;
    for system in baselines.keys() {
        let m = mean(baseline(system, pm)?);
        if best.as_ref().is_none_or(|(_, bm)| m > *bm) {
            best = Some((system.clone(), m));
        }
    }
    let (best_baseline, _) = best.ok_or(AnalysisError::NoBaseline)?;
    let base = baseline(&best_baseline, pm)?;
    let d: Vec<Vec<f64>> = series("A", pm)?.iter().map(|a| a.iter().zip(base).map(|(x, y)| x - y).collect()).collect();
    let dr: Vec<&[f64]> = d.iter().map(Vec::as_slice).collect();
    let c = paired(&dr, Side::Greater, "power", "power/test");
    let verdict = directional_verdict(c.ci, &c.test, Side::Greater, rule);
    let power =
        PowerCheck { metric: pm.clone(), best_baseline, contrast: c, verdict, passed: verdict == Verdict::Supported };

    let mut hypotheses = Vec::new();
    for m in &metrics {
        let (a, b, cc) = (series("A", m)?, series("B", m)?, series("C", m)?);
        let mut h1_supported = false;
        for h in &plan.hypotheses {
            let d: Vec<Vec<f64>> =
                (0..reps).map(|j| (0..n).map(|i| h.contrast.of(a[j][i], b[j][i], cc[j][i])).collect()).collect();
            let dr: Vec<&[f64]> = d.iter().map(Vec::as_slice).collect();
            let tag = format!("{}/{m}", h.id);
            let side = match h.claim {
                Claim::Directional(side) => side,
                Claim::Equivalence => Side::Less,
            };
            let c = paired(&dr, side, &tag, &format!("{tag}/test"));
            let mut verdict = verdict_of(h.claim, &c, rule);
            if !power.passed {
                verdict = Verdict::NotTestable;
            }
            if h.contrast == ContrastKind::AMinusB {
                h1_supported = verdict == Verdict::Supported;
            }
            let ratio = (h.contrast == ContrastKind::CMinusMidpoint && h1_supported).then(|| {
                let r = boot(&format!("{tag}/ratio"));
                let (ci, undefined) = if one {
                    cluster_ratio_ci(a[0], b[0], cc[0], clusters, level, r)
                } else {
                    hierarchical_ratio_ci(&a, &b, &cc, clusters, level, r)
                };
                let (ma, mb, mc) = if one {
                    (mean(a[0]), mean(b[0]), mean(cc[0]))
                } else {
                    (mean(&replicate_mean(&a)), mean(&replicate_mean(&b)), mean(&replicate_mean(&cc)))
                };
                Ratio { estimate: (mc - mb) / (ma - mb), ci, undefined_resamples: undefined, resamples: r.resamples }
            });
            hypotheses.push(HypothesisResult {
                id: h.id.clone(),
                statement: h.statement.clone(),
                metric: m.clone(),
                primary: m == pm,
                contrast_label: h.contrast.label().into(),
                contrast: c,
                verdict,
                ratio,
            });
        }
    }
    Ok(AnalysisResult {
        resample_unit: plan.cluster_unit.clone(),
        clusters: clusters.len(),
        items: n,
        means,
        power,
        hypotheses,
    })
}

/// The verdict rule for a hypothesis's claim (before the power check).
fn verdict_of(claim: Claim, c: &Contrast, rule: RuleParams) -> Verdict {
    match claim {
        Claim::Directional(side) => directional_verdict(c.ci, &c.test, side, rule),
        Claim::Equivalence => {
            if equivalent(c.ci, rule) {
                Verdict::Equivalent
            } else if c.ci.hi < 0.0 && c.test.p <= rule.alpha {
                Verdict::NotSupported
            } else {
                Verdict::Inconclusive
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Analysis;

    fn plan() -> AnalysisPlan {
        let a = Analysis { bootstrap_resamples: 2000, permutation_resamples: 2000, ..Analysis::default() };
        AnalysisPlan::new(&a, &["f1"], "sha")
    }

    fn scores(v: Vec<f64>) -> Scores {
        BTreeMap::from([("f1".to_string(), v)])
    }

    /// 200 items in 100 clusters of 2; A good, B bad, C as given; the baseline weak.
    fn run(c: impl Fn(usize) -> f64, baseline: f64) -> AnalysisResult {
        let n = 200;
        let a: Vec<f64> = (0..n).map(|i| 0.6 + 0.2 * ((i % 5) as f64 - 2.0) / 2.0).collect();
        let b: Vec<f64> = (0..n).map(|i| 0.3 + 0.2 * ((i % 7) as f64 - 3.0) / 3.0).collect();
        let models = BTreeMap::from([
            ("A".into(), scores(a)),
            ("B".into(), scores(b)),
            ("C".into(), scores((0..n).map(c).collect())),
        ]);
        let baselines = BTreeMap::from([
            ("constant".into(), scores(vec![baseline; n])),
            ("question".into(), scores(vec![baseline / 2.0; n])),
        ]);
        let keys: Vec<usize> = (0..n).map(|i| i / 2).collect();
        analyse(&plan(), &models, &baselines, &Clusters::from_keys(&keys), 42).unwrap()
    }

    fn verdict(r: &AnalysisResult, id: &str) -> Verdict {
        r.hypotheses.iter().find(|h| h.id == id && h.primary).unwrap().verdict
    }

    #[test]
    fn full_recovery_supports_h1_to_h3_and_h4_is_equivalent() {
        let r = run(|i| 0.6 + 0.2 * ((i % 5) as f64 - 2.0) / 2.0 + 0.001, 0.1);
        assert!(r.power.passed && r.power.best_baseline == "constant");
        assert_eq!(verdict(&r, "H1"), Verdict::Supported);
        assert_eq!(verdict(&r, "H2"), Verdict::Supported);
        assert_eq!(verdict(&r, "H3"), Verdict::Supported);
        assert_eq!(verdict(&r, "H4"), Verdict::Equivalent);
        let ratio = r.hypotheses.iter().find(|h| h.id == "H3").unwrap().ratio.as_ref().unwrap();
        assert!((ratio.estimate - 1.0).abs() < 0.01 && ratio.undefined_resamples == 0);
    }

    #[test]
    fn c_like_b_fails_h2_h3_and_a_beats_c() {
        let r = run(|i| 0.3 + 0.2 * ((i % 7) as f64 - 3.0) / 3.0, 0.1);
        assert_eq!(verdict(&r, "H1"), Verdict::Supported);
        assert_eq!(verdict(&r, "H2"), Verdict::Equivalent);
        assert_eq!(verdict(&r, "H3"), Verdict::NotSupported);
        assert_eq!(verdict(&r, "H4"), Verdict::NotSupported);
    }

    #[test]
    fn a_below_the_best_baseline_makes_everything_not_testable() {
        let r = run(|i| 0.6 + 0.01 * (i % 3) as f64, 0.7);
        assert!(!r.power.passed);
        assert!(
            r.hypotheses.iter().all(|h| h.verdict == Verdict::NotTestable),
            "{:?}",
            r.hypotheses.iter().map(|h| h.verdict).collect::<Vec<_>>()
        );
        // H3's ratio needs a supported H1: none is reported.
        assert!(r.hypotheses.iter().all(|h| h.ratio.is_none()));
    }

    #[test]
    fn h3_gets_no_ratio_when_h1_fails() {
        // A equal to B item by item: H1 cannot be supported (no item differs, p = 1), so the recovery
        // ratio (C−B)/(A−B) is not reported, while H3's contrast is still tested on its own.
        let n = 200;
        let a: Vec<f64> = (0..n).map(|i| 0.6 + 0.2 * ((i % 5) as f64 - 2.0) / 2.0).collect();
        let c: Vec<f64> = a.iter().map(|x| x + 0.1).collect();
        let models =
            BTreeMap::from([("A".into(), scores(a.clone())), ("B".into(), scores(a)), ("C".into(), scores(c))]);
        let baselines = BTreeMap::from([("constant".into(), scores(vec![0.1; n]))]);
        let keys: Vec<usize> = (0..n).map(|i| i / 2).collect();
        let r = analyse(&plan(), &models, &baselines, &Clusters::from_keys(&keys), 7).unwrap();
        assert!(r.power.passed);
        let h1 = r.hypotheses.iter().find(|h| h.id == "H1").unwrap();
        assert_eq!((h1.verdict, h1.contrast.test.k, h1.contrast.test.p), (Verdict::Equivalent, 0, 1.0));
        let h3 = r.hypotheses.iter().find(|h| h.id == "H3").unwrap();
        assert_eq!(h3.verdict, Verdict::Supported);
        assert!(h3.ratio.is_none());
    }

    #[test]
    fn mismatched_lengths_are_named() {
        let models = BTreeMap::from([("A".into(), scores(vec![0.0; 3]))]);
        let baselines = BTreeMap::from([("constant".into(), scores(vec![0.0; 4]))]);
        let e = analyse(&plan(), &models, &baselines, &Clusters::singletons(4), 1).unwrap_err();
        assert_eq!(e, AnalysisError::Length { system: "A".into(), metric: "f1".into(), got: 3, expected: 4 });
    }

    /// The models of `run`'s full-recovery case, with model 0 (the base model) below all three.
    fn four_models(n: usize) -> BTreeMap<String, Scores> {
        let a: Vec<f64> = (0..n).map(|i| 0.6 + 0.2 * ((i % 5) as f64 - 2.0) / 2.0).collect();
        let b: Vec<f64> = (0..n).map(|i| 0.3 + 0.2 * ((i % 7) as f64 - 3.0) / 3.0).collect();
        let zero: Vec<f64> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 0.2 }).collect();
        BTreeMap::from([
            ("0".into(), scores(zero)),
            ("A".into(), scores(a.clone())),
            ("B".into(), scores(b)),
            ("C".into(), scores(a)),
        ])
    }

    #[test]
    fn model_0_gets_a_mean_and_changes_nothing_of_the_pre_registered_analysis() {
        let n = 200;
        let with0 = four_models(n);
        let mut without0 = with0.clone();
        without0.remove("0");
        let baselines = BTreeMap::from([("constant".into(), scores(vec![0.1; n]))]);
        let cl = Clusters::from_keys(&(0..n).map(|i| i / 2).collect::<Vec<_>>());
        let (r0, r) = (
            analyse(&plan(), &with0, &baselines, &cl, 42).unwrap(),
            analyse(&plan(), &without0, &baselines, &cl, 42).unwrap(),
        );
        assert_eq!((&r0.power, &r0.hypotheses), (&r.power, &r.hypotheses));
        let others: Vec<&MeanSummary> = r0.means.iter().filter(|m| m.system != "0").collect();
        assert_eq!(others, r.means.iter().collect::<Vec<_>>());
        let m0 = r0.means.iter().find(|m| m.system == "0").expect("model 0 has a mean");
        assert_eq!(m0.mean, mean(&with0["0"]["f1"]));
        assert!(m0.ci.lo <= m0.mean && m0.mean <= m0.ci.hi && m0.ci.lo < m0.ci.hi, "{:?}", m0.ci);
    }

    fn replicated(sets: &[BTreeMap<String, Scores>]) -> ReplicatedScores {
        let mut out = ReplicatedScores::new();
        for set in sets {
            for (k, v) in set {
                // Model 0 is trained once: one set, whatever the replicates.
                if k == "0" && out.contains_key(k) {
                    continue;
                }
                out.entry(k.clone()).or_default().push(v.clone());
            }
        }
        out
    }

    /// Two training seeds that disagree: A − B is +0.3 under the first and −0.1 under the second.
    fn disagreeing_replicates(n: usize) -> [BTreeMap<String, Scores>; 2] {
        let a: Vec<f64> = (0..n).map(|i| 0.6 + 0.2 * ((i % 5) as f64 - 2.0) / 2.0).collect();
        let b = |centre: f64| -> Vec<f64> { (0..n).map(|i| centre + 0.2 * ((i % 7) as f64 - 3.0) / 3.0).collect() };
        let zero: Vec<f64> = vec![0.05; n];
        let rep = |b: Vec<f64>| {
            BTreeMap::from([
                ("0".into(), scores(zero.clone())),
                ("A".into(), scores(a.clone())),
                ("B".into(), scores(b)),
                ("C".into(), scores(a.clone())),
            ])
        };
        [rep(b(0.3)), rep(b(0.7))]
    }

    /// Every number of the analysis, pinned: one replicate (with the recovery ratio) and two disagreeing
    /// replicates, serialised exactly. A change that moves any interval, p-value or verdict shows here.
    #[test]
    fn the_analysis_results_are_pinned() {
        let one = run(|i| 0.45 + 0.2 * ((i % 5) as f64 - 2.0) / 2.0 + 0.001, 0.1);
        assert!(one.hypotheses.iter().any(|h| h.ratio.is_some()), "the pinned one-replicate case computes a ratio");
        insta::assert_json_snapshot!("analysis_one_replicate", one);
        let n = 200;
        let baselines = BTreeMap::from([("constant".into(), scores(vec![0.1; n]))]);
        let cl = Clusters::from_keys(&(0..n).map(|i| i / 2).collect::<Vec<_>>());
        let mut reps = disagreeing_replicates(n);
        // Make H1 hold under both seeds, so that the ratio is computed across replicates too.
        for r in reps.iter_mut() {
            let c: Vec<f64> = r["B"]["f1"].iter().map(|b| b * 0.5 + 0.05).collect();
            r.insert("B".into(), scores(c.iter().map(|x| x - 0.05).collect()));
            r.insert("C".into(), scores(c));
        }
        let two = analyse_replicated(&plan(), &replicated(&reps), &baselines, &cl, 42).unwrap();
        insta::assert_json_snapshot!("analysis_two_replicates", two);
        let d = differences_replicated(&plan(), &replicated(&reps), &[["A", "0"], ["C", "0"]], &cl, 42).unwrap();
        insta::assert_json_snapshot!("differences_two_replicates", d);
        let d1 = differences(&plan(), &four_models(n), &[["A", "0"], ["C", "0"]], &cl, 42).unwrap();
        insta::assert_json_snapshot!("differences_one_replicate", d1);
    }

    #[test]
    fn seed_variance_turns_a_test_only_supported_h1_inconclusive() {
        let n = 200;
        let reps = disagreeing_replicates(n);
        let baselines = BTreeMap::from([("constant".into(), scores(vec![0.1; n]))]);
        let cl = Clusters::from_keys(&(0..n).map(|i| i / 2).collect::<Vec<_>>());
        // Each replicate alone: the power check passes; H1 is supported under one seed, not under the other.
        let (r0, r1) = (
            analyse(&plan(), &reps[0], &baselines, &cl, 42).unwrap(),
            analyse(&plan(), &reps[1], &baselines, &cl, 42).unwrap(),
        );
        assert!(r0.power.passed && r1.power.passed);
        assert_eq!((verdict(&r0, "H1"), verdict(&r1, "H1")), (Verdict::Supported, Verdict::NotSupported));
        // The replicate-mean scores with a test-only interval would support H1 (estimate 0.1, interval above 0).
        let averaged: BTreeMap<String, Scores> = reps[0]
            .keys()
            .map(|k| (k.clone(), scores((0..n).map(|i| (reps[0][k]["f1"][i] + reps[1][k]["f1"][i]) / 2.0).collect())))
            .collect();
        let naive = analyse(&plan(), &averaged, &baselines, &cl, 42).unwrap();
        assert_eq!(verdict(&naive, "H1"), Verdict::Supported);
        // Across replicates: the same estimate, but the interval covers the seed variance and includes 0.
        let across = analyse_replicated(&plan(), &replicated(&reps), &baselines, &cl, 42).unwrap();
        let h1 = across.hypotheses.iter().find(|h| h.id == "H1" && h.primary).unwrap();
        let naive_h1 = naive.hypotheses.iter().find(|h| h.id == "H1" && h.primary).unwrap();
        assert!(
            (h1.contrast.estimate - 0.1).abs() < 0.01
                && (naive_h1.contrast.estimate - h1.contrast.estimate).abs() < 1e-12
        );
        assert!(
            naive_h1.contrast.ci.lo > 0.0 && h1.contrast.ci.contains(0.0),
            "{:?} vs {:?}",
            h1.contrast.ci,
            naive_h1.contrast.ci
        );
        // The sign-flip test is the test-only one, on the replicate-mean differences: it alone would reject.
        assert!(h1.contrast.test.p <= plan().alpha, "{:?}", h1.contrast.test);
        assert_eq!(h1.verdict, Verdict::Inconclusive);
        // A beats the baseline under both seeds: the power check still passes across replicates.
        assert!(across.power.passed && across.power.contrast.ci.lo > 0.0);
        // Model 0 and the baselines were trained once: their means are the one-replicate analysis's.
        let m0 = |r: &AnalysisResult| {
            r.means.iter().filter(|m| m.system == "0" || m.system == "constant").cloned().collect::<Vec<_>>()
        };
        assert_eq!(m0(&across), m0(&r0));
        // A's mean is the replicate mean with a hierarchical interval; B's, between its two replicates.
        let b = across.means.iter().find(|m| m.system == "B").unwrap();
        assert!((b.mean - 0.5).abs() < 0.01 && b.ci.lo < 0.35 && b.ci.hi > 0.65, "{b:?}");
        // Differences with model 0 likewise.
        let d = differences_replicated(&plan(), &replicated(&reps), &[["B", "0"]], &cl, 42).unwrap();
        assert!(
            (d[0].metrics["f1"].estimate - 0.45).abs() < 0.01
                && d[0].metrics["f1"].ci.hi - d[0].metrics["f1"].ci.lo > 0.3,
            "{d:?}"
        );
    }

    #[test]
    fn replicated_models_must_agree_on_the_count() {
        let n = 4;
        let mut models = replicated(&[four_models(n), four_models(n), four_models(n)]);
        models.get_mut("B").unwrap().pop();
        let baselines = BTreeMap::from([("constant".into(), scores(vec![0.1; n]))]);
        let e = analyse_replicated(&plan(), &models, &baselines, &Clusters::singletons(n), 1).unwrap_err();
        assert_eq!(e, AnalysisError::Replicates { system: "B".into(), got: 2, expected: 3 });
    }

    #[test]
    fn differences_with_model_0_are_paired_means_with_intervals() {
        let n = 200;
        let models = four_models(n);
        let cl = Clusters::from_keys(&(0..n).map(|i| i / 2).collect::<Vec<_>>());
        let d = differences(&plan(), &models, &[["A", "0"], ["B", "0"]], &cl, 42).unwrap();
        assert_eq!(d.iter().map(|x| x.label.as_str()).collect::<Vec<_>>(), ["A−0", "B−0"]);
        for x in &d {
            assert_eq!(x.subtrahend, "0");
            let (a, z) = (&models[&x.minuend]["f1"], &models["0"]["f1"]);
            let diffs: Vec<f64> = a.iter().zip(z).map(|(a, z)| a - z).collect();
            let e = &x.metrics["f1"];
            assert!((e.estimate - (mean(a) - mean(z))).abs() < 1e-12);
            assert_eq!(e.k, diffs.iter().filter(|v| **v != 0.0).count());
            assert!(e.ci.lo <= e.estimate && e.estimate <= e.ci.hi && e.ci.lo < e.ci.hi, "{x:?}");
            assert_eq!(e.ci.level, plan().interval_level);
        }
        // The same seed gives the same intervals; a pair's interval does not depend on the others listed.
        let alone = differences(&plan(), &models, &[["B", "0"]], &cl, 42).unwrap();
        assert_eq!(alone[0], d[1]);
        let e = differences(&plan(), &models, &[["D", "0"]], &cl, 42).unwrap_err();
        assert_eq!(e, AnalysisError::Missing { system: "D".into(), metric: "f1".into() });
    }
}

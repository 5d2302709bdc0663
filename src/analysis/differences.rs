//! Descriptive paired differences between models (A − 0, B − 0, C − 0): no test, no verdict.
use super::*;

/// [`differences`] across replicates. With one replicate: the mean of the per-item differences with a
/// cluster-bootstrap interval (seed `difference/<label>/<metric>`). With several: the mean of the per-item
/// replicate-mean differences, with a [`hierarchical_mean_ci`] interval (seed
/// `replicates/difference/<label>/<metric>`).
pub fn differences_replicated(
    plan: &AnalysisPlan,
    models: &ReplicatedScores,
    pairs: &[[&str; 2]],
    clusters: &Clusters,
    seed: u64,
) -> Result<Vec<Difference>, AnalysisError> {
    let reps = replicate_count(models)?;
    let n = clusters.items();
    let level = RuleParams { alpha: plan.alpha, margin: plan.equivalence_margin }.interval_level();
    let get = |system: &str, metric: &str, j: usize| -> Result<&Vec<f64>, AnalysisError> {
        let sets = models
            .get(system)
            .ok_or_else(|| AnalysisError::Missing { system: system.into(), metric: metric.into() })?;
        let v = sets[j.min(sets.len() - 1)]
            .get(metric)
            .ok_or_else(|| AnalysisError::Missing { system: system.into(), metric: metric.into() })?;
        if v.len() != n {
            return Err(AnalysisError::Length {
                system: system.into(),
                metric: metric.into(),
                got: v.len(),
                expected: n,
            });
        }
        Ok(v)
    };
    pairs
        .iter()
        .map(|[x, y]| {
            let label = format!("{x}−{y}");
            let mut metrics = BTreeMap::new();
            for m in std::iter::once(&plan.primary_metric).chain(&plan.secondary_metrics) {
                let d: Vec<Vec<f64>> = (0..reps)
                    .map(|j| Ok(get(x, m, j)?.iter().zip(get(y, m, j)?).map(|(a, b)| a - b).collect()))
                    .collect::<Result<_, AnalysisError>>()?;
                let dr: Vec<&[f64]> = d.iter().map(Vec::as_slice).collect();
                let (dm, ci) = if reps == 1 {
                    let r = Resampling {
                        resamples: plan.bootstrap_resamples,
                        seed: sub_seed(seed, &format!("difference/{label}/{m}")),
                    };
                    (d[0].clone(), cluster_mean_ci(&d[0], clusters, level, r))
                } else {
                    let r = Resampling {
                        resamples: plan.bootstrap_resamples,
                        seed: sub_seed(seed, &format!("replicates/difference/{label}/{m}")),
                    };
                    (replicate_mean(&dr), hierarchical_mean_ci(&dr, clusters, level, r))
                };
                metrics.insert(
                    m.clone(),
                    DifferenceEstimate { estimate: mean(&dm), ci, k: dm.iter().filter(|v| **v != 0.0).count() },
                );
            }
            Ok(Difference { label, minuend: x.to_string(), subtrahend: y.to_string(), metrics })
        })
        .collect()
}

/// A descriptive paired difference between two models (e.g. A − 0) on each metric of the plan. Not a
/// hypothesis: no test, no verdict; the pre-registration does not list it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// `"A−0"`: the two models' labels.
    pub label: String,
    pub minuend: String,
    pub subtrahend: String,
    /// By metric key: the mean of the per-item differences with a clustered percentile interval.
    pub metrics: BTreeMap<String, DifferenceEstimate>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DifferenceEstimate {
    pub estimate: f64,
    /// At the plan's interval level, resampling the plan's clusters.
    pub ci: Interval,
    /// Items whose paired difference is not zero.
    pub k: usize,
}

/// The paired differences `pairs` (`[minuend, subtrahend]`, model labels) on every metric of the plan.
/// Each interval has its own seed (`difference/<label>/<metric>`), so adding one never shifts another's
/// stream, nor those of [`analyse`].
pub fn differences(
    plan: &AnalysisPlan,
    models: &BTreeMap<String, Scores>,
    pairs: &[[&str; 2]],
    clusters: &Clusters,
    seed: u64,
) -> Result<Vec<Difference>, AnalysisError> {
    let one: ReplicatedScores = models.iter().map(|(k, v)| (k.clone(), vec![v.clone()])).collect();
    differences_replicated(plan, &one, pairs, clusters, seed)
}

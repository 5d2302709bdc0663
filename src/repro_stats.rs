//! The statistical reproduction verdict, for re-runs whose bytes cannot match the recording (another
//! libtorch, thread count, CPU family or GPU): what the science rests on is compared instead of bytes.
//!
//! * **identical** — every re-run output has the recorded sha256.
//! * **reproduced within tolerance** — some bytes differ, but every evaluated metric's mean lies within
//!   the recorded 95% interval, every gap (A−B, C−B) and recovery estimate lies within its recorded
//!   interval, and every hypothesis has the recorded verdict. The largest deviation of each metric is
//!   reported.
//! * **diverged** — any of those moved (each one is named), or bytes differ where there is no statistic
//!   to judge them by (the ledger has no evaluate/compare stage re-run).
//!
//! Also here: the message for a re-run file whose bytes differ (where the first difference is) and a
//! stage's time against its recorded time. It reads the evaluate and compare entries as their stages'
//! typed records ([`EvaluateMetrics`], [`Comparison`]) and decides nothing about how stages are run.
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

use crate::stages::compare::{Comparison, RecordedHypothesis};
use crate::stages::evaluate::EvaluateMetrics;

/// One compared quantity: a metric mean, a gap or a recovery, recorded vs re-run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Deviation {
    /// The stage the quantity comes from (evaluate-A, compare).
    pub stage: String,
    /// What the number is, in words ("mean F1 of model B", "A−B gap in F1").
    pub quantity: String,
    /// The metric key (em, f1, rouge1, rouge2, rougeL, bertscore_f1).
    pub metric: String,
    pub recorded: f64,
    pub now: f64,
    /// The recorded 95% interval the re-run value must lie in.
    pub interval: Option<(f64, f64)>,
    pub within: bool,
}

impl Deviation {
    pub fn abs(&self) -> f64 {
        (self.now - self.recorded).abs()
    }

    pub fn describe(&self) -> String {
        let iv = match self.interval {
            Some((lo, hi)) => format!(", recorded 95% CI [{lo:.6}, {hi:.6}]"),
            None => String::new(),
        };
        let side = if self.within { "within" } else { "OUTSIDE" };
        format!(
            "{} ({}): {:.6} recorded, {:.6} now (Δ {:+.3e}){iv}{}",
            self.quantity,
            self.stage,
            self.recorded,
            self.now,
            self.now - self.recorded,
            if self.interval.is_some() { format!(" — {side} it") } else { String::new() }
        )
    }
}

/// What the statistics of one stage say.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct StageStats {
    pub deviations: Vec<Deviation>,
    /// What moved: quantities outside their interval, changed verdicts, changed test-set size.
    pub moved: Vec<String>,
    /// Per-example changes, when the score rows were readable ("f1 changed on 12 of 100 examples, ...").
    pub items: Vec<String>,
}

impl StageStats {
    pub fn within_tolerance(&self) -> bool {
        self.moved.is_empty()
    }
}

/// A finite number, or None.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// A recorded interval `[lo, hi]`, when both ends are numbers.
fn interval(v: [f64; 2]) -> Option<(f64, f64)> {
    Some((finite(v[0])?, finite(v[1])?))
}

const LABELS: [(&str, &str); 6] = [
    ("em", "EM"),
    ("f1", "F1"),
    ("rouge1", "ROUGE-1"),
    ("rouge2", "ROUGE-2"),
    ("rougeL", "ROUGE-L"),
    ("bertscore_f1", "BERTScore F1"),
];

fn label(metric: &str) -> &str {
    LABELS.iter().find(|(k, _)| *k == metric).map(|(_, l)| *l).unwrap_or(metric)
}

/// A recorded quantity (a mean or an estimate) and the interval the re-run value must lie in.
struct Recorded {
    value: f64,
    interval: Option<(f64, f64)>,
}

/// Checks a re-run value (`None`: the re-run does not have the quantity) against its recording: it must
/// lie in the recorded interval. A quantity that is not a number on either side is not compared.
fn check(stage: &str, quantity: String, metric: &str, recorded: Recorded, now: Option<f64>, out: &mut StageStats) {
    let Some(now) = now else {
        out.moved.push(format!("{quantity} ({stage}): recorded, but the re-run has none"));
        return;
    };
    let (Some(r), Some(n)) = (finite(recorded.value), finite(now)) else { return };
    let iv = recorded.interval;
    let within = iv.is_none_or(|(lo, hi)| lo <= n && n <= hi);
    let d = Deviation {
        stage: stage.to_owned(),
        quantity,
        metric: metric.to_owned(),
        recorded: r,
        now: n,
        interval: iv,
        within,
    };
    if !within {
        out.moved.push(d.describe());
    }
    out.deviations.push(d);
}

/// An evaluate stage's statistics: its recorded and re-run records (the mean and 95% interval of each
/// metric); `rows` the recorded and re-run per-example score rows (`scores.jsonl`), when both are readable.
pub fn evaluate_stats(
    stage: &str,
    recorded: &EvaluateMetrics,
    now: &EvaluateMetrics,
    rows: Option<(&[Value], &[Value])>,
) -> StageStats {
    let mut out = StageStats::default();
    let model = &recorded.model;
    if recorded.n != now.n {
        out.moved.push(format!("{stage}: evaluated on {} examples recorded, {} now", recorded.n, now.n));
    }
    for (k, rv) in &recorded.metrics {
        let r = Recorded { value: rv.mean, interval: interval(rv.ci95) };
        let quantity = format!("mean {} of model {model}", label(k));
        check(stage, quantity, k, r, now.metrics.get(k).map(|e| e.mean), &mut out);
    }
    if let Some((r, n)) = rows {
        out.items = item_changes(r, n);
    }
    out
}

/// Per-example changes between two score-row lists (matched by `id`).
pub fn item_changes(recorded: &[Value], now: &[Value]) -> Vec<String> {
    let num = |v: &Value| v.as_f64().and_then(finite);
    let by_id: BTreeMap<&str, &Value> = now.iter().filter_map(|r| Some((r["id"].as_str()?, r))).collect();
    let mut out = Vec::new();
    let missing = recorded.iter().filter(|r| r["id"].as_str().is_none_or(|id| !by_id.contains_key(id))).count();
    if missing > 0 {
        out.push(format!("{missing} of {} recorded examples are not in the re-run's scores", recorded.len()));
    }
    for (k, _) in LABELS {
        let mut changed = 0usize;
        let mut largest: Option<(f64, String)> = None;
        for r in recorded {
            let (Some(id), Some(a)) = (r["id"].as_str(), num(&r[k])) else { continue };
            let Some(b) = by_id.get(id).and_then(|n| num(&n[k])) else { continue };
            if a != b {
                changed += 1;
                let d = (b - a).abs();
                if largest.as_ref().is_none_or(|(x, _)| d > *x) {
                    largest = Some((d, id.to_owned()));
                }
            }
        }
        if let Some((d, id)) = largest {
            out.push(format!(
                "{} changed on {changed} of {} examples (largest |Δ| {d:.4}, example {id})",
                label(k),
                recorded.len()
            ));
        }
    }
    out
}

/// The compare stage's statistics: its recorded and re-run records (the table of means, each
/// pre-registered contrast's estimate and every hypothesis's verdict; `gaps` in ledgers made before the
/// pre-registered hypotheses). A re-run mean or estimate must lie in its recorded interval. A hypothesis
/// is one claim on one metric: it is matched by its id and metric.
pub fn comparison_stats(recorded: &Comparison, now: &Comparison) -> StageStats {
    let stage = "compare";
    let mut out = StageStats::default();
    for (model, row) in &recorded.table {
        for (k, cell) in row {
            let r = Recorded { value: cell.mean, interval: cell.interval().and_then(interval) };
            let n = now.table.get(model).and_then(|row| row.get(k)).map(|c| c.mean);
            check(stage, format!("mean {} of model {model}", label(k)), k, r, n, &mut out);
        }
    }
    for (k, g) in recorded.gaps.iter().flatten() {
        let ng = now.gaps.as_ref().and_then(|gaps| gaps.get(k));
        let parts = [
            (&g.a_minus_b, ng.map(|g| &g.a_minus_b), "A−B gap in"),
            (&g.c_minus_b, ng.map(|g| &g.c_minus_b), "C−B gap in"),
            (&g.recovery, ng.map(|g| &g.recovery), "recovery (C−B)/(A−B) of"),
        ];
        for (e, now_e, words) in parts {
            let r = Recorded { value: e.estimate.unwrap_or(f64::NAN), interval: e.ci95.and_then(interval) };
            let n = now_e.map(|x| x.estimate.unwrap_or(f64::NAN));
            check(stage, format!("{words} {}", label(k)), k, r, n, &mut out);
        }
    }
    for h in recorded.tested() {
        let now_h = now.tested().find(|x| x.id == h.id && x.metric == h.metric);
        let r = Recorded { value: h.contrast.estimate, interval: interval([h.contrast.ci.lo, h.contrast.ci.hi]) };
        let quantity = format!("{} {} in {}", h.id, h.contrast_label, label(&h.metric));
        check(stage, quantity, &h.metric, r, now_h.map(|x| x.contrast.estimate), &mut out);
    }
    let verdicts = |c: &Comparison| -> BTreeMap<(String, String), String> {
        c.hypotheses
            .iter()
            .map(|h| match h {
                RecordedHypothesis::Tested(t) => ((t.id.clone(), t.metric.clone()), t.verdict.as_str().to_owned()),
                RecordedHypothesis::Legacy(l) => ((l.id.clone(), l.metric.clone()), l.verdict.clone()),
            })
            .collect()
    };
    let (rv, nv) = (verdicts(recorded), verdicts(now));
    for ((id, metric), v) in &rv {
        let which = format!("hypothesis {id} on {}", label(metric));
        match nv.get(&(id.clone(), metric.clone())) {
            Some(w) if w == v => {}
            Some(w) => out.moved.push(format!("{which}: {v} recorded, {w} now")),
            None => out.moved.push(format!("{which}: {v} recorded, no verdict now")),
        }
    }
    out
}

/// The recorded and re-run metrics of `stage` read as its typed record, or what keeps them from reading.
fn records<T: DeserializeOwned>(stage: &str, recorded: &Value, now: &Value) -> Result<(T, T), String> {
    let read = |which: &str, v: &Value| {
        T::deserialize(v).map_err(|e| format!("{stage}: the {which} metrics do not read as the stage's record ({e})"))
    };
    Ok((read("recorded", recorded)?, read("re-run", now)?))
}

/// The statistics of a stage that has them (evaluate-*, compare); None for the others, whose bytes are
/// judged by what they lead to. Metrics that do not read as the stage's record are a divergence that says so.
pub fn stage_stats(
    stage: &str,
    recorded_metrics: &Value,
    now_metrics: &Value,
    rows: Option<(&[Value], &[Value])>,
) -> Option<StageStats> {
    let unreadable = |why: String| StageStats { moved: vec![why], ..Default::default() };
    if stage.starts_with("evaluate-") {
        Some(match records::<EvaluateMetrics>(stage, recorded_metrics, now_metrics) {
            Ok((r, n)) => evaluate_stats(stage, &r, &n, rows),
            Err(why) => unreadable(why),
        })
    } else if stage == "compare" {
        Some(match records::<Comparison>(stage, recorded_metrics, now_metrics) {
            Ok((r, n)) => comparison_stats(&r, &n),
            Err(why) => unreadable(why),
        })
    } else {
        None
    }
}

/// Stages whose outputs do not depend on floating-point kernels (the data split): their bytes must match.
pub const DATA_STAGES: [&str; 1] = ["prepare"];

/// Whether a stage has statistics to judge a reproduction by.
pub fn is_statistical(stage: &str) -> bool {
    stage.starts_with("evaluate-") || stage == "compare"
}

/// One stage of a reproduction, as the overall verdict needs it.
#[derive(Debug, Clone)]
pub struct StageResult<'a> {
    pub stage: &'a str,
    /// Every output has its recorded sha256.
    pub bytes_identical: bool,
    /// The statistics, for a stage that has them and whose bytes differ.
    pub stats: Option<&'a StageStats>,
}

/// The verdict of a whole reproduction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Overall {
    /// identical | reproduced within tolerance | diverged
    pub verdict: String,
    /// The largest deviation of each metric (over all stages with statistics), metric → description.
    pub largest: BTreeMap<String, String>,
    /// What moved (diverged only).
    pub moved: Vec<String>,
}

pub const IDENTICAL: &str = "identical";
pub const WITHIN_TOLERANCE: &str = "reproduced within tolerance";
pub const DIVERGED: &str = "diverged";

/// Combines the stages: identical when every byte matches; otherwise the statistics decide, and bytes
/// that differ with no statistic downstream of them to judge by make it diverged.
pub fn overall(stages: &[StageResult]) -> Overall {
    let mut largest: BTreeMap<String, &Deviation> = BTreeMap::new();
    let mut moved = Vec::new();
    for s in stages {
        if let Some(st) = s.stats {
            moved.extend(st.moved.iter().cloned());
            for d in &st.deviations {
                if largest.get(&d.metric).is_none_or(|x| d.abs() > x.abs()) {
                    largest.insert(d.metric.clone(), d);
                }
            }
        }
    }
    let largest: BTreeMap<String, String> = largest.into_iter().map(|(k, d)| (k, d.describe())).collect();
    if stages.iter().all(|s| s.bytes_identical) {
        return Overall { verdict: IDENTICAL.into(), largest, moved };
    }
    // Bytes that differ are judged by the statistics of a stage at or after them (the report, rendered
    // from the comparison, is judged by the comparison before it).
    for s in stages.iter().filter(|s| !s.bytes_identical && DATA_STAGES.contains(&s.stage)) {
        moved.push(format!(
            "{}: the data differ, and statistics over other data cannot reproduce the recording",
            s.stage
        ));
    }
    let last_diff = stages.iter().rposition(|s| !s.bytes_identical && s.stage != "report");
    let judged = last_diff.is_some_and(|i| stages[i..].iter().any(|s| is_statistical(s.stage)));
    if !judged {
        let s = last_diff.map(|i| stages[i].stage).unwrap_or("report");
        moved.push(format!("{s}: different bytes, and no evaluate or compare stage was re-run to judge them by"));
    }
    let verdict = if moved.is_empty() { WITHIN_TOLERANCE } else { DIVERGED };
    Overall { verdict: verdict.into(), largest, moved }
}

/// The rows of a JSONL file (`scores.jsonl`), or None when it cannot be read whole.
pub fn read_rows(path: &Path) -> Option<Vec<Value>> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Seconds between two RFC 3339 stamps (an entry's `started` and `finished`).
pub fn seconds_between(started: &str, finished: &str) -> Option<f64> {
    use time::format_description::well_known::Rfc3339;
    let a = time::OffsetDateTime::parse(started, &Rfc3339).ok()?;
    let b = time::OffsetDateTime::parse(finished, &Rfc3339).ok()?;
    Some((b - a).as_seconds_f64())
}

/// A stage's re-run time against its recorded time: "12.3 s (recorded 10.1 s, ×1.22)".
pub fn time_vs_recorded(recorded_seconds: Option<f64>, now_seconds: Option<f64>) -> String {
    match (recorded_seconds, now_seconds) {
        (Some(r), Some(n)) if r > 0.0 => format!("{n:.1} s (recorded {r:.1} s, ×{:.2})", n / r),
        (Some(r), Some(n)) => format!("{n:.1} s (recorded {r:.1} s)"),
        (None, Some(n)) => format!("{n:.1} s (no recorded time)"),
        _ => "time unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::HypothesisResult;
    use crate::metrics::stats::{Contrast, Interval, Side, SignFlip, Verdict};
    use crate::stages::compare::{Cell, LegacyEstimate, LegacyGaps, LegacyHypothesis, SampleDefinitions, Samples};
    use crate::stages::evaluate::Estimate;
    use serde_json::json;

    fn eval(model: &str, f1: f64, ci: (f64, f64), em: f64) -> EvaluateMetrics {
        let estimate = |mean, lo, hi| Estimate { mean, ci95: [lo, hi] };
        EvaluateMetrics {
            model: model.into(),
            adapter: None,
            n: 100,
            metrics: BTreeMap::from([("f1".into(), estimate(f1, ci.0, ci.1)), ("em".into(), estimate(em, 0.1, 0.3))]),
            bertscore_model: "all-MiniLM-L6-v2".into(),
            bertscore_layer: 6,
            rouge_stemmer: true,
            empty_predictions: 0,
            mc_options: None,
        }
    }

    #[test]
    fn means_inside_the_recorded_interval_are_within_tolerance_with_the_largest_deviation() {
        let r = eval("A", 0.40, (0.35, 0.45), 0.20);
        let n = eval("A", 0.43, (0.38, 0.48), 0.21);
        let s = evaluate_stats("evaluate-A", &r, &n, None);
        assert!(s.within_tolerance(), "{:?}", s.moved);
        let stats = [s];
        let o = overall(&[
            StageResult { stage: "base-model", bytes_identical: false, stats: None },
            StageResult { stage: "evaluate-A", bytes_identical: false, stats: Some(&stats[0]) },
        ]);
        assert_eq!(o.verdict, WITHIN_TOLERANCE);
        assert!(
            o.largest["f1"].contains("0.400000 recorded, 0.430000 now")
                && o.largest["f1"].contains("[0.350000, 0.450000]"),
            "{:?}",
            o.largest
        );
        assert!(o.largest["em"].contains("Δ +1.000e-2"), "{:?}", o.largest);
    }

    #[test]
    fn a_mean_outside_its_interval_diverges_and_says_what_moved() {
        let r = eval("B", 0.40, (0.35, 0.45), 0.20);
        let n = eval("B", 0.47, (0.42, 0.52), 0.20);
        let s = evaluate_stats("evaluate-B", &r, &n, None);
        assert_eq!(s.moved.len(), 1);
        assert!(
            s.moved[0].starts_with("mean F1 of model B (evaluate-B): 0.400000 recorded, 0.470000 now")
                && s.moved[0].contains("OUTSIDE"),
            "{}",
            s.moved[0]
        );
        let o = overall(&[StageResult { stage: "evaluate-B", bytes_identical: false, stats: Some(&s) }]);
        assert_eq!(o.verdict, DIVERGED);
        assert_eq!(o.moved, s.moved);
        // The interval's ends are inside it.
        let edge = eval("B", 0.45, (0.40, 0.50), 0.20);
        assert!(evaluate_stats("evaluate-B", &r, &edge, None).within_tolerance());
    }

    #[test]
    fn a_different_data_split_diverges_even_when_the_means_agree() {
        let s = StageStats::default();
        let o = overall(&[
            StageResult { stage: "prepare", bytes_identical: false, stats: None },
            StageResult { stage: "compare", bytes_identical: false, stats: Some(&s) },
        ]);
        assert_eq!(o.verdict, DIVERGED);
        assert!(o.moved[0].starts_with("prepare: the data differ"), "{:?}", o.moved);
    }

    #[test]
    fn identical_bytes_are_identical_whatever_the_statistics() {
        let s = StageStats::default();
        let o = overall(&[
            StageResult { stage: "prepare", bytes_identical: true, stats: None },
            StageResult { stage: "compare", bytes_identical: true, stats: Some(&s) },
        ]);
        assert_eq!(o.verdict, IDENTICAL);
    }

    #[test]
    fn different_bytes_with_nothing_to_judge_them_by_diverge() {
        let o = overall(&[
            StageResult { stage: "prepare", bytes_identical: true, stats: None },
            StageResult { stage: "base-model", bytes_identical: false, stats: None },
        ]);
        assert_eq!(o.verdict, DIVERGED);
        assert!(o.moved[0].starts_with("base-model: different bytes"), "{:?}", o.moved);
    }

    /// A comparison with `table` (model → F1 cell) and `hypotheses`, nothing else.
    fn record(table: Vec<(&str, Cell)>, hypotheses: Vec<RecordedHypothesis>) -> Comparison {
        let none = String::new;
        Comparison {
            n: 100,
            primary_metric: "f1".into(),
            interval_level: None,
            resample_unit: None,
            clusters: None,
            bootstrap_resamples: 1000,
            permutation_resamples: 1000,
            table: table.into_iter().map(|(m, c)| (m.to_string(), BTreeMap::from([("f1".to_string(), c)]))).collect(),
            baselines: None,
            baseline_table: None,
            baseline_scoring: None,
            power: None,
            hypotheses,
            differences: None,
            breakdowns: None,
            samples: Samples {
                all_correct: vec![],
                b_fails_c_succeeds: vec![],
                all_struggle: vec![],
                definitions: SampleDefinitions {
                    all_correct: none(),
                    b_fails_c_succeeds: none(),
                    all_struggle: none(),
                },
            },
            replicates: None,
            plan: None,
            gaps: None,
        }
    }

    /// The first ledgers' form: `ci95` cells, gaps, hypotheses as claims with verdicts.
    fn comparison(f1_a: f64, gap: f64, gap_ci: (f64, f64), h1: &str) -> Comparison {
        let legacy = |id: &str, verdict: &str| {
            RecordedHypothesis::Legacy(LegacyHypothesis {
                id: id.into(),
                claim: String::new(),
                evidence: String::new(),
                metric: "f1".into(),
                verdict: verdict.into(),
            })
        };
        let mut c = record(
            vec![("A", Cell { mean: f1_a, ci: None, ci95: Some([0.3, 0.5]) })],
            vec![legacy("H1", h1), legacy("H2", "inconclusive")],
        );
        let estimate = |estimate, ci95: Option<[f64; 2]>, p_value| LegacyEstimate {
            estimate,
            ci95,
            p_value,
            undefined_resamples: None,
        };
        c.gaps = Some(BTreeMap::from([(
            "f1".to_string(),
            LegacyGaps {
                a_minus_b: estimate(Some(gap), Some([gap_ci.0, gap_ci.1]), Some(0.01)),
                c_minus_b: estimate(Some(0.01), Some([-0.02, 0.04]), None),
                recovery: estimate(None, None, None),
            },
        )]));
        c
    }

    #[test]
    fn comparison_checks_gaps_and_hypothesis_verdicts() {
        let r = comparison(0.40, 0.05, (0.02, 0.08), "supported");
        let same_science = comparison(0.41, 0.06, (0.03, 0.09), "supported");
        let s = comparison_stats(&r, &same_science);
        assert!(s.within_tolerance(), "{:?}", s.moved);
        assert!(s.deviations.iter().any(|d| d.quantity == "A−B gap in F1" && (d.abs() - 0.01).abs() < 1e-12));
        let flipped = comparison(0.41, 0.01, (-0.02, 0.04), "inconclusive");
        let s = comparison_stats(&r, &flipped);
        assert!(
            s.moved.iter().any(|m| m == "hypothesis H1 on F1: supported recorded, inconclusive now"),
            "{:?}",
            s.moved
        );
        assert!(
            s.moved.iter().any(|m| m.starts_with("A−B gap in F1 (compare): 0.050000 recorded, 0.010000 now")),
            "{:?}",
            s.moved
        );
    }

    fn hypothesis(metric: &str, estimate: f64, verdict: Verdict) -> RecordedHypothesis {
        let test = SignFlip { p: 0.01, k: 10, clusters_differing: 10, exact: true, resamples: 1024 };
        RecordedHypothesis::Tested(HypothesisResult {
            id: "H1".into(),
            statement: String::new(),
            metric: metric.into(),
            primary: metric == "f1",
            contrast_label: "A − B".into(),
            contrast: Contrast {
                estimate,
                ci: Interval { lo: 0.02, hi: 0.05, level: 0.95 },
                test,
                side: Side::Greater,
            },
            verdict,
            ratio: None,
        })
    }

    /// The forms compare writes today: `ci` arrays in the table, `{estimate, ci: {lo, hi}}` contrasts.
    fn comparison_now(f1_a: f64, h1: f64, verdict: Verdict) -> Comparison {
        let cell = Cell { mean: f1_a, ci: Some([0.08, 0.11]), ci95: None };
        record(vec![("A", cell)], vec![hypothesis("f1", h1, verdict)])
    }

    #[test]
    fn comparison_checks_table_means_and_contrasts_in_todays_format() {
        let r = comparison_now(0.097, 0.03, Verdict::Supported);
        let s = comparison_stats(&r, &comparison_now(0.10, 0.04, Verdict::Supported));
        assert!(s.within_tolerance(), "{:?}", s.moved);
        assert_eq!(s.deviations.len(), 2, "{:?}", s.deviations);
        assert!(s.deviations.iter().all(|d| d.interval.is_some()), "every quantity is checked against its interval");
        let s = comparison_stats(&r, &comparison_now(0.12, 0.06, Verdict::Supported));
        assert!(s.moved.iter().any(|m| m.starts_with("mean F1 of model A (compare)")), "{:?}", s.moved);
        assert!(s.moved.iter().any(|m| m.starts_with("H1 A − B in F1 (compare)")), "{:?}", s.moved);
    }

    #[test]
    fn a_hypothesis_is_matched_by_its_id_and_metric() {
        // H1 on the primary metric and H1 on EM, as compare records each claim on every planned metric.
        let both = |f1: Verdict, em: Verdict| {
            let cell = Cell { mean: 0.1, ci: Some([0.08, 0.11]), ci95: None };
            record(vec![("A", cell)], vec![hypothesis("f1", 0.03, f1), hypothesis("em", 0.03, em)])
        };
        let r = both(Verdict::Supported, Verdict::Inconclusive);
        assert!(comparison_stats(&r, &r).within_tolerance());
        // The primary verdict changed and EM's did not: the change is seen (matching by id alone compared
        // whichever H1 came last).
        let s = comparison_stats(&r, &both(Verdict::Inconclusive, Verdict::Inconclusive));
        assert_eq!(s.moved, ["hypothesis H1 on F1: supported recorded, inconclusive now"], "{:?}", s.moved);
        // Each contrast is checked against its own metric's recording, once.
        assert_eq!(s.deviations.iter().filter(|d| d.quantity.starts_with("H1")).count(), 2);
    }

    #[test]
    fn metrics_that_are_not_the_stages_record_diverge_and_say_so() {
        let good = serde_json::to_value(eval("A", 0.4, (0.35, 0.45), 0.2)).unwrap();
        let mut renamed = good.clone();
        let m = renamed["metrics"].take();
        renamed["means"] = m;
        let s = stage_stats("evaluate-A", &good, &renamed, None).expect("an evaluate stage has statistics");
        assert!(!s.within_tolerance());
        assert!(
            s.moved[0].starts_with("evaluate-A: the re-run metrics do not read as the stage's record"),
            "{:?}",
            s.moved
        );
        let s = stage_stats("evaluate-A", &good, &good, None).unwrap();
        assert!(s.within_tolerance() && s.deviations.len() == 2, "{s:?}");
        assert!(stage_stats("train-A", &json!({}), &json!({}), None).is_none());
    }

    #[test]
    fn item_changes_count_and_locate_the_largest() {
        let r = vec![json!({"id": "q1", "f1": 0.5, "em": 0.0}), json!({"id": "q2", "f1": 1.0, "em": 1.0})];
        let n = vec![json!({"id": "q2", "f1": 0.25, "em": 0.0}), json!({"id": "q1", "f1": 0.5, "em": 0.0})];
        let c = item_changes(&r, &n);
        assert!(c.contains(&"EM changed on 1 of 2 examples (largest |Δ| 1.0000, example q2)".to_owned()), "{c:?}");
        assert!(c.contains(&"F1 changed on 1 of 2 examples (largest |Δ| 0.7500, example q2)".to_owned()), "{c:?}");
    }

    #[test]
    fn stage_times_are_compared_with_the_recording() {
        let r = seconds_between("2026-11-25T13:14:46.796794Z", "2026-11-25T13:16:20.506886Z").unwrap();
        assert!((r - 93.710092).abs() < 1e-6);
        assert_eq!(time_vs_recorded(Some(10.0), Some(12.5)), "12.5 s (recorded 10.0 s, ×1.25)");
        assert_eq!(time_vs_recorded(None, Some(1.0)), "1.0 s (no recorded time)");
    }
}

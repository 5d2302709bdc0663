//! Unit tests of the statistical reproduction verdict (kept apart so `repro_stats.rs` stays under the line
//! limit).
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
        o.largest["f1"].contains("0.400000 recorded, 0.430000 now") && o.largest["f1"].contains("[0.350000, 0.450000]"),
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
            definitions: SampleDefinitions { all_correct: none(), b_fails_c_succeeds: none(), all_struggle: none() },
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
    assert!(s.moved.iter().any(|m| m == "hypothesis H1 on F1: supported recorded, inconclusive now"), "{:?}", s.moved);
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
        contrast: Contrast { estimate, ci: Interval { lo: 0.02, hi: 0.05, level: 0.95 }, test, side: Side::Greater },
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

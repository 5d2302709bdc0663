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
//! stage's time against its recorded time. The module reads only JSON values and files; it decides
//! nothing about how stages are run.
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

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

fn num(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// A recorded interval in any of the forms the stages write: `ci95: [lo, hi]` (evaluate), `ci: [lo, hi]`
/// (compare's table) or `ci: {lo, hi, level}` (compare's hypothesis contrasts).
fn interval(v: &Value) -> Option<(f64, f64)> {
    let pair = |a: &Value| Some((num(&a[0])?, num(&a[1])?));
    pair(&v["ci95"]).or_else(|| pair(&v["ci"])).or_else(|| Some((num(&v["ci"]["lo"])?, num(&v["ci"]["hi"])?)))
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

/// Compares `{mean, ci95}` objects: the re-run mean must lie in the recorded interval.
fn check_mean(stage: &str, quantity: String, metric: &str, recorded: &Value, now: &Value, out: &mut StageStats) {
    let (Some(r), Some(n)) =
        (num(&recorded["mean"]).or(num(&recorded["estimate"])), num(&now["mean"]).or(num(&now["estimate"])))
    else {
        if !recorded.is_null() && now.is_null() {
            out.moved.push(format!("{quantity} ({stage}): recorded, but the re-run has none"));
        }
        return;
    };
    let iv = interval(recorded);
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

/// An evaluate stage's statistics: `recorded`/`now` are the stage's metrics object
/// (`{"model", "n", "metrics": {metric: {mean, ci95}}}`); `rows` the recorded and re-run per-example
/// score rows (`scores.jsonl`), when both are readable.
pub fn evaluate_stats(stage: &str, recorded: &Value, now: &Value, rows: Option<(&[Value], &[Value])>) -> StageStats {
    let mut out = StageStats::default();
    let model = recorded["model"].as_str().unwrap_or("?");
    if recorded["n"] != now["n"] {
        out.moved.push(format!("{stage}: evaluated on {} examples recorded, {} now", recorded["n"], now["n"]));
    }
    if let Some(m) = recorded["metrics"].as_object() {
        for (k, rv) in m {
            check_mean(
                stage,
                format!("mean {} of model {model}", label(k)),
                k,
                rv,
                &now["metrics"][k.as_str()],
                &mut out,
            );
        }
    }
    if let Some((r, n)) = rows {
        out.items = item_changes(r, n);
    }
    out
}

/// Per-example changes between two score-row lists (matched by `id`).
pub fn item_changes(recorded: &[Value], now: &[Value]) -> Vec<String> {
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

/// The compare stage's statistics: `recorded`/`now` are comparison objects (`compare/comparison.json`:
/// the table of means, each hypothesis's contrast estimate and verdict; `gaps` in ledgers made before the
/// pre-registered hypotheses). A re-run mean or estimate must lie in its recorded interval.
pub fn comparison_stats(recorded: &Value, now: &Value) -> StageStats {
    let stage = "compare";
    let mut out = StageStats::default();
    if let Some(table) = recorded["table"].as_object() {
        for (model, row) in table {
            for (k, rv) in row.as_object().into_iter().flatten() {
                check_mean(
                    stage,
                    format!("mean {} of model {model}", label(k)),
                    k,
                    rv,
                    &now["table"][model.as_str()][k.as_str()],
                    &mut out,
                );
            }
        }
    }
    if let Some(gaps) = recorded["gaps"].as_object() {
        for (k, g) in gaps {
            let ng = &now["gaps"][k.as_str()];
            for (key, words) in
                [("a_minus_b", "A−B gap in"), ("c_minus_b", "C−B gap in"), ("recovery", "recovery (C−B)/(A−B) of")]
            {
                check_mean(stage, format!("{words} {}", label(k)), k, &g[key], &ng[key], &mut out);
            }
        }
    }
    for h in recorded["hypotheses"].as_array().into_iter().flatten() {
        let (Some(id), Some(metric)) = (h["id"].as_str(), h["metric"].as_str()) else { continue };
        if h["contrast"].is_null() {
            continue;
        }
        let now_h = now["hypotheses"].as_array().into_iter().flatten().find(|x| x["id"].as_str() == Some(id));
        let contrast = h["contrast_label"].as_str().unwrap_or("contrast");
        let now_c = now_h.map(|x| &x["contrast"]).unwrap_or(&Value::Null);
        check_mean(stage, format!("{id} {contrast} in {}", label(metric)), metric, &h["contrast"], now_c, &mut out);
    }
    let verdicts = |v: &Value| -> BTreeMap<String, String> {
        v["hypotheses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| Some((h["id"].as_str()?.to_owned(), h["verdict"].as_str()?.to_owned())))
            .collect()
    };
    let (rv, nv) = (verdicts(recorded), verdicts(now));
    for (id, v) in &rv {
        match nv.get(id) {
            Some(w) if w == v => {}
            Some(w) => out.moved.push(format!("hypothesis {id}: {v} recorded, {w} now")),
            None => out.moved.push(format!("hypothesis {id}: {v} recorded, no verdict now")),
        }
    }
    out
}

/// The statistics of a stage that has them (evaluate-*, compare); None for the others, whose bytes are
/// judged by what they lead to.
pub fn stage_stats(
    stage: &str,
    recorded_metrics: &Value,
    now_metrics: &Value,
    rows: Option<(&[Value], &[Value])>,
) -> Option<StageStats> {
    if stage.starts_with("evaluate-") {
        Some(evaluate_stats(stage, recorded_metrics, now_metrics, rows))
    } else if stage == "compare" {
        Some(comparison_stats(recorded_metrics, now_metrics))
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
    crate::fsx::read_file_string(path, crate::fsx::Limit::DATA)
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
    use serde_json::json;

    fn eval(model: &str, f1: f64, ci: (f64, f64), em: f64) -> Value {
        json!({"model": model, "n": 100, "metrics": {"f1": {"mean": f1, "ci95": [ci.0, ci.1]}, "em": {"mean": em, "ci95": [0.1, 0.3]}}})
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

    fn comparison(f1_a: f64, gap: f64, gap_ci: (f64, f64), h1: &str) -> Value {
        json!({
            "table": {"A": {"f1": {"mean": f1_a, "ci95": [0.3, 0.5]}}},
            "gaps": {"f1": {"a_minus_b": {"estimate": gap, "ci95": [gap_ci.0, gap_ci.1], "p_value": 0.01},
                            "c_minus_b": {"estimate": 0.01, "ci95": [-0.02, 0.04]},
                            "recovery": {"estimate": null, "ci95": null}}},
            "hypotheses": [{"id": "H1", "verdict": h1}, {"id": "H2", "verdict": "inconclusive"}],
        })
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
        assert!(s.moved.iter().any(|m| m == "hypothesis H1: supported recorded, inconclusive now"), "{:?}", s.moved);
        assert!(
            s.moved.iter().any(|m| m.starts_with("A−B gap in F1 (compare): 0.050000 recorded, 0.010000 now")),
            "{:?}",
            s.moved
        );
    }

    /// The forms compare writes today: `ci` arrays in the table, `{estimate, ci: {lo, hi}}` contrasts.
    fn comparison_now(f1_a: f64, h1: f64, verdict: &str) -> Value {
        json!({
            "table": {"A": {"f1": {"mean": f1_a, "ci": [0.08, 0.11]}}},
            "hypotheses": [{"id": "H1", "metric": "f1", "contrast_label": "A − B", "verdict": verdict,
                            "contrast": {"estimate": h1, "ci": {"lo": 0.02, "hi": 0.05, "level": 0.95}}}],
        })
    }

    #[test]
    fn comparison_checks_table_means_and_contrasts_in_todays_format() {
        let r = comparison_now(0.097, 0.03, "supported");
        let s = comparison_stats(&r, &comparison_now(0.10, 0.04, "supported"));
        assert!(s.within_tolerance(), "{:?}", s.moved);
        assert_eq!(s.deviations.len(), 2, "{:?}", s.deviations);
        assert!(s.deviations.iter().all(|d| d.interval.is_some()), "every quantity is checked against its interval");
        let s = comparison_stats(&r, &comparison_now(0.12, 0.06, "supported"));
        assert!(s.moved.iter().any(|m| m.starts_with("mean F1 of model A (compare)")), "{:?}", s.moved);
        assert!(s.moved.iter().any(|m| m.starts_with("H1 A − B in F1 (compare)")), "{:?}", s.moved);
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

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
mod tests;

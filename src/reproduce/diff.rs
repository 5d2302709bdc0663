//! Where a re-run's outputs differ from the recorded ones, in the most useful terms for each format,
//! and whether the differences are allowed by the stage's recorded determinism class.
//!
//! * JSON: every changed value — number, string, bool, null, a changed type, a missing or extra key, a
//!   changed array length — with its path (`$.hypotheses[0].verdict`).
//! * JSONL: the first differing line, and the changed values inside it when both lines are JSON.
//! * safetensors: the first differing tensor and its max-abs difference.
//! * other text: the first differing line.
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

use crate::ledger::Determinism;

/// One changed JSON value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonChange {
    /// `$` is the document (or, in JSONL, the line); `.key` and `[i]` descend.
    pub path: String,
    /// `null` when the value is absent on that side (see `kind`).
    pub recorded: Value,
    pub now: Value,
}

impl JsonChange {
    /// `now − recorded` when both are numbers.
    pub fn numeric_delta(&self) -> Option<f64> {
        Some(self.now.as_f64()? - self.recorded.as_f64()?)
    }
}

impl std::fmt::Display for JsonChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut = |v: &Value| {
            let s = v.to_string();
            if s.chars().count() > 120 {
                format!("{}…", s.chars().take(120).collect::<String>())
            } else {
                s
            }
        };
        write!(f, "{}: {} → {}", self.path, cut(&self.recorded), cut(&self.now))?;
        if let Some(d) = self.numeric_delta() {
            write!(f, " (Δ {d:+e})")?;
        }
        Ok(())
    }
}

/// A marker for a key or element present on one side only.
fn absent() -> Value {
    Value::String("<absent>".into())
}

/// Every value that differs between `a` (recorded) and `b` (now), in document order.
pub fn json_changes(a: &Value, b: &Value) -> Vec<JsonChange> {
    fn walk(p: &str, a: &Value, b: &Value, out: &mut Vec<JsonChange>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for (k, v) in x {
                    match y.get(k) {
                        Some(w) => walk(&format!("{p}.{k}"), v, w, out),
                        None => out.push(JsonChange { path: format!("{p}.{k}"), recorded: v.clone(), now: absent() }),
                    }
                }
                for (k, w) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                    out.push(JsonChange { path: format!("{p}.{k}"), recorded: absent(), now: w.clone() });
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                for i in 0..x.len().max(y.len()) {
                    match (x.get(i), y.get(i)) {
                        (Some(v), Some(w)) => walk(&format!("{p}[{i}]"), v, w, out),
                        (Some(v), None) => {
                            out.push(JsonChange { path: format!("{p}[{i}]"), recorded: v.clone(), now: absent() })
                        }
                        (None, Some(w)) => {
                            out.push(JsonChange { path: format!("{p}[{i}]"), recorded: absent(), now: w.clone() })
                        }
                        (None, None) => {}
                    }
                }
            }
            // 1 and 1.0 are the same number; compare values, not spellings.
            (Value::Number(x), Value::Number(y)) if x.as_f64() != y.as_f64() || (x.as_f64().is_none() && x != y) => {
                out.push(JsonChange { path: p.to_owned(), recorded: a.clone(), now: b.clone() })
            }
            (Value::Number(_), Value::Number(_)) => {}
            _ if a != b => out.push(JsonChange { path: p.to_owned(), recorded: a.clone(), now: b.clone() }),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("$", a, b, &mut out);
    out
}

/// How one recorded output compares with its re-run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutputDiff {
    /// Recorded, but the re-run did not write it.
    NotProduced,
    /// Written by the re-run, but not among the recorded outputs.
    NotRecorded,
    /// Its hash differs and the recorded file is not on disk to compare against.
    RecordedFileAbsent { recorded_sha256: String, now_sha256: String },
    /// JSON or JSONL whose parsed values differ: every change, with its path.
    Json { changes: Vec<JsonChange>, detail: String },
    /// Any other difference (a line, a tensor, a structure JSON cannot describe).
    Content { detail: String },
}

impl OutputDiff {
    pub fn detail(&self) -> String {
        match self {
            OutputDiff::NotProduced => "not produced by the re-run".into(),
            OutputDiff::NotRecorded => "produced by the re-run but not recorded".into(),
            OutputDiff::RecordedFileAbsent { recorded_sha256, now_sha256 } => format!(
                "the recorded file is not on disk to compare against (sha256 {} recorded, {} now)",
                &recorded_sha256[..recorded_sha256.len().min(12)],
                &now_sha256[..now_sha256.len().min(12)]
            ),
            OutputDiff::Json { detail, .. } | OutputDiff::Content { detail } => detail.clone(),
        }
    }
}

fn summarise(changes: &[JsonChange], prefix: &str) -> String {
    let shown: Vec<String> = changes.iter().take(6).map(|c| format!("{prefix}{c}")).collect();
    let more = changes.len().saturating_sub(6);
    format!("{}{}", shown.join("; "), if more > 0 { format!("; and {more} more") } else { String::new() })
}

fn first_line_difference(ta: &str, tb: &str) -> String {
    for (i, (x, y)) in ta.lines().zip(tb.lines()).enumerate() {
        if x != y {
            let cut = |s: &str| s.chars().take(160).collect::<String>();
            return format!("first differing line {}: recorded {:?}, now {:?}", i + 1, cut(x), cut(y));
        }
    }
    format!("line counts differ: {} recorded, {} now", ta.lines().count(), tb.lines().count())
}

fn jsonl_diff(ta: &str, tb: &str) -> OutputDiff {
    let (la, lb): (Vec<&str>, Vec<&str>) = (ta.lines().collect(), tb.lines().collect());
    let line_diff = first_line_difference(ta, tb);
    if la.len() != lb.len() {
        return OutputDiff::Content { detail: line_diff };
    }
    let mut changes = Vec::new();
    for (i, (x, y)) in la.iter().zip(&lb).enumerate().filter(|(_, (x, y))| x != y) {
        match (serde_json::from_str::<Value>(x), serde_json::from_str::<Value>(y)) {
            (Ok(a), Ok(b)) => changes.extend(
                json_changes(&a, &b)
                    .into_iter()
                    .map(|c| JsonChange { path: format!("line {} {}", i + 1, c.path), ..c }),
            ),
            _ => return OutputDiff::Content { detail: line_diff },
        }
    }
    if changes.is_empty() {
        // Same values, different spelling (e.g. key order): still not byte-identical.
        return OutputDiff::Content { detail: format!("{line_diff} (the same JSON values, written differently)") };
    }
    let detail = format!("{line_diff}; changed values: {}", summarise(&changes, ""));
    OutputDiff::Json { changes, detail }
}

fn tensor_difference(a: &Path, b: &Path) -> Option<String> {
    let mut ta = crate::model::read_safetensors(a).ok()?;
    let mut tb = crate::model::read_safetensors(b).ok()?;
    ta.sort_by(|x, y| x.0.cmp(&y.0));
    tb.sort_by(|x, y| x.0.cmp(&y.0));
    if ta.len() != tb.len() {
        return Some(format!("{} tensors recorded, {} now", ta.len(), tb.len()));
    }
    for ((na, xa), (nb, xb)) in ta.iter().zip(&tb) {
        if na != nb {
            return Some(format!("tensor names differ: {na} vs {nb}"));
        }
        if xa.size() != xb.size() {
            return Some(format!("tensor {na}: shape {:?} vs {:?}", xa.size(), xb.size()));
        }
        if !xa.equal(xb) {
            let d = (xa.to_kind(tch::Kind::Double) - xb.to_kind(tch::Kind::Double)).abs().max().double_value(&[]);
            return Some(format!("first differing tensor {na}: max-abs difference {d:e}"));
        }
    }
    None
}

/// Where a recorded file and its re-run (whose hashes differ) differ, in terms of its format.
pub fn pinpoint(recorded_path: &Path, new_path: &Path) -> OutputDiff {
    let name = new_path.to_string_lossy();
    let text = |p: &Path| crate::fsx::read_file_string(p, crate::fsx::Limit::DATA).ok();
    let content =
        |detail: Option<String>| OutputDiff::Content { detail: detail.unwrap_or_else(|| "contents differ".into()) };
    if name.ends_with(".safetensors") {
        return content(tensor_difference(recorded_path, new_path));
    }
    let (Some(ta), Some(tb)) = (text(recorded_path), text(new_path)) else {
        return content(None);
    };
    if name.ends_with(".jsonl") {
        return jsonl_diff(&ta, &tb);
    }
    if name.ends_with(".json") {
        if let (Ok(a), Ok(b)) = (serde_json::from_str::<Value>(&ta), serde_json::from_str::<Value>(&tb)) {
            let changes = json_changes(&a, &b);
            if changes.is_empty() {
                return content(Some("the same JSON values, written differently".into()));
            }
            let detail = summarise(&changes, "");
            return OutputDiff::Json { changes, detail };
        }
    }
    content(Some(first_line_difference(&ta, &tb)))
}

/// A stage's reproduction verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every recorded output was compared and is byte-identical; nothing extra was written.
    #[serde(rename = "identical")]
    Identical,
    /// Outputs differ only as the stage's recorded tolerance allows, checked value by value.
    #[serde(rename = "within tolerance")]
    WithinTolerance,
    #[serde(rename = "diverged")]
    Diverged,
    /// Not re-run or not comparable; never counts as reproduced.
    #[serde(rename = "not compared")]
    NotCompared,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Identical => "identical",
            Verdict::WithinTolerance => "within tolerance",
            Verdict::Diverged => "diverged",
            Verdict::NotCompared => "not compared",
        }
    }
    /// Whether this verdict counts as reproduced.
    pub fn reproduced(self) -> bool {
        matches!(self, Verdict::Identical | Verdict::WithinTolerance)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Verdict {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The tolerance check, the one place a determinism class other than bitwise is honoured: `Ok(largest
/// deviation)` when every difference is a numeric change of a JSON value named `metric` (the last key
/// of its path; `*` for any) by at most `epsilon`; otherwise `Err(why not)`.
pub fn within_tolerance(metric: &str, epsilon: f64, diffs: &[(String, OutputDiff)]) -> Result<f64, String> {
    let mut largest = 0.0f64;
    for (file, d) in diffs {
        let OutputDiff::Json { changes, .. } = d else {
            return Err(format!("{file}: {} (a tolerance covers numeric JSON values only)", d.detail()));
        };
        for c in changes {
            let key = c.path.rsplit(['.', '[']).next().unwrap_or_default();
            let Some(delta) = c.numeric_delta() else {
                return Err(format!("{file}: {c} is not a numeric change"));
            };
            if metric != "*" && key != metric {
                return Err(format!("{file}: {c} is outside the tolerated metric `{metric}`"));
            }
            if delta.is_nan() || epsilon.is_nan() || delta.abs() > epsilon {
                return Err(format!("{file}: {c} exceeds the tolerance {epsilon:e}"));
            }
            largest = largest.max(delta.abs());
        }
    }
    Ok(largest)
}

/// The verdict for a stage whose every recorded output was compared, given the differences found and
/// the determinism class its entry recorded; with the largest deviation for a tolerance, and a note.
pub fn judge(determinism: &Determinism, diffs: &[(String, OutputDiff)]) -> (Verdict, Option<f64>, Option<String>) {
    if diffs.is_empty() {
        return (Verdict::Identical, None, None);
    }
    match determinism {
        Determinism::Bitwise => (Verdict::Diverged, None, None),
        Determinism::Tolerance { metric, epsilon } => match within_tolerance(metric, *epsilon, diffs) {
            Ok(largest) => (
                Verdict::WithinTolerance,
                Some(largest),
                Some(format!("largest deviation of `{metric}`: {largest:e} (tolerance {epsilon:e})")),
            ),
            Err(why) => (Verdict::Diverged, None, Some(why)),
        },
        Determinism::Nondeterministic { reason } => (
            Verdict::Diverged,
            None,
            Some(format!("the stage is recorded as nondeterministic ({reason}) with no tolerance to check against")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_changed_value_is_named_with_its_path() {
        let a = json!({"n": 3, "table": {"A": {"f1": 0.5}}, "hypotheses": [{"verdict": "supported"}], "gone": 1, "list": [1, 2]});
        let b = json!({"n": 3.0, "table": {"A": {"f1": 0.25}}, "hypotheses": [{"verdict": "inconclusive"}], "new": true, "list": [1]});
        let paths: Vec<String> = json_changes(&a, &b).iter().map(|c| c.path.clone()).collect();
        assert_eq!(paths, ["$.gone", "$.hypotheses[0].verdict", "$.list[1]", "$.table.A.f1", "$.new"]);
        assert!(json_changes(&a, &a).is_empty());
    }

    #[test]
    fn tolerance_is_checked_value_by_value() {
        let num = |path: &str, x: f64, y: f64| JsonChange { path: path.into(), recorded: json!(x), now: json!(y) };
        let d = |changes: Vec<JsonChange>| {
            vec![("run:x.json".to_owned(), OutputDiff::Json { changes, detail: String::new() })]
        };
        let tol = Determinism::Tolerance { metric: "loss".into(), epsilon: 1e-3 };
        let (v, largest, _) = judge(&tol, &d(vec![num("$.loss", 1.0, 1.0005), num("$.curve[0].loss", 2.0, 1.9999)]));
        assert_eq!(v, Verdict::WithinTolerance);
        assert!((largest.unwrap() - 5e-4).abs() < 1e-9);
        assert_eq!(judge(&tol, &d(vec![num("$.loss", 1.0, 1.01)])).0, Verdict::Diverged);
        assert_eq!(judge(&tol, &d(vec![num("$.f1", 1.0, 1.0001)])).0, Verdict::Diverged, "another metric");
        let s = JsonChange { path: "$.loss".into(), recorded: json!("a"), now: json!("b") };
        assert_eq!(judge(&tol, &d(vec![s])).0, Verdict::Diverged, "a string is never within tolerance");
        assert_eq!(
            judge(&tol, &[("run:m.bin".into(), OutputDiff::Content { detail: "x".into() })]).0,
            Verdict::Diverged
        );
        assert_eq!(judge(&Determinism::Bitwise, &d(vec![num("$.loss", 1.0, 1.0)])).0, Verdict::Diverged);
        let nd = Determinism::Nondeterministic { reason: "GPU".into() };
        assert_eq!(judge(&nd, &d(vec![num("$.loss", 1.0, 1.0001)])).0, Verdict::Diverged);
        assert_eq!(judge(&nd, &[]).0, Verdict::Identical);
    }

    #[test]
    fn a_changed_string_in_jsonl_is_named() {
        let d = jsonl_diff("{\"id\":\"1\",\"answer\":\"yes\"}\n", "{\"id\":\"1\",\"answer\":\"no\"}\n");
        let text = d.detail();
        assert!(matches!(d, OutputDiff::Json { .. }), "{d:?}");
        assert!(text.contains("line 1 $.answer") && text.contains("\"yes\" → \"no\""), "{text}");
    }
}

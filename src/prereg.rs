//! The pre-registration: the analysis plan, signed into the ledger by the `preregister` stage after
//! `prepare` and before any model is trained, and the checks that hold the analysis to it.
//!
//! The plan names the hypotheses as the seed states them, the primary and exploratory metrics, the
//! one-sided level α, the equivalence margin, the resample counts, the resampling unit, the verdict rule's
//! version and the sha256 of the test split. `compare` takes these values only from the plan file the
//! preregister stage wrote (an input whose hash that entry covers), declares the config's `[analysis]`
//! in its parameters (its resume key, fixed before it runs) and records the plan it used in its
//! metrics; [`check_ledger`] (run by `hsx verify`) fails a ledger where
//!
//! * a train or evaluate entry that a compare entry rests on precedes the pre-registration in effect for
//!   that compare (the plan was written, or rewritten, after models existed) — `evaluate-0`, the base
//!   model scored zero-shot, included: no model's test score may exist before the plan — or
//! * a compare entry's recorded plan (`metrics.plan`) differs from the pre-registered one (α, margin,
//!   anything), or its declared settings (`params.analysis`) differ from the plan's.
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Analysis;
use crate::ledger::Entry;
use crate::metrics::stats::{Side, RULE_VERSION};

pub use crate::config::PRIMARY_METRICS;

/// The contrast a hypothesis is about, as a per-test-item difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContrastKind {
    /// A − B
    AMinusB,
    /// C − B
    CMinusB,
    /// C − (A + B) / 2: recovery ≥ ½ of the A−B gap
    CMinusMidpoint,
    /// C − A
    CMinusA,
}

impl ContrastKind {
    /// Per-item difference from per-item scores of A, B and C.
    pub fn of(&self, a: f64, b: f64, c: f64) -> f64 {
        match self {
            ContrastKind::AMinusB => a - b,
            ContrastKind::CMinusB => c - b,
            ContrastKind::CMinusMidpoint => c - (a + b) / 2.0,
            ContrastKind::CMinusA => c - a,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            ContrastKind::AMinusB => "A − B",
            ContrastKind::CMinusB => "C − B",
            ContrastKind::CMinusMidpoint => "C − (A+B)/2",
            ContrastKind::CMinusA => "C − A",
        }
    }
}

/// What a hypothesis claims about its contrast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Claim {
    /// The contrast's mean is on this side of 0.
    Directional(Side),
    /// The contrast's mean is within ± the equivalence margin (else, if clearly negative, not supported).
    Equivalence,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub id: String,
    pub statement: String,
    pub contrast: ContrastKind,
    pub claim: Claim,
}

/// The hypotheses as the seed states them.
pub fn hypotheses() -> Vec<Hypothesis> {
    let h = |id: &str, statement: &str, contrast, claim| Hypothesis {
        id: id.into(),
        statement: statement.into(),
        contrast,
        claim,
    };
    vec![
        h("H1", "contamination degrades quality: A > B", ContrastKind::AMinusB, Claim::Directional(Side::Greater)),
        h(
            "H2",
            "synthetic data from the clean seed beats contaminated data: C > B",
            ContrastKind::CMinusB,
            Claim::Directional(Side::Greater),
        ),
        h(
            "H3",
            "synthetic data recovers at least half of the A−B gap: mean(C − (A+B)/2) > 0",
            ContrastKind::CMinusMidpoint,
            Claim::Directional(Side::Greater),
        ),
        h(
            "H4",
            "C approaches the human ceiling A: C − A within the equivalence margin",
            ContrastKind::CMinusA,
            Claim::Equivalence,
        ),
    ]
}

/// The signed plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisPlan {
    pub rule_version: String,
    pub hypotheses: Vec<Hypothesis>,
    pub primary_metric: String,
    pub secondary_metrics: Vec<String>,
    pub alpha: f64,
    pub interval_level: f64,
    pub equivalence_margin: f64,
    pub bootstrap_resamples: usize,
    pub permutation_resamples: usize,
    pub cluster_unit: String,
    /// The model every hypothesis needs to have learned: it must beat the best trivial baseline on the
    /// primary metric (one-sided, at α), else every hypothesis is *not testable*.
    pub power_check: String,
    pub test_split_sha256: String,
    /// The training seeds (`experiment.replicates`) when the experiment has replicates: compare's verdicts
    /// then use the across-replicate results. Absent: one training seed, the master seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicates: Option<Vec<u64>>,
}

impl AnalysisPlan {
    /// The plan from the config's `[analysis]` and the test split's hash; `secondary` lists the other
    /// metrics evaluated (exploratory).
    pub fn new(a: &Analysis, secondary: &[&str], test_split_sha256: &str) -> Self {
        Self {
            rule_version: RULE_VERSION.into(),
            hypotheses: hypotheses(),
            primary_metric: a.primary_metric.clone(),
            secondary_metrics: secondary.iter().filter(|m| **m != a.primary_metric).map(|m| m.to_string()).collect(),
            alpha: a.alpha,
            interval_level: 1.0 - 2.0 * a.alpha,
            equivalence_margin: a.equivalence_margin,
            bootstrap_resamples: a.bootstrap_resamples,
            permutation_resamples: a.permutation_resamples,
            cluster_unit: a.cluster.clone(),
            power_check: "model A beats the best trivial baseline on the primary metric".into(),
            test_split_sha256: test_split_sha256.into(),
            replicates: None,
        }
    }
}

/// Stage names the checks look at.
pub const PREREGISTER: &str = "preregister";
const COMPARE: &str = "compare";

/// A stage that trains a model or scores one on the test split (every `train-X` and `evaluate-X` of the
/// registry, model 0's `evaluate-0` included): none may precede the pre-registration.
pub fn is_model_stage(stage: &str) -> bool {
    use crate::stages::registry::Instance;
    use crate::stages::registry::Stage;
    matches!(Instance::parse(stage).map(|i| i.stage), Ok(Stage::Train(_) | Stage::Evaluate(_)))
}

/// A violation of the pre-registration: the entry (its position), the field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub entry: usize,
    pub stage: String,
    pub field: String,
    pub message: String,
}

/// Where the plan lives in each entry: the preregister entry's `metrics.plan`, and the plan compare
/// used, its `metrics.plan`.
pub fn plan_of_preregister(e: &Entry) -> Option<&Value> {
    e.metrics.get("plan")
}

pub fn plan_of_compare(e: &Entry) -> Option<&Value> {
    e.metrics.get("plan")
}

/// The settings compare declares in `params.analysis` (the config's `[analysis]`).
pub fn settings_of_compare(e: &Entry) -> Option<&Value> {
    e.params.get("analysis")
}

/// The config's `[analysis]` settings a plan was made from, in the config's spelling.
pub fn settings_of_plan(plan: &Value) -> Value {
    let get = |k: &str| plan.get(k).cloned().unwrap_or(Value::Null);
    serde_json::json!({
        "primary_metric": get("primary_metric"),
        "alpha": get("alpha"),
        "equivalence_margin": get("equivalence_margin"),
        "bootstrap_resamples": get("bootstrap_resamples"),
        "permutation_resamples": get("permutation_resamples"),
        "cluster": get("cluster_unit"),
    })
}

/// The checks of the module documentation over a ledger's entries (already verified for integrity).
/// A ledger made before pre-registration existed (no preregister entry, and no compare entry that
/// claims a plan) passes: there is nothing to hold it to, and the report says it was not pre-registered.
pub fn check_ledger(entries: &[Entry]) -> Option<Violation> {
    let violation = |i: usize, field: &str, message: String| {
        Some(Violation { entry: i, stage: entries[i].stage.clone(), field: field.into(), message })
    };
    for (ci, c) in entries.iter().enumerate().filter(|(_, e)| e.stage == COMPARE) {
        let prereg = entries[..ci].iter().enumerate().rev().find(|(_, e)| e.stage == PREREGISTER);
        let Some((pi, p)) = prereg else {
            if plan_of_compare(c).is_some() {
                return violation(
                    ci,
                    "metrics.plan",
                    "compare used an analysis plan, but no preregister entry precedes it".into(),
                );
            }
            if settings_of_compare(c).is_some() {
                return violation(
                    ci,
                    "params.analysis",
                    "compare declares analysis settings, but no preregister entry precedes it".into(),
                );
            }
            continue;
        };
        if let (Some(registered), Some(declared)) = (plan_of_preregister(p), settings_of_compare(c)) {
            let expected = settings_of_plan(registered);
            if let Some(diff) = first_difference("", &expected, declared) {
                return violation(
                    ci,
                    "params.analysis",
                    format!("compare's settings differ from the pre-registration (entry {}){diff}", p.seq),
                );
            }
        }
        match (plan_of_preregister(p), plan_of_compare(c)) {
            (Some(registered), Some(used)) if crate::canonical::same_value(registered, used) => {}
            (Some(registered), Some(used)) => {
                let diff = first_difference("", registered, used).unwrap_or_default();
                return violation(
                    ci,
                    "metrics.plan",
                    format!("compare's analysis differs from the pre-registration (entry {}){diff}", p.seq),
                );
            }
            (None, _) => return violation(pi, "metrics.plan", "the preregister entry holds no plan".into()),
            (_, None) => {
                return violation(
                    ci,
                    "metrics.plan",
                    format!("compare does not record the plan it used (pre-registered in entry {})", p.seq),
                )
            }
        }
        // The models compare rests on: the latest entry of each train/evaluate stage before it.
        let mut latest: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for (i, e) in entries[..ci].iter().enumerate().filter(|(_, e)| is_model_stage(&e.stage)) {
            latest.insert(e.stage.as_str(), i);
        }
        // The earliest such entry in the ledger is named.
        if let Some((stage, &i)) = latest.iter().filter(|(_, &i)| i < pi).min_by_key(|(_, &i)| i) {
            return violation(
                i,
                "seq",
                format!(
                    "{stage} (entry {}) precedes the pre-registration (entry {}) that compare (entry {}) uses",
                    entries[i].seq, p.seq, c.seq
                ),
            );
        }
    }
    None
}

/// The first JSON path where two values differ, as ": at <path>: registered X, used Y". Values are
/// compared and shown in their canonical form, the one the entries' hashes cover: `10000` and `10000.0`
/// are one number.
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => first_difference(&format!("{path}/{k}"), u, v),
                (u, v) => Some(format!(": at {path}/{k}: registered {}, used {}", show(u), show(v))),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (u, v))| first_difference(&format!("{path}/{i}"), u, v))
        }
        _ if crate::canonical::same_value(a, b) => None,
        _ => Some(format!(
            ": at {}: registered {}, used {}",
            if path.is_empty() { "/" } else { path },
            show(Some(a)),
            show(Some(b))
        )),
    }
}

fn show(v: Option<&Value>) -> String {
    v.map(crate::canonical::to_canonical_string).unwrap_or_else(|| "nothing".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plan_records_the_registered_values() {
        let plan = AnalysisPlan::new(&Analysis::default(), &["em", "f1", "rougeL"], "abc");
        assert_eq!(plan.secondary_metrics, vec!["em", "rougeL"]);
        assert_eq!(plan.interval_level, 0.95);
        assert_eq!(plan.hypotheses.len(), 4);
        assert_eq!(plan.rule_version, RULE_VERSION);
    }

    #[test]
    fn the_plans_settings_are_the_config_sections() {
        let a = Analysis::default();
        let plan = serde_json::to_value(AnalysisPlan::new(&a, &["f1"], "abc")).unwrap();
        assert_eq!(settings_of_plan(&plan), serde_json::to_value(&a).unwrap());
    }

    #[test]
    fn first_difference_names_the_path() {
        let a = json!({"alpha": 0.025, "h": [1, 2]});
        let b = json!({"alpha": 0.05, "h": [1, 2]});
        assert_eq!(first_difference("", &a, &b).unwrap(), ": at /alpha: registered 0.025, used 0.05");
        assert_eq!(first_difference("", &a, &a), None);
        // One number however it is spelt; a difference is shown in the canonical form.
        let spelt = json!({"alpha": 0.025, "h": [1.0, 2.0]});
        assert_eq!(first_difference("", &a, &spelt), None);
        assert_eq!(
            first_difference("", &json!({"n": 10000.0}), &json!({"n": 1000})).unwrap(),
            ": at /n: registered 10000, used 1000"
        );
    }
}

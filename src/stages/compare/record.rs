//! compare's typed record: the compare entry's metrics and `compare/comparison.json` (the same record).
//! Every float but the plan's is rounded to 6 decimals. The fields added since the first ledgers are
//! options, absent from the entries that predate them; the first ledgers' `gaps` and their hypotheses
//! (claim and evidence, before the pre-registered contrasts) are read as they were written.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::analysis::{Difference, GroupMean, HypothesisResult, PowerCheck};
use crate::prereg::AnalysisPlan;

/// A table: system (model label, or baseline key) → metric key → mean with interval.
pub type Table = BTreeMap<String, BTreeMap<String, Cell>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Test items.
    pub n: usize,
    pub primary_metric: String,
    /// The intervals' level (1 − 2α), the resampling unit and its number of clusters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_level: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resample_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<usize>,
    pub bootstrap_resamples: usize,
    pub permutation_resamples: usize,
    /// Every evaluated model (model 0 included); with replicates, the across-replicate results.
    pub table: Table,
    /// The trivial baselines: their labels and (the constant one) the answer they give.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baselines: Option<BTreeMap<String, BaselineDescription>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_table: Option<Table>,
    /// How the baselines were scored beyond the lexical metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_scoring: Option<BaselineScoring>,
    /// Model A against the best trivial baseline on the primary metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerCheck>,
    /// H1–H4 on every planned metric (the primary one decides).
    pub hypotheses: Vec<RecordedHypothesis>,
    /// The descriptive paired differences with model 0 (A − 0, B − 0, C − 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differences: Option<Vec<Difference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakdowns: Option<Breakdowns>,
    pub samples: Samples,
    /// Only with several training seeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicates: Option<Replicates>,
    /// The plan compare used, as registered (unrounded): `hsx verify` compares it with the preregister entry's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<AnalysisPlan>,
    /// The first ledgers' gaps A − B and C − B and the recovery (C − B) / (A − B), per metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gaps: Option<BTreeMap<String, LegacyGaps>>,
}

impl Comparison {
    /// The hypotheses tested as pre-registered (none in the first ledgers).
    pub fn tested(&self) -> impl Iterator<Item = &HypothesisResult> {
        self.hypotheses.iter().filter_map(|h| match h {
            RecordedHypothesis::Tested(t) => Some(t),
            RecordedHypothesis::Legacy(_) => None,
        })
    }
}

/// A mean with its interval: `ci` as compare writes it, `ci95` in the first ledgers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    #[serde(deserialize_with = "crate::metrics::stats::nan_if_null")]
    pub mean: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 2]>,
}

impl Cell {
    /// The interval, in whichever spelling the entry has.
    pub fn interval(&self) -> Option<[f64; 2]> {
        self.ci.or(self.ci95)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineDescription {
    pub label: String,
    /// The constant baseline's answer; null for the others.
    pub answer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineScoring {
    /// How a baseline answers the multiple-choice question (it has no model to rank the options).
    pub mc_rule: String,
    pub mc_options: usize,
    pub bertscore_model: String,
    pub bertscore_layer: usize,
}

/// A hypothesis as the entry records it: a pre-registered contrast with its verdict, or (the first
/// ledgers) a claim with its evidence in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordedHypothesis {
    Tested(HypothesisResult),
    Legacy(LegacyHypothesis),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyHypothesis {
    pub id: String,
    pub claim: String,
    pub evidence: String,
    pub metric: String,
    pub verdict: String,
}

/// The first ledgers' gaps of one metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyGaps {
    pub a_minus_b: LegacyEstimate,
    pub c_minus_b: LegacyEstimate,
    pub recovery: LegacyEstimate,
}

/// An estimate with its 95% interval; null where it was undefined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyEstimate {
    pub estimate: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undefined_resamples: Option<usize>,
}

/// The primary metric by question type, and for "None of the above" answers against the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breakdowns {
    pub metric: String,
    pub question_type: Vec<GroupMean>,
    pub none_of_the_above: Vec<GroupMean>,
}

/// Sample predictions of the three kinds, with the rules that chose them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    pub all_correct: Vec<Sample>,
    pub b_fails_c_succeeds: Vec<Sample>,
    pub all_struggle: Vec<Sample>,
    pub definitions: SampleDefinitions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleDefinitions {
    pub all_correct: String,
    pub b_fails_c_succeeds: String,
    pub all_struggle: String,
}

/// One test question: the reference, each model's answer (by model label) and its token F1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub id: String,
    pub reference: String,
    pub f1: BTreeMap<String, f64>,
    /// Model label → its answer (model 0's is absent from the first ledgers).
    #[serde(flatten)]
    pub answers: BTreeMap<String, String>,
}

/// The training seeds' analyses and how the across-replicate results were computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Replicates {
    pub seeds: Vec<u64>,
    pub count: usize,
    pub master_seed: u64,
    pub per_replicate: Vec<ReplicateAnalysis>,
    pub across: Across,
    /// Which outputs are across replicates and which the master seed's ([`super::REPLICATED_OUTPUTS`]).
    pub derived: String,
}

/// One training seed's own analysis of A, B and C (test-set sampling only) and its training summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicateAnalysis {
    pub seed: u64,
    pub master: bool,
    /// Model label → its evaluate instance.
    pub evaluate: BTreeMap<String, String>,
    pub train: BTreeMap<String, ReplicateTraining>,
    pub table: Table,
    pub power: PowerCheck,
    pub hypotheses: Vec<HypothesisResult>,
}

/// A replicate's training summary, read from its `train_metrics.json` (null where that is unreadable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicateTraining {
    pub stage: String,
    pub trained: Option<bool>,
    pub examples: Option<usize>,
    pub optimizer_steps: Option<usize>,
    pub best_epoch: Option<usize>,
}

/// How the top-level results were computed across the replicates, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Across {
    pub results: String,
    pub estimate: String,
    pub interval_method: String,
    pub test_method: String,
    pub verdicts: String,
    pub trained_once: String,
}

//! Typed views of the entries the Hugging Face export reads: only the fields the cards print, each read
//! through serde so a missing or mistyped value is an error naming the entry and the field, never a
//! blank in a card. The stages' own records are reused where they exist (`TrainMetrics`,
//! `GeneratorMetrics`, the config sections); the rest are views of the metrics as the stages write them.
use serde::Deserialize;
use std::collections::BTreeMap;

use crate::export::recorded::typed;
use crate::export::ExportError;
use crate::ledger::Entry;

/// `prepare`'s metrics: the split sizes and where they came from.
#[derive(Debug, Deserialize)]
pub struct Prepare {
    pub train: usize,
    pub val: usize,
    pub test: usize,
    pub examples_read: usize,
    pub duplicates_dropped: usize,
    /// Per CosmosQA file read: its rows and SHA-256, and whether that is the official file's hash.
    pub files: BTreeMap<String, SourceFile>,
}

#[derive(Debug, Deserialize)]
pub struct SourceFile {
    pub rows: usize,
    pub sha256: String,
    #[serde(default)]
    pub known_hash: bool,
}

/// `contaminate`'s metrics.
#[derive(Debug, Deserialize)]
pub struct Contaminate {
    pub rows: usize,
    pub ai: usize,
    pub paraphrase: usize,
    pub empty_outputs: usize,
    pub retried: usize,
    pub mean_answer_words_before: f64,
    pub mean_answer_words_after: f64,
    pub vs_human: VsHuman,
}

#[derive(Debug, Deserialize)]
pub struct VsHuman {
    pub mean_f1_vs_human: f64,
    pub exact_match_share: f64,
    pub degenerate_share: f64,
}

/// `synthesize`'s metrics.
#[derive(Debug, Deserialize)]
pub struct Synthesize {
    pub target: usize,
    pub attempts: usize,
    pub passed: usize,
    pub rejected: usize,
    pub shortfall: usize,
    pub scope: String,
    pub filter_order: Vec<String>,
    pub rejections_first_failing: BTreeMap<String, usize>,
    pub rejections_would_fail: BTreeMap<String, usize>,
    pub final_strategy_distribution: BTreeMap<String, usize>,
    #[serde(default)]
    pub full_text_sensitivity: Option<Sensitivity>,
}

#[derive(Debug, Deserialize)]
pub struct Sensitivity {
    pub pass_rate: f64,
}

/// `base-model`'s metrics, for the scratch and random sources.
#[derive(Debug, Deserialize)]
pub struct BaseModel {
    pub source: String,
    #[serde(default)]
    pub vocab_size: Option<usize>,
    #[serde(default)]
    pub examples: Option<usize>,
    #[serde(default)]
    pub pretrain: Option<Pretrain>,
    #[serde(default)]
    pub heldout: Option<Heldout>,
}

#[derive(Debug, Deserialize)]
pub struct Pretrain {
    pub total_parameters: i64,
    pub optimizer_steps: usize,
}

#[derive(Debug, Deserialize)]
pub struct Heldout {
    pub loss_start: f64,
    pub loss_end: f64,
}

/// The config's `[model]`, as far as the cards need it.
#[derive(Debug, Deserialize)]
pub struct ModelSource {
    pub source: String,
    #[serde(default)]
    pub path: Option<String>,
}

impl ModelSource {
    /// Scratch and random bases are this run's own small or random models: their scores test nothing.
    pub fn testable(&self) -> bool {
        self.source == "hf-dir"
    }
}

/// A mean with its interval, as compare records each model's score.
#[derive(Debug, Clone, Deserialize)]
pub struct MeanCi {
    pub mean: Option<f64>,
    pub ci: [Option<f64>; 2],
}

/// Scores per model label (`A`, …) and metric key.
pub type Table = BTreeMap<String, BTreeMap<String, MeanCi>>;

#[derive(Debug, Clone, Deserialize)]
pub struct Interval {
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Test {
    pub p: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Contrast {
    pub estimate: Option<f64>,
    pub ci: Interval,
    pub test: Test,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Hypothesis {
    pub id: String,
    pub metric: String,
    pub primary: bool,
    pub statement: String,
    pub contrast_label: String,
    pub contrast: Contrast,
    pub verdict: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Power {
    pub metric: String,
    pub best_baseline: String,
    pub verdict: String,
}

/// `compare`'s metrics: the results every model card shows.
#[derive(Debug, Deserialize)]
pub struct Compare {
    pub n: usize,
    pub primary_metric: String,
    pub interval_level: f64,
    pub table: Table,
    pub hypotheses: Vec<Hypothesis>,
    pub power: Power,
    #[serde(default)]
    pub replicates: Option<Replicates>,
}

#[derive(Debug, Deserialize)]
pub struct Replicates {
    pub per_replicate: Vec<Replicate>,
}

#[derive(Debug, Deserialize)]
pub struct Replicate {
    pub seed: u64,
    pub table: Table,
}

impl Compare {
    /// The scores of the adapter trained with `seed`: its replicate's own table when the run has
    /// replicates, else the one table.
    pub fn table_for(&self, seed: u64) -> Option<&Table> {
        match &self.replicates {
            Some(r) => r.per_replicate.iter().find(|p| p.seed == seed).map(|p| &p.table),
            None => Some(&self.table),
        }
    }
}

pub fn prepare(e: &Entry) -> Result<Prepare, ExportError> {
    typed(e, "metrics", &e.metrics)
}

pub fn contaminate(e: &Entry) -> Result<(Contaminate, crate::config::Contaminate), ExportError> {
    Ok((typed(e, "metrics", &e.metrics)?, typed(e, "params.contaminate", param(e, "contaminate"))?))
}

pub fn synthesize(e: &Entry) -> Result<(Synthesize, crate::config::Synth), ExportError> {
    Ok((typed(e, "metrics", &e.metrics)?, typed(e, "params.synth", param(e, "synth"))?))
}

pub fn model_source(e: &Entry) -> Result<ModelSource, ExportError> {
    typed(e, "config.model", e.config.get("model").unwrap_or(&serde_json::Value::Null))
}

pub fn compare(e: &Entry) -> Result<Compare, ExportError> {
    typed(e, "metrics", &e.metrics)
}

pub fn lora(e: &Entry) -> Result<crate::config::Lora, ExportError> {
    typed(e, "params.lora", param(e, "lora"))
}

fn param<'e>(e: &'e Entry, key: &str) -> &'e serde_json::Value {
    e.params.get(key).unwrap_or(&serde_json::Value::Null)
}

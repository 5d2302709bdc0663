//! Typed experiment configuration: TOML ⇄ serde structs, validation, and the canonical config hash.
//!
//! Every section has defaults equal to the seed's experiment (docs/DESIGN.md §2), unknown keys are rejected,
//! and `validate()` checks ranges and cross-field rules, naming the file and the dotted key on failure.
//! The config hash is the SHA-256 of the canonical JSON (see `canonical`) of the *parsed* config, so key
//! order, comments, formatting and spelled-out defaults do not change it.
//!
//! ```text
//! hsx run --config configs/tiny.toml --ledger ledger/exp-42.json
//! ```
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::canonical;

pub mod seed;
pub mod slurm;
mod validate;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read: absent, not a regular file (a FIFO, a device), or over
    /// [`crate::fsx::Limit::CONFIG`].
    #[error("cannot read config {0}")]
    Read(#[from] crate::fsx::FsError),
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: key `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

/// The whole experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub experiment: Experiment,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub data: Data,
    #[serde(default)]
    pub split: Split,
    pub model: ModelSpec,
    #[serde(default)]
    pub lora: Lora,
    #[serde(default)]
    pub train: Train,
    #[serde(default)]
    pub contaminate: Contaminate,
    #[serde(default)]
    pub generator: GeneratorCfg,
    #[serde(default)]
    pub synth: Synth,
    #[serde(default)]
    pub filters: Filters,
    #[serde(default)]
    pub eval: Eval,
    /// The analysis plan, signed by the `preregister` stage before any model is trained.
    #[serde(default)]
    pub analysis: Analysis,
    /// Why each setting that departs from the seed's specification does (dotted key → reason); the
    /// report lists every deviation with its reason (see `config::seed`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub deviations: std::collections::BTreeMap<String, String>,
    /// What `hsx run --executor slurm` asks Slurm for; see [`slurm::SlurmCfg`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<slurm::SlurmCfg>,
}

/// Metrics an analysis plan may name as primary.
/// The values `[filters] scope` accepts: the fields each strategy generated, or the whole example.
pub const FILTER_SCOPES: [&str; 2] = ["generated", "full"];

pub const PRIMARY_METRICS: [&str; 4] = ["f1", "em", "rougeL", "mc_accuracy"];

/// The pre-registered analysis: what `compare` tests and how (see `crate::prereg` and
/// `crate::metrics::stats`). Recorded by the `preregister` stage; `compare` takes it only from there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Analysis {
    /// The metric the hypotheses are decided on (`f1`); the others are exploratory.
    pub primary_metric: String,
    /// One-sided level α of every test; intervals are at 1 − 2α.
    pub alpha: f64,
    /// Equivalence margin on the primary metric's scale (two one-sided tests).
    pub equivalence_margin: f64,
    pub bootstrap_resamples: usize,
    pub permutation_resamples: usize,
    /// The resampling unit: `context` (questions sharing a context resample together) or `item`.
    pub cluster: String,
}

impl Default for Analysis {
    fn default() -> Self {
        Self {
            primary_metric: "f1".into(),
            alpha: 0.025,
            equivalence_margin: 0.02,
            bootstrap_resamples: 10_000,
            permutation_resamples: 10_000,
            cluster: "context".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Experiment id; names the run directory `runs/<id>/` and appears in every ledger entry.
    pub id: String,
    /// The master seed; each stage derives its own from it and the stage name.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Where run outputs go (relative to the working directory).
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// Where the `report` stage writes REPORT.md, metrics_table.csv and plots/ (relative).
    #[serde(default = "default_report_dir")]
    pub report_dir: String,
    /// Training seeds, one replicate of each fine-tuned model per seed (see [`slurm`] for the names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicates: Option<Vec<u64>>,
}

fn default_report_dir() -> String {
    "report".into()
}

fn default_seed() -> u64 {
    42
}
fn default_runs_dir() -> String {
    "runs".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Device {
    Cpu,
    Cuda,
    /// CUDA when available, else CPU.
    Auto,
}

impl Device {
    /// The name `crate::model::parse_device` reads (and the config file holds).
    pub fn name(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    Fp32,
    /// bf16 autocast (replaces the seed's fp16, which overflows in T5): matrix products in bf16,
    /// weights, norms and losses in fp32, on CUDA and on CPU alike (on CPU it needs the processor's
    /// native bf16 kernels: run with `HSX_CPU_PINS=native`, see `crate::runtime`).
    Bf16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    pub device: Device,
    pub precision: Precision,
    /// libtorch intra-op threads; recorded in every entry (results depend on it).
    pub threads: usize,
    pub deterministic: bool,
}

impl Runtime {
    /// Whether training, generation and scoring run under bf16 autocast (every stage asks this).
    pub fn bf16(&self) -> bool {
        self.precision == Precision::Bf16
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Self { device: Device::Auto, precision: Precision::Bf16, threads: 2, deterministic: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Data {
    /// Directory holding the CosmosQA files (relative to the working directory).
    pub dir: String,
    /// CosmosQA files to read from `dir` (or the mirror): `train.csv`, `valid.csv`, or `.jsonl` forms.
    pub files: Vec<String>,
    /// Refuse a file whose sha256 differs from the known official hash.
    pub verify_known_hashes: bool,
    /// Skip invalid rows (counted per reason in the stage metrics) instead of failing.
    pub skip_invalid: bool,
    /// Longest accepted row, in bytes.
    pub max_row_bytes: usize,
}

impl Default for Data {
    fn default() -> Self {
        Self {
            dir: "data/cosmosqa".into(),
            files: vec!["train.csv".into(), "valid.csv".into()],
            verify_known_hashes: true,
            skip_invalid: false,
            max_row_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Split {
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// When the data cannot fill the sizes, shrink train (then val) instead of failing.
    pub allow_shrink: bool,
}

impl Default for Split {
    fn default() -> Self {
        Self { train: 20_000, val: 2_000, test: 2_000, allow_shrink: false }
    }
}

/// Where the base model comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSpec {
    /// An HF-format directory (`config.json`, `model.safetensors`, `tokenizer.json`), e.g. flan-t5-base.
    HfDir { path: String },
    /// A small T5 of the flan-t5 architecture, built and pretrained by the pipeline itself.
    Scratch { arch: T5Arch, tokenizer: TokenizerSpec, pretrain: Pretrain },
    /// The base profile's rehearsal: a T5 of the given shapes with random weights (initialised as
    /// transformers initialises T5), written by `base-model` in the HF directory layout and loaded back
    /// through the same code as an `hf-dir` model; its tokenizer is learnt from the train split and
    /// filled with never-matching placeholder pieces up to `tokenizer.vocab_size`.
    Random {
        arch: T5Arch,
        /// The config's `vocab_size` (the embedding and head rows; flan-t5-base: 32,128).
        vocab_size: usize,
        tokenizer: TokenizerSpec,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct T5Arch {
    pub d_model: usize,
    pub d_ff: usize,
    pub d_kv: usize,
    pub num_heads: usize,
    pub num_layers: usize,
    pub num_decoder_layers: usize,
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_dropout")]
    pub dropout_rate: f64,
}

fn default_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_dropout() -> f64 {
    0.1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerSpec {
    /// Unigram vocabulary size, including `<pad>`, `</s>`, `<unk>` and the sentinel tokens.
    pub vocab_size: usize,
    /// Sentinel tokens `<extra_id_N>` for span corruption.
    #[serde(default = "default_extra_ids")]
    pub extra_ids: usize,
}

fn default_extra_ids() -> usize {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pretrain {
    /// Optimiser steps of span-corruption pretraining.
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    #[serde(default = "default_noise_density")]
    pub noise_density: f64,
    #[serde(default = "default_mean_span")]
    pub mean_noise_span_length: f64,
    pub max_input_tokens: usize,
    #[serde(default)]
    pub warmup_steps: usize,
    /// When set, warmup is this share of the optimiser steps and replaces `warmup_steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_share: Option<f64>,
    /// What the span-corruption pretraining reads from the train split (see [`PretrainCorpus`]).
    #[serde(default, skip_serializing_if = "PretrainCorpus::is_default")]
    pub corpus: PretrainCorpus,
    /// The share of the corpus's documents (each distinct context, each question text) held out of
    /// tokenizer training and pretraining, chosen by the stage seed: the base-model stage reports the
    /// span-corruption loss on them before and after pretraining. 0 holds nothing out (no held-out figures).
    #[serde(default = "default_heldout_share")]
    pub heldout_share: f64,
}

/// The pretraining corpus, all from the train split (never validation or test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PretrainCorpus {
    /// Each distinct context once, then each example's question with its (correct) answer.
    #[default]
    ContextsQa,
    /// Each distinct context once, then each example's question with all four answer options.
    ContextsQuestionsOptions,
}

impl PretrainCorpus {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_noise_density() -> f64 {
    0.15
}
fn default_mean_span() -> f64 {
    3.0
}
fn default_heldout_share() -> f64 {
    0.05
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    Q,
    K,
    V,
    O,
    Wi0,
    Wi1,
    Wo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Lora {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<LoraTarget>,
}

impl Default for Lora {
    fn default() -> Self {
        Self { r: 16, alpha: 32.0, dropout: 0.1, targets: vec![LoraTarget::Q, LoraTarget::V] }
    }
}

/// The seed's fine-tuning recipe (models A, B, C and the generator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Train {
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_steps: usize,
    /// When set, warmup is this share of the optimiser steps and replaces `warmup_steps` (the seed's
    /// 100 steps are about 5% of its ~1,875).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_share: Option<f64>,
    pub max_grad_norm: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    pub max_input_tokens: usize,
    pub max_target_tokens: usize,
    /// Record the training loss every this many optimiser steps.
    pub log_every: usize,
}

impl Default for Train {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 8,
            grad_accum: 4,
            lr: 3e-4,
            weight_decay: 0.01,
            warmup_steps: 100,
            warmup_share: None,
            max_grad_norm: 1.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            max_input_tokens: 512,
            max_target_tokens: 64,
            log_every: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Contaminate {
    /// Share of rows whose answer the base model writes from scratch; the rest are paraphrased.
    pub ai_share: f64,
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    /// Retries (each with the next seed) for an empty generation before it is recorded as empty.
    pub empty_retries: usize,
}

impl Default for Contaminate {
    fn default() -> Self {
        Self { ai_share: 0.8, temperature: 0.3, top_p: 1.0, max_new_tokens: 64, batch_size: 32, empty_retries: 2 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorCfg {
    /// Epochs of generator fine-tuning (the rest of the recipe is `[train]`).
    pub epochs: usize,
    /// Most training pairs per task drawn from the seed (0 = all).
    pub max_pairs_per_task: usize,
    /// Share of the train split's contexts held out of the generator's training as its validation
    /// slice (best epoch by loss on it); 0 = no validation, the last epoch is kept.
    #[serde(skip_serializing_if = "is_zero")]
    pub val_share: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Default for GeneratorCfg {
    fn default() -> Self {
        Self { epochs: 3, max_pairs_per_task: 0, val_share: 0.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Synth {
    /// Accepted synthetic examples = multiplier × seed (human train) size.
    pub multiplier: f64,
    pub temperature: f64,
    pub top_p: f64,
    pub max_new_tokens: usize,
    pub batch_size: usize,
    /// Stop after this many candidates per accepted example wanted (a shortfall is reported).
    pub max_attempts_factor: f64,
    pub share_question_variants: f64,
    pub share_context_augmentation: f64,
    pub share_answer_expansion: f64,
}

impl Default for Synth {
    fn default() -> Self {
        Self {
            multiplier: 5.0,
            temperature: 0.7,
            top_p: 1.0,
            max_new_tokens: 128,
            batch_size: 32,
            max_attempts_factor: 3.0,
            share_question_variants: 0.4,
            share_context_augmentation: 0.3,
            share_answer_expansion: 0.3,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filters {
    pub ngram_n: usize,
    /// Reject when this share (or more) of a candidate's n-grams occurs in one seed example.
    pub ngram_max_overlap: f64,
    /// Reject when cosine similarity to any seed example is this or more.
    pub semantic_max_cosine: f64,
    pub embed_batch_size: usize,
    pub minhash_shingle_words: usize,
    pub minhash_permutations: usize,
    pub minhash_bands: usize,
    pub minhash_rows: usize,
    /// Jaccard similarity at or above which a candidate is a near duplicate (checked exactly on LSH hits).
    pub minhash_jaccard: f64,
    pub min_words: usize,
    pub max_words: usize,
    /// What the similarity filters judge: `generated` (default) compares only the fields each strategy
    /// generated with the matching seed fields (see `synth::filters`); `full` compares the whole example
    /// (context + question + answer) with whole seed examples.
    pub scope: String,
}

impl Default for Filters {
    fn default() -> Self {
        Self {
            ngram_n: 8,
            ngram_max_overlap: 0.30,
            semantic_max_cosine: 0.85,
            embed_batch_size: 64,
            minhash_shingle_words: 3,
            minhash_permutations: 128,
            minhash_bands: 32,
            minhash_rows: 4,
            minhash_jaccard: 0.5,
            min_words: 10,
            max_words: 200,
            scope: "generated".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Eval {
    pub batch_size: usize,
    pub max_new_tokens: usize,
    pub bootstrap_resamples: usize,
    pub permutation_resamples: usize,
    pub rouge_stemmer: bool,
    /// BERTScore encoder (a BERT-architecture HF directory); empty = the bootstrap's all-MiniLM-L6-v2.
    pub bertscore_model: String,
    /// Encoder layer for BERTScore (0 = the last).
    pub bertscore_layer: usize,
}

impl Default for Eval {
    fn default() -> Self {
        Self {
            batch_size: 32,
            max_new_tokens: 64,
            bootstrap_resamples: 1000,
            permutation_resamples: 10_000,
            rouge_stemmer: true,
            bertscore_model: String::new(),
            bertscore_layer: 0,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = crate::fsx::read_file_string(path, crate::fsx::Limit::CONFIG)?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates TOML text; `path` only names the source in errors.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: describe_toml_error(&e, text) })?;
        cfg.validate().map_err(|(key, message)| ConfigError::Invalid { path: path.to_owned(), key, message })?;
        Ok(cfg)
    }

    /// The canonical config hash recorded in every ledger entry.
    pub fn sha256(&self) -> String {
        canonical::sha256_of(self).expect("a Config always serialises to JSON")
    }
}

/// toml's own message already names the key and shows the line; prefix it with a line:column.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    let msg = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map(|l| l.chars().count() + 1).unwrap_or(1);
            let src_line = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line}, column {col}: {msg}\n    {line} | {src_line}")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = r#"
[experiment]
id = "t"
[model]
source = "hf-dir"
path = "models/flan-t5-base"
"#;

    #[test]
    fn minimal_config_gets_the_seed_defaults() {
        let c = Config::from_toml_str(MIN, Path::new("min.toml")).unwrap();
        assert_eq!(c.experiment.seed, 42);
        assert_eq!(c.lora.r, 16);
        assert_eq!(c.lora.alpha, 32.0);
        assert_eq!(c.lora.targets, vec![LoraTarget::Q, LoraTarget::V]);
        assert_eq!((c.train.batch_size, c.train.grad_accum), (8, 4));
        assert_eq!((c.split.train, c.split.val, c.split.test), (20_000, 2_000, 2_000));
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let text = MIN.replace("[model]", "[train]\nlrr = 0.1\n[model]");
        let e = Config::from_toml_str(&text, Path::new("cfg/x.toml")).unwrap_err().to_string();
        assert!(e.contains("cfg/x.toml"), "{e}");
        assert!(e.contains("lrr"), "{e}");
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn out_of_range_value_names_the_dotted_key() {
        let text = format!("{MIN}\n[lora]\ndropout = 1.5\n");
        let e = Config::from_toml_str(&text, Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("lora.dropout") && e.contains("[0, 1)"), "{e}");
    }
}

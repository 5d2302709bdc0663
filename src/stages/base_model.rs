//! `base-model`: the tiny/smoke profiles' own tokenizer and span-corruption pretraining on the train
//! split, or (base profile) a check that `models/flan-t5-base` loads as the flan-t5 architecture, or
//! (the base profile's rehearsal) a randomly initialised T5 of flan-t5-base's shapes written as an HF
//! directory and loaded back through the hf-dir path.
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ctx::{present, write_record, StageCtx};
use crate::config::{Config, ModelSpec, Runtime};
use crate::data::{self, DataError};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::model::pretrain::HeldOut;
use crate::model::train::TrainReport;
use crate::model::T5Config;

/// The base-model stage's parameters: the config's `[model]` and `[runtime]`.
#[derive(Serialize)]
struct BaseModelParams<'a> {
    model: &'a ModelSpec,
    runtime: &'a Runtime,
}

/// The base-model entry's metrics, by the config's `model.source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "kebab-case")]
pub enum BaseModelMetrics {
    /// A Hugging Face directory (flan-t5-base), loaded as the flan-t5 architecture.
    HfDir {
        path: String,
        parameters: i64,
        config: T5Config,
        /// What `model::checkpoint::check_dir` found (absent from entries made before the check).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint: Option<crate::model::checkpoint::CheckpointSummary>,
        /// The hub revision the download's `.cache` metadata names: provenance, not an input; null where the
        /// directory holds no such metadata.
        #[serde(default)]
        hub: Option<crate::model::hub::HubProvenance>,
    },
    /// Random weights at the configured shapes (the base profile's rehearsal), loaded back as an HF directory.
    Random { parameters: i64, config: T5Config, tokenizer: TokenizerSize },
    /// This run's own tokenizer and span-corruption pretraining.
    Scratch(Box<ScratchMetrics>),
}

/// The rehearsal's tokenizer: its entries, and the pieces learnt from the train split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerSize {
    pub entries: usize,
    pub learnt_pieces: usize,
}

/// A scratch base model's record: `base-model/pretrain_metrics.json` and, with the wall time, the entry's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScratchMetrics {
    pub vocab_size: usize,
    /// Pretraining chunks.
    pub examples: usize,
    /// On the first training batch, before training (kept for older readers; the report prints the
    /// held-out figures).
    pub initial_loss: f64,
    /// The held-out slice's loss before and after pretraining: null when `model.pretrain.heldout_share` is
    /// 0, absent from entries older than the held-out figures.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub heldout: Option<Option<HeldOut>>,
    /// [`last_window`] of the loss curve: null for an empty curve, absent from older entries.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub train_loss_last_window: Option<Option<LossWindow>>,
    pub pretrain: PretrainReport,
    /// In the entry only: the file holds what a re-run reproduces bit for bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
}

/// The pretraining loop's report ([`TrainReport`]) without its wall time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainReport {
    pub optimizer_steps: usize,
    pub epochs: usize,
    /// (optimiser step, mean loss since the previous point).
    pub loss_curve: Vec<(usize, f64)>,
    pub val_loss_per_epoch: Vec<f64>,
    pub best_epoch: usize,
    pub final_train_loss: f64,
    /// Absent from entries older than the precision record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_precision: Option<String>,
    pub tokens_seen: usize,
    pub padding_share: f64,
    pub trainable_parameters: i64,
    pub total_parameters: i64,
    pub trainable_share: f64,
    /// The recipe as recorded (the config's `[train]`-shaped settings with the seed and precision): kept as
    /// the JSON it was written as, since `[train]` refuses unknown fields and so cannot be read back flattened.
    pub recipe: Value,
}

impl PretrainReport {
    fn of(r: &TrainReport) -> Result<Self, PipelineError> {
        Ok(Self {
            optimizer_steps: r.optimizer_steps,
            epochs: r.epochs,
            loss_curve: r.loss_curve.clone(),
            val_loss_per_epoch: r.val_loss_per_epoch.clone(),
            best_epoch: r.best_epoch,
            final_train_loss: r.final_train_loss,
            compute_precision: Some(r.compute_precision.to_owned()),
            tokens_seen: r.tokens_seen,
            padding_share: r.padding_share,
            trainable_parameters: r.trainable_parameters,
            total_parameters: r.total_parameters,
            trainable_share: r.trainable_share,
            recipe: serde_json::to_value(&r.recipe).map_err(PipelineError::Record)?,
        })
    }
}

/// The last logged window of a loss curve: the mean training loss (the mean over its optimiser steps of
/// each step's batch loss) over steps `first_step` to `last_step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossWindow {
    pub first_step: usize,
    pub last_step: usize,
    pub mean_loss: f64,
}

pub fn spec(cfg: &Config) -> StageSpec {
    StageSpec {
        stage: super::ctx::Stage::BaseModel.name().into(),
        params: super::ctx::params(&BaseModelParams { model: &cfg.model, runtime: &cfg.runtime }),
        inputs: match &cfg.model {
            ModelSpec::HfDir { .. } => super::ctx::base_inputs(cfg),
            ModelSpec::Scratch { .. } | ModelSpec::Random { .. } => vec![super::ctx::human("train")],
        },
        determinism: Determinism::Bitwise,
    }
}

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let device = ctx.device()?;
    match &ctx.cfg.model {
        ModelSpec::HfDir { path } => {
            let dir = ctx.base_model();
            if !dir.is_dir() {
                return Err(DataError::Missing(format!(
                    "{} does not exist; download the weights as the README says (`huggingface-cli download \
                     google/flan-t5-base --revision … --include config.json model.safetensors tokenizer.json \
                     --local-dir {path}`)",
                    dir.display()
                ))
                .into());
            }
            // Checked before anything loads: a malformed download fails here, naming file and key.
            let checkpoint = crate::model::checkpoint::check_dir(&dir)?;
            let m = crate::model::load_t5(&dir, device)?;
            let parameters = crate::model::train::parameter_count(&m.vs);
            // The hub revision the download names: provenance, not an input (see crate::model::hub).
            let hub = crate::model::hub::provenance(&dir, |p| crate::ledger::files::memo::hash_file(p).map(|h| h.1));
            let metrics = BaseModelMetrics::HfDir {
                path: path.clone(),
                parameters,
                config: m.model.cfg.clone(),
                checkpoint: Some(checkpoint),
                hub,
            };
            StageOutcome::of(vec![], &metrics)
        }
        ModelSpec::Random { arch, vocab_size, tokenizer } => {
            let texts = train_texts(ctx, crate::config::PretrainCorpus::ContextsQuestionsOptions)?;
            let out = ctx.out_dir()?.join("model");
            let r = crate::model::pretrain::build_random_model(
                &texts,
                arch,
                *vocab_size,
                tokenizer,
                ctx.seed,
                &ctx.run_dir,
                &out,
            )?;
            // Checked and loaded back through the hf-dir path, exactly as flan-t5-base would be.
            crate::model::checkpoint::check_dir(&out)?;
            let m = crate::model::load_t5(&out, device)?;
            let metrics = BaseModelMetrics::Random {
                parameters: crate::model::train::parameter_count(&m.vs),
                config: m.model.cfg.clone(),
                tokenizer: TokenizerSize { entries: r.tokenizer_size, learnt_pieces: r.tokenizer_pieces_learnt },
            };
            StageOutcome::of(vec![(Root::Run, "base-model/model".into())], &metrics)
        }
        ModelSpec::Scratch { arch, tokenizer, pretrain } => {
            let tok_texts = train_texts(ctx, pretrain.corpus)?;
            let out = ctx.out_dir()?.join("model");
            let progress = ctx.trainer();
            let bf16 = ctx.cfg.runtime.bf16();
            let r = crate::model::pretrain::build_base_model(
                &tok_texts,
                arch,
                tokenizer,
                pretrain,
                ctx.seed,
                device,
                bf16,
                &ctx.run_dir,
                &out,
                progress.as_ref(),
            )?;
            let mut record = ScratchMetrics {
                vocab_size: r.vocab_size,
                examples: r.examples,
                initial_loss: r.initial_loss,
                heldout: Some(r.heldout),
                train_loss_last_window: Some(last_window(&r.report.loss_curve)),
                pretrain: PretrainReport::of(&r.report)?,
                wall_seconds: None,
            };
            // The file holds what a re-run reproduces bit for bit; the wall time lives in the entry.
            write_record(
                &ctx.run_dir,
                &ctx.run_path("base-model/pretrain_metrics.json"),
                &BaseModelMetrics::Scratch(Box::new(record.clone())),
            )?;
            record.wall_seconds = Some(r.report.wall_seconds);
            let outputs =
                vec![(Root::Run, "base-model/model".into()), (Root::Run, "base-model/pretrain_metrics.json".into())];
            StageOutcome::of(outputs, &BaseModelMetrics::Scratch(Box::new(record)))
        }
    }
}

/// The last logged window of a loss curve (see [`LossWindow`]); None for an empty curve.
pub fn last_window(curve: &[(usize, f64)]) -> Option<LossWindow> {
    match curve {
        [] => None,
        [.., (last, loss)] => {
            let first = if curve.len() > 1 { curve[curve.len() - 2].0 + 1 } else { 1 };
            Some(LossWindow { first_step: first, last_step: *last, mean_loss: *loss })
        }
    }
}

/// The train-split text the tokenizer and the span-corruption pretraining read: each distinct context
/// once, then per example its question with its answer (`contexts-qa`) or with all four answer options
/// (`contexts-questions-options`).
fn train_texts(ctx: &StageCtx, corpus: crate::config::PretrainCorpus) -> Result<Vec<String>, PipelineError> {
    let train: Vec<data::QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_train.jsonl"))?;
    let mut seen = std::collections::HashSet::new();
    let mut texts: Vec<String> =
        train.iter().filter(|e| seen.insert(e.context.clone())).map(|e| e.context.clone()).collect();
    match corpus {
        crate::config::PretrainCorpus::ContextsQa => {
            texts.extend(train.iter().map(|e| format!("{} {}", e.question, e.answer)))
        }
        crate::config::PretrainCorpus::ContextsQuestionsOptions => {
            texts.extend(train.iter().map(|e| format!("{} {}", e.question, e.choices.join(" "))))
        }
    }
    Ok(texts)
}

#[cfg(test)]
mod tests {
    use super::{last_window, LossWindow};

    #[test]
    fn the_last_window_runs_from_the_step_after_the_previous_point() {
        let window = |first_step, last_step, mean_loss| Some(LossWindow { first_step, last_step, mean_loss });
        assert_eq!(last_window(&[]), None);
        assert_eq!(last_window(&[(10, 4.0)]), window(1, 10, 4.0));
        assert_eq!(last_window(&[(10, 4.0), (20, 3.5), (25, 3.25)]), window(21, 25, 3.25));
    }
}

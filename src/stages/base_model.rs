//! `base-model`: the tiny/smoke profiles' own tokenizer and span-corruption pretraining on the train
//! split, or (base profile) a check that `models/flan-t5-base` loads as the flan-t5 architecture, or
//! (the base profile's rehearsal) a randomly initialised T5 of flan-t5-base's shapes written as an HF
//! directory and loaded back through the hf-dir path.
use serde_json::{json, Value};

use super::ctx::{write_json, StageCtx};
use crate::config::{Config, ModelSpec};
use crate::data::{self, DataError};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};

pub fn spec(cfg: &Config) -> StageSpec {
    StageSpec {
        stage: super::ctx::Stage::BaseModel.name().into(),
        params: json!({ "model": cfg.model, "runtime": cfg.runtime }),
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
            let params = crate::model::train::parameter_count(&m.vs);
            // The hub revision the download names: provenance, not an input (see crate::model::hub).
            let hub = crate::model::hub::provenance(&dir, |p| crate::ledger::files::memo::hash_file(p).map(|h| h.1));
            Ok(StageOutcome {
                outputs: vec![],
                metrics: json!({ "source": "hf-dir", "path": path, "parameters": params, "config": m.model.cfg,
                                 "checkpoint": checkpoint, "hub": hub }),
            })
        }
        ModelSpec::Random { arch, vocab_size, tokenizer } => {
            let texts = train_texts(ctx, crate::config::PretrainCorpus::ContextsQuestionsOptions)?;
            let out = ctx.out_dir()?.join("model");
            let r = crate::model::pretrain::build_random_model(&texts, arch, *vocab_size, tokenizer, ctx.seed, &out)?;
            // Checked and loaded back through the hf-dir path, exactly as flan-t5-base would be.
            crate::model::checkpoint::check_dir(&out)?;
            let m = crate::model::load_t5(&out, device)?;
            let params = crate::model::train::parameter_count(&m.vs);
            Ok(StageOutcome {
                outputs: vec![(Root::Run, "base-model/model".into())],
                metrics: json!({
                    "source": "random",
                    "parameters": params,
                    "config": m.model.cfg,
                    "tokenizer": {"entries": r.tokenizer_size, "learnt_pieces": r.tokenizer_pieces_learnt},
                }),
            })
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
                &out,
                progress.as_ref(),
            )?;
            let mut metrics = json!({
                "source": "scratch",
                "vocab_size": r.vocab_size,
                "examples": r.examples,
                // On the first training batch, before training (kept for older readers; the report prints
                // the held-out figures).
                "initial_loss": r.initial_loss,
                "heldout": r.heldout,
                "train_loss_last_window": last_window(&r.report.loss_curve),
                "pretrain": r.report,
            });
            // The file holds what a re-run reproduces bit for bit; the wall time lives in the entry.
            let wall = metrics["pretrain"].as_object_mut().and_then(|m| m.remove("wall_seconds"));
            write_json(&ctx.run_path("base-model/pretrain_metrics.json"), &metrics)?;
            metrics["wall_seconds"] = wall.unwrap_or(Value::Null);
            Ok(StageOutcome {
                outputs: vec![
                    (Root::Run, "base-model/model".into()),
                    (Root::Run, "base-model/pretrain_metrics.json".into()),
                ],
                metrics,
            })
        }
    }
}

/// The last logged window of a loss curve: the mean training loss (the mean over its optimiser steps of
/// each step's batch loss) over steps `first_step` to `last_step`; null for an empty curve.
pub fn last_window(curve: &[(usize, f64)]) -> Value {
    match curve {
        [] => Value::Null,
        [.., (last, loss)] => {
            let first = if curve.len() > 1 { curve[curve.len() - 2].0 + 1 } else { 1 };
            json!({"first_step": first, "last_step": last, "mean_loss": loss})
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
    use super::last_window;
    use serde_json::json;

    #[test]
    fn the_last_window_runs_from_the_step_after_the_previous_point() {
        assert_eq!(last_window(&[]), serde_json::Value::Null);
        assert_eq!(last_window(&[(10, 4.0)]), json!({"first_step": 1, "last_step": 10, "mean_loss": 4.0}));
        assert_eq!(
            last_window(&[(10, 4.0), (20, 3.5), (25, 3.25)]),
            json!({"first_step": 21, "last_step": 25, "mean_loss": 3.25})
        );
    }
}

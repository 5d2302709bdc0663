//! `generator`: LoRA fine-tuning on the four seed-supervised tasks built from the human train split
//! (question variants, context augmentation, answer expansion, answering). It has no validation set (it
//! may only see the train split) and keeps its last epoch.
use serde_json::json;
use std::collections::BTreeMap;

use super::ctx::StageCtx;
use crate::config::Config;
use crate::data::{self, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};

pub fn spec(cfg: &Config) -> StageSpec {
    StageSpec {
        stage: super::ctx::Stage::Generator.name().into(),
        params: json!({ "generator": cfg.generator, "train": cfg.train, "lora": cfg.lora, "runtime": cfg.runtime }),
        inputs: vec![super::ctx::human("train"), super::ctx::base_input(cfg)],
        determinism: Determinism::Bitwise,
    }
}

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let human: Vec<QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_train.jsonl"))?;
    let pairs = crate::synth::generator_pairs(&human, ctx.cfg.generator.max_pairs_per_task, ctx.seed);
    data::write_jsonl(&ctx.out_dir()?.join("generator_train.jsonl"), &pairs)?;
    let (mut metrics, _) = super::train::train_adapter(ctx, &pairs, &[], ctx.cfg.generator.epochs)?;
    let mut per_task: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pairs {
        *per_task.entry(p.task.clone()).or_default() += 1;
    }
    metrics["pairs_per_task"] = json!(per_task);
    Ok(StageOutcome {
        outputs: vec![
            (Root::Run, "generator/generator_train.jsonl".into()),
            (Root::Run, "generator/adapter".into()),
            (Root::Run, "generator/train_metrics.json".into()),
        ],
        metrics,
    })
}

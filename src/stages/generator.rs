//! `generator`: LoRA fine-tuning on the four seed-supervised tasks built from the human train split
//! (question variants, context augmentation, answer expansion, answering). It may only see the train
//! split: with `generator.val_share` > 0 a seeded share of the train split's contexts is held out of its
//! training as a validation slice and the epoch with the lowest loss on it is kept (the cost: those
//! contexts' pairs are not trained on); with 0 it keeps its last epoch.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::ctx::StageCtx;
use crate::config::{Config, GeneratorCfg, Lora, Runtime, Train};
use crate::data::{self, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};

/// The generator stage's parameters: the config's `[generator]`, `[train]`, `[lora]` and `[runtime]`.
#[derive(Serialize)]
struct GeneratorParams<'a> {
    generator: &'a GeneratorCfg,
    train: &'a Train,
    lora: &'a Lora,
    runtime: &'a Runtime,
}

pub fn spec(cfg: &Config) -> StageSpec {
    let params =
        GeneratorParams { generator: &cfg.generator, train: &cfg.train, lora: &cfg.lora, runtime: &cfg.runtime };
    StageSpec {
        stage: super::ctx::Stage::Generator.name().into(),
        params: super::ctx::params(&params),
        inputs: [vec![super::ctx::human("train")], super::ctx::base_inputs(cfg)].concat(),
        determinism: Determinism::Bitwise,
    }
}

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let human: Vec<QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_train.jsonl"))?;
    let (fit, held) = hold_out_contexts(&human, ctx.cfg.generator.val_share, ctx.seed);
    let pairs = crate::synth::generator_pairs(&fit, ctx.cfg.generator.max_pairs_per_task, ctx.seed);
    let val_pairs = crate::synth::generator_pairs(&held, 0, ctx.seed.wrapping_add(1));
    data::write_jsonl(&ctx.run_dir, &ctx.out_dir()?.join("generator_train.jsonl"), &pairs)?;
    let (training, _) = super::train::train_adapter(ctx, &pairs, &val_pairs, ctx.cfg.generator.epochs)?;
    training.write_file(&ctx.run_dir, &ctx.run_path("generator/train_metrics.json"))?;
    let mut pairs_per_task: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pairs {
        *pairs_per_task.entry(p.task.clone()).or_default() += 1;
    }
    let record = GeneratorMetrics {
        training,
        validation: Some(GeneratorValidation {
            share: ctx.cfg.generator.val_share,
            examples: held.len(),
            pairs: val_pairs.len(),
            train_examples: fit.len(),
        }),
        pairs_per_task,
    };
    let outputs = vec![
        (Root::Run, "generator/generator_train.jsonl".into()),
        (Root::Run, "generator/adapter".into()),
        (Root::Run, "generator/train_metrics.json".into()),
    ];
    StageOutcome::of(outputs, &record)
}

/// The generator entry's metrics: its training run's record (`generator/train_metrics.json`, with the
/// wall time) and how its data was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorMetrics {
    #[serde(flatten)]
    pub training: super::train::TrainMetrics,
    /// Absent from entries older than the generator's validation slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<GeneratorValidation>,
    /// Training pairs per generator task.
    pub pairs_per_task: BTreeMap<String, usize>,
}

/// The held-out share of the train split's contexts the generator validates on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratorValidation {
    pub share: f64,
    /// Human examples held out, and the generator pairs made from them.
    pub examples: usize,
    pub pairs: usize,
    /// Human examples the generator trains on.
    pub train_examples: usize,
}

/// Splits the train split by context: a seeded `share` of its distinct contexts (rounded, at least one
/// when share > 0 and there are two or more) and their examples are held out.
fn hold_out_contexts(train: &[QaExample], share: f64, seed: u64) -> (Vec<QaExample>, Vec<QaExample>) {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut contexts: Vec<&str> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in train {
        if seen.insert(e.context.as_str()) {
            contexts.push(e.context.as_str());
        }
    }
    let n = if share > 0.0 && contexts.len() >= 2 {
        ((share * contexts.len() as f64).round() as usize).clamp(1, contexts.len() - 1)
    } else {
        0
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x6765_6e5f_7661_6c00);
    contexts.shuffle(&mut rng);
    let held: std::collections::HashSet<&str> = contexts[..n].iter().copied().collect();
    train.iter().cloned().partition(|e| !held.contains(e.context.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: &str, ctx: &str) -> QaExample {
        QaExample {
            id: id.into(),
            context: ctx.into(),
            question: "q".into(),
            answer: "a".into(),
            choices: vec![],
            label: 0,
        }
    }

    #[test]
    fn held_out_contexts_are_whole_and_disjoint() {
        let train: Vec<QaExample> = (0..40).map(|i| ex(&i.to_string(), &format!("c{}", i / 2))).collect();
        let (fit, held) = hold_out_contexts(&train, 0.1, 7);
        assert_eq!(held.len(), 4, "2 of 20 contexts, 2 examples each");
        assert_eq!(fit.len() + held.len(), 40);
        assert!(held.iter().all(|h| fit.iter().all(|f| f.context != h.context)));
        assert_eq!(hold_out_contexts(&train, 0.1, 7).1, held, "seeded");
        assert!(hold_out_contexts(&train, 0.0, 7).1.is_empty());
    }
}

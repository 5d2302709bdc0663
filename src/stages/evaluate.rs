//! `evaluate-0` and `evaluate-A/B/C`: greedy predictions of one [`Model`] on the human test split —
//! model 0 is the base model with no adapter (zero-shot), A/B/C the base model with its arm's LoRA
//! adapter; every compared metric of the registry ([`crate::metrics::registry`], multiple-choice
//! accuracy by rank classification included) per example (`scores.jsonl`, typed [`ScoreRow`]s) and as a
//! mean with a bootstrap 95% interval. The one body below scores every model: only the loading differs.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::ctx::{present, Instance, Model, Stage, StageCtx};
use crate::config::{Config, Eval, Runtime};
use crate::data::{self, stats::round6, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::metrics::registry::{self, ScoreRow};
use crate::metrics::Metric;
use crate::model::adapter::load_with_adapter;
use crate::model::{dataset_keys, generate_texts, GenerateOptions};

/// A row of `predictions.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    pub prediction: String,
    pub reference: String,
}

/// An evaluate stage's parameters: the config's `[eval]`, the prompt length and `[runtime]` (the same for
/// every model).
#[derive(Serialize)]
struct EvaluateParams<'a> {
    eval: &'a Eval,
    max_input_tokens: usize,
    runtime: &'a Runtime,
}

/// An evaluate entry's metrics: the model's mean of every compared metric with its bootstrap interval,
/// and how it was scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateMetrics {
    /// The model's label (`0`, `A`, `B`, `C`).
    pub model: String,
    /// The LoRA adapter the base model was loaded with: null for model 0 (zero-shot), absent from entries
    /// older than model 0.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub adapter: Option<Option<String>>,
    /// Test examples.
    pub n: usize,
    /// Per compared metric (registry key).
    pub metrics: BTreeMap<String, Estimate>,
    pub bertscore_model: String,
    pub bertscore_layer: usize,
    pub rouge_stemmer: bool,
    pub empty_predictions: usize,
    /// CosmosQA's answer options per question (multiple-choice accuracy); absent from older entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mc_options: Option<usize>,
}

/// A mean with its bootstrap 95% interval, rounded to 6 decimals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub mean: f64,
    pub ci95: [f64; 2],
}

/// The model's LoRA adapter under the run directory (`train-X/adapter`, a replicate's
/// `train-X@seed/adapter`), or `None` for model 0.
pub fn adapter_dir(model: Model, replicate: Option<u64>) -> Option<String> {
    model.adapter_stage().map(|train| format!("{}/adapter", Instance { stage: train, replicate }.name()))
}

/// The BERTScore encoder (`eval.bertscore_model` under the workspace, or MiniLM from the bootstrap
/// cache / `HSX_MINILM`) and options (`eval.bertscore_layer`) every model is scored with; `compare`
/// scores the trivial baselines with the same.
pub fn bertscore_setup(
    ctx: &StageCtx,
    device: tch::Device,
) -> Result<(crate::model::bert::Bert, crate::metrics::bertscore::BertScoreOptions), PipelineError> {
    let cfg = ctx.cfg;
    let bert_dir = (!cfg.eval.bertscore_model.is_empty()).then(|| ctx.workspace.join(&cfg.eval.bertscore_model));
    let bert = crate::model::bert::load_minilm(bert_dir.as_deref(), device)?;
    Ok((bert, crate::metrics::bertscore::BertScoreOptions { layer: cfg.eval.bertscore_layer, ..Default::default() }))
}

/// The spec of `instance` (`evaluate-X` or a replicate `evaluate-X@seed`) of model `model`.
pub fn spec(cfg: &Config, model: Model, instance: Instance) -> StageSpec {
    debug_assert_eq!(instance.stage, Stage::Evaluate(model));
    let mut inputs = vec![super::ctx::human("test")];
    inputs.extend(adapter_dir(model, instance.replicate).map(|a| (Root::Run, a)));
    inputs.extend(super::ctx::base_inputs(cfg));
    StageSpec {
        stage: instance.name(),
        params: super::ctx::params(&EvaluateParams {
            eval: &cfg.eval,
            max_input_tokens: cfg.train.max_input_tokens,
            runtime: &cfg.runtime,
        }),
        inputs,
        determinism: Determinism::Bitwise,
    }
}

pub fn run(ctx: &StageCtx, model: Model) -> Result<StageOutcome, PipelineError> {
    let cfg = ctx.cfg;
    let test: Vec<QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_test.jsonl"))?;
    let device = ctx.device()?;
    let adapter = adapter_dir(model, ctx.instance.replicate);
    // The LoRA variables stay alive (`_lora`) as long as the model that uses them.
    let (m, _lora) = match &adapter {
        Some(rel) => {
            let (m, lora) = load_with_adapter(&ctx.base_model(), &ctx.run_path(rel), device)?;
            (m, Some(lora))
        }
        None => (crate::model::load_t5(&ctx.base_model(), device)?, None),
    };
    let prompts: Vec<String> = test.iter().map(|e| crate::synth::answer_prompt(&e.context, &e.question)).collect();
    let opts =
        GenerateOptions { max_new_tokens: cfg.eval.max_new_tokens, bf16: cfg.runtime.bf16(), ..Default::default() };
    let progress = ctx.trainer();
    let preds = generate_texts(
        &m,
        &prompts,
        &dataset_keys(prompts.len()),
        &opts,
        cfg.eval.batch_size,
        cfg.train.max_input_tokens,
        Some(progress.as_ref()),
    )?;
    let refs: Vec<String> = test.iter().map(|e| e.answer.clone()).collect();
    let mut per =
        crate::metrics::lexical(&preds, &refs, &[Metric::Em, Metric::F1, Metric::Rouge], cfg.eval.rouge_stemmer);
    let (bert, bopts) = bertscore_setup(ctx, device)?;
    let bs = crate::metrics::bertscore::bertscore(&bert, &preds, &refs, &bopts)?;
    per.bertscore_precision = bs.precision.clone();
    per.bertscore_recall = bs.recall.clone();
    per.bertscore_f1 = bs.f1.clone();
    // Multiple-choice accuracy by rank classification over the four CosmosQA options.
    let prompt_ids: Vec<Vec<i64>> =
        prompts.iter().map(|p| m.tokenizer.encode(p, Some(cfg.train.max_input_tokens))).collect::<Result<_, _>>()?;
    let options: Vec<Vec<Vec<i64>>> = test
        .iter()
        .map(|e| {
            e.choices
                .iter()
                .map(|c| m.tokenizer.encode(c, Some(cfg.train.max_target_tokens)))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()?;
    let option_scores = crate::model::choice::score_options(
        &m.model,
        &prompt_ids,
        &options,
        cfg.eval.batch_size,
        m.tokenizer.pad_id,
        cfg.runtime.bf16(),
    );
    let labels: Vec<usize> = test.iter().map(|e| e.label as usize).collect();
    per.mc_accuracy = crate::model::choice::correct(&option_scores, &labels);
    let dir = ctx.out_dir()?;
    let rows: Vec<Prediction> = test
        .iter()
        .zip(&preds)
        .map(|(e, p)| Prediction { id: e.id.clone(), prediction: p.clone(), reference: e.answer.clone() })
        .collect();
    data::write_jsonl(&ctx.run_dir, &dir.join("predictions.jsonl"), &rows)?;
    let ids: Vec<String> = test.iter().map(|e| e.id.clone()).collect();
    data::write_jsonl(&ctx.run_dir, &dir.join("scores.jsonl"), &ScoreRow::from_per_example(&ids, &per))?;
    let mut means = BTreeMap::new();
    for (k, def) in registry::compared().enumerate() {
        let e =
            crate::metrics::estimate((def.values)(&per), cfg.eval.bootstrap_resamples, ctx.seed.wrapping_add(k as u64));
        means.insert(def.key.into(), Estimate { mean: round6(e.mean), ci95: [round6(e.ci95.0), round6(e.ci95.1)] });
    }
    let name = ctx.instance.name();
    let metrics = EvaluateMetrics {
        model: model.label().into(),
        adapter: Some(adapter),
        n: test.len(),
        metrics: means,
        bertscore_model: bs.model,
        bertscore_layer: bs.layer,
        rouge_stemmer: cfg.eval.rouge_stemmer,
        empty_predictions: preds.iter().filter(|p| p.is_empty()).count(),
        mc_options: Some(test.first().map(|e| e.choices.len()).unwrap_or(0)),
    };
    let outputs = vec![(Root::Run, format!("{name}/predictions.jsonl")), (Root::Run, format!("{name}/scores.jsonl"))];
    StageOutcome::of(outputs, &metrics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::registry::Arm;

    fn smoke() -> Config {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
        Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn model_0_reads_the_test_split_and_the_base_model_and_no_adapter() {
        let cfg = smoke();
        let s = spec(&cfg, Model::Base, Stage::Evaluate(Model::Base).into());
        assert_eq!(s.stage, "evaluate-0");
        assert_eq!(s.inputs, [vec![super::super::ctx::human("test")], super::super::ctx::base_inputs(&cfg)].concat());
        assert!(s.inputs.iter().all(|(_, p)| !p.starts_with("train-")), "{:?}", s.inputs);
        // Everything else as for the fine-tuned models: the same parameters (the resume key) and class.
        for a in Arm::ALL {
            let t = spec(&cfg, Model::Arm(a), Stage::Evaluate(Model::Arm(a)).into());
            assert_eq!(t.stage, format!("evaluate-{}", a.letter()));
            assert_eq!(t.params, s.params);
            assert_eq!(t.determinism, s.determinism);
            let adapter = format!("train-{}/adapter", a.letter());
            assert_eq!(adapter_dir(Model::Arm(a), None).as_deref(), Some(adapter.as_str()));
            assert!(t.inputs.contains(&(Root::Run, adapter)), "{:?}", t.inputs);
            assert_eq!(t.inputs.len(), s.inputs.len() + 1);
            // A replicate reads its own adapter and records under its own name.
            let r = spec(&cfg, Model::Arm(a), Instance::of(Stage::Evaluate(Model::Arm(a)), 43, cfg.experiment.seed));
            assert_eq!(r.stage, format!("evaluate-{}@43", a.letter()));
            assert!(r.inputs.contains(&(Root::Run, format!("train-{}@43/adapter", a.letter()))), "{:?}", r.inputs);
            assert_eq!(r.params, t.params);
        }
        assert_eq!(adapter_dir(Model::Base, None), None);
    }
}

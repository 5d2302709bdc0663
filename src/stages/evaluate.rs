//! `evaluate-A/B/C`: greedy predictions of an arm's model on the human test split; every compared
//! metric of the registry (multiple-choice accuracy by rank classification included) ([`crate::metrics::registry`]) per example (`scores.jsonl`, typed
//! [`ScoreRow`]s) and as a mean with a bootstrap 95% interval.
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::ctx::{Arm, Stage, StageCtx};
use crate::config::Config;
use crate::data::{self, stats::round6, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::metrics::registry::{self, ScoreRow};
use crate::metrics::Metric;
use crate::model::adapter::load_with_adapter;
use crate::model::{generate_texts, GenerateOptions};

/// A row of `predictions.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Prediction {
    pub id: String,
    pub prediction: String,
    pub reference: String,
}

pub fn spec(cfg: &Config, arm: Arm) -> StageSpec {
    StageSpec {
        stage: Stage::Evaluate(arm).name().into(),
        params: json!({ "eval": cfg.eval, "max_input_tokens": cfg.train.max_input_tokens, "runtime": cfg.runtime }),
        inputs: vec![super::ctx::human("test"), (Root::Run, format!("{}/adapter", Stage::Train(arm).name())), super::ctx::base_input(cfg)],
        determinism: Determinism::Bitwise,
    }
}

pub fn run(ctx: &StageCtx, arm: Arm) -> Result<StageOutcome, PipelineError> {
    let cfg = ctx.cfg;
    let test: Vec<QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_test.jsonl"))?;
    let device = ctx.device()?;
    let adapter = ctx.run_path(&format!("{}/adapter", Stage::Train(arm).name()));
    let (m, _l) = load_with_adapter(&ctx.base_model(), &adapter, device)?;
    let prompts: Vec<String> = test.iter().map(|e| crate::synth::answer_prompt(&e.context, &e.question)).collect();
    let opts = GenerateOptions { max_new_tokens: cfg.eval.max_new_tokens, bf16: cfg.runtime.bf16(), ..Default::default() };
    let progress = ctx.trainer();
    let preds = generate_texts(&m, &prompts, &opts, cfg.eval.batch_size, cfg.train.max_input_tokens, Some(progress.as_ref()))?;
    let refs: Vec<String> = test.iter().map(|e| e.answer.clone()).collect();
    let mut per = crate::metrics::lexical(&preds, &refs, &[Metric::Em, Metric::F1, Metric::Rouge], cfg.eval.rouge_stemmer);
    let bert_dir = (!cfg.eval.bertscore_model.is_empty()).then(|| ctx.workspace.join(&cfg.eval.bertscore_model));
    let bert = crate::model::bert::load_minilm(bert_dir.as_deref(), device)?;
    let bopts = crate::metrics::bertscore::BertScoreOptions { layer: cfg.eval.bertscore_layer, ..Default::default() };
    let bs = crate::metrics::bertscore::bertscore(&bert, &preds, &refs, &bopts)?;
    per.bertscore_precision = bs.precision.clone();
    per.bertscore_recall = bs.recall.clone();
    per.bertscore_f1 = bs.f1.clone();
    // Multiple-choice accuracy by rank classification over the four CosmosQA options.
    let prompt_ids: Vec<Vec<i64>> = prompts.iter().map(|p| m.tokenizer.encode(p, Some(cfg.train.max_input_tokens))).collect::<Result<_, _>>()?;
    let options: Vec<Vec<Vec<i64>>> = test
        .iter()
        .map(|e| e.choices.iter().map(|c| m.tokenizer.encode(c, Some(cfg.train.max_target_tokens))).collect::<Result<Vec<_>, _>>())
        .collect::<Result<_, _>>()?;
    let option_scores = crate::model::choice::score_options(&m.model, &prompt_ids, &options, cfg.eval.batch_size, m.tokenizer.pad_id, cfg.runtime.bf16());
    let labels: Vec<usize> = test.iter().map(|e| e.label as usize).collect();
    per.mc_accuracy = crate::model::choice::correct(&option_scores, &labels);
    let dir = ctx.out_dir()?;
    let rows: Vec<Prediction> = test.iter().zip(&preds).map(|(e, p)| Prediction { id: e.id.clone(), prediction: p.clone(), reference: e.answer.clone() }).collect();
    data::write_jsonl(&dir.join("predictions.jsonl"), &rows)?;
    let ids: Vec<String> = test.iter().map(|e| e.id.clone()).collect();
    data::write_jsonl(&dir.join("scores.jsonl"), &ScoreRow::from_per_example(&ids, &per))?;
    let mut means = serde_json::Map::new();
    for (k, def) in registry::compared().enumerate() {
        let e = crate::metrics::estimate((def.values)(&per), cfg.eval.bootstrap_resamples, ctx.seed.wrapping_add(k as u64));
        means.insert(def.key.into(), json!({"mean": round6(e.mean), "ci95": [round6(e.ci95.0), round6(e.ci95.1)]}));
    }
    let name = Stage::Evaluate(arm).name();
    Ok(StageOutcome {
        outputs: vec![(Root::Run, format!("{name}/predictions.jsonl")), (Root::Run, format!("{name}/scores.jsonl"))],
        metrics: json!({
            "model": arm.letter(),
            "n": test.len(),
            "metrics": means,
            "bertscore_model": bs.model,
            "bertscore_layer": bs.layer,
            "rouge_stemmer": cfg.eval.rouge_stemmer,
            "empty_predictions": preds.iter().filter(|p| p.is_empty()).count(),
            "mc_options": test.first().map(|e| e.choices.len()).unwrap_or(0),
        }),
    })
}

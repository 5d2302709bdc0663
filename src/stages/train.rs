//! `train-A`, `train-B`, `train-C`: a LoRA adapter per arm with the seed's recipe on human /
//! contaminated / synthetic data, best epoch by loss on the human validation split. Also the adapter
//! training the `generator` stage shares.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::ctx::{write_record, Arm, Instance, QaLike, Stage, StageCtx};
use crate::config::{Config, Lora, Runtime, Train};
use crate::data::{self, DataError};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::model::adapter::{load_t5_lora, save_adapter};
use crate::model::lora::LoraConfig;
use crate::model::train::{parameter_count, train, Example, Recipe, TrainReport};
use crate::model::{LoadedT5, ModelError};
use crate::synth::{self, Pair};

/// Which file trains which arm's model.
pub fn training_file(arm: Arm) -> &'static str {
    match arm {
        Arm::A => "prepare/human_train.jsonl",
        Arm::B => "contaminate/ai_contaminated.jsonl",
        Arm::C => "synthesize/synthetic.jsonl",
    }
}

/// A train stage's parameters: the config's `[train]`, `[lora]` and `[runtime]` (the same for every arm).
#[derive(Serialize)]
struct TrainParams<'a> {
    train: &'a Train,
    lora: &'a Lora,
    runtime: &'a Runtime,
}

/// The spec of `instance` (`train-X` or a replicate `train-X@seed`) of arm `arm`.
pub fn spec(cfg: &Config, arm: Arm, instance: Instance) -> StageSpec {
    debug_assert_eq!(instance.stage, Stage::Train(arm));
    StageSpec {
        stage: instance.name(),
        params: super::ctx::params(&TrainParams { train: &cfg.train, lora: &cfg.lora, runtime: &cfg.runtime }),
        // The plan is an input: a model trained before (or under another) pre-registration is re-trained.
        inputs: [
            vec![(Root::Run, training_file(arm).into()), super::ctx::human("val")],
            super::ctx::base_inputs(cfg),
            vec![super::preregister::plan_input()],
        ]
        .concat(),
        determinism: Determinism::Bitwise,
    }
}

/// A training run's record: `<stage>/train_metrics.json` and, with the wall time, the entry's metrics
/// (`train-X`, and flattened into the generator's). The fields of a run that trained are absent when the
/// adapter stayed at its initialisation (no examples); `trained` and `validation` belong to `train-X`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainMetrics {
    pub examples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained: Option<bool>,
    /// Why nothing was trained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub optimizer_steps: usize,
    pub val_loss_per_epoch: Vec<f64>,
    pub best_epoch: usize,
    /// (optimiser step, mean loss since the previous point).
    pub loss_curve: Vec<(usize, f64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_examples: Option<usize>,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub run: Option<TrainRun>,
    /// The selection-side power check on the human validation split ([`validation_check`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationCheck>,
    /// In the entry only: the file reproduces bit for bit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_seconds: Option<f64>,
}

/// The fields of [`TrainReport`] beyond the loss curve, for a run that trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainRun {
    pub epochs: usize,
    pub final_train_loss: f64,
    /// Absent from entries older than the precision record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_precision: Option<String>,
    pub tokens_seen: usize,
    pub padding_share: f64,
    pub trainable_parameters: i64,
    pub total_parameters: i64,
    pub trainable_share: f64,
    /// The recipe as recorded (the config's `[train]` with the seed and precision): kept as the JSON it was
    /// written as, since `[train]` refuses unknown fields and so cannot be read back flattened.
    pub recipe: serde_json::Value,
}

impl TrainMetrics {
    /// The record of a training loop's report on `examples` pairs (validated on `val_examples`).
    pub fn from_report(r: TrainReport, examples: usize, val_examples: usize) -> Result<Self, PipelineError> {
        let recipe = serde_json::to_value(&r.recipe).map_err(PipelineError::Record)?;
        Ok(Self {
            examples,
            trained: None,
            reason: None,
            optimizer_steps: r.optimizer_steps,
            val_loss_per_epoch: r.val_loss_per_epoch,
            best_epoch: r.best_epoch,
            loss_curve: r.loss_curve,
            val_examples: Some(val_examples),
            run: Some(TrainRun {
                epochs: r.epochs,
                final_train_loss: r.final_train_loss,
                compute_precision: Some(r.compute_precision.to_owned()),
                tokens_seen: r.tokens_seen,
                padding_share: r.padding_share,
                trainable_parameters: r.trainable_parameters,
                total_parameters: r.total_parameters,
                trainable_share: r.trainable_share,
                recipe,
            }),
            validation: None,
            wall_seconds: Some(r.wall_seconds),
        })
    }

    /// Writes `train_metrics.json` (at `path` below the run directory `root`): the record without the
    /// wall time.
    pub fn write_file(&self, root: &std::path::Path, path: &std::path::Path) -> Result<(), PipelineError> {
        write_record(root, path, &Self { wall_seconds: None, ..self.clone() })
    }

    /// Reads a stage's `train_metrics.json`.
    pub fn read_file(path: &std::path::Path) -> Result<Self, PipelineError> {
        let bytes = crate::fsx::read_file(path, crate::fsx::Limit::JSON).map_err(DataError::from)?;
        Ok(serde_json::from_slice(&bytes)
            .map_err(|e| DataError::File { path: path.to_owned(), message: e.to_string() })?)
    }
}

pub fn run(ctx: &StageCtx, arm: Arm) -> Result<StageOutcome, PipelineError> {
    let rows: Vec<QaLike> = data::read_jsonl_as(&ctx.run_path(training_file(arm)))?;
    let val: Vec<QaLike> = data::read_jsonl_as(&ctx.run_path("prepare/human_val.jsonl"))?;
    let out = ctx.instance.name();
    let outputs = vec![(Root::Run, format!("{out}/adapter")), (Root::Run, format!("{out}/train_metrics.json"))];
    if rows.is_empty() {
        // Nothing passed the filters (a shortfall synthesis reports): the adapter stays at its
        // initialisation (lora_B = 0), so this model *is* the base model, and the entry says so.
        let lora = lora_of(ctx.cfg);
        tch::manual_seed(ctx.seed as i64);
        let (_m, lora_vs) = load_t5_lora(&ctx.base_model(), ctx.device()?, &lora, None)?;
        let dir = ctx.out_dir()?;
        save_adapter(&lora_vs, &lora, "base-model", &ctx.run_dir, &dir.join("adapter"))?;
        let record = TrainMetrics {
            examples: 0,
            trained: Some(false),
            reason: Some(format!("{} holds no examples", training_file(arm))),
            optimizer_steps: 0,
            val_loss_per_epoch: vec![],
            best_epoch: 0,
            loss_curve: vec![],
            val_examples: None,
            run: None,
            validation: None,
            wall_seconds: None,
        };
        record.write_file(&ctx.run_dir, &dir.join("train_metrics.json"))?;
        return StageOutcome::of(outputs, &record);
    }
    let (mut record, m) = train_adapter(ctx, &qa_pairs(&rows, "train"), &qa_pairs(&val, "val"), ctx.cfg.train.epochs)?;
    let human_train: Vec<data::QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_train.jsonl"))?;
    let human_val: Vec<data::QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_val.jsonl"))?;
    // In the file too: it is a deterministic function of the adapter, and the tiny-profile study reads it.
    record.trained = Some(true);
    record.validation = Some(validation_check(ctx, &m, &human_train, &human_val)?);
    record.write_file(&ctx.run_dir, &ctx.run_path(&format!("{out}/train_metrics.json")))?;
    StageOutcome::of(outputs, &record)
}

/// Greedy answers of a trained model to the human validation split, scored by token F1 against the
/// trivial baselines on the same questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationCheck {
    pub split: String,
    pub n: usize,
    /// What `f1` is.
    pub metric: String,
    pub f1: f64,
    pub f1_ci95: [f64; 2],
    pub baselines_f1: BTreeMap<String, f64>,
    pub empty_predictions: usize,
    pub distinct_predictions: usize,
    /// The first three validation questions with the model's answers.
    pub examples: Vec<ValidationExample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_baseline: Option<String>,
    /// Mean of model − best baseline, with its 95% cluster-bootstrap interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_to_best_baseline: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_ci95: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beats_best_baseline: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationExample {
    pub question: String,
    pub reference: String,
    pub prediction: String,
}

/// Greedy answers to the human validation split by the trained model, scored by token F1 against the
/// trivial baselines on the same questions (baselines built from the human train split): the model's
/// mean F1, each baseline's, and the paired difference model − best baseline with a 95% cluster-bootstrap
/// interval (clusters: contexts). This is the selection-side power check the tiny-profile study uses;
/// the pre-registered power check on the test split stays in `compare`.
pub fn validation_check(
    ctx: &StageCtx,
    m: &LoadedT5,
    train: &[data::QaExample],
    val: &[data::QaExample],
) -> Result<ValidationCheck, PipelineError> {
    use crate::data::stats::round6;
    use crate::metrics::baselines::{predictions, Baseline};
    use crate::metrics::stats::{cluster_mean_ci, mean, Clusters, Resampling};
    let cfg = ctx.cfg;
    let prompts: Vec<String> = val.iter().map(|e| synth::answer_prompt(&e.context, &e.question)).collect();
    let opts = crate::model::generate::GenerateOptions {
        max_new_tokens: cfg.eval.max_new_tokens,
        bf16: cfg.runtime.bf16(),
        ..Default::default()
    };
    let preds = crate::model::generate::generate_texts(
        m,
        &prompts,
        &crate::model::dataset_keys(prompts.len()),
        &opts,
        cfg.eval.batch_size,
        cfg.train.max_input_tokens,
        None,
    )?;
    let f1 = |ps: &[String]| -> Vec<f64> {
        ps.iter().zip(val).map(|(p, e)| crate::metrics::squad::f1(p, &e.answer)).collect()
    };
    let model_f1 = f1(&preds);
    let clusters = Clusters::from_keys(&val.iter().map(|e| e.context.as_str()).collect::<Vec<_>>());
    let r = Resampling { resamples: cfg.eval.bootstrap_resamples, seed: ctx.seed };
    let mut baselines = BTreeMap::new();
    let mut best: Option<(Baseline, Vec<f64>, f64)> = None;
    for b in Baseline::ALL {
        let v = f1(&predictions(b, train, val));
        let mu = mean(&v);
        baselines.insert(b.key().to_owned(), round6(mu));
        if best.as_ref().is_none_or(|(_, _, m)| mu > *m) {
            best = Some((b, v, mu));
        }
    }
    let mut out = ValidationCheck {
        split: "val".into(),
        n: val.len(),
        metric: "token F1 (SQuAD normalisation), greedy decoding".into(),
        f1: round6(mean(&model_f1)),
        f1_ci95: ci(cluster_mean_ci(&model_f1, &clusters, 0.95, r)),
        baselines_f1: baselines,
        empty_predictions: preds.iter().filter(|p| p.trim().is_empty()).count(),
        distinct_predictions: preds.iter().collect::<std::collections::BTreeSet<_>>().len(),
        examples: preds
            .iter()
            .zip(val)
            .take(3)
            .map(|(p, e)| ValidationExample {
                question: e.question.clone(),
                reference: e.answer.clone(),
                prediction: p.clone(),
            })
            .collect(),
        best_baseline: None,
        gap_to_best_baseline: None,
        gap_ci95: None,
        beats_best_baseline: None,
    };
    if let Some((b, v, _)) = best {
        let d: Vec<f64> = model_f1.iter().zip(&v).map(|(x, y)| x - y).collect();
        let iv = cluster_mean_ci(&d, &clusters, 0.95, r);
        out.best_baseline = Some(b.key().to_owned());
        out.gap_to_best_baseline = Some(round6(mean(&d)));
        out.gap_ci95 = Some(ci(iv));
        out.beats_best_baseline = Some(iv.lo > 0.0);
    }
    Ok(out)
}

fn ci(i: crate::metrics::stats::Interval) -> [f64; 2] {
    use crate::data::stats::round6;
    [round6(i.lo), round6(i.hi)]
}

/// `[lora]` as the model code's LoRA settings.
pub fn lora_of(cfg: &Config) -> LoraConfig {
    LoraConfig {
        r: cfg.lora.r,
        alpha: cfg.lora.alpha,
        dropout: cfg.lora.dropout,
        targets: cfg
            .lora
            .targets
            .iter()
            .map(|t| serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default())
            .collect(),
    }
}

fn qa_pairs(rows: &[QaLike], task: &str) -> Vec<Pair> {
    rows.iter()
        .map(|r| Pair {
            input: synth::answer_prompt(&r.context, &r.question),
            target: r.answer.clone(),
            task: task.into(),
            seed_id: r.id.clone(),
        })
        .collect()
}

fn pairs_to_examples(m: &LoadedT5, pairs: &[Pair], cfg: &Config) -> Result<Vec<Example>, ModelError> {
    pairs
        .iter()
        .map(|p| {
            Ok(Example {
                input_ids: m.tokenizer.encode(&p.input, Some(cfg.train.max_input_tokens))?,
                labels: m.tokenizer.encode(&p.target, Some(cfg.train.max_target_tokens))?,
            })
        })
        .collect()
}

/// Trains a LoRA adapter with the seed's recipe into `<stage>/adapter` (peft format). Returns the run's
/// record (with the wall time); the caller completes it and writes `<stage>/train_metrics.json` once.
pub fn train_adapter(
    ctx: &StageCtx,
    train_pairs: &[Pair],
    val_pairs: &[Pair],
    epochs: usize,
) -> Result<(TrainMetrics, LoadedT5), PipelineError> {
    let cfg = ctx.cfg;
    let device = ctx.device()?;
    let lora = lora_of(cfg);
    tch::manual_seed(ctx.seed as i64);
    let (m, lora_vs) = load_t5_lora(&ctx.base_model(), device, &lora, None)?;
    let train_ex = pairs_to_examples(&m, train_pairs, cfg)?;
    let val_ex = pairs_to_examples(&m, val_pairs, cfg)?;
    let mut recipe = Recipe::from_config(&cfg.train, ctx.seed, cfg.runtime.bf16());
    recipe.hyper.epochs = epochs;
    let total = parameter_count(&m.vs) + parameter_count(&lora_vs);
    let progress = ctx.trainer();
    let report = train(&m.model, &lora_vs, total, &train_ex, &val_ex, &recipe, m.tokenizer.pad_id, progress.as_ref())?;
    let dir = ctx.out_dir()?;
    save_adapter(&lora_vs, &lora, "base-model", &ctx.run_dir, &dir.join("adapter"))?;
    Ok((TrainMetrics::from_report(report, train_pairs.len(), val_pairs.len())?, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_arm_trains_on_its_own_data_and_reads_it_as_an_input() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
        let cfg = Config::load(&path).unwrap();
        let files: Vec<&str> = Arm::ALL.iter().map(|&a| training_file(a)).collect();
        assert_eq!(
            files,
            ["prepare/human_train.jsonl", "contaminate/ai_contaminated.jsonl", "synthesize/synthetic.jsonl"]
        );
        for a in Arm::ALL {
            let s = spec(&cfg, a, Stage::Train(a).into());
            assert_eq!(s.stage, format!("train-{a}"));
            assert_eq!(s.inputs[0], (Root::Run, training_file(a).to_owned()));
        }
    }
}

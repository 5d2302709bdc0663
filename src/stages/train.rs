//! `train-A`, `train-B`, `train-C`: a LoRA adapter per arm with the seed's recipe on human /
//! contaminated / synthetic data, best epoch by loss on the human validation split. Also the adapter
//! training the `generator` stage shares.
use serde_json::{json, Value};

use super::ctx::{write_json, Arm, Instance, QaLike, Stage, StageCtx};
use crate::config::Config;
use crate::data::{self, DataError};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::model::adapter::{load_t5_lora, save_adapter};
use crate::model::lora::LoraConfig;
use crate::model::train::{parameter_count, train, Example, Recipe};
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

/// The spec of `instance` (`train-X` or a replicate `train-X@seed`) of arm `arm`.
pub fn spec(cfg: &Config, arm: Arm, instance: Instance) -> StageSpec {
    debug_assert_eq!(instance.stage, Stage::Train(arm));
    StageSpec {
        stage: instance.name(),
        params: json!({ "train": cfg.train, "lora": cfg.lora, "runtime": cfg.runtime }),
        // The plan is an input: a model trained before (or under another) pre-registration is re-trained.
        inputs: vec![
            (Root::Run, training_file(arm).into()),
            super::ctx::human("val"),
            super::ctx::base_input(cfg),
            super::preregister::plan_input(),
        ],
        determinism: Determinism::Bitwise,
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
        save_adapter(&lora_vs, &lora, "base-model", &dir.join("adapter"))?;
        let v = json!({"examples": 0, "trained": false, "reason": format!("{} holds no examples", training_file(arm)),
                       "optimizer_steps": 0, "val_loss_per_epoch": [], "best_epoch": 0, "loss_curve": []});
        write_json(&dir.join("train_metrics.json"), &v)?;
        return Ok(StageOutcome { outputs, metrics: v });
    }
    let (mut metrics, m) = train_adapter(ctx, &qa_pairs(&rows, "train"), &qa_pairs(&val, "val"), ctx.cfg.train.epochs)?;
    metrics["trained"] = json!(true);
    let human_train: Vec<data::QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_train.jsonl"))?;
    let human_val: Vec<data::QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_val.jsonl"))?;
    let check = validation_check(ctx, &m, &human_train, &human_val)?;
    // In the file too: it is a deterministic function of the adapter, and the tiny-profile study reads it.
    let path = ctx.run_path(&format!("{out}/train_metrics.json"));
    let bytes = std::fs::read(&path).map_err(|source| DataError::Io { path: path.clone(), source })?;
    let mut file: Value =
        serde_json::from_slice(&bytes).map_err(|e| DataError::File { path: path.clone(), message: e.to_string() })?;
    file["trained"] = json!(true);
    file["validation"] = check.clone();
    write_json(&path, &file)?;
    metrics["validation"] = check;
    Ok(StageOutcome { outputs, metrics })
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
) -> Result<Value, PipelineError> {
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
    let mut baselines = serde_json::Map::new();
    let mut best: Option<(Baseline, Vec<f64>, f64)> = None;
    for b in Baseline::ALL {
        let v = f1(&predictions(b, train, val));
        let mu = mean(&v);
        baselines.insert(b.key().into(), json!(round6(mu)));
        if best.as_ref().is_none_or(|(_, _, m)| mu > *m) {
            best = Some((b, v, mu));
        }
    }
    let mut out = json!({
        "split": "val",
        "n": val.len(),
        "metric": "token F1 (SQuAD normalisation), greedy decoding",
        "f1": round6(mean(&model_f1)),
        "f1_ci95": ci(cluster_mean_ci(&model_f1, &clusters, 0.95, r)),
        "baselines_f1": baselines,
        "empty_predictions": preds.iter().filter(|p| p.trim().is_empty()).count(),
        "distinct_predictions": preds.iter().collect::<std::collections::BTreeSet<_>>().len(),
        "examples": preds.iter().zip(val).take(3).map(|(p, e)| json!({"question": e.question, "reference": e.answer, "prediction": p})).collect::<Vec<_>>(),
    });
    if let Some((b, v, _)) = best {
        let d: Vec<f64> = model_f1.iter().zip(&v).map(|(x, y)| x - y).collect();
        let iv = cluster_mean_ci(&d, &clusters, 0.95, r);
        out["best_baseline"] = json!(b.key());
        out["gap_to_best_baseline"] = json!(round6(mean(&d)));
        out["gap_ci95"] = ci(iv);
        out["beats_best_baseline"] = json!(iv.lo > 0.0);
    }
    Ok(out)
}

fn ci(i: crate::metrics::stats::Interval) -> Value {
    use crate::data::stats::round6;
    json!([round6(i.lo), round6(i.hi)])
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

/// Trains a LoRA adapter with the seed's recipe into `<stage>/adapter` (peft format) and writes
/// `<stage>/train_metrics.json` (without wall time, which goes to the entry so the file reproduces bit
/// for bit). Returns the metrics with the wall time.
pub fn train_adapter(
    ctx: &StageCtx,
    train_pairs: &[Pair],
    val_pairs: &[Pair],
    epochs: usize,
) -> Result<(Value, LoadedT5), PipelineError> {
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
    save_adapter(&lora_vs, &lora, "base-model", &dir.join("adapter"))?;
    let mut v = serde_json::to_value(&report).expect("a training report serialises");
    let wall = v.as_object_mut().and_then(|o| o.remove("wall_seconds"));
    v["examples"] = json!(train_pairs.len());
    v["val_examples"] = json!(val_pairs.len());
    write_json(&dir.join("train_metrics.json"), &v)?;
    v["wall_seconds"] = wall.unwrap_or(Value::Null);
    Ok((v, m))
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

//! `compare`: the pre-registered analysis ([`crate::analysis::analyse`]) of the three models and the
//! trivial baselines ([`crate::metrics::baselines`]) on the human test split, with the plan taken only
//! from `preregister/analysis_plan.json` (an input, whose hash the signed preregister entry covers):
//! means with cluster-bootstrap intervals (questions sharing a context resample together), the power
//! check (model A against the best baseline), H1–H4 on every planned metric (the primary decides) with
//! one-sided sign-flip p-values and k, breakdowns by question type and none-of-the-above, sample
//! predictions, and the plots.
//!
//! Model 0 (the base model, zero-shot: `evaluate-0`) is read with the same [`ScoreRow`] reader and gets
//! the same means and intervals, a row of the table, the breakdowns and the plots, and the descriptive
//! paired differences A − 0, B − 0, C − 0 ([`crate::analysis::differences`]). It is in no hypothesis:
//! H1–H4, the power check and the verdict rule are the pre-registration's and do not change.
//!
//! The entry records the config's `[analysis]` in `params.analysis` (its resume key) and the plan it
//! used in `metrics.plan`; `hsx verify` holds both to the pre-registration ([`crate::prereg::check_ledger`]).
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

use super::ctx::{write_record, Arm, Instance, Model, Stage, StageCtx};
use super::evaluate::Prediction;
use super::train::TrainMetrics;
use crate::analysis::{self, AnalysisResult, QuestionType, Scores};
use crate::config::{Analysis, Config, Eval};
use crate::data::{self, stats::round6, DataError, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::metrics::baselines::{self, Baseline};
use crate::metrics::registry::{self, ScoreRow};
use crate::metrics::stats::{Clusters, Resampling};
use crate::metrics::Metric;
use crate::prereg::AnalysisPlan;

mod record;
pub use record::*;

/// compare's parameters: the config's `[eval]` and `[analysis]`.
#[derive(serde::Serialize)]
struct CompareParams<'a> {
    eval: &'a Eval,
    analysis: &'a Analysis,
}

pub fn spec(cfg: &Config) -> StageSpec {
    let mut inputs = vec![super::preregister::plan_input(), super::ctx::human("test"), super::ctx::human("train")];
    // Model 0 once; each fine-tuned model once per training seed.
    let (master, seeds) = (cfg.experiment.seed, cfg.experiment.replicate_seeds());
    for m in Model::ALL {
        let stage = Stage::Evaluate(m);
        let replicates: Vec<Option<u64>> = if stage.replicated() {
            seeds.iter().map(|&s| Instance::of(stage, s, master).replicate).collect()
        } else {
            vec![None]
        };
        for replicate in replicates {
            let e = Instance { stage, replicate }.name();
            inputs.extend([(Root::Run, format!("{e}/scores.jsonl")), (Root::Run, format!("{e}/predictions.jsonl"))]);
            inputs.extend(
                m.adapter_stage()
                    .map(|t| (Root::Run, format!("{}/train_metrics.json", Instance { stage: t, replicate }.name()))),
            );
        }
    }
    StageSpec {
        stage: Stage::Compare.name().into(),
        params: super::ctx::params(&CompareParams { eval: &cfg.eval, analysis: &cfg.analysis }),
        inputs,
        determinism: Determinism::Bitwise,
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> PipelineError {
    DataError::Io { path: path.to_owned(), source: std::io::Error::other(e.to_string()) }.into()
}

fn stage_error(message: String) -> PipelineError {
    PipelineError::Stage { stage: Stage::Compare.name(), message }
}

/// One model's per-example scores: ids and, per compared metric (registry order), values in test order.
struct ModelScores {
    ids: Vec<String>,
    values: BTreeMap<String, Vec<f64>>,
}

/// `evaluate` is the evaluate instance's name (`evaluate-A`, `evaluate-A@43`).
fn load_scores(ctx: &StageCtx, evaluate: &str) -> Result<ModelScores, PipelineError> {
    let rows: Vec<ScoreRow> = data::read_jsonl_as(&ctx.run_path(&format!("{evaluate}/scores.jsonl")))?;
    let values = registry::compared()
        .enumerate()
        .map(|(k, m)| (m.key.to_string(), rows.iter().map(|r| r.values[k]).collect()))
        .collect();
    Ok(ModelScores { ids: rows.into_iter().map(|r| r.id).collect(), values })
}

/// The descriptive paired differences with model 0: what fine-tuning on each arm's data adds over the
/// base model as it is (`[minuend, subtrahend]` labels).
pub fn differences_with_model_0() -> Vec<[&'static str; 2]> {
    Arm::ALL.iter().map(|&a| [Model::Arm(a).label(), Model::Base.label()]).collect()
}

/// The plan from the preregister stage's file, checked against this config and test split: compare
/// uses no other values.
fn read_plan(ctx: &StageCtx) -> Result<AnalysisPlan, PipelineError> {
    let path = ctx.run_path(super::preregister::PLAN_FILE);
    let text = crate::fsx::read_file_string(&path, crate::fsx::Limit::JSON)?;
    let plan: AnalysisPlan =
        serde_json::from_str(&text).map_err(|e| io(&path, format!("not an analysis plan: {e}")))?;
    let expected = super::preregister::plan_for(ctx.cfg, &ctx.run_path("prepare/human_test.jsonl"))?;
    if plan != expected {
        return Err(stage_error(format!(
            "{} is not the pre-registration for this config and test split; re-run the preregister stage (and the models after it)",
            path.display()
        )));
    }
    Ok(plan)
}

/// Each baseline's per-item scores, its description (label, the constant's answer), and the BERTScore
/// encoder (model, layer) they were scored with.
type BaselineResults = (BTreeMap<String, Scores>, BTreeMap<String, BaselineDescription>, (String, usize));

/// Per-item scores of each trivial baseline on every compared metric of the registry: the lexical
/// metrics, BERTScore with the encoder and options the models are scored with (`bert`, `bopts`), and
/// multiple-choice accuracy by [`baselines::MC_RULE`] (a baseline has no model to rank the options).
fn baseline_scores(
    train: &[QaExample],
    test: &[QaExample],
    stem: bool,
    bert: &crate::model::bert::Bert,
    bopts: &crate::metrics::bertscore::BertScoreOptions,
) -> Result<BaselineResults, PipelineError> {
    let refs: Vec<String> = test.iter().map(|e| e.answer.clone()).collect();
    let mut scores = BTreeMap::new();
    let mut described = BTreeMap::new();
    let mut encoder = None;
    for b in Baseline::ALL {
        let preds = baselines::predictions(b, train, test);
        let mut per = crate::metrics::lexical(&preds, &refs, &[Metric::Em, Metric::F1, Metric::Rouge], stem);
        let bs = crate::metrics::bertscore::bertscore(bert, &preds, &refs, bopts)?;
        encoder = Some((bs.model, bs.layer));
        per.bertscore_precision = bs.precision;
        per.bertscore_recall = bs.recall;
        per.bertscore_f1 = bs.f1;
        per.mc_accuracy = baselines::mc_correct(&preds, test);
        let s: Scores = registry::compared()
            .filter(|m| (m.values)(&per).len() == test.len())
            .map(|m| (m.key.to_string(), (m.values)(&per).to_vec()))
            .collect();
        scores.insert(b.key().to_string(), s);
        let example = if b == Baseline::Constant { preds.first().cloned() } else { None };
        described.insert(b.key().to_string(), BaselineDescription { label: b.label().into(), answer: example });
    }
    let encoder = encoder.ok_or_else(|| stage_error("no trivial baseline was scored".into()))?;
    Ok((scores, described, encoder))
}

/// Rounds every float in a JSON value to 6 decimals (the ledger's figures): a pass over the serialised
/// record, so every float of every nested type is rounded alike.
fn rounded(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => Value::from(round6(n.as_f64().unwrap_or(f64::NAN))),
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        v => v,
    }
}

/// The instances of a stage, one per training seed when it is replicated (in the order of `seeds`),
/// else the one; the master seed's replicate keeps the plain name.
fn instances(stage: Stage, seeds: &[u64], master: u64) -> Vec<Instance> {
    if stage.replicated() {
        seeds.iter().map(|&s| Instance::of(stage, s, master)).collect()
    } else {
        vec![Instance::from(stage)]
    }
}

/// What compare's outputs are made of when there are several training replicates (the compare entry
/// records it in `replicates.derived`).
pub const REPLICATED_OUTPUTS: &str = "table, metrics_table.csv, the comparison plots, power, hypotheses and differences: across replicates (the verdicts that count); breakdowns: the per-item replicate-mean scores of A, B and C with the cluster bootstrap (test-set sampling only); samples and training-loss plots: the master seed's replicate";

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let seed = ctx.seed;
    let plan = read_plan(ctx)?;
    let test: Vec<QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_test.jsonl"))?;
    let train: Vec<QaExample> = data::read_jsonl_as(&ctx.run_path("prepare/human_train.jsonl"))?;
    let (master, seeds) = (ctx.cfg.experiment.seed, ctx.cfg.experiment.replicate_seeds());
    let master_index = seeds
        .iter()
        .position(|&s| s == master)
        .ok_or_else(|| stage_error(format!("the replicates {seeds:?} do not include the master seed {master}")))?;
    let replicated = seeds.len() > 1;
    // Every model's scores, one set per evaluate instance (per training seed for A, B and C).
    let mut all_scores: BTreeMap<Model, Vec<ModelScores>> = BTreeMap::new();
    let test_ids: Vec<String> = test.iter().map(|e| e.id.clone()).collect();
    for model in Model::ALL {
        for inst in instances(Stage::Evaluate(model), &seeds, master) {
            let s = load_scores(ctx, &inst.name())?;
            if s.ids != test_ids {
                return Err(stage_error(format!(
                    "{}/scores.jsonl does not cover the test split's examples in order",
                    inst.name()
                )));
            }
            all_scores.entry(model).or_default().push(s);
        }
    }
    // The master seed's replicate (the only one without replicates): samples, training-loss plots.
    let scores: BTreeMap<Model, &ModelScores> =
        all_scores.iter().map(|(m, v)| (*m, if v.len() > 1 { &v[master_index] } else { &v[0] })).collect();
    let ids = test_ids;
    let v = |arm: Arm, key: &str| -> &Vec<f64> { &scores[&Model::Arm(arm)].values[key] };

    // The resampling unit: a test context (questions on the same passage move together), or the item.
    let cluster_keys: Vec<String> = match plan.cluster_unit.as_str() {
        "item" => ids.clone(),
        _ => test.iter().map(|e| e.context.clone()).collect(),
    };
    let clusters = Clusters::from_keys(&cluster_keys);
    let models_by_replicate: analysis::ReplicatedScores = Model::ALL
        .iter()
        .map(|m| (m.label().to_string(), all_scores[m].iter().map(|s| s.values.clone()).collect()))
        .collect();
    // Per-item scores of every model: with replicates, a replicated model's replicate mean (breakdowns).
    let models: BTreeMap<String, Scores> = if replicated {
        models_by_replicate
            .iter()
            .map(|(k, sets)| {
                let keys = sets[0].keys();
                let mean = keys.map(|metric| {
                    let r: Vec<&[f64]> = sets.iter().map(|s| s[metric].as_slice()).collect();
                    (metric.clone(), crate::metrics::stats::replicate_mean(&r))
                });
                (k.clone(), mean.collect())
            })
            .collect()
    } else {
        Model::ALL.iter().map(|m| (m.label().to_string(), scores[m].values.clone())).collect()
    };
    let (bert, bopts) = super::evaluate::bertscore_setup(ctx, ctx.device()?)?;
    let (base_scores, base_described, encoder) =
        baseline_scores(&train, &test, ctx.cfg.eval.rouge_stemmer, &bert, &bopts)?;
    // How the baselines were scored beyond the lexical metrics (what the report states).
    let baseline_scoring = BaselineScoring {
        mc_rule: baselines::MC_RULE.into(),
        mc_options: test.first().map(|e| e.choices.len()).unwrap_or(0),
        bertscore_model: encoder.0,
        bertscore_layer: encoder.1,
    };
    // The verdicts that count: across replicates (with one replicate, exactly the one-seed analysis).
    let result: AnalysisResult =
        analysis::analyse_replicated(&plan, &models_by_replicate, &base_scores, &clusters, seed)
            .map_err(|e| stage_error(format!("analysis: {e}")))?;
    // Descriptive, not pre-registered: each arm against model 0, on every metric of the plan.
    let differences =
        analysis::differences_replicated(&plan, &models_by_replicate, &differences_with_model_0(), &clusters, seed)
            .map_err(|e| stage_error(format!("differences with model 0: {e}")))?;

    // The results tables (models; baselines) from the clustered means.
    let level = 1.0 - 2.0 * plan.alpha;
    let mut table = Table::new();
    let mut baseline_table = Table::new();
    for m in &result.means {
        let cell = Cell { mean: round6(m.mean), ci: Some([round6(m.ci.lo), round6(m.ci.hi)]), ci95: None };
        let t = if models.contains_key(&m.system) { &mut table } else { &mut baseline_table };
        t.entry(m.system.clone()).or_default().insert(m.metric.clone(), cell);
    }

    // Breakdowns on the primary metric: question type, and none-of-the-above vs the rest.
    let mut systems = models.clone();
    systems.extend(base_scores.iter().map(|(k, v)| (format!("baseline:{k}"), v.clone())));
    let r = Resampling { resamples: plan.bootstrap_resamples, seed };
    let qtype: Vec<String> = test.iter().map(|e| QuestionType::of(&e.question).key().to_string()).collect();
    let nota: Vec<String> = test
        .iter()
        .map(|e| {
            if analysis::is_none_of_the_above(&e.answer) { "none of the above" } else { "other answers" }.to_string()
        })
        .collect();
    let breakdowns = Breakdowns {
        metric: plan.primary_metric.clone(),
        question_type: analysis::breakdown(&qtype, &cluster_keys, &systems, &plan.primary_metric, level, r),
        none_of_the_above: analysis::breakdown(&nota, &cluster_keys, &systems, &plan.primary_metric, level, r),
    };

    // Samples of the seed's three kinds, deterministic: the first three in test-id order.
    // Every replicate's predictions are checked; the samples show the master seed's.
    for m in Model::ALL {
        for inst in instances(Stage::Evaluate(m), &seeds, master).into_iter().filter(|i| i.replicate.is_some()) {
            let p: Vec<Prediction> = data::read_jsonl_as(&ctx.run_path(&format!("{}/predictions.jsonl", inst.name())))?;
            if p.len() != ids.len() || p.iter().zip(&ids).any(|(p, id)| p.id != *id) {
                return Err(stage_error(format!(
                    "{}/predictions.jsonl does not cover the test split's examples in order",
                    inst.name()
                )));
            }
        }
    }
    let preds: BTreeMap<Model, Vec<Prediction>> = Model::ALL
        .iter()
        .map(|&m| {
            Ok((m, data::read_jsonl_as(&ctx.run_path(&format!("{}/predictions.jsonl", Stage::Evaluate(m).name())))?))
        })
        .collect::<Result<_, PipelineError>>()?;
    for (m, p) in &preds {
        if p.len() != ids.len() || p.iter().zip(&ids).any(|(p, id)| p.id != *id) {
            return Err(stage_error(format!(
                "{}/predictions.jsonl does not cover the test split's examples in order",
                Stage::Evaluate(*m).name()
            )));
        }
    }
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&x, &y| ids[x].cmp(&ids[y]));
    let em = |a: Arm, i: usize| v(a, "em")[i];
    let f1 = |a: Arm, i: usize| v(a, "f1")[i];
    let pick = |f: &dyn Fn(usize) -> bool| -> Vec<Sample> {
        order
            .iter()
            .copied()
            .filter(|&i| f(i))
            .take(3)
            .map(|i| Sample {
                id: ids[i].clone(),
                reference: preds[&Model::Base][i].reference.clone(),
                // Model 0's answer is shown beside the arms'; the selection rules read A, B and C only.
                f1: Model::ALL.iter().map(|m| (m.label().into(), round6(scores[m].values["f1"][i]))).collect(),
                answers: Model::ALL.iter().map(|m| (m.label().into(), preds[m][i].prediction.clone())).collect(),
            })
            .collect()
    };
    let samples = Samples {
        all_correct: pick(&|i| Arm::ALL.iter().all(|&a| em(a, i) == 1.0)),
        b_fails_c_succeeds: pick(&|i| em(Arm::B, i) == 0.0 && em(Arm::C, i) == 1.0),
        all_struggle: pick(&|i| Arm::ALL.iter().all(|&a| f1(a, i) < 0.2)),
        definitions: SampleDefinitions {
            all_correct: "EM = 1 for A, B and C".into(),
            b_fails_c_succeeds: "EM of B = 0 and EM of C = 1".into(),
            all_struggle: "F1 < 0.2 for A, B and C".into(),
        },
    };

    let dir = ctx.out_dir()?;
    crate::fsx::create_dirs(&ctx.run_dir, &dir.join("plots"))?;
    let csv = metrics_table_csv(&table, &baseline_table);
    crate::fsx::write(&ctx.run_dir, &dir.join("metrics_table.csv"), csv.as_bytes())?;
    let replicates = if replicated {
        Some(replicates_section(ctx, &plan, &models_by_replicate, &base_scores, &clusters, &seeds, master)?)
    } else {
        None
    };
    let comparison = Comparison {
        n: ids.len(),
        primary_metric: plan.primary_metric.clone(),
        interval_level: Some(level),
        resample_unit: Some(result.resample_unit),
        clusters: Some(result.clusters),
        bootstrap_resamples: plan.bootstrap_resamples,
        permutation_resamples: plan.permutation_resamples,
        table,
        baselines: Some(base_described),
        baseline_table: Some(baseline_table),
        baseline_scoring: Some(baseline_scoring),
        power: Some(result.power),
        hypotheses: result.hypotheses.into_iter().map(RecordedHypothesis::Tested).collect(),
        differences: Some(differences),
        breakdowns: Some(breakdowns),
        samples,
        replicates,
        plan: None,
        gaps: None,
    };
    let mut rounded = rounded(serde_json::to_value(&comparison).map_err(PipelineError::Record)?);
    // The plan as registered, unrounded: `hsx verify` compares it with the preregister entry's.
    rounded["plan"] = serde_json::to_value(&plan).map_err(PipelineError::Record)?;
    // The record as written: what the plots draw and the entry holds.
    let comparison: Comparison = serde_json::from_value(rounded).map_err(PipelineError::Record)?;
    write_record(&ctx.run_dir, &dir.join("comparison.json"), &comparison)?;
    let losses: BTreeMap<Arm, Option<TrainMetrics>> = Arm::ALL
        .iter()
        .map(|&a| {
            let p = ctx.run_path(&format!("{}/train_metrics.json", Stage::Train(a).name()));
            (a, TrainMetrics::read_file(&p).ok())
        })
        .collect();
    plots(&ctx.run_dir, &dir.join("plots"), &comparison, &losses)?;
    let outputs = vec![
        (Root::Run, "compare/metrics_table.csv".to_owned()),
        (Root::Run, "compare/comparison.json".to_owned()),
        (Root::Run, "compare/plots".to_owned()),
    ];
    StageOutcome::of(outputs, &comparison)
}

/// The compare entry's `replicates`: the training seeds, each replicate's own analysis (the one-seed
/// analysis of A, B and C trained with that seed: means with intervals, power check, hypotheses and
/// verdicts, which cover test-set sampling only), its training summary, and how the across-replicate
/// results at the top level were computed.
fn replicates_section(
    ctx: &StageCtx,
    plan: &AnalysisPlan,
    models: &analysis::ReplicatedScores,
    baselines: &BTreeMap<String, Scores>,
    clusters: &Clusters,
    seeds: &[u64],
    master: u64,
) -> Result<Replicates, PipelineError> {
    let mut per_replicate = Vec::new();
    for (j, &s) in seeds.iter().enumerate() {
        let r = analysis::analyse(plan, &analysis::replicate(models, j), baselines, clusters, ctx.seed)
            .map_err(|e| stage_error(format!("analysis of the replicate with training seed {s}: {e}")))?;
        let mut table = Table::new();
        for m in r.means.iter().filter(|m| Arm::ALL.iter().any(|a| Model::Arm(*a).label() == m.system)) {
            let cell = Cell { mean: m.mean, ci: Some([m.ci.lo, m.ci.hi]), ci95: None };
            table.entry(m.system.clone()).or_default().insert(m.metric.clone(), cell);
        }
        let mut stages = BTreeMap::new();
        let mut train = BTreeMap::new();
        for a in Arm::ALL {
            let label = Model::Arm(a).label();
            stages.insert(label.to_string(), Instance::of(Stage::Evaluate(Model::Arm(a)), s, master).name());
            let t = Instance::of(Stage::Train(a), s, master).name();
            let p = ctx.run_path(&format!("{t}/train_metrics.json"));
            let v = TrainMetrics::read_file(&p).ok();
            train.insert(
                label.to_string(),
                ReplicateTraining {
                    stage: t,
                    trained: v.as_ref().and_then(|v| v.trained),
                    examples: v.as_ref().map(|v| v.examples),
                    optimizer_steps: v.as_ref().map(|v| v.optimizer_steps),
                    best_epoch: v.as_ref().map(|v| v.best_epoch),
                },
            );
        }
        per_replicate.push(ReplicateAnalysis {
            seed: s,
            master: s == master,
            evaluate: stages,
            train,
            table,
            power: r.power,
            hypotheses: r.hypotheses,
        });
    }
    Ok(Replicates {
        seeds: seeds.to_vec(),
        count: seeds.len(),
        master_seed: master,
        per_replicate,
        across: Across {
            results: "the top-level table, power, hypotheses and differences".into(),
            estimate: "mean over the test items of the per-item mean over the replicates".into(),
            interval_method: analysis::ACROSS_INTERVAL_METHOD.into(),
            test_method: analysis::ACROSS_TEST_METHOD.into(),
            verdicts: "the verdict rule on the across-replicate interval and that test: a verdict needs both".into(),
            trained_once: "model 0 and the trivial baselines keep the one-seed cluster bootstrap".into(),
        },
        derived: REPLICATED_OUTPUTS.into(),
    })
}

/// `System,EM,EM_ci_low,EM_ci_high,F1,...` with one row per model, then one per baseline (`baseline:<key>`;
/// a metric a baseline was not scored on is empty).
pub fn metrics_table_csv(table: &Table, baselines: &Table) -> String {
    let mut s = String::from("System");
    for def in registry::compared() {
        let label = def.label;
        s.push_str(&format!(",{label},{label}_ci_low,{label}_ci_high"));
    }
    s.push('\n');
    let rows =
        table.iter().map(|(m, r)| (m.clone(), r)).chain(baselines.iter().map(|(b, r)| (format!("baseline:{b}"), r)));
    for (m, row) in rows {
        s.push_str(&m);
        for def in registry::compared() {
            match row.get(def.key) {
                Some(c) => {
                    let [lo, hi] = c.interval().unwrap_or([f64::NAN; 2]);
                    s.push_str(&format!(",{:.6},{lo:.6},{hi:.6}", c.mean))
                }
                None => s.push_str(",,,"),
            }
        }
        s.push('\n');
    }
    s
}

mod plots;
use plots::plots;

#[cfg(test)]
mod tests;

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
use plotters::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

use super::ctx::{write_json, Arm, Instance, Model, Stage, StageCtx};
use super::evaluate::Prediction;
use crate::analysis::{self, AnalysisResult, QuestionType, Scores};
use crate::config::Config;
use crate::data::{self, stats::round6, DataError, QaExample};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::metrics::baselines::{self, Baseline};
use crate::metrics::registry::{self, ScoreRow};
use crate::metrics::stats::{Clusters, Resampling};
use crate::metrics::Metric;
use crate::prereg::AnalysisPlan;

pub fn spec(cfg: &Config) -> StageSpec {
    let mut inputs = vec![super::preregister::plan_input(), super::ctx::human("test"), super::ctx::human("train")];
    // Model 0 once; each fine-tuned model once per training seed.
    let (master, seeds) = (cfg.experiment.seed, cfg.experiment.replicate_seeds());
    for m in Model::ALL {
        let stage = Stage::Evaluate(m);
        let replicates: Vec<Option<u64>> = if stage.replicated() { seeds.iter().map(|&s| Instance::of(stage, s, master).replicate).collect() } else { vec![None] };
        for replicate in replicates {
            let e = Instance { stage, replicate }.name();
            inputs.extend([(Root::Run, format!("{e}/scores.jsonl")), (Root::Run, format!("{e}/predictions.jsonl"))]);
            inputs.extend(m.adapter_stage().map(|t| (Root::Run, format!("{}/train_metrics.json", Instance { stage: t, replicate }.name()))));
        }
    }
    StageSpec { stage: Stage::Compare.name().into(), params: json!({ "eval": cfg.eval, "analysis": cfg.analysis }), inputs, determinism: Determinism::Bitwise }
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
    let values = registry::compared().enumerate().map(|(k, m)| (m.key.to_string(), rows.iter().map(|r| r.values[k]).collect())).collect();
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
    let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
    let plan: AnalysisPlan = serde_json::from_str(&text).map_err(|e| io(&path, format!("not an analysis plan: {e}")))?;
    let expected = super::preregister::plan_for(ctx.cfg, &ctx.run_path("prepare/human_test.jsonl"))?;
    if plan != expected {
        return Err(stage_error(format!(
            "{} is not the pre-registration for this config and test split; re-run the preregister stage (and the models after it)",
            path.display()
        )));
    }
    Ok(plan)
}

/// Per-item scores of each trivial baseline on every compared metric of the registry: the lexical
/// metrics, BERTScore with the encoder and options the models are scored with (`bert`, `bopts`), and
/// multiple-choice accuracy by [`baselines::MC_RULE`] (a baseline has no model to rank the options).
fn baseline_scores(
    train: &[QaExample],
    test: &[QaExample],
    stem: bool,
    bert: &crate::model::bert::Bert,
    bopts: &crate::metrics::bertscore::BertScoreOptions,
) -> Result<(BTreeMap<String, Scores>, BTreeMap<String, Value>, Value), PipelineError> {
    let refs: Vec<String> = test.iter().map(|e| e.answer.clone()).collect();
    let mut scores = BTreeMap::new();
    let mut described = BTreeMap::new();
    let mut encoder = Value::Null;
    for b in Baseline::ALL {
        let preds = baselines::predictions(b, train, test);
        let mut per = crate::metrics::lexical(&preds, &refs, &[Metric::Em, Metric::F1, Metric::Rouge], stem);
        let bs = crate::metrics::bertscore::bertscore(bert, &preds, &refs, bopts)?;
        encoder = json!({"bertscore_model": bs.model, "bertscore_layer": bs.layer});
        per.bertscore_precision = bs.precision;
        per.bertscore_recall = bs.recall;
        per.bertscore_f1 = bs.f1;
        per.mc_accuracy = baselines::mc_correct(&preds, test);
        let s: Scores =
            registry::compared().filter(|m| (m.values)(&per).len() == test.len()).map(|m| (m.key.to_string(), (m.values)(&per).to_vec())).collect();
        scores.insert(b.key().to_string(), s);
        let example = if b == Baseline::Constant { preds.first().cloned() } else { None };
        described.insert(b.key().to_string(), json!({"label": b.label(), "answer": example}));
    }
    Ok((scores, described, encoder))
}

/// Rounds every float in a JSON value to 6 decimals (the ledger's figures).
fn rounded(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => json!(round6(n.as_f64().unwrap_or(f64::NAN))),
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
    let master_index = seeds.iter().position(|&s| s == master).ok_or_else(|| stage_error(format!("the replicates {seeds:?} do not include the master seed {master}")))?;
    let replicated = seeds.len() > 1;
    // Every model's scores, one set per evaluate instance (per training seed for A, B and C).
    let mut all_scores: BTreeMap<Model, Vec<ModelScores>> = BTreeMap::new();
    let test_ids: Vec<String> = test.iter().map(|e| e.id.clone()).collect();
    for model in Model::ALL {
        for inst in instances(Stage::Evaluate(model), &seeds, master) {
            let s = load_scores(ctx, &inst.name())?;
            if s.ids != test_ids {
                return Err(stage_error(format!("{}/scores.jsonl does not cover the test split's examples in order", inst.name())));
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
    let models_by_replicate: analysis::ReplicatedScores =
        Model::ALL.iter().map(|m| (m.label().to_string(), all_scores[m].iter().map(|s| s.values.clone()).collect())).collect();
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
    let (base_scores, base_described, encoder) = baseline_scores(&train, &test, ctx.cfg.eval.rouge_stemmer, &bert, &bopts)?;
    // How the baselines were scored beyond the lexical metrics (what the report states).
    let mut baseline_scoring = json!({"mc_rule": baselines::MC_RULE, "mc_options": test.first().map(|e| e.choices.len()).unwrap_or(0)});
    baseline_scoring["bertscore_model"] = encoder["bertscore_model"].clone();
    baseline_scoring["bertscore_layer"] = encoder["bertscore_layer"].clone();
    // The verdicts that count: across replicates (with one replicate, exactly the one-seed analysis).
    let result: AnalysisResult = analysis::analyse_replicated(&plan, &models_by_replicate, &base_scores, &clusters, seed)
        .map_err(|e| stage_error(format!("analysis: {e}")))?;
    // Descriptive, not pre-registered: each arm against model 0, on every metric of the plan.
    let differences = analysis::differences_replicated(&plan, &models_by_replicate, &differences_with_model_0(), &clusters, seed)
        .map_err(|e| stage_error(format!("differences with model 0: {e}")))?;

    // The results tables (models; baselines) from the clustered means.
    let level = 1.0 - 2.0 * plan.alpha;
    let mut table: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut baseline_table: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for m in &result.means {
        let cell = json!({"mean": round6(m.mean), "ci": [round6(m.ci.lo), round6(m.ci.hi)]});
        let t = if models.contains_key(&m.system) { &mut table } else { &mut baseline_table };
        t.entry(m.system.clone()).or_default().insert(m.metric.clone(), cell);
    }

    // Breakdowns on the primary metric: question type, and none-of-the-above vs the rest.
    let mut systems = models.clone();
    systems.extend(base_scores.iter().map(|(k, v)| (format!("baseline:{k}"), v.clone())));
    let r = Resampling { resamples: plan.bootstrap_resamples, seed };
    let qtype: Vec<String> = test.iter().map(|e| QuestionType::of(&e.question).key().to_string()).collect();
    let nota: Vec<String> =
        test.iter().map(|e| if analysis::is_none_of_the_above(&e.answer) { "none of the above" } else { "other answers" }.to_string()).collect();
    let breakdowns = json!({
        "metric": plan.primary_metric,
        "question_type": analysis::breakdown(&qtype, &cluster_keys, &systems, &plan.primary_metric, level, r),
        "none_of_the_above": analysis::breakdown(&nota, &cluster_keys, &systems, &plan.primary_metric, level, r),
    });

    // Samples of the seed's three kinds, deterministic: the first three in test-id order.
    // Every replicate's predictions are checked; the samples show the master seed's.
    for m in Model::ALL {
        for inst in instances(Stage::Evaluate(m), &seeds, master).into_iter().filter(|i| i.replicate.is_some()) {
            let p: Vec<Prediction> = data::read_jsonl_as(&ctx.run_path(&format!("{}/predictions.jsonl", inst.name())))?;
            if p.len() != ids.len() || p.iter().zip(&ids).any(|(p, id)| p.id != *id) {
                return Err(stage_error(format!("{}/predictions.jsonl does not cover the test split's examples in order", inst.name())));
            }
        }
    }
    let preds: BTreeMap<Model, Vec<Prediction>> = Model::ALL
        .iter()
        .map(|&m| Ok((m, data::read_jsonl_as(&ctx.run_path(&format!("{}/predictions.jsonl", Stage::Evaluate(m).name())))?)))
        .collect::<Result<_, PipelineError>>()?;
    for (m, p) in &preds {
        if p.len() != ids.len() || p.iter().zip(&ids).any(|(p, id)| p.id != *id) {
            return Err(stage_error(format!("{}/predictions.jsonl does not cover the test split's examples in order", Stage::Evaluate(*m).name())));
        }
    }
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&x, &y| ids[x].cmp(&ids[y]));
    let em = |a: Arm, i: usize| v(a, "em")[i];
    let f1 = |a: Arm, i: usize| v(a, "f1")[i];
    let pick = |f: &dyn Fn(usize) -> bool| -> Vec<Value> {
        order
            .iter()
            .copied()
            .filter(|&i| f(i))
            .take(3)
            .map(|i| {
                let mut s = json!({"id": ids[i], "reference": preds[&Model::Base][i].reference, "f1": {}});
                // Model 0's answer is shown beside the arms'; the selection rules read A, B and C only.
                for m in Model::ALL {
                    s[m.label()] = json!(preds[&m][i].prediction);
                    s["f1"][m.label()] = json!(round6(scores[&m].values["f1"][i]));
                }
                s
            })
            .collect()
    };
    let samples = json!({
        "all_correct": pick(&|i| Arm::ALL.iter().all(|&a| em(a, i) == 1.0)),
        "b_fails_c_succeeds": pick(&|i| em(Arm::B, i) == 0.0 && em(Arm::C, i) == 1.0),
        "all_struggle": pick(&|i| Arm::ALL.iter().all(|&a| f1(a, i) < 0.2)),
        "definitions": {"all_correct": "EM = 1 for A, B and C", "b_fails_c_succeeds": "EM of B = 0 and EM of C = 1", "all_struggle": "F1 < 0.2 for A, B and C"},
    });

    let dir = ctx.out_dir()?;
    std::fs::create_dir_all(dir.join("plots")).map_err(|e| io(&dir, e))?;
    std::fs::write(dir.join("metrics_table.csv"), metrics_table_csv(&table, &baseline_table)).map_err(|e| io(&dir, e))?;
    let mut comparison = json!({
        "n": ids.len(),
        "primary_metric": plan.primary_metric,
        "interval_level": level,
        "resample_unit": result.resample_unit,
        "clusters": result.clusters,
        "bootstrap_resamples": plan.bootstrap_resamples,
        "permutation_resamples": plan.permutation_resamples,
        "table": table,
        "baselines": base_described,
        "baseline_table": baseline_table,
        "baseline_scoring": baseline_scoring,
        "power": result.power,
        "hypotheses": result.hypotheses,
        "differences": differences,
        "breakdowns": breakdowns,
        "samples": samples,
    });
    if replicated {
        comparison["replicates"] = replicates_section(ctx, &plan, &models_by_replicate, &base_scores, &clusters, &seeds, master)?;
    }
    let mut comparison = rounded(comparison);
    // The plan as registered, unrounded: `hsx verify` compares it with the preregister entry's.
    comparison["plan"] = serde_json::to_value(&plan).expect("an analysis plan serialises");
    write_json(&dir.join("comparison.json"), &comparison)?;
    let losses: BTreeMap<Arm, Value> = Arm::ALL
        .iter()
        .map(|&a| {
            let p = ctx.run_path(&format!("{}/train_metrics.json", Stage::Train(a).name()));
            let v: Value = std::fs::read_to_string(&p).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
            (a, v)
        })
        .collect();
    plots(&dir.join("plots"), &comparison, &losses)?;
    let outputs = vec![
        (Root::Run, "compare/metrics_table.csv".to_owned()),
        (Root::Run, "compare/comparison.json".to_owned()),
        (Root::Run, "compare/plots".to_owned()),
    ];
    Ok(StageOutcome { outputs, metrics: comparison })
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
) -> Result<Value, PipelineError> {
    let mut per_replicate = Vec::new();
    for (j, &s) in seeds.iter().enumerate() {
        let r = analysis::analyse(plan, &analysis::replicate(models, j), baselines, clusters, ctx.seed)
            .map_err(|e| stage_error(format!("analysis of the replicate with training seed {s}: {e}")))?;
        let mut table: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for m in r.means.iter().filter(|m| Arm::ALL.iter().any(|a| Model::Arm(*a).label() == m.system)) {
            table.entry(m.system.clone()).or_default().insert(m.metric.clone(), json!({"mean": m.mean, "ci": [m.ci.lo, m.ci.hi]}));
        }
        let mut stages = BTreeMap::new();
        let mut train = BTreeMap::new();
        for a in Arm::ALL {
            let label = Model::Arm(a).label();
            stages.insert(label.to_string(), Instance::of(Stage::Evaluate(Model::Arm(a)), s, master).name());
            let t = Instance::of(Stage::Train(a), s, master).name();
            let p = ctx.run_path(&format!("{t}/train_metrics.json"));
            let v: Value = std::fs::read_to_string(&p).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
            train.insert(label.to_string(), json!({"stage": t, "trained": v.get("trained"), "examples": v.get("examples"), "optimizer_steps": v.get("optimizer_steps"), "best_epoch": v.get("best_epoch")}));
        }
        per_replicate.push(json!({
            "seed": s,
            "master": s == master,
            "evaluate": stages,
            "train": train,
            "table": table,
            "power": r.power,
            "hypotheses": r.hypotheses,
        }));
    }
    Ok(json!({
        "seeds": seeds,
        "count": seeds.len(),
        "master_seed": master,
        "per_replicate": per_replicate,
        "across": {
            "results": "the top-level table, power, hypotheses and differences",
            "estimate": "mean over the test items of the per-item mean over the replicates",
            "interval_method": analysis::ACROSS_INTERVAL_METHOD,
            "test_method": analysis::ACROSS_TEST_METHOD,
            "verdicts": "the verdict rule on the across-replicate interval and that test: a verdict needs both",
            "trained_once": "model 0 and the trivial baselines keep the one-seed cluster bootstrap",
        },
        "derived": REPLICATED_OUTPUTS,
    }))
}

/// `System,EM,EM_ci_low,EM_ci_high,F1,...` with one row per model, then one per baseline (`baseline:<key>`;
/// a metric a baseline was not scored on is empty).
pub fn metrics_table_csv(table: &BTreeMap<String, BTreeMap<String, Value>>, baselines: &BTreeMap<String, BTreeMap<String, Value>>) -> String {
    let mut s = String::from("System");
    for def in registry::compared() {
        let label = def.label;
        s.push_str(&format!(",{label},{label}_ci_low,{label}_ci_high"));
    }
    s.push('\n');
    let rows = table.iter().map(|(m, r)| (m.clone(), r)).chain(baselines.iter().map(|(b, r)| (format!("baseline:{b}"), r)));
    for (m, row) in rows {
        s.push_str(&m);
        for def in registry::compared() {
            let num = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
            match row.get(def.key) {
                Some(v) => s.push_str(&format!(",{:.6},{:.6},{:.6}", num(&v["mean"]), num(&v["ci"][0]), num(&v["ci"][1]))),
                None => s.push_str(",,,"),
            }
        }
        s.push('\n');
    }
    s
}

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font travels inside the binary: plots render the same text on a machine with no fonts.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn bar_chart(path: &Path, title: &str, groups: &[String], series: &[(String, Vec<(f64, f64, f64)>)], y_label: &str) -> DrawResult {
    let root = BitMapBackend::new(path, (1300, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let lo = series.iter().flat_map(|(_, v)| v.iter().map(|x| x.1)).fold(0.0f64, f64::min).min(0.0);
    let hi = series.iter().flat_map(|(_, v)| v.iter().map(|x| x.2)).fold(0.0f64, f64::max).max(0.05) * 1.15;
    let n_series = series.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(groups.len() as f64 - 0.5), lo..hi)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups.len())
        .x_label_formatter(&|x| {
            let i = x.round() as i64;
            if (x - i as f64).abs() < 1e-6 && i >= 0 && (i as usize) < groups.len() { groups[i as usize].clone() } else { String::new() }
        })
        .y_desc(y_label)
        .label_style(("sans-serif", 18))
        .draw()?;
    let palette = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];
    let width = 0.8 / n_series;
    for (s, (name, vals)) in series.iter().enumerate() {
        let color = palette[s % palette.len()];
        let offset = -0.4 + width * (s as f64 + 0.5);
        chart
            .draw_series(vals.iter().enumerate().map(|(g, (m, _, _))| {
                let x = g as f64 + offset;
                Rectangle::new([(x - width * 0.45, 0.0), (x + width * 0.45, *m)], color.filled())
            }))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart.draw_series(vals.iter().enumerate().map(|(g, (m, l, h))| {
            let x = g as f64 + offset;
            ErrorBar::new_vertical(x, *l, *m, *h, BLACK.stroke_width(2), 10)
        }))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).label_font(("sans-serif", 18)).draw()?;
    root.present()?;
    Ok(())
}

fn loss_chart(path: &Path, title: &str, curve: &[(f64, f64)], val: &[f64], steps_per_epoch: f64) -> DrawResult {
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = curve.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let all: Vec<f64> = curve.iter().map(|p| p.1).chain(val.iter().copied()).filter(|x| x.is_finite()).collect();
    let (lo, hi) = (all.iter().copied().fold(f64::INFINITY, f64::min), all.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let (lo, hi) = if lo.is_finite() { (lo * 0.95, hi * 1.05 + 1e-6) } else { (0.0, 1.0) };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_x, lo..hi)?;
    chart.configure_mesh().x_desc("optimizer step").y_desc("loss").label_style(("sans-serif", 16)).draw()?;
    chart
        .draw_series(LineSeries::new(curve.iter().copied(), RGBColor(31, 119, 180).stroke_width(2)))?
        .label("train loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(31, 119, 180).stroke_width(2)));
    chart
        .draw_series(val.iter().enumerate().map(|(e, v)| Circle::new(((e + 1) as f64 * steps_per_epoch, *v), 6, RGBColor(214, 39, 40).filled())))?
        .label("validation loss (end of epoch)")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, RGBColor(214, 39, 40).filled()));
    chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).label_font(("sans-serif", 16)).draw()?;
    root.present()?;
    Ok(())
}

fn plots(dir: &Path, c: &Value, losses: &BTreeMap<Arm, Value>) -> Result<(), PipelineError> {
    register_font();
    let triple = |v: &Value| (v["mean"].as_f64().unwrap_or(0.0), v["ci"][0].as_f64().unwrap_or(0.0), v["ci"][1].as_f64().unwrap_or(0.0));
    let cell = |m: Model, k: &str| triple(&c["table"][m.label()][k]);
    let names = |m: Model| format!("{} ({})", m.label(), m.data());
    let pct = (100.0 * c["interval_level"].as_f64().unwrap_or(0.95)).round();
    let unit = c["resample_unit"].as_str().unwrap_or("item");
    // The fine-tuned models' intervals: across training seeds when there are replicates.
    let method = match c["replicates"]["count"].as_u64() {
        Some(r) => format!("A, B, C: two-stage bootstrap over {r} training seeds and {unit}"),
        None => format!("cluster bootstrap by {unit}"),
    };
    let pm = c["primary_metric"].as_str().unwrap_or("f1");
    let pm_label = registry::by_key(pm).map(|d| d.label).unwrap_or(pm);
    // The primary metric for the models and the trivial baselines.
    let mut groups: Vec<String> = Model::ALL.iter().map(|&m| names(m)).collect();
    let mut vals: Vec<(f64, f64, f64)> = Model::ALL.iter().map(|&m| cell(m, pm)).collect();
    if let Some(bt) = c["baseline_table"].as_object() {
        for (b, row) in bt {
            groups.push(format!("{b}*"));
            vals.push(triple(&row[pm]));
        }
    }
    let p = dir.join(format!("comparison_{pm}.png"));
    bar_chart(&p, &format!("{pm_label}: models and *trivial baselines ({pct}% CI, {method})"), &groups,
              &[(pm_label.to_owned(), vals)], pm_label)
        .map_err(|e| io(&p, e))?;
    let p = dir.join("comparison_multi_metric.png");
    let series: Vec<(String, Vec<(f64, f64, f64)>)> =
        Model::ALL.iter().map(|&m| (names(m), registry::compared().map(|d| cell(m, d.key)).collect())).collect();
    bar_chart(&p, &format!("All metrics by model ({pct}% CI, {method})"), &registry::compared().map(|d| d.label.to_string()).collect::<Vec<_>>(), &series, "score")
        .map_err(|e| io(&p, e))?;
    let p = dir.join(format!("gap_analysis_{pm}.png"));
    let empty = vec![];
    let hs = c["hypotheses"].as_array().unwrap_or(&empty);
    let primary: Vec<&Value> = hs.iter().filter(|h| h["primary"] == json!(true)).collect();
    let labels: Vec<String> = primary.iter().map(|h| format!("{} {}", h["id"].as_str().unwrap_or(""), h["contrast_label"].as_str().unwrap_or(""))).collect();
    let gaps: Vec<(f64, f64, f64)> = primary
        .iter()
        .map(|h| {
            let x = &h["contrast"];
            (x["estimate"].as_f64().unwrap_or(0.0), x["ci"]["lo"].as_f64().unwrap_or(0.0), x["ci"]["hi"].as_f64().unwrap_or(0.0))
        })
        .collect();
    bar_chart(&p, &format!("{pm_label} contrasts of H1–H4 ({pct}% CI, {method})"), &labels,
              &[(format!("{pm_label} difference"), gaps)], &format!("{pm_label} difference"))
        .map_err(|e| io(&p, e))?;
    for (m, v) in losses {
        let curve: Vec<(f64, f64)> = v["loss_curve"].as_array().map(|a| a.iter().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect()).unwrap_or_default();
        let val: Vec<f64> = v["val_loss_per_epoch"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        let steps = v["optimizer_steps"].as_f64().unwrap_or(0.0);
        let epochs = v["epochs"].as_f64().unwrap_or(1.0).max(1.0);
        let p = dir.join(format!("training_loss_{m}.png"));
        loss_chart(&p, &format!("Model {} training loss", names(Model::Arm(*m))), &curve, &val, steps / epochs).map_err(|e| io(&p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_has_three_columns_per_compared_metric() {
        let row: BTreeMap<String, Value> = registry::compared().map(|m| (m.key.to_string(), json!({"mean": 0.5, "ci": [0.25, 0.75]}))).collect();
        let table = BTreeMap::from([("A".to_string(), row)]);
        let base = BTreeMap::from([("constant".to_string(), BTreeMap::from([("em".to_string(), json!({"mean": 0.1, "ci": [0.05, 0.15]}))]))]);
        let csv = metrics_table_csv(&table, &base);
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        assert_eq!(header.len(), 1 + 3 * registry::compared().count());
        assert_eq!(&header[..4], ["System", "EM", "EM_ci_low", "EM_ci_high"]);
        assert!(csv.lines().nth(1).unwrap().starts_with("A,0.500000,0.250000,0.750000"));
        // A baseline row: its metrics, and empty cells where it was not scored.
        let b = csv.lines().nth(2).unwrap();
        assert!(b.starts_with("baseline:constant,0.100000,0.050000,0.150000,,,"), "{b}");
        assert_eq!(b.split(',').count(), header.len());
    }

    fn qa(id: &str, context: &str, question: &str, answer: &str, choices: [&str; 4], label: u8) -> QaExample {
        QaExample {
            id: id.into(),
            context: context.into(),
            question: question.into(),
            answer: answer.into(),
            choices: choices.iter().map(|c| c.to_string()).collect(),
            label,
        }
    }

    #[test]
    fn a_baselines_scores_are_its_predictions_scored_directly_on_every_compared_metric() {
        let bert = crate::model::bert::load_minilm(None, tch::Device::Cpu).unwrap_or_else(|e| {
            panic!("{e}\n(this test needs the bootstrap's MiniLM: run `make bootstrap`, or set HSX_MINILM)")
        });
        let bopts = crate::metrics::bertscore::BertScoreOptions::default();
        let train = vec![
            qa("t1", "We went out.", "Why?", "None of the above choices .", ["a", "b", "c", "None of the above choices ."], 3),
            qa("t2", "We went out.", "Why?", "None of the above choices .", ["a", "b", "c", "None of the above choices ."], 3),
            qa("t3", "We went out.", "Why?", "To buy milk.", ["To buy milk.", "b", "c", "d"], 0),
        ];
        let test = vec![
            qa("x1", "The dog ran to the park. It was sunny.", "Where did the dog run?", "To the park.",
               ["To the park.", "To the shop.", "Home.", "None of the above choices ."], 0),
            qa("x2", "She was tired so she went to sleep. It was late.", "Why did she sleep?", "She was tired.",
               ["She was hungry.", "She was tired.", "It was late.", "None of the above choices ."], 1),
            qa("x3", "Rain fell all day. We stayed in.", "What did we do?", "None of the above choices .",
               ["We went out.", "We swam.", "We ran.", "None of the above choices ."], 3),
        ];
        let (scores, described, encoder) = baseline_scores(&train, &test, true, &bert, &bopts).unwrap();
        assert_eq!(encoder["bertscore_model"], "all-MiniLM-L6-v2");
        let refs: Vec<String> = test.iter().map(|e| e.answer.clone()).collect();
        for b in Baseline::ALL {
            let s = &scores[b.key()];
            // Every compared metric of the registry has a baseline row now.
            for m in registry::compared() {
                assert_eq!(s.get(m.key).map(Vec::len), Some(test.len()), "{} has no {}", b.key(), m.key);
            }
            let preds = baselines::predictions(b, &train, &test);
            let direct = crate::metrics::bertscore::bertscore(&bert, &preds, &refs, &bopts).unwrap();
            assert_eq!(s["bertscore_f1"], direct.f1, "{}", b.key());
            assert_eq!(s["mc_accuracy"], baselines::mc_correct(&preds, &test), "{}", b.key());
            assert_eq!(s["f1"], crate::metrics::lexical(&preds, &refs, &[Metric::F1], true).f1, "{}", b.key());
            assert!(s["bertscore_f1"].iter().all(|x| x.is_finite() && x.abs() <= 1.0 + 1e-5), "{:?}", s["bertscore_f1"]);
        }
        // The rule, by hand: the constant answer "None of the above choices ." picks option 4 (right on
        // x3 only); the context sentence of x2 ("She was tired so she went to sleep.") picks option 2 (right).
        assert_eq!(described["constant"]["answer"], "None of the above choices .");
        assert_eq!(scores["constant"]["mc_accuracy"], vec![0.0, 0.0, 1.0]);
        assert_eq!(scores["context-sentence"]["mc_accuracy"][1], 1.0);
        // An answer identical to its reference has BERTScore F1 1 (x3's constant answer).
        assert!((scores["constant"]["bertscore_f1"][2] - 1.0).abs() < 1e-5, "{:?}", scores["constant"]["bertscore_f1"]);
    }
}

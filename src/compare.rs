//! The `compare` stage: the results table, gaps A−B and C−B and recovery (C−B)/(A−B) for every metric
//! with paired-bootstrap 95% intervals and sign-flip permutation p-values, a verdict per hypothesis
//! computed from those intervals, sample predictions, and the plots.
//!
//! Hypotheses (primary metric: token F1; the others are reported alongside):
//! * H1 — AI contamination lowers quality: A − B > 0.
//! * H2 — synthetic data from the clean seed beats contaminated data: C − B > 0.
//! * H3 — synthetic data recovers at least half of the quality lost: (C−B)/(A−B) ≥ 0.5.
//!
//! A hypothesis is *supported* when its whole 95% interval lies on the hypothesised side, *not
//! supported* when the whole interval lies on the other side, and *inconclusive* otherwise (H3 is
//! inconclusive whenever H1 is not supported: there is no established gap to recover).
use plotters::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Config;
use crate::data::{self, stats::round6, DataError};
use crate::ledger::{Root, Roots, StageOutcome};
use crate::metrics::bootstrap;
use crate::pipeline::PipelineError;
use crate::stages::Prediction;

pub const METRICS: [(&str, &str); 6] =
    [("em", "EM"), ("f1", "F1"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"), ("bertscore_f1", "BERTScore")];
pub const MODELS: [char; 3] = ['A', 'B', 'C'];

#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub estimate: f64,
    pub ci95: (f64, f64),
    pub p_value: f64,
}

fn verdict(lo: f64, hi: f64, threshold: f64) -> &'static str {
    if lo > threshold {
        "supported"
    } else if hi < threshold {
        "not supported"
    } else {
        "inconclusive"
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> PipelineError {
    DataError::Io { path: path.to_owned(), source: std::io::Error::other(e.to_string()) }.into()
}

/// Per-example scores of one model: metric → values in test order.
fn load_scores(run: &Path, m: char) -> Result<(Vec<String>, BTreeMap<String, Vec<f64>>), PipelineError> {
    let rows: Vec<Value> = data::read_jsonl_as(&run.join(format!("evaluate-{m}/scores.jsonl")))?;
    let ids = rows.iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect();
    let mut out = BTreeMap::new();
    for (k, _) in METRICS {
        out.insert(k.to_owned(), rows.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect());
    }
    Ok((ids, out))
}

pub fn compare(cfg: &Config, roots: &Roots, seed: u64) -> Result<StageOutcome, PipelineError> {
    let run = roots.run.clone().expect("run root");
    let r = cfg.eval.bootstrap_resamples;
    let pr = cfg.eval.permutation_resamples;
    let mut scores = BTreeMap::new();
    let mut ids0: Option<Vec<String>> = None;
    for m in MODELS {
        let (ids, s) = load_scores(&run, m)?;
        if let Some(i0) = &ids0 {
            if *i0 != ids {
                return Err(PipelineError::Usage(format!("evaluate-{m}/scores.jsonl does not cover the same test examples as evaluate-A")));
            }
        }
        ids0 = Some(ids);
        scores.insert(m, s);
    }
    let ids = ids0.unwrap_or_default();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;

    // Table: mean and bootstrap CI per model and metric.
    let mut table = BTreeMap::new();
    for (mi, m) in MODELS.iter().enumerate() {
        let mut row = BTreeMap::new();
        for (k, (key, _)) in METRICS.iter().enumerate() {
            let v = &scores[m][*key];
            let (lo, hi) = bootstrap::mean_ci(v, r, seed ^ ((mi * 16 + k) as u64));
            row.insert(key.to_string(), json!({"mean": round6(mean(v)), "ci95": [round6(lo), round6(hi)]}));
        }
        table.insert(m.to_string(), row);
    }
    // Gaps and recovery.
    let mut gaps = BTreeMap::new();
    for (k, (key, _)) in METRICS.iter().enumerate() {
        let (a, b, c) = (&scores[&'A'][*key], &scores[&'B'][*key], &scores[&'C'][*key]);
        let s = seed.wrapping_add(1000 + k as u64 * 7);
        let ab = bootstrap::diff_ci(a, b, r, s);
        let cb = bootstrap::diff_ci(c, b, r, s + 1);
        let (rec, rec_ci, undefined) = bootstrap::recovery_ci(a, b, c, r, s + 2);
        gaps.insert(
            key.to_string(),
            json!({
                "a_minus_b": {"estimate": round6(mean(a) - mean(b)), "ci95": [round6(ab.0), round6(ab.1)], "p_value": round6(bootstrap::paired_permutation_p(a, b, pr, s + 3))},
                "c_minus_b": {"estimate": round6(mean(c) - mean(b)), "ci95": [round6(cb.0), round6(cb.1)], "p_value": round6(bootstrap::paired_permutation_p(c, b, pr, s + 4))},
                "recovery": {"estimate": if rec.is_finite() { json!(round6(rec)) } else { Value::Null },
                              "ci95": if rec_ci.0.is_finite() { json!([round6(rec_ci.0), round6(rec_ci.1)]) } else { Value::Null },
                              "undefined_resamples": undefined},
            }),
        );
    }
    let g = &gaps["f1"];
    let ci = |v: &Value| (v["ci95"][0].as_f64().unwrap_or(f64::NAN), v["ci95"][1].as_f64().unwrap_or(f64::NAN));
    let (ab_lo, ab_hi) = ci(&g["a_minus_b"]);
    let (cb_lo, cb_hi) = ci(&g["c_minus_b"]);
    let h1 = verdict(ab_lo, ab_hi, 0.0);
    let h2 = verdict(cb_lo, cb_hi, 0.0);
    let h3 = if h1 != "supported" {
        "inconclusive"
    } else {
        let (lo, hi) = ci(&g["recovery"]);
        if lo.is_finite() { verdict(lo, hi, 0.5) } else { "inconclusive" }
    };
    let hypotheses = json!([
        {"id": "H1", "claim": "AI contamination lowers answer quality (F1 of A exceeds B)", "metric": "f1", "verdict": h1,
         "evidence": format!("A−B = {:.4}, 95% CI [{:.4}, {:.4}], p = {:.4}", g["a_minus_b"]["estimate"].as_f64().unwrap_or(f64::NAN), ab_lo, ab_hi, g["a_minus_b"]["p_value"].as_f64().unwrap_or(f64::NAN))},
        {"id": "H2", "claim": "Filtered synthetic data beats contaminated data (F1 of C exceeds B)", "metric": "f1", "verdict": h2,
         "evidence": format!("C−B = {:.4}, 95% CI [{:.4}, {:.4}], p = {:.4}", g["c_minus_b"]["estimate"].as_f64().unwrap_or(f64::NAN), cb_lo, cb_hi, g["c_minus_b"]["p_value"].as_f64().unwrap_or(f64::NAN))},
        {"id": "H3", "claim": "Synthetic data recovers at least half of the F1 lost to contamination", "metric": "f1", "verdict": h3,
         "evidence": match g["recovery"]["estimate"].as_f64() {
             Some(e) => {
                 let (lo, hi) = ci(&g["recovery"]);
                 format!("recovery = {e:.3}, 95% CI [{lo:.3}, {hi:.3}]")
             }
             None => "recovery undefined: A and B have the same mean F1".to_owned(),
         }},
    ]);

    // Samples of the seed's three kinds, deterministic: the first three in test-id order.
    let preds: BTreeMap<char, Vec<Prediction>> = MODELS
        .iter()
        .map(|&m| Ok((m, data::read_jsonl_as(&run.join(format!("evaluate-{m}/predictions.jsonl")))?)))
        .collect::<Result<_, PipelineError>>()?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&x, &y| ids[x].cmp(&ids[y]));
    let em = |m: char, i: usize| scores[&m]["em"][i];
    let f1 = |m: char, i: usize| scores[&m]["f1"][i];
    let pick = |f: &dyn Fn(usize) -> bool| -> Vec<Value> {
        order
            .iter()
            .copied()
            .filter(|&i| f(i))
            .take(3)
            .map(|i| {
                json!({"id": ids[i], "reference": preds[&'A'][i].reference,
                       "A": preds[&'A'][i].prediction, "B": preds[&'B'][i].prediction, "C": preds[&'C'][i].prediction,
                       "f1": {"A": round6(f1('A', i)), "B": round6(f1('B', i)), "C": round6(f1('C', i))}})
            })
            .collect()
    };
    let samples = json!({
        "all_correct": pick(&|i| MODELS.iter().all(|&m| em(m, i) == 1.0)),
        "b_fails_c_succeeds": pick(&|i| em('B', i) == 0.0 && em('C', i) == 1.0),
        "all_struggle": pick(&|i| MODELS.iter().all(|&m| f1(m, i) < 0.2)),
        "definitions": {"all_correct": "EM = 1 for A, B and C", "b_fails_c_succeeds": "EM of B = 0 and EM of C = 1", "all_struggle": "F1 < 0.2 for A, B and C"},
    });

    let dir = run.join("compare");
    std::fs::create_dir_all(dir.join("plots")).map_err(|e| io(&dir, e))?;
    let csv = metrics_table_csv(&table);
    std::fs::write(dir.join("metrics_table.csv"), csv).map_err(|e| io(&dir, e))?;
    let comparison = json!({"n": ids.len(), "table": table, "gaps": gaps, "hypotheses": hypotheses, "samples": samples,
                            "primary_metric": "f1", "bootstrap_resamples": r, "permutation_resamples": pr});
    std::fs::write(dir.join("comparison.json"), format!("{}\n", serde_json::to_string_pretty(&comparison).expect("json"))).map_err(|e| io(&dir, e))?;
    let losses: BTreeMap<char, Value> = MODELS
        .iter()
        .map(|&m| {
            let p = run.join(format!("train-{m}/train_metrics.json"));
            let v: Value = std::fs::read_to_string(&p).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
            (m, v)
        })
        .collect();
    plots(&dir.join("plots"), &comparison, &losses)?;
    let mut outputs = vec![(Root::Run, "compare/metrics_table.csv".to_owned()), (Root::Run, "compare/comparison.json".to_owned())];
    outputs.push((Root::Run, "compare/plots".to_owned()));
    Ok(StageOutcome { outputs, metrics: comparison })
}

/// `Model,EM,EM_ci_low,EM_ci_high,F1,...` with one row per model.
pub fn metrics_table_csv(table: &BTreeMap<String, BTreeMap<String, Value>>) -> String {
    let mut s = String::from("Model");
    for (_, label) in METRICS {
        s.push_str(&format!(",{label},{label}_ci_low,{label}_ci_high"));
    }
    s.push('\n');
    for (m, row) in table {
        s.push_str(m);
        for (key, _) in METRICS {
            let v = &row[key];
            s.push_str(&format!(",{:.6},{:.6},{:.6}", v["mean"].as_f64().unwrap_or(f64::NAN), v["ci95"][0].as_f64().unwrap_or(f64::NAN), v["ci95"][1].as_f64().unwrap_or(f64::NAN)));
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
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
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

fn plots(dir: &Path, c: &Value, losses: &BTreeMap<char, Value>) -> Result<(), PipelineError> {
    register_font();
    let cell = |m: char, k: &str| {
        let v = &c["table"][m.to_string()][k];
        (v["mean"].as_f64().unwrap_or(0.0), v["ci95"][0].as_f64().unwrap_or(0.0), v["ci95"][1].as_f64().unwrap_or(0.0))
    };
    let names = |m: char| match m {
        'A' => "A (human)".to_owned(),
        'B' => "B (AI-contaminated)".to_owned(),
        _ => "C (synthetic)".to_owned(),
    };
    let p = dir.join("comparison_f1.png");
    bar_chart(&p, "Token F1 on the human test split (95% bootstrap CI)", &MODELS.iter().map(|&m| names(m)).collect::<Vec<_>>(),
              &[("F1".to_owned(), MODELS.iter().map(|&m| cell(m, "f1")).collect())], "F1")
        .map_err(|e| io(&p, e))?;
    let p = dir.join("comparison_multi_metric.png");
    let series: Vec<(String, Vec<(f64, f64, f64)>)> = MODELS.iter().map(|&m| (names(m), METRICS.iter().map(|(k, _)| cell(m, k)).collect())).collect();
    bar_chart(&p, "All metrics by model (95% bootstrap CI)", &METRICS.iter().map(|(_, l)| l.to_string()).collect::<Vec<_>>(), &series, "score")
        .map_err(|e| io(&p, e))?;
    let p = dir.join("gap_analysis_f1.png");
    let gap = |k: &str| {
        let v = &c["gaps"]["f1"][k];
        (v["estimate"].as_f64().unwrap_or(0.0), v["ci95"][0].as_f64().unwrap_or(0.0), v["ci95"][1].as_f64().unwrap_or(0.0))
    };
    bar_chart(&p, "F1 gaps: A−B (lost to contamination) and C−B (regained), paired 95% CI", &["A − B".to_owned(), "C − B".to_owned()],
              &[("F1 difference".to_owned(), vec![gap("a_minus_b"), gap("c_minus_b")])], "F1 difference")
        .map_err(|e| io(&p, e))?;
    for (m, v) in losses {
        let curve: Vec<(f64, f64)> = v["loss_curve"].as_array().map(|a| a.iter().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect()).unwrap_or_default();
        let val: Vec<f64> = v["val_loss_per_epoch"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect()).unwrap_or_default();
        let steps = v["optimizer_steps"].as_f64().unwrap_or(0.0);
        let epochs = v["epochs"].as_f64().unwrap_or(1.0).max(1.0);
        let p = dir.join(format!("training_loss_{m}.png"));
        loss_chart(&p, &format!("Model {} training loss", names(*m)), &curve, &val, steps / epochs).map_err(|e| io(&p, e))?;
    }
    Ok(())
}

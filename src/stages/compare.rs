//! `compare`: the results table, gaps A−B and C−B and recovery (C−B)/(A−B) for every compared metric
//! of the registry with paired-bootstrap 95% intervals and sign-flip permutation p-values, a verdict per
//! hypothesis computed from those intervals, sample predictions, and the plots.
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

use super::evaluate::Prediction;
use super::ctx::{write_json, Arm, Stage, StageCtx};
use crate::config::Config;
use crate::data::{self, stats::round6, DataError};
use crate::error::PipelineError;
use crate::ledger::{Determinism, Root, StageOutcome, StageSpec};
use crate::metrics::bootstrap;
use crate::metrics::registry::{self, ScoreRow, PRIMARY};

pub fn spec(cfg: &Config) -> StageSpec {
    StageSpec {
        stage: Stage::Compare.name().into(),
        params: json!({ "eval": cfg.eval }),
        inputs: Arm::ALL
            .iter()
            .flat_map(|&a| {
                let (e, t) = (Stage::Evaluate(a).name(), Stage::Train(a).name());
                [(Root::Run, format!("{e}/scores.jsonl")), (Root::Run, format!("{e}/predictions.jsonl")), (Root::Run, format!("{t}/train_metrics.json"))]
            })
            .collect(),
        determinism: Determinism::Bitwise,
    }
}

/// A hypothesis's verdict, from its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "supported")]
    Supported,
    #[serde(rename = "not supported")]
    NotSupported,
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Verdict {
    /// Supported when the interval lies wholly above `threshold`, not supported when wholly below.
    pub fn of_interval(lo: f64, hi: f64, threshold: f64) -> Verdict {
        if lo > threshold {
            Verdict::Supported
        } else if hi < threshold {
            Verdict::NotSupported
        } else {
            Verdict::Inconclusive
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Hypothesis {
    id: &'static str,
    claim: &'static str,
    metric: &'static str,
    verdict: Verdict,
    evidence: String,
}

fn io(path: &Path, e: impl std::fmt::Display) -> PipelineError {
    DataError::Io { path: path.to_owned(), source: std::io::Error::other(e.to_string()) }.into()
}

/// One arm's per-example scores: ids and, per compared metric (registry order), values in test order.
struct ArmScores {
    ids: Vec<String>,
    values: BTreeMap<&'static str, Vec<f64>>,
}

fn load_scores(ctx: &StageCtx, arm: Arm) -> Result<ArmScores, PipelineError> {
    let rows: Vec<ScoreRow> = data::read_jsonl_as(&ctx.run_path(&format!("{}/scores.jsonl", Stage::Evaluate(arm).name())))?;
    let values = registry::compared().enumerate().map(|(k, m)| (m.key, rows.iter().map(|r| r.values[k]).collect())).collect();
    Ok(ArmScores { ids: rows.into_iter().map(|r| r.id).collect(), values })
}

fn interval(lo: f64, hi: f64) -> Value {
    json!([round6(lo), round6(hi)])
}

pub fn run(ctx: &StageCtx) -> Result<StageOutcome, PipelineError> {
    let (cfg, seed) = (ctx.cfg, ctx.seed);
    let r = cfg.eval.bootstrap_resamples;
    let pr = cfg.eval.permutation_resamples;
    let mut scores: BTreeMap<Arm, ArmScores> = BTreeMap::new();
    for arm in Arm::ALL {
        let s = load_scores(ctx, arm)?;
        if let Some(first) = scores.values().next() {
            if first.ids != s.ids {
                return Err(PipelineError::Stage {
                    stage: Stage::Compare.name(),
                    message: format!("{}/scores.jsonl does not cover the same test examples as evaluate-A", Stage::Evaluate(arm).name()),
                });
            }
        }
        scores.insert(arm, s);
    }
    let ids = scores[&Arm::A].ids.clone();
    let v = |arm: Arm, key: &str| -> &Vec<f64> { &scores[&arm].values[key] };
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len().max(1) as f64;

    // Table: mean and bootstrap CI per model and metric.
    let mut table = BTreeMap::new();
    for (mi, arm) in Arm::ALL.iter().enumerate() {
        let mut row = BTreeMap::new();
        for (k, def) in registry::compared().enumerate() {
            let x = v(*arm, def.key);
            let (lo, hi) = bootstrap::mean_ci(x, r, seed ^ ((mi * 16 + k) as u64));
            row.insert(def.key.to_string(), json!({"mean": round6(mean(x)), "ci95": interval(lo, hi)}));
        }
        table.insert(arm.letter().to_string(), row);
    }
    // Gaps and recovery.
    let mut gaps = BTreeMap::new();
    for (k, def) in registry::compared().enumerate() {
        let (a, b, c) = (v(Arm::A, def.key), v(Arm::B, def.key), v(Arm::C, def.key));
        let s = seed.wrapping_add(1000 + k as u64 * 7);
        let ab = bootstrap::diff_ci(a, b, r, s);
        let cb = bootstrap::diff_ci(c, b, r, s + 1);
        let (rec, rec_ci, undefined) = bootstrap::recovery_ci(a, b, c, r, s + 2);
        gaps.insert(
            def.key.to_string(),
            json!({
                "a_minus_b": {"estimate": round6(mean(a) - mean(b)), "ci95": interval(ab.0, ab.1), "p_value": round6(bootstrap::paired_permutation_p(a, b, pr, s + 3))},
                "c_minus_b": {"estimate": round6(mean(c) - mean(b)), "ci95": interval(cb.0, cb.1), "p_value": round6(bootstrap::paired_permutation_p(c, b, pr, s + 4))},
                "recovery": {"estimate": if rec.is_finite() { json!(round6(rec)) } else { Value::Null },
                              "ci95": if rec_ci.0.is_finite() { interval(rec_ci.0, rec_ci.1) } else { Value::Null },
                              "undefined_resamples": undefined},
            }),
        );
    }
    let hypotheses = hypotheses(&gaps[PRIMARY]);

    // Samples of the seed's three kinds, deterministic: the first three in test-id order.
    let preds: BTreeMap<Arm, Vec<Prediction>> = Arm::ALL
        .iter()
        .map(|&a| Ok((a, data::read_jsonl_as(&ctx.run_path(&format!("{}/predictions.jsonl", Stage::Evaluate(a).name())))?)))
        .collect::<Result<_, PipelineError>>()?;
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
                let mut s = json!({"id": ids[i], "reference": preds[&Arm::A][i].reference, "f1": {}});
                for a in Arm::ALL {
                    s[a.letter()] = json!(preds[&a][i].prediction);
                    s["f1"][a.letter()] = json!(round6(f1(a, i)));
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
    std::fs::write(dir.join("metrics_table.csv"), metrics_table_csv(&table)).map_err(|e| io(&dir, e))?;
    let comparison = json!({"n": ids.len(), "table": table, "gaps": gaps, "hypotheses": hypotheses, "samples": samples,
                            "primary_metric": PRIMARY, "bootstrap_resamples": r, "permutation_resamples": pr});
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

/// H1–H3 judged on the primary metric's gaps.
fn hypotheses(g: &Value) -> Vec<Hypothesis> {
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let ci = |v: &Value| (num(&v["ci95"][0]), num(&v["ci95"][1]));
    let (ab_lo, ab_hi) = ci(&g["a_minus_b"]);
    let (cb_lo, cb_hi) = ci(&g["c_minus_b"]);
    let h1 = Verdict::of_interval(ab_lo, ab_hi, 0.0);
    let h2 = Verdict::of_interval(cb_lo, cb_hi, 0.0);
    let h3 = if h1 != Verdict::Supported {
        Verdict::Inconclusive
    } else {
        let (lo, hi) = ci(&g["recovery"]);
        if lo.is_finite() { Verdict::of_interval(lo, hi, 0.5) } else { Verdict::Inconclusive }
    };
    vec![
        Hypothesis {
            id: "H1",
            claim: "AI contamination lowers answer quality (F1 of A exceeds B)",
            metric: PRIMARY,
            verdict: h1,
            evidence: format!("A−B = {:.4}, 95% CI [{:.4}, {:.4}], p = {:.4}", num(&g["a_minus_b"]["estimate"]), ab_lo, ab_hi, num(&g["a_minus_b"]["p_value"])),
        },
        Hypothesis {
            id: "H2",
            claim: "Filtered synthetic data beats contaminated data (F1 of C exceeds B)",
            metric: PRIMARY,
            verdict: h2,
            evidence: format!("C−B = {:.4}, 95% CI [{:.4}, {:.4}], p = {:.4}", num(&g["c_minus_b"]["estimate"]), cb_lo, cb_hi, num(&g["c_minus_b"]["p_value"])),
        },
        Hypothesis {
            id: "H3",
            claim: "Synthetic data recovers at least half of the F1 lost to contamination",
            metric: PRIMARY,
            verdict: h3,
            evidence: match g["recovery"]["estimate"].as_f64() {
                Some(e) => {
                    let (lo, hi) = ci(&g["recovery"]);
                    format!("recovery = {e:.3}, 95% CI [{lo:.3}, {hi:.3}]")
                }
                None => "recovery undefined: A and B have the same mean F1".to_owned(),
            },
        },
    ]
}

/// `Model,EM,EM_ci_low,EM_ci_high,F1,...` with one row per model.
pub fn metrics_table_csv(table: &BTreeMap<String, BTreeMap<String, Value>>) -> String {
    let mut s = String::from("Model");
    for def in registry::compared() {
        let label = def.label;
        s.push_str(&format!(",{label},{label}_ci_low,{label}_ci_high"));
    }
    s.push('\n');
    for (m, row) in table {
        s.push_str(m);
        for def in registry::compared() {
            let v = &row[def.key];
            let num = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
            s.push_str(&format!(",{:.6},{:.6},{:.6}", num(&v["mean"]), num(&v["ci95"][0]), num(&v["ci95"][1])));
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

fn plots(dir: &Path, c: &Value, losses: &BTreeMap<Arm, Value>) -> Result<(), PipelineError> {
    register_font();
    let cell = |m: Arm, k: &str| {
        let v = &c["table"][m.letter()][k];
        (v["mean"].as_f64().unwrap_or(0.0), v["ci95"][0].as_f64().unwrap_or(0.0), v["ci95"][1].as_f64().unwrap_or(0.0))
    };
    let names = |m: Arm| format!("{} ({})", m.letter(), m.data());
    let p = dir.join("comparison_f1.png");
    bar_chart(&p, "Token F1 on the human test split (95% bootstrap CI)", &Arm::ALL.iter().map(|&m| names(m)).collect::<Vec<_>>(),
              &[("F1".to_owned(), Arm::ALL.iter().map(|&m| cell(m, "f1")).collect())], "F1")
        .map_err(|e| io(&p, e))?;
    let p = dir.join("comparison_multi_metric.png");
    let series: Vec<(String, Vec<(f64, f64, f64)>)> = Arm::ALL.iter().map(|&m| (names(m), registry::compared().map(|d| cell(m, d.key)).collect())).collect();
    bar_chart(&p, "All metrics by model (95% bootstrap CI)", &registry::compared().map(|d| d.label.to_string()).collect::<Vec<_>>(), &series, "score")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_come_from_the_whole_interval() {
        assert_eq!(Verdict::of_interval(0.01, 0.2, 0.0), Verdict::Supported);
        assert_eq!(Verdict::of_interval(-0.2, -0.01, 0.0), Verdict::NotSupported);
        assert_eq!(Verdict::of_interval(-0.01, 0.2, 0.0), Verdict::Inconclusive);
        assert_eq!(Verdict::of_interval(0.0, 0.2, 0.0), Verdict::Inconclusive, "touching the threshold is not beyond it");
        assert_eq!(serde_json::to_value(Verdict::NotSupported).unwrap(), "not supported");
    }

    #[test]
    fn h3_is_inconclusive_unless_h1_is_supported() {
        let g = json!({"a_minus_b": {"estimate": 0.0, "ci95": [-0.1, 0.1], "p_value": 0.5},
                       "c_minus_b": {"estimate": 0.2, "ci95": [0.1, 0.3], "p_value": 0.01},
                       "recovery": {"estimate": 2.0, "ci95": [1.0, 3.0]}});
        let h = hypotheses(&g);
        assert_eq!([h[0].verdict, h[1].verdict, h[2].verdict], [Verdict::Inconclusive, Verdict::Supported, Verdict::Inconclusive]);
    }

    #[test]
    fn the_csv_has_three_columns_per_compared_metric() {
        let row: BTreeMap<String, Value> = registry::compared().map(|m| (m.key.to_string(), json!({"mean": 0.5, "ci95": [0.25, 0.75]}))).collect();
        let table = BTreeMap::from([("A".to_string(), row)]);
        let csv = metrics_table_csv(&table);
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        assert_eq!(header.len(), 1 + 3 * registry::compared().count());
        assert_eq!(&header[..4], ["Model", "EM", "EM_ci_low", "EM_ci_high"]);
        assert!(csv.lines().nth(1).unwrap().starts_with("A,0.500000,0.250000,0.750000"));
    }
}

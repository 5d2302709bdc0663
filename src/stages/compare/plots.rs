//! compare's plots: the comparison bar charts and the training-loss curves, drawn with plotters and the
//! font the binary carries.
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

use super::{io, Cell, Comparison};
use crate::error::PipelineError;
use crate::metrics::registry;
use crate::stages::ctx::{Arm, Model};
use crate::stages::train::TrainMetrics;

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font travels inside the binary: plots render the same text on a machine with no fonts.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// A bar: its height (the mean) and the interval's low and high ends.
type Bar = (f64, f64, f64);
/// A named series of bars, one per group.
type Series = (String, Vec<Bar>);

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn bar_chart(path: &Path, title: &str, groups: &[String], series: &[Series], y_label: &str) -> DrawResult {
    let root = BitMapBackend::new(path, (1300, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let lo = series.iter().flat_map(|(_, v)| v.iter().map(|x| x.1)).fold(0.0f64, f64::min).min(0.0);
    let n_series = series.len().max(1) as f64;
    // Headroom above the tallest interval for the legend (one row per series), so it never covers a bar.
    let headroom = if series.len() > 1 { 1.15 + 0.1 * n_series } else { 1.15 };
    let hi = series.iter().flat_map(|(_, v)| v.iter().map(|x| x.2)).fold(0.0f64, f64::max).max(0.05) * headroom;
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
            if (x - i as f64).abs() < 1e-6 && i >= 0 && (i as usize) < groups.len() {
                groups[i as usize].clone()
            } else {
                String::new()
            }
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
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 18))
        .draw()?;
    root.present()?;
    Ok(())
}

fn loss_chart(path: &Path, title: &str, curve: &[(f64, f64)], val: &[f64], steps_per_epoch: f64) -> DrawResult {
    let root = BitMapBackend::new(path, (1000, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = curve.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let all: Vec<f64> = curve.iter().map(|p| p.1).chain(val.iter().copied()).filter(|x| x.is_finite()).collect();
    let (lo, hi) =
        (all.iter().copied().fold(f64::INFINITY, f64::min), all.iter().copied().fold(f64::NEG_INFINITY, f64::max));
    let (lo, hi) = if lo.is_finite() { (lo * 0.95, hi * 1.05 + 1e-6) } else { (0.0, 1.0) };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_x, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc("loss")
        // Optimiser steps are integers: label the integral ticks as such, leave any other tick unlabelled.
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-9 {
                format!("{}", x.round() as i64)
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 16))
        .draw()?;
    chart
        .draw_series(LineSeries::new(curve.iter().copied(), RGBColor(31, 119, 180).stroke_width(2)))?
        .label("train loss")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(31, 119, 180).stroke_width(2)));
    chart
        .draw_series(
            val.iter()
                .enumerate()
                .map(|(e, v)| Circle::new(((e + 1) as f64 * steps_per_epoch, *v), 6, RGBColor(214, 39, 40).filled())),
        )?
        .label("validation loss (end of epoch)")
        .legend(|(x, y)| Circle::new((x + 8, y), 5, RGBColor(214, 39, 40).filled()));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()?;
    root.present()?;
    Ok(())
}

/// Draws a plot at `path` below `root` (the run directory) through [`crate::fsx::place_file`]: plotters
/// only takes a path.
fn drawn(root: &Path, path: &Path, draw: impl FnOnce(&Path) -> DrawResult) -> Result<(), PipelineError> {
    crate::fsx::place_file(root, path, |at| draw(at).map_err(|e| io(path, e)))
}

pub(super) fn plots(
    root: &Path,
    dir: &Path,
    c: &Comparison,
    losses: &BTreeMap<Arm, Option<TrainMetrics>>,
) -> Result<(), PipelineError> {
    register_font();
    // A missing cell, and a value that is not a number (recorded as null), are drawn at 0.
    let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
    let triple = |v: Option<&Cell>| {
        v.map_or((0.0, 0.0, 0.0), |v| {
            let [lo, hi] = v.interval().unwrap_or([0.0; 2]);
            (finite(v.mean), finite(lo), finite(hi))
        })
    };
    let cell = |m: Model, k: &str| triple(c.table.get(m.label()).and_then(|row| row.get(k)));
    let names = |m: Model| format!("{} ({})", m.label(), m.data());
    let pct = (100.0 * c.interval_level.unwrap_or(0.95)).round();
    let unit = c.resample_unit.as_deref().unwrap_or("item");
    // The fine-tuned models' intervals: across training seeds when there are replicates.
    let method = match &c.replicates {
        Some(r) => format!("A, B, C: two-stage bootstrap over {} training seeds and {unit}", r.count),
        None => format!("cluster bootstrap by {unit}"),
    };
    let pm = c.primary_metric.as_str();
    let pm_label = registry::by_key(pm).map(|d| d.label).unwrap_or(pm);
    // The primary metric for the models and the trivial baselines.
    let mut groups: Vec<String> = Model::ALL.iter().map(|&m| names(m)).collect();
    let mut vals: Vec<Bar> = Model::ALL.iter().map(|&m| cell(m, pm)).collect();
    for (b, row) in c.baseline_table.iter().flatten() {
        groups.push(format!("{b}*"));
        vals.push(triple(row.get(pm)));
    }
    let p = dir.join(format!("comparison_{pm}.png"));
    drawn(root, &p, |at| {
        bar_chart(
            at,
            &format!("{pm_label}: models and *trivial baselines ({pct}% CI, {method})"),
            &groups,
            &[(pm_label.to_owned(), vals)],
            pm_label,
        )
    })?;
    let p = dir.join("comparison_multi_metric.png");
    let series: Vec<Series> =
        Model::ALL.iter().map(|&m| (names(m), registry::compared().map(|d| cell(m, d.key)).collect())).collect();
    drawn(root, &p, |at| {
        bar_chart(
            at,
            &format!("All metrics by model ({pct}% CI, {method})"),
            &registry::compared().map(|d| d.label.to_string()).collect::<Vec<_>>(),
            &series,
            "score",
        )
    })?;
    let p = dir.join(format!("gap_analysis_{pm}.png"));
    let primary: Vec<_> = c.tested().filter(|h| h.primary).collect();
    let labels: Vec<String> = primary.iter().map(|h| format!("{} {}", h.id, h.contrast_label)).collect();
    let gaps: Vec<Bar> = primary
        .iter()
        .map(|h| (finite(h.contrast.estimate), finite(h.contrast.ci.lo), finite(h.contrast.ci.hi)))
        .collect();
    drawn(root, &p, |at| {
        bar_chart(
            at,
            &format!("{pm_label} contrasts of H1–H4 ({pct}% CI, {method})"),
            &labels,
            &[(format!("{pm_label} difference"), gaps)],
            &format!("{pm_label} difference"),
        )
    })?;
    for (m, v) in losses {
        let (curve, val, steps, epochs) = match v {
            Some(t) => (
                t.loss_curve.iter().map(|&(s, l)| (s as f64, l)).collect(),
                t.val_loss_per_epoch.clone(),
                t.optimizer_steps as f64,
                t.run.as_ref().map_or(1.0, |r| r.epochs as f64).max(1.0),
            ),
            None => (vec![], vec![], 0.0, 1.0),
        };
        let p = dir.join(format!("training_loss_{m}.png"));
        let title = format!("Model {} training loss", names(Model::Arm(*m)));
        drawn(root, &p, |at| loss_chart(at, &title, &curve, &val, steps / epochs))?;
    }
    Ok(())
}

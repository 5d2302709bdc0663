//! Metrics that equal the implementations a reviewer would check them against: EM and token F1
//! (SQuAD v1.1 script), ROUGE-1/2/L (Google's `rouge-score`), BERTScore (`bert-score`, with
//! all-MiniLM-L6-v2), each averaged over examples with a seeded bootstrap 95% interval.
//!
//! ```text
//! hsx score --pred predictions.jsonl --ref references.jsonl --stemmer --json
//! ```
use serde::Serialize;

pub mod baselines;
pub mod bertscore;
pub mod bootstrap;
pub mod porter;
pub mod registry;
pub mod rouge;
pub mod squad;
pub mod stats;

/// The metrics `hsx score` can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Em,
    F1,
    Rouge,
    BertScore,
    /// Multiple-choice accuracy by rank classification: needs the model, so only `evaluate` computes
    /// it (`hsx score` cannot).
    MultipleChoice,
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "em" => Ok(Metric::Em),
            "f1" => Ok(Metric::F1),
            "rouge" => Ok(Metric::Rouge),
            "bertscore" => Ok(Metric::BertScore),
            other => Err(format!("unknown metric {other:?} (em, f1, rouge, bertscore)")),
        }
    }
}

/// Per-example scores, aligned with the input pairs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PerExample {
    pub em: Vec<f64>,
    pub f1: Vec<f64>,
    pub rouge1: Vec<f64>,
    pub rouge2: Vec<f64>,
    #[serde(rename = "rougeL")]
    pub rouge_l: Vec<f64>,
    pub bertscore_precision: Vec<f64>,
    pub bertscore_recall: Vec<f64>,
    pub bertscore_f1: Vec<f64>,
    /// 1 where the labelled option ranks first by the model's mean log-likelihood, else 0.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mc_accuracy: Vec<f64>,
}

/// EM, F1 and ROUGE per example (no model needed).
pub fn lexical(preds: &[String], refs: &[String], metrics: &[Metric], stem: bool) -> PerExample {
    let mut out = PerExample::default();
    for (p, r) in preds.iter().zip(refs) {
        if metrics.contains(&Metric::Em) || metrics.contains(&Metric::F1) {
            let (em, f1) = squad::em_f1(p, r);
            if metrics.contains(&Metric::Em) {
                out.em.push(em);
            }
            if metrics.contains(&Metric::F1) {
                out.f1.push(f1);
            }
        }
        if metrics.contains(&Metric::Rouge) {
            let (a, b, c) = rouge::rouge_f(p, r, stem);
            out.rouge1.push(a);
            out.rouge2.push(b);
            out.rouge_l.push(c);
        }
    }
    out
}

/// A mean and its 95% interval.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Estimate {
    pub mean: f64,
    pub ci95: (f64, f64),
}

pub fn estimate(v: &[f64], resamples: usize, seed: u64) -> Estimate {
    let mean = if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    Estimate { mean, ci95: bootstrap::mean_ci(v, resamples, seed) }
}
